"""Anti-entropy end to end on loopback: SQLite stores, the real wire and aiohttp transport."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh.keyring import Keyring
from mesh.manifest import StoreSummary
from mesh.sync import (
    PullOutcome,
    SyncConfig,
    SyncScheduler,
    answer_async,
    drive_async,
    pull_session,
)
from mesh.sync_messages import RangeRowsReply, RowsReply
from mesh.transport import MeshTransport, PeerError
from mesh.wire import Wire
from storage.hlc import HybridClock
from storage.packed import pack_rows, unpack_stream
from storage.rows import new_game, new_match, validate_game
from storage.stores import Stores, open_stores
from tests.mesh.keys import identity

CLUSTER = "sync-test"
SECRET = b"s" * 32


Serve = Callable[[Stores, object], Awaitable[object]]


@dataclass
class Peer:
    node_id: str
    stores: Stores
    transport: MeshTransport
    address: str


@pytest.fixture
async def start(tmp_path: Path) -> AsyncIterator:
    runners: list[web.AppRunner] = []
    opened: list[Stores] = []

    async def start_node(node_id: str, serve: Serve | None = None) -> Peer:
        """A node on loopback; `serve(stores, request)`, when given, answers its sync requests
        (a misbehaving peer), else the sync core does."""
        clock = HybridClock(lambda: 1_700_000_000_000, 60_000)
        stores = await open_stores(tmp_path / node_id, clock, node_id)
        opened.append(stores)
        app = web.Application()

        async def on_gossip(_sender: str, _msg: object) -> None:
            raise AssertionError("sync uses no gossip")

        async def on_sync(_sender: str, msg: object) -> object:
            if serve is not None:
                return await serve(stores, msg)
            return await answer_async(msg, stores.by_name())

        def blob_path(sha: str) -> Path | None:
            return stores.models.blob_path(sha) if stores.models.has_blob(sha) else None

        wire = Wire(CLUSTER, identity(node_id), Keyring([SECRET]))
        transport = MeshTransport(app, wire,
                                  on_gossip=on_gossip, on_sync=on_sync, blob_path=blob_path,
                                  registry=CollectorRegistry())
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Peer(wire.node_id, stores, transport, f"127.0.0.1:{port}")

    yield start_node
    for runner in runners:
        await runner.cleanup()
    for stores in opened:
        await stores.close()


async def summaries(stores: Stores) -> dict[str, StoreSummary]:
    return {n: StoreSummary(*(await s.summary())) for n, s in stores.by_name().items()}


def shell(puller: Peer, peer: Peer):
    """What the agent's shell gives a pull: requests and blob downloads over the transport."""
    async def ask(_peer: str, request: object) -> object:
        try:
            return await puller.transport.request(peer.address, request, to=peer.node_id)
        except PeerError:
            return None

    async def fetch(_peer: str, sha: str) -> bool:
        try:
            await puller.transport.fetch_blob(peer.address, sha,
                                              puller.stores.models.blob_path(sha))
        except PeerError:
            return False
        return True

    return ask, fetch


async def pull(puller: Peer, peer: Peer, config: SyncConfig, blobs: bool = False):
    scheduler = SyncScheduler(random.Random(1), config)
    plan = scheduler.plan(0.0, await summaries(puller.stores),
                          {peer.node_id: await summaries(peer.stores)}, blobs_missing=blobs)
    assert plan is not None
    return await drive_async(pull_session(plan, config), puller.stores.by_name(),
                             *shell(puller, peer))


@pytest.mark.parametrize("subdivide_above", [64, 2])
async def test_two_nodes_converge_over_http_rows_big_rows_and_blobs(start, subdivide_above: int
                                                                    ) -> None:
    a, b = await start("a" * 32), await start("b" * 32)
    config = SyncConfig(subdivide_above=subdivide_above)
    await b.stores.games.merge([
        new_game("square8", 2, [i.to_bytes(2, "big") + bytes([j]) for j in range(40)], [1, 2],
                 10 + i, "nb")
        for i in range(1500)])
    # Two long games (~700 KB each): a rows reply holds them within the transport's limits.
    await b.stores.games.merge([
        new_game("hex8", 2, [bytes([i + 1]) * 116] * 6000, [2, 1], 5_000 + i, "nb")
        for i in range(2)])
    await a.stores.games.merge([
        new_game("square8", 2, [(9_000 + i).to_bytes(2, "big")], [1, 2], 9_000 + i, "na")
        for i in range(300)])
    for i in range(40):
        await b.stores.matches.put(new_match(f"m{i}", ["p", "q"], "hex8", 2, [1.0, 0.0],
                                             100 + i, "nb"))
        await a.stores.matches.put(new_match(f"m{i}", ["p", "q"], "hex8", 2, [0.0, 1.0],
                                             50 + 2 * i, "na"))
    sha = await b.stores.models.put_blob(b"\x00weights" * 5000)
    await b.stores.models.register_model(sha, "square8", 2)

    into_a = await pull(a, b, config)
    assert into_a.ok and into_a.rows_pulled == 1502 + 40 + 1
    assert await a.stores.models.missing_blobs() == [sha]
    # The model row named a blob a lacks: the next pull asks b for it and downloads it.
    blobs = await pull(a, b, config, blobs=True)
    assert blobs.ok and blobs.blobs_fetched == 1
    assert await a.stores.models.get_blob(sha) == b"\x00weights" * 5000

    into_b = await pull(b, a, config)
    assert into_b.ok and into_b.rows_pulled == 300 and into_b.merged.skipped == 0
    assert await summaries(a.stores) == await summaries(b.stores)


