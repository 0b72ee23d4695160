"""Limits on the node's HTTP server: how many connections, how long one may sit idle.

Without them, 20,000 idle connections exhausted the node's file descriptors and 200
connections that each sent all but the last byte of a body held 1.6 GiB forever. Here:

- at most `max_connections` at once: past it, a new connection closes the oldest idle one (a
  flood of idle connections only evicts itself) or, when all are busy with requests, is
  accepted and closed at once (so the kernel's queue drains instead of filling); counted and
  logged at most once a minute;
- a connection must deliver a whole request head within `idle_timeout_s` of opening or of its
  last response (aiohttp's keep-alive timer, which also closes a connection whose head trickles
  in byte by byte); bodies have their own timeout and budget (`mesh.transport`);
- a failed accept (out of descriptors after all) is counted and logged once a minute, not once
  per attempt.

Refusals go to a `storage.refusals.RefusalLedger` under scope "connection".
"""

from __future__ import annotations

import asyncio
import errno
import resource
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storage.refusals import RefusalLedger

SCOPE = "connection"
# Descriptors kept for what is not a peer's connection: the database, blob files, outgoing
# requests, logs.
_RESERVED_FDS = 64


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every knob of the server's connection limits, with the reason for its default."""

    # A peer keeps at most 4 connections to us (`TransportConfig.connections_per_peer`), so 512
    # serve over a hundred peers plus status readers; each holds at most aiohttp's read buffer.
    max_connections: int = 512
    # Longer than a client's keep-alive pool holds an idle connection (aiohttp's 15 s), so an
    # honest peer closes first and never reuses a connection we are closing; short enough that a
    # trickled request head holds its connection for seconds, not forever.
    idle_timeout_s: float = 20.0

    def __post_init__(self) -> None:
        if self.max_connections <= 0:
            raise ValueError(f"max_connections = {self.max_connections}: expected > 0")
        if not self.idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s = {self.idle_timeout_s}: expected seconds > 0")


class _Refused(asyncio.Protocol):
    """A connection over the limit: closed as soon as it is made."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.abort()  # type: ignore[attr-defined]


class ConnectionGuard:
    """Serves an aiohttp runner's protocol with a connection limit and quiet accept failures."""

    def __init__(self, limits: ServerLimits, ledger: RefusalLedger) -> None:
        self.limits = limits
        self.ledger = ledger
        # Never more connections than the descriptors we may open leave room for.
        soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        room = soft - _RESERVED_FDS if soft != resource.RLIM_INFINITY else limits.max_connections
        self.max_connections = max(1, min(limits.max_connections, room))

    def runner_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `web.AppRunner` that put its handlers under these limits."""
        return {"keepalive_timeout": self.limits.idle_timeout_s}

    def protocol_factory(self, server: web.Server) -> Callable[[], asyncio.BaseProtocol]:
        # asyncio accepts a burst of connections (up to the backlog) before any of their
        # `connection_made` runs, so the server's own list lags behind: handlers made here and
        # not yet connected (no transport, not closed) are counted too.
        unmade: list[web.RequestHandler] = []

        def make() -> asyncio.BaseProtocol:
            unmade[:] = [h for h in unmade
                         if h.transport is None and not getattr(h, "_force_close", True)]
            connections = server.connections
            if len(connections) + len(unmade) >= self.max_connections:
                # Make room by closing the oldest connection that is between requests (idle,
                # or still trickling a request head): a flood of idle connections then only
                # evicts itself, and a peer's new connection still gets in.
                idle = next((h for h in connections if h.transport is not None
                             and not getattr(h, "_request_in_progress", True)), None)
                if idle is None:
                    self.ledger.refuse(SCOPE, "limit", f"{len(connections)} connections busy, "
                                                       f"the limit is {self.max_connections}")
                    return _Refused()
                self.ledger.refuse(SCOPE, "evicted_idle", f"{len(connections)} connections "
                                   f"open (limit {self.max_connections}): closed an idle one")
                idle.force_close()
            handler = server()
            unmade.append(handler)
            return handler
        return make

    async def listen(self, runner: web.AppRunner, host: str, port: int) -> asyncio.Server:
        """Start accepting on host:port for `runner` (set up); close the server to stop."""
        loop = asyncio.get_running_loop()
        self._quiet_accept_failures(loop)
        assert runner.server is not None, "set up the runner before listening"
        return await loop.create_server(self.protocol_factory(runner.server), host, port,
                                        reuse_address=True)

    def _quiet_accept_failures(self, loop: asyncio.AbstractEventLoop) -> None:
        previous = loop.get_exception_handler()

        def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            exc = context.get("exception")
            # asyncio reports each failed accept (EMFILE, ENFILE, ENOBUFS, ENOMEM) with a
            # traceback and retries a second later: under a flood, one line a minute is enough.
            if isinstance(exc, OSError) and exc.errno in _ACCEPT_ERRNOS \
                    and "accept" in str(context.get("message", "")):
                self.ledger.refuse(SCOPE, "accept_failed", f"accept failed: {exc}")
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handle)


_ACCEPT_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
