"""Anti-entropy: pull from peers the rows a node lacks or holds older, without I/O.

Three pieces, all plain code that neither awaits nor reads a clock:

- `SyncScheduler` picks, each sync interval, one peer and the stores to pull from it: only
  stores whose root in the peer's manifest differs from ours and that we have not already
  pulled at that root. A pair in sync therefore exchanges nothing but manifests.
- `pull_session(plan)` is a generator that walks one pull: digests -> differing buckets ->
  (large stores) their sub-bucket digests -> entries of what differs (paged) -> missing or
  older rows (batched) -> merge. It yields `LocalQuery`
  (a call on one of our stores) and `RemoteRequest` (a message to the peer) and is sent their
  answers; it returns a `PullOutcome`. Each batch is merged as soon as it arrives, so a pull
  cut short keeps what it merged, and the next one only sees what still differs. When the
  node lacks model blobs, the pull then asks the peer which it holds and yields `FetchBlob`
  for each (the shell downloads and hash-verifies it).
- `answer_steps(request, store_names)` is the responder, as the same kind of generator.

The generators are driven by `drive` (synchronous stores: the simulator, tests) or
`drive_async` (the agent's aiosqlite stores and aiohttp transport): one protocol, two shells.
"""

from __future__ import annotations

import inspect
import math
import random
from collections.abc import Awaitable, Callable, Collection, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import msgpack
import numpy as np

from mesh.manifest import StoreSummary
from mesh.sync_messages import (
    BLOB_STORE,
    MAX_BLOBS_PER_REQUEST,
    MAX_BUCKETS_PER_SUBDIGESTS,
    MAX_ENTRIES_PER_REPLY,
    MAX_KEYS_PER_REQUEST,
    MAX_ROWS_REPLY_BYTES,
    SUBS_PER_BUCKET,
    BlobsReply,
    BlobsRequest,
    DigestsReply,
    DigestsRequest,
    EntriesReply,
    EntriesRequest,
    RowsReply,
    RowsRequest,
    SubDigestsReply,
    SubDigestsRequest,
    SyncRefused,
    SyncReply,
    SyncRequest,
)
from storage.digests import NUM_BUCKETS, differing_buckets, hash_bytes, hash_rows
from storage.merge import MergeStats


@dataclass(frozen=True, slots=True)
class SyncConfig:
    """Every knob of the sync core, with the reason for its default."""

    # Tries per request before the pull from that peer is given up. Requests are reads, so a
    # repeat is harmless; three rides out a lost packet or a busy peer without hammering a
    # dead one (its manifest will soon be gone from membership anyway).
    request_attempts: int = 3
    # How long a shell waits for one reply. A sync reply is at most a few hundred KB: on a LAN
    # that is milliseconds; 5 s leaves room for a loaded peer or a slow WAN link.
    request_timeout_s: float = 5.0
    # Back-off after a failed pull: base * 2**(failures-1), capped, with +-50% jitter so a
    # crowd of pullers does not return to a recovering peer in lockstep.
    backoff_base_s: float = 2.0
    backoff_max_s: float = 60.0
    # Expected entries per reply that bucket grouping aims for, below the hard cap so that a
    # stale (low) row count in a manifest still rarely needs a second page.
    entries_target: int = MAX_ENTRIES_PER_REPLY * 3 // 4
    # Expected entries per bucket above which differing buckets are compared by sub-bucket
    # digests before listing: a sub-digest reply costs ~2.3 KB a bucket, a listing ~100 bytes
    # an entry, so past ~25 entries a bucket the sub-digests win; 64 (a 16k-row store) keeps
    # small stores on the one-step path.
    subdivide_above: int = 64
    # A peer that held none of the blobs we lack is not asked for blobs again for this long:
    # a new model reaches peers as they fetch it, which takes a while for a large one.
    blob_retry_s: float = 30.0

    def __post_init__(self) -> None:
        if self.request_attempts < 1:
            raise ValueError(f"request_attempts must be >= 1, got {self.request_attempts}")
        if not 0 < self.backoff_base_s <= self.backoff_max_s:
            raise ValueError(f"need 0 < backoff_base_s <= backoff_max_s, got "
                             f"{self.backoff_base_s} and {self.backoff_max_s}")
        if not 0 < self.entries_target <= MAX_ENTRIES_PER_REPLY:
            raise ValueError(f"entries_target must be in 1..{MAX_ENTRIES_PER_REPLY}, "
                             f"got {self.entries_target}")


