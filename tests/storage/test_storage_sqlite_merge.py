"""SQLite stores: same merge results and digests as the in-memory stores, laws, reopen."""

from __future__ import annotations

import asyncio
import random
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.digests import Digests, hash_rows
from storage.hlc import HybridClock
from storage.memory import MemoryStores
from storage.merge import MergeConflictError, Strategy
from storage.rows import new_match
from storage.stores import open_stores
from tests.storage.storage_strategies import ROWS_BY_STORE

NAMES = ["games", "matches", "models"]


def make_clock() -> HybridClock:
    return HybridClock(lambda: 1_000, max_offset_ms=60_000)


async def sqlite_state(store) -> tuple:
    entries = await store.bucket_entries(list(range(256)))
    keys = sorted(k for k, _ in entries)
    rows = sorted(await store.rows(keys), key=lambda r: repr(sorted(r.items())))
    return await store.summary(), rows


def memory_state(store) -> tuple:
    rows = sorted(store.rows(sorted(store.keys())), key=lambda r: repr(sorted(r.items())))
    return store.summary(), rows


@pytest.mark.parametrize("name", NAMES)
def test_sqlite_store_agrees_with_memory_store_in_any_order_and_after_reopen(name: str) -> None:
    @settings(deadline=None, max_examples=25)
    @given(st.lists(st.lists(ROWS_BY_STORE[name], max_size=8), min_size=1, max_size=3),
           st.integers(0, 2**32))
    def check(batches: list[list[dict]], seed: int) -> None:
        memory = MemoryStores().by_name()[name]
        expected_stats = [memory.merge(b) for b in batches]
        rows = [r for b in batches for r in b]
        rnd = random.Random(seed)
        shuffled = rows + rnd.sample(rows, k=len(rows) // 2)
        rnd.shuffle(shuffled)

        async def run() -> None:
            with tempfile.TemporaryDirectory() as tmp:
                a = await open_stores(Path(tmp) / "a", make_clock(), "node-a")
                b = await open_stores(Path(tmp) / "b", make_clock(), "node-b")
                try:
                    stats = [await a.by_name()[name].merge(batch) for batch in batches]
                    assert stats == expected_stats
                    await b.by_name()[name].merge(shuffled)
                    want = memory_state(memory)
                    assert await sqlite_state(a.by_name()[name]) == want
                    assert await sqlite_state(b.by_name()[name]) == want
                    again = await a.by_name()[name].merge(rows)
                    assert again.added == again.resolved == 0
                finally:
                    await a.close()
                    await b.close()
                reopened = await open_stores(Path(tmp) / "a", make_clock(), "node-a")
                try:
                    store = reopened.by_name()[name]
                    assert await sqlite_state(store) == want
                    entries = await store.bucket_entries(list(range(256)))
                    scratch = Digests.from_hashes(
                        *hash_rows([k for k, _ in entries], [v for _, v in entries])
                    )
                    assert await store.bucket_digests() == scratch.as_list()
                finally:
                    await reopened.close()

        asyncio.run(run())

    check()


@pytest.fixture
async def stores(tmp_path: Path):
    opened = await open_stores(tmp_path, make_clock(), "node-a")
    yield opened
    await opened.close()


async def test_raise_strategy_rolls_back_the_whole_batch(stores) -> None:
    first = new_match("m1", ["a", "b"], "square8", 2, [1, 0], 5, "n1")
    other = new_match("m1", ["a", "b"], "square8", 2, [0, 1], 6, "n1")
    fresh = new_match("m2", ["a", "b"], "square8", 2, [0, 1], 6, "n1")
    await stores.matches.merge([first])
    before = await stores.matches.summary()
    with pytest.raises(MergeConflictError):
        await stores.matches.merge([fresh, other], Strategy.RAISE)
    assert await stores.matches.summary() == before
    assert await stores.matches.rows(["m2"]) == []


async def test_merging_remote_rows_advances_the_local_clock(stores, tmp_path: Path) -> None:
    clock = HybridClock(lambda: 1_000, max_offset_ms=60_000)
    other = await open_stores(tmp_path / "other", clock, "node-b")
    try:
        remote_hlc = (1_500 << 16) | 7
        await other.matches.merge([new_match("m", ["a", "b"], "square8", 2, [1, 0], remote_hlc, "x")])
        row = await other.matches.record_match("m", ["a", "b"], "square8", 2, [0, 1])
        assert row["hlc"] > remote_hlc  # our rewrite wins LWW although our wall clock is behind
        assert (await other.matches.get("m"))["result"] == [0.0, 1.0]
    finally:
        await other.close()


async def test_local_writes_round_trip_through_the_wire_form(stores) -> None:
    moves = [bytes((3, 1, i)) for i in range(60)]
    [gid] = await stores.games.add_games([{
        "board_type": "hex8", "num_players": 3, "moves": moves, "rankings": [2, 1, 3],
        "policy": [bytes((0, 0, i)) for i in range(60)], "values": bytes(range(60)),
        "model_sha": "c" * 64, "search": {"algorithm": "gumbel", "simulations": 8},
    }])
    [game] = await stores.games.rows([gid])
    assert game["moves"] == moves and game["policy"][59] == b"\x00\x00\x3b"
    assert (game["winner"], game["swap_rule"], game["source"]) == (2, False, "selfplay")
    assert (await stores.games.merge([game])).skipped == 1
    assert await stores.games.count_games("hex8", 3) == 1
    assert await stores.games.count_games("square8", 2) == 0
    assert [g["game_id"] for g in await stores.games.games_for("hex8", 3)] == [gid]
    ids = await stores.games.add_games(
        [{"board_type": "square8", "num_players": 2, "rankings": [2, 1],
          "moves": [bytes((0, 1, i))]} for i in range(3)]
    )
    assert len(set(ids)) == 3
    # The same game again, stamped anew: one game, one row.
    again = await stores.games.add_games([{
        "board_type": "square8", "num_players": 2, "rankings": [2, 1], "moves": [b"\x00\x01\x00"],
    }])
    assert again == ids[:1]
    assert (await stores.games.summary())[0] == 4
    await stores.matches.record_match("x", ["a", "b"], "square8", 2, [1, 0])
    assert [m["match_id"] for m in await stores.matches.all_matches("square8", 2)] == ["x"]


async def test_node_state_is_kept_across_reopen(tmp_path: Path) -> None:
    first = await open_stores(tmp_path, make_clock(), "n")
    await first.state.set_state("current_term", 7)
    await first.state.set_state("voted_for", "node-b")
    await first.state.set_state("peers", ["10.0.0.1:7420"])
    await first.close()
    again = await open_stores(tmp_path, make_clock(), "n")
    try:
        assert await again.state.get_state("current_term") == 7
        assert await again.state.get_state("voted_for") == "node-b"
        assert await again.state.get_state("peers") == ["10.0.0.1:7420"]
        assert await again.state.get_state("missing", "dflt") == "dflt"
        with pytest.raises(ValueError, match="msgpack"):
            await again.state.set_state("bad", object())
    finally:
        await again.close()


async def test_a_row_stamped_far_in_the_future_is_kept_but_the_clock_is_clamped(tmp_path) -> None:
    clock = HybridClock(lambda: 1_000, max_offset_ms=60_000)
    stores = await open_stores(tmp_path / "c", clock, "node-a")
    try:
        future = (10**9) << 16
        stats = await stores.matches.merge(
            [new_match("m", ["a", "b"], "square8", 2, [1, 0], future, "skewed")])
        assert stats.added == 1
        assert clock.clamped_total == 1
        assert clock.last >> 16 <= 1_000 + 60_000 + 1
    finally:
        await stores.close()


async def test_concurrent_merges_into_one_store_equal_sequential_merges(tmp_path) -> None:
    batches = [
        [new_match(f"m{i % 40}", ["a", "b"], "square8", 2, [1, 0], i * 7 + j, f"n{j}")
         for i in range(b * 50, b * 50 + 50) for j in range(2)]
        for b in range(6)
    ]
    together = await open_stores(tmp_path / "t", make_clock(), "node-a")
    memory = MemoryStores().matches
    for batch in batches:
        memory.merge(batch)
    try:
        await asyncio.gather(*(together.matches.merge(b) for b in batches))
        assert await sqlite_state(together.matches) == memory_state(memory)
    finally:
        await together.close()


async def test_merge_refuses_a_batch_that_is_not_a_list(stores) -> None:
    with pytest.raises(TypeError, match="list of rows"):
        await stores.matches.merge({"match_id": "x"})  # type: ignore[arg-type]


async def test_a_merge_cancelled_during_its_commit_still_updates_the_digests(
    stores, monkeypatch
) -> None:
    rows = [new_match(f"c{i}", ["a", "b"], "square8", 2, [1, 0], i, "n1") for i in range(300)]
    real_execute = stores.db.conn.execute
    caller: list[asyncio.Task] = []

    def execute(sql, *args):
        if sql == "COMMIT" and caller:
            caller[0].cancel()  # the caller goes away while the commit is in flight
        return real_execute(sql, *args)

    monkeypatch.setattr(stores.db.conn, "execute", execute)
    caller.append(asyncio.create_task(stores.matches.merge(rows)))
    with pytest.raises(asyncio.CancelledError):
        await caller[0]
    monkeypatch.undo()
    # Queued behind the shielded write on the connection's lock.
    await stores.matches.merge([new_match("last", ["a", "b"], "square8", 2, [1, 0], 1, "n1")])
    entries = await stores.matches.bucket_entries(list(range(256)))
    scratch = Digests.from_hashes(*hash_rows([k for k, _ in entries], [v for _, v in entries]))
    assert len(entries) == 301
    assert await stores.matches.summary() == (301, scratch.root_hex())


async def test_a_failed_commit_leaves_the_connection_usable(stores, monkeypatch) -> None:
    real_execute = stores.db.conn.execute

    def execute(sql, *args):
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error")
        return real_execute(sql, *args)

    monkeypatch.setattr(stores.db.conn, "execute", execute)
    with pytest.raises(sqlite3.OperationalError):
        await stores.matches.record_match("lost", ["a", "b"], "square8", 2, [1, 0])
    monkeypatch.undo()
    assert await stores.matches.summary() == MemoryStores().matches.summary()  # still empty
    await stores.matches.record_match("kept", ["a", "b"], "square8", 2, [1, 0])
    assert [m["match_id"] for m in await stores.matches.all_matches()] == ["kept"]


async def test_keys_sharing_one_key_hash_are_still_told_apart(stores, monkeypatch) -> None:
    import numpy as np

    import storage.synced

    # Every key hashes alike: lookups by hash must still pick the right key's row.
    monkeypatch.setattr(
        storage.synced, "key_hashes", lambda keys: np.full(len(keys), 7 << 56, dtype=np.uint64)
    )
    old = [new_match(f"m{i}", ["a", "b"], "square8", 2, [1, 0], 5, "n1") for i in range(3)]
    newer = new_match("m1", ["a", "b"], "square8", 2, [0, 1], 9, "n1")
    assert (await stores.matches.merge(old)).added == 3
    stats = await stores.matches.merge([*old, newer])
    assert (stats.added, stats.skipped, stats.resolved) == (0, 3, 1)
    held = {r["match_id"]: r for r in await stores.matches.rows(["m0", "m1", "m2", "m3"])}
    assert held == {"m0": old[0], "m1": newer, "m2": old[2]}
    assert await stores.matches.rows(["m1"]) == [newer]
    assert await stores.matches.get("m3") is None
    assert (await stores.matches.summary())[0] == 3
    assert len(await stores.db.fetchall("SELECT key FROM matches")) == 3
