"""Drift reports and history, as plain data: the differences named exactly."""

from __future__ import annotations

from dataclasses import replace

from node import drift
from storage.rows import new_match

T = drift.Thresholds(max_elo=50.0, avg_elo=25.0)


def score_ratings(rows):
    """A stand-in rating: 400 Elo per point of mean score, so a changed result moves it by a
    known amount (the bookkeeping under test does not depend on how ratings are fitted)."""
    totals: dict[str, list[float]] = {}
    for row in rows:
        for p, r in zip(row["participants"], row["result"], strict=True):
            totals.setdefault(p, []).append(r)
    return {p: 1500 + 400 * (sum(v) / len(v) - 0.5) for p, v in totals.items()}


def match(mid, a, b, score, hlc=1, origin="n1", board="square8", players=2):
    return new_match(mid, [a, b], board, players, [score, 1.0 - score], hlc, origin)


def compare(mine, theirs, config=("square8", 2)):
    return drift.compare(mine, theirs, source="me", target="peer:1", config=config,
                         thresholds=T, ratings=score_ratings, checked_at=1000.0)


def test_identical_rows_have_no_drift_and_no_differing_matches():
    rows = [match("m1", "a", "b", 1.0), match("m2", "a", "b", 0.0)]
    report = compare(rows, list(rows))
    assert (report.max_rating_diff, report.avg_rating_diff, report.is_significant) == (0, 0, False)
    assert report.matches.empty and report.participants_in_both == 2


def test_missing_rows_and_a_conflicting_row_are_named_with_the_rating_difference():
    shared = [match("m1", "a", "b", 1.0), match("m2", "a", "b", 0.0)]
    mine = [*shared, match("m3", "a", "c", 1.0), match("m5", "a", "b", 1.0, hlc=5)]
    theirs = [*shared, match("m4", "b", "c", 1.0), match("m5", "a", "b", 0.0, hlc=6,
                                                          origin="n2")]
    report = compare(mine, theirs)
    assert report.matches.only_source == ("m3",)
    assert report.matches.only_target == ("m4",)
    assert report.matches.differing == ("m5",)
    assert report.participants_in_source == 3 and report.participants_in_target == 3
    # a: mine 1,0,1,1 -> 0.75; theirs 1,0,0 -> 1/3.  400 * (0.75 - 1/3) = 166.67.
    assert report.rating_diffs["a"] == round(400 * (0.75 - 1 / 3), 3)
    assert report.max_rating_diff == round(400 * (0.75 - 1 / 3), 3)
    assert report.is_significant


def test_significance_by_mean_alone_and_noise_left_out_of_the_listed_diffs():
    small = drift.Thresholds(max_elo=1000.0, avg_elo=10.0)
    mine = [match("m1", "a", "b", 0.55)]
    theirs = [match("m1", "a", "b", 0.5, hlc=2)]
    report = drift.compare(mine, theirs, source="me", target="p", config=None,
                           thresholds=small, ratings=score_ratings, checked_at=0.0)
    assert report.avg_rating_diff == 20.0 and report.is_significant
    assert set(report.rating_diffs) == {"square8/2p:a", "square8/2p:b"}
    same = drift.compare(mine, [match("m1", "a", "b", 0.5501, hlc=2)], source="me",
                         target="p", config=None, thresholds=small, ratings=score_ratings,
                         checked_at=0.0)
    assert same.rating_diffs == {} and not same.is_significant


def test_one_config_leaves_the_others_out():
    rows = [match("m1", "a", "b", 1.0), match("h1", "x", "y", 1.0, board="hex8")]
    report = compare(rows, rows[:1], config=("square8", 2))
    assert report.matches.empty


def snaps(*diffs, significant=None, start=0.0, step=600.0):
    return [{"checked_at": start + i * step, "max_rating_diff": d, "avg_rating_diff": d / 2,
             "is_significant": (significant if significant is not None else d > 50),
             "participants": 2} for i, d in enumerate(diffs)]


def test_trend_persistence_and_average_over_the_last_hour():
    assert drift.trend(snaps(10, 20)) == "unknown"
    assert drift.trend(snaps(100, 100, 40, 30, 20)) == "improving"
    assert drift.trend(snaps(10, 10, 10, 30, 40)) == "worsening"
    assert drift.trend(snaps(50, 52, 49, 51, 50)) == "stable"
    assert drift.persistent(snaps(10, 60, 70, 80))
    assert not drift.persistent(snaps(60, 70, 10))
    history = snaps(300, 100, 200, start=0.0, step=1800.0)  # at 0 s, 1800 s, 3600 s
    assert drift.avg_last_hour(history, now=3600.0 + 1000.0) == 150.0
    assert drift.avg_last_hour(history, now=100_000.0) == 0.0


def test_history_keeps_the_newest_snapshots_and_survives_bad_stored_state():
    history: dict = {}
    for i in range(5):
        report = compare([match("m1", "a", "b", 1.0)], [match("m1", "a", "b", 1.0)])
        drift.add_snapshot(history, replace(report, checked_at=float(i)), keep=3)
    assert [s["checked_at"] for s in history["square8_2"]] == [2.0, 3.0, 4.0]
    summary = drift.summarise(history, now=10.0)["square8_2"]
    assert summary["snapshot_count"] == 3 and summary["trend"] == "stable"
    assert drift.check_history({"x": [{"checked_at": "yesterday"}], 3: []}) == {}
    assert drift.check_history(history) == history
    assert drift.check_history(["not", "a", "map"]) == {}
