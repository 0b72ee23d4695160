"""Training: replay-checked games, symmetry augmentation, a candidate blob with its lineage."""

import random

import numpy as np
import pytest

from engine.net import initial_model, load_model, save_model
from engine.players import RandomPlayer, play_game
from engine.records import encode_move
from engine.state import initial_state
from engine.training import TrainingSettings, build_examples, symmetries, train
from storage.rows import new_game


def _games(count: int, seed: int = 0, board: str = "square8", n: int = 2) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for i in range(count):
        final, history = play_game(initial_state(board, n), [RandomPlayer()] * n, rng)
        rows.append(new_game(board, n, [encode_move(m) for m in history], list(final.ranks),
                             1000 + i, "node-a"))
    return rows


@pytest.mark.parametrize("board,count", [("square8", 8), ("hex8", 12)])
def test_symmetries_are_permutations_of_the_board_including_identity(board, count):
    perms = symmetries(board)
    assert len(perms) == count
    size = len(perms[0])
    assert any(np.array_equal(p, np.arange(size)) for p in perms)
    for p in perms:
        assert sorted(p.tolist()) == list(range(size))


def test_a_game_that_does_not_replay_is_rejected_and_counted():
    rows = _games(3)
    bad = dict(rows[1])
    bad["moves"] = bad["moves"][:5] + bad["moves"][6:]  # a move dropped: illegal from there
    lying = dict(rows[2])
    lying["rankings"] = list(reversed(lying["rankings"]))
    examples, used, rejected = build_examples([rows[0], bad, lying], "square8", 2)
    assert (used, rejected) == (1, 2)
    assert len(examples) == len(rows[0]["moves"])
    for target in examples.targets:
        assert target.sum() == pytest.approx(1.0)


def test_training_makes_a_candidate_with_its_parent_and_losses():
    parent = initial_model("square8", 2)
    parent_blob = save_model(parent)
    rows = _games(2, seed=1)
    rows.append({**rows[0], "moves": rows[0]["moves"][:3] + rows[0]["moves"][4:]})
    result = train(parent, "ab" * 32, rows, TrainingSettings(steps=4, batch_size=16))
    assert result.games_rejected == 1 and result.games_used == 2
    assert np.isfinite(result.policy_loss) and np.isfinite(result.value_loss)
    assert result.value_mse is not None and result.parent_value_mse is not None
    loaded = load_model(result.blob, "square8", 2)
    assert loaded.info.parent == "ab" * 32
    assert loaded.info.training["rejected"] == 1
    assert result.blob != parent_blob
    assert save_model(parent) == parent_blob  # the parent itself is untouched
