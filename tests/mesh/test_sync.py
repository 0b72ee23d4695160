"""The anti-entropy core: bucket diffing, paging, batching, resume, no duplicate pulls, refusals."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable
from pathlib import Path

import msgpack
import pytest

from mesh import codec
from mesh.manifest import StoreSummary
from mesh.sync import (
    PullOutcome,
    PullPlan,
    SyncConfig,
    SyncScheduler,
    answer,
    answer_async,
    bucket_groups,
    drive,
    drive_async,
    pull_session,
    sub_bucket_ids,
    sub_digests,
)
from mesh.sync_messages import (
    MAX_ENTRIES_PER_REPLY,
    MAX_KEYS_PER_REQUEST,
    MAX_ROWS_PER_REPLY,
    MAX_ROWS_REPLY_BYTES,
    BlobsRequest,
    DigestsReply,
    DigestsRequest,
    EntriesReply,
    EntriesRequest,
    RangeRowsReply,
    RangeRowsRequest,
    RowsReply,
    RowsRequest,
    SubDigestsRequest,
    SyncRefused,
)
from storage.digests import NUM_BUCKETS, key_bucket
from storage.hlc import HybridClock
from storage.memory import MemoryStores
from storage.packed import unpack_stream
from storage.rows import new_game, new_match
from storage.stores import open_stores


def game(i: int, origin: str = "a", moves: int = 3) -> dict:
    return new_game("square8", 2, [i.to_bytes(3, "big") + bytes([j]) for j in range(moves)],
                    [1, 2], 1000 + i, origin)


def match(match_id: str, hlc: int, origin: str, score: float = 1.0) -> dict:
    return new_match(match_id, ["p", "q"], "square8", 2, [score, 1.0 - score], hlc, origin)


def summaries(stores: MemoryStores) -> dict[str, StoreSummary]:
    return {n: StoreSummary(*s.summary()) for n, s in stores.by_name().items()}


Asked = list[object]


def asker(peer: MemoryStores, log: Asked | None = None,
          fail_after: int | None = None) -> Callable[[str, object], object]:
    """Answers requests from `peer`'s stores; logs them; gives no reply after `fail_after`."""
    calls = [0]

    def ask(_peer_id: str, request: object) -> object:
        calls[0] += 1
        if log is not None:
            log.append(request)
        if fail_after is not None and calls[0] > fail_after:
            return None
        return answer(request, peer.by_name())

    return ask


def full_plan(peer_id: str, peer: MemoryStores) -> PullPlan:
    s = summaries(peer)
    names = tuple(sorted(s))
    return PullPlan(peer_id, names, tuple(s[n].root for n in names), tuple(s[n].count for n in names))


def pull(puller: MemoryStores, peer: MemoryStores, log: Asked | None = None,
         fail_after: int | None = None) -> PullOutcome:
    return drive(pull_session(full_plan("peer", peer)), puller.by_name(),
                 asker(peer, log, fail_after))


# --- pulling ----------------------------------------------------------------------------------


def test_pull_makes_roots_equal_and_pulls_each_missing_row_once() -> None:
    a, b = MemoryStores(), MemoryStores()
    a.games.merge([game(i) for i in range(300)])
    b.games.merge([game(i) for i in range(200, 450)])
    outcome = pull(a, b)
    assert outcome.ok and outcome.completed == ("games", "matches", "models")
    assert outcome.rows_pulled == 150  # games 300..449, nothing a already held
    assert outcome.merged.added == 150 and outcome.merged.skipped == 0
    assert a.games.summary() == (450, a.games.summary()[1])
    pull(b, a)
    assert summaries(a) == summaries(b)


def test_only_the_buckets_that_differ_are_listed() -> None:
    a, b = MemoryStores(), MemoryStores()
    shared = [game(i) for i in range(500)]
    a.games.merge(shared)
    b.games.merge(shared)
    extra = game(9999, origin="b")
    b.games.put(extra)
    log: Asked = []
    pull(a, b, log)
    listed = [r for r in log if isinstance(r, EntriesRequest)]
    assert [r.buckets for r in listed] == [[key_bucket(extra["game_id"])]]
    fetched = [r for r in log if isinstance(r, RowsRequest)]
    assert [r.keys for r in fetched] == [[extra["game_id"]]]


