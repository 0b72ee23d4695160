"""`python -m tools.mesh_sim`: run a mesh scenario in the deterministic simulator.

Scenarios are modules `mesh.sim.<name>` with `run(nodes=, seed=, seeds=, loss=, **extra)
-> dict`. The figures print as one JSON object (`--json`) or as aligned text. A run that
breaks an invariant lists it under `failures`; the tool then prints the seed to stderr
and exits 1, and rerunning with `--seed` that seed replays the run exactly.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
from typing import Any

SCENARIOS = ("membership", "election", "sync", "cluster")


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"loss must be in [0, 1), got {text}")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text}")
    return value


def _jsonable(value: Any) -> Any:
    """NaN (a figure that could not be measured) becomes null: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.mesh_sim", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=SCENARIOS, default="membership",
                        help="which scenario to run (default: membership)")
    parser.add_argument("--nodes", type=_positive, default=100, help="cluster size (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="first seed (default 1)")
    parser.add_argument("--seeds", type=_positive, default=1,
                        help="number of seeds to run: seed, seed+1, ... (default 1)")
    parser.add_argument("--loss", type=_probability, default=0.0,
                        help="probability that a message is lost (default 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    module = importlib.import_module(f"mesh.sim.{args.scenario}")
    result = _jsonable(module.run(nodes=args.nodes, seed=args.seed, seeds=args.seeds,
                                  loss=args.loss))
    if args.json:
        print(json.dumps(result, sort_keys=True))
    else:
        shown = {k: v for k, v in result.items() if k != "runs"}
        width = max(len(k) for k in shown)
        for key, value in shown.items():
            print(f"{key:<{width}}  {value}")
    failures = result.get("failures") or []
    if failures:
        for failure in failures:
            print(f"FAILED ({args.scenario}, seed {args.seed}): {failure}", file=sys.stderr)
        print(f"replay: python -m tools.mesh_sim --scenario {args.scenario} --nodes "
              f"{args.nodes} --loss {args.loss} --seed <the seed above>", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
