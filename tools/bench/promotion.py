"""Promotion benchmark: decision latency, the pooled rating fit, and a drift check.

`python -m tools.bench promotion [--quick] [--json]`.
- `evaluate_promotion_us`: one PromotionController.evaluate_promotion call without any
  database (the evidence is already gathered), median of many. Reference: < 1 ms claimed,
  about 0.12 ms measured; goal < 0.02 ms (20 us).
- `rating_tally_s`, `rating_fit_s`: rating 1,000 participants from 1,000,000 two-player match
  rows (reduce the rows to pair tallies, then the Bradley-Terry fit).
- `drift_check_ms`: comparing two nodes' rating tables of 1,000 participants. Reference:
  1.7-2 ms; goal < 0.2 ms.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from engine.promotion import (
    HEURISTIC,
    RANDOM,
    Evidence,
    PromotionController,
    PromotionCriteria,
    PromotionType,
    head_to_head,
)
from engine.ratings import drift, fit, tally
from engine.sprt import PairedSprt

GOALS = {"evaluate_promotion_us": 20.0, "drift_check_ms": 0.2}


def _evaluate_latency(repeats: int) -> float:
    sprt = PairedSprt(PromotionCriteria().sprt())
    for i in range(200):
        sprt.add(i, 0.75 if i % 3 else 0.5)
    evidence = Evidence(head_to_head(sprt), {RANDOM: (0.97, 60), HEURISTIC: (0.7, 60)})
    controller = PromotionController(lambda *_: evidence)
    controller.observe_alias("production", "square8", 2, "prod")
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(100):
            controller.evaluate_promotion("cand", "square8", 2, PromotionType.PRODUCTION)
        samples.append((time.perf_counter() - start) / 100)
    return statistics.median(samples) * 1e6


def _match_rows(participants: int, matches: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 200.0, participants)
    a = rng.integers(0, participants, matches)
    b = (a + rng.integers(1, participants, matches)) % participants
    p = 1.0 / (1.0 + 10.0 ** ((strength[b] - strength[a]) / 400.0))
    wins = rng.random(matches) < p
    names = [f"model-{i:04d}" for i in range(participants)]
    won, lost = [1.0, 0.0], [0.0, 1.0]
    return [{"participants": [names[x], names[y]], "result": won if w else lost}
            for x, y, w in zip(a.tolist(), b.tolist(), wins.tolist(), strict=True)]


def run(quick: bool) -> dict[str, float | int | str]:
    participants, matches = (200, 50_000) if quick else (1_000, 1_000_000)
    figures: dict[str, float | int | str] = {
        "evaluate_promotion_us": round(_evaluate_latency(20 if quick else 200), 3),
    }
    rows = _match_rows(participants, matches, seed=1)
    start = time.perf_counter()
    tallies = tally(rows)
    figures["rating_tally_s"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    table_a = fit(tallies)
    figures["rating_fit_s"] = round(time.perf_counter() - start, 3)
    figures["rating_participants"] = participants
    figures["rating_matches"] = matches
    table_b = fit(tally(rows[: matches - matches // 100]))  # a node missing 1% of the rows
    samples = []
    for _ in range(200):
        start = time.perf_counter()
        report = drift(table_a, table_b)
        samples.append(time.perf_counter() - start)
    figures["drift_check_ms"] = round(statistics.median(samples) * 1e3, 4)
    figures["drift_max_elo_missing_1pct"] = round(report.max_abs, 2)
    for key, goal in GOALS.items():
        figures[f"{key}_goal"] = goal
    return figures