def test_lww_pulls_only_rows_held_older_or_missing() -> None:
    a, b = MemoryStores(), MemoryStores()
    a.matches.merge([match("m-new-here", 500, "a"), match("m-old-here", 100, "a")])
    b.matches.merge([match("m-new-here", 400, "b"), match("m-old-here", 200, "b"),
                     match("m-missing", 300, "b")])
    log: Asked = []
    outcome = pull(a, b, log)
    keys = [k for r in log if isinstance(r, RowsRequest) for k in r.keys]
    assert "m-old-here" in keys and "m-new-here" not in keys
    assert outcome.rows_pulled == 2  # m-missing (by key, or with its bucket) and m-old-here
    assert outcome.merged.added == 1 and outcome.merged.resolved == 1
    assert a.matches.get("m-new-here")["hlc"] == 500
    assert a.matches.get("m-old-here")["origin_node"] == "b"


def test_pair_in_sync_plans_no_pull_at_all() -> None:
    a, b = MemoryStores(), MemoryStores()
    rows = [game(i) for i in range(50)]
    a.games.merge(rows)
    b.games.merge(rows)
    scheduler = SyncScheduler(random.Random(1))
    assert scheduler.plan(0.0, summaries(a), {"b": summaries(b)}) is None


def test_rows_listed_newer_travel_in_bounded_batches_of_keys() -> None:
    a, b = MemoryStores(), MemoryStores()
    shared = [game(i) for i in range(3000)]  # something held in every bucket: listings
    a.games.merge(shared)
    b.games.merge(shared + [game(10_000 + i) for i in range(MAX_KEYS_PER_REQUEST * 2 + 5)])
    log: Asked = []
    assert pull(a, b, log).ok
    sizes = [len(r.keys) for r in log if isinstance(r, RowsRequest)]
    assert max(sizes) <= MAX_KEYS_PER_REQUEST
    assert sum(sizes) == MAX_KEYS_PER_REQUEST * 2 + 5
    assert not any(isinstance(r, RangeRowsRequest) for r in log)
    assert summaries(a) == summaries(b)


def test_a_puller_that_holds_nothing_takes_rows_by_range_without_listings() -> None:
    a, b = MemoryStores(), MemoryStores()
    b.games.merge([game(i) for i in range(5000)])
    b.matches.merge([match(f"m{i}", 10 + i, "b") for i in range(3000)])
    log: Asked = []
    outcome = pull(a, b, log)
    assert outcome.ok and outcome.rows_pulled == 8000 and outcome.merged.skipped == 0
    assert not any(isinstance(r, (EntriesRequest, RowsRequest)) for r in log)
    ranges = [r for r in log if isinstance(r, RangeRowsRequest)]
    assert len(ranges) < 10  # a few large ranges, not a request per bucket
    assert summaries(a) == summaries(b)


def test_bucket_groups_aim_at_one_reply_per_group() -> None:
    buckets = list(range(NUM_BUCKETS))
    assert bucket_groups(buckets, 100, 1536) == [buckets]  # small store: one listing
    groups = bucket_groups(buckets, 256 * 1000, 1536)  # ~1000 rows a bucket
    assert all(len(g) == 1 for g in groups) and len(groups) == NUM_BUCKETS
    groups = bucket_groups(buckets[:10], 256 * 300, 1536)
    assert [len(g) for g in groups] == [5, 5]


def test_interrupted_pull_keeps_what_it_merged_and_the_next_pulls_only_the_rest() -> None:
    a, b = MemoryStores(), MemoryStores()
    total = 12_000
    b.games.merge([game(i) for i in range(total)])
    first = pull(a, b, fail_after=2)  # digests, one range of rows, then silence
    assert not first.ok and first.failed == "games" and "no reply" in first.error
    kept = len(a.games)
    assert 0 < kept < total
    second = pull(a, b)
    assert second.ok
    assert second.rows_pulled == total - kept  # nothing pulled twice
    assert second.merged.skipped == 0
    assert summaries(a)["games"] == summaries(b)["games"]


