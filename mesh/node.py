"""One mesh node as a sans-IO core: membership, election and sync composed, with every rule
that ties them together.

`MeshNode` owns the membership, election and sync-scheduler cores and the decisions between
them: authoring (numbering) this node's manifest, adopting the newest voter set any manifest
announces, learning the leader from the leader's own manifest (non-voters), choosing what to
pull from whom, and which peers to remember for the next start. It never awaits, signs, reads
a clock or touches a store: `handle(src, msg, now)`, `tick(now)` and the few commands return
effects, in the order the shell must carry them out (a `SaveState` completes before any
`Send` after it, as etcd-raft's Ready asks):

- `Send`: a message to a peer (mesh.core);
- `SaveState(key, value)`: write one node-state key durably (term and vote, incarnation,
  voter set, the highest proven term, remembered peers);
- `SignManifest(manifest)`: sign this manifest and hand it back through `published`, which
  starts spreading it (and answers whoever doubted this node, on a refutation);
- `Pull(plan)`: run one pull session against `plan.peer` (rows of `plan.stores`, then the
  model blobs we lack when `plan.blobs`) and report through `pull_finished`;
- `LeaderChanged`: who leads, the term or this node's role changed (fencing, duties, metrics);
- `VotersChanged`: this node adopted another voter set;
- `MemberChange`: a member's state or manifest changed (membership's own effect).

The shell feeds it what only I/O can learn: the stores' summaries and whether model blobs are
missing (`set_local`), and the wall clock (`tick(now, wall_ms)`; manifests announce leases in
wall milliseconds). The agent's asyncio shell (mesh/runtime.py) and the simulator
(mesh/sim/cluster.py) run this same class.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from mesh.core import Send
from mesh.election import ELECTION_MESSAGES, Election, ElectionConfig, Persist, Role
from mesh.manifest import Manifest, SignedManifest, StoreSummary
from mesh.membership import (
    MemberChange,
    Membership,
    MembershipConfig,
    MemberView,
    Renew,
    verify_manifest,
)
from mesh.quorum import Notary
from mesh.sync import PullOutcome, PullPlan, SyncConfig, SyncScheduler
from mesh.voters import (
    VoterSet,
    adopt_voters,
    authorised,
    first_voter_set,
    next_voter_set,
    seed_anchors,
)

# Node-state keys (storage's state table) the node core writes.
STATE_INCARNATION = "mesh.incarnation"
STATE_ELECTION = "election.term_vote"
STATE_VOTERS = "election.voters"
STATE_PROVEN_TERM = "election.proven_term"
STATE_PEERS = "mesh.peers"
# Newer voter sets refused for want of a leader's proof, remembered (to count each once).
_MAX_REFUSED_SETS = 1024


# --- effects -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SaveState:
    """Write node-state `key` durably before carrying out any later effect."""

    key: str
    value: Any


@dataclass(frozen=True, slots=True)
class SignManifest:
    """Sign `manifest` with the node key and pass the result to `MeshNode.published`."""

    manifest: Manifest


@dataclass(frozen=True, slots=True)
class Pull:
    """Run one pull session (`mesh.sync.pull_session(plan)`); report via `pull_finished`."""

    plan: PullPlan


@dataclass(frozen=True, slots=True)
class LeaderChanged:
    """The election view changed. `campaign_started`: this node began a pre-vote or vote;
    `term_raised`: the term rose (fence off writes of older terms); `leader_moved`: another
    node (or this one) now leads."""

    leader: str | None
    term: int
    role: Role
    leading: bool  # this node leads with a valid lease
    campaign_started: bool
    term_raised: bool
    leader_moved: bool


@dataclass(frozen=True, slots=True)
class VotersChanged:
    voter_set: VoterSet


Effect = Send | SaveState | SignManifest | Pull | LeaderChanged | VotersChanged | MemberChange


# --- configuration and start-up state ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """The node core's knobs. The runtime fills them from config/node.toml (RuntimeConfig)."""

    membership: MembershipConfig = field(default_factory=MembershipConfig.lan)
    election: ElectionConfig = field(default_factory=ElectionConfig.lan)
    sync: SyncConfig = field(default_factory=SyncConfig)
    # Seconds between anti-entropy rounds (config/node.toml mesh.sync_interval_s).
    sync_interval_s: float = 2.0
    # A leader re-announces its lease in its manifest at most this often when nothing else
    # changed (config/node.toml mesh.lease_announce_s).
    lease_announce_s: float = 30.0
    # Addresses remembered for the next start (config/node.toml mesh.remembered_peers).
    remembered_peers: int = 16
    # Configured voters override the voter set kept in the cluster (operators' escape hatch).
    voters: tuple[str, ...] = ()
    wants_voter: bool = False

    def __post_init__(self) -> None:
        for name in ("sync_interval_s", "lease_announce_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"NodeConfig.{name}={value!r}: expected seconds > 0")
        if not (isinstance(self.remembered_peers, int) and self.remembered_peers >= 0):
            raise ValueError(f"NodeConfig.remembered_peers={self.remembered_peers!r}: expected "
                             "an integer >= 0")

    @property
    def tick_interval(self) -> float:
        """How often the shell calls `tick`: the finest timer of the cores."""
        return min(self.membership.tick_interval, self.election.heartbeat_interval / 2)


@dataclass(frozen=True, slots=True)
class NodeInfo:
    """What this node is and offers; fixed for the life of the process."""

    node_id: str
    public_key: bytes
    address: str
    version: str
    device: str = "cpu"
    device_mem_mb: int = 0
    cores: int = 1


@dataclass(frozen=True, slots=True)
class Persisted:
    """Node state read back from storage at start (`SaveState` wrote it)."""

    incarnation: int = 0
    term: int = 0
    voted_for: str | None = None
    voter_set: VoterSet = VoterSet((), (0, 0))
    peers: tuple[str, ...] = ()
    proven_term: int = 0

    @classmethod
    def from_state(cls, get: Callable[[str], object]) -> Persisted:
        """Parse the stored values (`get(key)`); anything absent or corrupt reads as unset."""
        incarnation = get(STATE_INCARNATION)
        raw_vote = get(STATE_ELECTION)
        term, voted_for = 0, None
        if (isinstance(raw_vote, list) and len(raw_vote) == 2 and type(raw_vote[0]) is int
                and raw_vote[0] >= 0):
            term = raw_vote[0]
            voted_for = raw_vote[1] if isinstance(raw_vote[1], str) else None
        peers = get(STATE_PEERS)
        proven = get(STATE_PROVEN_TERM)
        return cls(
            incarnation=incarnation if type(incarnation) is int and incarnation >= 0 else 0,
            term=term, voted_for=voted_for,
            voter_set=VoterSet.from_state(get(STATE_VOTERS)),
            peers=tuple(p for p in peers if isinstance(p, str)) if isinstance(peers, list)
            else (),
            # Never above the stored term: a proven term is one this node has been in.
            proven_term=proven if type(proven) is int and 0 <= proven <= term else 0,
        )


# --- the node core -------------------------------------------------------------------------


@dataclass(slots=True)
class _Timers:
    membership: float
    election: float
    manifest: float
    sync: float


class MeshNode:
    """The whole protocol of one node; see the module docstring."""

    def __init__(self, info: NodeInfo, config: NodeConfig, persisted: Persisted,
                 rng: random.Random, *, notary: Notary, wall_offset_ms: int = 0,
                 verify: Callable[[SignedManifest], Manifest | None] = verify_manifest) -> None:
        """`notary` signs this node's votes and checks leaders' quorum certificates (it holds
        the node key: Ed25519 signing is a pure function, so the core stays deterministic)."""
        self.info = info
        self.node_id = info.node_id
        self.config = config
        self._rng = rng
        self._verify = verify
        # wall ms = offset + now * 1000; `tick(now, wall_ms)` keeps it current.
        self._wall_offset_ms = wall_offset_ms
        self.scheduler = SyncScheduler(rng, config.sync)
        self.voter_set = persisted.voter_set
        if config.voters:
            self.voter_set = VoterSet(tuple(sorted(config.voters)), (0, 0))
        self.notary = notary
        self.election = Election(self.node_id, frozenset(self.voter_set.voters), config.election,
                                 rng, (persisted.term, persisted.voted_for),
                                 voters_version=self.voter_set.version, notary=notary,
                                 proven_term=persisted.proven_term)
        self._saved_proven_term = persisted.proven_term
        # Newer voter sets announced without a leader's proof: counted once per (author,
        # version) in `voter_sets_refused`.
        self.voter_sets_refused = 0
        self._refused_sets: set[tuple[str, tuple[int, int]]] = set()
        # A restart is a new life: one incarnation above the last, stored before it is used.
        self._incarnation = persisted.incarnation + 1
        self._stored_incarnation = persisted.incarnation
        self._seq = 1
        self._work_state = "idle"
        self._production_model: str | None = None
        self._summaries: dict[str, StoreSummary] = {}
        self._blobs_missing = False
        self._writable = True
        self._remembered = list(persisted.peers)
        self._peers_at_start = persisted.peers
        self._manifest = self._draft(self._incarnation, self._seq)
        self.membership: Membership | None = None
        # The addresses this node joined through: their manifests anchor a first voter set.
        self._seeds: list[str] = []
        self._timers: _Timers | None = None
        self._pulling: PullPlan | None = None
        self._stopping = False
        # The election view last reported in a LeaderChanged: (leader, term, role, leading).
        self._reported = (self.election.leader, self.election.term, self.election.role, False)

    # -- start and commands -------------------------------------------------------------

    @property
    def manifest(self) -> Manifest:
        """The manifest this node announces (the one to sign before `start`)."""
        return self._manifest

    def start(self, signed: SignedManifest, now: float,
              seeds: Iterable[str] = ()) -> list[Effect]:
        """Begin with `signed` (this node's `manifest`, signed); join through `seeds` and the
        peers remembered from the last start."""
        if self.membership is not None:
            raise RuntimeError("MeshNode.start: already started")
        opened = self._verify(signed)
        if opened != self._manifest:
            raise ValueError("MeshNode.start: expected this node's manifest, signed")
        self.membership = Membership(signed, self.config.membership, self._rng, self._verify)
        out: list[Effect] = [SaveState(STATE_INCARNATION, self._incarnation)]
        self._stored_incarnation = self._incarnation
        addresses = [a for a in dict.fromkeys([*seeds, *self._peers_at_start])
                     if a != self.info.address]
        self._seeds = addresses
        if addresses:
            out += self.membership.join(addresses)
        return out

    def join(self, addresses: Iterable[str]) -> list[Effect]:
        """Push-pull with `addresses` (a discovered peer, an operator's `join`)."""
        self._seeds = [a for a in dict.fromkeys([*self._seeds, *addresses])
                       if a != self.info.address]
        return list(self._core().join(self._seeds))

    def discovered(self, node_id: str, address: str) -> list[Effect]:
        """Discovery found `node_id` at `address`: join through it unless it is alive already."""
        member = self._core().member(node_id)
        if member is not None and member.state == "alive":
            return []
        return self.join([address])

    def set_local(self, summaries: Mapping[str, StoreSummary], blobs_missing: bool,
                  writable: bool = True, retry: Iterable[str] = ()) -> None:
        """What the stores hold now (the shell reads them); the next manifest and pull use it.
        Not `writable` (the disk is full): no pulls until it is again. `retry`: stores whose
        rows refused for this node's clock or term are due again, so peers already pulled
        from in full are candidates again."""
        self._summaries = dict(summaries)
        self._blobs_missing = blobs_missing
        self._writable = writable
        for store in retry:
            self.scheduler.uncover(store)

    def set_state(self, state: str) -> None:
        """The work state the next manifest announces (idle, selfplay, training, ...)."""
        self._work_state = state

    def set_production_model(self, sha256: str | None) -> None:
        """The production model the next manifest announces."""
        self._production_model = sha256

    def initialise_voters(self, voters: Iterable[str], now: float) -> list[Effect]:
        """First node of a new cluster: it is the whole voter set (term 0, version 1)."""
        if self.voter_set.voters:
            return []
        return self._adopt(VoterSet(tuple(sorted(voters)), (0, 1)), now)

    def admit_voter(self, now: float) -> list[Effect]:
        """Leader duty: add one node that asked to vote, once the last change has settled."""
        if not self.is_leader(now):
            return []
        change = next_voter_set(self.voter_set, self._core().members(), self.election.term)
        return [] if change is None else self._adopt(change, now)

    def leave(self, now: float) -> list[Effect]:
        """Hand off leadership, announce leave; afterwards the node ignores every input."""
        out: list[Effect] = []
        if self.election.is_leader_with_lease(now):
            out += self._election_step(lambda: self.election.transfer_leadership(now), now)
        out += self._core().leave(now)
        self._stopping = True
        return out

    # -- inputs -------------------------------------------------------------------------

    def handle(self, src: str, msg: object, now: float) -> list[Effect]:
        """A message from `src`: membership (`swim.*`) or election (`raft.*`) gossip."""
        if self._stopping:
            return []
        if isinstance(msg, ELECTION_MESSAGES):
            return self._election_step(lambda: self.election.handle(src, msg, now), now)
        return self._membership_step(self._core().handle(src, msg, now), now)

    def tick(self, now: float, wall_ms: int | None = None) -> list[Effect]:
        """Run every timer that is due; call every `config.tick_interval` seconds."""
        if self._stopping:
            return []
        if wall_ms is not None:
            self._wall_offset_ms = wall_ms - int(now * 1000)
        core = self._core()
        cfg = self.config
        timers = self._timers
        if timers is None:
            timers = self._timers = _Timers(now, now, now + cfg.membership.gossip_interval,
                                            now + self._rng.uniform(0, cfg.sync_interval_s))
        out: list[Effect] = []
        if now >= timers.membership:
            timers.membership = _next(timers.membership, now, core.tick_interval)
            out += self._membership_step(core.tick(now), now)
        if now >= timers.election:
            timers.election = _next(timers.election, now, cfg.election.heartbeat_interval / 2)
            out += self._election_step(lambda: self._election_tick(now), now)
        if now >= timers.manifest:
            timers.manifest = _next(timers.manifest, now, cfg.membership.gossip_interval)
            out += self._adopt_newest_voters(now)
            out += self._remember_peers()
            out += self._refresh_manifest(now)
        if now >= timers.sync:
            timers.sync = _next(timers.sync, now, cfg.sync_interval_s)
            out += self._plan_pull(now)
        return out

    def published(self, signed: SignedManifest, now: float) -> list[Effect]:
        """The manifest of a `SignManifest`, signed: spread it (and refute with it)."""
        core = self._core()
        manifest = self._verify(signed)
        if manifest is None or manifest.node_id != self.node_id:
            raise ValueError("MeshNode.published: expected this node's manifest, signed")
        if manifest.freshness <= core.manifest_of(self.node_id).freshness:  # type: ignore[union-attr]
            return []  # overtaken by a newer one already published
        return list(core.renewed(signed, now))

    def pull_finished(self, plan: PullPlan, outcome: PullOutcome, now: float) -> list[Effect]:
        """The shell ran `plan`; the scheduler learns coverage and backs off failed peers.

        A pull that brought rows starts the next one at once, if another peer's roots still
        differ: while news is spreading, waiting a whole sync interval between pulls would
        make each hop of the epidemic cost an interval. So does a pull that a peer ended (no
        reply, a refusal, rows that fail validation: `outcome.reason`): it cost that pull
        only, the peer is backed off now, and the next pull goes to another peer.
        """
        self.scheduler.finished(plan, outcome, now)
        if self._pulling == plan:
            self._pulling = None
        if (outcome.rows_pulled if outcome.ok else outcome.reason) and not self._stopping:
            return self._plan_pull(now)
        return []

    # -- queries ------------------------------------------------------------------------

    def is_leader(self, now: float) -> bool:
        return self.election.is_leader_with_lease(now)

    @property
    def voters(self) -> tuple[str, ...]:
        return self.voter_set.voters

    @property
    def pulling(self) -> PullPlan | None:
        return self._pulling

    def address_of(self, node_id: str) -> str | None:
        return self._core().address_of(node_id)

    def members(self) -> list[MemberView]:
        return [] if self.membership is None else self.membership.members()

    def lease_until_ms(self, now: float) -> int:
        """Wall-clock end of this node's lease (0 unless it leads with one)."""
        if not self.is_leader(now):
            return 0
        return self._wall_offset_ms + int(self.election.lease_until * 1000)

    def wall_ms(self, now: float) -> int:
        return self._wall_offset_ms + int(now * 1000)

    # -- steps --------------------------------------------------------------------------

    def _core(self) -> Membership:
        if self.membership is None:
            raise RuntimeError("MeshNode: call start() first")
        return self.membership

    def _membership_step(self, outputs: list[object], now: float) -> list[Effect]:
        out: list[Effect] = []
        for output in outputs:
            if isinstance(output, Renew):
                out += self._renew(output.incarnation, now)
            else:
                out.append(output)  # type: ignore[arg-type]
        return out

    def _election_step(self, step: Callable[[], list[object]], now: float) -> list[Effect]:
        out: list[Effect] = []
        for output in step():
            if isinstance(output, Persist):
                out.append(SaveState(STATE_ELECTION, [output.term, output.voted_for]))
            else:
                out.append(output)  # type: ignore[arg-type]
        if self.election.proven_term > self._saved_proven_term:
            # Storage refuses leader-written rows above the highest proven term: keep it.
            self._saved_proven_term = self.election.proven_term
            out.append(SaveState(STATE_PROVEN_TERM, self._saved_proven_term))
        out += self._election_news(now)
        return out

    def _election_news(self, now: float) -> list[Effect]:
        """`LeaderChanged` when the view differs from the last one reported: leader, term,
        role, or whether this node leads with a lease (which also lapses with time alone)."""
        election = self.election
        leader, term, role, _ = self._reported
        view = (election.leader, election.term, election.role, election.is_leader_with_lease(now))
        if view == self._reported:
            return []
        self._reported = view
        campaigning = (Role.PRE_CANDIDATE, Role.CANDIDATE)
        started = election.role in campaigning and (role not in campaigning
                                                    or election.term > term)
        moved = election.leader != leader and election.leader is not None
        return [LeaderChanged(election.leader, election.term, election.role, view[3], started,
                              election.term > term, moved)]

    # -- manifest authoring -------------------------------------------------------------

    def _draft(self, incarnation: int, seq: int, now: float | None = None) -> Manifest:
        election = self.election
        info = self.info
        return Manifest(
            node_id=info.node_id, public_key=info.public_key, address=info.address,
            version=info.version, incarnation=incarnation, seq=seq,
            device=info.device, device_mem_mb=info.device_mem_mb, cores=info.cores,
            state=self._work_state,  # type: ignore[arg-type]
            stores=dict(self._summaries), production_model=self._production_model,
            leader=election.leader, term=election.term,
            lease_until_ms=0 if now is None else self.lease_until_ms(now),
            voters=self.voter_set.voters, voters_version=self.voter_set.version,
            wants_voter=self.config.wants_voter and self.node_id not in self.voter_set.voters,
            quorum=election.quorum,
        )

    def _author(self, now: float) -> list[Effect]:
        """Number and ask to sign the manifest as it stands; the incarnation is stored first."""
        out: list[Effect] = []
        if self._incarnation > self._stored_incarnation:
            out.append(SaveState(STATE_INCARNATION, self._incarnation))
            self._stored_incarnation = self._incarnation
        self._seq += 1
        self._manifest = self._draft(self._incarnation, self._seq, now)
        out.append(SignManifest(self._manifest))
        return out

    def _renew(self, incarnation: int, now: float) -> list[Effect]:
        """Membership refutes a suspicion: re-sign at (at least) that incarnation."""
        self._incarnation = max(self._incarnation, incarnation)
        return self._author(now)

    def _refresh_manifest(self, now: float) -> list[Effect]:
        current = self._manifest
        self._incarnation = max(self._incarnation, self._core().incarnation)
        draft = self._draft(self._incarnation, current.seq, now)
        # Non-voters learn who leads from the leader's manifest. Its lease moves with every
        # heartbeat; re-announcing it that often would put a manifest broadcast on the wire
        # every second for nothing (non-voters never act on a lease), so it is re-announced
        # only every lease_announce_s, besides every change of leader or term.
        lease_stale = (bool(draft.lease_until_ms) and current.lease_until_ms
                       + self.config.lease_announce_s * 1000 < self.wall_ms(now))
        if _same_content(draft, current) and not lease_stale:
            return []
        return self._author(now)

    def _remember_peers(self) -> list[Effect]:
        addresses = sorted(m.address for m in self._core().members()
                           if m.node_id != self.node_id and m.state == "alive")
        remembered = addresses[:self.config.remembered_peers]
        if not remembered or remembered == self._remembered:
            return []
        self._remembered = remembered
        return [SaveState(STATE_PEERS, remembered)]

    # -- leader view and voter set ------------------------------------------------------

    def _election_tick(self, now: float) -> list[object]:
        self._observe_leader_from_manifests(now)
        return list(self.election.tick(now))

    def _observe_leader_from_manifests(self, now: float) -> None:
        """Non-voters learn the leader from the leader's own signed manifest."""
        if self.election.is_voter:
            return
        best: Manifest | None = None
        for member in self._core().members():
            m = member.manifest
            if (member.state == "alive" and m.leader == m.node_id and m.lease_until_ms
                    and (best is None or m.term > best.term)):
                best = m
        if best is not None:
            lease_until = now + (best.lease_until_ms - self.wall_ms(now)) / 1000
            self.election.observe(best.node_id, best.term, lease_until, best.quorum)

    def _adopt_newest_voters(self, now: float) -> list[Effect]:
        if self.config.voters:
            return []
        newest = self.voter_set
        members = self._core().members()
        anchors = [] if newest.voters else seed_anchors(members, self._seeds)
        if anchors:
            # A first set comes from the join seeds' own manifests (mesh/voters.py).
            first = first_voter_set(anchors)
            return [] if first is None else self._adopt(first, now)
        for member in members:
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
        return [] if newest is self.voter_set else self._adopt(newest, now)

    def _adopt(self, voter_set: VoterSet, now: float) -> list[Effect]:
        self.voter_set = voter_set
        self.election = adopt_voters(self.election, voter_set, self._rng)
        return [SaveState(STATE_VOTERS, voter_set.to_state()), VotersChanged(voter_set),
                *self._election_news(now)]

    # -- anti-entropy -------------------------------------------------------------------

    def _plan_pull(self, now: float) -> list[Effect]:
        if self._pulling is not None or not self._writable:
            return []  # one pull at a time; none while writes are paused (a full disk)
        core = self._core()
        peers = {}
        for node_id in core.alive_peers():
            manifest = core.manifest_of(node_id)
            if manifest is not None:
                peers[node_id] = manifest.stores
        plan = self.scheduler.plan(now, self._summaries, peers,
                                   blobs_missing=self._blobs_missing)
        if plan is None:
            return []
        self._pulling = plan
        return [Pull(plan)]


def _next(due: float, now: float, period: float) -> float:
    # Periodic timers advance from when they were due, so a late tick does not stretch them.
    due += period
    return due if due > now else now + period


def _same_content(a: Manifest, b: Manifest) -> bool:
    # lease_until_ms moves with every heartbeat; re-signing on each would flood gossip.
    return replace(a, lease_until_ms=0) == replace(b, lease_until_ms=0) and (
        (a.lease_until_ms == 0) == (b.lease_until_ms == 0)
    )
