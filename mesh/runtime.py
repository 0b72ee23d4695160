"""The asyncio shell of the mesh: it feeds the sans-IO cores and carries out what they return.

One `MeshRuntime` per node owns the membership, election and sync cores, the aiohttp transport
and the node's own signed manifest. Its loops run under the agent's TaskGroup:

- ticks: `membership.tick` and `election.tick` on their tick intervals;
- manifest: re-signs our manifest when what it says changes (store roots, leader view, voters);
- sync: each `sync_interval_s`, the scheduler picks a peer whose roots differ and a pull
  session runs against it; then model blobs the registry names but the disk lacks are fetched;
- voters: adopts the newest voter set seen in any manifest (see mesh/voters.py).

Incoming gossip (`swim.*`, `raft.*`) goes to its core; `sync.*` requests are answered from the
stores. A core's `Persist` is made durable before any message after it is sent.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from mesh import codec
from mesh.core import Send
from mesh.discovery import ZeroconfDiscovery
from mesh.election import Election, ElectionConfig, Persist, Role
from mesh.identity import Identity
from mesh.keyring import Keyring
from mesh.manifest import (
    Manifest,
    ManifestError,
    SignedManifest,
    StoreSummary,
    sign_manifest,
)
from mesh.membership import MemberChange, Membership, MembershipConfig, verify_manifest
from mesh.quorum import Notary
from mesh.sync import (
    PullOutcome,
    PullPlan,
    SyncConfig,
    SyncScheduler,
    answer_async,
    drive_async,
    pull_session,
)
from mesh.sync_messages import SyncReply, SyncRequest
from mesh.transport import MeshTransport, PeerError, TransportConfig
from mesh.voters import (
    VoterSet,
    authorised,
    first_voter_set,
    next_voter_set,
    seed_anchors,
)
from mesh.wire import Wire
from storage.stores import Stores

log = logging.getLogger("ringrift.mesh")

STATE_INCARNATION = "mesh.incarnation"
STATE_ELECTION = "election.term_vote"
STATE_VOTERS = "election.voters"
STATE_PROVEN_TERM = "election.proven_term"
STATE_PEERS = "mesh.peers"
# How often a leader re-announces its lease in its manifest when nothing else changed.
LEASE_ANNOUNCE_S = 30.0
# Addresses remembered for the next start: enough to find the cluster again, few enough to try.
MAX_REMEMBERED_PEERS = 16
_MAX_REFUSED_SETS = 1024


@dataclass(frozen=True, slots=True)
class RuntimeConfig:
    profile: str
    seeds: tuple[str, ...]
    sync_interval_s: float
    clock_window_s: float
    # Configured voters override the voter set kept in the cluster (operators' escape hatch).
    voters: tuple[str, ...] = ()
    wants_voter: bool = False
    zeroconf: bool = False
    transport: TransportConfig = TransportConfig()


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
        profile_wan = config.profile == "wan"
        self.membership_config = MembershipConfig.wan() if profile_wan else MembershipConfig.lan()
        self.election_config = ElectionConfig.wan() if profile_wan else ElectionConfig.lan()
        self.sync_config = SyncConfig()
        self.scheduler = SyncScheduler(self._rng, self.sync_config)
        self.membership: Membership | None = None
        self.election: Election | None = None
        self.voter_set = VoterSet((), (0, 0))
        self._incarnation = 0
        self._seq = 0
        self._manifest: Manifest | None = None
        self._summaries: dict[str, StoreSummary] = {}
        self._state = "idle"
        self._production_model: str | None = None
        self._lock = asyncio.Lock()  # one core step at a time: outputs keep their order
        self._send_tasks: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._loops: list[asyncio.Task[None]] = []
        self._remembered: list[str] = []
        self._seeds: list[str] = []
        self._proven_term = 0
        # Newer voter sets announced without a leader's proof: counted once per (author,
        # version), remembering at most _MAX_REFUSED_SETS of them.
        self.voter_sets_refused = 0
        self._refused_sets: set[tuple[str, tuple[int, int]]] = set()
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
              ).set_function(lambda: self.election.term if self.election else 0)
        Gauge("ringrift_leader_is_self", "1 while this node leads with a valid lease",
              registry=registry).set_function(lambda: float(self.is_leader()))
        Gauge("ringrift_leader_lease_remaining_seconds",
              "Seconds of leader lease left on this node (0 unless it leads)",
              registry=registry).set_function(self._lease_remaining)
        Gauge("ringrift_election_voters", "Voters in the voter set", registry=registry
              ).set_function(lambda: len(self.voters()))
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
        registry.register(_SyncRefusalCollector(self.scheduler))
        registry.register(_FencingCollector(self.stores))
        self._m_invalid = Counter("ringrift_mesh_invalid_messages_total",
                                  "Admitted messages a core could not use, by kind",
                                  ["kind"], registry=registry)
        registry.register(_TrustCollector(self))

    def _count_members(self, state: str) -> int:
        if self.membership is None:
            return 0
        return sum(1 for m in self.membership.members() if m.state == state)

    def _lease_remaining(self) -> float:
        if self.election is None or not self.is_leader():
            return 0.0
        return max(0.0, self.election.lease_until - time.monotonic())

    # --- start-up ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Load persisted state, build the cores and start joining. Call before `run`."""
        state = self.stores.state
        self._incarnation = int(await state.get_state(STATE_INCARNATION, 0)) + 1
        await state.set_state(STATE_INCARNATION, self._incarnation)
        await self._refresh_summaries()
        self.voter_set = VoterSet.from_state(await state.get_state(STATE_VOTERS))
        if self.config.voters:
            self.voter_set = VoterSet(tuple(sorted(self.config.voters)), (0, 0))
        term, voted_for = _term_vote(await state.get_state(STATE_ELECTION))
        proven = await state.get_state(STATE_PROVEN_TERM, 0)
        self._proven_term = proven if type(proven) is int and 0 <= proven <= term else 0
        self._seq = 1
        self._manifest = self._build_manifest(self._incarnation, self._seq)
        signed = sign_manifest(self.identity, self._manifest)
        self.membership = Membership(signed, self.membership_config, self._rng,
                                     verify=verify_manifest, renew=self._renew)
        self.election = Election(self.node_id, frozenset(self.voter_set.voters),
                                 self.election_config, self._rng, (term, voted_for),
                                 voters_version=self.voter_set.version, notary=self.notary,
                                 proven_term=self._proven_term)
        remembered = await state.get_state(STATE_PEERS, [])
        seeds = [s for s in dict.fromkeys([*self.config.seeds, *(remembered or [])])
                 if s != self.address]
        self._seeds = seeds
        if seeds:
            log.info("joining through %s", ", ".join(seeds))
            await self._dispatch(self.membership.join(seeds))
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
        assert self.membership is not None
        member = self.membership.member(node_id)
        if member is not None and member.state == "alive":
            return
        self._seeds = [*dict.fromkeys([*self._seeds, address])]
        async with self._lock:
            await self._dispatch(self.membership.join(self._seeds))

    async def initialise_voters(self, voters: tuple[str, ...]) -> None:
        """First node of a new cluster: it is the whole voter set (term 0, version 1)."""
        if not self.voter_set.voters:
            await self._adopt_voters(VoterSet(tuple(sorted(voters)), (0, 1)))

    # --- queries for the status page ---------------------------------------------------------

    @property
    def proven_term(self) -> int:
        """The highest term this node has seen won by a leader that proved it with a quorum
        certificate: storage refuses leader-written rows (aliases, promotions) above it."""
        return self.election.proven_term if self.election is not None else self._proven_term

    def is_leader(self) -> bool:
        return self.election is not None and self.election.is_leader_with_lease(time.monotonic())

    def voters(self) -> tuple[str, ...]:
        return self.voter_set.voters

    def leader_view(self) -> dict[str, Any]:
        election = self.election
        if election is None:
            return {"leader": None, "term": 0, "lease_until": None, "voters": []}
        lease_ms = self._lease_until_ms()
        return {
            "leader": election.leader,
            "term": election.term,
            "role": str(election.role),
            "lease_until": lease_ms / 1000 if lease_ms else None,
            "voters": list(self.voters()),
        }

    def members_view(self) -> list[dict[str, Any]]:
        if self.membership is None:
            return []
        now = time.monotonic()
        out = []
        for member in self.membership.members():
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
        """`watcher` runs after every step that may have changed who leads (leader duties)."""
        self._leadership_watchers.append(watcher)

    def on_pull(self, watcher: Callable[[str, PullPlan, PullOutcome], None]) -> None:
        """`watcher(peer_address, plan, outcome)` runs after every anti-entropy pull."""
        self._pull_watchers.append(watcher)

    # --- the loops ---------------------------------------------------------------------------

    async def run(self, tasks: asyncio.TaskGroup) -> None:
        """Start the loops in the agent's TaskGroup; they stop when `stop` is called."""
        assert self.membership is not None and self.election is not None
        loops = (
            ("membership", self.membership.tick_interval, self._tick_membership),
            ("election", self.election_config.heartbeat_interval / 2, self._tick_election),
            ("manifest", self.membership_config.gossip_interval, self._refresh_manifest),
            ("sync", self.config.sync_interval_s, self.sync_round),
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

    async def _tick_membership(self) -> None:
        assert self.membership is not None
        async with self._lock:
            outs = self.membership.tick(time.monotonic())
            await self._dispatch(outs)

    async def _tick_election(self) -> None:
        assert self.election is not None
        before = self._election_snapshot()
        async with self._lock:
            self._observe_leader_from_manifests()
            outs = self.election.tick(time.monotonic())
            await self._dispatch(outs)
        await self._after_election_step(*before)

    def _election_snapshot(self) -> tuple[str | None, int, Role]:
        assert self.election is not None
        return self.election.leader, self.election.term, self.election.role

    async def _after_election_step(self, leader: str | None, term: int, role: Role) -> None:
        assert self.election is not None
        if self.election.term > term:
            # Fencing: from now on the registry refuses leader writes of older terms.
            self.stores.models.observe_term(self.election.term)
        if self.election.proven_term > self._proven_term:
            self._proven_term = self.election.proven_term
            await self.stores.state.set_state(STATE_PROVEN_TERM, self._proven_term)
        campaigning = (Role.PRE_CANDIDATE, Role.CANDIDATE)
        if self.election.role in campaigning and (role not in campaigning
                                                  or self.election.term > term):
            self._m_elections.inc()
        if self.election.leader != leader and self.election.leader is not None:
            self._m_leader_changes.inc()
            log.info("leader is now %s (term %d)", self.election.leader, self.election.term)
        for watcher in self._leadership_watchers:
            await watcher()

    # --- incoming ----------------------------------------------------------------------------

    async def _on_gossip(self, sender: str, msg: object) -> None:
        assert self.membership is not None and self.election is not None
        if self._stopping:
            return
        self._m_gossip.labels("in").inc()
        kind = codec.kind_of(msg)
        now = time.monotonic()
        if kind.startswith("swim."):
            async with self._lock:
                await self._dispatch(self.membership.handle(sender, msg, now))
        elif kind.startswith("raft."):
            before = self._election_snapshot()
            async with self._lock:
                await self._dispatch(self.election.handle(sender, msg, now))
            await self._after_election_step(*before)
        else:
            self._m_invalid.labels(kind).inc()

    async def _on_sync(self, sender: str, msg: object) -> object:
        return await answer_async(msg, self.stores.by_name())

    def _blob_path(self, sha: str) -> Path | None:
        models = self.stores.models
        return models.blob_path(sha) if models.has_blob(sha) else None

    # --- outgoing ----------------------------------------------------------------------------

    async def _dispatch(self, outputs: list[object]) -> None:
        """Carry out a core's outputs in order; a Persist completes before later sends."""
        for out in outputs:
            if isinstance(out, Send):
                self._send_later(out)
            elif isinstance(out, Persist):
                await self.stores.state.set_state(STATE_ELECTION, [out.term, out.voted_for])
            elif isinstance(out, MemberChange):
                self._member_changed(out)

    def _send_later(self, out: Send) -> None:
        address = out.address or self._address_of(out.to)
        if address is None:
            return
        self._m_gossip.labels("out").inc()
        # Bound to the destination's id when known: a copy replayed to another node is refused.
        send = self.transport.send(address, out.msg, to=out.to or None)
        task = asyncio.get_running_loop().create_task(send)
        # Owned here until done: send() never raises (it counts failures), so nothing is lost.
        self._send_tasks.add(task)
        task.add_done_callback(self._send_tasks.discard)

    def _address_of(self, node_id: str) -> str | None:
        assert self.membership is not None
        return self.membership.address_of(node_id)

    def _member_changed(self, change: MemberChange) -> None:
        if change.state in ("dead", "left", "suspect"):
            log.info("member %s is %s (incarnation %d)", change.node_id, change.state,
                     change.incarnation)
        else:
            log.debug("member %s is %s (incarnation %d)", change.node_id, change.state,
                      change.incarnation)

    # --- manifest ----------------------------------------------------------------------------

    @property
    def work_state(self) -> str:
        """The node's work state as its manifest announces it (idle, selfplay, ...)."""
        return self._state

    def set_state(self, state: str) -> None:
        self._state = state

    def set_production_model(self, sha: str | None) -> None:
        """The model this node plays with, announced in its manifest."""
        self._production_model = sha

    def _lease_until_ms(self) -> int:
        election = self.election
        if election is None or not self.is_leader():
            return 0
        return self._wall_ms() + int((election.lease_until - time.monotonic()) * 1000)

    def _build_manifest(self, incarnation: int, seq: int) -> Manifest:
        election = self.election
        return Manifest(
            node_id=self.node_id, public_key=self.identity.public_key, address=self.address,
            version=self.version, incarnation=incarnation, seq=seq,
            device=self.device.device, device_mem_mb=self.device.device_mem_mb,
            cores=self.device.cores, state=self._state, stores=dict(self._summaries),
            production_model=self._production_model,
            leader=election.leader if election else None,
            term=election.term if election else 0,
            lease_until_ms=self._lease_until_ms(),
            voters=self.voter_set.voters, voters_version=self.voter_set.version,
            wants_voter=self.config.wants_voter and self.node_id not in self.voter_set.voters,
            quorum=election.quorum if election else {},
        )

    def _renew(self, incarnation: int) -> SignedManifest:
        """Membership refutes a suspicion with a higher incarnation: re-sign at it."""
        self._incarnation = max(self._incarnation, incarnation)
        self._seq += 1
        self._manifest = self._build_manifest(incarnation, self._seq)
        return sign_manifest(self.identity, self._manifest)

    async def _refresh_summaries(self) -> None:
        for name, store in self.stores.by_name().items():
            count, root = await store.summary()
            self._summaries[name] = StoreSummary(count, root)

    async def _refresh_manifest(self) -> None:
        assert self.membership is not None and self._manifest is not None
        await self._refresh_summaries()
        await self._adopt_newest_voters()
        self._incarnation = max(self._incarnation, self.membership.incarnation)
        await self._remember_peers()
        current = self._manifest
        draft = self._build_manifest(self._incarnation, current.seq)
        # Non-voters learn who leads from the leader's manifest. Its lease moves with every
        # heartbeat; re-announcing it that often would put a manifest broadcast on the wire
        # every second for nothing (non-voters never act on a lease), so it is re-announced
        # only every LEASE_ANNOUNCE_S, besides every change of leader or term.
        wall = self._wall_ms()
        lease_stale = (bool(draft.lease_until_ms)
                       and current.lease_until_ms + LEASE_ANNOUNCE_S * 1000 < wall)
        if _same_content(draft, current) and not lease_stale:
            return
        if self._incarnation > int(await self.stores.state.get_state(STATE_INCARNATION, 0)):
            await self.stores.state.set_state(STATE_INCARNATION, self._incarnation)
        async with self._lock:
            # Under the lock: a refutation (`_renew`) cannot slip in between numbering and use.
            self._seq += 1
            self._incarnation = max(self._incarnation, self.membership.incarnation)
            self._manifest = replace(draft, seq=self._seq, incarnation=self._incarnation)
            self.membership.update_manifest(sign_manifest(self.identity, self._manifest))

    async def _remember_peers(self) -> None:
        assert self.membership is not None
        addresses = sorted(m.address for m in self.membership.members()
                           if m.node_id != self.node_id and m.state == "alive")
        remembered = addresses[:MAX_REMEMBERED_PEERS]
        if remembered and remembered != self._remembered:
            await self.stores.state.set_state(STATE_PEERS, remembered)
            self._remembered = remembered

    # --- leader view for non-voters and voter set ----------------------------------------

    def _observe_leader_from_manifests(self) -> None:
        """Non-voters learn the leader from the leader's own signed manifest."""
        assert self.membership is not None and self.election is not None
        if self.election.is_voter:
            return
        now_mono, now_wall = time.monotonic(), self._wall_ms()
        best: Manifest | None = None
        for member in self.membership.members():
            m = member.manifest
            if (member.state == "alive" and m.leader == m.node_id and m.lease_until_ms
                    and (best is None or m.term > best.term)):
                best = m
        if best is not None:
            lease_until = now_mono + (best.lease_until_ms - now_wall) / 1000
            self.election.observe(best.node_id, best.term, lease_until, best.quorum)

    async def _adopt_newest_voters(self) -> None:
        assert self.membership is not None
        if self.config.voters:
            return
        newest = self.voter_set
        anchors = [] if newest.voters else seed_anchors(self.membership.members(), self._seeds)
        if anchors:
            # A first set comes from the join seeds' own manifests (mesh/voters.py).
            first = first_voter_set(anchors)
            if first is not None:
                await self._adopt_voters(first)
            return
        for member in self.membership.members():
            m = member.manifest
            if m.voters_version <= newest.version or not m.quorum:
                continue  # only a proven leader's announcement can move the set
            if authorised(self.voter_set, m, self.notary):
                newest = VoterSet(tuple(m.voters), m.voters_version)
            elif (m.node_id, m.voters_version) not in self._refused_sets:
                if len(self._refused_sets) >= _MAX_REFUSED_SETS:
                    self._refused_sets.clear()
                self._refused_sets.add((m.node_id, m.voters_version))
                self.voter_sets_refused += 1
                log.warning("voter set %s at version %s announced by %s without a leader's "
                            "quorum certificate: refused", ", ".join(m.voters),
                            m.voters_version, m.node_id)
        if newest is not self.voter_set:
            await self._adopt_voters(newest)

    async def _adopt_voters(self, voter_set: VoterSet) -> None:
        assert self.election is not None
        await self.stores.state.set_state(STATE_VOTERS, voter_set.to_state())
        self.voter_set = voter_set
        voters = frozenset(voter_set.voters)
        if len(voters ^ self.election.voters) > 1:
            # We missed changes (new node, long partition): start the core afresh on the new
            # set. It keeps term and vote, and a fresh core withholds its vote for one election
            # timeout as after a restart, so no promise it made can be broken.
            election = self.election
            self.election = Election(self.node_id, voters, self.election_config, self._rng,
                                     (election.term, election.voted_for),
                                     voters_version=voter_set.version, notary=self.notary,
                                     proven_term=election.proven_term)
        else:
            # The version makes voters refuse candidates holding an older set, and moves this
            # node to the writer's term (mesh/election.py, set_voters).
            self.election.set_voters(voters, version=voter_set.version)
        log.info("voter set is now %s (version %s)", ", ".join(voter_set.voters),
                 voter_set.version)

    async def admit_voters(self, term: int) -> bool:
        """Leader duty: add one node that asked to vote, once the last change has settled."""
        assert self.membership is not None
        change = next_voter_set(self.voter_set, self.membership.members(), term)
        if change is None or not self.is_leader():
            return False
        await self._adopt_voters(change)
        return True

    # --- anti-entropy ------------------------------------------------------------------------

    async def sync_round(self) -> PullOutcome | None:
        """One anti-entropy round: pull from one peer whose roots differ (and missing blobs)."""
        assert self.membership is not None
        if self.stores.db.full:
            return None  # writes are paused until space is back (node/disk.py)
        for name, store in self.stores.by_name().items():
            if store.retry_due():
                self.scheduler.uncover(name)
        await self._refresh_summaries()
        peers = {}
        for node_id in self.membership.alive_peers():
            manifest = self.membership.manifest_of(node_id)
            if manifest is not None:
                peers[node_id] = manifest.stores
        blobs_missing = bool(await self.stores.models.missing_blobs())
        outcome = None
        # A pull a peer ended (no reply, refusal, bad rows) cost only that pull: the scheduler
        # now backs that peer off, so the next plan, made at once, goes to another.
        while (plan := self.scheduler.plan(time.monotonic(), self._summaries, peers,
                                           blobs_missing=blobs_missing)) is not None:
            outcome = await drive_async(pull_session(plan, self.sync_config),
                                        self.stores.by_name(), self._ask, self._fetch_blob)
            self.scheduler.finished(plan, outcome, time.monotonic())
            self._m_sync_rounds.labels("ok" if outcome.ok else "failed").inc()
            self._m_rows_pulled.inc(outcome.rows_pulled)
            self._m_blobs_pulled.inc(outcome.blobs_fetched)
            address = self._address_of(plan.peer) or plan.peer
            for watcher in self._pull_watchers:
                watcher(address, plan, outcome)
            if outcome.ok:
                log.debug("pulled %d rows, %d blobs from %s", outcome.rows_pulled,
                          outcome.blobs_fetched, plan.peer)
                break
            log.info("pull from %s stopped in %s (%s): %s", plan.peer, outcome.failed,
                     outcome.reason, outcome.error)
        return outcome

    async def _ask(self, peer: str, request: SyncRequest) -> SyncReply | None:
        """One sync request, retried: requests are reads, so a repeat is harmless."""
        address = self._address_of(peer)
        if address is None:
            return None
        for attempt in range(1, self.sync_config.request_attempts + 1):
            try:
                reply = await self.transport.request(
                    address, request, to=peer, timeout_s=self.sync_config.request_timeout_s)
            except PeerError as exc:
                log.debug("sync request to %s failed (attempt %d): %s", peer, attempt, exc)
                continue
            return reply  # type: ignore[return-value]
        return None

    async def _fetch_blob(self, peer: str, sha: str) -> bool:
        address = self._address_of(peer)
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
        assert self.membership is not None and self.election is not None
        now = time.monotonic()
        async with self._lock:
            if self.election.is_leader_with_lease(now):
                log.info("handing off leadership (term %d)", self.election.term)
                await self._dispatch(self.election.transfer_leadership(now))
            await self._dispatch(self.membership.leave(now))
            self._stopping = True
        for loop in self._loops:
            loop.cancel()
        if self._send_tasks:
            await asyncio.wait(list(self._send_tasks), timeout=2.0)
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

    def __init__(self, scheduler: SyncScheduler) -> None:
        self._scheduler = scheduler

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = CounterMetricFamily("ringrift_sync_refusals",
                                     "Pulls a peer ended by a bad or missing answer, by reason",
                                     labels=["reason"])
        for reason, count in sorted(self._scheduler.refusals.items()):
            family.add_metric([reason], count)
        yield family


def _term_vote(raw: object) -> tuple[int, str | None]:
    if isinstance(raw, list) and len(raw) == 2 and isinstance(raw[0], int):
        voted = raw[1] if isinstance(raw[1], str) else None
        return raw[0], voted
    return 0, None


def _same_content(a: Manifest, b: Manifest) -> bool:
    # lease_until_ms moves with every heartbeat; re-signing on each would flood gossip.
    return replace(a, lease_until_ms=0) == replace(b, lease_until_ms=0) and (
        (a.lease_until_ms == 0) == (b.lease_until_ms == 0)
    )
