"""The asyncio shell of the mesh: it runs the node core (`mesh.node.MeshNode`) and carries out
the effects it returns. Nothing here decides protocol behaviour.

One `MeshRuntime` per node owns the core, the aiohttp transport and the node's keys. Its loops
run under the agent's TaskGroup:

- tick: `MeshNode.tick` every `tick_interval` (membership, election, manifest, sync timers);
- stores: every `stores_refresh_s`, reads the stores' summaries and missing blobs for the core
  and the `ringrift_store_rows` gauge (so /metrics is current without anyone asking for status).

Incoming gossip (`swim.*`, `raft.*`) goes to the core; `sync.*` requests are answered from the
stores (mesh.sync's responder). Effects run in order under one lock: `SaveState` is durable
before any later `Send` leaves, `SignManifest` is signed and handed straight back, `Pull` runs a
pull session as an owned task and reports its outcome to the core.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mesh import codec
from mesh.core import Send
from mesh.defaults import default
from mesh.discovery import ZeroconfDiscovery
from mesh.election import Election, ElectionConfig
from mesh.identity import Identity
from mesh.keyring import Keyring
from mesh.manifest import ManifestError, StoreSummary, sign_manifest
from mesh.membership import MemberChange, Membership, MembershipConfig
from mesh.node import (
    STATE_ELECTION,
    STATE_INCARNATION,
    STATE_PEERS,
    STATE_PROVEN_TERM,
    STATE_VOTERS,
    Effect,
    LeaderChanged,
    MeshNode,
    NodeConfig,
    NodeInfo,
    Persisted,
    Pull,
    SaveState,
    SignManifest,
    VotersChanged,
)
from mesh.quorum import Notary
from mesh.sync import PullOutcome, PullPlan, SyncConfig, answer_async, drive_async, pull_session
from mesh.sync_messages import SyncReply, SyncRequest
from mesh.transport import MeshTransport, PeerError, TransportConfig
from mesh.wire import Wire
from storage.stores import Stores

log = logging.getLogger("ringrift.mesh")


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    """What the runtime is told at start; every default is config/node.toml's (mesh.defaults)."""

    profile: str = default("mesh", "profile")
    seeds: tuple[str, ...] = ()
    sync_interval_s: float = default("mesh", "sync_interval_s")
    clock_window_s: float = default("mesh", "clock_window_s")
    # Configured voters override the voter set kept in the cluster (operators' escape hatch).
    voters: tuple[str, ...] = ()
    wants_voter: bool = False
    zeroconf: bool = default("mesh", "zeroconf")
    lease_announce_s: float = default("mesh", "lease_announce_s")
    remembered_peers: int = default("mesh", "remembered_peers")
    stores_refresh_s: float = default("mesh", "stores_refresh_s")
    sync: SyncConfig = field(default_factory=SyncConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)

    def node_config(self) -> NodeConfig:
        wan = self.profile == "wan"
        return NodeConfig(
            membership=MembershipConfig.wan() if wan else MembershipConfig.lan(),
            election=ElectionConfig.wan() if wan else ElectionConfig.lan(),
            sync=self.sync, sync_interval_s=self.sync_interval_s,
            lease_announce_s=self.lease_announce_s, remembered_peers=self.remembered_peers,
            voters=self.voters, wants_voter=self.wants_voter,
        )


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    device: str
    device_mem_mb: int
    cores: int


