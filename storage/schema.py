"""The database schema and its migrations.

The schema version lives in SQLite's `user_version` header field. `MIGRATIONS[v]` takes a
database from version v to v + 1; each step runs in its own transaction together with the
version bump, so a crash mid-migration leaves the previous version intact. Version 0 is a
database without any of our tables or with only some of them (a fresh file, or one written
before the schema was versioned): step 0 creates whatever is missing.
"""

from __future__ import annotations

import aiosqlite
import numpy as np

from storage.digests import key_hashes

SCHEMA_VERSION = 6


class SchemaTooNewError(Exception):
    """The database was written by a newer release than this one."""

    def __init__(self, found: int, supported: int) -> None:
        super().__init__(
            f"database schema version {found} is newer than the newest this release supports "
            f"({supported}); upgrade ringrift-node"
        )
        self.found = found
        self.supported = supported


# Columns every synced table starts with: the sync key, its bucket, its version and the
# 64-bit row hash (stored so digests are rebuilt at open without rehashing every row).
_SYNCED = "key TEXT NOT NULL UNIQUE, bucket INTEGER NOT NULL, version BLOB NOT NULL, " \
          "h INTEGER NOT NULL"

# Each synced table keeps the whole wire row in `body` (msgpack) and copies of the fields its
# queries filter or sort on.
_V1 = [
    f"""CREATE TABLE IF NOT EXISTS games ({_SYNCED}, body BLOB NOT NULL, moves BLOB NOT NULL,
        board_type TEXT NOT NULL, num_players INTEGER NOT NULL, created_hlc INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS games_bucket ON games (bucket)",
    "CREATE INDEX IF NOT EXISTS games_config ON games (board_type, num_players, created_hlc)",
    f"""CREATE TABLE IF NOT EXISTS matches ({_SYNCED}, body BLOB NOT NULL,
        board_type TEXT NOT NULL, num_players INTEGER NOT NULL, hlc INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS matches_bucket ON matches (bucket)",
    f"""CREATE TABLE IF NOT EXISTS models ({_SYNCED}, body BLOB NOT NULL,
        sha256 TEXT NOT NULL, board_type TEXT NOT NULL, num_players INTEGER NOT NULL,
        created_hlc INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS models_bucket ON models (bucket)",
    f"""CREATE TABLE IF NOT EXISTS aliases ({_SYNCED}, body BLOB NOT NULL,
        name TEXT NOT NULL, board_type TEXT NOT NULL, num_players INTEGER NOT NULL,
        sha256 TEXT NOT NULL, term INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS aliases_bucket ON aliases (bucket)",
    f"""CREATE TABLE IF NOT EXISTS promotion_events ({_SYNCED}, body BLOB NOT NULL,
        board_type TEXT NOT NULL, num_players INTEGER NOT NULL, term INTEGER NOT NULL,
        hlc INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS promotion_events_bucket ON promotion_events (bucket)",
    "CREATE TABLE IF NOT EXISTS node_state (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
]

# Version 2: one index per synced table instead of two. A row is found by its key's 64-bit
# hash (`khash`, the hash the digests use, as a signed int), through one integer index that
# also serves bucket listings (a bucket is a contiguous range of key hashes). The v1 text
# index on `key` and the index on `bucket` cost a bulk import most of its SQLite time: with
# random keys, each batch dirtied pages all over both. Keys stay unique because their one
# writer (SyncedStore.merge, in one transaction under the database lock) inserts only keys
# it found absent; khash collisions between different keys are told apart by the key.
_TABLES_V2 = {  # the columns after (key, khash, version, h), unchanged from v1
    "games": ("body BLOB", "moves BLOB", "board_type TEXT", "num_players INTEGER",
              "created_hlc INTEGER"),
    "matches": ("body BLOB", "board_type TEXT", "num_players INTEGER", "hlc INTEGER"),
    "models": ("body BLOB", "sha256 TEXT", "board_type TEXT", "num_players INTEGER",
               "created_hlc INTEGER"),
    "aliases": ("body BLOB", "name TEXT", "board_type TEXT", "num_players INTEGER",
                "sha256 TEXT", "term INTEGER"),
    "promotion_events": ("body BLOB", "board_type TEXT", "num_players INTEGER",
                         "term INTEGER", "hlc INTEGER"),
}
KEY_HASH_SQL = "ringrift_key_hash"  # the SQL function migrations compute khash with


def _v2_steps() -> list[str]:
    steps: list[str] = []
    for name, kept in _TABLES_V2.items():
        columns = ", ".join(f"{c} NOT NULL" for c in kept)
        names = ", ".join(c.split()[0] for c in kept)
        steps += [
            f"""CREATE TABLE {name}_v2 (key TEXT NOT NULL, khash INTEGER NOT NULL,
                version BLOB NOT NULL, h INTEGER NOT NULL, {columns})""",
            f"""INSERT INTO {name}_v2 (key, khash, version, h, {names})
                SELECT key, {KEY_HASH_SQL}(key), version, h, {names} FROM {name}""",
            f"DROP TABLE {name}",  # and its indexes
            f"ALTER TABLE {name}_v2 RENAME TO {name}",
            f"CREATE INDEX {name}_khash ON {name} (khash)",
        ]
    steps.append(
        "CREATE INDEX games_config ON games (board_type, num_players, created_hlc)"
    )
    return steps


_V2 = _v2_steps()

# Version 3: the game row is pinned down (storage.rows: compact moves, search targets,
# rankings, game_id from config and moves alone). Rows of the earlier free-form layout cannot
# be turned into it (their moves are in no known encoding), so they are kept, readable and no
# longer synced, in games_v2_legacy; the games table starts empty with the same columns.
_V3 = [
    "DROP INDEX games_khash",
    "DROP INDEX games_config",
    "ALTER TABLE games RENAME TO games_v2_legacy",
    """CREATE TABLE games (key TEXT NOT NULL, khash INTEGER NOT NULL, version BLOB NOT NULL,
        h INTEGER NOT NULL, body BLOB NOT NULL, moves BLOB NOT NULL, board_type TEXT NOT NULL,
        num_players INTEGER NOT NULL, created_hlc INTEGER NOT NULL)""",
    "CREATE INDEX games_khash ON games (khash)",
    "CREATE INDEX games_config ON games (board_type, num_players, created_hlc)",
]

# Version 4: this node's replay checks of game rows (storage.game_checks). Local, never
# synced: each node replays what it holds, and a game that does not replay legally stays in
# the replicated set (so honest nodes keep equal roots) but is never trained on here.
_V4 = [
    """CREATE TABLE game_checks (key TEXT NOT NULL PRIMARY KEY, version BLOB NOT NULL,
        ok INTEGER NOT NULL, origin TEXT NOT NULL, reason TEXT NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX game_checks_failed ON game_checks (ok) WHERE ok = 0",
]

# Version 5: evaluation assignments, leader-written rows of the model registry (one per node,
# versioned (term, hlc) like aliases) that farm a candidate's evaluation games out to nodes.
_V5 = [
    """CREATE TABLE assignments (key TEXT NOT NULL, khash INTEGER NOT NULL,
        version BLOB NOT NULL, h INTEGER NOT NULL, body BLOB NOT NULL, node_id TEXT NOT NULL,
        board_type TEXT NOT NULL, num_players INTEGER NOT NULL, term INTEGER NOT NULL)""",
    "CREATE INDEX assignments_khash ON assignments (khash)",
]

# Version 6: cluster settings (the selfplay allocation), leader-written rows of the model
# registry, one per name, versioned (term, hlc) like aliases.
_V6 = [
    """CREATE TABLE settings (key TEXT NOT NULL, khash INTEGER NOT NULL,
        version BLOB NOT NULL, h INTEGER NOT NULL, body BLOB NOT NULL, name TEXT NOT NULL,
        term INTEGER NOT NULL)""",
    "CREATE INDEX settings_khash ON settings (khash)",
]

MIGRATIONS: list[list[str]] = [_V1, _V2, _V3, _V4, _V5, _V6]


def _key_hash(key: str) -> int:
    return int(key_hashes([key]).view(np.int64)[0])


async def schema_version(conn: aiosqlite.Connection) -> int:
    async with conn.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(conn: aiosqlite.Connection, migrations: list[list[str]] = MIGRATIONS) -> int:
    """Bring the database to `len(migrations)`; returns the version it was found at.

    The connection must be in autocommit mode (isolation_level=None): each step is one
    explicit transaction.
    """
    supported = len(migrations)
    await conn.create_function(KEY_HASH_SQL, 1, _key_hash, deterministic=True)
    found = await schema_version(conn)
    if found > supported:
        raise SchemaTooNewError(found, supported)
    for version in range(found, supported):
        await conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migrations[version]:
                await conn.execute(statement)
            # PRAGMA user_version is written in the same transaction as the step itself.
            await conn.execute(f"PRAGMA user_version = {version + 1}")
            await conn.execute("COMMIT")
        except BaseException:
            await conn.execute("ROLLBACK")
            raise
    return found
