"""Elo ratings as a pure function of the set of match rows.

The leaderboard is a pooled Bradley-Terry maximum-likelihood fit over every match of a config,
never a chain of per-match updates (a chain depends on arrival order, so two nodes holding the
same rows would disagree). A small virtual-draw prior (`prior_draws` draws of every participant
against a virtual opponent rated `BASE_ELO`) keeps the fit finite for a participant that only
won or only lost. Ratings are reported as offsets from the pool's mean, `BASE_ELO`.

Order independence is exact, not approximate: every match is first reduced to integer tallies
per pair of participants (a win, draw or loss, weighted 6/(n-1) so a 2, 3 or 4 player match
counts as one game per opponent-set), and integer sums do not depend on the order they are
added in. Participants are indexed in sorted id order, pairs in sorted index order, so the
Newton iterations that follow see the same arrays whatever order the rows arrived in, and give
bit-identical ratings on one platform (within the solver tolerance, far below 1e-9 Elo, across
platforms).

A 3 or 4 player match is decomposed pairwise: each pair of its participants scores as a game
won by the one with the higher result (a draw when equal), weighted 1/(n-1), so a participant's
total weight per match is 1 whatever the player count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

BASE_ELO = 1500.0
ELO_PER_NAT = 400.0 / math.log(10.0)
PRIOR_DRAWS = 2.0  # BayesElo's default: enough to keep all-win records finite, small next to data
Z_95 = 1.959963984540054
# Pair tallies are kept in twelfths of a game: 6/(n-1) is an integer for n = 2, 3, 4, and a
# score is counted in half points (win 2, draw 1, loss 0).
_UNITS = 12.0
_PAIR_WEIGHT = {2: 6, 3: 3, 4: 2}
_MAX_NEWTON_STEPS = 200
_STEP_TOLERANCE = 1e-12  # in natural-log strength units; ~4e-10 Elo


@dataclass(frozen=True, slots=True)
class Rating:
    participant: str
    elo: float
    ci_low: float
    ci_high: float
    games: float  # games counted in the fit: pairwise, each weighted 1/(n-1)


@dataclass(frozen=True, slots=True)
class PairTallies:
    """A match set reduced to per-pair integer tallies (in twelfths of a game)."""

    participants: tuple[str, ...]  # sorted
    lo: np.ndarray  # int64 index of the pair's first (lower-index) participant
    hi: np.ndarray  # int64 index of the second
    points: np.ndarray  # float64 (integer-valued): lo's score, twelfths of a game
    games: np.ndarray  # float64 (integer-valued): games between lo and hi, twelfths


@dataclass(frozen=True, slots=True)
class RatingTable:
    """Ratings of one config's participants, in sorted participant order."""

    participants: tuple[str, ...]
    elo: np.ndarray
    stderr: np.ndarray  # of elo
    games: np.ndarray

    def __len__(self) -> int:
        return len(self.participants)

    def index(self, participant: str) -> int:
        i = int(np.searchsorted(np.asarray(self.participants, dtype=object), participant))
        if i >= len(self.participants) or self.participants[i] != participant:
            raise KeyError(participant)
        return i

    def get(self, participant: str, z: float = Z_95) -> Rating:
        """One participant's rating with its confidence interval (95% by default)."""
        i = self.index(participant)
        elo, se = float(self.elo[i]), float(self.stderr[i])
        return Rating(participant, elo, elo - z * se, elo + z * se, float(self.games[i]))

    def ranked(self, z: float = Z_95) -> list[Rating]:
        """Every rating, strongest first (ties by id, so the order is deterministic)."""
        order = sorted(range(len(self)), key=lambda i: (-self.elo[i], self.participants[i]))
        return [self.get(self.participants[i], z) for i in order]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.participants, self.elo.tolist(), strict=True))


