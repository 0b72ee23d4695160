"""Network input: a state as float32 feature planes plus a vector of scalars.

Planes are drawn on the board's bounding grid (``size x size``; hex boards use axial
coordinates ``(x + r, y + r)`` on a ``(2r+1)`` square, cells off the hexagon stay zero
and the ``on_board`` plane marks the real ones). Players are ordered from the point of
view of the player to move: block 0 is the current player, then the next seats in turn
order, so one network serves every seat. Absent seats (fewer than 4 players) are zero.

Speed: a batch is encoded with a handful of array operations, not a Python step per cell.
Every distinct stack (a tuple of player numbers) gets its planes computed once, as a row of
``(player, plane)`` values in an interned table (``RowCache``); a position's stacks become
row ids through one C-level dict pass, and the seat rotation is a gather by seat. Markers
and collapsed spaces go through ``bytes`` (one C pass per list). ``live_planes`` names the
planes a player count can make non-zero: the evaluator feeds only those to the network
(the others are zero, or ``on_board``, a constant of the board).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Iterable
from functools import cache
from itertools import chain, compress

import numpy as np

from .boards import board_config
from .state import MAX_PLAYERS, PENDING_EXTRACTION, PHASES, GameState, cap_height

PLANES_PER_PLAYER = 5  # controlled height, cap height, markers, territory, buried rings
GLOBAL_PLANES = 3  # on_board, the stack that must move, the capturing stack
NUM_PLANES = PLANES_PER_PLAYER * MAX_PLAYERS + GLOBAL_PLANES
ON_BOARD = PLANES_PER_PLAYER * MAX_PLAYERS
MUST_MOVE, CHAIN_POS = ON_BOARD + 1, ON_BOARD + 2
# Per player: rings in hand, eliminated rings, territory (each against its scale);
# then phase one-hot, pending-elimination one-hot, player-count one-hot, swap available.
NUM_SCALARS = 3 * MAX_PLAYERS + len(PHASES) + (PENDING_EXTRACTION + 1) + 3 + 1
HEIGHT_SCALE = 8.0  # stacks taller than this are rare; heights are divided by it
_HEIGHT, _CAP, _MARKER, _TERRITORY, _BURIED = range(PLANES_PER_PLAYER)
_PHASE = {p: i for i, p in enumerate(PHASES)}


class RowCache:
    """Rows of a table computed once per distinct key and looked up by the batch.

    ``lookup(keys, count)`` returns the keys' row ids and the table holding their rows: the
    ids come from one ``map`` over a dict (C speed for keys seen before; ``make(key)``
    computes a new row). ``lookup_objects`` first finds keys that are the very objects
    stored (by address, without hashing them). Thread-safe: a lookup holds a lock, and a
    table once returned is never written at the returned rows (growing copies it), so it
    stays valid after another thread's lookup. Bounded: past ``limit`` keys it starts over,
    at the start of a lookup.
    """

    def __init__(self, shape: tuple[int, ...], dtype: type, make: Callable[[Hashable],
                 np.ndarray], limit: int, seed: Iterable[tuple[Hashable, np.ndarray]] = ()
                 ) -> None:
        self._shape = shape
        self._dtype = dtype
        self._make = make
        self._limit = limit
        self._seed = list(seed)
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        cache = self

        class _Ids(dict):
            def __missing__(self, key: Hashable) -> int:
                return cache._add(key, cache._make(key))

        self._ids: dict[Hashable, int] = _Ids()
        self._table = np.zeros((64, *self._shape), dtype=self._dtype)
        # The stored keys' addresses, sorted, and their row ids: the dict keeps the keys
        # alive, so an address found here is that very key (never a reused address).
        self._addresses = np.zeros(0, dtype=np.uint64)
        self._address_ids = np.zeros(0, dtype=np.int64)
        for key, row in self._seed:
            self._add(key, row)

    def _add(self, key: Hashable, row: np.ndarray) -> int:
        i = len(self._ids)
        if i == len(self._table):
            grown = np.zeros((2 * i, *self._shape), dtype=self._dtype)
            grown[:i] = self._table
            self._table = grown
        self._table[i] = row
        self._ids[key] = i
        return i

    def lookup(self, keys: Iterable[Hashable], count: int) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            if len(self._ids) > self._limit:
                self._start()
            ids = np.fromiter(map(self._ids.__getitem__, keys), dtype=np.int64, count=count)
            return ids, self._table

    def lookup_objects(self, keys: list[Hashable]) -> tuple[np.ndarray, np.ndarray]:
        """``lookup`` for keys that mostly recur as the same objects (the rules engine hands
        out its placement moves from a table of them): those are found by their address in
        a sorted array, which neither hashes a key nor reads it; the others (equal keys
        that are other objects, new keys) go through the dict."""
        with self._lock:
            if len(self._ids) > self._limit:
                self._start()
            if len(self._ids) - len(self._addresses) > len(self._addresses) // 8 + 64:
                self._index_addresses()
            addresses = np.fromiter(map(id, keys), dtype=np.uint64, count=len(keys))
            known = self._addresses
            if len(known):
                at = np.minimum(np.searchsorted(known, addresses), len(known) - 1)
                ids = self._address_ids[at]
                miss = np.flatnonzero(known[at] != addresses)
            else:
                ids = np.zeros(len(keys), dtype=np.int64)
                miss = np.arange(len(keys))
            if len(miss):
                ids[miss] = np.fromiter(map(self._ids.__getitem__,
                                            map(keys.__getitem__, miss.tolist())),
                                        dtype=np.int64, count=len(miss))
            return ids, self._table

    def _index_addresses(self) -> None:
        addresses = np.fromiter(map(id, self._ids), dtype=np.uint64, count=len(self._ids))
        order = np.argsort(addresses)
        self._addresses = addresses[order]
        self._address_ids = np.fromiter(self._ids.values(), dtype=np.int64,
                                        count=len(self._ids))[order]

    def __len__(self) -> int:
        return len(self._ids)


def _stack_row(stack: tuple[int, ...]) -> np.ndarray:
    """A stack's values in each player's block: height and cap of its controller, and the
    rings of each player buried under the top (markers and territory come from elsewhere)."""
    row = np.zeros((MAX_PLAYERS + 1, PLANES_PER_PLAYER), dtype=np.float32)
    top = stack[-1]
    row[top, _HEIGHT] = len(stack) / HEIGHT_SCALE
    row[top, _CAP] = cap_height(stack) / HEIGHT_SCALE
    buried = stack[:-1]
    for ring in set(buried):
        row[ring, _BURIED] = buried.count(ring) / HEIGHT_SCALE
    return row


# Distinct stacks in real games number in the thousands; the bound only guards memory.
# Row 0 (player 0, which no seat maps to) and the empty cell's row stay zero.
_STACKS = RowCache((MAX_PLAYERS + 1, PLANES_PER_PLAYER), np.float32, _stack_row, 1 << 16,
                   seed=[(None, np.zeros((MAX_PLAYERS + 1, PLANES_PER_PLAYER), np.float32))])


def grid_positions(board_type: str) -> np.ndarray:
    """Each cell's position in the flattened ``size x size`` grid of the planes."""
    return _grid(board_type)[0]


