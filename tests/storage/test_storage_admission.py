"""Rows that mean what they say: what a node refuses among well-formed rows, how it counts and
remembers each refusal, and how it survives unreadable rows, a full disk and a broken file."""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest

from engine.records import rankings, sorted_legal, start_state
from engine.rules import apply_move_in_place
from engine.state import ACTIVE
from mesh.manifest import StoreSummary
from mesh.sync import (
    PullOutcome,
    PullPlan,
    SyncScheduler,
    answer_async,
    drive_async,
    pull_session,
)
from storage.admission import Admission, RowPolicy, Verdict
from storage.database import Database, DatabaseCorruptError, DiskFullError
from storage.game_checks import GameChecks
from storage.hlc import COUNTER_BITS, MAX_HLC, HybridClock
from storage.refusals import RefusalLedger
from storage.rows import new_alias, new_game, new_match, new_model, validate_registry
from storage.stores import Stores, open_stores

NOW_MS = 1_700_000_000_000
SHA = "b" * 64
POLICY = RowPolicy(clock_window_ms=60_000, max_model_bytes=1 << 30, retry_s=30.0)


def clock() -> HybridClock:
    return HybridClock(lambda: NOW_MS, 60_000)


def stamp(ms: int) -> int:
    return ms << COUNTER_BITS


async def open_node(path: Path, policy: RowPolicy | None = POLICY, **kw: int) -> Stores:
    return await open_stores(path, clock(), "n-" + path.name, policy, **kw)


def random_game(seed: int) -> tuple[list[bytes], list[int]]:
    rng = random.Random(seed)
    state = start_state("square8", 2, True)
    moves = []
    while state.status == ACTIVE:
        legal, encoded = sorted_legal(state)
        i = rng.randrange(len(legal))
        moves.append(encoded[i])
        apply_move_in_place(state, legal[i])
    return moves, rankings(state)


# --- rows refused at merge ------------------------------------------------------------------


@pytest.mark.parametrize("participants, num_players, result", [
    (["evil", "evil"], 2, [1.0, 0.0]),  # one player in two seats
    (["a", "b", "c", "d"], 2, [0.5, 0.5, 0.5, 0.5]),  # four seats in a 2-player game
    (["a", "b"], 2, [1.0, 1.0]),  # every seat won
    (["a", "b", "c"], 3, [1.0, 0.0, 0.0]),  # 1 point where 3 players share 1.5
])
async def test_a_match_whose_players_and_scores_disagree_is_refused_counted_and_remembered(
        tmp_path: Path, participants: list[str], num_players: int, result: list[float]) -> None:
    stores = await open_node(tmp_path)
    row = new_match("m1", participants, "square8", num_players, result, stamp(NOW_MS), "evil")
    stats = await stores.matches.merge([row])
    assert stats.invalid == 1 and await stores.matches.get("m1") is None
    assert stores.refusals.counts[("matches", "inconsistent")] == 1
    version = stamp(NOW_MS).to_bytes(8, "big") + b"evil"
    assert stores.matches.wanted([("m1", version)]) == []
    assert stores.matches.wanted([("m1", version + b"x")]) == ["m1"]  # another version
    await stores.close()


async def test_rows_stamped_past_the_clock_window_are_refused_until_the_clock_catches_up(
        tmp_path: Path) -> None:
    wall = [NOW_MS]
    stores = await open_stores(tmp_path, HybridClock(lambda: wall[0], 60_000), "n", POLICY)
    poisoned = new_match("m1", ["a", "b"], "square8", 2, [1.0, 0.0], MAX_HLC, "evil")
    ahead = new_match("m2", ["a", "b"], "square8", 2, [0.0, 1.0], stamp(NOW_MS + 120_000), "x")
    fine = new_match("m3", ["a", "b"], "square8", 2, [0.5, 0.5], stamp(NOW_MS + 59_000), "x")
    stats = await stores.matches.merge([poisoned, ahead, fine])
    assert (stats.added, stats.refused) == (1, 2)
    assert stores.refusals.counts[("matches", "clock_ahead")] == 2
    entries = [("m1", MAX_HLC.to_bytes(8, "big") + b"evil"),
               ("m2", stamp(NOW_MS + 120_000).to_bytes(8, "big") + b"x")]
    assert stores.matches.wanted(entries) == []
    # The clock is what made m2 early, not m2 itself: it is wanted again once it has caught up.
    assert stores.matches.admission is not None
    stores.matches.admission.memory.remember("m2", entries[1][1], retry_at=0.0)
    wall[0] = NOW_MS + 70_000
    assert stores.matches.wanted(entries) == ["m2"]
    assert (await stores.matches.merge([ahead])).added == 1
    assert await stores.matches.get("m1") is None  # MAX never is
    await stores.close()


