"""What the network sees and how its outputs name moves, for every board and player count.

Input: ``features.batch_planes`` (planes on the board's bounding grid, seats ordered from
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

from operator import itemgetter

import numpy as np

from . import moves as mt
from .boards import BoardConfig
from .features import batch_planes, grid_positions
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
    """Each cell's position in the flattened ``size x size`` grid of planes and policy maps."""
    return grid_positions(cfg.name)


def input_batch(states: list[GameState]) -> tuple[np.ndarray, np.ndarray]:
    """Planes ``(B, NUM_PLANES, size, size)`` and scalars ``(B, NUM_SCALARS)``, float32."""
    return batch_planes(states)


# Per move type: the (channel, Move field) pairs whose map values add to its logit.
_SLOTS: dict[str, tuple[tuple[int, int], ...]] = {
    mt.PLACE_RING: (),  # its channel depends on the count: handled apart
    mt.MOVE_STACK: ((_C["move_from"], 2), (_C["move_to"], 3)),
    mt.OVERTAKING_CAPTURE: ((_C["capture_from"], 2), (_C["capture_over"], 4),
                            (_C["capture_to"], 3)),
    mt.CONTINUE_CAPTURE_SEGMENT: ((_C["capture_from"], 2), (_C["capture_over"], 4),
                                  (_C["capture_to"], 3)),
    mt.RECOVERY_SLIDE: ((_C["recovery_from"], 2), (_C["recovery_to"], 3),
                        (_C["extract"], 10)),
    mt.ELIMINATE_RINGS_FROM_STACK: ((_C["eliminate"], 3),),
    mt.FORCED_ELIMINATION: ((_C["eliminate"], 3),),
}
_CELL_AVERAGED = frozenset({_TYPE[mt.PROCESS_LINE], _TYPE[mt.CHOOSE_LINE_OPTION],
                            _TYPE[mt.CHOOSE_TERRITORY_OPTION]})
_PLACE = _TYPE[mt.PLACE_RING]
_FIRST = itemgetter(0)


def move_terms(legal: list[list[Move]], cfg: BoardConfig) -> tuple[np.ndarray, ...]:
    """Index arrays scoring a batch's legal moves from the policy head's outputs.

    Returns ``(types, term_move, term_index, term_weight, offsets)``: move j (numbered
    across the batch) has type logit ``types[j]``, plus ``term_weight[t] *
    maps[term_index[t]]`` for every term t with ``term_move[t] == j``, where ``maps`` is
    the batch's policy maps flattened to ``(B * POLICY_CHANNELS * size * size)``; position
    b's moves are ``offsets[b]:offsets[b + 1]``.
    """
    grid = grid_positions(cfg.name)
    area = cfg.size * cfg.size
    counts = np.fromiter(map(len, legal), dtype=np.int64, count=len(legal))
    offsets = np.concatenate([[0], np.cumsum(counts)])
    moves = [m for ms in legal for m in ms]
    if not moves:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0, dtype=np.float32), offsets
    # Move fields as columns (C-level maps), so the terms are found per type with array
    # operations instead of a Python step per move.
    m = len(moves)
    types = np.fromiter(map(_TYPE.__getitem__, map(_FIRST, moves)), dtype=np.int64, count=m)
    field = {k: np.fromiter(map(itemgetter(k), moves), dtype=np.int64, count=m)
             for k in (2, 3, 4, 5, 10)}
    base = np.repeat(np.arange(len(legal), dtype=np.int64) * POLICY_CHANNELS * area, counts)
    parts_move: list[np.ndarray] = []
    parts_index: list[np.ndarray] = []
    parts_weight: list[np.ndarray] = []

    def add(which: np.ndarray, channel: np.ndarray | int, cells: np.ndarray) -> None:
        parts_move.append(which)
        parts_index.append(base[which] + channel * area + grid[cells])
        parts_weight.append(np.ones(len(which), dtype=np.float32))

    place = np.flatnonzero(types == _PLACE)
    add(place, _C["place1"] + field[5][place] - 1, field[3][place])
    for kind, slots in _SLOTS.items():
        which = np.flatnonzero(types == _TYPE[kind])
        for channel, k in slots:
            chosen = which[field[k][which] >= 0]  # recovery's extract is optional
            add(chosen, channel, field[k][chosen])
    for j in np.flatnonzero(np.isin(types, list(_CELL_AVERAGED))).tolist():
        move = moves[j]
        if move.cells:
            kind = move.type
            channel = _C[f"line{move.option}"] if kind in _LINES else _C["region"]
            cells = np.array(move.cells, dtype=np.int64)
            parts_move.append(np.full(len(cells), j, dtype=np.int64))
            parts_index.append(base[j] + channel * area + grid[cells])
            parts_weight.append(np.full(len(cells), 1.0 / len(cells), dtype=np.float32))
    return (types, np.concatenate(parts_move), np.concatenate(parts_index),
            np.concatenate(parts_weight), offsets)


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
