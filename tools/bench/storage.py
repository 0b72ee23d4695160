"""Storage benchmark: bulk import through the SQLite stores' merge path, and digest costs.

`python -m tools.bench storage [--quick] [--json]`. Rows are built before the clock starts;
the timed part is what the mesh pays: validation, merge planning, hashing, the SQLite
transaction with its fsync (synchronous=FULL) and the digest update.
"""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

from storage.digests import Digests, hash_rows
from storage.hlc import HybridClock
from storage.rows import new_game, new_match
from storage.stores import open_stores

GOALS = {"match_import_rows_per_s": 500_000, "game_import_games_per_s": 50_000}
MESH_BATCH = 64  # mesh.sync_messages.MAX_KEYS_PER_REQUEST: rows per pulled batch today


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
        # Rows per merge call: each call is one transaction and one fsync (synchronous=FULL),
        # a cost per batch that small batches cannot spread. MESH_BATCH is what a pull merges.
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
