"""Anti-entropy: pull from peers the rows a node lacks or holds older, without I/O.

Three pieces, all plain code that neither awaits nor reads a clock:

- `SyncScheduler` picks, each sync interval, one peer and the stores to pull from it: only
  stores whose root in the peer's manifest differs from ours and that we have not already
  pulled at that root. A pair in sync therefore exchanges nothing but manifests.
- `pull_session(plan)` is a generator that walks one pull (`mesh.sync_pull`): digests ->
  differing buckets -> rows by key-hash range where we hold nothing, else (sub-bucket digests
  and) entry listings, then the rows we lack or hold older -> merge, with several requests in
  flight and rows merged in large batches. It yields steps (`mesh.sync_steps`): `LocalQuery`
  (a call on one of our stores), `RemoteRequest` (a message to the peer), `FetchBlob` (a
  verified download of a model blob we lack), and returns a `PullOutcome`.
- `answer_steps(request, store_names)` is the responder, as the same kind of generator. It
  serves rows as the stores keep them, already encoded (`storage.packed`).

The generators are driven by `drive` (synchronous stores: the simulator, tests) or
`drive_async` (the agent's aiosqlite stores and aiohttp transport): one protocol, two shells.
"""

from __future__ import annotations

import math
import random
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from mesh.defaults import default
from mesh.manifest import StoreSummary
from mesh.sync_messages import (
    BLOB_STORE,
    MAX_ENTRIES_PER_REPLY,
    MAX_ROWS_PER_REPLY,
    MAX_ROWS_REPLY_BYTES,
    BlobsReply,
    BlobsRequest,
    DigestsReply,
    DigestsRequest,
    EntriesReply,
    EntriesRequest,
    RangeRowsReply,
    RangeRowsRequest,
    RowsReply,
    RowsRequest,
    SubDigestsReply,
    SubDigestsRequest,
    SyncRefused,
    SyncReply,
)
from mesh.sync_pull import REASONS, PullOutcome, PullPlan, bucket_groups, pull
from mesh.sync_steps import (
    FetchBlob,
    LocalQuery,
    RemoteRequest,
    Step,
    Steps,
    Ticket,
    Wait,
    drive,
    drive_async,
)
from storage.digests import sub_bucket_ids, sub_digests

