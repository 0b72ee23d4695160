"""Watching a promoted model: RegressionDetector grades Elo drops, RollbackMonitor decides
when production goes back to the previous model. The reference system's criteria.

Both are plain state machines: the caller passes the measurements (Elo change since the
promotion, from the pooled ratings; the model's recent score against its predecessor; games
counted) and `now` in seconds, so tests and the leader drive them alike without a clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Severity(IntEnum):
    MINOR = 1
    MODERATE = 2
    SEVERE = 3
    CRITICAL = 4


@dataclass(frozen=True, slots=True)
class RegressionCriteria:
    minor_drop: float = 20.0
    moderate_drop: float = 35.0
    severe_drop: float = 50.0
    critical_drop: float = 75.0
    min_games: int = 50
    cooldown_seconds: float = 300.0
    # This many regressions in a row raise the severity one level (a slow slide is as
    # worrying as one big drop).
    escalate_after: int = 3

    def __post_init__(self) -> None:
        drops = (self.minor_drop, self.moderate_drop, self.severe_drop, self.critical_drop)
        if not 0 < drops[0] < drops[1] < drops[2] < drops[3]:
            raise ValueError(f"severity drops {drops} must be positive and increasing")
        if self.min_games < 1 or self.cooldown_seconds < 0 or self.escalate_after < 2:
            raise ValueError("min_games >= 1, cooldown_seconds >= 0 and escalate_after >= 2")


@dataclass(frozen=True, slots=True)
class RegressionEvent:
    model_id: str
    severity: Severity
    elo_drop: float  # positive: how far the model fell
    games: int
    consecutive: int  # regressions in a row, this one included
    escalated: bool


class RegressionDetector:
    def __init__(self, criteria: RegressionCriteria | None = None) -> None:
        self.criteria = criteria or RegressionCriteria()
        self._last_event: dict[str, float] = {}
        self._consecutive: dict[str, int] = {}

    def severity(self, elo_drop: float) -> Severity | None:
        c = self.criteria
        for limit, severity in ((c.critical_drop, Severity.CRITICAL),
                                (c.severe_drop, Severity.SEVERE),
                                (c.moderate_drop, Severity.MODERATE),
                                (c.minor_drop, Severity.MINOR)):
            if elo_drop >= limit:
                return severity
        return None

    def check(self, model_id: str, elo_change: float, games: int, now: float
              ) -> RegressionEvent | None:
        """A regression event for a model whose Elo moved `elo_change` over `games` games, or
        None (no drop worth reporting, too few games, or within the model's cooldown)."""
        if games < self.criteria.min_games:
            return None
        severity = self.severity(-elo_change)
        if severity is None:
            self._consecutive[model_id] = 0  # a healthy check ends a streak
            return None
        last = self._last_event.get(model_id)
        if last is not None and now - last < self.criteria.cooldown_seconds:
            return None
        self._last_event[model_id] = now
        streak = self._consecutive.get(model_id, 0) + 1
        self._consecutive[model_id] = streak
        escalated = streak >= self.criteria.escalate_after and severity < Severity.CRITICAL
        if escalated:
            severity = Severity(severity + 1)
        return RegressionEvent(model_id, severity, -elo_change, games, streak, escalated)

    def forget(self, model_id: str) -> None:
        """Drop a model's history (it left production)."""
        self._last_event.pop(model_id, None)
        self._consecutive.pop(model_id, None)


@dataclass(frozen=True, slots=True)
class RollbackCriteria:
    elo_regression_threshold: float = -30.0
    min_games_for_regression: int = 20
    consecutive_checks_required: int = 3
    min_win_rate: float = 0.40
    time_window_seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.elo_regression_threshold >= 0:
            raise ValueError(f"elo_regression_threshold {self.elo_regression_threshold} must "
                             "be negative (an Elo change)")
        if self.min_games_for_regression < 1 or self.consecutive_checks_required < 1:
            raise ValueError("min_games_for_regression and consecutive_checks_required >= 1")
        if not 0.0 <= self.min_win_rate <= 1.0 or self.time_window_seconds <= 0:
            raise ValueError("min_win_rate in [0, 1] and time_window_seconds > 0")


@dataclass(frozen=True, slots=True)
class RollbackVerdict:
    should_rollback: bool
    reasons: tuple[str, ...]


class RollbackMonitor:
    def __init__(self, criteria: RollbackCriteria | None = None) -> None:
        self.criteria = criteria or RollbackCriteria()
        self._breaches: dict[str, list[float]] = {}  # times of checks below the threshold

    def check(self, model_id: str, elo_change: float, win_rate: float | None, games: int,
              now: float, regression: RegressionEvent | None = None) -> RollbackVerdict:
        """Whether production model `model_id` should be rolled back now."""
        c = self.criteria
        if games < c.min_games_for_regression:
            return RollbackVerdict(False, (f"{games} games (needs >= "
                                           f"{c.min_games_for_regression} to judge)",))
        reasons: list[str] = []
        if elo_change < 2 * c.elo_regression_threshold:
            reasons.append(f"Elo change {elo_change:+.1f} below twice the threshold "
                           f"({2 * c.elo_regression_threshold:+g}): immediate")
        if (regression is not None and regression.severity >= Severity.MODERATE
                and regression.elo_drop > -c.elo_regression_threshold):
            reasons.append(f"{regression.severity.name.lower()} regression, drop "
                           f"{regression.elo_drop:.1f} > {-c.elo_regression_threshold:g}")
        if win_rate is not None and win_rate < c.min_win_rate:
            reasons.append(f"win rate {win_rate:.3f} below {c.min_win_rate:.2f}")
        breaches = [t for t in self._breaches.get(model_id, ()) if now - t <= c.time_window_seconds]
        if elo_change < c.elo_regression_threshold:
            breaches.append(now)
            if len(breaches) >= c.consecutive_checks_required:
                reasons.append(f"Elo change below {c.elo_regression_threshold:+g} in "
                               f"{len(breaches)} consecutive checks within "
                               f"{c.time_window_seconds:g} s")
        else:
            breaches = []  # the streak must be consecutive
        self._breaches[model_id] = breaches
        if reasons:
            self._breaches.pop(model_id, None)
            return RollbackVerdict(True, tuple(reasons))
        return RollbackVerdict(False, (f"Elo change {elo_change:+.1f}, {len(breaches)} of "
                                       f"{c.consecutive_checks_required} checks below "
                                       f"{c.elo_regression_threshold:+g}",))