@cache
def _grid(board_type: str) -> tuple[np.ndarray, bool]:
    """Each cell's grid position, and whether that is the identity (square boards)."""
    cfg = board_config(board_type)
    r = (cfg.size - 1) // 2 if cfg.hex else 0
    positions = np.array([(c[1] + r) * cfg.size + c[0] + r for c in cfg.coords],
                         dtype=np.int64)
    return positions, bool(np.array_equal(positions, np.arange(len(positions))))


@cache
def on_board_plane(board_type: str) -> np.ndarray:
    """The ``on_board`` plane ``(size, size)``: 1 on the board's cells."""
    cfg = board_config(board_type)
    plane = np.zeros(cfg.size * cfg.size, dtype=np.float32)
    plane[grid_positions(board_type)] = 1.0
    return plane.reshape(cfg.size, cfg.size)


def live_planes(num_players: int) -> np.ndarray:
    """The planes a position of ``num_players`` can make non-zero, in order: the present
    seats' blocks, then the must-move and capturing-stack planes. The rest are zero, or
    ``on_board`` (a constant of the board)."""
    return np.array([*range(PLANES_PER_PLAYER * num_players), MUST_MOVE, CHAIN_POS])


def state_planes(state: GameState) -> tuple[np.ndarray, np.ndarray]:
    """``(planes, scalars)``: planes of shape ``(NUM_PLANES, size, size)`` and scalars of
    shape ``(NUM_SCALARS,)``, both float32, from the current player's point of view."""
    planes, scalars = batch_planes([state])
    return planes[0], scalars[0]


