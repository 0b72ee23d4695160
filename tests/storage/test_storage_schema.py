"""Schema versions: newer databases are refused, older ones are migrated step by step."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import aiosqlite
import msgpack
import pytest

from storage.database import DB_FILE
from storage.hlc import HybridClock
from storage.schema import SCHEMA_VERSION, SchemaTooNewError, migrate, schema_version
from storage.stores import open_stores


def clock() -> HybridClock:
    return HybridClock(lambda: 1, 0)


async def test_a_database_from_a_newer_release_is_refused(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(SchemaTooNewError) as info:
        await open_stores(tmp_path, clock(), "n")
    assert (info.value.found, info.value.supported) == (SCHEMA_VERSION + 1, SCHEMA_VERSION)


async def test_a_version_0_database_lacking_tables_is_migrated_keeping_its_data(
    tmp_path: Path,
) -> None:
    # Before versioning, a node kept only its election state, in a table of its own.
    with sqlite3.connect(tmp_path / DB_FILE) as conn:
        conn.execute("CREATE TABLE node_state (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        conn.execute("INSERT INTO node_state VALUES ('current_term', ?)", (msgpack.packb(4),))
    stores = await open_stores(tmp_path, clock(), "n")
    try:
        assert await stores.state.get_state("current_term") == 4
        assert await schema_version(stores.db.conn) == SCHEMA_VERSION
        await stores.matches.record_match("m", ["a", "b"], "square8", 2, [1, 0])
    finally:
        await stores.close()


async def test_migrations_run_in_order_each_in_a_transaction(tmp_path: Path) -> None:
    steps = [
        ["CREATE TABLE t (a INTEGER)", "INSERT INTO t VALUES (1)"],
        ["ALTER TABLE t ADD COLUMN b TEXT DEFAULT 'x'"],
        ["UPDATE t SET b = 'y'", "THIS IS NOT SQL"],
    ]
    async with aiosqlite.connect(tmp_path / "m.db", isolation_level=None) as conn:
        assert await migrate(conn, steps[:2]) == 0
        assert await schema_version(conn) == 2
        async with conn.execute("SELECT a, b FROM t") as cur:
            assert await cur.fetchall() == [(1, "x")]
        with pytest.raises(sqlite3.OperationalError):
            await migrate(conn, steps)
        assert await schema_version(conn) == 2  # the failed step left no trace
        async with conn.execute("SELECT b FROM t") as cur:
            assert await cur.fetchall() == [("x",)]


async def test_a_version_1_database_is_migrated_to_key_hash_lookups_keeping_rows_and_digests(
    tmp_path: Path,
) -> None:
    from storage.digests import hash_rows
    from storage.memory import MemoryStores
    from storage.rows import new_alias, new_match
    from storage.schema import MIGRATIONS

    match = new_match("m1", ["a", "b"], "square8", 2, [1.0, 0.0], 5, "n1")
    alias = new_alias("production", "square8", 2, "b" * 64, 2, 7, "n1")
    memory = MemoryStores()
    memory.matches.merge([match])
    memory.models.merge([alias])
    async with aiosqlite.connect(tmp_path / DB_FILE, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:1]) == 0
        # Rows as release 1 stored them: (key, bucket, version, h, body, ...columns).
        for table, (key, version, data), extra in [
            ("matches", memory.matches._rows["m1"][:3], ("square8", 2, 5)),
            ("aliases", memory.models._rows["a:square8:2:production"][:3],
             ("production", "square8", 2, "b" * 64, 2)),
        ]:
            bucket, h = (int(x[0]) for x in hash_rows([key], [version]))
            marks = ", ".join("?" * (5 + len(extra)))
            await conn.execute(
                f"INSERT INTO {table} VALUES ({marks})",
                (key, bucket, version, h - (1 << 64) if h >= 1 << 63 else h,
                 msgpack.packb(data), *extra),
            )
    stores = await open_stores(tmp_path, clock(), "n")
    try:
        assert await schema_version(stores.db.conn) == SCHEMA_VERSION
        for name, store in stores.by_name().items():
            mem = memory.by_name()[name]
            assert await store.summary() == mem.summary()
            every = list(range(256))
            assert sorted(await store.bucket_entries(every)) == sorted(mem.bucket_entries(every))
            keys = [k for k, _ in mem.bucket_entries(every)]
            assert await store.rows(keys) == mem.rows(keys)
        # The migrated rows are found by key: merging them again changes nothing.
        assert (await stores.matches.merge([match])).skipped == 1
    finally:
        await stores.close()


async def test_version_2_games_of_the_free_form_layout_are_kept_aside_and_no_longer_synced(
    tmp_path: Path,
) -> None:
    from storage.rows import new_game
    from storage.schema import MIGRATIONS

    old_body = {"game_id": "d" * 64, "board_type": "hex8", "num_players": 3, "model_id": "m",
                "winner": 1, "outcome": [0.0, 1.0, 0.0], "created_hlc": 6, "origin_node": "n1"}
    async with aiosqlite.connect(tmp_path / DB_FILE, isolation_level=None) as conn:
        assert await migrate(conn, MIGRATIONS[:2]) == 0
        await conn.execute(
            "INSERT INTO games VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ("d" * 64, 5, bytes.fromhex("d" * 64), 9, msgpack.packb(old_body),
             msgpack.packb([[1, 2], [3]]), "hex8", 3, 6),
        )
    stores = await open_stores(tmp_path, clock(), "n")
    try:
        assert await schema_version(stores.db.conn) == SCHEMA_VERSION
        assert (await stores.games.summary())[0] == 0
        [(body, moves)] = await stores.db.fetchall("SELECT body, moves FROM games_v2_legacy")
        assert msgpack.unpackb(body)["outcome"] == [0.0, 1.0, 0.0]
        assert msgpack.unpackb(moves) == [[1, 2], [3]]
        game = new_game("hex8", 3, [b"\x00\x01"], [3, 1, 2], 7, "n1")
        assert (await stores.games.merge([game])).added == 1
        assert await stores.games.games_for("hex8", 3) == [game]
    finally:
        await stores.close()
