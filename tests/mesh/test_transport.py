"""The aiohttp transport between real nodes on loopback: delivery, admission, blobs, failures."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import msgpack
import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh import codec
from mesh.keyring import PURPOSE_ENVELOPE, TAG_BYTES, Keyring
from mesh.transport import MeshTransport, PeerError, TransportConfig
from mesh.wire import SIG_DOMAIN, Wire
from tests.mesh.keys import identity, identity_of

SECRET = b"k" * 32
CLUSTER = "c1"
SERVER_ID = identity("server").node_id
CLIENT_ID = identity("client").node_id


@codec.message("test.transport.note")
@dataclass(frozen=True, slots=True)
class Note:
    text: str = field(metadata={"max_len": 100_000})


@codec.message("test.transport.ask")
@dataclass(frozen=True, slots=True)
class Ask:
    n: int


@codec.message("test.transport.answer")
@dataclass(frozen=True, slots=True)
class Answer:
    n: int
    by: str


CONFIG = TransportConfig(gossip_max_bytes=4096, sync_max_bytes=64 * 1024, blob_max_bytes=1 << 20,
                         gossip_kinds=("test.transport.note",),
                         sync_kinds=("test.transport.ask", "test.transport.answer"),
                         request_timeout_s=5.0, blob_read_timeout_s=5.0, blob_chunk_bytes=4096)


@dataclass
class Node:
    transport: MeshTransport
    registry: CollectorRegistry
    address: str
    heard: list[tuple[str, object]]
    blobs: Path

    def counter(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def _start(tmp: Path, node_id: str, *, secret: bytes = SECRET, cluster: str = CLUSTER,
                 clock_ms: Callable[[], int] | None = None,
                 runners: list[web.AppRunner]) -> Node:
    app = web.Application()
    heard: list[tuple[str, object]] = []
    blobs = tmp / node_id[:4]
    blobs.mkdir(exist_ok=True)

    async def on_gossip(sender: str, msg: object) -> None:
        heard.append((sender, msg))

    async def on_sync(sender: str, msg: object) -> object:
        assert isinstance(msg, Ask)
        return Answer(msg.n * 2, sender)

    def blob_path(sha: str) -> Path | None:
        path = blobs / sha
        return path if path.exists() else None

    registry = CollectorRegistry()
    extra = {} if clock_ms is None else {"clock_ms": clock_ms}
    transport = MeshTransport(app, Wire(cluster, identity_of(node_id), Keyring([secret])),
                              on_gossip=on_gossip, on_sync=on_sync, blob_path=blob_path,
                              registry=registry, config=CONFIG, **extra)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    runners.append(runner)
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return Node(transport, registry, f"127.0.0.1:{port}", heard, blobs)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Node]]]:
    runners: list[web.AppRunner] = []

    async def start(node_id: str, **kw: object) -> Node:
        return await _start(tmp_path, node_id, runners=runners, **kw)  # type: ignore[arg-type]

    yield start
    for runner in runners:
        await runner.cleanup()


async def _post(address: str, path: str, data: bytes,
                headers: dict[str, str] | None = None) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.post(
            f"http://{address}{path}", data=data, headers=headers) as resp:
        return resp.status, await resp.text()


async def test_gossip_is_delivered_to_the_handler_with_its_sender(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    assert await client.transport.send(server.address, Note("hello"))
    assert server.heard == [(CLIENT_ID, Note("hello"))]
    assert server.counter("ringrift_mesh_received_bytes_total", endpoint="gossip") > 0


async def test_sync_request_returns_the_handlers_verified_reply(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    assert await client.transport.request(server.address, Ask(21)) == Answer(42, CLIENT_ID)
    assert await client.transport.request(server.address, Ask(2), to=SERVER_ID) == Answer(
        4, CLIENT_ID)


async def test_a_message_addressed_to_another_node_id_is_refused(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    assert await client.transport.send(server.address, Note("for you"), to=SERVER_ID)
    assert not await client.transport.send(server.address, Note("not for you"), to="d" * 32)
    assert server.heard == [(CLIENT_ID, Note("for you"))]
    assert server.transport.refusals["bad_tag"] == 1


async def test_hostile_posts_are_refused_counted_by_reason_and_the_node_stays_up(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    outsider = await cluster(identity("outsider").node_id, secret=b"x" * 32)
    wrong_cluster = await cluster(identity("wrong-cluster").node_id, cluster="c2")
    gossip = "/mesh/v1/gossip"
    sealed = client.transport.wire.seal(Note("once"), client.transport._clock_ms())

    cases = [
        (b"\x93garbage" + b"\0" * TAG_BYTES, 400, "malformed"),
        (b"x" * 5000, 413, "too_large"),
        (sealed, 204, None),
        (sealed, 409, "replay"),
        (outsider.transport.wire.seal(Note("forged"), outsider.transport._clock_ms()), 401,
         "bad_tag"),
        (wrong_cluster.transport.wire.seal(Note("lost"), wrong_cluster.transport._clock_ms()), 403,
         "bad_cluster"),
        (client.transport.wire.seal(Note("old"), client.transport._clock_ms() - 3_600_000), 401,
         "stale"),
        (client.transport.wire.seal(Ask(1), client.transport._clock_ms()), 400, "unknown_kind"),
        (_resealed(client, {"text": 7}), 400, "bad_field"),
        (_resealed(client, {"text": "hi"}, v=2), 400, "bad_version"),
    ]
    for data, status, reason in cases:
        got_status, text = await _post(server.address, gossip, data)
        assert got_status == status, (reason, text)
        if reason is not None:
            assert text.startswith(f"{reason}: ")
            assert text.count("\n") == 1
    expected = {r: 1 for _, _, r in cases if r is not None}
    assert {r: n for r, n in server.transport.refusals.items() if n} == expected
    for reason, count in expected.items():
        assert server.counter("ringrift_mesh_refused_total", reason=reason) == count
    assert server.heard == [(CLIENT_ID, Note("once"))]
    # still alive and admitting
    assert await client.transport.send(server.address, Note("after"))
    assert server.heard[-1] == (CLIENT_ID, Note("after"))


def _resealed(node: Node, body: dict, v: int = 1) -> bytes:
    wire = node.transport.wire
    envelope = msgpack.packb({
        "v": v, "cluster": wire.cluster_id, "from": wire.node_id,
        "key": wire.identity.public_key,
        "ts": node.transport._clock_ms(), "nonce": b"r" * 15 + bytes([len(body) + v]),
        "kind": "test.transport.note", "body": body}, use_bin_type=True)
    binding = b"\x01\x00" + envelope
    sig = wire.identity.sign(SIG_DOMAIN + binding)
    return envelope + sig + wire.keyring.tag(PURPOSE_ENVELOPE, binding + sig)


async def test_an_oversized_chunked_body_is_refused_without_reading_it_all(cluster) -> None:
    server = await cluster(SERVER_ID)

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(100):
            yield b"y" * 1024

    async with aiohttp.ClientSession() as session, session.post(
            f"http://{server.address}/mesh/v1/gossip", data=chunks()) as resp:
        assert resp.status == 413
        assert resp.headers["X-Mesh-Refusal"] == "too_large"
    assert server.transport.refusals["too_large"] == 1


async def test_sync_endpoint_refuses_gossip_kinds(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    data = client.transport.wire.seal(Note("wrong door"), client.transport._clock_ms())
    status, text = await _post(server.address, "/mesh/v1/sync", data)
    assert (status, text.split(":")[0]) == (400, "unknown_kind")


async def test_request_to_a_peer_of_another_cluster_raises_peer_error_with_the_reason(
        cluster) -> None:
    server = await cluster(SERVER_ID, secret=b"z" * 32)
    client = await cluster(CLIENT_ID)
    with pytest.raises(PeerError, match="HTTP 401: bad_tag"):
        await client.transport.request(server.address, Ask(1))
    assert client.transport.send_failures == {"refused": 1}


async def test_a_forged_sync_reply_is_refused_by_the_client(cluster, tmp_path: Path) -> None:
    client = await cluster(CLIENT_ID)
    liar_wire = Wire(CLUSTER, identity_of(SERVER_ID), Keyring([SECRET]))

    async def replay_unbound(request: web.Request) -> web.Response:
        # a reply sealed by a key holder but not bound to this request's nonce
        return web.Response(body=liar_wire.seal(Answer(0, "x"), client.transport._clock_ms()))

    app = web.Application()
    app.router.add_post("/mesh/v1/sync", replay_unbound)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(PeerError, match="refused: bad_tag"):
            await client.transport.request(f"127.0.0.1:{port}", Ask(1))
    finally:
        await runner.cleanup()
    assert client.transport.refusals["bad_tag"] == 1
    assert client.counter("ringrift_mesh_refused_total", reason="bad_tag") == 1


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_send_to_a_dead_peer_returns_false_and_counts(cluster) -> None:
    client = await cluster(CLIENT_ID)
    assert not await client.transport.send(f"127.0.0.1:{_free_port()}", Note("anyone?"))
    assert client.transport.send_failures == {"unreachable": 1}
    assert client.counter("ringrift_mesh_send_failures_total", cause="unreachable") == 1
    assert not await client.transport.send("evil.example/admin?x=1:80", Note("no"))
    assert client.transport.send_failures["bad_address"] == 1


async def test_request_to_a_dead_peer_raises_peer_error(cluster) -> None:
    client = await cluster(CLIENT_ID)
    with pytest.raises(PeerError, match="unreachable"):
        await client.transport.request(f"127.0.0.1:{_free_port()}", Ask(1))


async def test_send_of_a_message_that_cannot_be_sealed_returns_false_and_counts(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)

    class Unregistered:
        pass

    assert not await client.transport.send(server.address, Unregistered())
    assert not await client.transport.send(server.address, Note("x"), to="\u00e9" * 3)
    assert client.transport.send_failures == {"unsealable": 2}
    assert client.counter("ringrift_mesh_send_failures_total", cause="unsealable") == 2


async def test_send_after_close_returns_false(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    assert await client.transport.send(server.address, Note("before"))
    await client.transport.close()
    assert not await client.transport.send(server.address, Note("after"))
    assert client.transport.send_failures == {"closed": 1}


def _store_blob(node: Node, data: bytes) -> str:
    sha = hashlib.sha256(data).hexdigest()
    (node.blobs / sha).write_bytes(data)
    return sha


async def test_blob_fetch_streams_verifies_and_renames_into_place(cluster, tmp_path: Path) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    data = bytes(range(256)) * 1000
    sha = _store_blob(server, data)
    dest = client.blobs / sha
    assert await client.transport.fetch_blob(server.address, sha, dest) == len(data)
    assert dest.read_bytes() == data
    assert [p.name for p in client.blobs.iterdir()] == [sha]


async def test_a_peer_serving_wrong_bytes_leaves_no_file_behind(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    sha = hashlib.sha256(b"the real model").hexdigest()
    (server.blobs / sha).write_bytes(b"a corrupted model")
    with pytest.raises(PeerError, match="discarded"):
        await client.transport.fetch_blob(server.address, sha, client.blobs / sha)
    assert list(client.blobs.iterdir()) == []


async def test_a_blob_over_the_limit_is_cut_off_and_discarded(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    sha = _store_blob(server, b"z" * ((1 << 20) + 1))
    with pytest.raises(PeerError, match="limit"):
        await client.transport.fetch_blob(server.address, sha, client.blobs / sha)
    assert list(client.blobs.iterdir()) == []


async def test_a_missing_blob_is_a_404_peer_error(cluster) -> None:
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    sha = "0" * 64
    with pytest.raises(PeerError, match="HTTP 404"):
        await client.transport.fetch_blob(server.address, sha, client.blobs / sha)


async def test_unauthenticated_or_malformed_blob_requests_are_refused(cluster) -> None:
    server = await cluster(SERVER_ID)
    sha = _store_blob(server, b"secret weights")
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://{server.address}/mesh/v1/blob/{sha}") as resp:
            assert resp.status == 400
            assert resp.headers["X-Mesh-Refusal"] == "malformed"
        async with session.get(f"http://{server.address}/mesh/v1/blob/NOT-A-SHA") as resp:
            assert resp.status == 400
        forged = Wire(CLUSTER, identity_of(CLIENT_ID), Keyring([b"q" * 32])).blob_request_headers(
            sha, server.transport._clock_ms())
        async with session.get(f"http://{server.address}/mesh/v1/blob/{sha}",
                               headers=forged) as resp:
            assert resp.status == 401
            assert b"secret weights" not in await resp.read()
    assert server.transport.refusals["malformed"] == 2
    assert server.transport.refusals["bad_tag"] == 1


async def test_clock_skew_beyond_the_window_is_refused_as_stale(cluster) -> None:
    server = await cluster(SERVER_ID)
    skewed = await cluster(CLIENT_ID, clock_ms=lambda: 1_000_000)
    assert not await skewed.transport.send(server.address, Note("from 1970"))
    assert server.transport.refusals["stale"] == 1
    assert skewed.transport.send_failures == {"refused": 1}


async def test_default_config_routes_swim_and_raft_to_gossip_and_sync_to_sync() -> None:
    config = TransportConfig()
    assert "swim.ping".startswith(config.gossip_kinds)
    assert "raft.vote".startswith(config.gossip_kinds)
    assert not "sync.rows".startswith(config.gossip_kinds)
    assert "sync.rows".startswith(config.sync_kinds)


def test_config_refuses_non_positive_limits() -> None:
    with pytest.raises(ValueError, match="gossip_max_bytes = 0"):
        TransportConfig(gossip_max_bytes=0)


async def test_default_config_carries_real_membership_gossip_and_sync_requests(
        tmp_path: Path) -> None:
    from mesh.membership_messages import Ping
    from mesh.sync_messages import DigestsReply, DigestsRequest

    heard: list[tuple[str, object]] = []

    async def on_gossip(sender: str, msg: object) -> None:
        heard.append((sender, msg))

    async def on_sync(sender: str, msg: object) -> object:
        assert isinstance(msg, DigestsRequest)
        return DigestsReply(msg.store, list(range(256)))

    runners = []
    nodes = []
    for node_id in (SERVER_ID, CLIENT_ID):
        app = web.Application()
        nodes.append(MeshTransport(app, Wire(CLUSTER, identity_of(node_id), Keyring([SECRET])),
                                   on_gossip=on_gossip, on_sync=on_sync,
                                   blob_path=lambda sha: None, registry=CollectorRegistry()))
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append((runner, site._server.sockets[0].getsockname()[1]))  # type: ignore[union-attr]
    server_address = f"127.0.0.1:{runners[0][1]}"
    try:
        assert await nodes[1].send(server_address, Ping(seq=9))
        reply = await nodes[1].request(server_address, DigestsRequest("games"))
        assert reply == DigestsReply("games", list(range(256)))
        assert not await nodes[1].send(server_address, DigestsRequest("games"))
    finally:
        for runner, _ in runners:
            await runner.cleanup()
    assert heard == [(CLIENT_ID, Ping(seq=9))]
    assert nodes[0].refusals["unknown_kind"] == 1


@pytest.mark.benchmark
async def test_benchmark_gossip_and_sync_over_loopback(cluster) -> None:
    """Prints gossip messages and sync round trips per second over real HTTP on loopback.

    Client and server share one process and event loop, so each figure pays for both ends.
    """
    import asyncio
    import time

    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    for label, concurrency in [("sequential", 1), ("32 in flight", 32)]:
        n = 1000
        start = time.perf_counter()
        for offset in range(0, n, concurrency):
            sent = await asyncio.gather(*(client.transport.send(server.address, Note("x" * 64))
                                          for _ in range(min(concurrency, n - offset))))
            assert all(sent)
        gossip_rate = n / (time.perf_counter() - start)
        start = time.perf_counter()
        for offset in range(0, n, concurrency):
            await asyncio.gather(*(client.transport.request(server.address, Ask(i))
                                   for i in range(min(concurrency, n - offset))))
        sync_rate = n / (time.perf_counter() - start)
        print(f"{label}: gossip {gossip_rate:,.0f} msg/s, sync {sync_rate:,.0f} round trips/s")
    data = b"m" * (32 << 20)
    sha = _store_blob(server, data)
    client.transport.config = TransportConfig(blob_max_bytes=64 << 20)
    start = time.perf_counter()
    await client.transport.fetch_blob(server.address, sha, client.blobs / sha)
    print(f"blob 32 MiB: {32 / (time.perf_counter() - start):,.0f} MiB/s")


async def test_a_barrage_of_random_bodies_is_refused_and_counted_one_each(cluster) -> None:
    import random

    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    rng = random.Random(7)
    sealed = client.transport.wire.seal(Note("seed"), client.transport._clock_ms())
    bodies = []
    for _ in range(60):
        choice = rng.randrange(3)
        if choice == 0:
            bodies.append(rng.randbytes(rng.randrange(0, 6000)))
        elif choice == 1:  # a real message with a few bytes flipped
            damaged = bytearray(sealed)
            for position in rng.sample(range(len(damaged)), rng.randrange(1, 4)):
                damaged[position] ^= 1 << rng.randrange(8)
            bodies.append(bytes(damaged))
        else:  # a real message cut short
            bodies.append(sealed[:rng.randrange(len(sealed))])
    async with aiohttp.ClientSession() as session:
        for body in bodies:
            async with session.post(f"http://{server.address}/mesh/v1/gossip", data=body) as resp:
                assert 400 <= resp.status < 500
                assert resp.headers["X-Mesh-Refusal"] in server.transport.refusals
    assert sum(server.transport.refusals.values()) == len(bodies)
    assert server.heard == []
    assert await client.transport.send(server.address, Note("still here"))


async def test_a_local_disk_error_during_fetch_is_an_os_error_not_a_peer_failure(
        cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import io

    import mesh.transport

    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    sha = _store_blob(server, b"w" * 10_000)

    class FullDisk(io.BytesIO):
        def write(self, data: object) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    real_fdopen = mesh.transport.os.fdopen

    def fdopen(fd: int, mode: str) -> io.BytesIO:
        real_fdopen(fd, mode).close()
        return FullDisk()

    monkeypatch.setattr(mesh.transport.os, "fdopen", fdopen)
    with pytest.raises(OSError, match="No space left") as err:
        await client.transport.fetch_blob(server.address, sha, client.blobs / sha)
    assert not isinstance(err.value, PeerError)
    assert client.transport.send_failures == {}
    assert list(client.blobs.iterdir()) == []


async def test_a_peer_slower_than_the_request_timeout_raises_peer_error(cluster) -> None:
    import asyncio

    client = await cluster(CLIENT_ID)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response(status=500)

    app = web.Application()
    app.router.add_post("/mesh/v1/sync", slow)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        with pytest.raises(PeerError, match="did not answer test.transport.ask within 0.2 s"):
            await client.transport.request(f"127.0.0.1:{port}", Ask(1), timeout_s=0.2)
    finally:
        await runner.cleanup()
    assert client.transport.send_failures == {"timeout": 1}
