"""Anti-entropy end to end on loopback: SQLite stores, the real wire and aiohttp transport."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh.keyring import Keyring
from mesh.manifest import StoreSummary
from mesh.sync import (
    SyncConfig,
    SyncScheduler,
    answer_async,
    drive_async,
    pull_session,
)
from mesh.transport import MeshTransport, PeerError
from mesh.wire import Wire
from storage.hlc import HybridClock
from storage.rows import new_game, new_match
from storage.stores import Stores, open_stores
from tests.mesh.keys import identity

CLUSTER = "sync-test"
SECRET = b"s" * 32


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

    async def start_node(node_id: str) -> Peer:
        clock = HybridClock(lambda: 1_700_000_000_000, 60_000)
        stores = await open_stores(tmp_path / node_id, clock, node_id)
        opened.append(stores)
        app = web.Application()

        async def on_gossip(_sender: str, _msg: object) -> None:
            raise AssertionError("sync uses no gossip")

        async def on_sync(_sender: str, msg: object) -> object:
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
