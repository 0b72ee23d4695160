"""Network input planes: shapes per board, the mover's point of view, and the batched
encoder against a cell-by-cell reading of the layout on all 12 configs."""

import random
import threading

import numpy as np
import pytest

from engine import BOARD_TYPES, board_config, initial_state
from engine.features import (
    CHAIN_POS,
    HEIGHT_SCALE,
    MUST_MOVE,
    NUM_PLANES,
    NUM_SCALARS,
    ON_BOARD,
    PLANES_PER_PLAYER,
    RowCache,
    batch_planes,
    grid_positions,
    live_planes,
    state_planes,
)
from engine.rules import apply_move_in_place, legal_moves
from engine.state import ACTIVE

from .scenario import make_state


@pytest.mark.parametrize("board", BOARD_TYPES)
def test_planes_cover_exactly_the_board_cells(board):
    planes, scalars = state_planes(initial_state(board, 3))
    size = board_config(board).size
    assert planes.shape == (NUM_PLANES, size, size) and planes.dtype == np.float32
    assert scalars.shape == (NUM_SCALARS,)
    on_board = planes[PLANES_PER_PLAYER * 4]
    assert on_board.sum() == board_config(board).num_cells


def test_the_player_to_move_always_sees_their_pieces_in_the_first_block():
    one = make_state("hex8", 3, stacks={"0,0,0": (1,), "1,-1,0": (2, 2)}, current=1)
    two = make_state("hex8", 3, stacks={"0,0,0": (1,), "1,-1,0": (2, 2)}, current=2)
    p1, _ = state_planes(one)
    p2, _ = state_planes(two)
    assert p1[0].sum() == pytest.approx(1 / 8) and p2[0].sum() == pytest.approx(2 / 8)
    # Player 1 sits two seats after player 2 in a 3-player game.
    assert np.array_equal(p2[2 * PLANES_PER_PLAYER], p1[0])


def _positions(board, players, count, seed):
    """Positions of random games, every phase they reach included."""
    rng = random.Random(seed)
    state = initial_state(board, players)
    out = []
    while len(out) < count:
        if state.status != ACTIVE:
            state = initial_state(board, players)
        if rng.random() < 0.4:
            out.append(state.copy())
        apply_move_in_place(state, rng.choice(legal_moves(state)))
    return out


def _reference_planes(state):
    """The planes read off the documented layout one cell at a time (no tables)."""
    cfg = state.board
    n = state.num_players
    size = cfg.size
    planes = np.zeros((NUM_PLANES, size * size), dtype=np.float32)
    grid = grid_positions(cfg.name)

    def block(player):
        return (player - state.current) % n * PLANES_PER_PLAYER

    planes[ON_BOARD, grid] = 1.0
    for c in range(cfg.num_cells):
        g = grid[c]
        if state.markers[c]:
            planes[block(state.markers[c]) + 2, g] = 1.0
        if state.collapsed[c]:
            planes[block(state.collapsed[c]) + 3, g] = 1.0
        stack = state.stacks[c]
        if stack:
            top = stack[-1]
            cap = next((k for k in range(len(stack)) if stack[-1 - k] != top), len(stack))
            planes[block(top), g] = len(stack) / HEIGHT_SCALE
            planes[block(top) + 1, g] = cap / HEIGHT_SCALE
            for ring in range(1, n + 1):
                buried = stack[:-1].count(ring)
                if buried:
                    planes[block(ring) + 4, g] = buried / HEIGHT_SCALE
    for plane, cell in ((MUST_MOVE, state.must_move), (CHAIN_POS, state.chain_pos)):
        if cell >= 0:
            planes[plane, grid[cell]] = 1.0
    return planes.reshape(NUM_PLANES, size, size)


@pytest.mark.parametrize("board", BOARD_TYPES)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_the_batched_planes_equal_a_cell_by_cell_reading_of_the_layout(board, players):
    states = _positions(board, players, 40, seed=players)
    planes, scalars = batch_planes(states)
    for state, got in zip(states, planes, strict=True):
        assert np.array_equal(got, _reference_planes(state))
    live, live_scalars = batch_planes(states, live_only=True)
    assert np.array_equal(live, planes[:, live_planes(players)])
    assert np.array_equal(live_scalars, scalars)
    # The planes left out of the live ones are zero but for on_board.
    rest = np.delete(planes, live_planes(players), axis=1)
    assert rest.sum() == len(states) * board_config(board).num_cells


def test_the_scalars_count_rings_from_the_movers_seat():
    state = make_state("square8", 3, in_hand=[5, 7, 9], current=2)
    _, scalars = state_planes(state)
    cfg = board_config("square8")
    # Seat 0 is player 2, seat 1 player 3, seat 2 player 1.
    assert scalars[0] * cfg.rings_per_player == pytest.approx(7)
    assert scalars[3] * cfg.rings_per_player == pytest.approx(9)
    assert scalars[6] * cfg.rings_per_player == pytest.approx(5)


def test_a_row_cache_computes_each_row_once_starts_over_past_its_bound_and_stays_right():
    made = []

    def make(key):
        made.append(key)
        return np.array([key, 2 * key], dtype=np.int64)

    cache = RowCache((2,), np.int64, make, limit=4)
    ids, table = cache.lookup([1, 2, 1, 3], 4)
    assert table[ids].tolist() == [[1, 2], [2, 4], [1, 2], [3, 6]] and made == [1, 2, 3]
    ids, table = cache.lookup(range(10), 10)  # grows past the bound within one lookup
    assert table[ids].tolist() == [[k, 2 * k] for k in range(10)]
    ids, table = cache.lookup([7, 1], 2)  # starts over first, still right
    assert table[ids].tolist() == [[7, 14], [1, 2]] and len(cache) == 2


def test_a_row_cache_shared_by_threads_gives_every_thread_its_own_keys_rows():
    cache = RowCache((1,), np.int64, lambda key: np.array([key * 3]), limit=1 << 20)
    errors = []

    def work(offset):
        for round_ in range(200):
            keys = [offset + round_ * 7 + k for k in range(50)]
            ids, table = cache.lookup(keys, len(keys))
            if table[ids, 0].tolist() != [3 * k for k in keys]:
                errors.append(offset)

    threads = [threading.Thread(target=work, args=(i * 3,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_a_row_cache_finds_stored_key_objects_by_address_and_equal_copies_by_value():
    cache = RowCache((1,), np.int64, lambda key: np.array([key[0] * 10]), limit=1 << 20)
    stored = [(k, "x") for k in range(300)]
    ids, table = cache.lookup_objects(stored)  # all new: through the dict
    assert table[ids, 0].tolist() == [10 * k for k in range(300)]
    copies = [tuple([k, "x"]) for k in range(300)]  # equal keys, other objects
    new = [(k, "y") for k in range(300, 310)]
    mixed = stored[::-1] + copies + new
    ids, table = cache.lookup_objects(mixed)  # indexed by address now, plus misses
    assert table[ids, 0].tolist() == [10 * k for k in range(299, -1, -1)] + [
        10 * k for k in range(300)] + [10 * k for k in range(300, 310)]
    assert np.array_equal(ids, cache.lookup(mixed, len(mixed))[0])