def batch_planes(states: list[GameState], live_only: bool = False
                 ) -> tuple[np.ndarray, np.ndarray]:
    """``state_planes`` of positions of one board and player count, stacked: planes
    ``(B, NUM_PLANES, size, size)`` and scalars ``(B, NUM_SCALARS)``. With ``live_only``
    the planes are ``(B, len(live_planes(n)), size, size)``: those planes alone."""
    cfg = states[0].board
    n = states[0].num_players
    batch, cells, area = len(states), cfg.num_cells, cfg.size * cfg.size
    positions, identity = _grid(cfg.name)
    scalars, current, cells_set = _scalars(states, n)
    # seat_player[b, k]: the player sitting k seats after position b's player to move.
    seat_player = (current[:, None] - 1 + np.arange(n)[None, :]) % n + 1

    seat_planes = PLANES_PER_PLAYER * n
    live = np.zeros((batch, seat_planes + 2, area), dtype=np.float32)
    blocks = live[:, :seat_planes].reshape(batch, n, PLANES_PER_PLAYER, area)  # a view
    # Markers and collapsed spaces (owners 0..4) as bytes: one C pass per list.
    owners = np.frombuffer(b"".join([bytes(s.markers + s.collapsed) for s in states]),
                           dtype=np.uint8).reshape(batch, 1, 2, cells)
    at = slice(None) if identity else positions
    blocks[:, :, _MARKER, at] = owners[:, :, 0] == seat_player[:, :, None]
    blocks[:, :, _TERRITORY, at] = owners[:, :, 1] == seat_player[:, :, None]
    # Stacks: only the occupied cells (a C-level pass finds them) are looked up.
    occupied = np.fromiter(chain.from_iterable(
        compress(range(b * cells, (b + 1) * cells), s.stacks) for b, s in enumerate(states)),
        dtype=np.int64)
    ids, table = _STACKS.lookup(chain.from_iterable(filter(None, s.stacks) for s in states),
                                len(occupied))
    b, cell = np.divmod(occupied, cells)
    blocks[b[:, None], np.arange(n)[None, :], :, positions[cell][:, None]] = table[
        ids[:, None], seat_player[b]]  # (occupied, n, PLANES_PER_PLAYER)
    # The must-move and capturing-stack cells (-1: none).
    b, k = np.nonzero(cells_set >= 0)
    live[b, seat_planes + k, positions[cells_set[b, k]]] = 1.0
    if live_only:
        return live.reshape(batch, seat_planes + 2, cfg.size, cfg.size), scalars
    planes = np.zeros((batch, NUM_PLANES, area), dtype=np.float32)
    planes[:, live_planes(n)] = live
    planes[:, ON_BOARD] = on_board_plane(cfg.name).reshape(area)
    return planes.reshape(batch, NUM_PLANES, cfg.size, cfg.size), scalars


def _scalars(states: list[GameState], n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The scalars ``(B, NUM_SCALARS)``, each position's player to move ``(B,)`` and its
    must-move and capturing-stack cells ``(B, 2)`` (-1: none)."""
    cfg = states[0].board
    batch = len(states)
    # One row of ints per state, in one pass: player to move, phase, pending, swap
    # available, must-move cell, capturing stack, then in hand, eliminated and territory
    # of players 1..n.
    raw = np.array([(s.current, _PHASE[s.phase], s.pending,
                     s.swap_eligible and n == 2 and s.turn == 2, s.must_move, s.chain_pos,
                     *s.in_hand[1:], *s.eliminated[1:], *s.territory[1:]) for s in states],
                   dtype=np.int64)
    current = raw[:, 0]
    per_player = raw[:, 6:].reshape(batch, 3, n).transpose(0, 2, 1)  # (B, player - 1, 3)
    seats = (current[:, None] - 1 + np.arange(n)[None, :]) % n  # player - 1 at each seat
    scale = np.array([cfg.rings_per_player, cfg.victory_threshold(n),
                      cfg.territory_minimum(n)], dtype=np.float32)
    scalars = np.zeros((batch, NUM_SCALARS), dtype=np.float32)
    scalars[:, :3 * n] = (np.take_along_axis(per_player, seats[:, :, None], axis=1)
                          .astype(np.float32) / scale).reshape(batch, 3 * n)
    rows = np.arange(batch)
    k = 3 * MAX_PLAYERS
    scalars[rows, k + raw[:, 1]] = 1.0
    k += len(PHASES)
    scalars[rows, k + raw[:, 2]] = 1.0
    k += PENDING_EXTRACTION + 1
    scalars[:, k + n - 2] = 1.0
    scalars[:, k + 3] = raw[:, 3]
    return scalars, current, raw[:, 4:6]
