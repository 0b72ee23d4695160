"""The agent process: opens the stores, serves HTTP, runs the mesh, and shuts down in order.

Every background task is owned by one `asyncio.TaskGroup` here; a task that dies takes the agent
down with its traceback instead of vanishing. Shutdown (SIGINT/SIGTERM or `request_stop`) stops taking
work, hands over leadership and announces leave (mesh), stops serving, then closes the stores, whose
committed rows are already durable.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from node import __version__
from node.address import advertise_address
from node.config import Config
from node.datadir import NodeFiles
from node.http import add_read_only_routes
from storage.hlc import HybridClock
from storage.stores import open_stores

log = logging.getLogger("ringrift.agent")

STORE_NAMES = ("games", "matches", "models")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent:
    def __init__(self, config: Config, files: NodeFiles) -> None:
        self.config = config
        self.files = files
        self.registry = CollectorRegistry()
        self.clock = HybridClock(wall_ms, config.storage.max_clock_offset_ms)
        self._stop = asyncio.Event()
        self._started_monotonic = time.monotonic()
        self.address = ""
        self.stores: Any = None
        self._store_rows = Gauge(
            "ringrift_store_rows", "Rows held per store", ["store"], registry=self.registry
        )
        Gauge(
            "ringrift_node_uptime_seconds", "Seconds since the agent started", registry=self.registry
        ).set_function(self.uptime_s)

    @property
    def node_id(self) -> str:
        return self.files.node_id

    def uptime_s(self) -> float:
        return time.monotonic() - self._started_monotonic

    def request_stop(self) -> None:
        self._stop.set()

    async def status(self) -> dict[str, Any]:
        stores = {}
        for name in STORE_NAMES:
            count, root = await getattr(self.stores, name).summary()
            stores[name] = {"count": count, "root": root}
            self._store_rows.labels(store=name).set(count)
        return {
            "node_id": self.node_id,
            "cluster_id": self.files.cluster.cluster_id,
            "version": __version__,
            "state": "idle",
            "address": self.address,
            "uptime_s": round(self.uptime_s(), 3),
            "stores": stores,
        }

    async def run(self) -> None:
        self._install_signal_handlers()
        self.stores = await open_stores(self.files.path, self.clock, self.node_id)
        runner: web.AppRunner | None = None
        pid_file = self.files.path / "node.pid"
        try:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            add_read_only_routes(app, self.status, self.registry)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, self.config.node.host, self.config.node.port)
            await site.start()
            port = _bound_port(runner) or self.config.node.port
            self.address = advertise_address(self.config, port)
            _write_pid(pid_file)
            log.info(
                "node %s serving on %s:%d (advertised %s), data dir %s",
                self.node_id, self.config.node.host, port, self.address, self.files.path,
            )
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self._stop.wait())
            log.info("stopping node %s", self.node_id)
        finally:
            if runner is not None:
                await runner.cleanup()
            await self.stores.close()
            pid_file.unlink(missing_ok=True)
            log.info("node %s stopped; stores closed", self.node_id)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)


def _bound_port(runner: web.AppRunner) -> int | None:
    for address in runner.addresses:
        if isinstance(address, tuple) and len(address) >= 2:
            return int(address[1])
    return None


def _write_pid(path: Path) -> None:
    path.write_text(f"{os.getpid()}\n", encoding="ascii")
