"""Reference-system SQLite files: opened read-only and told apart by their schema, never their name.

The reference keeps three incompatible `match_history` tables under one file name
(`unified_elo.db`) and its game database under many names, so a file's kind is read from the
columns of its tables. Files are opened read-only and never modified; a WAL-mode file in a folder
we cannot write to can only be opened `immutable=1` (SQLite would want to create its `-shm`
file), which is fine for a file no one is writing.
"""

from __future__ import annotations

import enum
import sqlite3
from pathlib import Path
from urllib.parse import quote

# The newest games-database schema this importer knows (the reference's GameReplayDB).
GAMES_SCHEMA_VERSION = 18


class SourceKind(enum.Enum):
    GAMES = "games_v18"  # GameReplayDB: games, game_moves, game_initial_state, ...
    ELO_SERVICE = "elo_service"  # EloService: match_history(id TEXT, participant_ids, winner_id)
    ELO_DATABASE = "elo_database"  # EloDatabase: match_history(id INTEGER, participant_a, rankings)
    ELO_RECONCILIATION = "elo_reconciliation"  # EloReconciler: match_history(match_id, player1_id)


class SourceError(Exception):
    """A source file that cannot be imported: the message names the file and what was found."""


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection to `path` that leaves its folder as it was; SourceError if the
    file cannot be read.

    A WAL-mode file without a `-wal` beside it holds all its data (fully checkpointed), and is
    opened `immutable=1`: a plain read-only open would create `-wal`/`-shm` files next to it
    (or fail where the folder is read-only). With a `-wal` present its frames are part of the
    data, so it is opened read-only the ordinary way, which needs a writable folder.
    """
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    try:
        with path.open("rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise SourceError(f"{path}: cannot be read ({exc.strerror})") from None
    if len(header) < 100 or not header.startswith(b"SQLite format 3\x00"):
        raise SourceError(f"{path}: cannot be read as SQLite (not an SQLite 3 file)")
    wal_mode = header[18] == 2 and header[19] == 2
    pending_wal = Path(f"{path}-wal").exists()
    mode = "immutable=1" if wal_mode and not pending_wal else "mode=ro"
    uri = f"file:{quote(str(path.resolve()))}?{mode}"
    try:
        conn = sqlite3.connect(uri, uri=True)
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        hint = " (it has a -wal file: copy the file with it to a writable folder)" \
            if pending_wal else ""
        raise SourceError(f"{path}: cannot be read as SQLite ({exc}){hint}") from None
    return conn


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def detect(conn: sqlite3.Connection, path: Path) -> SourceKind:
    """The kind of reference file `conn` holds; SourceError for anything else or newer."""
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if {"games", "game_moves", "game_initial_state"} <= tables:
            version = _games_schema_version(conn, tables)
            if version != GAMES_SCHEMA_VERSION:
                raise SourceError(
                    f"{path}: games database schema version {version}, this importer reads "
                    f"version {GAMES_SCHEMA_VERSION} only"
                )
            return SourceKind.GAMES
        if "match_history" in tables:
            cols = _columns(conn, "match_history")
            if {"match_id", "player1_id", "player2_id", "winner_id", "timestamp"} <= cols:
                return SourceKind.ELO_RECONCILIATION
            if {"participant_a", "participant_ids", "rankings", "game_id", "winner_id",
                    "timestamp"} <= cols:
                return SourceKind.ELO_DATABASE
            if {"id", "participant_ids", "winner_id", "timestamp"} <= cols:
                return SourceKind.ELO_SERVICE
            raise SourceError(
                f"{path}: match_history with unknown columns {sorted(cols)}"
            )
    except sqlite3.DatabaseError as exc:
        raise SourceError(f"{path}: cannot be read as SQLite ({exc})") from None
    raise SourceError(f"{path}: not a reference games or Elo database (tables {sorted(tables)})")


def _games_schema_version(conn: sqlite3.Connection, tables: set[str]) -> int | None:
    if "schema_metadata" not in tables:
        return None
    row = conn.execute(
        "SELECT value FROM schema_metadata WHERE key = 'schema_version'"
    ).fetchone()
    try:
        return int(row[0]) if row else None
    except (TypeError, ValueError):
        return None
