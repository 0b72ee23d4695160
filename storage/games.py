"""The games store: one row per game (selfplay or imported), merged as a grow-only set of
game ids; rows of one game that differ settle on the same row everywhere (storage.rows)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import msgpack

from storage.database import Database
from storage.hlc import COUNTER_BITS, HybridClock
from storage.merge import InvalidRow
from storage.rows import (
    BOARD_TYPES,
    MAX_PLAYERS,
    MIN_PLAYERS,
    new_game,
    screen_game,
    validate_game,
)
from storage.synced import UNREADABLE, SyncedStore
from storage.tables import GAMES, config_filter


def all_configs() -> list[tuple[str, int]]:
    return [(b, n) for b in sorted(BOARD_TYPES) for n in range(MIN_PLAYERS, MAX_PLAYERS + 1)]


class GameStore(SyncedStore):
    def __init__(self, db: Database, clock: HybridClock, node_id: str) -> None:
        super().__init__(db, [GAMES], validate_game, clock, screen_game)
        self._node_id = node_id

    async def add_games(self, games: Sequence[Mapping]) -> list[str]:
        """Store a batch of games this node played or imported (one transaction), stamped
        with our clock and node id; returns their ids.

        Each mapping holds `new_game`'s arguments by name, less created_hlc and origin_node.
        Raises InvalidRow (storing none of them) if any game is malformed.
        """
        rows = [new_game(**g, created_hlc=self._clock.now(), origin_node=self._node_id)
                for g in games]
        stats = await self.merge(rows) if rows else None
        if stats is not None and stats.invalid:
            raise InvalidRow(self.last_errors[0])
        return [r["game_id"] for r in rows]

    async def count_games(
        self, board_type: str | None = None, num_players: int | None = None, since_hlc: int = 0
    ) -> int:
        where, params = config_filter(board_type, num_players, since_hlc)
        records = await self._db.fetchall(f"SELECT COUNT(*) FROM games {where}", params)
        return int(records[0][0])

    async def origins_since(self, since_hlc: int) -> dict[str, int]:
        """Games created at or after `since_hlc`, counted by the node that made them."""
        counts: dict[str, int] = {}
        for board_type, num_players in all_configs():
            where, params = config_filter(board_type, num_players, since_hlc)
            for (body,) in await self._db.fetchall(f"SELECT body FROM games {where}", params):
                try:
                    origin = msgpack.unpackb(body, raw=False).get("origin_node")
                except UNREADABLE:
                    continue  # quarantined when a read of its row meets it (SyncedStore.rows)
                if isinstance(origin, str):
                    counts[origin] = counts.get(origin, 0) + 1
        return counts

    async def hourly_counts(self, since_hlc: int) -> dict[int, int]:
        """Games created at or after `since_hlc` by the hour (unix hour number) they were made."""
        counts: dict[int, int] = {}
        for board_type, num_players in all_configs():
            # One config at a time: each is a range of the (config, created_hlc) index.
            where, params = config_filter(board_type, num_players, since_hlc)
            sql = (f"SELECT (created_hlc >> {COUNTER_BITS}) / 3600000 AS hour, COUNT(*) "
                   f"FROM games {where} GROUP BY hour")
            for hour, count in await self._db.fetchall(sql, params):
                counts[int(hour)] = counts.get(int(hour), 0) + int(count)
        return counts

    async def games_for(
        self, board_type: str, num_players: int, since_hlc: int = 0, limit: int | None = None
    ) -> list[dict]:
        """Games of one config created at or after `since_hlc`, oldest first."""
        where, params = config_filter(board_type, num_players, since_hlc)
        sql = f"{GAMES.select_sql} {where} ORDER BY created_hlc, key"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return await self._wire_rows(GAMES, await self._db.fetchall(sql, params))

    async def recent_games(self, board_type: str, num_players: int, limit: int) -> list[dict]:
        """The `limit` newest games of one config, oldest first (a training window)."""
        where, params = config_filter(board_type, num_players)
        sql = f"{GAMES.select_sql} {where} ORDER BY created_hlc DESC, key DESC LIMIT ?"
        rows = await self._wire_rows(GAMES, await self._db.fetchall(sql, [*params, int(limit)]))
        return rows[::-1]
