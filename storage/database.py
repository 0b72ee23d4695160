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
import errno
import shutil
import sqlite3
from collections.abc import AsyncIterator, Callable
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


class DatabaseCorruptError(Exception):
    """The database file is not one SQLite can read; the message names the file and why."""


class DiskFullError(OSError):
    """A write failed for lack of space (the disk, or the database's size cap). Nothing of the
    transaction was written; `Database.full` stays set until space is seen again."""


def _is_full(exc: BaseException) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == _SQLITE_FULL or (isinstance(exc, OSError) and exc.errno == errno.ENOSPC)


_SQLITE_FULL = 13
# Space a paused node wants free again before it resumes writing: enough for a few sync
# batches, so that it does not flap between paused and writing on every batch.
RESUME_HEADROOM_BYTES = 16 << 20


class Database:
    """Owns the connection. Every transaction (and every read) holds `lock`, because the
    connection is shared by coroutines that could otherwise interleave inside one transaction."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, max_bytes: int = 0) -> None:
        self.conn = conn
        self.path = path
        self.lock = asyncio.Lock()
        self.max_bytes = max_bytes
        # Set when a write found no space; reads go on, writers should wait (`has_space`).
        self.full = False
        # Called when a write finds no space (the node's disk watch wakes on it).
        self.on_full: Callable[[], None] | None = None

    @classmethod
    async def open(cls, path: Path, max_bytes: int = 0) -> Database:
        """Open (creating or migrating) the database; `max_bytes` caps its size (0: none).

        Raises DatabaseCorruptError for a file SQLite cannot read as a database.
        """
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            for pragma in _PRAGMAS:
                await conn.execute(pragma)
            if max_bytes:
                page = (await conn.execute_fetchall("PRAGMA page_size"))[0][0]
                await conn.execute(f"PRAGMA max_page_count = {max(1, max_bytes // page)}")
            await migrate(conn)
        except sqlite3.DatabaseError as exc:
            await conn.close()
            if isinstance(exc, sqlite3.OperationalError) and not _is_corrupt(exc):
                raise
            raise DatabaseCorruptError(f"{path}: not a readable SQLite database ({exc})") from exc
        except BaseException:
            await conn.close()
            raise
        return cls(conn, path, max_bytes)

    async def has_space(self) -> bool:
        """Whether writes may go on: the disk and the size cap leave RESUME_HEADROOM_BYTES
        (or an eighth of the cap, for a small one). Clears `full` when they do."""
        free = (await asyncio.to_thread(shutil.disk_usage, self.path.parent)).free
        ok = free >= RESUME_HEADROOM_BYTES
        if ok and self.max_bytes:
            async with self.reading() as conn:
                rows = await conn.execute_fetchall(
                    "SELECT * FROM pragma_page_count, pragma_freelist_count, "
                    "pragma_max_page_count, pragma_page_size")
            count, free_pages, most, size = rows[0]
            ok = (most - count + free_pages) * size >= min(RESUME_HEADROOM_BYTES,
                                                           self.max_bytes // 8)
        if ok:
            self.full = False
        return ok

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """BEGIN IMMEDIATE ... COMMIT; rolled back if the body raises (or is cancelled)."""
        async with self.lock:
            await self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield self.conn
                await self.conn.execute("COMMIT")
            except BaseException as exc:
                # Also after a failed COMMIT (disk full, I/O error): the connection must not be
                # left inside a transaction, or every later BEGIN fails. When the COMMIT went
                # through after all (its caller was cancelled), there is nothing to roll back.
                with contextlib.suppress(sqlite3.Error):
                    await self.conn.execute("ROLLBACK")
                if _is_full(exc):
                    self.full = True
                    if self.on_full is not None:
                        self.on_full()
                    raise DiskFullError(errno.ENOSPC, f"{self.path}: no space to write "
                                                      f"({exc})") from exc
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


def _is_corrupt(exc: sqlite3.OperationalError) -> bool:
    # SQLITE_CORRUPT (11) and SQLITE_NOTADB (26); other operational errors (locked, no such
    # directory) are not a broken file and keep their own message.
    return getattr(exc, "sqlite_errorcode", None) in (11, 26)
