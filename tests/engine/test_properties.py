"""Laws of the rules, checked over random playouts on every board and player count:
games end, the progress measure S never drops, rings are conserved, and every state
and move survives serialization."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import (
    BOARD_TYPES,
    apply_move_in_place,
    decode_state,
    deserialize_move,
    deserialize_state,
    encode_state,
    initial_state,
    legal_moves,
    serialize_move,
    serialize_state,
    state_hash,
)
from engine.state import ACTIVE, GAME_OVER, GameState

CONFIGS = [(b, n) for b in BOARD_TYPES for n in (2, 3, 4)]
SMALL = [(b, n) for b, n in CONFIGS if b in ("square8", "hex8")]
LARGE = [(b, n) for b, n in CONFIGS if b not in ("square8", "hex8")]
MOVE_CAP = 20_000  # far beyond any random game (the longest seen are ~2,000 moves)


def check_invariants(s: GameState) -> None:
    cfg = s.board
    n = s.num_players
    colour = [0] * (n + 1)
    for c in range(cfg.num_cells):
        stack = s.stacks[c]
        assert (stack is not None) + bool(s.markers[c]) + bool(s.collapsed[c]) <= 1
        if stack:
            for r in stack:
                colour[r] += 1
    assert colour == s.board_rings
    for p in range(1, n + 1):
        assert s.collapsed.count(p) == s.territory[p]
        assert 0 <= s.in_hand[p] and s.in_hand[p] + colour[p] <= cfg.rings_per_player
    # Every ring is in a hand, on the board, or eliminated and credited to someone.
    assert sum(s.in_hand) + sum(colour) + sum(s.eliminated) == n * cfg.rings_per_player


def playout(board: str, players: int, seed: int, every_move: bool) -> GameState:
    rng = random.Random(seed)
    s = initial_state(board, players)
    progress = s.progress()
    moves = 0
    while s.status == ACTIVE:
        legal = legal_moves(s)
        assert legal, f"no legal move in active phase {s.phase}"
        apply_move_in_place(s, rng.choice(legal))
        moves += 1
        assert moves < MOVE_CAP, f"{board} {players}p seed {seed} did not end"
        if every_move or s.phase == "ring_placement" or s.status != ACTIVE:
            now = s.progress()
            assert now >= progress, f"S fell from {progress} to {now} after {moves} moves"
            progress = now
            check_invariants(s)
    return s


def check_final(s: GameState) -> None:
    assert s.phase == GAME_OVER and 1 <= s.winner <= s.num_players
    assert s.ranks is not None and len(s.ranks) == s.num_players
    assert s.ranks[s.winner - 1] == 1
    assert all(1 <= r <= s.num_players for r in s.ranks)
    assert legal_moves(s) == []


@pytest.mark.parametrize("board,players", SMALL)
def test_random_playouts_on_small_boards_end_with_rankings_and_keep_the_laws(board, players):
    for seed in range(4):
        check_final(playout(board, players, seed, every_move=True))


@pytest.mark.parametrize("board,players", LARGE)
def test_a_random_playout_on_a_large_board_ends_and_keeps_the_laws(board, players):
    check_final(playout(board, players, seed=1, every_move=False))


@pytest.mark.slow
@pytest.mark.parametrize("board,players", CONFIGS)
def test_many_random_playouts_keep_the_laws(board, players):
    games = 50 if (board, players) in SMALL else 8
    for seed in range(100, 100 + games):
        check_final(playout(board, players, seed, every_move=True))


def state_after(board: str, players: int, seed: int, steps: int) -> GameState:
    rng = random.Random(seed)
    s = initial_state(board, players)
    for _ in range(steps):
        if s.status != ACTIVE:
            break
        apply_move_in_place(s, rng.choice(legal_moves(s)))
    return s


@settings(deadline=None, max_examples=40)
@given(
    config=st.sampled_from(CONFIGS),
    seed=st.integers(0, 10_000),
    steps=st.integers(0, 400),
)
def test_states_and_moves_round_trip_through_both_encodings(config, seed, steps):
    s = state_after(*config, seed, steps)
    data = serialize_state(s)
    back = deserialize_state(data)
    assert serialize_state(back) == data
    assert state_hash(back) == state_hash(s)
    assert serialize_state(decode_state(encode_state(s))) == data
    assert legal_moves(back) == legal_moves(s)
    for move in legal_moves(s):
        plain = serialize_move(move, s.board)
        assert deserialize_move(plain, s.board) == move


def test_hash_tells_different_states_apart():
    a = initial_state("square8", 2)
    b = a.copy()
    apply_move_in_place(b, legal_moves(b)[0])
    assert state_hash(a) != state_hash(b)
    assert state_hash(a) == state_hash(initial_state("square8", 2))


@pytest.mark.parametrize("bad,match", [
    ({"type": "teleport", "player": 1}, "move type"),
    ({"type": "move_stack", "player": 7, "from": "0,0", "to": "0,1"}, "player"),
    ({"type": "move_stack", "player": 1, "from": "9,9", "to": "0,1"}, "not on board"),
    ({"type": "place_ring", "player": 1, "to": "0,0", "placementCount": 4}, "placementCount"),
    ({"type": "skip_placement", "player": 1, "extra": 1}, "unknown fields"),
])
def test_malformed_moves_are_refused_naming_the_bad_value(bad, match):
    with pytest.raises(ValueError, match=match):
        deserialize_move(bad, initial_state("square8", 2).board)


def test_malformed_encodings_are_refused():
    blob = encode_state(state_after("hex8", 3, 5, 60))
    with pytest.raises(ValueError):
        decode_state(blob[:-3])
    with pytest.raises(ValueError):
        decode_state(blob + b"\x00")
    with pytest.raises(ValueError):
        decode_state(b"\x09" + blob[1:])
    data = serialize_state(state_after("square8", 2, 1, 30))
    data["stacks"] = {"0,0": [1, 5]}
    with pytest.raises(ValueError, match="stacks"):
        deserialize_state(data)
    data = serialize_state(initial_state("square8", 2))
    data["stacks"] = {"0,0": [1]}  # a ring on the board while all 18 are still in hand
    with pytest.raises(ValueError, match="at most 18"):
        deserialize_state(data)


@settings(deadline=None, max_examples=25)
@given(config=st.sampled_from(CONFIGS), seed=st.integers(0, 10_000),
       steps=st.integers(0, 300))
def test_fast_placement_scan_agrees_with_the_movement_rule(config, seed, steps):
    from engine.movement import _fresh_stack_counts, can_move_from

    s = state_after(*config, seed, steps)
    rays = s.board.rays
    for c in range(s.board.num_cells):
        if s.collapsed[c] or s.stacks[c] or s.markers[c]:
            continue
        want = sum(1 << k for k in (1, 2, 3) if can_move_from(s.stacks, s.collapsed, rays[c], k, k))
        assert _fresh_stack_counts(s.stacks, s.collapsed, rays[c], 3) == want
