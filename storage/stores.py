"""`open_stores`: everything a node keeps on disk, opened together from its data dir.

Layout: `D/node.db` (one SQLite database, WAL) and `D/blobs/` (model blobs).
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from storage.admission import Admission, RowPolicy
from storage.database import DB_FILE, Database, DatabaseCorruptError
from storage.games import GameStore
from storage.hlc import HybridClock
from storage.matches import MatchStore
from storage.models import ModelStore
from storage.refusals import RefusalLedger
from storage.state import StateStore
from storage.synced import SyncedStore

BLOB_DIR = "blobs"
# The stamp each store's rows carry; the registry's kinds differ (None: each row's own).
_HLC_FIELDS = {"games": "created_hlc", "matches": "hlc", "models": None}


@dataclass(frozen=True, slots=True)
class Stores:
    db: Database
    games: GameStore
    matches: MatchStore
    models: ModelStore
    state: StateStore
    # Every row refused, by store and reason (exported as ringrift_refused_total).
    refusals: RefusalLedger

    def by_name(self) -> dict[str, SyncedStore]:
        """The synced stores by the names manifests use (storage.sync_limits.STORE_NAMES)."""
        return {"games": self.games, "matches": self.matches, "models": self.models}

    async def close(self) -> None:
        await self.db.close()


async def open_stores(data_dir: Path, clock: HybridClock, node_id: str,
                      policy: RowPolicy | None = None, max_db_bytes: int = 0) -> Stores:
    """Open (creating or migrating) the database and blob dir under `data_dir`.

    `node_id` stamps this node's own writes (the second half of a match row's version);
    `policy` is what the node refuses among well-formed rows (default: only what the rows
    say of themselves); `max_db_bytes` caps the database (0: none). Raises SchemaTooNewError
    if a newer release wrote the database, DatabaseCorruptError if it cannot be read.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    db = await Database.open(data_dir / DB_FILE, max_db_bytes)
    try:
        stores = Stores(
            db,
            GameStore(db, clock, node_id),
            MatchStore(db, clock, node_id),
            ModelStore(db, clock, node_id, data_dir / BLOB_DIR),
            StateStore(db),
            RefusalLedger(logging.getLogger("ringrift.storage")),
        )
        for name, store in stores.by_name().items():
            store.admission = Admission(name, stores.refusals, policy or RowPolicy(), clock,
                                        _HLC_FIELDS[name])
            await store.load()
    except sqlite3.DatabaseError as exc:
        await db.close()
        raise DatabaseCorruptError(f"{db.path}: its stored rows cannot be read ({exc})") from exc
    except BaseException:
        await db.close()
        raise
    return stores