__all__ = [
    "FetchBlob", "LocalQuery", "PullOutcome", "PullPlan", "RemoteRequest", "Step", "Steps",
    "SyncConfig", "SyncScheduler", "Ticket", "Wait", "answer", "answer_async", "answer_steps",
    "bucket_groups", "drive", "drive_async", "pull_session", "sub_bucket_ids", "sub_digests",
]


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Every knob of the sync core. Defaults and the reason for each: config/node.toml [sync],
    the one place they live; the bounds are checked here, for the node and the simulator."""

    request_attempts: int = default("sync", "request_attempts")
    request_timeout_s: float = default("sync", "request_timeout_s")
    backoff_base_s: float = default("sync", "backoff_base_s")
    backoff_max_s: float = default("sync", "backoff_max_s")
    entries_target: int = default("sync", "entries_target")
    subdivide_above: int = default("sync", "subdivide_above")
    blob_retry_s: float = default("sync", "blob_retry_s")
    window: int = default("sync", "window")
    merges_in_flight: int = default("sync", "merges_in_flight")
    buffer_rows: int = default("sync", "buffer_rows")
    buffer_mib: int = default("sync", "buffer_mib")
    range_rows: int = default("sync", "range_rows")
    range_min_rows: int = default("sync", "range_min_rows")
    behind_defer_s: float = default("sync", "behind_defer_s")

    def __post_init__(self) -> None:
        # Errors start with the knob's name, as config/node.toml spells it (node.config adds
        # the section).
        for name, lo, hi in _BOUNDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not lo <= value <= hi:
                raise ValueError(f"{name} = {value!r}: expected a number in {lo}..{hi}")
        if self.backoff_base_s > self.backoff_max_s:
            raise ValueError(f"backoff_base_s = {self.backoff_base_s}: expected at most "
                             f"backoff_max_s ({self.backoff_max_s})")

    @property
    def buffer_bytes(self) -> int:
        return self.buffer_mib << 20


# (knob, lowest, highest): wide enough for any sane cluster, narrow enough that a typo (a
# window of 10,000 requests, a zero timeout) stops start-up instead of the mesh.
_BOUNDS = (
    ("request_attempts", 1, 10),
    ("request_timeout_s", 0.01, 600),
    ("backoff_base_s", 0.01, 3600),
    ("backoff_max_s", 0.01, 3600),
    ("entries_target", 1, MAX_ENTRIES_PER_REPLY),
    ("subdivide_above", 0, 1_000_000),
    ("blob_retry_s", 0, 86_400),
    ("window", 1, 32),
    ("merges_in_flight", 1, 8),
    ("buffer_rows", 1, 1_000_000),
    ("buffer_mib", 1, 4096),
    ("range_rows", 1, MAX_ROWS_PER_REPLY),
    ("range_min_rows", 1, 10_000_000),
    ("behind_defer_s", 0, 3600),
)


# --- responder -----------------------------------------------------------------------------


def answer_steps(request: object, store_names: Collection[str]) -> Steps[SyncReply]:
    """Answer one sync request from the local stores; every reply is bounded.

    Requests are validated when built or decoded (`mesh.sync_messages`); what is left to check
    here is what only the responder knows: which stores exist.
    """
    if not isinstance(request, (DigestsRequest, SubDigestsRequest, EntriesRequest, RowsRequest,
                                RangeRowsRequest, BlobsRequest)):
        return SyncRefused("bad_request", f"expected a sync request, got {type(request).__name__}")
    store = request.store
    if store not in store_names:
        return SyncRefused("unknown_store",
                           f"store {store[:32]!r} is not one of {sorted(store_names)}")
    if isinstance(request, BlobsRequest):
        if store != BLOB_STORE:
            return SyncRefused("bad_request", f"blobs belong to store {BLOB_STORE!r}, "
                                              f"not {store[:32]!r}")
        held = []
        for sha in dict.fromkeys(request.shas):
            if (yield LocalQuery(store, "has_blob", (sha,))):
                held.append(sha)
        return BlobsReply(store, held)
    if isinstance(request, DigestsRequest):
        digests = yield LocalQuery(store, "bucket_digests")
        return DigestsReply(store, list(digests))
    if isinstance(request, SubDigestsRequest):
        entries = yield LocalQuery(store, "bucket_entries", (list(request.buckets),))
        return SubDigestsReply(store, sub_digests(entries, request.buckets))
    if isinstance(request, EntriesRequest):
        entries = yield LocalQuery(store, "bucket_entries", (list(request.buckets),))
        if request.subs is not None:
            entries = _in_subs(entries, set(request.subs))
        after = request.after
        listed = sorted((k, v) for k, v in entries if after is None or k > after)
        more = len(listed) > MAX_ENTRIES_PER_REPLY
        return EntriesReply(store, listed[:MAX_ENTRIES_PER_REPLY], more)
    if isinstance(request, RangeRowsRequest):
        rows, count, resume = yield LocalQuery(store, "range_rows", (
            request.first, request.last, request.after, MAX_ROWS_REPLY_BYTES,
            MAX_ROWS_PER_REPLY))
        return RangeRowsReply(store, rows, count, resume)
    rows, count, served = yield LocalQuery(store, "packed_rows", (list(request.keys),
                                                                 MAX_ROWS_REPLY_BYTES))
    return RowsReply(store, rows, count, served)


def _in_subs(entries: Sequence[tuple[str, bytes]], subs: set[int]) -> list[tuple[str, bytes]]:
    if not entries:
        return []
    ids = sub_bucket_ids([k for k, _ in entries]).tolist()
    return [entry for entry, sub in zip(entries, ids, strict=True) if sub in subs]


def answer(request: object, stores: Mapping[str, Any]) -> SyncReply:
    """Answer a sync request from synchronous stores (the simulator, tests)."""
    return drive(answer_steps(request, stores.keys()), stores)


async def answer_async(request: object, stores: Mapping[str, Any]) -> SyncReply:
    """Answer a sync request from async stores (the agent's `POST /mesh/v1/sync` handler)."""
    return await drive_async(answer_steps(request, stores.keys()), stores)


# --- puller --------------------------------------------------------------------------------


def pull_session(plan: PullPlan, config: SyncConfig | None = None) -> Steps[PullOutcome]:
    """Pull each store of `plan` from its peer (`mesh.sync_pull`); returns what it did."""
    return pull(plan, config or SyncConfig())


# --- scheduler -----------------------------------------------------------------------------


class SyncScheduler:
    """Chooses whom to pull what from, each sync interval; remembers failures and coverage.

    Coverage: after a complete pull of store S from peer P whose manifest showed root R, we
    hold everything P held at R (stores only grow, in merge order). Until P's root for S
    changes, pulling S from P again could bring nothing, so P is not a candidate for S even
    though its root differs from ours (it is P that lacks our rows; P pulls them from us).

    Behind: a peer holding fewer rows of S than we do is most likely catching up, from us or
    from another node. Pulling S from it would have it list back, page by page, the rows it
    has just taken, on the very node that is behind, and again each round while it catches
    up. Such a pull is put off for `behind_defer_s`: the peer meanwhile pulls what it lacks,
    and once it holds as many rows as we do, its rows are pulled at once. A pull from a peer
    still behind after that goes ahead (and the wait starts again), so rows only it holds
    always arrive, if later.
    """

    def __init__(self, rng: random.Random, config: SyncConfig | None = None) -> None:
        self._rng = rng
        self._config = config or SyncConfig()
        self._covered: dict[tuple[str, str], str] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._no_blobs_until: dict[str, float] = {}
        # (peer, store) -> when pulls of a store from a peer holding fewer of its rows were
        # first put off (or last allowed): see the class docstring.
        self._behind_since: dict[tuple[str, str], float] = {}
        # Pulls a peer ended by a bad or missing answer, by reason (`mesh.sync_pull.REASONS`):
        # each cost only its own pull, and the peer is backed off so the next goes elsewhere.
        self.refusals: dict[str, int] = dict.fromkeys(REASONS, 0)

    def plan(self, now: float, local: Mapping[str, StoreSummary],
             peers: Mapping[str, Mapping[str, StoreSummary]],
             blobs_missing: bool = False) -> PullPlan | None:
        """The pull to make now, or None when no peer holds anything we may lack.

        `blobs_missing`: we hold model rows whose blobs we lack. Then the pull also asks its
        peer for them, and when no peer's roots call for a pull, a pull of blobs alone goes
        to a random peer (not one that recently held none of them).
        """
        self._forget_absent(peers)
        candidates: list[tuple[str, tuple[str, ...]]] = []
        mine = [(name, local[name]) for name in sorted(local)]
        covered = self._covered
        for peer in sorted(peers):  # sorted: the rng alone decides, so a seed replays a run
            if not self._may_ask(peer, now):
                continue
            theirs = peers[peer]
            stores = tuple(name for name, ours in mine
                           if (t := theirs.get(name)) is not None and t.root != ours.root
                           and covered.get((peer, name)) != t.root
                           and not self._put_off(peer, name, t.count < ours.count, now))
            if stores:
                candidates.append((peer, stores))
        if not candidates and blobs_missing:
            candidates = [(peer, ()) for peer in sorted(peers)
                          if self._may_ask(peer, now) and self._may_ask_blobs(peer, now)]
        if not candidates:
            return None
        peer, stores = self._rng.choice(candidates)
        for store in stores:
            if (peer, store) in self._behind_since:
                self._behind_since[(peer, store)] = now  # allowed once: the wait starts again
        theirs = peers[peer]
        return PullPlan(peer, stores, tuple(theirs[s].root for s in stores),
                        tuple(theirs[s].count for s in stores),
                        blobs_missing and self._may_ask_blobs(peer, now))

    def finished(self, plan: PullPlan, outcome: PullOutcome, now: float) -> None:
        """Record a pull's outcome: coverage of completed stores, back-off on failure."""
        roots = dict(zip(plan.stores, plan.roots, strict=True))
        for store in outcome.completed:
            self._covered[(plan.peer, store)] = roots[store]
        if plan.blobs and outcome.blobs_lacking and not outcome.blobs_fetched:
            self._no_blobs_until[plan.peer] = now + self._config.blob_retry_s
        if outcome.ok:
            self._failures.pop(plan.peer, None)
            self._retry_at.pop(plan.peer, None)
            return
        if outcome.reason:  # the peer's doing (a failure of ours, a full disk, has none)
            self.refusals[outcome.reason] = self.refusals.get(outcome.reason, 0) + 1
        failures = self._failures.get(plan.peer, 0) + 1
        self._failures[plan.peer] = failures
        cfg = self._config
        delay = min(cfg.backoff_max_s, cfg.backoff_base_s * 2 ** min(failures - 1, 30))
        self._retry_at[plan.peer] = now + delay * (0.5 + self._rng.random())

    def uncover(self, store: str) -> None:
        """Forget which peers `store` was pulled from in full: the next plans may pull it from
        any of them again (rows this node refused for its own clock or term are due)."""
        for key in [k for k in self._covered if k[1] == store]:
            del self._covered[key]

    def _put_off(self, peer: str, store: str, behind: bool, now: float) -> bool:
        """Whether pulling `store` from `peer`, which differs from ours, waits for now."""
        key = (peer, store)
        if not behind:
            self._behind_since.pop(key, None)
            return False
        since = self._behind_since.setdefault(key, now)
        return now - since < self._config.behind_defer_s

    def _may_ask(self, peer: str, now: float) -> bool:
        return self._retry_at.get(peer, -math.inf) <= now

    def _may_ask_blobs(self, peer: str, now: float) -> bool:
        return self._no_blobs_until.get(peer, -math.inf) <= now

    def backing_off(self, now: float) -> list[str]:
        """Peers skipped for now after failed pulls (for the status page and tests)."""
        return sorted(p for p, at in self._retry_at.items() if at > now)

    def _forget_absent(self, peers: Mapping[str, object]) -> None:
        # Bounded memory: what we know of a peer goes when membership forgets the peer.
        for key in [k for k in self._covered if k[0] not in peers]:
            del self._covered[key]
        for peer in [p for p in self._failures if p not in peers]:
            del self._failures[peer]
            self._retry_at.pop(peer, None)
        for peer in [p for p in self._no_blobs_until if p not in peers]:
            del self._no_blobs_until[peer]
        for key in [k for k in self._behind_since if k[0] not in peers]:
            del self._behind_since[key]