def test_listing_pages_past_the_reply_cap_and_covers_every_key_once() -> None:
    b = MemoryStores()
    b.games.merge([game(i) for i in range(MAX_ENTRIES_PER_REPLY + 300)])
    every_bucket = list(range(NUM_BUCKETS))
    first = answer(EntriesRequest("games", every_bucket), b.by_name())
    assert isinstance(first, EntriesReply) and first.more
    assert len(first.entries) == MAX_ENTRIES_PER_REPLY
    second = answer(EntriesRequest("games", every_bucket, first.entries[-1][0]), b.by_name())
    assert isinstance(second, EntriesReply) and not second.more
    keys = [k for k, _ in first.entries + second.entries]
    assert keys == sorted(set(keys)) and len(keys) == len(b.games)
    # A puller drives the same paging without being told to.
    a = MemoryStores()
    log: Asked = []
    assert pull(a, b, log).ok
    assert len(a.games) == len(b.games)


def test_rows_reply_stops_at_its_byte_budget_and_the_puller_asks_for_the_rest() -> None:
    b = MemoryStores()
    # Games of ~700 KB each: 8 of them exceed the 4 MiB reply budget.
    big = [new_game("square8", 2, [bytes([i + 1]) * 116] * 6000, [1, 2], 10 + i, "b")
           for i in range(8)]
    b.games.merge(big)
    keys = sorted(g["game_id"] for g in big)
    reply = answer(RowsRequest("games", keys), b.by_name())
    assert isinstance(reply, RowsReply) and 1 <= reply.served < len(keys)
    assert len(reply.rows) <= MAX_ROWS_REPLY_BYTES
    rows = unpack_stream(reply.rows, reply.count)
    assert [r["game_id"] for r in rows] == keys[:reply.served]
    ranged = answer(RangeRowsRequest("games", 0, NUM_BUCKETS * 256 - 1), b.by_name())
    assert isinstance(ranged, RangeRowsReply) and 1 <= ranged.count < 8 and ranged.after
    assert len(ranged.rows) <= MAX_ROWS_REPLY_BYTES
    a = MemoryStores()
    log: Asked = []
    outcome = pull(a, b, log)  # 8 rows: listed, then asked for by key
    assert outcome.ok and outcome.rows_pulled == 8 and len(a.games) == 8
    assert len([r for r in log if isinstance(r, RowsRequest)]) >= 2  # served in parts
    # Taken by range (as a store of many rows would be), the range is paged the same way.
    c = MemoryStores()
    log.clear()
    plan = full_plan("peer", b)
    outcome = drive(pull_session(plan, SyncConfig(range_min_rows=1)), c.by_name(),
                    asker(b, log))
    assert outcome.ok and outcome.rows_pulled == 8 and len(c.games) == 8
    assert len([r for r in log if isinstance(r, RangeRowsRequest)]) >= 2


# --- replies a puller refuses ------------------------------------------------------------------


# Rows by range even from small stores (the default lists them), to test the range path.
RANGES = SyncConfig(range_min_rows=1)


def _scripted(replies: dict[type, object], rows: int = 20) -> Callable[[str, object], object]:
    peer = MemoryStores()
    peer.games.merge([game(i) for i in range(rows)])

    def ask(_peer: str, request: object) -> object:
        return replies.get(type(request)) or answer(request, peer.by_name())

    return ask


@pytest.mark.parametrize("replies, error", [
    ({DigestsRequest: SyncRefused("unknown_store", "no games here")}, "refused"),
    ({DigestsRequest: EntriesReply("games", [])}, "answered DigestsRequest"),
    ({DigestsRequest: DigestsReply("matches", [0] * NUM_BUCKETS)}, "for 'matches'"),
    ({RangeRowsRequest: RangeRowsReply("games", b"\xc1\x80", 2)}, "not msgpack"),
    ({RangeRowsRequest: RangeRowsReply("games", b"\x80\x80\x80", 2)}, "bytes after"),
    ({RangeRowsRequest: RangeRowsReply("games", b"\x92\x80", 1)}, "ends after 0 of 1"),
    ({RowsRequest: RowsReply("games", b"\xc1\x80", 2, 2)}, "not msgpack"),
    ({RowsRequest: RowsReply("games", b"\x80", 1, 1500)}, "served 1500 keys of 20"),
])
def test_out_of_protocol_replies_end_the_pull_with_a_reason(replies: dict, error: str) -> None:
    a = MemoryStores()
    plan = PullPlan("peer", ("games",), ("r",), (20,))
    config = RANGES if RangeRowsRequest in replies else SyncConfig()
    outcome = drive(pull_session(plan, config), a.by_name(), _scripted(replies))
    assert not outcome.ok and outcome.failed == "games"
    assert error in outcome.error
    assert outcome.reason in ("refused", "malformed")


