"""Ratings are a pure function of the set of match rows (pooled Bradley-Terry fit)."""

import math
import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.ratings import BASE_ELO, drift, ratings, ratings_by_config, tally

PLAYERS = ["a", "b", "c", "d", "e"]


def _match(i: int, participants: list[str], result: list[float], board="square8") -> dict:
    return {"match_id": f"m{i}", "participants": participants, "board_type": board,
            "num_players": len(participants), "result": result, "hlc": i, "origin_node": "n"}


def _random_matches(seed: int, count: int) -> list[dict]:
    rnd = random.Random(seed)
    rows = []
    for i in range(count):
        n = rnd.choice([2, 2, 3, 4])
        who = rnd.sample(PLAYERS, n)
        result = [rnd.choice([0.0, 0.5, 1.0]) for _ in range(n)]
        rows.append(_match(i, who, result))
    return rows


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 60), st.randoms(use_true_random=False))
def test_ratings_are_bit_identical_whatever_order_the_rows_arrived_in(seed, count, rnd):
    rows = _random_matches(seed, count)
    shuffled = rows[:]
    rnd.shuffle(shuffled)
    a, b = ratings(rows), ratings(shuffled)
    assert a.participants == b.participants
    assert a.elo.tobytes() == b.elo.tobytes()
    assert a.stderr.tobytes() == b.stderr.tobytes()
    assert drift(a, b).max_abs == 0.0


def test_stronger_player_rates_higher_and_interval_contains_the_truth():
    rnd = random.Random(7)
    true = {"strong": 200.0, "mid": 0.0, "weak": -200.0}
    rows = []
    for i in range(3000):
        x, y = rnd.sample(sorted(true), 2)
        p = 1 / (1 + 10 ** ((true[y] - true[x]) / 400))
        rows.append(_match(i, [x, y], [1.0, 0.0] if rnd.random() < p else [0.0, 1.0]))
    table = ratings(rows)
    strong, mid, weak = table.get("strong"), table.get("mid"), table.get("weak")
    assert strong.elo > mid.elo > weak.elo
    # Differences are what the data pins down; the interval of each covers its true offset.
    assert abs((strong.elo - weak.elo) - 400) < 60
    for r in (strong, mid, weak):
        assert r.ci_low < r.elo < r.ci_high
        assert r.ci_high - r.ci_low < 60


def test_an_unbeaten_participant_gets_a_finite_rating_thanks_to_the_prior():
    rows = [_match(i, ["winner", "loser"], [1.0, 0.0]) for i in range(20)]
    table = ratings(rows)
    assert all(math.isfinite(x) for x in table.elo)
    assert table.get("winner").elo > table.get("loser").elo
    assert math.isclose(table.elo.mean(), BASE_ELO, abs_tol=1e-6)


def test_four_player_ranking_decomposes_into_pairwise_games_of_weight_one_third():
    t = tally([_match(0, ["a", "b", "c", "d"], [1.0, 0.5, 0.5, 0.0])])
    pairs = {(t.participants[i], t.participants[j]): (p / 12, g / 12)
             for i, j, p, g in zip(t.lo, t.hi, t.points, t.games)}
    third = 1 / 3
    assert pairs[("a", "b")] == (third, third)
    assert pairs[("b", "c")] == (third / 2, third)  # equal results: a draw
    assert pairs[("c", "d")] == (third, third)
    assert pairs[("a", "d")] == (third, third)
    table = ratings([_match(0, ["a", "b", "c", "d"], [1.0, 0.5, 0.5, 0.0])])
    assert table.get("a").games == 1.0  # one match, one game's weight per participant
    a, b, c, d = (table.get(p).elo for p in "abcd")
    assert a > b and math.isclose(b, c) and c > d


def test_a_participant_listed_twice_in_a_match_is_not_rated_against_itself():
    table = ratings([_match(0, ["a", "a"], [1.0, 0.0])])
    assert table.participants == ("a",)
    assert table.get("a").games == 0.0


def test_ratings_by_config_fits_each_config_alone():
    rows = [_match(0, ["a", "b"], [1.0, 0.0]), _match(1, ["a", "b"], [0.0, 1.0], board="hex8")]
    tables = ratings_by_config(rows)
    assert set(tables) == {("square8", 2), ("hex8", 2)}
    assert tables[("square8", 2)].get("a").elo > tables[("square8", 2)].get("b").elo
    assert tables[("hex8", 2)].get("a").elo < tables[("hex8", 2)].get("b").elo


def test_drift_comes_only_from_missing_rows_and_names_the_worst_participant():
    rows = _random_matches(3, 200)
    full, partial = ratings(rows), ratings(rows[:150])
    report = drift(full, partial)
    assert report.max_abs > 0 and report.worst in full.participants
    assert drift(full, ratings(list(reversed(rows)))).max_abs == 0.0
    extra = ratings(rows + [_match(999, ["a", "zed"], [1.0, 0.0])])
    assert drift(full, extra).only_in_b == ("zed",)


def test_empty_match_set_gives_an_empty_table():
    table = ratings([])
    assert len(table) == 0 and table.ranked() == []
    assert np.array_equal(table.elo, np.zeros(0))
