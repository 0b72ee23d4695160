"""Evaluation trials: seats rotate, scores are pairwise, and a test rebuilds from match rows."""

import random

from engine.evaluation import (
    HEURISTIC,
    RANDOM,
    GameResult,
    PolicyPlayer,
    match_id,
    pairwise_score,
    parse_match_id,
    play_trial,
    rank_scores,
    trial_score,
    trial_scores,
    trial_seats,
)
from engine.net import initial_model
from engine.players import RandomPlayer

CAND = "c" * 64
PROD = "p" * 64


def test_two_player_trial_is_a_colour_swapped_pair():
    assert trial_seats(CAND, PROD, 2) == [(CAND, PROD), (PROD, CAND)]


def test_multiplayer_round_puts_the_candidate_in_every_seat_mixed_with_baselines():
    seats = trial_seats(CAND, PROD, 4)
    assert [s.index(CAND) for s in seats] == [0, 1, 2, 3]
    for s in seats:
        assert sorted(s) == sorted([CAND, PROD, HEURISTIC, RANDOM])


def test_rank_scores_and_pairwise_scores():
    assert rank_scores([1, 2]) == (1.0, 0.0)
    assert rank_scores([2, 1, 3]) == (0.5, 1.0, 0.0)
    game = GameResult((PROD, CAND, HEURISTIC), (0.5, 0.5, 0.0), 10)
    assert pairwise_score(game, CAND, PROD) == 0.5
    pair = [GameResult((CAND, PROD), (1.0, 0.0), 1), GameResult((PROD, CAND), (1.0, 0.0), 1)]
    assert trial_score(pair, CAND, PROD) == 0.5


def test_match_ids_round_trip_and_foreign_ids_are_ignored():
    mid = match_id(CAND, RANDOM, 7, 1)
    assert parse_match_id(mid) == (CAND[:16], RANDOM, 7, 1)
    assert parse_match_id("some-other-match") is None


def test_a_played_trial_gives_match_rows_that_rebuild_its_score():
    players = {CAND: RandomPlayer(), RANDOM: RandomPlayer()}
    games = play_trial(players, CAND, RANDOM, "square8", 2, seed=5)
    assert len(games) == 2 and all(g.moves > 0 for g in games)
    rows = [{"match_id": match_id(CAND, RANDOM, 3, i), "participants": list(g.participants),
             "result": list(g.result)} for i, g in enumerate(games)]
    random.Random(1).shuffle(rows)
    assert trial_scores(rows, CAND, RANDOM, 2) == {3: trial_score(games, CAND, RANDOM)}
    assert trial_scores(rows[:1], CAND, RANDOM, 2) == {}  # half a pair is no trial yet


def test_a_policy_player_plays_legal_moves_and_an_unfinished_game_is_a_draw():
    player = PolicyPlayer(initial_model("square8", 2), opening_moves=4)
    players = {CAND: player, RANDOM: RandomPlayer()}
    first = play_trial(players, CAND, RANDOM, "square8", 2, seed=1, max_moves=10)
    assert all(g.moves == 10 for g in first)
    assert all(g.result == (0.5, 0.5) for g in first)  # unfinished: scored a draw