def _pair_outcomes(matches: Iterable[Mapping]) -> tuple[list[str], np.ndarray, np.ndarray,
                                                         np.ndarray]:
    """Every (a, b) pair of every match, as provisional participant numbers (order of first
    sight, so they depend on arrival order: `tally` renumbers them by sorted id) and a code
    carrying the pair's weight and a's half points."""
    number: dict[str, int] = {}
    first: list[int] = []
    second: list[int] = []
    codes: list[int] = []  # weight * 4 + half points (0, 1, 2): one int carries both
    for row in matches:
        players: Sequence[str] = row["participants"]
        result: Sequence[float] = row["result"]
        n = len(players)
        weight = _PAIR_WEIGHT[n] * 4
        if n == 2:  # the common case, without the pair loops
            a, b = players
            if a != b:
                ra, rb = result
                first.append(number.setdefault(a, len(number)))
                second.append(number.setdefault(b, len(number)))
                codes.append(weight + (2 if ra > rb else 1 if ra == rb else 0))
            else:
                number.setdefault(a, len(number))
            continue
        for i in range(n - 1):
            a = players[i]
            ia = number.setdefault(a, len(number))
            ri = result[i]
            for j in range(i + 1, n):
                b = players[j]
                if a == b:
                    continue  # a participant against itself says nothing about strength
                rj = result[j]
                first.append(ia)
                second.append(number.setdefault(b, len(number)))
                codes.append(weight + (2 if ri > rj else 1 if ri == rj else 0))
        if n and players[-1] not in number:
            number[players[-1]] = len(number)
    ids = sorted(number)
    renumber = np.empty(len(ids), dtype=np.int64)
    renumber[[number[p] for p in ids]] = np.arange(len(ids), dtype=np.int64)
    return (ids, renumber[np.asarray(first, dtype=np.int64)],
            renumber[np.asarray(second, dtype=np.int64)], np.asarray(codes, dtype=np.int64))


