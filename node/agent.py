"""The agent process: opens the stores, serves HTTP, runs the mesh, and shuts down in order.

Every background task is owned by one `asyncio.TaskGroup` here; a task that dies takes the agent
down with its traceback instead of vanishing. Shutdown (SIGINT/SIGTERM or `request_stop`) stops taking
work, hands over leadership and announces leave (mesh), stops serving, then closes the stores, whose
committed rows are already durable.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import os
import signal
import time
from concurrent.futures import ProcessPoolExecutor
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge

from mesh.http_limits import ConnectionGuard, ServerLimits
from mesh.keyring import Keyring
from mesh.runtime import MeshRuntime, RuntimeConfig, detect_device
from mesh.transport import TransportConfig
from node import __version__
from node.address import advertise_address
from node.config import Config
from node.datadir import PID_FILE, DataDirError, NodeFiles, read_cluster
from node.disk import DiskWatch
from node.importer.ops_action import ImportAction
from node.http import add_read_only_routes
from node.leader import LeaderDuties
from node.monitoring import Monitoring
from node.pipeline import LeaderPipeline, settings_from_config
from node.refusal_metrics import RefusalCollector
from node.replay_check import ReplayChecker
from node.resources import Guard, Limits, read_usage
from node import local_games
from node.selfplay import IdleScheduler, SelfplayMetrics, SelfplayWorker
from storage.admission import RowPolicy
from storage.database import DB_FILE, DatabaseCorruptError
from storage.game_checks import GameChecks
from node.evaluation_work import EvaluationWorker
from storage.hlc import HybridClock
from storage.stores import Stores, open_stores

log = logging.getLogger("ringrift.agent")

STORE_NAMES = ("games", "matches", "models")
# Container allocations between young collections (see `Agent.run`).
GC_YOUNG_THRESHOLD = 200_000


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Agent:
    def __init__(self, config: Config, files: NodeFiles) -> None:
        self.config = config
        self.files = files
        self.registry = CollectorRegistry()
        self.clock = HybridClock(wall_ms, config.storage.max_clock_offset_ms)
        self._stop = asyncio.Event()
        # Evaluation games are pure Python: played in a child process, they leave the
        # interpreter lock to the mesh (heartbeats, leases). Spawned, not forked: a fork of a
        # process running asyncio and torch threads can deadlock.
        self._games_pool = ProcessPoolExecutor(max_workers=1,
                                               mp_context=multiprocessing.get_context("spawn"))
        self._started_monotonic = time.monotonic()
        self.address = ""
        self.stores: Any = None
        self.mesh: MeshRuntime | None = None
        self.duties: LeaderDuties | None = None
        self.disk: DiskWatch | None = None
        self.game_checks: GameChecks | None = None
        self.monitoring: Monitoring | None = None
        self.scheduler: IdleScheduler | None = None
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
        status: dict[str, Any] = {
            "node_id": self.node_id,
            "cluster_id": self.files.cluster.cluster_id,
            "version": __version__,
            "state": self.mesh.work_state if self.mesh is not None else "idle",
            "address": self.address,
            "uptime_s": round(self.uptime_s(), 3),
            "stores": stores,
            "disk_full": self.stores.db.full,
        }
        if self.game_checks is not None:
            count, origins = await self.game_checks.quarantined()
            status["games_quarantined"] = {"count": count, "origins": origins}
        if self.scheduler is not None:
            status["selfplay"] = self.scheduler.view()
            status["device"] = self.scheduler.worker.device
            status["production_model"] = self.scheduler.worker.production_sha
        if self.mesh is not None:
            status.update(self.mesh.leader_view())
            status["members"] = self.mesh.members_view()
            status["leader_duties"] = self.duties is not None and self.duties.active
            status["leader_duty_status"] = {} if self.duties is None else self.duties.status()
        if self.monitoring is not None:
            await self.monitoring.extend(status)
        return status

    async def run(self) -> None:
        self._install_signal_handlers()
        self.stores = await self._open_stores()
        self.disk = DiskWatch(self.stores.db, self.config.storage.disk_retry_s)
        self.game_checks = GameChecks(self.stores.db)
        disk = self.disk
        self.registry.register(RefusalCollector(self.stores, lambda: disk.pauses))
        runner: web.AppRunner | None = None
        listener: asyncio.Server | None = None
        pid_file = self.files.path / PID_FILE
        try:
            app = web.Application(client_max_size=64 * 1024 * 1024)
            add_read_only_routes(app, self.status, self.registry)
            self.address = advertise_address(self.config, self.config.node.port)
            self.mesh = self._build_mesh(app)
            self.monitoring = Monitoring(
                self.config, identity=self.files.identity, stores=self.stores, mesh=self.mesh,
                app=app, registry=self.registry, version=__version__, wall_ms=wall_ms)
            self.monitoring.ops.add_action("import", ImportAction(self.stores))
            local_games.add_route(app, self.files.identity, self.stores.games,
                                  int(self.config.mesh.clock_window_s * 1000), wall_ms)
            self.scheduler = self._build_scheduler(self.mesh)
            guard = ConnectionGuard(ServerLimits(self.config.node.max_connections,
                                                 self.config.node.idle_timeout_s),
                                    self.stores.refusals)
            runner = web.AppRunner(app, access_log=None, **guard.runner_kwargs())
            await runner.setup()
            listener = await guard.listen(runner, self.config.node.host, self.config.node.port)
            _write_pid(pid_file)
            log.info(
                "node %s serving on %s:%d (advertised %s), data dir %s",
                self.node_id, self.config.node.host, self.config.node.port, self.address,
                self.files.path,
            )
            await self.mesh.start()
            mesh = self.mesh
            # The highest term a leader proved it won (quorum certificate, mesh/quorum.py).
            self.stores.models.leader_term_seen = lambda: mesh.proven_term
            if self.files.founder:
                await self.mesh.initialise_voters((self.node_id,))
            self.duties = self._build_duties(self.mesh)
            self.mesh.on_leadership_change(self.duties.update)
            # The cyclic collector, tuned for a process that takes rows in bulk. A young
            # collection comes each time the tracked objects grew by the threshold, and walks
            # all of them: a catch-up holds tens of thousands of decoded rows at a time (none
            # in a cycle), so at the default threshold (700) the collector ran about 8,000
            # times in the benchmark's catch-up (20,000 games, 200,000 match rows), 1.6 to 5 s
            # of the puller's time; at 50,000, 27 times, 1 s; at 200,000, 5 times, 0.3 s.
            # Cyclic garbage (asyncio's, aiohttp's) waits for at most that many objects, tens
            # of MB. What start-up made (modules, torch, the app) lives as long as the agent:
            # frozen, out of every collection's walk.
            gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
            gc.freeze()
            async with asyncio.TaskGroup() as tasks:
                await self.mesh.run(tasks)
                disk_watch = tasks.create_task(disk.run())
                replay_check = tasks.create_task(ReplayChecker(
                    self.game_checks, disk, self.stores.refusals, self.config.replay).run())
                await self.monitoring.start(tasks)
                selfplay = (tasks.create_task(self.scheduler.run())
                            if self.config.selfplay.enabled else None)
                # Evaluation trials are this node's other work: selfplay stops while one runs.
                evaluation = tasks.create_task(EvaluationWorker(
                    self.stores, self.node_id, self.mesh.device.device,
                    self.config.pipeline.max_game_moves, self._work_state, self._games_pool,
                ).run(self.config.pipeline.interval_s))
                await self._stop.wait()
                log.info("stopping node %s", self.node_id)
                self.monitoring.stop()
                if selfplay is not None:
                    selfplay.cancel()
                await self.duties.stop()
                await self.mesh.stop()
                disk_watch.cancel()
                replay_check.cancel()
                evaluation.cancel()
        finally:
            self._games_pool.shutdown(wait=False, cancel_futures=True)
            if listener is not None:
                listener.close()
            if runner is not None:
                await runner.cleanup()
            await self.stores.close()
            pid_file.unlink(missing_ok=True)
            log.info("node %s stopped; stores closed", self.node_id)

    async def _open_stores(self) -> Stores:
        """The stores, or a DataDirError (one line: the file and how to recover) when node.db
        is empty or unreadable: starting anyway would forget this node's term, vote and voter
        set while it keeps its identity, and so could vote twice in one term."""
        cfg, path = self.config, self.files.path / DB_FILE
        recover = (f"restore {path} from a backup, or move it aside (with any {DB_FILE}-wal "
                   f"and {DB_FILE}-shm) to start this node with empty stores that re-sync from "
                   "peers")
        if path.exists() and path.stat().st_size == 0:
            raise DataDirError(f"{path} is empty (0 bytes) while {self.files.path} holds node "
                               f"{self.node_id}; {recover}")
        policy = RowPolicy(clock_window_ms=cfg.storage.max_clock_offset_ms,
                           max_model_bytes=cfg.storage.max_model_mib << 20)
        try:
            return await open_stores(self.files.path, self.clock, self.node_id, policy,
                                     cfg.storage.max_db_mib << 20)
        except DatabaseCorruptError as exc:
            raise DataDirError(f"{exc}; {recover}") from None

    def _build_mesh(self, app: web.Application) -> MeshRuntime:
        return MeshRuntime(
            identity=self.files.identity,
            cluster_id=self.files.cluster.cluster_id,
            secrets=self.files.cluster.secrets,
            address=self.address,
            version=__version__,
            stores=self.stores,
            app=app,
            registry=self.registry,
            config=runtime_config(self.config, self.files.join_peers, self.files.wants_voter),
            device=detect_device(),
            wall_ms=wall_ms,
        )

    def _build_scheduler(self, mesh: MeshRuntime) -> IdleScheduler:
        r = self.config.resources
        limits = {"disk": Limits(r.disk_warn, r.disk_stop), "ram": Limits(r.ram_warn, r.ram_stop),
                  "gpu": Limits(r.gpu_warn, r.gpu_stop)}
        device = mesh.device.device
        guard = Guard(limits, lambda: read_usage(self.files.path, device))
        metrics = SelfplayMetrics(self.registry)
        worker = SelfplayWorker(self.stores, self.config.selfplay, device, metrics,
                                node_id=self.node_id)

        def announce(state: str) -> None:
            mesh.set_state(state)
            mesh.set_production_model(worker.production_sha)

        return IdleScheduler(worker, guard, self.config.selfplay, metrics, announce)

    def _build_duties(self, mesh: MeshRuntime) -> LeaderDuties:
        duties = LeaderDuties(mesh.is_leader, lambda: mesh.election.term if mesh.election else 0,
                              retry_s=self.config.leader.duty_retry_s,
                              retry_max_s=self.config.leader.duty_retry_max_s,
                              registry=self.registry)
        duties.add("admit_voters", self._admit_voters_duty)
        pipeline = LeaderPipeline(
            self.stores, settings_from_config(self.config), self.node_id, self.registry,
            device=mesh.device.device,
            metrics=self.monitoring.metrics if self.monitoring is not None else None,
            nodes=self._evaluation_nodes, pool=self._games_pool, hold=self._holding)
        duties.add("pipeline", pipeline.duty)
        return duties

    def _work_state(self, state: str) -> None:
        """Work the leader assigned starts or ends: the idle scheduler holds selfplay off while
        it runs and announces the state; without selfplay the state is announced directly."""
        assert self.mesh is not None and self.scheduler is not None
        if not self.config.selfplay.enabled:
            self.mesh.set_state(state)
        elif state == "idle":
            self.scheduler.release()
        else:
            self.scheduler.assign(state)

    @contextlib.asynccontextmanager
    async def _holding(self, state: str) -> AsyncIterator[None]:
        """Leader work on this node (training, its own evaluation and watch games): selfplay
        stops before the block runs and the node announces the state meanwhile."""
        assert self.mesh is not None and self.scheduler is not None
        if self.config.selfplay.enabled:
            async with self.scheduler.holding(state):
                yield
            return
        self.mesh.set_state(state)
        try:
            yield
        finally:
            self.mesh.set_state("idle")

    def _evaluation_nodes(self) -> list[str]:
        """Nodes the leader may assign evaluation trials to: itself and every alive member."""
        assert self.mesh is not None
        alive = {m["node_id"] for m in self.mesh.members_view() if m["state"] == "alive"}
        return sorted(alive | {self.node_id})

    async def _admit_voters_duty(self, term: int) -> None:
        """Grow the voter set by nodes that joined with --voter, one at a time."""
        assert self.mesh is not None
        while True:
            if await self.mesh.admit_voters(term):
                log.info("admitted a voter in term %d: %s", term, ", ".join(self.mesh.voters()))
            await asyncio.sleep(1.0)

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_stop)
        loop.add_signal_handler(signal.SIGHUP, self.reload_keys)

    def reload_keys(self) -> None:
        """Re-read the cluster keyring (`ringrift-node keys` rotates it, then sends SIGHUP)."""
        try:
            cluster = read_cluster(self.files.path)
        except DataDirError as exc:
            log.error("keys not reloaded, keeping the current ones: %s", exc)
            return
        if self.mesh is not None:
            self.mesh.wire.keyring = Keyring(cluster.secrets)
        self.files = replace(self.files, cluster=cluster)
        log.info("cluster keys reloaded: %d installed", len(cluster.secrets))


def runtime_config(cfg: Config, join_peers: tuple[str, ...], wants_voter: bool) -> RuntimeConfig:
    """What the mesh runtime is told: the node's configuration, and the peers it joined by."""
    return RuntimeConfig(
        profile=cfg.mesh.profile,
        seeds=tuple(dict.fromkeys((*cfg.mesh.seeds, *join_peers))),
        sync_interval_s=cfg.mesh.sync_interval_s,
        clock_window_s=cfg.mesh.clock_window_s,
        voters=cfg.election.voters,
        wants_voter=wants_voter,
        zeroconf=cfg.mesh.zeroconf,
        lease_announce_s=cfg.mesh.lease_announce_s,
        remembered_peers=cfg.mesh.remembered_peers,
        stores_refresh_s=cfg.mesh.stores_refresh_s,
        sync=cfg.sync,
        transport=TransportConfig(body_timeout_s=cfg.mesh.body_timeout_s,
                                  bodies_in_flight_bytes=cfg.mesh.bodies_in_flight_mib << 20),
    )


def _write_pid(path: Path) -> None:
    path.write_text(f"{os.getpid()}\n", encoding="ascii")