# --- peers that misbehave: each costs one pull, which then moves to another peer -------------


class _Prefer(random.Random):
    """A scheduler rng that picks `peer` whenever it is a candidate (so it is tried first)."""

    def __init__(self, peer: str) -> None:
        super().__init__(0)
        self.peer = peer

    def choice(self, seq):  # type: ignore[override]
        return next((c for c in seq if c[0] == self.peer), seq[0])


async def _loaded(start, name: str, serve: Serve | None = None) -> Peer:
    peer = await start(name, serve)
    await peer.stores.games.merge([
        new_game("square8", 2, [i.to_bytes(2, "big") + bytes([j]) for j in range(30)], [1, 2],
                 10 + i, "origin") for i in range(300)])
    await peer.stores.matches.merge([
        new_match(f"m{i}", ["p", "q"], "hex8", 2, [1.0, 0.0], 100 + i, "origin")
        for i in range(200)])
    return peer


async def _round(puller: Peer, peers: list[Peer], scheduler: SyncScheduler,
                 config: SyncConfig) -> list[PullOutcome]:
    """What the runtime's sync round does: pull; when a peer ends the pull, plan again at once
    (that peer is backed off now) until a pull completes or no peer is left to ask."""
    manifests = {p.node_id: await summaries(p.stores) for p in peers}
    by_id = {p.node_id: p for p in peers}
    outcomes = []
    while (plan := scheduler.plan(0.0, await summaries(puller.stores), manifests)) is not None:
        peer = by_id[plan.peer]

        async def ask(_peer: str, request: object, peer: Peer = peer) -> object:
            try:
                return await puller.transport.request(peer.address, request, to=peer.node_id,
                                                      timeout_s=config.request_timeout_s)
            except PeerError:
                return None

        outcome = await drive_async(pull_session(plan, config), puller.stores.by_name(), ask)
        scheduler.finished(plan, outcome, 0.0)
        outcomes.append(outcome)
        if outcome.ok:
            break
    return outcomes


async def _moved_on(start, serve: Serve, reason: str, config: SyncConfig | None = None) -> Peer:
    """A puller meets the misbehaving peer first, then an honest one holding the same rows."""
    config = config or SyncConfig()
    puller = await start("puller")
    bad = await _loaded(start, "bad", serve)
    good = await _loaded(start, "good")
    scheduler = SyncScheduler(_Prefer(bad.node_id), config)
    outcomes = await _round(puller, [bad, good], scheduler, config)
    assert [o.peer for o in outcomes] == [bad.node_id, good.node_id]
    assert not outcomes[0].ok and outcomes[0].reason == reason, outcomes[0]
    assert outcomes[1].ok
    assert scheduler.refusals[reason] == 1 and sum(scheduler.refusals.values()) == 1
    assert scheduler.backing_off(0.0) == [bad.node_id]
    # Nothing invalid stored: every row held is one the honest peer holds.
    assert await summaries(puller.stores) == await summaries(good.stores)
    for row in await puller.stores.games.games_for("square8", 2):
        validate_game(row)
    return puller


async def test_a_peer_that_does_not_answer_in_time_costs_one_pull(start) -> None:
    released = asyncio.Event()

    async def silent(_stores: Stores, _request: object) -> object:
        await released.wait()  # answers only after the test: far past the puller's timeout
        raise AssertionError("unreachable")

    try:
        await _moved_on(start, silent, "no_reply",
                        SyncConfig(request_timeout_s=0.5, request_attempts=1))
    finally:
        released.set()


async def test_a_peer_that_answers_with_garbage_rows_costs_one_pull(start) -> None:
    async def garbage(stores: Stores, request: object) -> object:
        reply = await answer_async(request, stores.by_name())
        if isinstance(reply, RangeRowsReply):
            return RangeRowsReply(reply.store, b"\xc1" * len(reply.rows), reply.count,
                                  reply.after)
        if isinstance(reply, RowsReply):
            return RowsReply(reply.store, b"\xc1" * len(reply.rows), reply.count, reply.served)
        return reply

    await _moved_on(start, garbage, "malformed")


async def test_a_peer_serving_rows_whose_hashes_do_not_match_costs_one_pull(start) -> None:
    async def forged(stores: Stores, request: object) -> object:
        reply = await answer_async(request, stores.by_name())
        if isinstance(reply, (RangeRowsReply, RowsReply)) and reply.store == "games":
            rows = unpack_stream(reply.rows, reply.count)
            for row in rows[::2]:  # other moves under the same game_id
                row["moves"] = [b"\x07\x07" + m for m in row["moves"]]
            fields = {"rows": pack_rows(rows)}
            return type(reply)(**{**{f: getattr(reply, f) for f in reply.__slots__}, **fields})
        return reply

    puller = await _moved_on(start, forged, "invalid_rows")
    assert puller.stores.refusals.total("games", "malformed") > 0  # each forged row counted
