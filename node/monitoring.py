"""What operators see of a node, assembled in one place: the reference metrics and their feed,
the drift watch, the operator requests and the cluster view behind the status page."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from prometheus_client import CollectorRegistry

from node import drift
from node.config import Config
from node.drift_watch import DriftWatch
from node.leaderboard import leaderboard, rating_map
from node.metrics_feed import MetricsFeed
from node.metrics_reference import ReferenceMetrics
from node.ops_api import OpsApi
from node.status_view import StatusView

if TYPE_CHECKING:
    from mesh.identity import Identity
    from mesh.runtime import MeshRuntime
    from storage.stores import Stores

# Members and promotion events are re-read for the metric labels this often: a new peer or
# promotion shows under its own label within seconds, and the reads are a handful of rows.
FEED_INTERVAL_S = 5.0


class Monitoring:
    def __init__(self, config: Config, *, identity: Identity, stores: Stores, mesh: MeshRuntime,
                 app: web.Application, registry: CollectorRegistry, version: str,
                 wall_ms: Callable[[], int]) -> None:
        mon = config.monitoring
        self._mesh = mesh
        self._node_id = identity.node_id
        self.metrics = ReferenceMetrics(registry, version=version,
                                        max_remote_hosts=mon.max_remote_hosts,
                                        model_history=mon.model_history,
                                        node_state=lambda: mesh.work_state)
        self.feed = MetricsFeed(self.metrics, stores, identity.node_id, mon.model_history)
        mesh.on_pull(self.feed.pulled)
        self.watch = DriftWatch(stores=stores, transport=mesh.transport, node_id=identity.node_id,
                                metrics=self.metrics,
                                thresholds=drift.Thresholds(mon.drift_max_elo, mon.drift_avg_elo),
                                keep=mon.drift_history, ratings=rating_map, peers=self.peers)
        self.ops = OpsApi(app, identity=identity, watch=self.watch, peers=self.peers,
                          window_ms=int(config.mesh.clock_window_s * 1000), wall_ms=wall_ms,
                          registry=registry)
        self.view = StatusView(stores=stores, leaderboard=leaderboard, watch=self.watch,
                               feed=self.feed)
        self._drift_interval_s = mon.drift_check_interval_s
        self._tasks: list[asyncio.Task[None]] = []

    def peers(self) -> list[tuple[str, str]]:
        """Alive peers as (node_id, address)."""
        return [(m["node_id"], m["address"]) for m in self._mesh.members_view()
                if m["node_id"] != self._node_id and m["state"] == "alive"]

    async def start(self, tasks: asyncio.TaskGroup) -> None:
        """Load the drift history and start the feed and drift loops in the agent's group."""
        await self.watch.load()
        await self.feed.refresh()
        self._tasks = [tasks.create_task(self.feed.run(FEED_INTERVAL_S, self._mesh.members_view)),
                       tasks.create_task(self.watch.run(self._drift_interval_s))]

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()

    async def extend(self, status: dict[str, Any]) -> None:
        await self.view.extend(status)
