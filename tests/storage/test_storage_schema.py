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
