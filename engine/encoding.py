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

Scoring a batch: each distinct move's terms are worked out once per board (``_move_table``,
an interned row of indices into a position's score vector); a batch's moves become rows by
one dict pass and their logits one gather and sum (``policy_logits``; ``move_terms`` gives
the same terms as index arrays for a differentiable scorer).

Value: one value in [-1, 1] per seat, seats ordered as in the input (0: the player to move);
``seat_values`` turns them into values of players 1..n. A final ranking r among n players
is worth ``rank_value(r, n)``: 1 for first, -1 for last, evenly spaced between.
"""

from __future__ import annotations

from functools import cache
from itertools import chain

import numpy as np

from . import moves as mt
from .boards import BoardConfig, board_config
from .features import RowCache, batch_planes, grid_positions
from .moves import Move
from .state import MAX_PLAYERS, GameState

CHANNELS = ("place1", "place2", "place3", "move_from", "move_to", "capture_from",
            "capture_over", "capture_to", "recovery_from", "recovery_to", "extract",
            "line0", "line1", "line2", "region", "eliminate")
POLICY_CHANNELS = len(CHANNELS)
NUM_MOVE_TYPES = len(mt.MOVE_TYPES)
_C = {name: i for i, name in enumerate(CHANNELS)}
_TYPE = {t: i for i, t in enumerate(mt.MOVE_TYPES)}
_LINES = frozenset({mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION})


def grid_cells(cfg: BoardConfig) -> np.ndarray:
    """Each cell's position in the flattened ``size x size`` grid of planes and policy maps."""
    return grid_positions(cfg.name)


def input_batch(states: list[GameState]) -> tuple[np.ndarray, np.ndarray]:
    """Planes ``(B, NUM_PLANES, size, size)`` and scalars ``(B, NUM_SCALARS)``, float32."""
    return batch_planes(states)


