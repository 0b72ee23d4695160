"""The node's side of the drift reports: read a peer's match rows over the mesh, compare them
with ours, take them in with a conflict strategy, and keep the drift history.

Reading a peer uses the anti-entropy requests (`sync.entries` over every bucket, then
`sync.rows` for only the rows whose version differs from ours), signed by this node like any
mesh message, so a check costs a listing of the peer's (match id, version) pairs plus the
differing rows. The periodic check (every `monitoring.drift_check_interval_s`) runs against a
random alive peer and sets the `ringrift_elo_drift_*` gauges; `tools/elo_drift.py` asks for
checks and syncs through node/ops_api.py.

`sync` takes rows in with one of the reference's strategies (SKIP, LAST_WRITE_WINS,
FIRST_WRITE_WINS, RAISE) for this one exchange; the mesh's own anti-entropy keeps merging
last-write-wins, so a row skipped here still arrives with the next pull if it wins by LWW.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from mesh.sync_messages import (
    MAX_KEYS_PER_REQUEST,
    EntriesReply,
    EntriesRequest,
    RowsReply,
    RowsRequest,
)
from mesh.transport import PeerError
from node import drift
from node.metrics_reference import ReferenceMetrics
from storage.digests import NUM_BUCKETS
from storage.merge import InvalidRow, MergeConflictError, MergeStats, Strategy, match_version
from storage.packed import BadStream, unpack_stream
from storage.rows import validate_match

if TYPE_CHECKING:
    from mesh.transport import MeshTransport
    from storage.stores import Stores

log = logging.getLogger("ringrift.drift")

STORE = "matches"
STATE_HISTORY = "monitoring.drift_history"
# A drift check holds both sides' rows in memory; past this many a peer is not compared
# (a hostile or broken peer must not make us list without end).
MAX_PEER_ROWS = 2_000_000


class DriftError(RuntimeError):
    """A check or sync could not be done; the message says against whom and why."""


@dataclass(frozen=True, slots=True)
class SyncResult:
    remote_host: str
    synced_at: float
    strategy: str
    matches_added: int = 0
    matches_skipped: int = 0
    matches_conflict: int = 0
    matches_resolved: int = 0
    matches_replaced: int = 0
    participants_added: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DriftWatch:
    def __init__(self, *, stores: Stores, transport: MeshTransport, node_id: str,
                 metrics: ReferenceMetrics, thresholds: drift.Thresholds, keep: int,
                 ratings: drift.Ratings, peers: Callable[[], Sequence[tuple[str, str]]],
                 rng: random.Random | None = None) -> None:
        self._stores = stores
        self._transport = transport
        self._node_id = node_id
        self._metrics = metrics
        self.thresholds = thresholds
        self._keep = keep
        self._ratings = ratings
        self._peers = peers  # alive peers as (node_id, address)
        self._rng = rng or random.Random()
        self._history: dict[str, list[dict[str, Any]]] = {}
        self.last: dict[str, dict[str, Any]] = {}  # config key -> latest report, for the page
        self.invalid_rows = 0
        self._lock = asyncio.Lock()  # one check or sync at a time: history is read-modify-write

    async def load(self) -> None:
        self._history = drift.check_history(await self._stores.state.get_state(STATE_HISTORY))

    def history(self, now: float | None = None) -> dict[str, Any]:
        return drift.summarise(self._history, time.time() if now is None else now)

    # --- reading a peer ---------------------------------------------------------------------

    async def _peer_rows(self, address: str, to: str | None, ours: list[dict]) -> list[dict]:
        """The peer's match rows: ours where the versions agree, the rest fetched from it."""
        theirs = await self._peer_versions(address, to)
        held = {r["match_id"]: match_version(r["hlc"], r["origin_node"]) for r in ours}
        same = {k for k, v in theirs.items() if held.get(k) == v}
        wanted = [k for k in theirs if k not in same]
        rows = [r for r in ours if r["match_id"] in same]
        for start in range(0, len(wanted), MAX_KEYS_PER_REQUEST):
            keys = wanted[start:start + MAX_KEYS_PER_REQUEST]
            while keys:
                reply = await self._ask(address, to, RowsRequest(STORE, keys), RowsReply)
                if not 1 <= reply.served <= len(keys):
                    raise DriftError(f"{address} served {reply.served} of {len(keys)} keys")
                try:
                    served = unpack_stream(reply.rows, reply.count)
                except BadStream as bad:
                    raise DriftError(f"{address} sent match rows that do not decode: {bad}"
                                     ) from None
                asked = set(keys[:reply.served])
                for obj in served:
                    try:
                        row = validate_match(obj)
                    except InvalidRow:
                        self.invalid_rows += 1  # a broken or hostile peer: leave the row out
                        continue
                    if row.key in asked:
                        rows.append(row.data)
                keys = keys[reply.served:]
        return rows

    async def _peer_versions(self, address: str, to: str | None) -> dict[str, bytes]:
        versions: dict[str, bytes] = {}
        after: str | None = None
        while True:
            page = await self._ask(address, to, EntriesRequest(STORE, list(range(NUM_BUCKETS)),
                                                               after=after), EntriesReply)
            versions.update(page.entries)
            if len(versions) > MAX_PEER_ROWS:
                raise DriftError(f"{address} lists over {MAX_PEER_ROWS} match rows")
            if not page.more:
                return versions
            after = page.entries[-1][0]

    async def _ask(self, address: str, to: str | None, request: object, expected: type) -> Any:
        try:
            reply = await self._transport.request(address, request, to=to)
        except PeerError as exc:
            raise DriftError(str(exc)) from None
        if type(reply) is not expected:
            raise DriftError(f"{address} answered {type(request).__name__} with "
                             f"{type(reply).__name__}: {getattr(reply, 'detail', '')}")
        return reply

    async def _local_rows(self) -> list[dict]:
        return await self._stores.matches.all_matches()

    # --- checks -----------------------------------------------------------------------------

    async def check(self, address: str, to: str | None = None,
                    config: drift.Config | None = None) -> list[drift.DriftReport]:
        """Compare with the peer at `address`: one report for `config`, else one per config
        either side holds rows of. Each report is recorded in the history and the gauges."""
        async with self._lock:
            ours = await self._local_rows()
            theirs = await self._peer_rows(address, to, ours)
            now = time.time()
            configs = [config] if config else drift.configs_of([*ours, *theirs])
            reports = [drift.compare(ours, theirs, source=self._node_id, target=address,
                                     config=cfg, thresholds=self.thresholds,
                                     ratings=self._ratings, checked_at=now)
                       for cfg in configs]
            for report in reports:
                self._record(report)
            await self._stores.state.set_state(STATE_HISTORY, self._history)
            return reports

    def _record(self, report: drift.DriftReport) -> None:
        drift.add_snapshot(self._history, report, self._keep)
        key = drift.config_key(report.board_type, report.num_players)
        self.last[key] = {k: v for k, v in report.to_dict().items() if k != "rating_diffs"}
        if report.board_type is not None and report.num_players is not None:
            self._metrics.drift_checked(report.board_type, report.num_players,
                                        report.max_rating_diff, report.avg_rating_diff,
                                        report.is_significant)

    async def check_random_peer(self) -> list[drift.DriftReport]:
        peers = list(self._peers())
        if not peers:
            return []
        node_id, address = self._rng.choice(peers)
        return await self.check(address, node_id)

    async def run(self, interval_s: float) -> None:
        while True:
            await asyncio.sleep(interval_s)
            try:
                reports = await self.check_random_peer()
            except DriftError as exc:
                log.info("drift check skipped: %s", exc)
                continue
            except (OSError, sqlite3.Error) as exc:
                # A disk hiccup costs one check, not the node.
                log.warning("drift check failed: %s", exc)
                continue
            for report in reports:
                if report.is_significant:
                    log.warning("Elo drift against %s in %s/%dp: max %.1f, avg %.1f Elo",
                                report.target, report.board_type, report.num_players,
                                report.max_rating_diff, report.avg_rating_diff)

    # --- sync -------------------------------------------------------------------------------

    async def sync(self, address: str, strategy: Strategy, to: str | None = None) -> SyncResult:
        """Take in the peer's match rows that differ from ours, by `strategy`.

        Counts as the reference does: `added` new match ids, `skipped` rows held alike on
        both sides or kept out by the strategy, `conflict` ids held by both in different
        versions, `resolved` conflicts the strategy settled (all of them but under SKIP),
        `replaced` held rows the incoming version replaced.
        """
        started = time.time()
        async with self._lock:
            try:
                held = await self._local_rows()
                ours = {r["match_id"]: r for r in held}
                fetched = await self._peer_rows(address, to, held)
                theirs = [r for r in fetched if ours.get(r["match_id"]) != r]
                conflicts = sum(1 for r in theirs if r["match_id"] in ours)
                stats = (await self._stores.matches.merge(theirs, strategy) if theirs
                         else MergeStats())
            except (DriftError, MergeConflictError) as exc:
                self._metrics.elo_synced(address, False, 0, 0)
                return SyncResult(address, started, strategy.name, error=str(exc))
        self._metrics.elo_synced(address, True, stats.added, conflicts)
        known = {p for r in ours.values() for p in r["participants"]}
        new_ids = {r["match_id"] for r in theirs if r["match_id"] not in ours}
        newcomers = {p for r in theirs if r["match_id"] in new_ids for p in r["participants"]}
        return SyncResult(
            address, started, strategy.name, matches_added=stats.added,
            matches_skipped=len(fetched) - len(theirs) + stats.skipped + stats.invalid,
            matches_conflict=conflicts,
            matches_resolved=0 if strategy is Strategy.SKIP else conflicts,
            matches_replaced=stats.resolved, participants_added=len(newcomers - known))
