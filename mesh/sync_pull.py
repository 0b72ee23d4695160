"""The puller: one pull of a peer's stores, pipelined, as a sans-IO generator.

Per store: the peer's 256 bucket digests against ours name the buckets that differ.

- Buckets (or, in large stores, sub-buckets) where we hold nothing are fetched by key-hash
  range: the peer sends their rows without a listing first (`RangeRowsRequest`), page after
  page. This is how a new node catches up: it holds nothing anywhere.
- Elsewhere the peer lists `(key, version)` entries of what differs (after comparing
  sub-bucket digests in large stores), and we fetch by key the rows we lack or hold older.

Requests go out `window` at a time (background steps, `mesh.sync_steps`) and every reply makes
the next ones. Rows go to a merge as soon as one is free (`merges_in_flight`: one batch is
written while the next is validated); what arrives while both are busy waits, as the byte
streams received, and goes in one batch, decoded then (one C-level decode per row, no other
work per row here), so batches grow with the load, and requests pause while too much waits. A
catch-up is thus bound by SQLite and the network, not by round trips. A pull cut short keeps
what it merged, and the next one only sees what still differs.

A peer that gives no reply, refuses, answers out of protocol, sends a row stream that does not
decode, or rows that fail validation ends the pull with it: its other requests are abandoned,
what was already received is merged, and the outcome names the reason (the scheduler counts it
and backs off that peer, so the next pull goes to another).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mesh.sync_messages import (
    BLOB_STORE,
    MAX_BLOBS_PER_REQUEST,
    MAX_BUCKETS_PER_SUBDIGESTS,
    MAX_KEYS_PER_REQUEST,
    SUBS_PER_BUCKET,
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
    SyncRequest,
)
from mesh.sync_steps import FetchBlob, LocalQuery, RemoteRequest, Steps, Ticket, Wait
from storage.digests import NUM_BUCKETS, NUM_SUBS, differing_buckets, sub_digests
from storage.merge import MergeStats
from storage.packed import BadStream, order_keys, unpack_stream

if TYPE_CHECKING:
    from mesh.sync import SyncConfig

# Why a pull ended early (PullOutcome.reason): counted by the scheduler.
NO_REPLY = "no_reply"  # timed out, unreachable, or a reply the transport refused
REFUSED = "refused"  # the peer answered with a refusal
MALFORMED = "malformed"  # a reply out of protocol, or rows that do not decode
INVALID_ROWS = "invalid_rows"  # rows that fail validation (wrong hash, bad fields)
BLOB_FAILED = "blob_failed"  # a blob download failed or did not match its hash
REASONS = (NO_REPLY, REFUSED, MALFORMED, INVALID_ROWS, BLOB_FAILED)


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
    reason: str = ""  # why the pull failed: one of REASONS, "" when it did not

    @property
    def ok(self) -> bool:
        return self.failed is None


class PullFailed(Exception):
    """Ends a pull: the peer gave no reply, refused, or replied out of protocol."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(slots=True)
class Tally:
    requests: int = 0
    rows_pulled: int = 0
    merged: MergeStats = field(default_factory=MergeStats)
    blobs_fetched: int = 0
    blobs_lacking: int = 0
    by_store: dict[str, MergeStats] = field(default_factory=dict)

    def merged_into(self, store: str, stats: MergeStats) -> None:
        self.merged = self.merged + stats
        self.by_store[store] = self.by_store.get(store, MergeStats()) + stats

    def outcome(self, peer: str, completed: list[str],
                failed: tuple[str, PullFailed] | None = None) -> PullOutcome:
        store, error = failed if failed is not None else (None, None)
        return PullOutcome(peer, tuple(completed), store, "" if error is None else str(error),
                           self.requests, self.rows_pulled, self.merged, self.blobs_fetched,
                           self.blobs_lacking, tuple(self.by_store.items()),
                           "" if error is None else error.reason)


def pull(plan: PullPlan, config: SyncConfig) -> Steps[PullOutcome]:
    """Pull each store of `plan` from its peer, then (with `plan.blobs`) the blobs we lack."""
    tally = Tally()
    completed: list[str] = []
    for store, count in zip(plan.stores, plan.counts, strict=True):
        try:
            yield from _StorePull(plan.peer, store, count, config, tally).run()
        except PullFailed as failed:
            return tally.outcome(plan.peer, completed, (store, failed))
        completed.append(store)
    if plan.blobs:
        try:
            # After the rows: model rows just merged name the blobs we now lack.
            yield from _pull_blobs(plan.peer, tally)
        except PullFailed as failed:
            return tally.outcome(plan.peer, completed, (BLOB_STORE, failed))
    return tally.outcome(plan.peer, completed)


