"""`ringrift-node import FILE... [--data-dir D] [--dry-run] [--json] [--conflicts S]`.

With a node running on the data dir, the command asks that node to import (a signed operator
request, node.importer.ops_action): the running agent keeps its store digests in memory, so a
second writer beside it would leave them describing rows the database lacks. With no node
running, it opens the stores itself and draws progress bars.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from tqdm import tqdm

from storage.hlc import HybridClock
from storage.stores import open_stores

from node.config import Config
from node.datadir import is_initialised, open_data_dir, running_node
from node.importer.ops_action import STRATEGIES, with_ratings
from node.importer.report import ImportReport
from node.importer.run import import_files
from node.ops_client import OpsClientError, ask

EXIT_FAILURE = 1
# A node imports while it serves its peers; the seed files take seconds, months of games more.
IMPORT_TIMEOUT_S = 3600.0


class ImportRefused(RuntimeError):
    """The import cannot run (no data dir, a node running on it): one line for the operator."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "import", help="import the reference system's games.db and unified_elo.db files",
        description="Import reference databases (games schema v18; the three unified_elo.db "
        "match_history shapes) into this node's stores; the rows then replicate to every node. "
        "Files are opened read-only and detected by their schema. --conflicts decides what "
        "this node takes in when a match id is already held with other content; the mesh's "
        "own merge stays last-write-wins, so a later version held elsewhere still wins.",
    )
    p.add_argument("files", nargs="+", type=Path, help="reference SQLite files")
    p.add_argument("--data-dir", type=Path, help="data directory (default: node.data_dir)")
    p.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
    p.add_argument("--dry-run", action="store_true", help="write nothing, report the same counts")
    p.add_argument("--json", action="store_true", help="end with one JSON object of the counts")
    p.add_argument("--conflicts", choices=sorted(STRATEGIES), default="last_write_wins",
                   help="conflicting match rows: which version this node keeps")
    p.add_argument("--no-progress", action="store_true", help="no progress bars on stderr")
    p.add_argument("--port", type=int,
                   help="HTTP port of the node running on the data dir (default: node.port)")
    return p


def run(args: argparse.Namespace, config: Config) -> int:
    data_dir = config.node.data_dir
    if not is_initialised(data_dir):
        raise ImportRefused(f"{data_dir} is not a node data dir: run `ringrift-node init "
                            f"--data-dir {data_dir}` first")
    pid = running_node(data_dir)
    if pid is not None:
        address = f"127.0.0.1:{args.port or config.node.port}"
        print(f"node {pid} runs on {data_dir}: importing through it at {address}",
              file=sys.stderr)
        try:
            result = ask(address, data_dir, "import", {
                "files": [str(p.resolve()) for p in args.files], "dry_run": args.dry_run,
                "conflicts": args.conflicts}, timeout_s=IMPORT_TIMEOUT_S)
        except OpsClientError as exc:
            raise ImportRefused(str(exc)) from None
        report = ImportReport.from_json(result)
    else:
        files = open_data_dir(data_dir)
        report = asyncio.run(_import(args, config, files.node_id))
    if args.json:
        print(json.dumps(report.as_json(), sort_keys=True))
    else:
        print("\n".join(report.lines()))
        for line in _ratings_lines(report):
            print(line)
    return EXIT_FAILURE if report.failed_files or report.refused_conflicts else 0


async def _import(args: argparse.Namespace, config: Config, node_id: str) -> ImportReport:
    clock = HybridClock(lambda: time.time_ns() // 1_000_000,
                        config.storage.max_clock_offset_ms)
    stores = await open_stores(config.node.data_dir, clock, node_id)
    bars: dict[str, tqdm] = {}

    def progress(what: str, done: int) -> None:
        bar = bars.get(what)
        if bar is None:
            bar = bars[what] = tqdm(desc=what, unit=" rows", file=sys.stderr, leave=False,
                                    disable=args.no_progress or None)
        bar.update(done)

    try:
        report = await import_files(args.files, stores, STRATEGIES[args.conflicts],
                                    args.dry_run, progress)
        await with_ratings(report, stores, args.files)
    finally:
        for bar in bars.values():
            bar.close()
        await stores.close()
    return report


def _ratings_lines(report: ImportReport) -> list[str]:
    if not report.ratings:
        return []
    out = ["ratings: this node's pooled fit against the ratings the files hold "
           "(the reference rated incrementally in arrival order):"]
    for r in report.ratings:
        out.append(f"  {r['source']} {r['board_type']} {r['num_players']}p: "
                   f"{r['compared']} participants, max diff {r['max_abs_diff']:.1f} Elo "
                   f"({r['worst']}), mean {r['mean_abs_diff']:.1f}, order agrees on "
                   f"{r['order_agreement']:.0%} of pairs")
    return out