# --- the steps a generator yields ----------------------------------------------------------

StoreOp = Literal["bucket_digests", "bucket_entries", "rows", "merge", "wanted",
                  "missing_blobs", "has_blob"]


@dataclass(frozen=True, slots=True)
class LocalQuery:
    """Call `stores[store].<op>(*args)` on the local stores; resume with its result."""

    store: str
    op: StoreOp
    args: tuple[Any, ...] = ()

    def call(self, stores: Mapping[str, Any]) -> Any:
        """Make the call: its result, or an awaitable of it (async stores)."""
        return getattr(stores[self.store], self.op)(*self.args)


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    """Send `request` to `peer`; resume with its reply, or None when no reply came."""

    peer: str
    request: SyncRequest


@dataclass(frozen=True, slots=True)
class FetchBlob:
    """Download model blob `sha256` from `peer` into the local blob store, verifying its hash;
    resume with True when it is now held, False when the fetch failed."""

    peer: str
    sha256: str


Step = LocalQuery | RemoteRequest | FetchBlob
R = TypeVar("R")
Steps = Generator[Step, Any, R]


def drive(steps: Steps[R], stores: Mapping[str, Any],
          ask: Callable[[str, SyncRequest], SyncReply | None] | None = None,
          fetch: Callable[[str, str], bool] | None = None) -> R:
    """Run `steps` to the end against synchronous stores.

    `ask(peer, request)` answers remote requests (None: no reply); `fetch(peer, sha256)`
    performs blob downloads. A step with no function to serve it is a TypeError.
    """
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration as done:
            return done.value
        if isinstance(step, LocalQuery):
            result = step.call(stores)
        else:
            result = _remote(step, ask, fetch)


async def drive_async(steps: Steps[R], stores: Mapping[str, Any],
                      ask: Callable[[str, SyncRequest], Awaitable[SyncReply | None]]
                      | None = None,
                      fetch: Callable[[str, str], Awaitable[bool]] | None = None) -> R:
    """`drive` for async stores, `ask` and `fetch` (the agent's shell).

    A store call that is not a coroutine (`has_blob` is a file check) is taken as it is.
    """
    result: Any = None
    while True:
        try:
            step = steps.send(result)
        except StopIteration as done:
            return done.value
        if isinstance(step, LocalQuery):
            result = step.call(stores)
            if inspect.isawaitable(result):
                result = await result
        else:
            result = await _remote(step, ask, fetch)


def _remote(step: RemoteRequest | FetchBlob, ask: Callable[..., Any] | None,
            fetch: Callable[..., Any] | None) -> Any:
    if isinstance(step, RemoteRequest):
        if ask is None:
            raise TypeError(f"{step!r} needs a peer, but no ask function was given")
        return ask(step.peer, step.request)
    if fetch is None:
        raise TypeError(f"{step!r} needs a blob download, but no fetch function was given")
    return fetch(step.peer, step.sha256)


# --- responder -----------------------------------------------------------------------------


def answer_steps(request: object, store_names: Collection[str]) -> Steps[SyncReply]:
    """Answer one sync request from the local stores; every reply is bounded.

    Requests are validated when built or decoded (`mesh.sync_messages`); what is left to check
    here is what only the responder knows: which stores exist.
    """
    if not isinstance(request, (DigestsRequest, SubDigestsRequest, EntriesRequest, RowsRequest,
                                BlobsRequest)):
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
    keys = list(request.keys)
    # A store returns at most one row per key; the slice keeps a faulty one within the bound.
    packed = [_pack(row) for row in list((yield LocalQuery(store, "rows", (keys,))))[:len(keys)]]
    if sum(map(len, packed)) <= MAX_ROWS_REPLY_BYTES:
        return RowsReply(store, packed, len(keys))
    # Huge rows (long games): serve key by key so the reply says exactly which keys it answers.
    served_rows: list[bytes] = []
    used = served = 0
    for key in keys:
        one = [_pack(row) for row in list((yield LocalQuery(store, "rows", ([key],))))[:1]]
        size = sum(map(len, one))
        if served and used + size > MAX_ROWS_REPLY_BYTES:
            break
        served_rows += one
        used += size
        served += 1
    return RowsReply(store, served_rows, served)


