"""What the network sees and how its outputs name moves, for every board and player count.

Input: ``features.state_planes`` (planes on the board's bounding grid, seats ordered from
the player to move) stacked over a batch.

Policy: the network scores moves, not slots of a fixed action list. Its policy head gives
``POLICY_CHANNELS`` maps over the grid plus one logit per move type; a move's logit is its
type's logit plus the map values at the cells that define it (``move_terms``):

    place_ring                 place[count - 1] at the cell
    move_stack                 move_from at src + move_to at dst
    overtaking / continue      capture_from at src + capture_over at target + capture_to at dst
    recovery_slide             recovery_from at src + recovery_to at dst (+ extract at the
                               stack paying the cost)
    process_line / choose_line line[option] averaged over the line's cells
    choose_territory_option    region averaged over the region's cells
    eliminate / forced elim.   eliminate at the stack
    everything else            its type logit alone (skip, swap_sides, no_*_action, ...)

So one head fits every board (the maps are as big as the grid), every legal move has a
logit however many there are, and moves differing only in cells are told apart by them.

Value: one value in [-1, 1] per seat, seats ordered as in the input (0: the player to move);
``seat_values`` turns them into values of players 1..n. A final ranking r among n players
is worth ``rank_value(r, n)``: 1 for first, -1 for last, evenly spaced between.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from . import moves as mt
from .boards import BoardConfig, board_config
from .features import state_planes
from .moves import Move
from .state import MAX_PLAYERS, GameState

CHANNELS = ("place1", "place2", "place3", "move_from", "move_to", "capture_from",
            "capture_over", "capture_to", "recovery_from", "recovery_to", "extract",
            "line0", "line1", "line2", "region", "eliminate")
POLICY_CHANNELS = len(CHANNELS)
NUM_MOVE_TYPES = len(mt.MOVE_TYPES)
_C = {name: i for i, name in enumerate(CHANNELS)}
_TYPE = {t: i for i, t in enumerate(mt.MOVE_TYPES)}
_CAPTURES = frozenset({mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT})
_ELIMINATIONS = frozenset({mt.ELIMINATE_RINGS_FROM_STACK, mt.FORCED_ELIMINATION})
_LINES = frozenset({mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION})


def grid_cells(cfg: BoardConfig) -> np.ndarray:
    """Position of each cell in the flattened ``size x size`` grid of the planes."""
    return _grid_cells(cfg.name)


@cache
def _grid_cells(board_type: str) -> np.ndarray:
    cfg = board_config(board_type)
    if cfg.hex:
        r = (cfg.size - 1) // 2
        return np.array([(c[1] + r) * cfg.size + c[0] + r for c in cfg.coords], dtype=np.int64)
    return np.array([c[1] * cfg.size + c[0] for c in cfg.coords], dtype=np.int64)


@cache
def _grid_list(board_type: str) -> list[int]:
    return _grid_cells(board_type).tolist()


def input_batch(states: list[GameState]) -> tuple[np.ndarray, np.ndarray]:
    """Planes ``(B, NUM_PLANES, size, size)`` and scalars ``(B, NUM_SCALARS)``, float32."""
    pairs = [state_planes(s) for s in states]
    return np.stack([p for p, _ in pairs]), np.stack([s for _, s in pairs])


def move_terms(legal: list[list[Move]], cfg: BoardConfig) -> tuple[np.ndarray, ...]:
    """Index arrays scoring a batch's legal moves from the policy head's outputs.

    Returns ``(types, term_move, term_index, term_weight, offsets)``: move j (numbered
    across the batch) has type logit ``types[j]``, plus ``term_weight[t] *
    maps[term_index[t]]`` for every term t with ``term_move[t] == j``, where ``maps`` is
    the batch's policy maps flattened to ``(B * POLICY_CHANNELS * size * size)``; position
    b's moves are ``offsets[b]:offsets[b + 1]``.
    """
    grid = _grid_list(cfg.name)
    area = cfg.size * cfg.size
    plane = POLICY_CHANNELS * area
    types: list[int] = []
    t_move: list[int] = []
    t_index: list[int] = []
    t_weight: list[float] = []
    offsets = [0]
    j = 0
    for b, moves in enumerate(legal):
        base = b * plane
        for m in moves:
            kind = m.type
            types.append(_TYPE[kind])
            if kind == mt.PLACE_RING:
                t_move.append(j)
                t_index.append(base + (_C["place1"] + m.count - 1) * area + grid[m.dst])
                t_weight.append(1.0)
            elif kind == mt.MOVE_STACK:
                t_move += (j, j)
                t_index += (base + _C["move_from"] * area + grid[m.src],
                            base + _C["move_to"] * area + grid[m.dst])
                t_weight += (1.0, 1.0)
            elif kind in _CAPTURES:
                t_move += (j, j, j)
                t_index += (base + _C["capture_from"] * area + grid[m.src],
                            base + _C["capture_over"] * area + grid[m.target],
                            base + _C["capture_to"] * area + grid[m.dst])
                t_weight += (1.0, 1.0, 1.0)
            elif kind == mt.RECOVERY_SLIDE:
                t_move += (j, j)
                t_index += (base + _C["recovery_from"] * area + grid[m.src],
                            base + _C["recovery_to"] * area + grid[m.dst])
                t_weight += (1.0, 1.0)
                if m.extract >= 0:
                    t_move.append(j)
                    t_index.append(base + _C["extract"] * area + grid[m.extract])
                    t_weight.append(1.0)
            elif kind in _ELIMINATIONS:
                t_move.append(j)
                t_index.append(base + _C["eliminate"] * area + grid[m.dst])
                t_weight.append(1.0)
            elif kind in _LINES or kind == mt.CHOOSE_TERRITORY_OPTION:
                channel = _C[f"line{m.option}"] if kind in _LINES else _C["region"]
                cells = m.cells
                if cells:
                    w = 1.0 / len(cells)
                    off = base + channel * area
                    t_move += [j] * len(cells)
                    t_index += [off + grid[c] for c in cells]
                    t_weight += [w] * len(cells)
            j += 1
        offsets.append(j)
    return (np.array(types, dtype=np.int64), np.array(t_move, dtype=np.int64),
            np.array(t_index, dtype=np.int64), np.array(t_weight, dtype=np.float32),
            np.array(offsets, dtype=np.int64))


def seat_values(relative: np.ndarray, current: np.ndarray, num_players: int) -> np.ndarray:
    """Values of players 1..n ``(B, n)`` (column 0 is player 1) from the network's
    seat-ordered ones ``(B, >= n)``, given each position's player to move ``(B,)``."""
    n = num_players
    # Player p (0-based) sits (p - current + 1) mod n seats after the player to move.
    seats = (np.arange(n)[None, :] - (current[:, None] - 1)) % n
    return np.take_along_axis(relative[:, :n], seats, axis=1)


def relative_values(absolute: np.ndarray, state: GameState) -> np.ndarray:
    """The inverse of ``seat_values``, padded to MAX_PLAYERS with zeros (a training target)."""
    n = state.num_players
    out = np.zeros(MAX_PLAYERS, dtype=np.float32)
    for k in range(n):
        out[k] = absolute[(state.current - 1 + k) % n]
    return out


def rank_value(rank: int, num_players: int) -> float:
    return 1.0 - 2.0 * (rank - 1) / (num_players - 1)


def outcome_values(ranks: list[int] | tuple[int, ...]) -> np.ndarray:
    """Values of players 1..n at the end of a game from their ranks."""
    n = len(ranks)
    return np.array([rank_value(r, n) for r in ranks], dtype=np.float32)
