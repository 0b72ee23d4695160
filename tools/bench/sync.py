"""Catch-up speed: a new node pulls a loaded node's games and match rows over loopback HTTP.

`python -m tools.bench sync [--quick] [--json]`. Two real `ringrift-node` processes: one is
loaded with games played by the rules engine (square8, 2 players, uniform-random playouts, so
of realistic length) and Elo match rows, the other starts empty; the clock runs from the moment
the empty node is up until its roots equal the loaded node's, store by store (the pull takes
games, then matches). The loading itself is the local merge the sync rates are compared with:
the same rows, merged through the same store calls, in the same run.

Playouts cost minutes of CPU for the full size, so their moves are cached on disk (see
`cache_dir`); the cache is not timed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import msgpack

from engine.records import encode_move, rankings
from engine.rules import apply_move_in_place, legal_moves
from engine.state import ACTIVE, initial_state
from node.datadir import init_data_dir, open_data_dir
from storage.database import DB_FILE
from storage.digests import NUM_BUCKETS
from storage.game_checks import GameChecks, Verdict
from storage.hlc import HybridClock
from storage.rows import new_game, new_match
from storage.stores import open_stores

FULL = {"games": 20_000, "matches": 200_000}
QUICK = {"games": 100, "matches": 2_000}
# Batches of the local merge: what `tools.bench storage` uses for each kind.
GAME_BATCH, MATCH_BATCH = 2_000, 10_000
# Rounds of the pulling node's scheduler: short, so that waiting for the next round is not
# counted as catch-up time (a round that finds nothing to pull costs one manifest look).
SYNC_INTERVAL_S = 0.2
CACHE_FORMAT = 2
# The nodes run this checkout's code, wherever the benchmark is started from.
_REPO = Path(__file__).resolve().parents[2]


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ringrift-node" / "bench"


def _playout(rng: random.Random) -> tuple[list[int], list[bytes]]:
    """One square8 2-player game of uniform-random moves: (final ranks, encoded moves)."""
    state = initial_state("square8", 2)
    moves = []
    while state.status == ACTIVE:
        move = rng.choice(legal_moves(state))
        moves.append(encode_move(move))
        apply_move_in_place(state, move)
    return rankings(state), moves


def engine_games(count: int, seed: int = 1) -> list[tuple[list[int], list[bytes]]]:
    """`count` random playouts, from the on-disk cache when an earlier run made them."""
    path = cache_dir() / f"square8-2p-random-{count}-seed{seed}-v{CACHE_FORMAT}.msgpack"
    if path.is_file():
        return [tuple(g) for g in msgpack.unpackb(path.read_bytes(), raw=False)]
    rng = random.Random(seed)
    games = [_playout(rng) for _ in range(count)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(msgpack.packb(games, use_bin_type=True))
    tmp.replace(path)
    return games


def _game_rows(games: list[tuple[list[int], list[bytes]]], now_ms: int, origin: str
               ) -> list[dict]:
    return [new_game("square8", 2, moves, ranks, now_ms - len(games) + i, origin)
            for i, (ranks, moves) in enumerate(games)]


def _match_rows(count: int, now_ms: int, origin: str) -> list[dict]:
    rnd = random.Random(7)
    return [
        new_match(f"{rnd.getrandbits(64):016x}-{i}", [f"model-{i % 7}", f"model-{i % 5 + 7}"],
                  "square8", 2, [1.0, 0.0] if i % 3 else [0.5, 0.5], now_ms - count + i, origin)
        for i in range(count)
    ]


async def _load(data_dir: Path, node_id: str, games: list[dict], matches: list[dict]
                ) -> tuple[float, float]:
    """Merge the rows into a stopped node's stores; seconds spent merging games, matches.

    The games are then marked as replayed legally, the verdict the node's replay checker
    (`node.replay_check`) would record for games the engine just played: the loaded node is
    one that has held its games a while, not one replaying 20,000 of them while it serves.
    """
    stores = await open_stores(data_dir, HybridClock(_wall_ms, 60_000), node_id)
    try:
        spent = []
        for store, rows, batch in ((stores.games, games, GAME_BATCH),
                                   (stores.matches, matches, MATCH_BATCH)):
            start = time.perf_counter()
            for i in range(0, len(rows), batch):
                stats = await store.merge(rows[i:i + batch])
                if stats.invalid or stats.refused:
                    raise RuntimeError(f"benchmark rows refused: {store.last_errors}")
            spent.append(time.perf_counter() - start)
        entries = await stores.games.bucket_entries(range(NUM_BUCKETS))
        await GameChecks(stores.db).record([Verdict(key, version, True, node_id)
                                            for key, version in entries])
        return spent[0], spent[1]
    finally:
        await stores.close()


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Node:
    """One `ringrift-node start` process on loopback; its output goes to a log file."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.port = port
        self.log_path = data_dir.with_suffix(".log")
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGRIFT_")}
        # The nodes only sync: no leader pipeline (the loaded node leads, and would train on
        # the games it holds) and no selfplay (an idle node plays, and both are idle here).
        env.update(RINGRIFT_NODE_HOST="127.0.0.1", RINGRIFT_MESH_SYNC_INTERVAL_S=str(
            SYNC_INTERVAL_S), RINGRIFT_PIPELINE_CONFIGS="", RINGRIFT_SELFPLAY_ENABLED="false",
            PYTHONUNBUFFERED="1", PYTHONPATH=str(_REPO))
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.cli", "start", "--data-dir", str(data_dir),
                 "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)

    def cpu_s(self) -> tuple[float, float] | None:
        """CPU seconds (user + system, all threads) used by the node process and by its child
        processes now running (the replay checker's), or None where /proc is not there."""
        own = _proc_cpu(Path(f"/proc/{self.proc.pid}/stat"))
        if own is None:
            return None
        children = 0.0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            found = _proc_cpu(stat, parent=self.proc.pid)
            children += found[1] if found is not None else 0.0
        return own[1], children

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stores(self) -> dict[str, dict]:
        url = f"http://{self.address}/api/v1/status"
        with urllib.request.urlopen(url, timeout=300) as response:
            return json.loads(response.read())["stores"]

    def wait_up(self, timeout: float) -> None:
        _wait(lambda: self._up(), timeout, f"node on {self.address} to answer")

    def _up(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"node exited with {self.proc.returncode}: "
                               f"{self.log_path.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://{self.address}/healthz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _proc_cpu(stat: Path, parent: int | None = None) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of the process whose /proc stat file this is; None when
    it is gone, or is not a child of `parent` when that is given."""
    try:
        fields = stat.read_text().rpartition(")")[2].split()
    except OSError:
        return None
    ppid = int(fields[1])
    if parent is not None and ppid != parent:
        return None
    return ppid, (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait(predicate: Callable[[], object], timeout: float, what: str,
          interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def catch_up(root: Path, games: list[dict], matches: list[dict], timeout: float
             ) -> dict[str, float]:
    """Seconds for an empty node to reach a loaded node's games and match rows (and, where
    /proc tells, the CPU seconds each node spent meanwhile)."""
    loaded, empty = root / "loaded", root / "empty"
    founder = init_data_dir(loaded)
    port = _free_port()
    init_data_dir(empty, cluster=founder.cluster, join_peers=(f"127.0.0.1:{port}",))
    local_games_s, local_matches_s = asyncio.run(
        _load(loaded, open_data_dir(loaded).node_id, games, matches))
    want = {"games": len(games), "matches": len(matches)}
    nodes = [_Node(loaded, port)]
    try:
        nodes[0].wait_up(timeout=60)
        nodes.append(_Node(empty, _free_port()))
        nodes[1].wait_up(timeout=60)
        cpu_before = [node.cpu_s() for node in nodes]
        start = time.perf_counter()
        done: dict[str, float] = {}
        # The status page would do (a leaderboard over all match rows each time they change,
        # in the very process being timed), so progress is read from the database itself:
        # the highest rowid is the row count of a store that only ever had rows added.
        db = sqlite3.connect(f"file:{empty / DB_FILE}?mode=ro", uri=True, timeout=30)
        try:
            def caught_up() -> bool:
                for name, count in want.items():
                    held = db.execute(f"SELECT max(rowid) FROM {name}").fetchone()[0] or 0
                    if name not in done and held >= count:
                        done[name] = time.perf_counter() - start
                return len(done) == len(want)

            _wait(caught_up, timeout, "the empty node to catch up")
        finally:
            db.close()
        cpu = [None if b is None or (a := node.cpu_s()) is None else (a[0] - b[0], a[1] - b[1])
               for node, b in zip(nodes, cpu_before, strict=True)]
        # Not timed: the rows are the same ones (equal roots), not merely as many.
        _wait(lambda: _roots(nodes[0]) == _roots(nodes[1]), 300, "equal roots")
    finally:
        for node in nodes:
            node.stop()
    games_s = done["games"]
    # The pull takes the stores one after the other, games first.
    matches_s = done["matches"] - games_s if done["matches"] > games_s else done["matches"]
    times = {"local_games_s": local_games_s, "local_matches_s": local_matches_s,
             "sync_games_s": games_s, "sync_matches_s": matches_s,
             "sync_total_s": max(done.values())}
    # CPU the two processes spent while the clock ran: what the catch-up costs, which a
    # machine shared with other work does not change as much as it changes the wall clock.
    if cpu[0] is not None and cpu[1] is not None:
        times.update(responder_cpu_s=cpu[0][0], puller_cpu_s=cpu[1][0],
                     puller_children_cpu_s=cpu[1][1])
    return times


def _roots(node: _Node) -> dict[str, str]:
    return {name: store["root"] for name, store in node.stores().items()}


def run(quick: bool) -> dict[str, float | int | str]:
    counts = QUICK if quick else FULL
    played = engine_games(counts["games"])
    now = _wall_ms()
    games = _game_rows(played, now, "bench-loader")
    matches = _match_rows(counts["matches"], now, "bench-loader")
    with tempfile.TemporaryDirectory(prefix="ringrift-bench-sync-") as tmp:
        t = catch_up(Path(tmp), games, matches, timeout=120 if quick else 1200)
    n_games, n_matches = len(games), len(matches)
    local_games = n_games / t["local_games_s"]
    local_matches = n_matches / t["local_matches_s"]
    sync_games = n_games / t["sync_games_s"]
    sync_matches = n_matches / t["sync_matches_s"]
    return {
        "games": n_games,
        "match_rows": n_matches,
        "avg_moves_per_game": round(sum(len(m) for _, m in played) / len(played), 1),
        "local_merge_game_rows_per_s": round(local_games),
        "local_merge_match_rows_per_s": round(local_matches),
        "sync_game_rows_per_s": round(sync_games),
        "sync_match_rows_per_s": round(sync_matches),
        "sync_total_s": round(t["sync_total_s"], 2),
        **{key: round(t[key], 2) for key in ("responder_cpu_s", "puller_cpu_s",
                                             "puller_children_cpu_s") if key in t},
        "game_ratio_to_local_merge": round(sync_games / local_games, 3),
        "match_ratio_to_local_merge": round(sync_matches / local_matches, 3),
    }