def bucket_groups(buckets: Sequence[int], remote_count: int, target: int) -> list[list[int]]:
    """Split differing buckets into groups whose listing is expected to fit one reply.

    Rows spread evenly over buckets (they are hash-assigned), so a bucket holds about
    count / 256 entries.
    """
    per_bucket = max(1.0, remote_count / NUM_BUCKETS)
    size = max(1, min(NUM_BUCKETS, math.floor(target / per_bucket)))
    return [list(buckets[i:i + size]) for i in range(0, len(buckets), size)]


def sub_runs(subs: Sequence[int], per_range: int) -> list[tuple[int, int]]:
    """Sorted sub-bucket ids as inclusive ranges: runs of consecutive ids, each cut to at most
    `per_range` ids."""
    runs: list[tuple[int, int]] = []
    for sub in sorted(subs):
        if runs and runs[-1][1] + 1 == sub and sub - runs[-1][0] < per_range:
            runs[-1] = (runs[-1][0], sub)
        else:
            runs.append((sub, sub))
    return runs


def _check_reply(peer: str, request: SyncRequest, reply: object, expected: type) -> Any:
    """The reply if it is the expected kind for the same store; raises PullFailed."""
    kind = type(request).__name__
    if reply is None:
        raise PullFailed(NO_REPLY, f"no reply from {peer} to {kind}")
    if isinstance(reply, SyncRefused):
        raise PullFailed(REFUSED, f"{peer} refused {kind}: {reply.reason}: {reply.detail}")
    if type(reply) is not expected or reply.store != request.store:  # type: ignore[attr-defined]
        raise PullFailed(MALFORMED, f"{peer} answered {kind} for {request.store!r} with "
                                    f"{type(reply).__name__} for "
                                    f"{getattr(reply, 'store', None)!r}")
    return reply


def _ask(peer: str, request: SyncRequest, expected: type, tally: Tally) -> Steps[Any]:
    """One request, waited for; returns the checked reply."""
    tally.requests += 1
    reply = yield RemoteRequest(peer, request)
    return _check_reply(peer, request, reply, expected)


# --- the jobs of one store's pull: each is one request and what to do with its reply -------


@dataclass(slots=True)
class _Range:
    """Rows of sub-buckets first..last, after key `after` (we hold nothing there)."""

    first: int
    last: int
    after: str | None = None


@dataclass(slots=True)
class _SubDigests:
    """Sub-bucket digests of `buckets`, to narrow what differs (large stores)."""

    buckets: list[int]
    held: dict[str, bytes] | None = None  # our entries in those buckets, read when sent


@dataclass(slots=True)
class _Listing:
    """The peer's entries of `buckets` (of `subs` only, when given), from key `after` on."""

    buckets: list[int]
    subs: list[int] | None
    after: str | None = None
    held: dict[str, bytes] | None = None  # our entries there, read when first sent


@dataclass(slots=True)
class _Keys:
    """Rows of these keys (listed newer than ours)."""

    keys: list[str]


@dataclass(slots=True)
class _Merge:
    rows: int


_Job = _Range | _SubDigests | _Listing | _Keys


