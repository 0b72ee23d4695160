"""The sequential probability ratio test that decides a promotion, on colour-swapped pairs.

A *trial* is one unit of paired play, scored in [0, 1] for the candidate: in 2-player configs
a pair of games with colours swapped (its score is a pentanomial outcome: 0, 1/4, 1/2, 3/4, 1),
in 3-4 player configs a round that rotates the candidate through every seat (its mean pairwise
score). Pairing cancels the first-move advantage, and the trial variance measured from the
data (not the 1/4 of independent games) carries what pairing gains, as fishtest's pentanomial
statistics do.

The test is the generalised SPRT with the normal approximation fishtest and Leela Zero use:

    LLR = N * (s1 - s0) * (2 * mean - s0 - s1) / (2 * var)

with s0, s1 the expected scores at elo0, elo1 (logistic Elo) and mean, var the trial scores'
sample mean and variance. Wald's bounds: accept H1 at LLR >= log((1 - beta) / alpha), accept H0
at LLR <= log(beta / (1 - alpha)).

Results are counted in dispatch order: trial k counts only once trials 0..k-1 are in, so a
candidate whose wins come back faster than its losses gains nothing. Nothing is decided before
`min_games` (a handful of lucky pairs must not end a test either way). At `max_games` the test
is truncated: it passes only if the one-sided lower confidence bound of the mean (at 1 - alpha)
is above 1/2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

# Below this sample variance a trial series carries too little spread to trust: an all-won
# start would otherwise make the LLR infinite. Independent games at 50% give 0.125 a pair.
VAR_FLOOR = 0.01


def elo_to_score(elo: float) -> float:
    return 1.0 / (1.0 + 10.0 ** (-elo / 400.0))


def score_to_elo(score: float) -> float:
    score = min(max(score, 1e-6), 1.0 - 1e-6)
    return -400.0 * math.log10(1.0 / score - 1.0)


def _normal_quantile(p: float) -> float:
    """Inverse of the standard normal CDF (Acklam's rational approximation, |error| < 1.2e-9)."""
    a = (-3.969683028665376e01, 2.209460984245205e02, -2.759285104469687e02,
         1.383577518672690e02, -3.066479806614716e01, 2.506628277459239e00)
    b = (-5.447609879822406e01, 1.615858368580409e02, -1.556989798598866e02,
         6.680131188771972e01, -1.328068155288572e01)
    c = (-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e00,
         -2.549732539343734e00, 4.374664141464968e00, 2.938163982698783e00)
    d = (7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e00,
         3.754408661907416e00)
    if not 0.0 < p < 1.0:
        raise ValueError(f"quantile of p={p!r}, expected 0 < p < 1")
    if p < 0.02425:
        q = math.sqrt(-2 * math.log(p))
        return (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) / \
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1)
    if p > 1 - 0.02425:
        return -_normal_quantile(1 - p)
    q = p - 0.5
    r = q * q
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q / \
        (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1)


@dataclass(frozen=True, slots=True)
class SprtParams:
    """The test's parameters; their defaults and the reasons live in PromotionCriteria."""

    elo0: float
    elo1: float
    alpha: float
    beta: float
    min_games: int
    max_games: int

    def __post_init__(self) -> None:
        if not self.elo1 > self.elo0:
            raise ValueError(f"elo1 {self.elo1} must be above elo0 {self.elo0}")
        for name in ("alpha", "beta"):
            value = getattr(self, name)
            if not 0.0 < value < 0.5:
                raise ValueError(f"{name} {value} must be in (0, 0.5)")
        if not 0 < self.min_games <= self.max_games:
            raise ValueError(f"need 0 < min_games {self.min_games} <= max_games {self.max_games}")

    @property
    def lower(self) -> float:
        return math.log(self.beta / (1.0 - self.alpha))

    @property
    def upper(self) -> float:
        return math.log((1.0 - self.beta) / self.alpha)


