"""Search and batched selfplay: wins found at few simulations, legal games on every config."""

from __future__ import annotations

import random
from bisect import bisect_right
from itertools import accumulate

import numpy as np
import pytest
import torch

from engine.net import Arch, Evaluator, initial_model
from engine.records import check_finished, encode_move, start_state
from engine.rules import apply_move, apply_move_in_place, legal_moves
from engine.search import (
    SearchConfig,
    improved_policy,
    policy_move,
    policy_picks,
    run_one,
    search,
)
from engine.selfplay import SelfplayRunner
from engine.state import ACTIVE
from storage.rows import new_game, validate_game

TINY = Arch(channels=4, blocks=1, value_hidden=4)


@pytest.fixture(autouse=True)
def one_thread():
    # Tiny batches: threads only contend (the default run shares two cores).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _winning_positions(board: str, players: int, want: int, seed: int = 0):
    """Positions from random games where some legal move wins at once for the mover and
    most do not (the mover wins only if it picks one of the few)."""
    rng = random.Random(seed)
    found = []
    while len(found) < want:
        state = __import__("engine").initial_state(board, players)
        while state.status == ACTIVE:
            moves = legal_moves(state)
            if 4 <= len(moves) <= 24:
                wins = [i for i, m in enumerate(moves)
                        if apply_move(state, m).winner == state.current
                        and apply_move(state, m).status != ACTIVE]
                if wins and len(wins) <= len(moves) // 4:
                    found.append((state.copy(), set(wins)))
                    break
            apply_move_in_place(state, rng.choice(moves))
    return found


@pytest.mark.parametrize("algorithm,simulations", [("gumbel", 24), ("puct", 48)])
def test_search_finds_the_winning_move_at_low_simulation_counts(algorithm, simulations):
    evaluator = Evaluator(initial_model("square8", 2, TINY))
    config = SearchConfig(algorithm, simulations, considered=24)
    positions = _winning_positions("square8", 2, 2)
    for i, (state, wins) in enumerate(positions):
        result = run_one(search(state, config, np.random.default_rng(i), noise=False),
                         evaluator.evaluate)
        assert result.move in wins, (state.phase, wins, result)
        assert result.value > 0.0


def test_the_gumbel_policy_target_moves_towards_the_better_moves():
    evaluator = Evaluator(initial_model("square8", 2, TINY))
    state, wins = _winning_positions("square8", 2, 1, seed=4)[0]
    result = run_one(search(state, SearchConfig("gumbel", 32, considered=32),
                            np.random.default_rng(0)), evaluator.evaluate)
    assert result.policy is not None and abs(result.policy.sum() - 1.0) < 1e-6
    [prior], _ = evaluator.evaluate([state], [legal_moves(state)])
    gained = sum(result.policy[w] - prior[w] for w in wins)
    assert gained > 0.2
    assert result.evaluations <= 32 + 1


def test_puct_spends_exactly_its_simulations_and_targets_visit_counts():
    evaluator = Evaluator(initial_model("hex8", 3, TINY))
    state = __import__("engine").initial_state("hex8", 3)
    result = run_one(search(state, SearchConfig("puct", 10), np.random.default_rng(1)),
                     evaluator.evaluate)
    assert result.policy is not None
    assert np.allclose(result.policy * 10, np.round(result.policy * 10))  # visits / 10