def detect_device() -> DeviceInfo:
    """What this box offers selfplay. Looks for an NVIDIA driver before importing torch: on a
    CPU box the import would only cost start-up time."""
    cores = os.cpu_count() or 1
    if Path("/proc/driver/nvidia/gpus").is_dir():
        try:
            import torch

            if torch.cuda.is_available():
                props = torch.cuda.get_device_properties(0)
                return DeviceInfo("cuda", int(props.total_memory // (1 << 20)), cores)
        except (ImportError, RuntimeError, AssertionError) as exc:
            # A broken driver or torch build must not stop the node: it runs on the CPU.
            log.warning("CUDA driver present but unusable (%s); using cpu", exc)
    return DeviceInfo("cpu", 0, cores)


class MeshRuntime:
    def __init__(
        self,
        *,
        identity: Identity,
        cluster_id: str,
        secrets: tuple[bytes, ...],
        address: str,
        version: str,
        stores: Stores,
        app: web.Application,
        registry: CollectorRegistry,
        config: RuntimeConfig,
        device: DeviceInfo,
        wall_ms: Callable[[], int],
        rng: random.Random | None = None,
    ) -> None:
        self.identity = identity
        self.node_id = identity.node_id
        self.address = address
        self.version = version
        self.stores = stores
        self.config = config
        self.device = device
        self._wall_ms = wall_ms
        self._rng = rng or random.Random()
        self.notary = Notary(identity)
        self.wire = Wire(cluster_id, identity, Keyring(secrets),
                         window_ms=int(config.clock_window_s * 1000))
        self.transport = MeshTransport(
            app, self.wire, on_gossip=self._on_gossip, on_sync=self._on_sync,
            blob_path=self._blob_path, registry=registry, config=config.transport,
            ledger=stores.refusals,
        )
        self.node_config = config.node_config()
        self.node: MeshNode | None = None
        self._work_state = "idle"
        self._production_model: str | None = None
        self._local: tuple[dict[str, StoreSummary], bool, bool, list[str]] = ({}, False, True,
                                                                              [])
        self._lock = asyncio.Lock()  # one core step at a time: effects keep their order
        self._tasks: set[asyncio.Task[Any]] = set()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self.discovery: ZeroconfDiscovery | None = None
        self._leadership_watchers: list[Callable[[], Awaitable[None]]] = []
        self._pull_watchers: list[Callable[[str, PullPlan, PullOutcome], None]] = []
        self._metrics(registry)

    # --- metrics -----------------------------------------------------------------------------

    def _metrics(self, registry: CollectorRegistry) -> None:
        members = Gauge("ringrift_mesh_members", "Members by state in this node's view",
                        ["state"], registry=registry)
        for state in ("alive", "suspect", "dead", "left"):
            members.labels(state).set_function(lambda s=state: self._count_members(s))
        Gauge("ringrift_leader_term", "Current election term", registry=registry
              ).set_function(lambda: self.node.election.term if self.node else 0)
        Gauge("ringrift_leader_is_self", "1 while this node leads with a valid lease",
              registry=registry).set_function(lambda: float(self.is_leader()))
        Gauge("ringrift_leader_lease_remaining_seconds",
              "Seconds of leader lease left on this node (0 unless it leads)",
              registry=registry).set_function(self._lease_remaining)
        Gauge("ringrift_election_voters", "Voters in the voter set", registry=registry
              ).set_function(lambda: len(self.voters()))
        self._m_store_rows = Gauge("ringrift_store_rows", "Rows held per store", ["store"],
                                   registry=registry)
        self._m_elections = Counter("ringrift_elections_started_total",
                                    "Campaigns (pre-vote or vote) this node started",
                                    registry=registry)
        self._m_leader_changes = Counter("ringrift_leader_changes_total",
                                         "Changes of the leader this node follows",
                                         registry=registry)
        self._m_gossip = Counter("ringrift_gossip_messages_total",
                                 "Gossip messages by direction", ["direction"],
                                 registry=registry)
        self._m_sync_rounds = Counter("ringrift_sync_rounds_total",
                                      "Anti-entropy pull sessions by outcome", ["outcome"],
                                      registry=registry)
        self._m_rows_pulled = Counter("ringrift_sync_rows_pulled_total",
                                      "Rows pulled from peers", registry=registry)
        self._m_blobs_pulled = Counter("ringrift_sync_blobs_pulled_total",
                                       "Model blobs pulled from peers and verified",
                                       registry=registry)
        registry.register(_SyncRefusalCollector(
            lambda: self.node.scheduler.refusals if self.node is not None else {}))
        registry.register(_FencingCollector(self.stores))
        self._m_invalid = Counter("ringrift_mesh_invalid_messages_total",
                                  "Admitted messages a core could not use, by kind",
                                  ["kind"], registry=registry)
        registry.register(_TrustCollector(self))

    def _count_members(self, state: str) -> int:
        return sum(1 for m in self.node.members() if m.state == state) if self.node else 0

    def _lease_remaining(self) -> float:
        if self.node is None or not self.is_leader():
            return 0.0
        return max(0.0, self.node.election.lease_until - time.monotonic())

    # --- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load persisted state, build the node core and start joining. Call before `run`."""
        state = self.stores.state
        values = {key: await state.get_state(key)
                  for key in (STATE_INCARNATION, STATE_ELECTION, STATE_VOTERS, STATE_PEERS,
                              STATE_PROVEN_TERM)}
        await self.refresh_stores()
        info = NodeInfo(self.node_id, self.identity.public_key, self.address, self.version,
                        self.device.device, self.device.device_mem_mb, self.device.cores)
        now = time.monotonic()
        node = MeshNode(info, self.node_config, Persisted.from_state(values.get), self._rng,
                        notary=self.notary, wall_offset_ms=self._wall_ms() - int(now * 1000))
        node.set_local(*self._local)
        node.set_state(self._work_state)
        node.set_production_model(self._production_model)
        self.node = node
        seeds = list(self.config.seeds)
        if seeds:
            log.info("joining through %s", ", ".join(seeds))
        async with self._lock:
            await self._execute(node.start(sign_manifest(self.identity, node.manifest), now,
                                           seeds))
        if self.config.zeroconf:
            await self._start_discovery()

    async def _start_discovery(self) -> None:
        host, _, port = self.address.rpartition(":")
        try:
            # A node reachable only on loopback announces only there (and tests stay local).
            interfaces = [host] if ipaddress.ip_address(host).is_loopback else None
            self.discovery = ZeroconfDiscovery(self.node_id, self.wire.cluster_id, host,
                                               int(port), self._discovered, interfaces)
            await self.discovery.start()
        except (OSError, ValueError) as exc:
            # Discovery only bootstraps; seeds and remembered peers still work without it.
            log.warning("zeroconf discovery unavailable (%s); using seeds only", exc)
            self.discovery = None

    async def _discovered(self, node_id: str, address: str) -> None:
        await self._step(lambda node, now: node.discovered(node_id, address))

    async def initialise_voters(self, voters: tuple[str, ...]) -> None:
        """First node of a new cluster: it is the whole voter set (term 0, version 1)."""
        await self._step(lambda node, now: node.initialise_voters(voters, now))

    # --- queries for the status page ---------------------------------------------------------

    @property
    def election(self) -> Election | None:
        return None if self.node is None else self.node.election

    @property
    def membership(self) -> Membership | None:
        return None if self.node is None else self.node.membership

    @property
    def proven_term(self) -> int:
        """The highest term this node has seen won by a leader that proved it with a quorum
        certificate: storage refuses leader-written rows (aliases, promotions) above it."""
        return 0 if self.node is None else self.node.election.proven_term

    @property
    def voter_sets_refused(self) -> int:
        """Newer voter sets announced without a leader's quorum certificate."""
        return 0 if self.node is None else self.node.voter_sets_refused

    def is_leader(self) -> bool:
        return self.node is not None and self.node.is_leader(time.monotonic())

    def voters(self) -> tuple[str, ...]:
        return () if self.node is None else self.node.voters

    def leader_view(self) -> dict[str, Any]:
        node = self.node
        if node is None:
            return {"leader": None, "term": 0, "lease_until": None, "voters": []}
        lease_ms = node.lease_until_ms(time.monotonic())
        return {
            "leader": node.election.leader,
            "term": node.election.term,
            "role": str(node.election.role),
            "lease_until": lease_ms / 1000 if lease_ms else None,
            "voters": list(self.voters()),
        }

    def members_view(self) -> list[dict[str, Any]]:
        if self.node is None:
            return []
        now = time.monotonic()
        out = []
        for member in self.node.members():
            m = member.manifest
            out.append({
                "node_id": member.node_id,
                "state": member.state,
                "incarnation": member.incarnation,
                "last_heard_s": None if member.last_heard is None
                else round(now - member.last_heard, 3),
                "address": member.address,
                "manifest": {
                    "version": m.version, "state": m.state, "device": m.device,
                    "device_mem_mb": m.device_mem_mb, "cores": m.cores,
                    "stores": {k: {"count": v.count, "root": v.root} for k, v in m.stores.items()},
                    "production_model": m.production_model, "leader": m.leader, "term": m.term,
                },
            })
        return out

    def on_leadership_change(self, watcher: Callable[[], Awaitable[None]]) -> None:
        """`watcher` runs after every step that changed who leads (leader duties)."""
        self._leadership_watchers.append(watcher)

    def on_pull(self, watcher: Callable[[str, PullPlan, PullOutcome], None]) -> None:
        """`watcher(peer_address, plan, outcome)` runs after every anti-entropy pull."""
        self._pull_watchers.append(watcher)

    # --- the loops ---------------------------------------------------------------------------

    async def run(self, tasks: asyncio.TaskGroup) -> None:
        """Start the loops in the agent's TaskGroup; they stop when `stop` is called."""
        assert self.node is not None
        loops = (
            ("tick", self.node_config.tick_interval,
             lambda: self._step(lambda node, now: node.tick(now, self._wall_ms()))),
            ("stores", self.config.stores_refresh_s, self._refresh_local),
        )
        for name, interval, step in loops:
            self._loops.append(tasks.create_task(self._tick_loop(name, interval, step)))

    async def _tick_loop(self, name: str, interval: float,
                         step: Callable[[], Awaitable[None]]) -> None:
        while not self._stopping:
            try:
                await step()
            except (OSError, PeerError, ManifestError, ValueError) as exc:
                # One bad round (a disk hiccup, a peer answering nonsense) must not stop the loop.
                log.warning("%s round failed: %s", name, exc)
            await asyncio.sleep(interval)

    async def refresh_stores(self) -> None:
        """Read the stores' summaries and missing blobs (the core's view, the rows gauge)."""
        summaries = {}
        for name, store in self.stores.by_name().items():
            count, root = await store.summary()
            summaries[name] = StoreSummary(count, root)
            self._m_store_rows.labels(store=name).set(count)
        # A full disk pauses writes (node/disk.py): no pulls until space is back.
        retry = [name for name, store in self.stores.by_name().items() if store.retry_due()]
        self._local = (summaries, bool(await self.stores.models.missing_blobs()),
                       not self.stores.db.full, retry)

    async def _refresh_local(self) -> None:
        await self.refresh_stores()
        if self.node is not None:
            self.node.set_local(*self._local)

    # --- incoming ----------------------------------------------------------------------------

    async def _on_gossip(self, sender: str, msg: object) -> None:
        if self._stopping or self.node is None:
            return
        self._m_gossip.labels("in").inc()
        kind = codec.kind_of(msg)
        if not kind.startswith(("swim.", "raft.")):
            self._m_invalid.labels(kind).inc()
            return
        await self._step(lambda node, now: node.handle(sender, msg, now))

    async def _on_sync(self, sender: str, msg: object) -> object:
        return await answer_async(msg, self.stores.by_name())

    def _blob_path(self, sha: str) -> Path | None:
        models = self.stores.models
        return models.blob_path(sha) if models.has_blob(sha) else None

    # --- effects -----------------------------------------------------------------------------

    async def _step(self, step: Callable[[MeshNode, float], list[Effect]]) -> None:
        """One core step under the lock, its effects carried out; watchers after the lock."""
        assert self.node is not None
        async with self._lock:
            changed = await self._execute(step(self.node, time.monotonic()))
        if changed:
            for watcher in self._leadership_watchers:
                await watcher()

    async def _execute(self, effects: list[Effect]) -> bool:
        """Carry out effects in order; True when the leadership view changed."""
        assert self.node is not None
        changed = False
        for effect in effects:
            if isinstance(effect, Send):
                self._send_later(effect)
            elif isinstance(effect, SaveState):
                await self.stores.state.set_state(effect.key, effect.value)
            elif isinstance(effect, SignManifest):
                signed = sign_manifest(self.identity, effect.manifest)
                changed |= await self._execute(self.node.published(signed, time.monotonic()))
            elif isinstance(effect, Pull):
                self._own(self._pull(effect.plan))
            elif isinstance(effect, LeaderChanged):
                changed = True
                self._leader_changed(effect)
            elif isinstance(effect, VotersChanged):
                log.info("voter set is now %s (version %s)",
                         ", ".join(effect.voter_set.voters), effect.voter_set.version)
            elif isinstance(effect, MemberChange):
                self._member_changed(effect)
        return changed

    def _leader_changed(self, change: LeaderChanged) -> None:
        if change.term_raised:
            # Fencing: from now on the registry refuses leader writes of older terms.
            self.stores.models.observe_term(change.term)
        if change.campaign_started:
            self._m_elections.inc()
        if change.leader_moved:
            self._m_leader_changes.inc()
            log.info("leader is now %s (term %d)", change.leader, change.term)

    def _own(self, coroutine: Awaitable[Any]) -> None:
        """Run `coroutine` as a task held here until it ends (`stop` waits for them)."""
        task = asyncio.get_running_loop().create_task(coroutine)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # send() and _pull() catch what they expect; anything else is a bug: make it loud.
            log.error("mesh task %s failed", task.get_name(), exc_info=task.exception())

    def _send_later(self, out: Send) -> None:
        assert self.node is not None
        address = out.address or self.node.address_of(out.to)
        if address is None:
            return
        self._m_gossip.labels("out").inc()
        # Bound to the destination's id when known: a copy replayed to another node is refused.
        self._own(self.transport.send(address, out.msg, to=out.to or None))

    def _member_changed(self, change: MemberChange) -> None:
        if change.state in ("dead", "left", "suspect"):
            log.info("member %s is %s (incarnation %d)", change.node_id, change.state,
                     change.incarnation)
        else:
            log.debug("member %s is %s (incarnation %d)", change.node_id, change.state,
                      change.incarnation)

    # --- work state for the manifest ---------------------------------------------------------

    @property
    def work_state(self) -> str:
        """The node's work state as its manifest announces it (idle, selfplay, ...)."""
        return self._work_state

    def set_state(self, state: str) -> None:
        """The work state the next manifest announces."""
        self._work_state = state
        if self.node is not None:
            self.node.set_state(state)

    def set_production_model(self, sha256: str | None) -> None:
        """The production model the next manifest announces."""
        self._production_model = sha256
        if self.node is not None:
            self.node.set_production_model(sha256)

    # --- voters ------------------------------------------------------------------------------

    async def admit_voters(self, term: int) -> bool:
        """Leader duty: add one node that asked to vote, once the last change has settled."""
        assert self.node is not None
        before = self.node.voter_set
        if self.node.election.term != term:
            return False
        await self._step(lambda node, now: node.admit_voter(now))
        return self.node.voter_set != before

    # --- anti-entropy ------------------------------------------------------------------------

    async def _pull(self, plan: PullPlan) -> None:
        """Run one pull session the core asked for and report its outcome to the core."""
        try:
            outcome = await drive_async(pull_session(plan, self.config.sync),
                                        self.stores.by_name(), self._ask, self._fetch_blob)
        except (OSError, ValueError) as exc:
            # A store refusing a call (a disk error, a corrupt reply past validation) ends
            # this pull only; the core backs off from the peer.
            outcome = PullOutcome(plan.peer, (), plan.stores[0] if plan.stores else "models",
                                  f"{type(exc).__name__}: {exc}")
        self._m_sync_rounds.labels("ok" if outcome.ok else "failed").inc()
        self._m_rows_pulled.inc(outcome.rows_pulled)
        self._m_blobs_pulled.inc(outcome.blobs_fetched)
        address = (self.node.address_of(plan.peer) if self.node else None) or plan.peer
        for watcher in self._pull_watchers:
            watcher(address, plan, outcome)
        if outcome.ok:
            log.debug("pulled %d rows, %d blobs from %s", outcome.rows_pulled,
                      outcome.blobs_fetched, plan.peer)
        else:
            log.info("pull from %s stopped in %s: %s", plan.peer, outcome.failed, outcome.error)
        await self._refresh_local()
        if not self._stopping:
            await self._step(lambda node, now: node.pull_finished(plan, outcome, now))

    async def _ask(self, peer: str, request: SyncRequest) -> SyncReply | None:
        """One sync request, retried: requests are reads, so a repeat is harmless."""
        assert self.node is not None
        address = self.node.address_of(peer)
        if address is None:
            return None
        for attempt in range(1, self.config.sync.request_attempts + 1):
            try:
                reply = await self.transport.request(
                    address, request, to=peer, timeout_s=self.config.sync.request_timeout_s)
            except PeerError as exc:
                log.debug("sync request to %s failed (attempt %d): %s", peer, attempt, exc)
                continue
            return reply  # type: ignore[return-value]
        return None

    async def _fetch_blob(self, peer: str, sha: str) -> bool:
        assert self.node is not None
        address = self.node.address_of(peer)
        if address is None:
            return False
        try:
            await self.transport.fetch_blob(address, sha, self.stores.models.blob_path(sha))
        except (PeerError, OSError) as exc:
            log.info("blob %s not pulled from %s: %s", sha, peer, exc)
            return False
        return True

    # --- shutdown ----------------------------------------------------------------------------

    async def stop(self) -> None:
        """Hand off leadership, announce leave, let those messages go, close the transport."""
        assert self.node is not None
        if self.is_leader():
            log.info("handing off leadership (term %d)", self.node.election.term)
        async with self._lock:
            await self._execute(self.node.leave(time.monotonic()))
            self._stopping = True
        for loop in self._loops:
            loop.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2.0)
        for task in list(self._tasks):
            task.cancel()
        if self.discovery is not None:
            await self.discovery.close()
        await self.transport.close()


class _TrustCollector(Collector):
    """What the node refused from authenticated peers, and what its signatures cost."""

    def __init__(self, runtime: MeshRuntime) -> None:
        self._runtime = runtime

    def collect(self) -> Iterator[CounterMetricFamily]:
        runtime = self._runtime
        refused = CounterMetricFamily(
            "ringrift_mesh_protocol_refused",
            "Authenticated messages a protocol core refused, by core and reason",
            labels=["core", "reason"])
        election = runtime.election
        for reason, count in (election.refused.items() if election else ()):
            refused.add_metric(["election", reason], count)
        membership = runtime.membership
        for reason, count in (membership.stats.refused.items() if membership else ()):
            refused.add_metric(["membership", reason], count)
        refused.add_metric(["voters", "unauthorised"], runtime.voter_sets_refused)
        yield refused
        signatures = CounterMetricFamily(
            "ringrift_mesh_signatures", "Ed25519 signatures made and checked, by use",
            labels=["use", "op"])
        signatures.add_metric(["envelope", "sign"], runtime.wire.signed)
        signatures.add_metric(["envelope", "verify"], runtime.wire.verified)
        signatures.add_metric(["vote", "sign"], runtime.notary.signed)
        signatures.add_metric(["vote", "verify"], runtime.notary.checked)
        yield signatures


class _FencingCollector(Collector):
    """Leader writes the registry refused for carrying an older term than it has seen."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "ringrift_fencing_refused_writes",
            "Leader writes refused because a newer term had been seen",
            value=self._stores.models.stale_term_total,
        )


class _SyncRefusalCollector(Collector):
    """Pulls a peer ended by a bad or missing answer, by reason (the scheduler counts them)."""

    def __init__(self, refusals: Callable[[], Mapping[str, int]]) -> None:
        self._refusals = refusals

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("ringrift_sync_refusals",
                                     "Pulls a peer ended by a bad or missing answer, by reason",
                                     labels=["reason"])
        for reason, count in sorted(self._refusals().items()):
            family.add_metric([reason], count)
        yield family