class Verdict(Enum):
    RUNNING = "running"
    ACCEPT_H1 = "accept_h1"  # the candidate is stronger by about elo1
    ACCEPT_H0 = "accept_h0"  # it is not stronger than elo0
    TRUNCATED_PASS = "truncated_pass"  # max_games reached, lower bound above 1/2
    TRUNCATED_FAIL = "truncated_fail"

    @property
    def passed(self) -> bool:
        return self in (Verdict.ACCEPT_H1, Verdict.TRUNCATED_PASS)


class PairedSprt:
    """One candidate's test against one opponent; feed it trials as they come back."""

    def __init__(self, params: SprtParams, games_per_trial: int = 2) -> None:
        if games_per_trial < 2:
            raise ValueError(f"games_per_trial {games_per_trial} must be >= 2 (paired play)")
        self.params = params
        self.games_per_trial = games_per_trial
        self._s0 = elo_to_score(params.elo0)
        self._s1 = elo_to_score(params.elo1)
        self._z = _normal_quantile(1.0 - params.alpha)
        self._pending: dict[int, float] = {}
        self._next = 0  # dispatch index of the next trial to count
        self.trials = 0
        self._sum = 0.0
        self._sum_sq = 0.0
        self.llr = 0.0
        self.verdict = Verdict.RUNNING
        self.pentanomial = [0, 0, 0, 0, 0]  # 2-player trials by outcome 0, 1/4, ..., 1

    @property
    def games(self) -> int:
        return self.trials * self.games_per_trial

    @property
    def mean(self) -> float | None:
        return self._sum / self.trials if self.trials else None

    @property
    def variance(self) -> float:
        if self.trials < 2:
            return VAR_FLOOR
        m = self._sum / self.trials
        return max((self._sum_sq - self.trials * m * m) / (self.trials - 1), VAR_FLOOR)

    @property
    def elo(self) -> float | None:
        m = self.mean
        return None if m is None else score_to_elo(m) + 0.0  # no "-0.0" at an even score

    def lower_bound(self) -> float | None:
        """One-sided lower confidence bound (1 - alpha) of the mean trial score."""
        m = self.mean
        if m is None:
            return None
        return m - self._z * math.sqrt(self.variance / self.trials)

    def add(self, index: int, score: float) -> Verdict:
        """Trial `index` (its dispatch order, from 0) scored `score` in [0, 1] for the candidate.

        Out-of-order results wait until every earlier trial is in; a repeated index is ignored
        (an assignment retried after a lost reply must not count twice).
        """
        if not 0.0 <= score <= 1.0 or math.isnan(score):
            raise ValueError(f"trial score {score!r}, expected a number in [0, 1]")
        if index < self._next or index in self._pending or index < 0:
            return self.verdict
        self._pending[index] = score
        while self._next in self._pending and self.verdict is Verdict.RUNNING:
            self._count(self._pending.pop(self._next))
            self._next += 1
        return self.verdict

    def _count(self, score: float) -> None:
        self.trials += 1
        self._sum += score
        self._sum_sq += score * score
        if self.games_per_trial == 2:
            self.pentanomial[min(4, max(0, round(score * 4)))] += 1
        m = self._sum / self.trials
        p = self.params
        self.llr = self.trials * (self._s1 - self._s0) * (2 * m - self._s0 - self._s1) / (
            2 * self.variance)
        if self.games < p.min_games:
            return
        if self.llr >= p.upper:
            self.verdict = Verdict.ACCEPT_H1
        elif self.llr <= p.lower:
            self.verdict = Verdict.ACCEPT_H0
        elif self.games >= p.max_games:
            bound = self.lower_bound()
            self.verdict = (Verdict.TRUNCATED_PASS if bound is not None and bound > 0.5
                            else Verdict.TRUNCATED_FAIL)

    def summary(self) -> str:
        elo = self.elo
        return (f"SPRT({self.params.elo0:g},{self.params.elo1:g}) {self.verdict.value}: "
                f"LLR {self.llr:+.2f} in [{self.params.lower:.2f}, {self.params.upper:.2f}], "
                f"{self.games} games, Elo {'n/a' if elo is None else f'{elo:+.1f}'}")
