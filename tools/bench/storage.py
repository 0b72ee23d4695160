"""Storage benchmark: bulk import through the SQLite stores' merge path, and digest costs.

`python -m tools.bench storage [--quick] [--json]`. Rows are built before the clock starts;
the timed part is what the mesh pays: validation, merge planning, hashing, the SQLite
transaction with its fsync (synchronous=FULL) and the digest update. Beside the match import
stands the floor under it, measured in the same run: SQLite alone storing the same rows as a
plain last-write-wins upsert (`sqlite_floor_match_rows_per_s`), and the import's ratio to it.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import tempfile
import time
from pathlib import Path

import msgpack

from storage.digests import Digests, hash_rows
from storage.hlc import HybridClock
from storage.merge import match_version
from storage.rows import new_game, new_match
from storage.stores import open_stores

GOALS = {"match_import_rows_per_s": 500_000, "game_import_games_per_s": 50_000}
MESH_BATCH = 64  # rows per merge of a pull before pulls were pipelined: the per-batch cost


def _matches(n: int, rnd: random.Random) -> list[dict]:
    node = "0123456789abcdef0123456789abcdef"
    return [
        new_match(f"{rnd.getrandbits(64):016x}-{i}", [f"model-{i % 7}", f"model-{i % 5 + 7}"],
                  "square8", 2, [1.0, 0.0] if i % 3 else [0.5, 0.5], (1 << 40) + i, node)
        for i in range(n)
    ]


def _games(n: int, rnd: random.Random) -> list[dict]:
    node = "fedcba9876543210fedcba9876543210"
    rows = []
    for i in range(n):
        # Moves as the engine encodes a movement-phase move (type, player, fields, src, dst).
        moves = [bytes((3, 1 + m % 2, 3, rnd.randrange(64), 0, rnd.randrange(64), 0))
                 for m in range(60)]
        rows.append(new_game("square8", 2, moves, [1, 2] if i % 2 == 0 else [2, 1],
                             (1 << 40) + i, node, model_sha="3" * 64,
                             search={"algorithm": "gumbel", "simulations": 16}))
    return rows


async def _import(
    rows: list[dict], store_name: str, batch: int, tmp: Path
) -> tuple[float, float]:
    """Seconds to merge `rows` in batches of `batch` into a fresh SQLite store, then again
    (the re-import, where every row is already held: anti-entropy's no-op case)."""
    stores = await open_stores(tmp, HybridClock(lambda: 1 << 40, 60_000), "bench")
    try:
        store = stores.by_name()[store_name]
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            stats = await store.merge(rows[i:i + batch])
            if stats.invalid:
                raise RuntimeError(f"benchmark rows refused: {store.last_errors}")
        elapsed = time.perf_counter() - start
        if (await store.summary())[0] != len(rows):
            raise RuntimeError(f"imported {len(rows)} rows but the store holds {await store.summary()}")
        start = time.perf_counter()
        for i in range(0, len(rows), batch):
            await store.merge(rows[i:i + batch])
        return elapsed, time.perf_counter() - start
    finally:
        await stores.close()


def _sqlite_floor(rows: list[dict], batch: int, tmp: Path) -> float:
    """Seconds SQLite itself takes to store `rows` as a plain last-write-wins upsert: one
    table keyed by the row key, the version and the encoded row beside it, keys sorted in
    each transaction of `batch` rows, WAL with synchronous=FULL and a 256 MB cache. The
    parameters are built before the clock starts: what is timed is SQLite's work alone, the
    floor under any merge path that stores the same rows as durably."""
    params = [(r["match_id"], match_version(r["hlc"], r["origin_node"]),
               msgpack.packb(r, use_bin_type=True)) for r in rows]
    batches = [sorted(params[i:i + batch]) for i in range(0, len(params), batch)]
    conn = sqlite3.connect(tmp / "floor.db", isolation_level=None)
    try:
        for pragma in ("PRAGMA journal_mode = WAL", "PRAGMA synchronous = FULL",
                       "PRAGMA cache_size = -262144"):
            conn.execute(pragma)
        conn.execute("CREATE TABLE floor (key TEXT PRIMARY KEY, version BLOB NOT NULL, "
                     "body BLOB NOT NULL)")
        upsert = ("INSERT INTO floor (key, version, body) VALUES (?, ?, ?) "
                  "ON CONFLICT (key) DO UPDATE SET version = excluded.version, "
                  "body = excluded.body WHERE excluded.version > floor.version")
        start = time.perf_counter()
        for chunk in batches:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(upsert, chunk)
            conn.execute("COMMIT")
        return time.perf_counter() - start
    finally:
        conn.close()


async def _open_seconds(tmp: Path) -> float:
    """Seconds to open the stores (rebuilding every store's digests from stored row hashes)."""
    start = time.perf_counter()
    stores = await open_stores(tmp, HybridClock(lambda: 1 << 40, 60_000), "bench")
    elapsed = time.perf_counter() - start
    await stores.close()
    return elapsed


def _digest_figures(n: int) -> dict[str, float]:
    keys = [os.urandom(16).hex() for _ in range(n)]
    versions = [os.urandom(8) + b"0123456789abcdef0123456789abcdef" for _ in range(n)]
    start = time.perf_counter()
    digests = Digests.from_hashes(*hash_rows(keys, versions))
    digests.root()
    scratch_s = time.perf_counter() - start
    buckets, hashes = hash_rows(keys, versions)
    start = time.perf_counter()
    Digests.from_hashes(buckets, hashes).root()
    stored_s = time.perf_counter() - start
    # Incremental update as a merge does it: hash the batch's rows, XOR them in.
    batch = 1_000
    start = time.perf_counter()
    for i in range(0, n, batch):
        digests.toggle(*hash_rows(keys[i:i + batch], versions[i:i + batch]))
    update_ns = (time.perf_counter() - start) / n * 1e9
    scale = 1_000_000 / n
    return {
        "digest_1m_rows_s": round(scratch_s * scale, 3),
        "digest_1m_rows_from_stored_hashes_s": round(stored_s * scale, 4),
        "digest_update_ns_per_row": round(update_ns, 1),
    }


def run(quick: bool) -> dict[str, float | int | str]:
    rnd = random.Random(7)
    n_matches = 20_000 if quick else 200_000
    n_games = 3_000 if quick else 30_000
    matches = _matches(n_matches, rnd)
    games = _games(n_games, rnd)
    figures: dict[str, float | int | str] = {"match_rows": n_matches, "games": n_games}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t, again = asyncio.run(_import(matches, "matches", 10_000, root / "m"))
        figures["match_import_rows_per_s"] = round(n_matches / t)
        figures["match_reimport_rows_per_s"] = round(n_matches / again)
        floor = _sqlite_floor(matches, 10_000, root)
        figures["sqlite_floor_match_rows_per_s"] = round(n_matches / floor)
        figures["match_import_ratio_to_sqlite_floor"] = round(floor / t, 3)
        # Rows per merge call: each call is one transaction and one fsync (synchronous=FULL),
        # a cost per batch that small batches cannot spread (a pull's merges now take whatever
        # arrived while the previous one wrote: thousands of rows).
        few = matches[: n_matches // 4]
        for batch in (MESH_BATCH, 512, 2048):
            t, _ = asyncio.run(_import(few, "matches", batch, root / f"m{batch}"))
            figures[f"match_import_rows_per_s_batch{batch}"] = round(len(few) / t)
        t, again = asyncio.run(_import(games, "games", 2_000, root / "g"))
        figures["game_import_games_per_s"] = round(n_games / t)
        figures["game_reimport_games_per_s"] = round(n_games / again)
        figures["open_s_with_match_db"] = round(asyncio.run(_open_seconds(root / "m")), 3)
    figures.update(_digest_figures(100_000 if quick else 1_000_000))
    for name, goal in GOALS.items():
        figures[f"{name}_vs_goal"] = round(float(figures[name]) / goal, 3)
    return figures
