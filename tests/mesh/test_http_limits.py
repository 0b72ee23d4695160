"""The server's limits against floods on loopback: connections, idle heads, slow and piled-up
bodies, failed accepts. Every refusal is counted and the server keeps answering."""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
from collections.abc import AsyncIterator, Callable

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh.http_limits import ConnectionGuard, ServerLimits
from mesh.keyring import Keyring
from mesh.transport import SYNC_PATH, MeshTransport, TransportConfig
from mesh.wire import Wire
from storage.refusals import RefusalLedger
from tests.mesh.keys import identity

DEADLINE_S = 10.0


class Served:
    def __init__(self, ledger: RefusalLedger, port: int, release: asyncio.Event,
                 transport: MeshTransport) -> None:
        self.ledger = ledger
        self.transport = transport
        self.port = port
        self.release = release
        self.blocked = 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str) -> bytes:
        reader, writer = await self.connect()
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        try:
            return await asyncio.wait_for(reader.read(), DEADLINE_S)
        finally:
            writer.close()


async def _serve(limits: ServerLimits, transport: TransportConfig | None = None
                 ) -> AsyncIterator[Served]:
    ledger = RefusalLedger(logging.getLogger("test.limits"))
    release = asyncio.Event()
    app = web.Application()

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def block(_: web.Request) -> web.Response:
        served.blocked += 1
        await release.wait()
        return web.Response(text="done")

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/block", block)
    wire = Wire("c1", identity("server"), Keyring([b"k" * 32]))

    async def no_gossip(_sender: str, _msg: object) -> None:
        return None

    async def no_sync(_sender: str, msg: object) -> object:
        return msg

    transport = MeshTransport(app, wire, on_gossip=no_gossip, on_sync=no_sync, blob_path=lambda _s: None,
                  registry=CollectorRegistry(), config=transport, ledger=ledger)
    guard = ConnectionGuard(limits, ledger)
    runner = web.AppRunner(app, **guard.runner_kwargs())
    await runner.setup()
    server = await guard.listen(runner, "127.0.0.1", 0)
    served = Served(ledger, server.sockets[0].getsockname()[1], release, transport)
    try:
        yield served
    finally:
        release.set()
        server.close()
        await runner.cleanup()


@pytest.fixture
async def small() -> AsyncIterator[Served]:
    async for served in _serve(ServerLimits(max_connections=8, idle_timeout_s=30.0)):
        yield served


async def _closed_by_server(reader: asyncio.StreamReader) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), DEADLINE_S) == b""
    except ConnectionResetError:
        return True


async def test_a_flood_of_idle_connections_evicts_itself_and_the_node_still_answers(
        small: Served) -> None:
    idle = [await small.connect() for _ in range(40)]
    assert b"200 OK" in await small.get("/healthz")
    assert small.ledger.counts.get(("connection", "evicted_idle"), 0) >= 33
    # The oldest idle ones were closed by the server, not left holding descriptors.
    assert await _closed_by_server(idle[0][0])
    for _, writer in idle:
        writer.close()


async def test_a_connection_past_the_limit_of_busy_ones_is_closed_and_counted(
        small: Served) -> None:
    busy = []
    for _ in range(8):
        reader, writer = await small.connect()
        writer.write(b"GET /block HTTP/1.1\r\nHost: x\r\n\r\n")
        busy.append((reader, writer))
    await _until(lambda: small.blocked == 8)
    reader, writer = await small.connect()
    assert await _closed_by_server(reader)
    assert small.ledger.counts.get(("connection", "limit"), 0) >= 1
    small.release.set()
    for reader, writer in busy:
        assert b"done" in await asyncio.wait_for(reader.read(200), DEADLINE_S)
        writer.close()


async def test_a_request_head_trickled_byte_by_byte_is_cut_off() -> None:
    async for served in _serve(ServerLimits(max_connections=8, idle_timeout_s=1.0)):
        reader, writer = await served.connect()
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finished
        assert await _closed_by_server(reader)
        writer.close()


async def test_a_slow_body_is_cut_off_with_408_and_counted() -> None:
    config = TransportConfig(body_timeout_s=0.5)
    async for served in _serve(ServerLimits(), config):
        reader, writer = await served.connect()
        writer.write(f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                     "Content-Type: application/msgpack\r\n\r\n".encode() + b"x" * 100)
        answer = await asyncio.wait_for(reader.read(), DEADLINE_S)
        assert answer.startswith(b"HTTP/1.1 408")
        assert served.ledger.counts[("body", "body_timeout")] == 1
        writer.close()


async def test_bodies_past_the_in_flight_budget_get_503_and_memory_stays_bounded() -> None:
    piece = 100 * 1024
    config = TransportConfig(bodies_in_flight_bytes=256 * 1024, body_timeout_s=30.0)
    async for served in _serve(ServerLimits(), config):
        senders = []
        for i in range(6):  # 6 half-sent bodies of 100 KiB each: two fit the 256 KiB budget
            reader, writer = await served.connect()
            writer.write(f"POST {SYNC_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
                         "Content-Type: application/msgpack\r\n\r\n".encode() + b"x" * piece)
            senders.append((reader, writer))
            await _until(lambda i=i: served.transport.bodies_in_flight == min(i + 1, 2) * piece
                         and served.ledger.counts.get(("body", "busy"), 0) == max(0, i - 1))
        for reader, _ in senders[2:]:
            assert (await asyncio.wait_for(reader.read(), DEADLINE_S)).startswith(b"HTTP/1.1 503")
        assert served.transport.bodies_in_flight <= config.bodies_in_flight_bytes
        for _, writer in senders:
            writer.close()


async def test_failed_accepts_are_counted_and_logged_once_not_per_attempt(
        caplog: pytest.LogCaptureFixture) -> None:
    async for served in _serve(ServerLimits()):
        loop = asyncio.get_running_loop()
        with caplog.at_level(logging.WARNING, logger="test.limits"), socket.socket() as sock:
            for _ in range(500):
                loop.call_exception_handler({
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(errno.EMFILE, "Too many open files"),
                    "socket": sock,
                })
        assert served.ledger.counts[("connection", "accept_failed")] == 500
        assert len([r for r in caplog.records if "accept_failed" in r.getMessage()]) == 1


async def _until(predicate: Callable[[], bool]) -> None:
    async with asyncio.timeout(DEADLINE_S):
        while not predicate():
            await asyncio.sleep(0.01)
