"""RegressionDetector and RollbackMonitor: every trigger at and around its threshold."""

import pytest

from engine.regression import (
    RegressionDetector,
    RollbackMonitor,
    Severity,
)


@pytest.mark.parametrize("drop,severity", [
    (19.9, None), (20.0, Severity.MINOR), (34.9, Severity.MINOR), (35.0, Severity.MODERATE),
    (49.9, Severity.MODERATE), (50.0, Severity.SEVERE), (74.9, Severity.SEVERE),
    (75.0, Severity.CRITICAL),
])
def test_severity_thresholds(drop, severity):
    event = RegressionDetector().check("m", -drop, 50, now=0.0)
    assert (event.severity if event else None) == severity


def test_fewer_than_50_games_are_not_judged():
    assert RegressionDetector().check("m", -80.0, 49, 0.0) is None


def test_cooldown_of_five_minutes_per_model():
    d = RegressionDetector()
    assert d.check("m", -40.0, 60, 0.0) is not None
    assert d.check("m", -40.0, 60, 299.9) is None
    assert d.check("other", -40.0, 60, 299.9) is not None
    assert d.check("m", -40.0, 60, 300.0) is not None


def test_consecutive_regressions_escalate_and_a_healthy_check_resets_the_streak():
    d = RegressionDetector()
    assert d.check("m", -21.0, 60, 0.0).severity is Severity.MINOR
    assert d.check("m", -21.0, 60, 300.0).severity is Severity.MINOR
    third = d.check("m", -21.0, 60, 600.0)
    assert third.severity is Severity.MODERATE and third.escalated and third.consecutive == 3
    assert d.check("m", -5.0, 60, 900.0) is None
    assert d.check("m", -21.0, 60, 1200.0).severity is Severity.MINOR


def test_rollback_needs_20_games():
    m = RollbackMonitor()
    assert not m.check("m", -100.0, 0.1, 19, 0.0).should_rollback
    assert m.check("m", -100.0, 0.1, 20, 0.0).should_rollback


@pytest.mark.parametrize("change,now", [(-60.1, True), (-60.0, False)])
def test_below_twice_the_threshold_rolls_back_at_once(change, now):
    assert RollbackMonitor().check("m", change, None, 30, 0.0).should_rollback is now


@pytest.mark.parametrize("rate,rolls", [(0.399, True), (0.40, False)])
def test_win_rate_under_the_minimum_rolls_back(rate, rolls):
    assert RollbackMonitor().check("m", 0.0, rate, 30, 0.0).should_rollback is rolls


def test_moderate_regression_with_a_drop_over_30_rolls_back():
    d, m = RegressionDetector(), RollbackMonitor()
    moderate = d.check("m", -36.0, 60, 0.0)
    assert moderate.severity is Severity.MODERATE
    assert m.check("m", -36.0, None, 60, 0.0, moderate).should_rollback
    minor = RegressionDetector().check("m", -31.0, 60, 0.0)
    assert not RollbackMonitor().check("m", -31.0, None, 60, 0.0, minor).should_rollback


def test_three_consecutive_checks_below_minus_30_within_the_window_roll_back():
    m = RollbackMonitor()
    assert not m.check("m", -30.5, None, 30, 0.0).should_rollback
    assert not m.check("m", -30.5, None, 30, 100.0).should_rollback
    verdict = m.check("m", -30.5, None, 30, 200.0)
    assert verdict.should_rollback and "3 consecutive" in verdict.reasons[-1]


def test_a_healthy_check_or_the_time_window_breaks_the_streak():
    m = RollbackMonitor()
    m.check("m", -31.0, None, 30, 0.0)
    m.check("m", -31.0, None, 30, 10.0)
    m.check("m", -29.0, None, 30, 20.0)  # at -29 the threshold is not crossed
    assert not m.check("m", -31.0, None, 30, 30.0).should_rollback
    late = RollbackMonitor()
    late.check("m", -31.0, None, 30, 0.0)
    late.check("m", -31.0, None, 30, 10.0)
    assert not late.check("m", -31.0, None, 30, 3700.0).should_rollback
