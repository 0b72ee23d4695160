"""This node's verdicts on whether its game rows replay legally (schema v4, never synced).

Checking a game means replaying every move through the rules engine, far too slow for the
merge (sync must stay fast), so it happens afterwards (`node.replay_check`), and its verdict is
kept here per (game_id, row version): a replacing row of the same game (one with search
targets) is checked again. A game that fails stays in the games store, so honest nodes keep
equal roots, but is quarantined here: never trained on, counted, its origin named in status.
Training reads `trainable`, which holds only games whose current row replayed legally.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.database import Database
from storage.tables import GAMES

MAX_REASON_CHARS = 300


@dataclass(frozen=True, slots=True)
class Verdict:
    key: str
    version: bytes
    ok: bool
    origin: str
    reason: str = ""


class GameChecks:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def unchecked(self, after_rowid: int, limit: int) -> list[tuple[int, bytes, tuple]]:
        """Up to `limit` games past `after_rowid` whose current row has no verdict yet, as
        (rowid, version, stored record for `GAMES.to_wire`), in rowid order."""
        rows = await self._db.fetchall(
            f"SELECT g.rowid, g.version, {_G_COLUMNS} "
            "FROM games g LEFT JOIN game_checks c ON c.key = g.key AND c.version = g.version "
            "WHERE g.rowid > ? AND c.key IS NULL ORDER BY g.rowid LIMIT ?",
            (after_rowid, limit),
        )
        return [(r[0], r[1], tuple(r[2:])) for r in rows]

    async def record(self, verdicts: list[Verdict]) -> None:
        async with self._db.transaction() as conn:
            await conn.executemany(
                "INSERT OR REPLACE INTO game_checks (key, version, ok, origin, reason) "
                "VALUES (?, ?, ?, ?, ?)",
                [(v.key, v.version, int(v.ok), v.origin[:128], v.reason[:MAX_REASON_CHARS])
                 for v in verdicts],
            )

    async def quarantined(self) -> tuple[int, dict[str, int]]:
        """(games quarantined, their count by origin node) among the rows held now."""
        rows = await self._db.fetchall(
            "SELECT c.origin, COUNT(*) FROM game_checks c JOIN games g "
            "ON g.key = c.key AND g.version = c.version WHERE c.ok = 0 GROUP BY c.origin")
        origins = {origin: int(n) for origin, n in rows}
        return sum(origins.values()), origins

    async def trainable(self, board_type: str, num_players: int, since_hlc: int = 0,
                        limit: int | None = None) -> list[dict]:
        """Games of one config at or after `since_hlc` whose current row replayed legally,
        oldest first: what training may read."""
        sql = (f"SELECT {_G_COLUMNS} FROM games g JOIN game_checks c ON c.key = g.key "
               "AND c.version = g.version WHERE c.ok = 1 AND g.board_type = ? "
               "AND g.num_players = ? AND g.created_hlc >= ? ORDER BY g.created_hlc, g.key")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        records = await self._db.fetchall(sql, (board_type, num_players, since_hlc))
        return [GAMES.to_wire(r) for r in records]


# The games table's stored columns, qualified for the joins above.
_G_COLUMNS = ", ".join(f"g.{c}" for c in GAMES.stored_columns.split(", "))
