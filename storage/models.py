"""The model registry: metadata rows, content-addressed blobs, aliases and promotion events.

For anti-entropy the registry is one store over four tables, keyed `m:<sha>` (model
metadata, immutable), `a:<board>:<players>:<alias>` (aliases: LWW registers versioned
(term, hlc)), `p:<event id>` (promotion events, append-only), `j:<node id>` (evaluation
assignments: LWW registers versioned (term, hlc), one per node) and `s:<name>` (cluster
settings such as the selfplay allocation: LWW registers versioned (term, hlc)). So the
registry's root in the manifest is also the digest of every cluster setting. Blobs live
beside the database in `D/blobs/` and travel separately (any peer holding one can serve it).

Aliases, promotion events, assignments and settings are leader actions: their local writes
carry the leader's term and are refused (StaleTermError, counted) when a newer term has been
seen, from an election or from any merged alias or event.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storage.admission import Verdict
from storage.blobs import BlobStore, check_sha
from storage.database import Database
from storage.fencing import TermFence
from storage.hlc import HybridClock
from storage.merge import Row
from storage.rows import (
    alias_key,
    assignment_key,
    model_key,
    new_alias,
    new_assignment,
    new_model,
    new_promotion,
    new_setting,
    setting_key,
    validate_registry,
)
from storage.synced import SyncedStore
from storage.tables import ALIASES, ASSIGNMENTS, MODELS, PROMOTIONS, SETTINGS, config_filter


class UnknownModelError(KeyError):
    """An alias was pointed at a model this node has not registered."""


class ModelStore(SyncedStore):
    def __init__(self, db: Database, clock: HybridClock, node_id: str, blob_dir: Path) -> None:
        super().__init__(db, [MODELS, ALIASES, PROMOTIONS, ASSIGNMENTS, SETTINGS],
                         validate_registry, clock)
        self._node_id = node_id
        self.blobs = BlobStore(blob_dir)
        self.fence = TermFence()
        # The highest term this node has seen a leader win: no alias or promotion event may
        # claim a later one (a key holder could otherwise pin every alias with term 2**63-1).
        # None takes any term (tools, tests). The agent points it at its election.
        self.leader_term_seen: Callable[[], int] | None = None

    async def load(self) -> None:
        await super().load()
        for table in (ALIASES, PROMOTIONS, ASSIGNMENTS, SETTINGS):
            records = await self._db.fetchall(f"SELECT MAX(term) FROM {table.name}")
            if records and records[0][0] is not None:
                self.fence.observe(int(records[0][0]))

    def _check(self, row: Row) -> Verdict | None:
        data = row.data
        if data["kind"] == "model":
            cap = None if self.admission is None else self.admission.policy.max_model_bytes
            if cap is not None and data["size"] > cap:
                return Verdict("too_large", f"model of {data['size']} bytes, the cap is {cap}")
            return None
        seen = self.leader_term_seen
        if seen is not None and data["term"] > (ceiling := seen()):
            # Retried later: this node may simply not have heard of the new leader yet.
            return Verdict("term_ahead", f"term {data['term']} is past the newest term a "
                           f"leader was seen to win ({ceiling})", self.admission.policy.retry_s
                           if self.admission is not None else None)
        return None

    def _merged(self, writes: list[Row]) -> None:
        for row in writes:
            if "term" in row.data:
                self.fence.observe(row.data["term"])

    # --- fencing ------------------------------------------------------------------------

    def observe_term(self, term: int) -> None:
        """Tell the fence about a term learned elsewhere (an election, a gossiped leader)."""
        self.fence.observe(term)

    @property
    def newest_term(self) -> int:
        return self.fence.newest

    @property
    def stale_term_total(self) -> int:
        return self.fence.stale_total

    # --- blobs --------------------------------------------------------------------------

    async def put_blob(self, data: bytes, expected_sha: str | None = None) -> str:
        """Store a model blob atomically; returns its sha256 (checked against expected_sha)."""
        return await self.blobs.put(data, expected_sha)

    async def get_blob(self, sha: str) -> bytes:
        """Verified blob bytes; BlobMissingError, or BlobCorruptError (file quarantined)."""
        return await self.blobs.get(sha)

    def has_blob(self, sha: str) -> bool:
        return self.blobs.has(sha)

    def blob_path(self, sha: str) -> Path:
        return self.blobs.path(sha)

    async def missing_blobs(self) -> list[str]:
        """Registered models whose blob this node does not hold yet (what to pull)."""
        records = await self._db.fetchall("SELECT sha256 FROM models ORDER BY sha256")
        return [sha for (sha,) in records if not self.blobs.has(sha)]

    # --- models -------------------------------------------------------------------------

    async def register_model(
        self, sha: str, board_type: str, num_players: int, parent: str | None = None
    ) -> dict:
        """Register a model whose blob is held here; returns its row (the existing one if any)."""
        check_sha(sha)
        existing = await self.get(model_key(sha))
        if existing is not None:
            return existing
        if not self.blobs.has(sha):
            raise UnknownModelError(f"no blob {sha} held here: put_blob before register_model")
        size = self.blobs.path(sha).stat().st_size
        row = new_model(sha, board_type, num_players, self._clock.now(), self._node_id, size,
                        parent)
        await self.put(row)
        return row

    async def get_model(self, sha: str) -> dict | None:
        return await self.get(model_key(check_sha(sha)))

    async def models(
        self, board_type: str | None = None, num_players: int | None = None
    ) -> list[dict]:
        where, params = config_filter(board_type, num_players)
        records = await self._db.fetchall(
            f"{MODELS.select_sql} {where} ORDER BY created_hlc, key", params
        )
        return await self._wire_rows(MODELS, records)

    # --- aliases ------------------------------------------------------------------------

    async def set_alias(self, name: str, sha: str, term: int) -> dict:
        """Point alias `name` of the model's config at `sha` (a leader action, fenced).

        Raises StaleTermError if `term` is older than the newest term seen, UnknownModelError
        if the model is not registered here, InvalidRow for an unknown alias name.
        """
        model = await self.get_model(sha)
        if model is None:
            raise UnknownModelError(f"model {sha} is not registered: register_model first")
        row = new_alias(name, model["board_type"], model["num_players"], sha, term,
                        self._clock.now(), self._node_id)
        # Checked inside the write's transaction: no newer term can slip in between.
        await self.put(row, guard=lambda: self.fence.check(term))
        return row

    async def get_alias(self, name: str, board_type: str, num_players: int) -> dict | None:
        return await self.get(alias_key(board_type, num_players, name))

    async def resolve_alias(self, name: str, board_type: str, num_players: int) -> str | None:
        """The sha an alias points at, once it takes effect: when its blob is held here (blobs
        are hash-verified on arrival). None before, so nothing loads a model it cannot read."""
        alias = await self.get_alias(name, board_type, num_players)
        if alias is None or not self.blobs.has(alias["sha256"]):
            return None
        return alias["sha256"]

    async def aliases(self) -> list[dict]:
        records = await self._db.fetchall(f"{ALIASES.select_sql} ORDER BY key")
        return await self._wire_rows(ALIASES, records)

    # --- promotion events ---------------------------------------------------------------

    async def append_promotion_event(
        self, board_type: str, num_players: int, candidate: str, incumbent: str | None,
        decision: str, reorder_applied: bool, games_played: int, win_rate: float | None,
        elo_delta: float | None, term: int, reason: str = "",
    ) -> dict:
        """Record a promotion decision (a leader action, fenced); returns the event row."""
        row = new_promotion(board_type, num_players, candidate, incumbent, decision,
                            reorder_applied, games_played, win_rate, elo_delta, term,
                            self._clock.now(), self._node_id, reason)
        await self.put(row, guard=lambda: self.fence.check(term))
        return row

    async def promotion_events(
        self, board_type: str | None = None, num_players: int | None = None
    ) -> list[dict]:
        """Promotion events (of one config when given), oldest first."""
        where, params = config_filter(board_type, num_players)
        records = await self._db.fetchall(
            f"{PROMOTIONS.select_sql} {where} ORDER BY hlc, key", params
        )
        return await self._wire_rows(PROMOTIONS, records)

    # --- evaluation assignments ---------------------------------------------------------

    async def assign(
        self, node_id: str, board_type: str, num_players: int, candidate: str, opponent: str,
        match_kind: str, first_trial: int, trials: int, term: int,
    ) -> dict:
        """Hand `node_id` evaluation trials (a leader action, fenced); returns the row."""
        row = new_assignment(node_id, board_type, num_players, candidate, opponent, match_kind,
                             first_trial, trials, term, self._clock.now(), self._node_id)
        await self.put(row, guard=lambda: self.fence.check(term))
        return row

    async def assignment(self, node_id: str) -> dict | None:
        """The leader's newest assignment for `node_id`, if any."""
        return await self.get(assignment_key(node_id))

    # --- cluster settings ---------------------------------------------------------------

    async def set_setting(self, name: str, value: object, term: int) -> dict:
        """Write cluster setting `name` (a leader action, fenced); returns the row. Raises
        StaleTermError for an older term than the newest seen, InvalidRow for an unknown
        name or a value its check refuses."""
        row = new_setting(name, value, term, self._clock.now(), self._node_id)
        await self.put(row, guard=lambda: self.fence.check(term))
        return row

    async def setting(self, name: str) -> dict | None:
        """The newest row of cluster setting `name`, if any."""
        return await self.get(setting_key(name))
