"""Network input: a state as float32 feature planes plus a vector of scalars.

Planes are drawn on the board's bounding grid (``size x size``; hex boards use axial
coordinates ``(x + r, y + r)`` on a ``(2r+1)`` square, cells off the hexagon stay zero
and the ``on_board`` plane marks the real ones). Players are ordered from the point of
view of the player to move: block 0 is the current player, then the next seats in turn
order, so one network serves every seat. Absent seats (fewer than 4 players) are zero.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from .boards import board_config
from .state import MAX_PLAYERS, PENDING_EXTRACTION, PHASES, GameState, cap_height

PLANES_PER_PLAYER = 5  # controlled height, cap height, markers, territory, buried rings
GLOBAL_PLANES = 3  # on_board, the stack that must move, the capturing stack
NUM_PLANES = PLANES_PER_PLAYER * MAX_PLAYERS + GLOBAL_PLANES
# Per player: rings in hand, eliminated rings, territory (each against its scale);
# then phase one-hot, pending-elimination one-hot, player-count one-hot, swap available.
NUM_SCALARS = 3 * MAX_PLAYERS + len(PHASES) + (PENDING_EXTRACTION + 1) + 3 + 1
HEIGHT_SCALE = 8.0  # stacks taller than this are rare; heights are divided by it
_PHASE = {p: i for i, p in enumerate(PHASES)}


def grid_positions(board_type: str) -> np.ndarray:
    """Each cell's position in the flattened ``size x size`` grid of the planes."""
    return _template(board_type)[1]


@cache
def _template(board_type: str) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Per board: the empty planes (``on_board`` set), flattened to ``(NUM_PLANES, size *
    size)``, and each cell's position in the flattened grid (as an array and a list)."""
    cfg = board_config(board_type)
    if cfg.hex:
        r = (cfg.size - 1) // 2
        grid = [(c[1] + r) * cfg.size + c[0] + r for c in cfg.coords]
    else:
        grid = [c[1] * cfg.size + c[0] for c in cfg.coords]
    positions = np.array(grid, dtype=np.int64)
    empty = np.zeros((NUM_PLANES, cfg.size * cfg.size), dtype=np.float32)
    empty[PLANES_PER_PLAYER * MAX_PLAYERS, positions] = 1.0
    return empty, positions, grid


def state_planes(state: GameState) -> tuple[np.ndarray, np.ndarray]:
    """``(planes, scalars)``: planes of shape ``(NUM_PLANES, size, size)`` and scalars of
    shape ``(NUM_SCALARS,)``, both float32, from the current player's point of view."""
    planes, scalars = batch_planes([state])
    return planes[0], scalars[0]


def batch_planes(states: list[GameState]) -> tuple[np.ndarray, np.ndarray]:
    """``state_planes`` of positions of one board and player count, stacked: planes
    ``(B, NUM_PLANES, size, size)`` and scalars ``(B, NUM_SCALARS)``."""
    cfg = states[0].board
    n = states[0].num_players
    batch = len(states)
    empty, positions, grid = _template(cfg.name)
    flat = np.repeat(empty[None], batch, axis=0)
    current = np.fromiter((s.current for s in states), dtype=np.int64, count=batch)
    # block[b, p]: how many seats after position b's player to move player p sits.
    block = (np.arange(n + 1)[None, :] - current[:, None]) % n
    rows = np.arange(batch)[:, None]
    for attr, offset in (("markers", 2), ("collapsed", 3)):
        owner = np.array([getattr(s, attr) for s in states], dtype=np.int64)
        b, cells = np.nonzero(owner)
        flat[b, block[b, owner[b, cells]] * PLANES_PER_PLAYER + offset, positions[cells]] = 1.0
    # Stack entries are gathered as (position, plane, cell, value) and written in one go:
    # a numpy item assignment per entry would cost more than the Python that finds them.
    at_b: list[int] = []
    at_k: list[int] = []
    at_g: list[int] = []
    at_v: list[float] = []
    for b, state in enumerate(states):
        seat = block[b].tolist()
        for c, s in enumerate(state.stacks):
            if s:
                g = grid[c]
                k = seat[s[-1]] * PLANES_PER_PLAYER
                at_b += (b, b)
                at_k += (k, k + 1)
                at_g += (g, g)
                at_v += (len(s), cap_height(s))
                if len(s) > 1:
                    buried = s[:-1]
                    for ring in set(buried):
                        at_b.append(b)
                        at_k.append(seat[ring] * PLANES_PER_PLAYER + 4)
                        at_g.append(g)
                        at_v.append(buried.count(ring))
    if at_b:
        flat[at_b, at_k, at_g] = np.array(at_v, dtype=np.float32) / HEIGHT_SCALE
    g = PLANES_PER_PLAYER * MAX_PLAYERS
    for extra, attr in ((1, "must_move"), (2, "chain_pos")):
        cell = np.fromiter((getattr(s, attr) for s in states), dtype=np.int64, count=batch)
        b = np.flatnonzero(cell >= 0)
        flat[b, g + extra, positions[cell[b]]] = 1.0
    planes = flat.reshape(batch, NUM_PLANES, cfg.size, cfg.size)

    scalars = np.zeros((batch, NUM_SCALARS), dtype=np.float32)
    seats = block[:, 1:]  # (B, n): the block of players 1..n
    for k, (attr, scale) in enumerate((("in_hand", cfg.rings_per_player),
                                       ("eliminated", cfg.victory_threshold(n)),
                                       ("territory", cfg.territory_minimum(n)))):
        counts = np.array([getattr(s, attr)[1:] for s in states], dtype=np.float32)
        scalars[rows, 3 * seats + k] = counts / scale
    k = 3 * MAX_PLAYERS
    phase = np.fromiter((_PHASE[s.phase] for s in states), dtype=np.int64, count=batch)
    scalars[rows[:, 0], k + phase] = 1.0
    k += len(PHASES)
    pending = np.fromiter((s.pending for s in states), dtype=np.int64, count=batch)
    scalars[rows[:, 0], k + pending] = 1.0
    k += PENDING_EXTRACTION + 1
    scalars[:, k + n - 2] = 1.0
    scalars[:, k + 3] = np.fromiter((s.swap_eligible and n == 2 and s.turn == 2
                                     for s in states), dtype=np.float32, count=batch)
    return planes, scalars
