"""The network: seeded start identical everywhere, blobs that refuse anything wrong, and
scores for every legal move of every board and player count."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest

from engine.boards import BOARD_TYPES
from engine.encoding import relative_values, seat_values
from engine.net import (
    MAGIC,
    Arch,
    Evaluator,
    ModelBlobError,
    initial_model,
    load_model,
    save_model,
)
from engine.rules import apply_move_in_place, legal_moves
from engine.state import ACTIVE, initial_state

TINY = Arch(channels=4, blocks=1, value_hidden=4)


def _positions(board: str, players: int, count: int, seed: int = 0):
    rng = random.Random(seed)
    state = initial_state(board, players)
    out = []
    while state.status == ACTIVE and len(out) < count:
        if rng.random() < 0.3:
            out.append(state.copy())
        apply_move_in_place(state, rng.choice(legal_moves(state)))
    return out


def test_the_seeded_model_is_the_same_bytes_every_time_and_differs_by_seed_and_config():
    blob = save_model(initial_model("hex8", 3, TINY, seed=7))
    assert save_model(initial_model("hex8", 3, TINY, seed=7)) == blob
    assert save_model(initial_model("hex8", 3, TINY, seed=8)) != blob
    assert save_model(initial_model("hex8", 2, TINY, seed=7)) != blob


def test_a_blob_round_trips_with_its_config_architecture_parent_and_training_metadata():
    model = initial_model("square8", 4, TINY)
    model.info.parent = "a" * 64
    model.info.training = {"steps": 100, "games": 12, "loss": 1.5}
    loaded = load_model(save_model(model), "square8", 4)
    assert (loaded.info.arch, loaded.info.parent, loaded.info.training) == (
        TINY, "a" * 64, {"steps": 100, "games": 12, "loss": 1.5})
    assert save_model(loaded) == save_model(model)


def _with_weight(blob: bytes, value: float) -> bytes:
    (size,) = struct.unpack_from("<I", blob, len(MAGIC))
    at = len(MAGIC) + 4 + size
    return blob[:at] + struct.pack("<f", value) + blob[at + 4:]


@pytest.mark.parametrize("bad,message", [
    (lambda b: b"PK\x03\x04" + b[4:], "magic"),
    (lambda b: b[:len(MAGIC) + 2], "magic"),
    (lambda b: b[:-10], "truncated"),
    (lambda b: b + b"\x00", "trailing"),
    (lambda b: b[:len(MAGIC)] + struct.pack("<I", 1 << 30) + b[len(MAGIC) + 4:], "overruns"),
    (lambda b: b[:len(MAGIC) + 4] + b"\xc1" + b[len(MAGIC) + 5:], "decode"),
    (lambda b: _with_weight(b, float("nan")), "non-finite"),
])
def test_a_corrupt_blob_is_refused_with_a_clear_error(bad, message):
    blob = save_model(initial_model("square8", 2, TINY))
    with pytest.raises(ModelBlobError, match=message):
        load_model(bad(blob), "square8", 2)


def test_a_blob_of_another_config_or_architecture_is_refused():
    blob = save_model(initial_model("square8", 2, TINY))
    with pytest.raises(ModelBlobError, match="not hex8 2p"):
        load_model(blob, "hex8", 2)
    with pytest.raises(ModelBlobError, match="not square8 3p"):
        load_model(blob, "square8", 3)
    other = save_model(initial_model("square8", 2, Arch(4, 2, 4)))
    header_len = struct.unpack_from("<I", other, len(MAGIC))[0]
    # Arch says one block, tensors are of two: the tensor list gives it away.
    forged = other.replace(b"\xa6blocks\x02", b"\xa6blocks\x01", 1)
    assert len(forged) == len(other) and header_len
    with pytest.raises(ModelBlobError, match="tensor list"):
        load_model(forged, "square8", 2)


@pytest.mark.parametrize("board", BOARD_TYPES)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_every_config_gets_a_prior_over_its_legal_moves_and_a_value_per_player(board, players):
    evaluator = Evaluator(initial_model(board, players, TINY))
    states = _positions(board, players, 6, seed=players)
    legal = [legal_moves(s) for s in states]
    priors, values = evaluator.evaluate(states, legal)
    assert values.shape == (len(states), players) and np.abs(values).max() <= 1.0
    for p, moves in zip(priors, legal, strict=True):
        assert p.shape == (len(moves),) and abs(float(p.sum()) - 1.0) < 1e-4
    assert evaluator.positions_evaluated == len(states)


def test_moves_that_differ_only_in_their_cells_get_different_priors():
    evaluator = Evaluator(initial_model("square8", 2, Arch(8, 1, 8)))
    state = initial_state("square8", 2)
    [prior], _ = evaluator.evaluate([state], [legal_moves(state)])
    assert len(set(np.round(prior, 7).tolist())) > len(prior) // 4


def test_seat_values_and_relative_values_are_inverse():
    state = _positions("hex8", 4, 3, seed=1)[2]
    absolute = np.array([0.1, 0.2, 0.3, 0.4], dtype=np.float32)
    relative = relative_values(absolute, state)
    assert relative[0] == absolute[state.current - 1]
    back = seat_values(relative[None, :], np.array([state.current]), 4)[0]
    assert np.array_equal(back, absolute)


def test_the_device_parity_check_measures_reduced_precision_against_float32():
    evaluator = Evaluator(initial_model("square8", 2, Arch(8, 1, 8)))
    states = _positions("square8", 2, 8)
    legal = [legal_moves(s) for s in states]
    assert evaluator.parity_error(states, legal, autocast=False) == 0.0
    error = evaluator.parity_error(states, legal, autocast=True)  # bfloat16 on the CPU
    assert 0.0 < error < 0.05
