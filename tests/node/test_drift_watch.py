"""DriftWatch against a peer's real store, in one process: the peer's rows come through the
mesh's own sync answers, so every request and reply is the one a real peer would send."""

from __future__ import annotations

import asyncio
import random
import time

import pytest
from prometheus_client import CollectorRegistry

from mesh.sync import answer_async
from mesh.sync_messages import RowsReply, RowsRequest
from mesh.transport import PeerError
from node import drift
from node.drift_watch import DriftWatch
from node.leaderboard import rating_map
from node.metrics_reference import ReferenceMetrics
from storage.hlc import HybridClock
from storage.merge import Strategy
from storage.packed import pack_rows, unpack_stream
from storage.stores import open_stores

WIN, LOSS = [1.0, 0.0], [0.0, 1.0]


class PeerTransport:
    """Answers requests from another node's stores; `tamper` may rewrite a reply."""

    def __init__(self, stores, tamper=None) -> None:
        self._stores = stores
        self._tamper = tamper
        self.down = False
        self.failed = 0

    async def request(self, address, msg, to=None, timeout_s=None):
        if self.down:
            self.failed += 1
            raise PeerError(f"{address} unreachable")
        reply = await answer_async(msg, self._stores.by_name())
        return self._tamper(msg, reply) if self._tamper else reply


async def stores_at(path, node_id):
    return await open_stores(path, HybridClock(lambda: time.time_ns() // 1_000_000, 60_000),
                             node_id)


def watch_for(mine, transport, registry=None, peers=()):
    metrics = ReferenceMetrics(registry or CollectorRegistry(), version="t",
                               max_remote_hosts=4, model_history=2, node_state=lambda: "idle")
    metrics.set_members(["peer:1"])
    return DriftWatch(stores=mine, transport=transport, node_id="me", metrics=metrics,
                      thresholds=drift.Thresholds(50.0, 25.0), keep=10, ratings=rating_map,
                      peers=lambda: list(peers), rng=random.Random(1))


@pytest.fixture
def two_stores(tmp_path):
    async def make():
        mine = await stores_at(tmp_path / "me", "me")
        theirs = await stores_at(tmp_path / "peer", "peer")
        shared = await mine.matches.record_match("m1", ["p", "q"], "square8", 2, WIN)
        await theirs.matches.merge([shared])
        await mine.matches.record_match("m2", ["p", "q"], "square8", 2, WIN)
        await theirs.matches.record_match("m2", ["p", "q"], "square8", 2, LOSS)
        await mine.matches.record_match("mine", ["p", "r"], "square8", 2, WIN)
        await theirs.matches.record_match("theirs", ["q", "r"], "square8", 2, WIN)
        await theirs.matches.record_match("hex", ["x", "y"], "hex8", 2, WIN)
        return mine, theirs
    loop = asyncio.new_event_loop()
    mine, theirs = loop.run_until_complete(make())
    yield loop, mine, theirs
    loop.run_until_complete(mine.close())
    loop.run_until_complete(theirs.close())
    loop.close()


def test_check_names_each_difference_per_config_and_records_it(two_stores):
    loop, mine, theirs = two_stores
    registry = CollectorRegistry()
    watch = watch_for(mine, PeerTransport(theirs), registry)
    reports = loop.run_until_complete(watch.check("peer:1", "peer"))
    by_config = {(r.board_type, r.num_players): r for r in reports}
    assert set(by_config) == {("square8", 2), ("hex8", 2)}
    square = by_config["square8", 2]
    assert square.matches == drift.MatchDiff(("mine",), ("theirs",), ("m2",))
    expected = rating_map([r for r in loop.run_until_complete(mine.matches.all_matches())])
    assert square.participants_in_source == len(expected) == 3
    hexes = by_config["hex8", 2]
    assert hexes.matches.only_target == ("hex",) and hexes.participants_in_both == 0
    assert registry.get_sample_value("ringrift_elo_drift_max", {
        "board_type": "square8", "num_players": "2"}) == square.max_rating_diff
    assert set(watch.history()) == {"square8_2", "hex8_2"}
    reloaded = watch_for(mine, PeerTransport(theirs))
    loop.run_until_complete(reloaded.load())
    assert reloaded.history().keys() == watch.history().keys()


@pytest.mark.parametrize("strategy, taken, replaced", [
    (Strategy.SKIP, {"theirs", "hex"}, 0),
    (Strategy.FIRST_WRITE_WINS, {"theirs", "hex"}, 0),
    (Strategy.LAST_WRITE_WINS, {"theirs", "hex", "m2"}, 1),
])
def test_sync_takes_in_by_strategy(two_stores, strategy, taken, replaced):
    loop, mine, theirs = two_stores
    watch = watch_for(mine, PeerTransport(theirs))
    before = {r["match_id"]: r for r in loop.run_until_complete(mine.matches.all_matches())}
    result = loop.run_until_complete(watch.sync("peer:1", strategy, "peer"))
    assert result.error is None
    assert (result.matches_added, result.matches_conflict, result.matches_replaced) == (
        2, 1, replaced)
    assert result.matches_resolved == (0 if strategy is Strategy.SKIP else 1)
    assert result.participants_added == 2  # x and y, new with the hex8 match
    after = {r["match_id"]: r for r in loop.run_until_complete(mine.matches.all_matches())}
    changed = {k for k in after if before.get(k) != after[k]}
    assert changed == taken


def test_raise_stops_at_the_conflict_and_takes_nothing(two_stores):
    loop, mine, theirs = two_stores
    registry = CollectorRegistry()
    watch = watch_for(mine, PeerTransport(theirs), registry)
    count = loop.run_until_complete(mine.matches.summary())[0]
    result = loop.run_until_complete(watch.sync("peer:1", Strategy.RAISE, "peer"))
    assert result.error is not None and "m2" in result.error
    assert loop.run_until_complete(mine.matches.summary())[0] == count
    assert registry.get_sample_value("ringrift_elo_sync_operations_total",
                                     {"remote_host": "peer:1", "result": "failure"}) == 1


def test_a_peer_sending_invalid_rows_has_them_left_out_and_counted(two_stores):
    loop, mine, theirs = two_stores

    def tamper(msg, reply):
        if isinstance(msg, RowsRequest):
            bad = {"match_id": "theirs", "participants": "not a list"}
            rows = [bad if r["match_id"] == "theirs" else r
                    for r in unpack_stream(reply.rows, reply.count)]
            return RowsReply(reply.store, pack_rows(rows), reply.count, reply.served)
        return reply

    watch = watch_for(mine, PeerTransport(theirs, tamper))
    reports = loop.run_until_complete(watch.check("peer:1", "peer", ("square8", 2)))
    assert watch.invalid_rows == 1
    assert reports[0].matches.only_target == ()  # the one it sent was broken: left out


def test_the_periodic_check_picks_an_alive_peer_and_survives_an_unreachable_one(two_stores):
    loop, mine, theirs = two_stores
    transport = PeerTransport(theirs)
    watch = watch_for(mine, transport, peers=[("peer", "peer:1")])

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.01)

    async def run_checks() -> None:
        transport.down = True
        task = asyncio.get_running_loop().create_task(watch.run(0.01))
        await until(lambda: transport.failed >= 3, "three failed rounds")
        assert not task.done() and not watch.last
        transport.down = False
        await until(lambda: watch.last, "a successful periodic check")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    loop.run_until_complete(run_checks())
    assert watch.last["square8_2"]["target"] == "peer:1"
