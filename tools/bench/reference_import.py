"""Import benchmark: reference-format Elo files into the match store, and seed games.

`python -m tools.bench import [--quick] [--json]`. Three files are generated first, one per
`match_history` shape (EloService, EloDatabase, EloReconciler), with `ROWS_PER_FILE` rows each;
then `ringrift-node import`'s own code imports them into a fresh store. Beside it, in the same
run, the SQLite floor: a plain last-write-wins upsert of the same number of match rows, keys
sorted, 10,000 rows a transaction, WAL with synchronous=FULL and a 256 MB cache. Games are timed
on the shared seed `games.db` (replay through the engine included) when it is present.
"""

from __future__ import annotations

import asyncio
import json
import random
import sqlite3
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

from storage.hlc import HybridClock
from storage.stores import open_stores

from node.importer.run import import_files

ROWS_PER_FILE = 500_000
QUICK_ROWS_PER_FILE = 20_000
FLOOR_BATCH = 10_000
SEED_GAMES = Path(__file__).resolve().parents[2].parent / "shared" / "seed-data" / "games.db"
_PARTICIPANTS = [f"sq8_2p_v{i}" for i in range(8, 15)] + ["random", "heuristic"]


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + f".{ms % 1000:03d}000+00:00"


def _pairs(n: int, seed: int) -> list[tuple[str, str, str | None, int]]:
    rnd = random.Random(seed)
    base = 1770600000000
    out = []
    for i in range(n):
        a, b = rnd.sample(_PARTICIPANTS, 2)
        out.append((a, b, rnd.choice((a, b, a, b, None)), base + i * 37))
    return out


def _write(path: Path, create: str, insert: str, rows: Iterable[tuple]) -> Path:
    conn = sqlite3.connect(path)
    conn.execute(create)
    conn.executemany(insert, rows)
    conn.commit()
    conn.close()
    return path


def write_files(folder: Path, rows: int) -> list[Path]:
    """The three shapes, with disjoint match ids (every row is new to the store)."""
    service = _write(
        folder / "elo_service.db",
        "CREATE TABLE match_history (id TEXT PRIMARY KEY, participant_ids TEXT NOT NULL, "
        "winner_id TEXT, game_length INTEGER, duration_sec REAL, board_type TEXT NOT NULL, "
        "num_players INTEGER NOT NULL, timestamp TEXT, elo_before TEXT, elo_after TEXT, "
        "tournament_id TEXT, metadata TEXT, harness_type TEXT)",
        "INSERT INTO match_history (id, participant_ids, winner_id, game_length, duration_sec,"
        " board_type, num_players, timestamp) VALUES (?,?,?,?,?,?,?,?)",
        ((f"s-{i:08d}", json.dumps([a, b]), w, 100, 30.0, "square8", 2, _iso(ms))
         for i, (a, b, w, ms) in enumerate(_pairs(rows, 1))))
    database = _write(
        folder / "unified_elo.db",
        "CREATE TABLE match_history (id INTEGER PRIMARY KEY AUTOINCREMENT, participant_a TEXT, "
        "participant_b TEXT, participant_ids TEXT, rankings TEXT, winner TEXT, board_type TEXT "
        "NOT NULL, num_players INTEGER NOT NULL, game_length INTEGER, duration_sec REAL, "
        "timestamp REAL NOT NULL, tournament_id TEXT, game_id TEXT, worker TEXT, metadata TEXT,"
        " elo_before TEXT, elo_after TEXT, harness_type TEXT, architecture_version TEXT, "
        "evaluation_metadata TEXT, winner_id TEXT)",
        "INSERT INTO match_history (participant_a, participant_b, participant_ids, rankings, "
        "winner, board_type, num_players, game_length, duration_sec, timestamp, tournament_id, "
        "game_id, winner_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        ((a, b, json.dumps([a, b]),
          json.dumps([0, 0] if w is None else [0, 1] if w == a else [1, 0]),
          w or a, "square8", 2, 100, 30.0, ms / 1000, "t", f"d-{i:08d}", w or a)
         for i, (a, b, w, ms) in enumerate(_pairs(rows, 2))))
    recon = _write(
        folder / "elo_reconciliation.db",
        "CREATE TABLE match_history (match_id TEXT PRIMARY KEY, player1_id TEXT NOT NULL, "
        "player2_id TEXT NOT NULL, winner_id TEXT, player1_rating_before REAL, "
        "player2_rating_before REAL, player1_rating_after REAL, player2_rating_after REAL, "
        "board_type TEXT, num_players INTEGER, game_length INTEGER, timestamp TEXT, source TEXT)",
        "INSERT INTO match_history (match_id, player1_id, player2_id, winner_id, board_type, "
        "num_players, game_length, timestamp, source) VALUES (?,?,?,?,?,?,?,?,?)",
        ((f"r-{i:08d}", a, b, w, "square8", 2, 100, _iso(ms), "tournament")
         for i, (a, b, w, ms) in enumerate(_pairs(rows, 3))))
    return [service, database, recon]


def sqlite_floor(rows: int, path: Path) -> float:
    """Rows/s of a plain LWW upsert of `rows` match rows, keys sorted (see the docstring)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA cache_size=-262144")
    conn.execute("CREATE TABLE m (key TEXT PRIMARY KEY, version BLOB NOT NULL, body BLOB NOT NULL)")
    data = sorted((f"m-{i:08d}", (1 << 40 | i).to_bytes(8, "big") + b"import",
                   json.dumps(["a", "b", "square8", 2, [1.0, 0.0]]).encode()) for i in range(rows))
    start = time.perf_counter()
    for i in range(0, rows, FLOOR_BATCH):
        conn.execute("BEGIN")
        conn.executemany(
            "INSERT INTO m (key, version, body) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
            "version = excluded.version, body = excluded.body WHERE excluded.version > m.version",
            data[i:i + FLOOR_BATCH])
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return rows / elapsed


async def _timed_import(files: list[Path], tmp: Path) -> tuple[float, dict]:
    clock = HybridClock(lambda: time.time_ns() // 1_000_000, 500)
    stores = await open_stores(tmp, clock, "bench")
    try:
        start = time.perf_counter()
        report = await import_files(files, stores)
        return time.perf_counter() - start, report.as_json()
    finally:
        await stores.close()


def run(quick: bool) -> dict[str, float | int | str]:
    rows = QUICK_ROWS_PER_FILE if quick else ROWS_PER_FILE
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        files = write_files(tmp, rows)
        seconds, report = asyncio.run(_timed_import(files, tmp / "node"))
        matches = report["matches"]
        if matches["imported"] != 3 * rows:
            raise RuntimeError(f"benchmark import did not import every row: {matches}")
        floor = sqlite_floor(3 * rows, tmp / "floor.db")
        figures: dict[str, float | int | str] = {
            "match_rows": 3 * rows,
            "match_rows_per_s": round(3 * rows / seconds),
            "sqlite_floor_rows_per_s": round(floor),
            "match_ratio_to_floor": round(3 * rows / seconds / floor, 3),
            "goal_match_rows_per_s": 100_000,
        }
        if SEED_GAMES.is_file():
            seconds, report = asyncio.run(_timed_import([SEED_GAMES], tmp / "games"))
            games = report["games"]["read"]
            figures["games"] = games
            figures["games_per_s_with_replay"] = round(games / seconds, 2)
        else:
            figures["games"] = f"skipped: {SEED_GAMES} not present"
    return figures