def test_listing_that_goes_backwards_ends_the_pull() -> None:
    a = MemoryStores()
    a.games.merge([game(i) for i in range(3000)])  # something in every bucket: listings
    b = MemoryStores()
    b.games.merge([game(i) for i in range(3020)])
    first = answer(EntriesRequest("games", list(range(NUM_BUCKETS))), b.by_name())
    looping = EntriesReply("games", first.entries, more=True)  # same page forever
    plan = PullPlan("peer", ("games",), ("r",), (3020,))
    outcome = drive(pull_session(plan), a.by_name(),
                    _scripted({EntriesRequest: looping}, rows=3020))
    assert not outcome.ok and "at or before the resume point" in outcome.error


def test_a_range_that_does_not_move_on_ends_the_pull() -> None:
    b = MemoryStores()
    b.games.merge([game(i) for i in range(50)])
    first = answer(RangeRowsRequest("games", 0, NUM_BUCKETS * 256 - 1), b.by_name())
    assert isinstance(first, RangeRowsReply) and first.after is None
    last = unpack_stream(first.rows, first.count)[-1]["game_id"]
    stuck = RangeRowsReply("games", first.rows, first.count, after=last)  # same page again
    plan = PullPlan("peer", ("games",), ("r",), (50,))
    outcome = drive(pull_session(plan, RANGES), MemoryStores().by_name(),
                    _scripted({RangeRowsRequest: stuck}, rows=50))
    assert not outcome.ok and outcome.reason == "malformed" and "not after" in outcome.error


# --- responder validation ---------------------------------------------------------------------


def test_responder_refuses_unknown_stores_and_non_requests() -> None:
    stores = MemoryStores().by_name()
    refused = answer(DigestsRequest("passwords"), stores)
    assert isinstance(refused, SyncRefused) and refused.reason == "unknown_store"
    assert "'passwords'" in refused.detail and "games" in refused.detail
    wrong = answer(DigestsReply("games", [0] * NUM_BUCKETS), stores)
    assert isinstance(wrong, SyncRefused) and wrong.reason == "bad_request"