# Per move type: the (channel, Move field) pairs whose map values add to its logit.
_SLOTS: dict[str, tuple[tuple[int, int], ...]] = {
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
MAX_SLOTS = 3  # map terms of a move with fixed cells (captures, recovery slides)
_CELL_AVERAGED = np.zeros(NUM_MOVE_TYPES, dtype=bool)
_CELL_AVERAGED[[_TYPE[mt.PROCESS_LINE], _TYPE[mt.CHOOSE_LINE_OPTION],
                _TYPE[mt.CHOOSE_TERRITORY_OPTION]]] = True
MOVE_TABLE_LIMIT = 1 << 16  # distinct moves remembered per board (~200 bytes each)


def _score_layout(cfg: BoardConfig) -> tuple[int, int]:
    """A position's score vector: its policy maps flattened (``POLICY_CHANNELS * area``
    values), one zero, then its type logits. Returns (the zero's index, the width)."""
    zero = POLICY_CHANNELS * cfg.size * cfg.size
    return zero, zero + 1 + NUM_MOVE_TYPES


@cache
def _move_table(board_type: str) -> RowCache:
    """Per board: each distinct move's row of ``1 + MAX_SLOTS`` indices into a position's
    score vector (``_score_layout``), whose values add up to the move's logit: its type
    logit, then its map values (unused slots, and cell-averaged moves' slots, point at the
    zero)."""
    cfg = board_config(board_type)
    area = cfg.size * cfg.size
    grid = grid_positions(board_type).tolist()
    zero, _ = _score_layout(cfg)

    def row(move: Move) -> np.ndarray:
        out = [zero + 1 + _TYPE[move.type], zero, zero, zero]
        if move.type == mt.PLACE_RING:
            out[1] = (_C["place1"] + move.count - 1) * area + grid[move.dst]
        else:
            k = 1
            for channel, field in _SLOTS.get(move.type, ()):
                cell = move[field]
                if cell >= 0:  # recovery's extract is optional
                    out[k] = channel * area + grid[cell]
                    k += 1
        return np.array(out, dtype=np.int64)

    return RowCache((1 + MAX_SLOTS,), np.int64, row, MOVE_TABLE_LIMIT)


def _averaged_terms(move: Move, cfg: BoardConfig) -> tuple[np.ndarray, float]:
    """A line or region move's map slots (one per cell) and the weight of each."""
    channel = _C[f"line{move.option}"] if move.type in _LINES else _C["region"]
    cells = grid_positions(cfg.name)[np.array(move.cells, dtype=np.int64)]
    return channel * cfg.size * cfg.size + cells, 1.0 / len(move.cells)


def move_rows(legal: list[list[Move]], cfg: BoardConfig
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[Move]]:
    """The batch's legal moves as rows ``(M, 1 + MAX_SLOTS)`` of score-vector indices
    (see ``_move_table``), their types ``(M,)``, the offsets of each position's moves
    (position b's are ``offsets[b]:offsets[b + 1]``) and the moves in that order."""
    moves = list(chain.from_iterable(legal))
    counts = np.fromiter(map(len, legal), dtype=np.int64, count=len(legal))
    offsets = np.zeros(len(legal) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    ids, table = _move_table(cfg.name).lookup_objects(moves)
    rows = table[ids]
    return rows, rows[:, 0] - (_score_layout(cfg)[0] + 1), offsets, moves


def policy_logits(maps: np.ndarray, type_logits: np.ndarray, legal: list[list[Move]],
                  cfg: BoardConfig) -> tuple[np.ndarray, np.ndarray]:
    """Every legal move's logit ``(M,)`` from the policy head's outputs, maps ``(B,
    POLICY_CHANNELS, size, size)`` and type logits ``(B, NUM_MOVE_TYPES)``, with the offsets
    of each position's moves (as ``move_rows``)."""
    batch = len(legal)
    zero, width = _score_layout(cfg)
    scores = np.empty((batch, width), dtype=np.float32)
    scores[:, :zero] = maps.reshape(batch, zero)
    scores[:, zero] = 0.0
    scores[:, zero + 1:] = type_logits
    rows, types, offsets, moves = move_rows(legal, cfg)
    base = np.repeat(np.arange(0, batch * width, width), np.diff(offsets))
    flat = scores.reshape(-1)
    logits = flat.take(rows + base[:, None]).sum(axis=1)
    for j in np.flatnonzero(_CELL_AVERAGED[types]).tolist():
        if moves[j].cells:
            slots, weight = _averaged_terms(moves[j], cfg)
            logits[j] += flat[base[j] + slots].sum() * weight
    return logits, offsets


def move_terms(legal: list[list[Move]], cfg: BoardConfig) -> tuple[np.ndarray, ...]:
    """Index arrays scoring a batch's legal moves from the policy head's outputs (what
    ``policy_logits`` computes, as arrays a differentiable scorer can use).

    Returns ``(types, term_move, term_index, term_weight, offsets)``: move j (numbered
    across the batch) has type logit ``types[j]``, plus ``term_weight[t] *
    maps[term_index[t]]`` for every term t with ``term_move[t] == j``, where ``maps`` is
    the batch's policy maps flattened to ``(B * POLICY_CHANNELS * size * size)``; position
    b's moves are ``offsets[b]:offsets[b + 1]``.
    """
    zero, _ = _score_layout(cfg)
    rows, types, offsets, moves = move_rows(legal, cfg)
    position = np.repeat(np.arange(len(legal)), np.diff(offsets))
    which, slots = np.nonzero(rows[:, 1:] != zero)
    parts_move = [which]
    parts_index = [position[which] * zero + rows[which, 1 + slots]]
    parts_weight = [np.ones(len(which), dtype=np.float32)]
    for j in np.flatnonzero(_CELL_AVERAGED[types]).tolist():
        if moves[j].cells:
            cells, weight = _averaged_terms(moves[j], cfg)
            parts_move.append(np.full(len(cells), j, dtype=np.int64))
            parts_index.append(position[j] * zero + cells)
            parts_weight.append(np.full(len(cells), weight, dtype=np.float32))
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