class _StorePull:
    """One store's pull: a queue of jobs, `window` requests in flight, batched merges."""

    def __init__(self, peer: str, store: str, remote_count: int, config: SyncConfig,
                 tally: Tally) -> None:
        self.peer = peer
        self.store = store
        self.remote_count = remote_count
        self.config = config
        self.tally = tally
        self.queue: deque[_Job] = deque()
        # Background steps started, with the request each sent (None: a merge).
        self.pending: dict[Ticket, tuple[_Job | _Merge, SyncRequest | None]] = {}
        self.requests = 0  # of pending, how many are requests (the rest are merges)
        # Steps a shell ran to their end at once, with their results.
        self.finished: deque[tuple[_Job | _Merge, SyncRequest | None, Any]] = deque()
        # Row streams as received, decoded when they go to a merge (see `_merge`).
        self.buffer: list[tuple[bytes, int]] = []
        self.buffered_rows = 0
        self.buffered_bytes = 0
        self.failure: PullFailed | None = None
        # Sub-buckets per range request: about `range_rows` of the peer's rows.
        per_sub = max(remote_count, 1) / NUM_SUBS
        self.subs_per_range = max(1, math.floor(config.range_rows / per_sub))

    def run(self) -> Steps[None]:
        remote = yield from _ask(self.peer, DigestsRequest(self.store), DigestsReply, self.tally)
        local = list((yield LocalQuery(self.store, "bucket_digests")))
        differing = differing_buckets(local, remote.digests)
        # A zero digest: we hold nothing in that bucket (a non-empty bucket XORs to zero with
        # probability 2**-64, and then its rows would only come again, changing nothing).
        ranges, listed = self._split([b for b in differing if local[b] == 0], SUBS_PER_BUCKET)
        self.queue.extend(ranges)
        partial = sorted([b for b in differing if local[b] != 0] + listed)
        if self.remote_count / NUM_BUCKETS > self.config.subdivide_above:
            self.queue.extend(_SubDigests(partial[i:i + MAX_BUCKETS_PER_SUBDIGESTS])
                              for i in range(0, len(partial), MAX_BUCKETS_PER_SUBDIGESTS))
        else:
            self.queue.extend(_Listing(group, None) for group in bucket_groups(
                partial, self.remote_count, self.config.entries_target))
        yield from self._pump()
        if self.failure is not None:
            raise self.failure

    def _split(self, empty: list[int], size: int) -> tuple[list[_Range], list[int]]:
        """Differing units (buckets: `size` 256; sub-buckets: 1) we hold nothing in: runs of
        them expected to hold `range_min_rows` of the peer's rows or more, as range jobs; the
        units of shorter runs, to be listed. A unit that differs holds at least one row."""
        ranges: list[_Range] = []
        listed: list[int] = []
        per_unit = max(1.0, self.remote_count * size / NUM_SUBS)
        for first, last in sub_runs(empty, NUM_SUBS):
            if (last - first + 1) * per_unit >= self.config.range_min_rows:
                subs = range(first * size, (last + 1) * size)
                ranges += [_Range(a, b) for a, b in sub_runs(subs, self.subs_per_range)]
            else:
                listed += range(first, last + 1)
        return ranges, listed

    # --- the pump: send while there is room, take what finishes, merge in batches ----------

    def _pump(self) -> Steps[None]:
        cfg = self.config
        while True:
            # Replies a shell finished at once take window slots too, so a shell that runs
            # every step to its end still holds at most `window` replies at a time.
            while (self.failure is None and self.queue
                   and self.requests + len(self.finished) < cfg.window
                   and self.buffered_bytes < cfg.buffer_bytes
                   and self.buffered_rows < cfg.buffer_rows):
                yield from self._send(self.queue.popleft())
            merges = len(self.pending) - self.requests
            if self.buffer and merges < cfg.merges_in_flight:
                # Whatever arrived while the merges were busy goes in one batch: batches grow
                # with the load, and rows are never held back from a free merge.
                yield from self._merge()
                continue
            if self.finished:
                job, request, result = self.finished.popleft()
            elif self.pending and (self.failure is None or merges):
                ticket, result = yield Wait()
                job, request = self.pending.pop(ticket)
                self.requests -= request is not None
            else:
                # Done, or failed with no merge left to wait for: requests still in flight
                # are abandoned (the shell cancels them).
                return
            if isinstance(job, _Merge):
                self._merged(result)
            elif self.failure is None:
                assert request is not None
                try:
                    yield from self._handle(job, request, result)
                except PullFailed as failed:
                    self.failure = failed

    def _send(self, job: _Job) -> Steps[None]:
        if isinstance(job, (_SubDigests, _Listing)) and job.held is None:
            job.held = dict((yield LocalQuery(self.store, "bucket_entries", (job.buckets,))))
        self.tally.requests += 1
        request = self._request(job)
        started = yield RemoteRequest(self.peer, request, background=True)
        self._started(job, request, started)

    def _merge(self) -> Steps[None]:
        # Decoded here, not on arrival: a stream decoded while a merge is writing would hold
        # the event loop the merge's statements go through, one at a time, and the write
        # waited on every decode. A stream that does not decode ends the pull; the rows before
        # it are merged.
        streams, self.buffer, self.buffered_rows, self.buffered_bytes = self.buffer, [], 0, 0
        rows: list[object] = []
        for data, count in streams:
            try:
                rows += unpack_stream(data, count)
            except BadStream as bad:
                self.failure = self.failure or PullFailed(
                    MALFORMED, f"{self.peer} sent rows of {self.store}: {bad}")
                break
            self.tally.rows_pulled += count
        if not rows:
            return
        started = yield LocalQuery(self.store, "merge", (rows,), background=True)
        self._started(_Merge(len(rows)), None, started)

    def _started(self, job: _Job | _Merge, request: SyncRequest | None, started: Any) -> None:
        if isinstance(started, Ticket):
            self.pending[started] = (job, request)
            self.requests += request is not None
        else:  # the shell ran it to the end already
            self.finished.append((job, request, started))

    def _merged(self, stats: MergeStats) -> None:
        self.tally.merged_into(self.store, stats)
        if stats.invalid and self.failure is None:
            self.failure = PullFailed(INVALID_ROWS, f"{self.peer} sent {stats.invalid} rows of "
                                                    f"{self.store} that fail validation")

    def _request(self, job: _Job) -> SyncRequest:
        store = self.store
        if isinstance(job, _Range):
            return RangeRowsRequest(store, job.first, job.last, job.after)
        if isinstance(job, _SubDigests):
            return SubDigestsRequest(store, job.buckets)
        if isinstance(job, _Listing):
            return EntriesRequest(store, job.buckets, job.after, job.subs)
        return RowsRequest(store, job.keys)

    # --- replies ------------------------------------------------------------------------

    def _handle(self, job: _Job, request: SyncRequest, reply: object) -> Steps[None]:
        if isinstance(job, _Range):
            self._take_range(job, _check_reply(self.peer, request, reply, RangeRowsReply))
        elif isinstance(job, _Keys):
            self._take_rows(job, _check_reply(self.peer, request, reply, RowsReply))
        elif isinstance(job, _SubDigests):
            self._take_sub_digests(job, _check_reply(self.peer, request, reply, SubDigestsReply))
        else:
            yield from self._take_listing(job, _check_reply(self.peer, request, reply,
                                                            EntriesReply))

    def _rows(self, data: bytes, count: int) -> None:
        self.buffer.append((data, count))
        self.buffered_rows += count
        self.buffered_bytes += len(data)

    def _take_range(self, job: _Range, reply: RangeRowsReply) -> None:
        self._rows(reply.rows, reply.count)
        if reply.after is None:
            return
        # Each page must move on, or a peer could keep us paging in place for ever.
        if job.after is not None and order_keys([reply.after]) <= order_keys([job.after]):
            raise PullFailed(MALFORMED, f"{self.peer} resumed a range at key "
                                        f"{reply.after[:40]!r}, not after {job.after[:40]!r}")
        self.queue.appendleft(_Range(job.first, job.last, reply.after))

    def _take_rows(self, job: _Keys, reply: RowsReply) -> None:
        if reply.served > len(job.keys):
            raise PullFailed(MALFORMED, f"{self.peer} served {reply.served} keys of "
                                        f"{len(job.keys)} asked")
        self._rows(reply.rows, reply.count)
        if reply.served < len(job.keys):
            self.queue.appendleft(_Keys(job.keys[reply.served:]))

    def _take_sub_digests(self, job: _SubDigests, reply: SubDigestsReply) -> None:
        assert job.held is not None
        group = job.buckets
        mine = sub_digests(list(job.held.items()), group)
        if len(reply.digests) != len(mine):
            raise PullFailed(MALFORMED, f"{self.peer} sent {len(reply.digests)} sub-digests for "
                                        f"{len(group)} buckets")
        differ = [(group[i // SUBS_PER_BUCKET] * SUBS_PER_BUCKET + i % SUBS_PER_BUCKET, ours)
                  for i, (ours, theirs) in enumerate(zip(mine, reply.digests, strict=True))
                  if ours != theirs]
        ranges, listed = self._split([sub for sub, ours in differ if not ours], 1)
        listed += [sub for sub, ours in differ if ours]
        jobs: list[_Job] = list(ranges)
        if listed:
            buckets = sorted({sub // SUBS_PER_BUCKET for sub in listed})
            jobs.append(_Listing(buckets, sorted(listed), None, job.held))
        self.queue.extendleft(reversed(jobs))

    def _take_listing(self, job: _Listing, page: EntriesReply) -> Steps[None]:
        assert job.held is not None
        if job.after is not None and page.entries and page.entries[0][0] <= job.after:
            raise PullFailed(MALFORMED, f"{self.peer} listed key {page.entries[0][0][:40]!r} "
                                        f"at or before the resume point {job.after[:40]!r}")
        held = job.held
        newer = [(key, version) for key, version in page.entries
                 if (mine := held.get(key)) is None or version > mine]
        # Rows this node refused before are not pulled again (the store remembers them).
        wanted = list((yield LocalQuery(self.store, "wanted", (newer,)))) if newer else []
        jobs: list[_Job] = [_Keys(wanted[i:i + MAX_KEYS_PER_REQUEST])
                            for i in range(0, len(wanted), MAX_KEYS_PER_REQUEST)]
        if page.more:
            jobs.append(_Listing(job.buckets, job.subs, page.entries[-1][0], held))
        self.queue.extendleft(reversed(jobs))


def _pull_blobs(peer: str, tally: Tally) -> Steps[None]:
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
            raise PullFailed(BLOB_FAILED, f"fetching blob {sha} from {peer} failed")
        tally.blobs_fetched += 1
