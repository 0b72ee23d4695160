"""`python -m tools.bench SUITE [--json] [--quick]`: run one benchmark suite and print its figures.

Each suite is a module `tools.bench.<suite>` with `run(quick: bool) -> dict[str, float | int | str]`.
Figures are printed, never asserted: speed is reported, not tested.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

SUITES = ("storage", "rules", "sync", "signatures", "promotion", "import", "selfplay")
# Suites whose module cannot carry the suite's name (`import` is a keyword).
MODULES = {"import": "reference_import"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench", description=__doc__)
    parser.add_argument("suite", choices=SUITES, help="which benchmark suite to run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--quick", action="store_true", help="smaller sizes, for smoke runs")
    args = parser.parse_args(argv)
    module = importlib.import_module(f"tools.bench.{MODULES.get(args.suite, args.suite)}")
    figures = module.run(quick=args.quick)
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        width = max(len(k) for k in figures)
        for key, value in figures.items():
            print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
