"""Game records: every legal move round-trips through the compact encoding, records replay
to the engine's result, and a tampered record is refused at the move that breaks it."""

from __future__ import annotations

import random

import numpy as np
import pytest

from engine.records import (
    InvalidRecord,
    check_finished,
    decode_move,
    decode_policy,
    decode_values,
    encode_policy,
    encode_value,
    positions,
    rankings,
    replay,
    sorted_legal,
    start_state,
)
from engine.rules import apply_move_in_place
from engine.state import ACTIVE


def _random_record(board: str, players: int, seed: int, limit: int = 100_000):
    rng = random.Random(seed)
    state = start_state(board, players, players == 2)
    moves: list[bytes] = []
    while state.status == ACTIVE and len(moves) < limit:
        legal, encoded = sorted_legal(state)
        for move, data in zip(legal, encoded, strict=True):
            assert decode_move(data, state.board.num_cells) == move
        k = rng.randrange(len(legal))
        moves.append(encoded[k])
        apply_move_in_place(state, legal[k])
    return state, moves


@pytest.mark.parametrize("board", ["square8", "hex8"])
@pytest.mark.parametrize("players", [2, 3, 4])
def test_every_legal_move_round_trips_and_a_game_replays_to_its_result(board, players):
    final, moves = _random_record(board, players, seed=players)
    again = replay(board, players, players == 2, moves)
    assert again.status != ACTIVE and rankings(again) == rankings(final)
    check_finished(board, players, players == 2, moves, None, rankings(final), final.winner)


@pytest.mark.parametrize("board", ["square19", "hexagonal"])
def test_moves_on_the_big_boards_round_trip(board):
    _random_record(board, 3, seed=1, limit=150)


def test_a_tampered_record_is_refused_where_it_breaks():
    final, moves = _random_record("square8", 2, seed=5)
    bad = list(moves)
    bad[7] = bad[6]
    with pytest.raises(InvalidRecord, match="move 7"):
        replay("square8", 2, True, bad)
    with pytest.raises(InvalidRecord, match="ended"):
        replay("square8", 2, True, [*moves, moves[-1]])
    with pytest.raises(InvalidRecord, match="not ended"):
        check_finished("square8", 2, True, moves[:-1], None, rankings(final), final.winner)
    wrong = [2, 1] if rankings(final) == [1, 2] else [1, 2]
    with pytest.raises(InvalidRecord, match="differ"):
        check_finished("square8", 2, True, moves, None, wrong, final.winner)
    for junk in (b"\x00", b"\xff\x01", b"\x00\x00", b"\x03\x01\x03\x00", b"\x03\x01\x01\xff\xff"):
        with pytest.raises(InvalidRecord):
            decode_move(junk, 64)


def test_policy_targets_keep_the_heaviest_moves_and_decode_to_probabilities():
    weights = np.array([0.5, 0.0, 0.3, 0.2], dtype=np.float32)
    probs = decode_policy(encode_policy(weights), 4)
    assert np.allclose(probs, weights, atol=0.01)
    assert encode_policy(np.array([1.0])) == b""
    wide = np.full(1000, 1e-3, dtype=np.float32)
    wide[999] = 0.5
    target = encode_policy(wide)
    assert len(target) == 3 * 255 and decode_policy(target, 1000)[999] > 0.3
    with pytest.raises(InvalidRecord, match="not below 4"):
        decode_policy(encode_policy(np.ones(8) / 8), 4)
    assert list(decode_values(bytes([encode_value(1.0), encode_value(-1.0), encode_value(0.0)]))
                ) == [1.0, -1.0, 0.0]


def test_positions_give_the_played_move_and_its_target():
    _, moves = _random_record("hex8", 2, seed=2)
    shape = [(len(p.legal), p.played) for p in positions("hex8", 2, True, moves)]
    policy = [encode_policy(np.eye(n)[k]) for n, k in shape]
    for p in positions("hex8", 2, True, moves, policy):
        if len(p.legal) > 1:
            assert p.target is not None and int(np.argmax(p.target)) == p.played
        assert p.legal[p.played] == decode_move(moves[p.state.move_number], p.state.board.num_cells)
