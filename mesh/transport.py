"""The mesh over HTTP: aiohttp routes that admit sealed messages, and the client that sends them.

Routes, installed on the node's existing `aiohttp.web.Application`:

- `POST /mesh/v1/gossip`: one sealed one-way message (membership, election); 204 when admitted.
- `POST /mesh/v1/sync`: one sealed request; the response body is the sealed reply, bound to the
  request's nonce, and the client verifies it like any other incoming message.
- `GET /mesh/v1/blob/{sha256}`: a content-addressed file, authenticated by HMAC headers; the
  client checks the sha256 while streaming, so the serving peer need not be trusted.

The shell is thin: admission is `mesh.wire`, behaviour is the injected handlers. Every refusal is
a 4xx with a one-line `reason: detail` body (and the reason in `X-Mesh-Refusal`), counted by
reason in `ringrift_mesh_refused_total` and in `MeshTransport.refusals` (a sync reply the
client refuses counts there too); a bad request never takes the node down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from mesh import codec
from mesh.defaults import default
from mesh.manifest import is_address
from mesh.wire import REASONS, Refusal, Wire
from storage.blobs import MAX_BLOB_BYTES, TEMP_PREFIX, check_sha
from storage.files import fsync_dir
from storage.refusals import RefusalLedger

log = logging.getLogger(__name__)

GOSSIP_PATH = "/mesh/v1/gossip"
SYNC_PATH = "/mesh/v1/sync"
BLOB_PATH = "/mesh/v1/blob/{sha256}"
REFUSAL_HEADER = "X-Mesh-Refusal"
CONTENT_TYPE = "application/msgpack"

# HTTP status for each refusal reason: 401 for failed authentication, 413 for size, 409 for a
# replay (the request itself may be fine, it was just already done), 400 for the rest.
STATUS_BY_REASON: dict[str, int] = {
    "bad_cluster": 403, "bad_tag": 401, "bad_signature": 401, "stale": 401, "replay": 409,
    "bad_version": 400, "unknown_kind": 400, "too_large": 413, "malformed": 400, "bad_field": 400,
}
assert STATUS_BY_REASON.keys() == REASONS

_MAX_DETAIL_CHARS = 300

GossipHandler = Callable[[str, object], Awaitable[None]]
SyncHandler = Callable[[str, object], Awaitable[object]]
BlobLocator = Callable[[str], Path | None]


@dataclass(frozen=True, slots=True)
class TransportConfig:
    """Every knob of the transport, with the reason for its default."""

    # Gossip is small: a SWIM message with piggybacked updates is a few KB. The limit is set by
    # push-pull (`swim.sync`), which carries a digest row per member plus up to 256 updates with
    # manifests (~170 KB at the codec's bounds); 512 KiB covers it with room for framing.
    gossip_max_bytes: int = 512 * 1024
    # Sync batches are bounded by the sync messages: a rows reply stops adding rows at 4 MiB but
    # always serves one row, which may be a 1 MiB game; 8 MiB covers both directions.
    sync_max_bytes: int = 8 * 1024 * 1024
    # The blob store's own bound: a peer cannot hand us a blob the store would not keep.
    blob_max_bytes: int = MAX_BLOB_BYTES
    # A peer on the LAN accepts a connection in milliseconds; 3 s tolerates a loaded host
    # without leaving a probe of a dead peer hanging past the SWIM probe interval's order.
    connect_timeout_s: float = 3.0
    # Whole exchange for gossip and sync, including a responder that reads a few MB from SQLite.
    request_timeout_s: float = 10.0
    # Blobs are large, so no total limit; a peer that goes silent for this long mid-file is cut.
    blob_read_timeout_s: float = 30.0
    blob_chunk_bytes: int = 1024 * 1024
    # Kinds each endpoint takes: one-way protocol messages on gossip, request/reply on sync.
    gossip_kinds: tuple[str, ...] = ("swim.", "raft.")
    sync_kinds: tuple[str, ...] = ("sync.",)
    # Simultaneous outgoing connections per peer: gossip and sync in parallel, not a flood.
    connections_per_peer: int = 4
    # The operator's knobs among these: config/node.toml [mesh] has their defaults and reasons.
    body_timeout_s: float = default("mesh", "body_timeout_s")
    bodies_in_flight_bytes: int = default("mesh", "bodies_in_flight_mib") << 20

    def __post_init__(self) -> None:
        for name in ("gossip_max_bytes", "sync_max_bytes", "blob_max_bytes", "blob_chunk_bytes",
                     "connections_per_peer", "bodies_in_flight_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} = {getattr(self, name)}: expected a positive number")
        for name in ("connect_timeout_s", "request_timeout_s", "blob_read_timeout_s",
                     "body_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} = {getattr(self, name)}: expected seconds > 0")


class _Overloaded(Exception):
    """A request body was not taken: too slow, or over the budget of bodies in flight."""

    def __init__(self, reason: str, status: int, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


class PeerError(Exception):
    """A request to a peer failed: unreachable, timed out, refused, or answered wrongly."""


class _LocalDiskError(OSError):
    """Writing a fetched blob failed here; kept apart from the peer's network errors."""