async def test_a_model_claiming_an_implausible_size_is_refused(tmp_path: Path) -> None:
    stores = await open_node(tmp_path)
    huge = new_model(SHA, "square8", 2, stamp(NOW_MS), "evil", 1 << 40)
    big = new_model("c" * 64, "square8", 2, stamp(NOW_MS), "evil", (1 << 30) + 1)
    fine = new_model("d" * 64, "square8", 2, stamp(NOW_MS), "n", 40 << 20)
    stats = await stores.models.merge([huge, big, fine])
    assert (stats.added, stats.invalid, stats.refused) == (1, 1, 1)  # past a blob, past the cap
    assert stores.refusals.counts[("models", "too_large")] == 2
    await stores.close()


async def test_an_alias_past_the_newest_leader_term_is_refused_and_cannot_pin_the_fence(
        tmp_path: Path) -> None:
    stores = await open_node(tmp_path)
    term = [3]
    stores.models.leader_term_seen = lambda: term[0]
    evil = new_alias("production", "square8", 2, SHA, (1 << 63) - 1, stamp(NOW_MS), "evil")
    early = new_alias("candidate", "square8", 2, SHA, 4, stamp(NOW_MS), "leader")
    honest = new_alias("staging", "square8", 2, SHA, 3, stamp(NOW_MS), "leader")
    stats = await stores.models.merge([evil, early, honest])
    assert (stats.added, stats.refused) == (1, 2)
    assert stores.refusals.counts[("models", "term_ahead")] == 2
    assert stores.models.newest_term == 3  # the fence was not moved by the refused rows
    term[0] = 4  # this node hears of term 4: the early alias is taken when offered again
    assert (await stores.models.merge([early])).added == 1
    await stores.close()


async def test_an_alias_takes_effect_only_once_its_blob_is_held(tmp_path: Path) -> None:
    stores = await open_node(tmp_path)
    blob = b"weights" * 100
    sha = await stores.models.put_blob(blob)
    other = "e" * 64
    await stores.models.merge([new_alias("production", "square8", 2, other, 0, 5, "l"),
                               new_alias("staging", "square8", 2, sha, 0, 5, "l")])
    assert await stores.models.resolve_alias("production", "square8", 2) is None
    assert await stores.models.resolve_alias("staging", "square8", 2) == sha
    await stores.close()


