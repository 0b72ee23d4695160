"""A full disk pauses the node's writes instead of ending it; space coming back resumes them.

`storage.database` marks the database `full` when a write finds no space (the disk, or the
`storage.max_db_mib` cap) and raises DiskFullError; nothing of that write is kept, and what was
acknowledged before stays. While full, the mesh pulls nothing (`MeshRuntime.sync_round`) and
selfplay waits (`wait_for_space`), but the node keeps serving reads, gossip and its status.
`DiskWatch` looks for space every `disk_retry_s` and resumes writing when there is room again.
"""

from __future__ import annotations

import asyncio
import logging

from storage.database import Database

log = logging.getLogger("ringrift.disk")


class DiskWatch:
    def __init__(self, db: Database, retry_s: float) -> None:
        self._db = db
        self._retry_s = retry_s
        self._space = asyncio.Event()
        self._space.set()
        self._full = asyncio.Event()
        db.on_full = self._full.set
        self.pauses = 0  # times writes were paused (exported as a counter)

    @property
    def full(self) -> bool:
        return self._db.full

    async def wait_for_space(self) -> None:
        """Return at once while writes go on; while paused, once space is back."""
        if self._db.full:
            self._space.clear()
        await self._space.wait()

    async def run(self) -> None:
        """Pause on a write that found no space; resume once space is back, until cancelled."""
        while True:
            await self._full.wait()
            self._full.clear()
            self.pauses += 1
            self._space.clear()
            log.error("no space left for %s: writes and selfplay paused, still serving; "
                      "free space (or raise storage.max_db_mib) to resume", self._db.path)
            # Look again only after retry_s: a write that just failed would fail again.
            while True:
                await asyncio.sleep(self._retry_s)
                if await self._db.has_space():
                    break
            self._full.clear()  # writes that failed while paused are this same pause
            self._space.set()
            log.warning("space is back for %s: writes resumed", self._db.path)
