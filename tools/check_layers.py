"""Fail when an import breaks the dependency rule of DESIGN.md.

    node    -> mesh, storage, engine
    mesh    -> storage
    storage -> (none of ours)
    engine  -> (none of ours), and no SQLite or network libraries: it takes and returns plain data

Usage: python tools/check_layers.py [--json] [ROOT]   (exit 1 on any violation)
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

ALLOWED: dict[str, set[str]] = {
    "node": {"mesh", "storage", "engine", "config"},
    "mesh": {"storage"},
    "storage": set(),
    "engine": set(),
}
LAYERS = set(ALLOWED) | {"tools", "config"}
# The engine must stay runnable and benchmarkable alone (the reference engine pulled in aiohttp
# just to play a game).
FORBIDDEN_THIRD_PARTY = {
    "engine": {"sqlite3", "aiosqlite", "aiohttp", "zeroconf", "prometheus_client", "psutil"},
}


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def violations(root: Path) -> list[str]:
    problems = []
    for package, allowed in ALLOWED.items():
        for path in sorted((root / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for lineno, module in imported_modules(tree):
                top = module.split(".")[0]
                where = f"{path.relative_to(root)}:{lineno}"
                if top in LAYERS and top != package and top not in allowed:
                    problems.append(f"{where}: {package} imports {module} (allowed: "
                                    f"{', '.join(sorted(allowed)) or 'none of ours'})")
                if top in FORBIDDEN_THIRD_PARTY.get(package, ()):
                    problems.append(f"{where}: {package} imports {module}, which it must not use")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", nargs="?", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    problems = violations(args.root)
    if args.json:
        print(json.dumps({"violations": problems, "ok": not problems}))
    else:
        for problem in problems:
            print(problem)
        print(f"check_layers: {len(problems)} violation(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
