"""Network input: a state as float32 feature planes plus a vector of scalars.

Planes are drawn on the board's bounding grid (``size x size``; hex boards use axial
coordinates ``(x + r, y + r)`` on a ``(2r+1)`` square, cells off the hexagon stay zero
and the ``on_board`` plane marks the real ones). Players are ordered from the point of
view of the player to move: block 0 is the current player, then the next seats in turn
order, so one network serves every seat. Absent seats (fewer than 4 players) are zero.
"""

from __future__ import annotations

import numpy as np

from .state import MAX_PLAYERS, PENDING_EXTRACTION, PHASES, GameState, cap_height

PLANES_PER_PLAYER = 5  # controlled height, cap height, markers, territory, buried rings
GLOBAL_PLANES = 3  # on_board, the stack that must move, the capturing stack
NUM_PLANES = PLANES_PER_PLAYER * MAX_PLAYERS + GLOBAL_PLANES
# Per player: rings in hand, eliminated rings, territory (each against its scale);
# then phase one-hot, pending-elimination one-hot, player-count one-hot, swap available.
NUM_SCALARS = 3 * MAX_PLAYERS + len(PHASES) + (PENDING_EXTRACTION + 1) + 3 + 1
HEIGHT_SCALE = 8.0  # stacks taller than this are rare; heights are divided by it


def _grid_index(state: GameState) -> tuple[np.ndarray, np.ndarray]:
    cfg = state.board
    if cfg.hex:
        r = (cfg.size - 1) // 2
        rows = np.array([c[1] + r for c in cfg.coords])
        cols = np.array([c[0] + r for c in cfg.coords])
    else:
        rows = np.array([c[1] for c in cfg.coords])
        cols = np.array([c[0] for c in cfg.coords])
    return rows, cols


def state_planes(state: GameState) -> tuple[np.ndarray, np.ndarray]:
    """``(planes, scalars)``: planes of shape ``(NUM_PLANES, size, size)`` and scalars of
    shape ``(NUM_SCALARS,)``, both float32, from the current player's point of view."""
    cfg = state.board
    n = state.num_players
    me = state.current
    order = [(me - 1 + k) % n + 1 for k in range(n)]  # seat -> block via index
    block = {p: i for i, p in enumerate(order)}
    flat = np.zeros((NUM_PLANES, cfg.num_cells), dtype=np.float32)
    for c, s in enumerate(state.stacks):
        if s:
            b = block[s[-1]] * PLANES_PER_PLAYER
            flat[b, c] = len(s) / HEIGHT_SCALE
            flat[b + 1, c] = cap_height(s) / HEIGHT_SCALE
            for ring in set(s[:-1]):
                flat[block[ring] * PLANES_PER_PLAYER + 4, c] = s[:-1].count(ring) / HEIGHT_SCALE
        m = state.markers[c]
        if m:
            flat[block[m] * PLANES_PER_PLAYER + 2, c] = 1.0
        t = state.collapsed[c]
        if t:
            flat[block[t] * PLANES_PER_PLAYER + 3, c] = 1.0
    g = PLANES_PER_PLAYER * MAX_PLAYERS
    flat[g, :] = 1.0
    if state.must_move >= 0:
        flat[g + 1, state.must_move] = 1.0
    if state.chain_pos >= 0:
        flat[g + 2, state.chain_pos] = 1.0
    planes = np.zeros((NUM_PLANES, cfg.size, cfg.size), dtype=np.float32)
    rows, cols = _grid_index(state)
    planes[:, rows, cols] = flat

    scalars = np.zeros(NUM_SCALARS, dtype=np.float32)
    rings = cfg.rings_per_player
    for i, p in enumerate(order):
        scalars[3 * i] = state.in_hand[p] / rings
        scalars[3 * i + 1] = state.eliminated[p] / state.victory_threshold
        scalars[3 * i + 2] = state.territory[p] / state.territory_minimum
    k = 3 * MAX_PLAYERS
    scalars[k + PHASES.index(state.phase)] = 1.0
    k += len(PHASES)
    scalars[k + state.pending] = 1.0
    k += PENDING_EXTRACTION + 1
    scalars[k + n - 2] = 1.0
    scalars[k + 3] = float(state.swap_eligible and n == 2 and state.turn == 2)
    return planes, scalars