@pytest.mark.parametrize("board,players,config", [
    ("square8", 2, SearchConfig("gumbel", 3, considered=3)),
    ("hex8", 3, SearchConfig("puct", 2)),
])
def test_selfplay_games_make_valid_rows_that_replay_legally(board, players, config):
    # Every board and player count is covered where the node stores games
    # (tests/node/test_selfplay_worker.py); here the searches' own records.
    evaluator = Evaluator(initial_model(board, players, TINY))
    runner = SelfplayRunner(evaluator.evaluate, board, players, config, concurrency=2,
                            seed=players, games=2)
    games = runner.run()
    assert len(games) == runner.counters.games == 2
    for game in games:
        row = new_game(**game.row_fields(), created_hlc=1, origin_node="n", model_sha="a" * 64)
        validate_game(row)
        check_finished(board, players, players == 2, row["moves"], row["policy"],
                       row["rankings"], row["winner"])
        assert row["search"]["algorithm"] == config.algorithm
    assert runner.counters.moves == sum(len(g.moves) for g in games)
    assert runner.counters.positions == evaluator.positions_evaluated


def test_many_games_share_each_batch_and_a_move_cap_discards_a_game():
    evaluator = Evaluator(initial_model("square8", 2, TINY))
    sizes = []

    def evaluate(states, legal):
        sizes.append(len(states))
        return evaluator.evaluate(states, legal)

    runner = SelfplayRunner(evaluate, "square8", 2, SearchConfig("policy"), concurrency=3,
                            games=3)
    assert len(runner.run()) == 3
    assert sizes[0] == 3 and max(sizes) == 3
    capped = SelfplayRunner(evaluator.evaluate, "square8", 2, SearchConfig("policy"),
                            concurrency=2, games=2, max_moves=10)
    assert capped.run() == [] and capped.counters.discarded == 2


def test_improved_policy_of_an_unvisited_node_is_the_prior():
    evaluator = Evaluator(initial_model("square8", 2, TINY))
    state = __import__("engine").initial_state("square8", 2)
    from engine.search import expand
    gen = expand(state)
    request = next(gen)
    priors, values = evaluator.evaluate([request[0]], [request[1]])
    try:
        gen.send((priors[0], values[0]))
    except StopIteration as stop:
        node = stop.value
    assert np.allclose(improved_policy(node, SearchConfig()), priors[0], atol=1e-5)


def _reference_pick(weights, u):
    """Inverse CDF one position at a time: the first index whose running total exceeds
    u times the total."""
    cumulative = list(accumulate(weights.tolist()))
    return min(bisect_right(cumulative, u * cumulative[-1]), len(weights) - 1)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_a_batch_of_policy_picks_draws_as_each_position_would_alone(temperature):
    rng = np.random.default_rng(3)
    sizes = rng.integers(1, 40, size=200)
    priors = [rng.dirichlet(np.full(k, 0.3)).astype(np.float32) for k in sizes]
    priors[7][:] = 0.0
    priors[7][-1] = 1.0  # all the weight on the last move
    uniforms = rng.random(len(priors))
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    picks = policy_picks(np.concatenate(priors), offsets, uniforms, temperature)
    want = [_reference_pick(p.astype(np.float64) ** (1.0 / temperature), u)
            for p, u in zip(priors, uniforms, strict=True)]
    assert picks.tolist() == want
    assert picks[7] == sizes[7] - 1


def test_policy_only_selfplay_repeats_from_its_seed_and_draws_from_each_games_generator():
    evaluator = Evaluator(initial_model("square8", 2, TINY))

    def games(seed):
        return [g.moves for g in SelfplayRunner(evaluator.evaluate, "square8", 2,
                                                SearchConfig("policy"), concurrency=4,
                                                seed=seed, games=4).run()]

    first = games(5)
    assert games(5) == first
    assert games(6) != first
    # Game i draws from default_rng([seed, i]): the same draws one position at a time
    # (policy_move, evaluated alone) give the same game.
    state = start_state("square8", 2, True)
    rng = np.random.default_rng([5, 0])
    played = []
    while state.status == ACTIVE:
        legal = legal_moves(state)
        if len(legal) == 1:
            move = legal[0]
        else:
            move = legal[run_one(policy_move(state, SearchConfig("policy"), rng, legal=legal),
                                 evaluator.evaluate).move]
        played.append(encode_move(move))
        apply_move_in_place(state, move)
    assert played in first
