"""The one SQLite connection a node writes through, its pragmas and its transactions.

Durability: WAL with `synchronous=FULL`. With NORMAL, a commit survives a process kill but
not a power cut or kernel crash (the WAL is fsynced only at checkpoints); the election's
persisted term and vote and every acknowledged write must survive both, or a node could vote
twice in one term. FULL costs one fsync per commit, and the stores commit whole batches,
so the cost is paid per batch, not per row.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from storage.schema import migrate

DB_FILE = "node.db"

_PRAGMAS = (
    "PRAGMA journal_mode = WAL",
    "PRAGMA synchronous = FULL",
    "PRAGMA busy_timeout = 5000",  # another process (a tool) may briefly hold the write lock
    "PRAGMA temp_store = MEMORY",
    "PRAGMA cache_size = -65536",  # 64 MiB: bulk merges touch many index pages
)


class Database:
    """Owns the connection. Every transaction (and every read) holds `lock`, because the
    connection is shared by coroutines that could otherwise interleave inside one transaction."""

    def __init__(self, conn: aiosqlite.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: Path) -> Database:
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in _PRAGMAS:
                await conn.execute(pragma)
            await migrate(conn)
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the body raises (or is cancelled)."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException:
                # Also after a failed COMMIT (disk full, I/O error): the connection must not be
                # left inside a transaction, or every later BEGIN fails. When the COMMIT went
                # through after all (its caller was cancelled), there is nothing to roll back.
                with contextlib.suppress(sqlite3.Error):
                    await self.conn.execute("ROLLBACK")
                raise

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[aiosqlite.Connection]:
        """The connection for reads, outside any other coroutine's open transaction."""
        async with self.lock:
            yield self.conn

    async def fetchall(self, sql: str, params: tuple | list = ()) -> list[tuple]:
        # execute_fetchall is one hop to the connection's thread; execute + fetchall + close
        # would be three, and under load each hop waits for the thread to be scheduled.
        async with self.reading() as conn:
            return list(await conn.execute_fetchall(sql, params))

    async def close(self) -> None:
        async with self.lock:
            await self.conn.close()
