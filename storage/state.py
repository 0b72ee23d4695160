"""A small durable key-value table for node state (election term and vote, known peers)."""

from __future__ import annotations

from storage.database import Database
from storage.sync_limits import check_state_key, decode_state, encode_state


class StateStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_state(self, key: str, default: object = None) -> object:
        check_state_key(key)
        records = await self._db.fetchall("SELECT value FROM node_state WHERE key = ?", (key,))
        return decode_state(records[0][0]) if records else default

    async def set_state(self, key: str, value: object) -> None:
        """Store a msgpack-able value; returns only once the commit is durable (fsynced)."""
        packed = encode_state(value)
        check_state_key(key)
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT OR REPLACE INTO node_state (key, value) VALUES (?, ?)", (key, packed)
            )
