"""The games store: immutable selfplay records, merged as a grow-only set."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from storage.database import Database
from storage.hlc import HybridClock
from storage.merge import InvalidRow
from storage.rows import new_game, screen_game, validate_game
from storage.synced import SyncedStore
from storage.tables import GAMES, config_filter


class GameStore(SyncedStore):
    def __init__(self, db: Database, clock: HybridClock, node_id: str) -> None:
        super().__init__(db, [GAMES], validate_game, clock, screen_game)
        self._node_id = node_id

    async def add_game(
        self, board_type: str, num_players: int, model_id: str, winner: int | None,
        outcome: Sequence[float], moves: Sequence,
    ) -> str:
        """Store a game this node played; returns its game_id (stamped with our clock)."""
        return (await self.add_games([{
            "board_type": board_type, "num_players": num_players, "model_id": model_id,
            "winner": winner, "outcome": list(outcome), "moves": moves,
        }]))[0]

    async def add_games(self, games: Sequence[Mapping]) -> list[str]:
        """Store a batch of games this node played (one transaction); returns their ids.

        Each mapping has add_game's arguments by name. Raises InvalidRow (storing none of
        them) if any game is malformed.
        """
        rows = [
            new_game(g["board_type"], g["num_players"], g["model_id"], g["winner"],
                     list(g["outcome"]), g["moves"], self._clock.now(), self._node_id)
            for g in games
        ]
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

    async def games_for(
        self, board_type: str, num_players: int, since_hlc: int = 0, limit: int | None = None
    ) -> list[dict]:
        """Games of one config created at or after `since_hlc`, oldest first."""
        where, params = config_filter(board_type, num_players, since_hlc)
        sql = f"{GAMES.select_sql} {where} ORDER BY created_hlc, key"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        return await self._wire_rows(GAMES, await self._db.fetchall(sql, params))