async def test_refusals_are_logged_once_per_interval_not_per_row(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    stores = await open_node(tmp_path)
    rows = [new_match(f"m{i}", ["a", "a"], "square8", 2, [1.0, 0.0], 5, "evil")
            for i in range(500)]
    with caplog.at_level("WARNING", logger="ringrift.storage"):
        stats = await stores.matches.merge(rows)
    assert stats.invalid == 500 and stores.refusals.counts[("matches", "inconsistent")] == 500
    assert len([r for r in caplog.records if "inconsistent" in r.getMessage()]) == 1
    await stores.close()


async def test_refused_rows_are_not_pulled_again_and_honest_ones_still_arrive(
        tmp_path: Path) -> None:
    evil = await open_node(tmp_path / "evil", policy=None)  # the attacker keeps whatever it has
    honest = await open_node(tmp_path / "honest")
    assert evil.matches.admission is not None
    # Stored raw, as a modified node would: bypass its own checks.
    bad = [new_match(f"bad{i}", ["x", "y"], "square8", 2, [1.0, 0.0], MAX_HLC, "evil")
           for i in range(20)]
    good = [new_match(f"ok{i}", ["x", "y"], "square8", 2, [1.0, 0.0], stamp(NOW_MS), "evil")
            for i in range(20)]
    await evil.matches.merge(bad + good)

    async def ask(_peer: str, request: object) -> object:
        return await answer_async(request, evil.by_name())

    async def pull() -> int:
        count, root = await evil.matches.summary()
        outcome = await drive_async(pull_session(PullPlan("evil", ("matches",), (root,),
                                                          (count,))),
                                    honest.by_name(), ask)
        assert outcome.ok, outcome.error
        return outcome.rows_pulled

    assert await pull() == 40
    assert honest.refusals.counts[("matches", "clock_ahead")] == 20
    assert await pull() == 0  # the refused rows are remembered: nothing pulled, nothing counted
    assert honest.refusals.counts[("matches", "clock_ahead")] == 20
    assert (await honest.matches.summary())[0] == 20
    await evil.close()
    await honest.close()


# --- faults ---------------------------------------------------------------------------------


async def test_an_unreadable_stored_row_is_quarantined_never_served_and_sync_goes_on(
        tmp_path: Path) -> None:
    stores = await open_node(tmp_path / "a")
    rows = [new_match(f"m{i}", ["x", "y"], "square8", 2, [1.0, 0.0], 5, "n") for i in range(5)]
    await stores.matches.merge(rows)
    async with stores.db.transaction() as conn:
        await conn.execute("UPDATE matches SET body = x'c1c1c1' WHERE key = 'm2'")
    served = await stores.matches.rows([f"m{i}" for i in range(5)])
    assert sorted(r["match_id"] for r in served) == ["m0", "m1", "m3", "m4"]
    assert stores.matches.quarantined == 1
    assert (await stores.matches.summary())[0] == 4
    assert len(list((tmp_path / "a" / "quarantine").iterdir())) == 1  # kept for the operator
    # A peer that held m2 intact gives it back; the digests agree again.
    peer = await open_node(tmp_path / "b")
    await peer.matches.merge(rows)
    await stores.matches.merge(rows)
    assert await stores.matches.summary() == await peer.matches.summary()
    await stores.close()
    await peer.close()


async def test_a_full_database_pauses_writes_keeps_reads_and_resumes_when_space_returns(
        tmp_path: Path) -> None:
    stores = await open_node(tmp_path, max_db_bytes=512 * 1024)
    moves, ranks = random_game(1)
    written = 0
    with pytest.raises(DiskFullError):
        for i in range(2000):
            batch = [new_game("square8", 2, moves + [bytes([j % 256, i % 256])], ranks,
                              stamp(NOW_MS), "n") for j in range(20)]
            await stores.games.merge(batch)
            written += len(batch)
    assert stores.db.full and not await stores.db.has_space()
    count, root = await stores.games.summary()
    assert count == written  # everything acknowledged before is still there
    assert len(await stores.games.rows([r["game_id"] for r in batch][:1])) == 0  # not written
    await stores.db.conn.execute("PRAGMA max_page_count = 100000")  # space comes back
    assert await stores.db.has_space() and not stores.db.full
    assert (await stores.games.merge(batch)).added == 20
    await stores.close()


async def test_a_corrupt_database_file_is_named_not_a_traceback(tmp_path: Path) -> None:
    (tmp_path / "node.db").write_bytes(b"this is not sqlite" * 512)
    with pytest.raises(DatabaseCorruptError, match="node.db"):
        await Database.open(tmp_path / "node.db")


# --- replay checks --------------------------------------------------------------------------


async def test_games_that_do_not_replay_are_quarantined_and_only_legal_ones_are_trainable(
        tmp_path: Path) -> None:
    from node.replay_check import judge

    stores = await open_node(tmp_path)
    moves, ranks = random_game(7)
    legal = new_game("square8", 2, moves, ranks, stamp(NOW_MS), "good")
    other, other_ranks = random_game(8)
    liar = new_game("square8", 2, other, other_ranks[::-1], stamp(NOW_MS), "liar")
    garbage = new_game("square8", 2, [b"\x00\x01\x02" * 300], [1, 2], stamp(NOW_MS), "evil")
    await stores.games.merge([legal, liar, garbage])
    checks = GameChecks(stores.db)
    pending = await checks.unchecked(0, 10)
    assert len(pending) == 3
    await checks.record([judge(record[0], version, record) for _, version, record in pending])
    assert await checks.unchecked(0, 10) == []
    assert await checks.quarantined() == (2, {"evil": 1, "liar": 1})
    assert [g["game_id"] for g in await checks.trainable("square8", 2)] == [legal["game_id"]]
    assert (await stores.games.summary())[0] == 3  # quarantined games stay replicated
    await stores.close()


def test_a_refusal_for_the_receivers_term_is_due_again_after_retry_s() -> None:
    now = [0.0]
    admission = Admission("models", RefusalLedger(logging.getLogger("test")),
                          RowPolicy(retry_s=30.0), clock(), None, monotonic=lambda: now[0])
    row = validate_registry(new_alias("production", "square8", 2, SHA, 9, 5, "leader"))
    assert admission.admit([row], lambda r: Verdict("term_ahead", "not yet", 30.0)) == []
    assert not admission.retry_due()
    assert admission.wanted([(row.key, row.version)]) == []
    now[0] = 31.0
    assert admission.retry_due() and not admission.retry_due()  # once
    assert admission.wanted([(row.key, row.version)]) == [row.key]


def test_a_scheduler_pulls_an_uncovered_store_again_from_a_peer_it_pulled_in_full() -> None:
    scheduler = SyncScheduler(random.Random(1))
    local = {"models": StoreSummary(1, "a" * 32)}
    peers = {"p": {"models": StoreSummary(2, "b" * 32)}}
    plan = scheduler.plan(0.0, local, peers)
    assert plan is not None
    scheduler.finished(plan, PullOutcome("p", ("models",)), 0.0)
    assert scheduler.plan(1.0, local, peers) is None  # covered: nothing new at that root
    scheduler.uncover("models")
    assert scheduler.plan(2.0, local, peers) is not None