def tally(matches: Iterable[Mapping]) -> PairTallies:
    """Reduce match rows (wire dicts with `participants` and `result`) to pair tallies."""
    ids, a, b, code = _pair_outcomes(matches)
    if not len(code):
        empty = np.zeros(0, dtype=np.int64)
        return PairTallies(tuple(ids), empty, empty, empty.astype(float), empty.astype(float))
    weight, half_points = code // 4, code % 4
    swap = a > b
    lo = np.where(swap, b, a)
    hi = np.where(swap, a, b)
    half_points = np.where(swap, 2 - half_points, half_points)
    keys, inverse = np.unique(lo * len(ids) + hi, return_inverse=True)
    # Integer-valued sums below 2**53 are exact in float64, so bincount's order cannot matter.
    points = np.bincount(inverse, weights=(weight * half_points).astype(np.float64))
    games = np.bincount(inverse, weights=(weight * 2).astype(np.float64))
    return PairTallies(tuple(ids), keys // len(ids), keys % len(ids), points, games)


def _log_likelihood(theta: np.ndarray, t: PairTallies, prior: float) -> float:
    d = theta[t.lo] - theta[t.hi]
    # log sigma(x) = -log1p(exp(-x)), written stably for both signs.
    ll = float(np.sum(-(t.points * np.logaddexp(0.0, -d) + (t.games - t.points)
                        * np.logaddexp(0.0, d)))) / _UNITS
    return ll - prior * 0.5 * float(np.sum(np.logaddexp(0.0, -theta) + np.logaddexp(0.0, theta)))


def fit(t: PairTallies, prior_draws: float = PRIOR_DRAWS) -> RatingTable:
    """The Bradley-Terry maximum a posteriori ratings of pair tallies (damped Newton)."""
    if prior_draws <= 0:
        raise ValueError(f"prior_draws {prior_draws} must be > 0: without it an unbeaten "
                         "participant has no finite rating")
    n = len(t.participants)
    theta = np.zeros(n)
    points, games = t.points / _UNITS, t.games / _UNITS
    hessian = np.zeros((n, n))
    ll = _log_likelihood(theta, t, prior_draws)
    for _ in range(_MAX_NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(theta[t.hi] - theta[t.lo]))
        r = points - games * p
        q = 1.0 / (1.0 + np.exp(-theta))
        grad = (np.bincount(t.lo, weights=r, minlength=n) - np.bincount(t.hi, weights=r, minlength=n)
                + prior_draws * (0.5 - q))
        w = games * p * (1.0 - p)
        info_diag = (np.bincount(t.lo, weights=w, minlength=n)
                     + np.bincount(t.hi, weights=w, minlength=n) + prior_draws * q * (1.0 - q))
        hessian.fill(0.0)  # the observed information matrix, positive definite thanks to the prior
        hessian[t.lo, t.hi] = -w
        hessian[t.hi, t.lo] = -w
        hessian[np.arange(n), np.arange(n)] = info_diag
        step = np.linalg.solve(hessian, grad)
        scale = 1.0
        while True:  # the likelihood is concave: halving the step always finds an increase
            candidate = theta + scale * step
            cand_ll = _log_likelihood(candidate, t, prior_draws)
            if cand_ll >= ll or scale < 1e-6:
                break
            scale *= 0.5
        theta, ll = candidate, cand_ll
        if float(np.max(np.abs(scale * step), initial=0.0)) < _STEP_TOLERANCE:
            break
    p = 1.0 / (1.0 + np.exp(theta[t.hi] - theta[t.lo]))
    w = games * p * (1.0 - p)
    q = 1.0 / (1.0 + np.exp(-theta))
    hessian.fill(0.0)
    hessian[t.lo, t.hi] = -w
    hessian[t.hi, t.lo] = -w
    hessian[np.arange(n), np.arange(n)] = (np.bincount(t.lo, weights=w, minlength=n)
                                           + np.bincount(t.hi, weights=w, minlength=n)
                                           + prior_draws * q * (1.0 - q))
    # The data fixes only differences; the origin is the pool's mean. The interval is that of
    # a participant's offset from the mean: the covariance projected onto sum(theta) = 0
    # (otherwise the barely-pinned common shift would swamp every interval).
    theta -= theta.mean() if n else 0.0
    if n:
        cov = np.linalg.inv(hessian)
        row_mean = cov.mean(axis=1)
        variance = np.maximum(np.diag(cov) - 2.0 * row_mean + row_mean.mean(), 0.0)
    else:
        variance = np.zeros(0)
    played = np.bincount(t.lo, weights=games, minlength=n) + np.bincount(t.hi, weights=games,
                                                                         minlength=n)
    return RatingTable(t.participants, BASE_ELO + ELO_PER_NAT * theta,
                       ELO_PER_NAT * np.sqrt(variance), played)


def ratings(matches: Iterable[Mapping], prior_draws: float = PRIOR_DRAWS) -> RatingTable:
    """Ratings of the participants of `matches` (match rows of one config)."""
    return fit(tally(matches), prior_draws)


def ratings_by_config(
    matches: Iterable[Mapping], prior_draws: float = PRIOR_DRAWS
) -> dict[tuple[str, int], RatingTable]:
    """One rating table per config (board_type, num_players) present in `matches`."""
    groups: dict[tuple[str, int], list[Mapping]] = {}
    for row in matches:
        groups.setdefault((row["board_type"], row["num_players"]), []).append(row)
    return {config: ratings(rows, prior_draws) for config, rows in sorted(groups.items())}


@dataclass(frozen=True, slots=True)
class Drift:
    """How far two rating tables of one config are apart."""

    max_abs: float  # Elo, over participants both hold
    worst: str | None  # the participant with the largest difference
    only_in_a: tuple[str, ...]
    only_in_b: tuple[str, ...]


def drift(a: RatingTable, b: RatingTable) -> Drift:
    """Elo drift between two nodes' tables (ratings are pure, so it comes from missing rows)."""
    if a.participants == b.participants:
        if not len(a):
            return Drift(0.0, None, (), ())
        diff = np.abs(a.elo - b.elo)
        i = int(np.argmax(diff))
        return Drift(float(diff[i]), a.participants[i], (), ())
    common = sorted(set(a.participants) & set(b.participants))
    ia = [a.index(p) for p in common]
    ib = [b.index(p) for p in common]
    diff = np.abs(a.elo[ia] - b.elo[ib]) if common else np.zeros(0)
    i = int(np.argmax(diff)) if common else -1
    return Drift(float(diff[i]) if common else 0.0, common[i] if common else None,
                 tuple(sorted(set(a.participants) - set(b.participants))),
                 tuple(sorted(set(b.participants) - set(a.participants))))
