"""The network: seeded start identical everywhere, blobs that refuse anything wrong, and
scores for every legal move of every board and player count."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
import torch

from engine.boards import BOARD_TYPES, board_config
from engine.encoding import (
    CHANNELS,
    NUM_MOVE_TYPES,
    POLICY_CHANNELS,
    move_terms,
    policy_logits,
    relative_values,
    seat_values,
)
from engine.features import batch_planes
from engine.moves import CHOOSE_TERRITORY_OPTION, NO_LINE_ACTION, PROCESS_LINE, Move
from engine.net import (
    MAGIC,
    Arch,
    Evaluator,
    ModelBlobError,
    initial_model,
    load_model,
    padded_batch,
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


def _with_running_statistics(model, seed):
    """Batch-norm statistics and scales away from their initial 0/1, as training leaves
    them (folding them into the convolutions must then matter)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0.0, 0.3, generator=g)
                m.running_var.uniform_(0.5, 2.0, generator=g)
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.normal_(0.0, 0.2, generator=g)
    return model


def _module_priors(model, states, legal):
    """Priors and values the plain way: the module on all the planes, moves scored with
    move_terms' index arrays (as training scores them)."""
    cfg = states[0].board
    planes, scalars = batch_planes(states)
    with torch.no_grad():
        maps, type_logits, values = model.net(torch.from_numpy(planes),
                                              torch.from_numpy(scalars))
    types, t_move, t_index, t_weight, offsets = move_terms(legal, cfg)
    logits = type_logits.numpy()[np.repeat(np.arange(len(states)), np.diff(offsets)), types]
    np.add.at(logits, t_move, maps.numpy().reshape(-1)[t_index] * t_weight)
    priors = []
    for b in range(len(states)):
        x = logits[offsets[b]:offsets[b + 1]].astype(np.float64)
        e = np.exp(x - x.max())
        priors.append(e / e.sum())
    current = np.array([s.current for s in states])
    return priors, seat_values(values.numpy(), current, model.info.num_players)


@pytest.mark.parametrize("board", BOARD_TYPES)
@pytest.mark.parametrize("players", [2, 3, 4])
def test_the_evaluator_scores_as_the_module_does(board, players):
    # The evaluator folds batch norm, reads only the live planes and scores moves from
    # interned rows: none of it may change what the network says.
    model = _with_running_statistics(initial_model(board, players, Arch(8, 2, 8)), players)
    states = _positions(board, players, 9, seed=players + 10)
    legal = [legal_moves(s) for s in states]
    priors, values = Evaluator(model).evaluate(states, legal)
    want_priors, want_values = _module_priors(model, states, legal)
    assert np.abs(values - want_values).max() < 1e-5
    for got, want in zip(priors, want_priors, strict=True):
        assert np.abs(got - want).max() < 1e-5


def test_a_padded_batch_scores_each_position_as_it_scores_alone():
    evaluator = Evaluator(initial_model("hex8", 3, Arch(8, 1, 8)))
    states = _positions("hex8", 3, 11, seed=5)  # padded to 16
    assert padded_batch(len(states)) == 16
    legal = [legal_moves(s) for s in states]
    priors, values = evaluator.evaluate(states, legal)
    for b, state in enumerate(states):
        [alone], value = evaluator.evaluate([state], [legal[b]])
        assert np.abs(alone - priors[b]).max() < 1e-5
        assert np.abs(value[0] - values[b]).max() < 1e-5


def test_line_and_region_moves_are_scored_by_the_average_of_their_cells():
    cfg = board_config("square8")
    cells = (3, 4, 5, 6)
    lines = [[Move(PROCESS_LINE, 1, cells=cells, option=1), Move(NO_LINE_ACTION, 1)],
             [Move(CHOOSE_TERRITORY_OPTION, 2, cells=cells[:2])]]
    maps = np.random.default_rng(0).standard_normal(
        (2, POLICY_CHANNELS, cfg.size, cfg.size)).astype(np.float32)
    type_logits = np.zeros((2, NUM_MOVE_TYPES), dtype=np.float32)
    logits, offsets = policy_logits(maps, type_logits, lines, cfg)
    assert offsets.tolist() == [0, 2, 3]
    line_channel = CHANNELS.index("line1")
    region_channel = CHANNELS.index("region")
    assert logits[0] == pytest.approx(maps[0, line_channel].reshape(-1)[list(cells)].mean())
    assert logits[1] == 0.0
    assert logits[2] == pytest.approx(maps[1, region_channel].reshape(-1)[[3, 4]].mean())
