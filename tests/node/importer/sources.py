"""Small reference-format files made in tests, in the exact shapes of the seed-data README."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

SEED = Path(__file__).resolve().parents[3].parent / "shared" / "seed-data"


def seed_file(name: str) -> Path:
    path = SEED / name
    if not path.is_file():
        pytest.skip(f"shared seed data {path} is not present")
    return path


def copy_seed(name: str, dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(seed_file(name), dest)
    return dest


ELO_SERVICE_SQL = """CREATE TABLE match_history (
    id TEXT PRIMARY KEY, participant_ids TEXT NOT NULL, winner_id TEXT, game_length INTEGER,
    duration_sec REAL, board_type TEXT NOT NULL, num_players INTEGER NOT NULL, timestamp TEXT,
    elo_before TEXT, elo_after TEXT, tournament_id TEXT, metadata TEXT, harness_type TEXT);
CREATE TABLE elo_ratings (participant_id TEXT NOT NULL, board_type TEXT NOT NULL,
    num_players INTEGER NOT NULL, rating REAL DEFAULT 1500.0, games_played INTEGER DEFAULT 0,
    PRIMARY KEY (participant_id, board_type, num_players));"""

ELO_DATABASE_SQL = """CREATE TABLE match_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT, participant_a TEXT, participant_b TEXT,
    participant_ids TEXT, rankings TEXT, winner TEXT, board_type TEXT NOT NULL,
    num_players INTEGER NOT NULL, game_length INTEGER, duration_sec REAL,
    timestamp REAL NOT NULL, tournament_id TEXT, game_id TEXT, worker TEXT, metadata TEXT,
    elo_before TEXT, elo_after TEXT, harness_type TEXT, architecture_version TEXT,
    evaluation_metadata TEXT, winner_id TEXT);"""

RECONCILIATION_SQL = """CREATE TABLE match_history (
    match_id TEXT PRIMARY KEY, player1_id TEXT NOT NULL, player2_id TEXT NOT NULL,
    winner_id TEXT, player1_rating_before REAL, player2_rating_before REAL,
    player1_rating_after REAL, player2_rating_after REAL, board_type TEXT, num_players INTEGER,
    game_length INTEGER, timestamp TEXT, source TEXT);
CREATE TABLE participants (participant_id TEXT PRIMARY KEY, rating REAL DEFAULT 1500.0);"""


def make_db(path: Path, schema: str, rows: list[tuple[str, tuple]]) -> Path:
    conn = sqlite3.connect(path)
    conn.executescript(schema)
    for sql, params in rows:
        conn.execute(sql, params)
    conn.commit()
    conn.close()
    return path


def service_row(mid: str, a: str, b: str, winner: str | None, ts: str, *, board="square8",
                n=2, tournament=None, length=100, duration=30.0) -> tuple[str, tuple]:
    return ("INSERT INTO match_history (id, participant_ids, winner_id, game_length, "
            "duration_sec, board_type, num_players, timestamp, tournament_id) "
            "VALUES (?,?,?,?,?,?,?,?,?)",
            (mid, json.dumps([a, b]), winner, length, duration, board, n, ts, tournament))


def database_row(game_id: str, ids: list[str], ranks: list[int] | None, ts: float | str, *,
                 winner_id: str | None = None, board="square8", tournament="t1",
                 length=100, duration=30.0) -> tuple[str, tuple]:
    first = ids[ranks.index(0)] if ranks else None
    return ("INSERT INTO match_history (participant_a, participant_b, participant_ids, "
            "rankings, winner, board_type, num_players, game_length, duration_sec, timestamp, "
            "tournament_id, game_id, winner_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (ids[0] if ranks else None, ids[1] if ranks else None, json.dumps(ids),
             json.dumps(ranks) if ranks is not None else None, first, board,
             len(ids) if ranks else 2, length, duration, ts, tournament, game_id,
             first if ranks else winner_id))


def reconciliation_row(mid: str, a: str, b: str, winner: str | None, ts: str, *,
                       board="square8", n=2, length=100, source="sync:node-d"
                       ) -> tuple[str, tuple]:
    return ("INSERT INTO match_history (match_id, player1_id, player2_id, winner_id, "
            "board_type, num_players, game_length, timestamp, source) VALUES (?,?,?,?,?,?,?,?,?)",
            (mid, a, b, winner, board, n, length, ts, source))
