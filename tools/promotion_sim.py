"""`python -m tools.promotion_sim --elo-diff D --trials N [--seed S] [--json]`

Plays simulated candidates of true strength D Elo against production through the real
PromotionController and prints how often they are promoted (`p_promote`) and how many games
against production that took (`mean_games`). Games are independent, without draws, won with
the Elo logistic's probability, and played as colour-swapped pairs counted in dispatch order.
The outer gates are on: each candidate also plays `min_games_played` games against the random
and the heuristic player (modelled RANDOM_ELO and HEURISTIC_ELO below production), and the
promotion needs every gate.

Goals (DESIGN.md, "Promotion statistics"): p_promote <= 0.05 at D = 0, <= 0.005 at D = -25,
>= 0.85 at D = +35, >= 0.95 at D = +50; mean_games <= 600 at D = 0 and D = +35.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys

from engine.promotion import (
    HEURISTIC,
    RANDOM,
    Evidence,
    PromotionController,
    PromotionCriteria,
    PromotionType,
    head_to_head,
)
from engine.sprt import PairedSprt, Verdict, elo_to_score

RANDOM_ELO = -800.0  # production's margin over the random player
HEURISTIC_ELO = -300.0  # and over the heuristic one


def _pair(rnd: random.Random, p: float) -> float:
    """One colour-swapped pair's score for the candidate, in [0, 1]."""
    return ((rnd.random() < p) + (rnd.random() < p)) / 2.0


def _gate(rnd: random.Random, p: float, games: int) -> tuple[float, int]:
    pairs = math.ceil(games / 2)
    return sum(_pair(rnd, p) for _ in range(pairs)) / pairs, pairs * 2


def simulate(elo_diff: float, trials: int, seed: int,
             criteria: PromotionCriteria | None = None) -> dict:
    criteria = criteria or PromotionCriteria()
    rnd = random.Random(seed)
    p = elo_to_score(elo_diff)
    current: list[Evidence] = []
    controller = PromotionController(lambda *_: current[0], criteria)
    controller.observe_alias("production", "square8", 2, "production")
    promoted = games = 0
    verdicts: dict[str, int] = {}
    for _ in range(trials):
        sprt = PairedSprt(criteria.sprt())
        index = 0
        while sprt.verdict is Verdict.RUNNING:
            sprt.add(index, _pair(rnd, p))
            index += 1
        gates = {
            RANDOM: _gate(rnd, elo_to_score(elo_diff - RANDOM_ELO), criteria.min_games_played),
            HEURISTIC: _gate(rnd, elo_to_score(elo_diff - HEURISTIC_ELO),
                             criteria.min_games_played),
        }
        current[:] = [Evidence(head_to_head(sprt), gates)]
        decision = controller.evaluate_promotion("candidate", "square8", 2,
                                                 PromotionType.PRODUCTION)
        promoted += decision.should_promote
        games += sprt.games
        verdicts[sprt.verdict.value] = verdicts.get(sprt.verdict.value, 0) + 1
    return {
        "elo_diff": elo_diff, "trials": trials, "seed": seed,
        "p_promote": promoted / trials, "mean_games": games / trials,
        "sprt": {"elo0": criteria.sprt_elo0, "elo1": criteria.sprt_elo1,
                 "alpha": round(1.0 - criteria.confidence_threshold, 12),
                 "beta": criteria.sprt_beta, "min_games": criteria.sprt_min_games,
                 "max_games": criteria.sprt_max_games},
        "verdicts": dict(sorted(verdicts.items())),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.promotion_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--elo-diff", type=float, required=True,
                        help="true strength of the candidate over production, in Elo")
    parser.add_argument("--trials", type=int, default=2000, help="candidates to simulate")
    parser.add_argument("--seed", type=int, default=1, help="random seed (replays a run)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials {args.trials} must be >= 1")
    figures = simulate(args.elo_diff, args.trials, args.seed)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        for key, value in figures.items():
            print(f"{key:<11} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