@pytest.mark.parametrize("kind, body, named", [
    ("sync.entries", {"store": "games", "buckets": [256]}, "buckets[0]"),
    ("sync.entries", {"store": "games", "buckets": [-1]}, "buckets[0]"),
    ("sync.entries", {"store": "games", "buckets": []}, "1..256 buckets"),
    ("sync.entries", {"store": "games", "buckets": [3, 3]}, "must not repeat"),
    ("sync.entries", {"store": "games", "buckets": list(range(257))}, "buckets"),
    ("sync.rows", {"store": "games", "keys": ["k"] * (MAX_KEYS_PER_REQUEST + 1)}, "keys"),
    ("sync.rows", {"store": "games", "keys": ["k" * 200]}, "keys[0]"),
    ("sync.rows", {"store": "games", "keys": []}, f"1..{MAX_KEYS_PER_REQUEST} keys"),
    ("sync.digests", {"store": ""}, "must not be empty"),
    ("sync.digests", {"store": 7}, "field store"),
    ("sync.digests_reply", {"store": "games", "digests": [0] * 255}, "exactly 256"),
    ("sync.digests_reply", {"store": "games", "digests": [-1] * 256}, "digests[0]"),
    ("sync.entries_reply", {"store": "games", "entries": [["b", b""], ["a", b""]]},
     "strictly increasing"),
    ("sync.entries_reply", {"store": "games", "entries": [["a", b"v" * 65]]}, "64 bytes"),
    ("sync.entries_reply", {"store": "games", "entries": [], "more": True}, "at least one"),
    ("sync.rows_reply", {"store": "games", "rows": b"", "count": 0, "served": 0}, "served"),
    ("sync.rows_reply", {"store": "games", "rows": b"\x80", "count": 2, "served": 2},
     "cannot hold 2 rows"),
    ("sync.rows_reply", {"store": "games", "rows": b"\x80\x80", "count": 2, "served": 1},
     "outside 0..1"),
    ("sync.range", {"store": "games", "first": 9, "last": 8}, "in order"),
    ("sync.range", {"store": "games", "first": 0, "last": 65536}, "field last"),
    ("sync.range_reply", {"store": "games", "rows": b"", "count": 0, "after": "k"},
     "at least one row"),
    ("sync.range_reply", {"store": "games", "rows": b"\x80" * (MAX_ROWS_PER_REPLY + 1),
                          "count": MAX_ROWS_PER_REPLY + 1}, "field count"),
])
def test_bad_bodies_are_refused_naming_the_field(kind: str, body: dict, named: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.from_body(kind, body)
    assert named in str(err.value)


@pytest.mark.parametrize("msg", [
    DigestsRequest("games"),
    DigestsReply("games", list(range(NUM_BUCKETS))),
    EntriesRequest("matches", [0, 255], after="m-1"),
    EntriesReply("matches", [("a", b"\x00\x01"), ("b", b"\xff")], more=True),
    RowsRequest("models", ["m:" + "0" * 64]),
    RowsReply("games", msgpack.packb(game(1)), 1, 1),
    RangeRowsRequest("games", 0, 65535, after="k"),
    RangeRowsReply("games", msgpack.packb(game(1)) * 2, 2, after="k"),
    SyncRefused("unknown_store", "store 'x' is not one of ['games']"),
])
def test_messages_round_trip_through_the_codec(msg: object) -> None:
    body = msgpack.unpackb(msgpack.packb(codec.to_body(msg), use_bin_type=True), raw=False)
    assert codec.from_body(codec.kind_of(msg), body) == msg


# --- scheduler ---------------------------------------------------------------------------------


def _summary(root: str, count: int = 1) -> dict[str, StoreSummary]:
    return {"games": StoreSummary(count, root)}


def test_scheduler_picks_among_peers_whose_roots_differ() -> None:
    scheduler = SyncScheduler(random.Random(3))
    local = _summary("aa")
    peers = {"same": _summary("aa"), "x": _summary("bb"), "y": _summary("cc")}
    picked = {scheduler.plan(0.0, local, peers).peer for _ in range(50)}
    assert picked == {"x", "y"}


def test_scheduler_does_not_repull_a_root_it_already_covered() -> None:
    scheduler = SyncScheduler(random.Random(3))
    local = _summary("aa")
    plan = scheduler.plan(0.0, local, {"x": _summary("bb")})
    scheduler.finished(plan, PullOutcome("x", ("games",)), 0.0)
    assert scheduler.plan(1.0, local, {"x": _summary("bb")}) is None
    again = scheduler.plan(2.0, local, {"x": _summary("b2")})  # x gained rows since
    assert again is not None and again.roots == ("b2",)


def test_scheduler_backs_off_a_failing_peer_and_forgives_it_on_success() -> None:
    config = SyncConfig(backoff_base_s=2.0, backoff_max_s=8.0)
    scheduler = SyncScheduler(random.Random(5), config)
    local = _summary("aa")
    peers = {"x": _summary("bb")}
    failed = PullOutcome("x", (), "games", "no reply")
    retry_after = []
    now = 0.0
    for _ in range(5):
        plan = scheduler.plan(now, local, peers)
        assert plan is not None
        scheduler.finished(plan, failed, now)
        assert scheduler.backing_off(now) == ["x"]
        assert scheduler.plan(now + 0.9, local, peers) is None  # at least half the base delay
        while scheduler.plan(now, local, peers) is None:
            now += 0.25
        retry_after.append(now)
    gaps = [b - a for a, b in itertools.pairwise(retry_after)]
    assert max(gaps) <= 8.0 * 1.5 + 0.25  # capped
    plan = scheduler.plan(now, local, peers)
    scheduler.finished(plan, PullOutcome("x", ("games",)), now)
    assert scheduler.backing_off(now) == []


def test_scheduler_forgets_peers_that_left_membership() -> None:
    scheduler = SyncScheduler(random.Random(1))
    local = _summary("aa")
    plan = scheduler.plan(0.0, local, {"x": _summary("bb")})
    scheduler.finished(plan, PullOutcome("x", (), "games", "no reply"), 0.0)
    scheduler.plan(1.0, local, {})
    assert scheduler.backing_off(1.0) == []
    # Back in membership: a fresh start, no back-off or coverage remembered.
    assert scheduler.plan(1.0, local, {"x": _summary("bb")}) is not None


def test_scheduler_skips_stores_it_does_not_hold() -> None:
    scheduler = SyncScheduler(random.Random(1))
    local = {"games": StoreSummary(1, "aa")}
    peer = {"games": StoreSummary(1, "aa"), "models": StoreSummary(3, "zz")}
    assert scheduler.plan(0.0, local, {"x": peer}) is None


# --- the async shell: the same protocol against the SQLite stores -----------------------------


async def test_async_stores_pull_from_memory_and_answer_a_memory_puller(tmp_path: Path) -> None:
    clock = HybridClock(lambda: 1_700_000_000_000, 60_000)
    disk = await open_stores(tmp_path / "node", clock, "n1")
    try:
        mem = MemoryStores()
        mem.games.merge([game(i, "m") for i in range(150)])
        mem.matches.merge([match("shared", 900, "m")])
        await disk.games.put(game(1000, "n1"))
        await disk.matches.put(match("shared", 100, "n1"))

        async def ask_memory(_peer: str, request: object) -> object:
            return answer(request, mem.by_name())

        plan = full_plan("mem", mem)
        outcome = await drive_async(pull_session(plan), disk.by_name(), ask_memory)
        assert outcome.ok and outcome.rows_pulled == 151

        # The memory side pulls from disk, each request answered by answer_async.
        steps = pull_session(PullPlan("disk", ("games", "matches"), ("?", "?"), (151, 1)))
        result: object = None
        while True:
            try:
                step = steps.send(result)
            except StopIteration as done:
                back = done.value
                break
            if hasattr(step, "request"):
                result = await answer_async(step.request, disk.by_name())
            else:
                result = step.call(mem.by_name())
        assert back.ok
        for name in ("games", "matches"):
            assert await disk.by_name()[name].summary() == mem.by_name()[name].summary()
    finally:
        await disk.close()


# --- model blobs ---------------------------------------------------------------------------


async def _two_nodes(tmp_path: Path):
    clock = HybridClock(lambda: 1_700_000_000_000, 60_000)
    return (await open_stores(tmp_path / "a", clock, "na"),
            await open_stores(tmp_path / "b", clock, "nb"))


def _serve(peer, puller):
    """`ask` and `fetch` functions that reach `peer`'s stores from `puller`."""
    async def ask(_peer: str, request: object) -> object:
        return await answer_async(request, peer.by_name())

    async def fetch(_peer: str, sha: str) -> bool:
        # What the transport's fetch_blob does, minus HTTP: copy, verifying the hash.
        await puller.models.put_blob(await peer.models.get_blob(sha), sha)
        return True

    return ask, fetch


async def test_model_rows_bring_their_blobs_from_the_peer_that_holds_them(tmp_path: Path) -> None:
    a, b = await _two_nodes(tmp_path)
    try:
        blob = b"weights" * 1000
        sha = await b.models.put_blob(blob)
        await b.models.register_model(sha, "square8", 2)
        ask, fetch = _serve(b, a)
        roots = {n: StoreSummary(*(await s.summary())) for n, s in b.by_name().items()}
        local = {n: StoreSummary(*(await s.summary())) for n, s in a.by_name().items()}
        plan = SyncScheduler(random.Random(1)).plan(0.0, local, {"b": roots}, blobs_missing=False)
        assert plan is not None and plan.stores == ("models",) and not plan.blobs
        # Rows first: then the node knows of a model whose blob it lacks.
        await drive_async(pull_session(plan), a.by_name(), ask, fetch)
        assert await a.models.missing_blobs() == [sha]
        local = {n: StoreSummary(*(await s.summary())) for n, s in a.by_name().items()}
        blob_plan = SyncScheduler(random.Random(1)).plan(1.0, local, {"b": roots},
                                                         blobs_missing=True)
        assert blob_plan is not None and blob_plan.stores == () and blob_plan.blobs
        outcome = await drive_async(pull_session(blob_plan), a.by_name(), ask, fetch)
        assert outcome.ok and outcome.blobs_fetched == 1 and outcome.blobs_lacking == 0
        assert await a.models.get_blob(sha) == blob
        assert await a.models.missing_blobs() == []
    finally:
        await a.close()
        await b.close()


async def test_a_peer_without_the_blob_is_not_asked_again_for_a_while(tmp_path: Path) -> None:
    a, b = await _two_nodes(tmp_path)
    try:
        sha = await b.models.put_blob(b"model bytes")
        await b.models.register_model(sha, "hex8", 3)
        ask, fetch = _serve(b, a)
        rows_only = PullPlan("b", ("models",), ("?",), (1,))
        await drive_async(pull_session(rows_only), a.by_name(), ask, fetch)
        # Peer c is played by a's own registry: it has the model row but not the blob yet.
        ask_c, _ = _serve(a, a)

        config = SyncConfig(blob_retry_s=30.0)
        scheduler = SyncScheduler(random.Random(2), config)
        same = {"models": StoreSummary(1, "r")}
        plan = scheduler.plan(0.0, same, {"c": same}, blobs_missing=True)
        assert plan is not None and plan.peer == "c" and plan.blobs
        outcome = await drive_async(pull_session(plan), a.by_name(), ask_c, fetch)
        assert outcome.ok and outcome.blobs_fetched == 0 and outcome.blobs_lacking == 1
        scheduler.finished(plan, outcome, 0.0)
        assert scheduler.plan(10.0, same, {"c": same}, blobs_missing=True) is None
        assert scheduler.plan(31.0, same, {"c": same}, blobs_missing=True) is not None
    finally:
        await a.close()
        await b.close()


def test_a_failed_blob_download_ends_the_pull_as_a_failure() -> None:
    sha = "ab" * 32

    class Registry:
        def missing_blobs(self) -> list[str]:
            return [sha]

        def has_blob(self, wanted: str) -> bool:
            return wanted == sha

    stores = {"models": Registry()}
    plan = PullPlan("p", (), (), (), blobs=True)
    outcome = drive(pull_session(plan), stores, lambda _p, r: answer(r, stores),
                    lambda _p, _sha: False)
    assert not outcome.ok and outcome.failed == "models" and sha in outcome.error


def test_blob_questions_go_to_the_model_store_only() -> None:
    refused = answer(BlobsRequest("games", ["ab" * 32]), MemoryStores().by_name())
    assert isinstance(refused, SyncRefused) and "'models'" in refused.detail


@pytest.mark.parametrize("body, named", [
    ({"store": "models", "shas": ["AB" * 32]}, "lowercase hex"),
    ({"store": "models", "shas": ["ab" * 33]}, "shas[0]"),
    ({"store": "models", "shas": []}, "1..64 blobs"),
    ({"store": "models", "shas": ["ab" * 32] * 65}, "shas"),
])
def test_bad_blob_questions_are_refused_naming_the_field(body: dict, named: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.from_body("sync.blobs", body)
    assert named in str(err.value)


# --- sub-bucket digests (large stores) -----------------------------------------------------


def test_sub_digests_of_a_bucket_fold_to_its_bucket_digest() -> None:
    store = MemoryStores().games
    store.merge([game(i) for i in range(600)])
    buckets = [0, 17, 255]
    subs = sub_digests(store.bucket_entries(buckets), buckets)
    digests = store.bucket_digests()
    for i, bucket in enumerate(buckets):
        folded = 0
        for value in subs[i * 256:(i + 1) * 256]:
            folded ^= value
        assert folded == digests[bucket]


def test_large_stores_list_only_the_sub_buckets_that_differ() -> None:
    a, b = MemoryStores(), MemoryStores()
    shared = [game(i) for i in range(3000)]
    a.games.merge(shared)
    b.games.merge(shared)
    new = [game(10_000 + i, origin="b") for i in range(5)]
    b.games.merge(new)
    log: Asked = []
    config = SyncConfig(subdivide_above=8)  # 3000 rows: ~12 a bucket, so this store is large
    outcome = drive(pull_session(full_plan("peer", b), config), a.by_name(), asker(b, log))
    assert outcome.ok and outcome.rows_pulled == 5
    asked_subs = [r for r in log if isinstance(r, SubDigestsRequest)]
    listings = [r for r in log if isinstance(r, EntriesRequest)]
    assert asked_subs and all(r.subs for r in listings)
    assert sum(len(r.subs) for r in listings) == 5  # one sub-bucket per new row
    assert a.games.summary() == b.games.summary()
    # Sub-buckets we hold nothing in, taken by range when worth it: no listing at all.
    d = MemoryStores()
    d.games.merge(shared)
    log.clear()
    ranged = SyncConfig(subdivide_above=8, range_min_rows=1)
    assert drive(pull_session(full_plan("peer", b), ranged), d.by_name(), asker(b, log)).ok
    assert not any(isinstance(r, EntriesRequest) for r in log)
    assert sum(r.last - r.first + 1 for r in log if isinstance(r, RangeRowsRequest)) == 5
    assert d.games.summary() == b.games.summary()
    # The same pull with one-step listings moves every entry of the 5 buckets.
    c = MemoryStores()
    c.games.merge(shared)
    log_plain: Asked = []
    drive(pull_session(full_plan("peer", b)), c.by_name(), asker(b, log_plain))
    assert not any(isinstance(r, SubDigestsRequest) for r in log_plain)


def test_a_listing_restricted_to_sub_buckets_holds_only_their_entries() -> None:
    b = MemoryStores()
    b.games.merge([game(i) for i in range(3000)])  # ~12 entries a bucket
    bucket = max(range(NUM_BUCKETS), key=lambda n: len(b.games.bucket_entries([n])))
    entries = b.games.bucket_entries([bucket])
    wanted = int(sub_bucket_ids([entries[0][0]])[0])
    reply = answer(EntriesRequest("games", [bucket], subs=[wanted]), b.by_name())
    assert isinstance(reply, EntriesReply)
    assert reply.entries and all(int(sub_bucket_ids([k])[0]) == wanted for k, _ in reply.entries)
    assert len(reply.entries) < len(entries)


@pytest.mark.parametrize("kind, body, named", [
    ("sync.subdigests", {"store": "games", "buckets": list(range(17))}, "buckets"),
    ("sync.subdigests", {"store": "games", "buckets": [256]}, "buckets[0]"),
    ("sync.subdigests_reply", {"store": "games", "digests": [0] * 255}, "256 values per bucket"),
    ("sync.entries", {"store": "games", "buckets": [1], "subs": [3 * 256]},
     "not in one of the buckets"),
    ("sync.entries", {"store": "games", "buckets": [1], "subs": []}, "at least one sub-bucket"),
    ("sync.entries", {"store": "games", "buckets": [1], "subs": [65536]}, "subs[0]"),
])
def test_bad_sub_bucket_bodies_are_refused_naming_the_field(kind: str, body: dict,
                                                            named: str) -> None:
    with pytest.raises(codec.DecodeError) as err:
        codec.from_body(kind, body)
    assert named in str(err.value)


def test_a_rows_reply_that_does_not_decode_costs_that_pull_and_stores_nothing_of_it() -> None:
    b = MemoryStores()
    b.games.merge([game(i) for i in range(3)])
    honest = answer(RangeRowsRequest("games", 0, NUM_BUCKETS * 256 - 1), b.by_name())
    assert isinstance(honest, RangeRowsReply) and honest.count == 3
    tampered = RangeRowsReply("games", b"\xc1" + honest.rows[1:], 3)
    a = MemoryStores()
    plan = PullPlan("peer", ("games",), (summaries(b)["games"].root,), (3,))

    def ask(_peer: str, request: object) -> object:
        return tampered if isinstance(request, RangeRowsRequest) else answer(request, b.by_name())

    outcome = drive(pull_session(plan, RANGES), a.by_name(), ask)
    assert not outcome.ok and outcome.reason == "malformed"
    assert len(a.games) == 0


def test_a_peer_behind_us_is_pulled_from_only_once_it_caught_up_or_the_wait_is_over() -> None:
    config = SyncConfig(behind_defer_s=10.0)
    scheduler = SyncScheduler(random.Random(1), config)
    local = _summary("aa", count=1000)
    catching_up = {"x": _summary("b1", count=400)}
    assert scheduler.plan(0.0, local, catching_up) is None
    assert scheduler.plan(9.0, local, {"x": _summary("b2", count=900)}) is None  # still behind
    plan = scheduler.plan(10.0, local, {"x": _summary("b3", count=950)})
    assert plan is not None and plan.stores == ("games",)  # its own rows arrive, if later
    assert scheduler.plan(11.0, local, {"x": _summary("b4", count=960)}) is None  # waits again
    caught_up = {"x": _summary("b5", count=1001)}
    assert scheduler.plan(12.0, local, caught_up) is not None  # as many rows as ours: at once