def wall_clock_ms() -> int:
    # Envelope timestamps compare clocks across machines, so they are wall time, not monotonic.
    return time.time_ns() // 1_000_000


class MeshTransport:
    """The mesh routes of one node's web application, and its client towards peers."""

    def __init__(self, app: web.Application, wire: Wire, *,
                 on_gossip: GossipHandler, on_sync: SyncHandler, blob_path: BlobLocator,
                 registry: CollectorRegistry, config: TransportConfig | None = None,
                 clock_ms: Callable[[], int] = wall_clock_ms,
                 ledger: RefusalLedger | None = None) -> None:
        self.wire = wire
        self.config = config or TransportConfig()
        # Bodies cut off (slow, over budget): connection-level, before any message exists.
        self.ledger = ledger or RefusalLedger(log)
        self._bodies_in_flight = 0
        self._on_gossip = on_gossip
        self._on_sync = on_sync
        self._blob_path = blob_path
        self._clock_ms = clock_ms
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self.refusals: dict[str, int] = dict.fromkeys(sorted(REASONS), 0)
        self.send_failures: dict[str, int] = {}
        self._refused = Counter("ringrift_mesh_refused_total",
                                "Incoming mesh messages refused, by reason", ["reason"],
                                registry=registry)
        for reason in REASONS:
            self._refused.labels(reason)
        self._failed = Counter("ringrift_mesh_send_failures_total",
                               "Outgoing mesh messages that did not arrive, by cause", ["cause"],
                               registry=registry)
        self._bytes_in = Counter("ringrift_mesh_received_bytes_total",
                                 "Bytes of admitted mesh bodies received, by endpoint",
                                 ["endpoint"], registry=registry)
        self._bytes_out = Counter("ringrift_mesh_sent_bytes_total",
                                  "Bytes of mesh bodies sent, by endpoint", ["endpoint"],
                                  registry=registry)
        app.router.add_post(GOSSIP_PATH, self._handle_gossip)
        app.router.add_post(SYNC_PATH, self._handle_sync)
        app.router.add_get(BLOB_PATH, self._handle_blob)
        app.on_cleanup.append(self._close_on_cleanup)

    @property
    def bodies_in_flight(self) -> int:
        """Bytes of request bodies being received now (bounded by `bodies_in_flight_bytes`)."""
        return self._bodies_in_flight

    # --- server side -----------------------------------------------------------------------

    async def _handle_gossip(self, request: web.Request) -> web.StreamResponse:
        try:
            async with self._body(request, self.config.gossip_max_bytes) as data:
                opened = self.wire.open(data, self._clock_ms(),
                                        max_bytes=self.config.gossip_max_bytes,
                                        accept=_prefixed(self.config.gossip_kinds))
        except Refusal as refusal:
            return self._refuse(refusal, request)
        except _Overloaded as over:
            return await self._overloaded(over, request)
        self._bytes_in.labels("gossip").inc(len(data))
        await self._on_gossip(opened.sender, opened.msg)
        return web.Response(status=204)

    async def _handle_sync(self, request: web.Request) -> web.StreamResponse:
        try:
            async with self._body(request, self.config.sync_max_bytes) as data:
                opened = self.wire.open(data, self._clock_ms(),
                                        max_bytes=self.config.sync_max_bytes,
                                        accept=_prefixed(self.config.sync_kinds))
        except Refusal as refusal:
            return self._refuse(refusal, request)
        except _Overloaded as over:
            return await self._overloaded(over, request)
        self._bytes_in.labels("sync").inc(len(data))
        reply = await self._on_sync(opened.sender, opened.msg)
        body = self.wire.seal(reply, self._clock_ms(), reply_to=opened.nonce)
        self._bytes_out.labels("sync").inc(len(body))
        return web.Response(body=body, content_type=CONTENT_TYPE)

    async def _handle_blob(self, request: web.Request) -> web.StreamResponse:
        sha = request.match_info["sha256"]
        try:
            if not _is_sha256(sha):
                raise Refusal("malformed", f"blob id {codec.describe_value(sha)}: expected a "
                                           "sha256 as 64 lowercase hex characters")
            self.wire.check_blob_request(sha, request.headers, self._clock_ms())
        except Refusal as refusal:
            return self._refuse(refusal, request)
        path = self._blob_path(sha)
        if path is None or not path.is_file():
            return web.Response(status=404, text=f"blob {sha} is not held here\n")
        self._bytes_out.labels("blob").inc(path.stat().st_size)
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    @asynccontextmanager
    async def _body(self, request: web.Request, limit: int) -> AsyncIterator[bytes]:
        """The request body while the caller uses it, counted against the bodies in flight.

        Refused (Refusal) as soon as it is known to exceed `limit`; cut off (_Overloaded) when
        it does not arrive within `body_timeout_s` or would pass `bodies_in_flight_bytes`.
        """
        declared = request.content_length
        if declared is not None and declared > limit:
            raise Refusal("too_large", f"{declared} bytes declared; this endpoint takes at most "
                                       f"{limit}")
        held = 0
        budget = self.config.bodies_in_flight_bytes
        try:
            async with asyncio.timeout(self.config.body_timeout_s):
                body = bytearray()
                while True:
                    try:
                        chunk = await request.content.read(min(64 * 1024,
                                                               limit + 1 - len(body)))
                    except (ConnectionError, RuntimeError) as exc:
                        # The sender hung up, or the connection was closed under us (evicted).
                        raise _Overloaded("closed", 400, f"connection closed mid-body: {exc}"
                                          ) from None
                    if not chunk:
                        break
                    if self._bodies_in_flight + len(chunk) > budget:
                        raise _Overloaded("busy", 503, f"bodies in flight would pass {budget} "
                                                       "bytes; try again later")
                    self._bodies_in_flight += len(chunk)
                    held += len(chunk)
                    body += chunk
                    if len(body) > limit:
                        raise Refusal("too_large", f"body over {limit} bytes; this endpoint "
                                                   f"takes at most {limit}")
            yield bytes(body)
        except TimeoutError:
            raise _Overloaded("body_timeout", 408, f"body not received within "
                                                   f"{self.config.body_timeout_s} s") from None
        finally:
            self._bodies_in_flight -= held

    async def _overloaded(self, over: _Overloaded, request: web.Request) -> web.Response:
        self.ledger.refuse("body", over.reason, f"{request.method} {request.path} from "
                                                f"{request.remote}: {over}")
        response = web.Response(status=over.status, text=f"{over.reason}: {over}\n")
        response.force_close()
        with contextlib.suppress(ConnectionError, RuntimeError):  # the sender may be gone
            await response.prepare(request)
            await response.write_eof()
        # The rest of the body may still be on its way: close now, instead of reading on (as
        # aiohttp would, for up to its lingering time) for a sender we just cut off.
        if request.protocol is not None:
            request.protocol.force_close()
        return response

    def _refuse(self, refusal: Refusal, request: web.Request) -> web.Response:
        self._count_refusal(refusal)
        log.debug("refused %s %s from %s: %s", request.method, request.path, request.remote,
                  refusal)
        line = _one_line(f"{refusal.reason}: {refusal.detail}")
        return web.Response(status=STATUS_BY_REASON[refusal.reason], text=line + "\n",
                            headers={REFUSAL_HEADER: refusal.reason})

    def _count_refusal(self, refusal: Refusal) -> None:
        self.refusals[refusal.reason] += 1
        self._refused.labels(refusal.reason).inc()

    # --- client side -----------------------------------------------------------------------

    async def send(self, address: str, msg: object, to: str | None = None) -> bool:
        """Deliver a one-way message; False (and counted) when it did not arrive.

        `to` is the destination's node id (`Send.to`): the message is then sealed so that only
        that node admits it. Leave it None only for a seed known by address alone.
        """
        try:
            url = _url(address, GOSSIP_PATH)
        except PeerError as err:
            self._count_failure("bad_address")
            log.warning("not sending %s: %s", codec.kind_of(msg), err)
            return False
        if self._closed:
            self._count_failure("closed")
            return False
        try:
            # Inside the try: a message that cannot be sealed (a core built a bad one) is a
            # counted, logged failure of this send, never an exception lost in a task.
            data = self.wire.seal(msg, self._clock_ms(), to=to)
        except (codec.CodecError, ValueError, TypeError) as err:
            self._count_failure("unsealable")
            log.error("not sending %s to %s: %s", type(msg).__name__, address, err)
            return False
        try:
            async with self._client().post(url, data=data, headers=_POST_HEADERS,
                                           timeout=self._timeout()) as response:
                if response.status == 204:
                    self._bytes_out.labels("gossip").inc(len(data))
                    return True
                detail = await _response_line(response)
                self._count_failure("refused")
                log.info("%s refused %s: %s %s", address, codec.kind_of(msg), response.status,
                         detail)
                return False
        except TimeoutError:
            self._count_failure("timeout")
        except (aiohttp.ClientError, OSError) as err:
            self._count_failure("unreachable")
            log.debug("gossip to %s failed: %s", address, err)
        return False

    async def request(self, address: str, msg: object, to: str | None = None, *,
                      timeout_s: float | None = None) -> object:
        """Send a sync request and return the peer's verified reply; raises PeerError.

        `to` is the peer's node id, as for `send`; `timeout_s` overrides the configured
        `request_timeout_s` for this exchange (the sync core has its own per-request budget).
        """
        total_s = self.config.request_timeout_s if timeout_s is None else timeout_s
        url = _url(address, SYNC_PATH)
        data, nonce = self.wire.seal_with_nonce(msg, self._clock_ms(), to=to)
        kind = codec.kind_of(msg)
        limit = self.config.sync_max_bytes
        try:
            async with self._client().post(url, data=data, headers=_POST_HEADERS,
                                           timeout=self._timeout(total_s)) as response:
                self._bytes_out.labels("sync").inc(len(data))
                if response.status != 200:
                    self._count_failure("refused")
                    raise PeerError(f"{address} answered {kind} with HTTP {response.status}: "
                                    f"{await _response_line(response)}")
                declared = response.content_length
                body = (None if declared is not None and declared > limit
                        else await _read_limited(response, limit))
        except TimeoutError:
            self._count_failure("timeout")
            raise PeerError(f"{address} did not answer {kind} within {total_s} s") from None
        except (aiohttp.ClientError, OSError) as err:
            self._count_failure("unreachable")
            raise PeerError(f"{address} unreachable for {kind}: {err}") from None
        if body is None:
            self._count_refusal(Refusal("too_large", "sync reply over the limit"))
            raise PeerError(f"{address} sent a reply to {kind} over the limit of {limit} bytes")
        try:
            opened = self.wire.open(body, self._clock_ms(), max_bytes=limit,
                                    accept=_prefixed(self.config.sync_kinds), reply_to=nonce)
        except Refusal as refusal:
            self._count_refusal(refusal)
            raise PeerError(f"reply from {address} to {kind} refused: {refusal}") from None
        self._bytes_in.labels("sync").inc(len(body))
        return opened.msg

    async def fetch_blob(self, address: str, sha256: str, dest_path: Path) -> int:
        """Download blob `sha256` from a peer to `dest_path`; returns its size in bytes.

        Streams to a temp file beside `dest_path`, hashing as it goes; only a file whose sha256
        matches and whose size is within the limit is renamed into place, so a partial or wrong
        file is never taken as the blob. Raises PeerError for whatever the peer or the network
        did, and OSError for local disk trouble (not the peer's fault, so not counted as such).
        """
        check_sha(sha256)
        dest_path = Path(dest_path)
        url = _url(address, BLOB_PATH.format(sha256=sha256))
        headers = self.wire.blob_request_headers(sha256, self._clock_ms())
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=self.config.connect_timeout_s,
                                        sock_read=self.config.blob_read_timeout_s)
        limit = self.config.blob_max_bytes
        # The blob store's temp prefix: a fetch cut short by a crash is swept at next start.
        fd, tmp_name = tempfile.mkstemp(prefix=TEMP_PREFIX, suffix=".part", dir=dest_path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                size = await self._stream_blob(address, url, headers, timeout, limit, sha256,
                                               handle)
                await asyncio.to_thread(_flush_and_sync, handle)
            os.replace(tmp, dest_path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        await asyncio.to_thread(fsync_dir, dest_path.parent)
        self._bytes_in.labels("blob").inc(size)
        return size

    async def _stream_blob(self, address: str, url: str, headers: dict[str, str],
                           timeout: aiohttp.ClientTimeout, limit: int, sha256: str,
                           handle: object) -> int:
        digest = hashlib.sha256()
        size = 0
        try:
            async with self._client().get(url, headers=headers, timeout=timeout) as response:
                if response.status != 200:
                    self._count_failure("refused")
                    raise PeerError(f"{address} answered blob {sha256} with HTTP "
                                    f"{response.status}: {await _response_line(response)}")
                declared = response.content_length
                if declared is not None and declared > limit:
                    raise PeerError(f"{address} offers blob {sha256} of {declared} bytes; "
                                    f"the limit is {limit}")
                async for chunk in response.content.iter_chunked(self.config.blob_chunk_bytes):
                    size += len(chunk)
                    if size > limit:
                        raise PeerError(f"{address} sent over {limit} bytes for blob {sha256}")
                    digest.update(chunk)
                    try:
                        await asyncio.to_thread(handle.write, chunk)  # type: ignore[attr-defined]
                    except OSError as err:
                        raise _LocalDiskError(err.errno, err.strerror) from err
        except _LocalDiskError:
            raise
        except TimeoutError:
            self._count_failure("timeout")
            raise PeerError(f"{address} stalled sending blob {sha256}") from None
        except (aiohttp.ClientError, OSError) as err:
            self._count_failure("unreachable")
            raise PeerError(f"fetching blob {sha256} from {address} failed: {err}") from None
        if digest.hexdigest() != sha256:
            raise PeerError(f"{address} sent {size} bytes for blob {sha256} whose sha256 is "
                            f"{digest.hexdigest()}; discarded")
        return size

    def _client(self) -> aiohttp.ClientSession:
        if self._closed:
            raise PeerError("the transport is closed")
        if self._session is None:
            # Created on first use, inside the running loop, as aiohttp requires.
            connector = aiohttp.TCPConnector(limit_per_host=self.config.connections_per_peer)
            self._session = aiohttp.ClientSession(connector=connector,
                                                  headers={"User-Agent": "ringrift-node"})
        return self._session

    def _timeout(self, total_s: float | None = None) -> aiohttp.ClientTimeout:
        total = self.config.request_timeout_s if total_s is None else total_s
        return aiohttp.ClientTimeout(total=total,
                                     sock_connect=min(self.config.connect_timeout_s, total))

    def _count_failure(self, cause: str) -> None:
        self.send_failures[cause] = self.send_failures.get(cause, 0) + 1
        self._failed.labels(cause).inc()

    async def close(self) -> None:
        """Close the client session; later sends fail. Safe to call twice."""
        self._closed = True
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _close_on_cleanup(self, _app: web.Application) -> None:
        await self.close()


_POST_HEADERS = {"Content-Type": CONTENT_TYPE}


def _is_sha256(text: str) -> bool:
    try:
        check_sha(text)
    except ValueError:
        return False
    return True


def _prefixed(prefixes: tuple[str, ...]) -> Callable[[str], bool]:
    return lambda kind: kind.startswith(prefixes)


def _url(address: str, path: str) -> str:
    # The address comes from peers' manifests: only host:port, so it cannot smuggle a path,
    # credentials or another scheme into the URL.
    if not is_address(address):
        raise PeerError(f"peer address {address!r}: expected host:port")
    return f"http://{address}{path}"


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _MAX_DETAIL_CHARS else flat[:_MAX_DETAIL_CHARS - 3] + "..."


async def _response_line(response: aiohttp.ClientResponse) -> str:
    """The first line of an error response, bounded: a peer's error text is untrusted too."""
    raw = await response.content.read(_MAX_DETAIL_CHARS)
    return _one_line(raw.decode("utf-8", errors="replace"))


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    body = bytearray()
    async for chunk in response.content.iter_chunked(64 * 1024):
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def _flush_and_sync(handle: object) -> None:
    handle.flush()  # type: ignore[attr-defined]
    os.fsync(handle.fileno())  # type: ignore[attr-defined]