def _pack(row: object) -> bytes:
    return msgpack.packb(row, use_bin_type=True)


def unpack_rows(packed: Sequence[bytes]) -> list[object]:
    """Rows as a peer sent them; one that is not msgpack stays bytes for the store to refuse.

    The store validates every field of every row it merges and counts what it refuses, so a
    bad row costs the sender its row, never the batch or the node.
    """
    rows: list[object] = []
    for data in packed:
        try:
            rows.append(msgpack.unpackb(data, raw=False, strict_map_key=False))
        except (ValueError, msgpack.UnpackException):
            rows.append(data)
    return rows


def sub_bucket_ids(keys: Sequence[str]) -> np.ndarray:
    """Sub-bucket id (bucket * 256 + next byte: the top 16 bits of the key hash) of each key."""
    return (hash_bytes([k.encode() for k in keys]) >> _SUB_SHIFT).astype(np.intp)


_SUB_SHIFT = np.uint64(64 - 16)


def sub_digests(entries: Sequence[tuple[str, bytes]], buckets: Sequence[int]) -> list[int]:
    """The 256 sub-bucket digests of each of `buckets` (in that order) over `entries`.

    A sub-digest XORs the same row hashes as its bucket's digest (`storage.digests`), so the
    256 sub-digests of a bucket XOR to the bucket digest.
    """
    out = np.zeros(len(buckets) * SUBS_PER_BUCKET, dtype=np.uint64)
    if entries:
        keys = [k for k, _ in entries]
        _, hashes = hash_rows(keys, [v for _, v in entries])
        subs = sub_bucket_ids(keys)
        slot = np.full(NUM_BUCKETS, -1, dtype=np.intp)
        slot[np.asarray(buckets, dtype=np.intp)] = np.arange(len(buckets))
        base = slot[subs // SUBS_PER_BUCKET]
        inside = base >= 0  # a store answering for other buckets too: those rows are ignored
        np.bitwise_xor.at(out, base[inside] * SUBS_PER_BUCKET + subs[inside] % SUBS_PER_BUCKET,
                          hashes[inside])
    return out.tolist()


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


@dataclass(frozen=True, slots=True)
class PullPlan:
    """Pull `stores` from `peer`, whose manifest showed these roots and row counts; with
    `blobs`, then fetch from it the model blobs we lack that it holds."""

    peer: str
    stores: tuple[str, ...]
    roots: tuple[str, ...]
    counts: tuple[int, ...]
    blobs: bool = False


@dataclass(frozen=True, slots=True)
class PullOutcome:
    """What one pull did. `completed`: stores fully reconciled with the peer's state."""

    peer: str
    completed: tuple[str, ...]
    failed: str | None = None  # the store the pull stopped in, None when all completed
    error: str = ""
    requests: int = 0
    rows_pulled: int = 0
    # Sum of the merge results; `merged.skipped` counts rows pulled that changed nothing.
    merged: MergeStats = field(default_factory=MergeStats)
    blobs_fetched: int = 0
    # Blobs we lack that this peer did not hold either (ask someone else).
    blobs_lacking: int = 0
    # `merged` per store, for what is reported per store (the Elo sync metrics).
    merged_by_store: tuple[tuple[str, MergeStats], ...] = ()

    @property
    def ok(self) -> bool:
        return self.failed is None


class _PullFailed(Exception):
    """Ends a pull: the peer gave no reply, refused, or replied out of protocol."""


@dataclass(slots=True)
class _Tally:
    requests: int = 0
    rows_pulled: int = 0
    merged: MergeStats = field(default_factory=MergeStats)
    blobs_fetched: int = 0
    blobs_lacking: int = 0
    by_store: dict[str, MergeStats] = field(default_factory=dict)

    def outcome(self, peer: str, completed: list[str], failed: str | None = None,
                error: str = "") -> PullOutcome:
        return PullOutcome(peer, tuple(completed), failed, error, self.requests,
                           self.rows_pulled, self.merged, self.blobs_fetched,
                           self.blobs_lacking, tuple(self.by_store.items()))


def pull_session(plan: PullPlan, config: SyncConfig | None = None) -> Steps[PullOutcome]:
    """Pull each store of `plan` from its peer; see the module docstring."""
    config = config or SyncConfig()
    tally = _Tally()
    completed: list[str] = []
    for store, count in zip(plan.stores, plan.counts, strict=True):
        try:
            yield from _pull_store(plan.peer, store, count, config, tally)
        except _PullFailed as failed:
            return tally.outcome(plan.peer, completed, store, str(failed))
        completed.append(store)
    if plan.blobs:
        try:
            # After the rows: model rows just merged name the blobs we now lack.
            yield from _pull_blobs(plan.peer, tally)
        except _PullFailed as failed:
            return tally.outcome(plan.peer, completed, BLOB_STORE, str(failed))
    return tally.outcome(plan.peer, completed)


def _ask(peer: str, request: SyncRequest, expected: type, tally: _Tally) -> Steps[Any]:
    """One request; returns the reply if it is the expected kind for the same store."""
    tally.requests += 1
    reply = yield RemoteRequest(peer, request)
    if reply is None:
        raise _PullFailed(f"no reply from {peer} to {type(request).__name__}")
    if isinstance(reply, SyncRefused):
        raise _PullFailed(f"{peer} refused {type(request).__name__}: {reply.reason}: "
                          f"{reply.detail}")
    if type(reply) is not expected or reply.store != request.store:
        raise _PullFailed(f"{peer} answered {type(request).__name__} for {request.store!r} with "
                          f"{type(reply).__name__} for {getattr(reply, 'store', None)!r}")
    return reply


def bucket_groups(buckets: Sequence[int], remote_count: int, target: int) -> list[list[int]]:
    """Split differing buckets into groups whose listing is expected to fit one reply.

    Rows spread evenly over buckets (they are hash-assigned), so a bucket holds about
    count / 256 entries.
    """
    per_bucket = max(1.0, remote_count / NUM_BUCKETS)
    size = max(1, min(NUM_BUCKETS, math.floor(target / per_bucket)))
    return [list(buckets[i:i + size]) for i in range(0, len(buckets), size)]


def _pull_store(peer: str, store: str, remote_count: int, config: SyncConfig,
                tally: _Tally) -> Steps[None]:
    remote = yield from _ask(peer, DigestsRequest(store), DigestsReply, tally)
    local = yield LocalQuery(store, "bucket_digests")
    differing = differing_buckets(list(local), remote.digests)
    subdivide = remote_count / NUM_BUCKETS > config.subdivide_above
    if subdivide:
        groups = [differing[i:i + MAX_BUCKETS_PER_SUBDIGESTS]
                  for i in range(0, len(differing), MAX_BUCKETS_PER_SUBDIGESTS)]
    else:
        groups = bucket_groups(differing, remote_count, config.entries_target)
    for group in groups:
        held_entries = yield LocalQuery(store, "bucket_entries", (group,))
        subs: list[int] | None = None
        if subdivide:
            theirs = yield from _ask(peer, SubDigestsRequest(store, group), SubDigestsReply,
                                     tally)
            mine = sub_digests(held_entries, group)
            if len(theirs.digests) != len(mine):
                raise _PullFailed(f"{peer} sent {len(theirs.digests)} sub-digests for "
                                  f"{len(group)} buckets")
            subs = [group[i // SUBS_PER_BUCKET] * SUBS_PER_BUCKET + i % SUBS_PER_BUCKET
                    for i, (a, b) in enumerate(zip(mine, theirs.digests, strict=True)) if a != b]
            if not subs:
                continue  # the buckets changed back since the digests: nothing differs now
        yield from _pull_listed(peer, store, group, subs, dict(held_entries), tally)


def _pull_listed(peer: str, store: str, buckets: list[int], subs: list[int] | None,
                 held: dict[str, bytes], tally: _Tally) -> Steps[None]:
    """Page through the peer's entries of `buckets` (or `subs`), pulling what is newer."""
    after: str | None = None
    while True:
        page = yield from _ask(peer, EntriesRequest(store, buckets, after, subs), EntriesReply,
                               tally)
        if after is not None and page.entries and page.entries[0][0] <= after:
            raise _PullFailed(f"{peer} listed key {page.entries[0][0][:40]!r} at or before "
                              f"the resume point {after[:40]!r}")
        newer = [(key, version) for key, version in page.entries
                 if (mine := held.get(key)) is None or version > mine]
        # Rows this node refused before are not pulled again (the store remembers them).
        wanted = list((yield LocalQuery(store, "wanted", (newer,)))) if newer else []
        for start in range(0, len(wanted), MAX_KEYS_PER_REQUEST):
            yield from _pull_rows(peer, store, wanted[start:start + MAX_KEYS_PER_REQUEST], tally)
        if not page.more:
            return
        after = page.entries[-1][0]


def _pull_rows(peer: str, store: str, keys: list[str], tally: _Tally) -> Steps[None]:
    """Fetch and merge the rows of `keys`, asking again for any the reply did not serve."""
    while keys:
        reply = yield from _ask(peer, RowsRequest(store, keys), RowsReply, tally)
        if reply.served > len(keys) or len(reply.rows) > reply.served:
            raise _PullFailed(f"{peer} sent {len(reply.rows)} rows serving {reply.served} keys "
                              f"for {len(keys)} keys asked")
        if reply.rows:
            stats = yield LocalQuery(store, "merge", (unpack_rows(reply.rows),))
            tally.rows_pulled += len(reply.rows)
            tally.merged = tally.merged + stats
            tally.by_store[store] = tally.by_store.get(store, MergeStats()) + stats
        keys = keys[reply.served:]


def _pull_blobs(peer: str, tally: _Tally) -> Steps[None]:
    """Fetch the model blobs we lack that `peer` holds; each download is hash-verified."""
    missing = list((yield LocalQuery(BLOB_STORE, "missing_blobs")))[:MAX_BLOBS_PER_REQUEST]
    if not missing:
        return
    reply = yield from _ask(peer, BlobsRequest(BLOB_STORE, missing), BlobsReply, tally)
    asked = set(missing)
    held = [sha for sha in dict.fromkeys(reply.held) if sha in asked]
    tally.blobs_lacking = len(missing) - len(held)
    for sha in held:
        if not (yield FetchBlob(peer, sha)):
            tally.blobs_lacking += 1
            raise _PullFailed(f"fetching blob {sha} from {peer} failed")
        tally.blobs_fetched += 1


# --- scheduler -----------------------------------------------------------------------------


class SyncScheduler:
    """Chooses whom to pull what from, each sync interval; remembers failures and coverage.

    Coverage: after a complete pull of store S from peer P whose manifest showed root R, we
    hold everything P held at R (stores only grow, in merge order). Until P's root for S
    changes, pulling S from P again could bring nothing, so P is not a candidate for S even
    though its root differs from ours (it is P that lacks our rows; P pulls them from us).
    """

    def __init__(self, rng: random.Random, config: SyncConfig | None = None) -> None:
        self._rng = rng
        self._config = config or SyncConfig()
        self._covered: dict[tuple[str, str], str] = {}
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        self._no_blobs_until: dict[str, float] = {}

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
        mine = [(name, local[name].root) for name in sorted(local)]
        covered = self._covered
        for peer in sorted(peers):  # sorted: the rng alone decides, so a seed replays a run
            if not self._may_ask(peer, now):
                continue
            theirs = peers[peer]
            stores = tuple(name for name, root in mine
                           if (t := theirs.get(name)) is not None and t.root != root
                           and covered.get((peer, name)) != t.root)
            if stores:
                candidates.append((peer, stores))
        if not candidates and blobs_missing:
            candidates = [(peer, ()) for peer in sorted(peers)
                          if self._may_ask(peer, now) and self._may_ask_blobs(peer, now)]
        if not candidates:
            return None
        peer, stores = self._rng.choice(candidates)
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
