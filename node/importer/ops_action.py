"""The running node's `import` operator action: `ringrift-node import` on a node's data dir
while the node runs asks the node to import (signed with the data dir's identity key, see
node.ops_api), so the rows go through its own stores and digests and replicate at once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from engine.ratings import ratings_by_config
from storage.merge import Strategy
from storage.stores import Stores

from node.importer.ratings_check import compare_ratings, source_ratings
from node.importer.report import ImportReport
from node.importer.run import import_files
from node.ops_api import OpsError

MAX_FILES = 64
MAX_PATH_CHARS = 4096
STRATEGIES = {s.value: s for s in Strategy}


async def with_ratings(report: ImportReport, stores: Stores, paths: list[Path]) -> ImportReport:
    """The report with this node's ratings compared to the ones the files hold."""
    matches = await stores.matches.all_matches()
    ours = await asyncio.to_thread(ratings_by_config, matches)
    report.ratings = await asyncio.to_thread(compare_ratings, ours, source_ratings(paths))
    return report


class ImportAction:
    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._running = asyncio.Lock()

    async def __call__(self, args: dict[str, Any]) -> dict[str, Any]:
        paths = _paths(args.get("files"))
        dry_run = args.get("dry_run", False)
        conflicts = args.get("conflicts", Strategy.LAST_WRITE_WINS.value)
        if type(dry_run) is not bool or conflicts not in STRATEGIES:
            raise OpsError(400, f"dry_run must be a boolean and conflicts one of "
                                f"{sorted(STRATEGIES)}")
        if self._running.locked():
            raise OpsError(409, "an import is already running on this node")
        async with self._running:
            report = await import_files(paths, self._stores, STRATEGIES[conflicts], dry_run)
            return (await with_ratings(report, self._stores, paths)).as_json()


def _paths(value: object) -> list[Path]:
    if (
        not isinstance(value, list) or not 1 <= len(value) <= MAX_FILES
        or not all(isinstance(v, str) and 0 < len(v) <= MAX_PATH_CHARS for v in value)
    ):
        raise OpsError(400, f"files must be a list of 1..{MAX_FILES} paths")
    paths = [Path(v) for v in value]
    if not all(p.is_absolute() for p in paths):
        raise OpsError(400, "files must be absolute paths (the node resolves no working dir)")
    return paths
