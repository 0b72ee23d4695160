"""Elo drift reports and reconciliation, over the mesh API (the reference's
elo_reconciliation_cli.py, without ssh).

    python -m tools.elo_drift status         [--json]
    python -m tools.elo_drift check-drift    [--board-type B --num-players N]
                                             [--peer H:P | --db FILE] [--verbose] [--json]
    python -m tools.elo_drift sync           --host H:P [--strategy S] [--json]
    python -m tools.elo_drift reconcile-all  [--hosts H1:P,H2:P] [--strategy S] [--json]
    python -m tools.elo_drift history        [--verbose] [--json]

Run it on a node's machine with that node's --data-dir: the tool acts as that node. Requests
that make the node talk to peers or take rows in (check-drift against a peer, sync,
reconcile-all) are signed with the node's identity key and carried out by the running node,
which asks its peers over the mesh, signed as itself. `check-drift --db FILE` compares the
node's own database file offline (running or not) with another node's `node.db` or with a
reference system's Elo file (`unified_elo.db`, any of its three `match_history` shapes, taken
in as `ringrift-node import` would).

Exit status: 0 fine, 1 significant drift (check-drift) or a failed sync, 2 usage or
unreachable node.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgpack

from node import drift
from node.cli import load
from node.config import ConfigError, check_address
from node.datadir import DataDirError
from node.importer.run import import_files
from node.leaderboard import rating_map
from node.ops_api import DRIFT_PATH
from node.ops_client import OpsClientError, ask, get_json
from storage.database import DB_FILE
from storage.hlc import HybridClock
from storage.merge import InvalidRow, Strategy
from storage.rows import BOARD_TYPES, validate_match
from storage.stores import open_stores

STRATEGY_HELP = (
    "what to take in when a match id is held on both sides in different versions: SKIP keeps "
    "ours, LAST_WRITE_WINS takes the newer version (hlc, node), FIRST_WRITE_WINS keeps the "
    "older, RAISE stops at the first such row. This decides only this exchange: the mesh's own "
    "anti-entropy always merges last-write-wins, so a row kept out here still arrives with the "
    "next pull if it is the newer one."
)
TIMEOUT_S = 120.0
# Tables that make a file a ringrift node database rather than a reference one.
NODE_TABLES = {"matches", "node_state"}
# The scratch store a reference file is imported into: its rows carry their (past) source
# times, so the clock bound, which refuses rows from the future, never comes into play.
MAX_CLOCK_OFFSET_MS = 60_000


class ToolError(RuntimeError):
    pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.elo_drift", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="the node's data dir (default: node.data_dir)")
        p.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
        p.add_argument("--node", help="HOST:PORT of the local node (default: 127.0.0.1:node.port)")
        p.add_argument("--json", action="store_true", help="print JSON")

    common(sub.add_parser("status", help="thresholds and the latest drift per config"))
    p = sub.add_parser("check-drift", help="compare ratings and match rows with a peer or file")
    common(p)
    p.add_argument("--board-type", choices=sorted(BOARD_TYPES))
    p.add_argument("--num-players", type=int, choices=(2, 3, 4))
    where = p.add_mutually_exclusive_group()
    where.add_argument("--peer", help="HOST:PORT of the peer (default: a random alive peer)")
    where.add_argument("--db", type=Path, help="another node.db, or a reference unified_elo.db, "
                                               "to compare with, offline")
    p.add_argument("--verbose", action="store_true", help="list rating differences")
    p = sub.add_parser("sync", help="take in a peer's match rows with a conflict strategy",
                       description=STRATEGY_HELP)
    common(p)
    p.add_argument("--host", required=True, help="HOST:PORT of the peer")
    p.add_argument("--strategy", choices=[s.name for s in Strategy], default="SKIP",
                   help=STRATEGY_HELP)
    p = sub.add_parser("reconcile-all", help="sync from every host, then check drift",
                       description=STRATEGY_HELP)
    common(p)
    p.add_argument("--hosts", help="comma-separated HOST:PORT list (default: every alive member)")
    p.add_argument("--strategy", choices=[s.name for s in Strategy], default="SKIP",
                   help=STRATEGY_HELP)
    p.add_argument("--verbose", action="store_true", help="print each host's result")
    p = sub.add_parser("history", help="drift history: trend, persistence, last hour")
    common(p)
    p.add_argument("--verbose", action="store_true", help="list recent snapshots")
    return parser


class Node:
    """The local node, reached over HTTP and acted for with its identity key."""

    def __init__(self, args: argparse.Namespace) -> None:
        config = load(args)
        self.data_dir = config.node.data_dir
        self.address = (check_address(args.node, key="--node") if args.node
                        else f"127.0.0.1:{config.node.port}")

    def get(self, path: str) -> dict[str, Any]:
        try:
            return get_json(self.address, path, TIMEOUT_S)
        except OpsClientError as exc:
            raise ToolError(str(exc)) from None

    def ask(self, action: str, args: dict[str, Any]) -> dict[str, Any]:
        try:
            return ask(self.address, self.data_dir, action, args, TIMEOUT_S)
        except OpsClientError as exc:
            raise ToolError(str(exc)) from None


def read_match_rows(path: Path) -> list[dict[str, Any]]:
    """Every valid match row of a database file, read-only: a ringrift node's `node.db`, or a
    reference system's Elo file (any of its three `match_history` shapes, `unified_elo.db`),
    read through the importer exactly as `ringrift-node import` would take it in."""
    if not path.is_file():
        raise ToolError(f"{path}: no such database file")
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            records = (conn.execute("SELECT body FROM matches").fetchall()
                       if NODE_TABLES <= tables else None)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise ToolError(f"{path}: not a readable SQLite database ({exc})") from None
    if records is None:
        return asyncio.run(_imported_rows(path))
    rows = []
    for (body,) in records:
        try:
            rows.append(validate_match(msgpack.unpackb(body, raw=False)).data)
        except (InvalidRow, ValueError, msgpack.UnpackException):
            continue  # a row a node would refuse
    return rows


async def _imported_rows(path: Path) -> list[dict[str, Any]]:
    """A reference file's match rows as an import would make them, in a scratch store."""
    with tempfile.TemporaryDirectory(prefix="elo-drift-") as scratch:
        stores = await open_stores(Path(scratch), HybridClock(
            lambda: time.time_ns() // 1_000_000, MAX_CLOCK_OFFSET_MS), "elo-drift")
        try:
            report = await import_files([path], stores)
            if report.files[0].error:
                raise ToolError(report.files[0].error)
            return await stores.matches.all_matches()
        finally:
            await stores.close()


def cmd_check_drift(node: Node, args: argparse.Namespace) -> tuple[Any, int]:
    if (args.board_type is None) != (args.num_players is None):
        raise ToolError("give --board-type and --num-players together")
    config = (args.board_type, args.num_players) if args.board_type else None
    if args.db is not None:
        mon = load(args).monitoring
        t = drift.Thresholds(mon.drift_max_elo, mon.drift_avg_elo)
        mine, theirs = read_match_rows(node.data_dir / DB_FILE), read_match_rows(args.db)
        configs = [config] if config else drift.configs_of([*mine, *theirs])
        reports = [drift.compare(mine, theirs, source=str(node.data_dir / DB_FILE),
                                 target=str(args.db), config=cfg, thresholds=t,
                                 ratings=rating_map, checked_at=time.time()).to_dict()
                   for cfg in configs]
    else:
        ask: dict[str, Any] = {"peer": args.peer}
        if config:
            ask.update(board_type=config[0], num_players=config[1])
        reports = node.ask("drift", ask)["reports"]
    significant = any(r["is_significant"] for r in reports)
    return {"reports": reports}, 1 if significant else 0


def format_report(r: dict[str, Any], verbose: bool) -> str:
    config = (f"{r['board_type']}/{r['num_players']}p" if r.get("board_type") else "all configs")
    lines = [
        f"=== Elo Drift Report ({config}) ===",
        f"Source: {r['source']}", f"Target: {r['target']}",
        f"Checked at: {time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(r['checked_at']))} UTC",
        f"Participants in source: {r['participants_in_source']}",
        f"Participants in target: {r['participants_in_target']}",
        f"Participants in both: {r['participants_in_both']}",
        f"Max rating diff: {r['max_rating_diff']:.1f}",
        f"Avg rating diff: {r['avg_rating_diff']:.1f}",
        f"Significant drift: {'YES' if r['is_significant'] else 'No'}",
    ]
    for name, label in (("only_source", "only in source"), ("only_target", "only in target"),
                        ("differing", "in both, different versions")):
        part = r["matches"][name]
        if part["count"]:
            shown = part["ids"][:20]
            more = f" and {part['count'] - len(shown)} more" if part["count"] > len(shown) else ""
            lines.append(f"Matches {label}: {part['count']}: {', '.join(shown)}{more}")
    if r["is_significant"]:
        lines.append("WARNING: significant drift; run reconcile-all.")
    if verbose and r["rating_diffs"]:
        lines.append("Rating differences (source minus target):")
        for p, d in sorted(r["rating_diffs"].items(), key=lambda x: -abs(x[1]))[:20]:
            lines.append(f"  {p}: {d:+.1f}")
    return "\n".join(lines)


def format_sync(r: dict[str, Any]) -> str:
    lines = [f"=== Sync from {r['remote_host']} ({r['strategy']}) ===",
             f"Matches added: {r['matches_added']}",
             f"Matches skipped (held alike, or kept out): {r['matches_skipped']}",
             f"Conflicts (same match id, different version): {r['matches_conflict']}",
             (f"Resolved by the strategy: {r['matches_resolved']} "
              f"({r['matches_replaced']} replaced ours)"),
             f"Participants added: {r['participants_added']}"]
    if r.get("error"):
        lines.append(f"ERROR: {r['error']}")
    return "\n".join(lines)


def format_history(history: dict[str, Any], verbose: bool) -> str:
    if not history:
        return "No drift history yet: the node records one at each drift check."
    lines = ["=== Drift History ==="]
    for key, h in sorted(history.items()):
        lines += [f"Configuration: {key}", f"  Snapshots: {h['snapshot_count']}",
                  f"  Trend: {h['trend']}",
                  f"  Persistent drift: {'YES' if h['persistent_drift'] else 'No'}",
                  f"  Avg drift (last hour): {h['avg_drift_last_hour']:.1f}"]
        if verbose:
            for s in h["recent_snapshots"]:
                at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s["checked_at"]))
                lines.append(f"    {'*' if s['is_significant'] else ' '} {at}: "
                             f"max={s['max_rating_diff']:.1f} vs {s.get('target')}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> tuple[Any, str, int]:
    node = Node(args)
    if args.command == "status":
        data = node.get(DRIFT_PATH)
        t = data["thresholds"]
        lines = [(f"node {node.address}: significant above {t['max_elo']} Elo max or "
                  f"{t['avg_elo']} Elo mean")]
        for key, r in sorted(data["last"].items()):
            lines.append(f"  {key}: vs {r['target']} max {r['max_rating_diff']:.1f} avg "
                         f"{r['avg_rating_diff']:.1f} "
                         f"{'SIGNIFICANT' if r['is_significant'] else 'ok'}")
        if not data["last"]:
            lines.append("  no drift check yet")
        return data, "\n".join(lines), 0
    if args.command == "check-drift":
        data, code = cmd_check_drift(node, args)
        text = "\n\n".join(format_report(r, args.verbose) for r in data["reports"]) or \
            "No match rows on either side."
        return data, text, code
    if args.command == "sync":
        data = node.ask("sync", {"host": check_address(args.host, key="--host"),
                                 "strategy": args.strategy})
        return data, format_sync(data), 0 if data["error"] is None else 1
    if args.command == "reconcile-all":
        hosts = ([check_address(h.strip(), key="--hosts") for h in args.hosts.split(",")
                  if h.strip()] if args.hosts else None)
        data = node.ask("reconcile", {"hosts": hosts, "strategy": args.strategy})
        lines = ["=== Elo Reconciliation Report ===",
                 f"Nodes synced: {len(data['nodes_synced'])}",
                 f"Nodes failed: {len(data['nodes_failed'])}",
                 f"Matches added: {data['total_matches_added']}",
                 f"Matches skipped: {data['total_matches_skipped']}",
                 f"Conflicts: {data['total_conflicts']}", f"Resolved: {data['total_resolved']}",
                 f"Max drift: {data['max_drift']:.1f}"]
        if data["drift_detected"]:
            lines.append("WARNING: SIGNIFICANT DRIFT DETECTED")
        if data["nodes_failed"]:
            lines.append(f"Failed nodes: {', '.join(data['nodes_failed'])}")
        if args.verbose:
            lines += ["", *(format_sync(r) for r in data["sync_results"])]
        return data, "\n".join(lines), 1 if data["nodes_failed"] else 0
    data = node.get(DRIFT_PATH)["history"]
    return data, format_history(data, args.verbose), 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        data, text, code = run(args)
    except (ToolError, ConfigError, DataDirError) as exc:
        print(f"elo_drift: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)
    return code


if __name__ == "__main__":
    sys.exit(main())
