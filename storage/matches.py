"""The Elo match store: last-write-wins registers keyed by match_id, versioned (hlc, node_id)."""

from __future__ import annotations

from collections.abc import Sequence

from storage.database import Database
from storage.hlc import HybridClock
from storage.rows import new_match, screen_match, screen_matches, validate_match
from storage.synced import SyncedStore
from storage.tables import MATCHES, config_filter


class MatchStore(SyncedStore):
    def __init__(self, db: Database, clock: HybridClock, node_id: str) -> None:
        super().__init__(db, [MATCHES], validate_match, clock, screen_match, screen_matches)
        self._node_id = node_id

    async def record_match(
        self, match_id: str, participants: Sequence[str], board_type: str, num_players: int,
        result: Sequence[float],
    ) -> dict:
        """Record (or overwrite) a match result; `result[i]` is participant i's score in [0, 1].

        Returns the stored row. Raises InvalidRow for a malformed row.
        """
        row = new_match(match_id, list(participants), board_type, num_players, list(result),
                        self._clock.now(), self._node_id)
        await self.put(row)
        return row

    async def all_matches(
        self, board_type: str | None = None, num_players: int | None = None
    ) -> list[dict]:
        """Every match row (of one config when given), in match_id order: the Elo input."""
        where, params = config_filter(board_type, num_players)
        records = await self._db.fetchall(f"{MATCHES.select_sql} {where} ORDER BY key", params)
        return await self._wire_rows(MATCHES, records)
