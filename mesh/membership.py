"""Membership and failure detection (SWIM-lite), as a sans-IO core.

Each probe interval a node pings one peer (round-robin over a shuffled list). No ack
within `probe_timeout` -> it asks `indirect_checks` other peers to ping it; still no ack
by the end of the interval -> the peer is *suspect*, which spreads by gossip. A suspect
that does not refute (by signing a manifest with a higher incarnation) before the
suspicion timeout becomes *dead*; dead records are reaped after `reap_after`.

States merge by the SWIM order on `(incarnation, rank)` with rank alive < suspect <
dead < left: alive needs a higher incarnation, suspect and dead win ties. That order is a
join-semilattice (the merge is a max), so replicas converge whatever order, duplication
or loss the updates go through.

News (state changes, newer manifests) is queued and piggybacked on pings, acks and gossip
to `gossip_fanout` random peers each gossip interval, each item `retransmit_mult *
log10(N+1)` times; a periodic push-pull of digests repairs whatever gossip missed and is
also how a node joins.

Lifeguard (as memberlist implements it): a suspicion's timeout starts long
(`suspicion_max_mult` times the short one) and shrinks towards the short one as independent
suspectors confirm it, so a real crash, which every prober confirms, is declared fast while a
lone false suspicion keeps the long time to be refuted; every probe of a suspect carries the
suspicion first (the buddy system: the suspect hears it from whoever probes it); and a node
whose own probes fail (local health) probes more slowly, so an overloaded or badly connected
node does not accuse healthy peers. A node that hears of a suspicion probes the suspect next.

Beyond memberlist: a suspicion travels with its age, so every node's timer runs out
together (detection does not grow by a gossip hop per relay); a node that hears a
suspicion it knows to be refuted answers the sender with the refutation at once (gossip
alone misses a node now and then, and that node would mark a live peer dead); and a
message from a node not in our view brings the next push-pull forward.

Against a peer holding the cluster key (the wire proves who sent what): a suspect, dead or left
claim about a node may put its incarnation at most `MAX_INCARNATION_STEP` beyond the newest
that node signed itself, nothing above `MAX_INCARNATION` is believed, and claims about this
node itself are never taken as fact (a "newer manifest of ours" must carry our signature);
refusals are counted in `stats.refused`.

The core never reads a clock or does I/O: the shell (or the simulator) feeds it
`handle(src, msg, now)` and `tick(now)` and carries out the `Send`s it returns; state
changes are reported as `MemberChange` effects. To refute a suspicion it returns `Renew`:
the owner signs its manifest at that incarnation and hands it back through `renewed`,
which answers the doubters.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from mesh.core import Send
from mesh.manifest import Manifest, ManifestError, SignedManifest, open_manifest
from mesh.membership_messages import (
    MAX_MEMBERS,
    MAX_UPDATES,
    Ack,
    DigestRow,
    Gossip,
    Ping,
    PingReq,
    State,
    SyncReply,
    SyncRequest,
    Update,
)

# SWIM precedence within one incarnation.
RANK: dict[str, int] = {"alive": 0, "suspect": 1, "dead": 2, "left": 3}
_GONE = ("dead", "left")
# Timers fire on the first tick at or after their time; this absorbs float drift from
# adding 0.1 repeatedly so a timer due "at 0.2" is not pushed to the next tick.
_EPS = 1e-9


# Indirect probes we run for others at once. Honest load is about `indirect_checks` per
# probe interval; the bound only stops a peer from growing our relay table without end.
MAX_RELAYS = 256
# Suspectors remembered per suspicion: beyond the confirmations that count, more change
# nothing, and the bound stops a peer from growing the list.
MAX_SUSPECTORS = 16
# Incarnations rise by one per restart or refutation: a node refuting ten times a second for a
# century stays below 2^35. Nothing above this is believed, so refuting (+1) never overflows.
MAX_INCARNATION = 1 << 48
# How far a claim may put a node's incarnation beyond the newest that node signed itself (as
# this node holds it). Only the node raises its incarnation, so an honest claim is at most a
# few refutations ahead of what we heard; a claim far beyond is made up, and believing it
# would mark a live node dead at an incarnation it could never refute.
MAX_INCARNATION_STEP = 64
# Why an authenticated update was not believed; counted in `MembershipStats.refused`.
REFUSALS = ("incarnation_step", "self_claim")


def verify_manifest(signed: SignedManifest) -> Manifest | None:
    """The `verify` a real node passes to `Membership`: the opened manifest, or None."""
    try:
        return open_manifest(signed)
    except ManifestError:
        return None


def supersedes(new: tuple[str, int], old: tuple[str, int]) -> bool:
    """Whether a `(state, incarnation)` claim replaces the one held (the SWIM rules)."""
    return (new[1], RANK[new[0]]) > (old[1], RANK[old[0]])


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Every membership knob. Defaults are hashicorp/memberlist's LAN profile (`lan()`)."""

    # How often each node probes one peer. memberlist LAN: 1 s. A crashed node is first
    # probed after a random wait (every node probes one member a round, so the crashed one is
    # probed about once an interval cluster-wide); at 1 s that wait was the tail of detection
    # (4-8 s before the first suspicion in 3 of 30 seeds at 100 nodes). 0.5 s halves it for
    # one more ping and ack a second per node (~700 bytes with HTTP framing).
    probe_interval: float = 0.5
    # Wait for a direct ack before asking others to probe: half the interval, as memberlist
    # (500 ms of 1 s), far above LAN round trips; Lifeguard's local health stretches it on a
    # node whose probes go unanswered (an overloaded one), so it does not accuse peers.
    probe_timeout: float = 0.25
    # Peers asked to probe indirectly (k). memberlist: 3. Each helper path must survive four
    # hops; three of them make a false suspicion at 10% loss about 1 probe in 130.
    indirect_checks: int = 3
    # Gossip period. memberlist LAN: 200 ms: news reaches 100 nodes in about 5 rounds.
    gossip_interval: float = 0.2
    # Random peers per gossip round. memberlist LAN: 3 (epidemic spread ~ fanout^rounds).
    gossip_fanout: int = 3
    # Budget of updates in one gossip message. memberlist caps UDP packets at 1400 bytes;
    # we ride on HTTP, so 16 KB (about 25 manifests) keeps a join storm moving while
    # staying far below the gossip endpoint's body limit.
    gossip_max_bytes: int = 16 * 1024
    # Each update is sent retransmit_mult * ceil(log10(N+1)) times. memberlist: 4, which
    # makes missing a node vanishingly rare while the load stays O(log N).
    retransmit_mult: int = 4
    # Suspicion timeout = suspicion_mult * max(1, log10(N)) * probe_interval: the shortest
    # wait, for a suspicion confirmed by others (Lifeguard, below). memberlist LAN uses 4 with
    # 1 s probes (8 s at 100 nodes, detection ~10 s). Before Lifeguard this was 3 x 1 s (6 s
    # at 100 nodes, detection ~8 s); 2 x 0.5 s makes it 2 s at 100 nodes.
    suspicion_mult: float = 2.0
    # Lifeguard: an unconfirmed suspicion waits suspicion_max_mult times the timeout above;
    # each independent confirmation shortens it (logarithmically) down to the timeout above
    # after `suspicion_confirmations` of them. memberlist: 6 with suspicion_mult 4. Here 3
    # keeps the 6 s at 100 nodes that any suspicion had before Lifeguard (no false dead-marks
    # at 10% loss over 30 seeds) for a lone, possibly false, one, while a crash, which every
    # prober confirms within about a probe interval, is declared after 2 s.
    suspicion_max_mult: float = 3.0
    # Confirmations (distinct suspectors besides the first) that bring a suspicion down to
    # the short timeout; fewer when the cluster has fewer other nodes. memberlist: mult - 2.
    suspicion_confirmations: int = 3
    # Local health (Lifeguard's awareness): each failed probe of ours adds 1, each answered
    # one takes 1 off, a suspicion of us we must refute adds 1; probe interval and timeout
    # stretch by (1 + health), capped at awareness_max - 1. memberlist: 8.
    awareness_max: int = 8
    # Full push-pull with one random peer. memberlist LAN: 30 s, scaled up beyond 32 nodes
    # (x(1 + ceil(log2(N/32)))) so the cluster-wide load stays flat.
    push_pull_interval: float = 30.0
    # Dead nodes still get gossip this long, so a node wrongly marked dead (or behind a
    # healed partition) hears it and refutes. memberlist LAN GossipToTheDeadTime: 30 s.
    gossip_to_dead: float = 30.0
    # Every interval, push-pull with one random dead node: rejoins sides of a partition that
    # lasted past gossip_to_dead. Serf's reconnect_interval: 30 s.
    reconnect_interval: float = 30.0
    # Forget dead and left nodes after this long. Serf's reconnect/tombstone timeout: 24 h,
    # long enough to reconnect after a day-long partition; records are ~1 KB each.
    reap_after: float = 24 * 3600.0
    # Pull early when this many pings/acks in a row came from peers whose view hash
    # differs from ours. News reaches everyone within about a second and a node hears ~2
    # pings/acks a second, so 3 mismatches in a row mean we (or they) missed something.
    repair_after: int = 3
    # At most one such early pull per this many seconds, so a busy cluster (views always
    # a little apart) pays at most a digest exchange per node every 10 s.
    repair_interval: float = 10.0
    # Updates per push-pull reply message. 256 (the most a message may carry) keeps a reply
    # to a cluster of up to 256 nodes whole, so it arrives or is lost as one, as it would
    # in one HTTP body; 256 manifests are ~180 KB, within the 512 KB gossip body limit.
    sync_chunk: int = 256
    # Resolution of the timers above: every one of them is a multiple of 100 ms.
    tick_interval: float = 0.1

    def __post_init__(self) -> None:
        for name in ("probe_interval", "probe_timeout", "gossip_interval", "suspicion_mult",
                     "suspicion_max_mult",
                     "push_pull_interval", "gossip_to_dead", "reconnect_interval",
                     "reap_after", "tick_interval", "repair_interval"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        for name in ("indirect_checks", "gossip_fanout", "gossip_max_bytes", "retransmit_mult",
                     "sync_chunk", "repair_after", "awareness_max"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.suspicion_confirmations, int)
                and self.suspicion_confirmations >= 0):
            raise ValueError(f"suspicion_confirmations must be an integer >= 0, got "
                             f"{self.suspicion_confirmations!r}")
        if self.suspicion_max_mult < 1:
            raise ValueError(f"suspicion_max_mult must be >= 1 (the long timeout is never "
                             f"shorter than the short one), got {self.suspicion_max_mult!r}")
        if self.sync_chunk > MAX_UPDATES:
            raise ValueError(f"sync_chunk must be at most {MAX_UPDATES} (updates per message), "
                             f"got {self.sync_chunk}")
        if self.probe_timeout >= self.probe_interval:
            raise ValueError(f"probe_timeout ({self.probe_timeout}) must be shorter than "
                             f"probe_interval ({self.probe_interval}): indirect probes need "
                             "the rest of the interval")

    @classmethod
    def lan(cls) -> MembershipConfig:
        return cls()

    @classmethod
    def wan(cls) -> MembershipConfig:
        """memberlist's WAN profile: slower probes and more patience for long, lossy paths."""
        return cls(probe_interval=5.0, probe_timeout=3.0, gossip_interval=0.5, gossip_fanout=4,
                   suspicion_mult=2.0, push_pull_interval=60.0, gossip_to_dead=60.0)

    def suspicion_timeout(self, n: int, confirmations: int | None = None) -> float:
        """Time a suspicion waits before the node is dead, at `n` live members.

        Without `confirmations`: the shortest (a suspicion confirmed enough times). With it:
        Lifeguard's `max - (max - min) * log(c + 1) / log(k + 1)`, floored at the shortest.
        """
        short = self.suspicion_mult * max(1.0, math.log10(max(n, 1))) * self.probe_interval
        if confirmations is None:
            return short
        long = self.suspicion_max_mult * short
        k = min(self.suspicion_confirmations, max(0, n - 2))
        if k == 0:
            return short
        frac = math.log(confirmations + 1) / math.log(k + 1)
        return max(short, long - (long - short) * frac)

    def retransmit_limit(self, n: int) -> int:
        return self.retransmit_mult * max(1, math.ceil(math.log10(n + 1)))

    def push_pull_period(self, n: int) -> float:
        if n <= 32:
            return self.push_pull_interval
        return self.push_pull_interval * (1 + math.ceil(math.log2(n) - math.log2(32)))


@dataclass(frozen=True, slots=True)
class MemberView:
    """One member as this node sees it."""

    node_id: str
    address: str
    state: State
    incarnation: int
    last_heard: float | None  # `now` of the last message straight from it; None: never
    manifest: Manifest


@dataclass(frozen=True, slots=True)
class MemberChange:
    """Effect: a member's state or manifest changed in this node's view."""

    node_id: str
    state: State
    incarnation: int
    version: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Renew:
    """Effect: sign our manifest at `incarnation` (or higher) and pass it to `renewed`.

    Signing is the owner's (it holds the key and authors the manifest); the core only
    knows that a claim against it needs an incarnation above the claim's.
    """

    incarnation: int


@dataclass(slots=True)
class MembershipStats:
    """Counters for /metrics; they only grow."""

    probes: int = 0
    indirect_probes: int = 0
    suspicions: int = 0
    deaths: int = 0
    refutations: int = 0
    invalid_updates: int = 0
    push_pulls: int = 0
    repairs: int = 0
    refused: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REFUSALS, 0))


@dataclass(slots=True)
class _Record:
    node_id: str
    state: State
    incarnation: int
    signed: SignedManifest
    manifest: Manifest
    version: tuple[int, int]
    last_heard: float | None = None
    state_since: float = 0.0  # suspect/dead/left: when this node's clock would have seen it
    # Suspect: the nodes whose own probes failed, first suspector first (Lifeguard).
    suspectors: list[str] = field(default_factory=list)
    digest: int = 0  # this record's share of the view hash (0 until counted in)


@dataclass(slots=True)
class _Probe:
    target: str
    seq: int
    start: float
    incarnation: int
    acked: bool = False
    indirect_sent: bool = False


@dataclass(slots=True)
class _Relay:
    requester: str
    seq: int
    expires: float


@dataclass(slots=True)
class _Timers:
    probe: float
    gossip: float
    push_pull: float
    reconnect: float
    housekeeping: float


class Membership:
    """SWIM-lite membership of one node. See the module docstring for the protocol.

    `verify(signed)` opens and checks a signed manifest (`verify_manifest` for a real
    node), returning None when it is invalid; it is called only for manifests newer than
    the one held. A `Renew(incarnation)` output asks the owner for its manifest signed at
    that incarnation (`renewed`); later manifests keep it (`update_manifest` refuses a
    version that is not newer than the current one).
    """

    def __init__(
        self,
        self_manifest: SignedManifest,
        config: MembershipConfig,
        rng: random.Random,
        verify: Callable[[SignedManifest], Manifest | None],
    ) -> None:
        manifest = verify(self_manifest)
        if manifest is None:
            raise ValueError("own manifest does not verify")
        self.node_id = manifest.node_id
        self.config = config
        self.tick_interval = config.tick_interval
        self.stats = MembershipStats()
        self._rng = rng
        self._verify = verify
        # Refutation asked of the owner (`Renew`) and not yet signed: the incarnation it
        # needs, the highest already asked for, and who doubted us meanwhile.
        self._renew_to = 0
        self._renew_asked = 0
        self._doubters: set[str] = set()
        self._self = _Record(self.node_id, "alive", manifest.incarnation, self_manifest, manifest,
                             manifest.freshness)
        self._members: dict[str, _Record] = {self.node_id: self._self}
        # XOR of every member's digest: two nodes with equal hashes hold the same view.
        self._self.digest = _record_digest(self._self)
        self._view_hash = self._self.digest
        # Other members' ids in a list (with positions) for O(1) random picks and removal.
        self._others: list[str] = []
        self._position: dict[str, int] = {}
        self._gone: set[str] = set()  # dead or left, awaiting reaping
        self._suspects: dict[str, float] = {}  # node id -> suspicion deadline
        self._queue: dict[str, int] = {}  # node id -> times its news was sent
        self._probe: _Probe | None = None
        self._health = 0  # Lifeguard local health: 0 healthy .. awareness_max - 1
        self._probe_order: list[str] = []
        self._seq = 0
        self._relays: dict[int, _Relay] = {}
        self._timers: _Timers | None = None
        self._seeds: list[str] = []
        self._join_retry_at: float | None = None
        self._join_backoff = config.probe_interval
        self._catching_up = False
        self._catch_up_at: float | None = None
        # A message from a node we do not know means our view missed news: pull soon.
        self._heard_stranger = False
        # Pings/acks in a row whose sender's view hash differed from ours, and the last one.
        self._mismatches = 0
        self._mismatch_peer = ""
        self._repair_after = 0.0

    # -- queries -----------------------------------------------------------------------

    def members(self) -> list[MemberView]:
        """Every known member, this node included, sorted by node id."""
        return [self._view(r) for _, r in sorted(self._members.items())]

    def member(self, node_id: str) -> MemberView | None:
        rec = self._members.get(node_id)
        return None if rec is None else self._view(rec)

    def alive_peers(self) -> list[str]:
        return sorted(n for n in self._others if self._members[n].state == "alive")

    def address_of(self, node_id: str) -> str | None:
        rec = self._members.get(node_id)
        return None if rec is None else rec.manifest.address

    def manifest_of(self, node_id: str) -> Manifest | None:
        rec = self._members.get(node_id)
        return None if rec is None else rec.manifest

    def live_count(self) -> int:
        """Members not dead or left, this node included (the N of the timeouts)."""
        return len(self._members) - len(self._gone)

    @property
    def incarnation(self) -> int:
        return self._self.incarnation

    @property
    def view_hash(self) -> int:
        """XOR of the members' digests: equal on two nodes that hold the same view."""
        return self._view_hash

    # -- commands ----------------------------------------------------------------------

    def join(self, seed_addresses: Iterable[str]) -> list[Send]:
        """Push-pull with each seed by address: they learn us, we learn everyone.

        Until some seed answers, `tick` repeats this, backing off from one probe interval
        to one push-pull interval: a lost join must not leave the node alone, or alone with
        another joiner that reached it first (two clusters that never meet).
        """
        self._seeds = list(seed_addresses)
        self._join_retry_at = None  # the next tick schedules the first retry
        return self._join_sends()

    def _join_sends(self) -> list[Send]:
        request = SyncRequest(digest=self._digest(), updates=[self._update_of(self._self, 0.0)])
        return [Send(to="", msg=request, address=a) for a in self._seeds]

    def update_manifest(self, signed: SignedManifest) -> None:
        """Our own manifest changed (the caller signed it with a higher seq): spread it."""
        manifest = self._verify(signed)
        if manifest is None or manifest.node_id != self.node_id:
            raise ValueError(f"update_manifest needs a valid manifest of {self.node_id}")
        if manifest.freshness <= self._self.version:
            raise ValueError(f"manifest version {manifest.freshness} is not newer than the "
                             f"current {self._self.version}")
        rec = self._self
        rec.signed, rec.manifest, rec.version = signed, manifest, manifest.freshness
        if rec.state == "alive":
            rec.incarnation = manifest.incarnation
        self._changed(rec)

    def renewed(self, signed: SignedManifest, now: float) -> list[Send]:
        """The owner signed the manifest a `Renew` asked for: take it and answer the doubters
        with it at once (the rest hear it by gossip)."""
        manifest = self._verify(signed)
        if manifest is None or manifest.incarnation < self._renew_to:
            raise ValueError(f"renewed manifest must be valid and at incarnation >= "
                             f"{self._renew_to}")
        self.update_manifest(signed)
        update = self._update_of(self._self, now)
        doubters = sorted(self._doubters)
        self._doubters.clear()
        self._renew_to = self._renew_asked = 0
        return [Send(d, Gossip([update])) for d in doubters if d in self._members]

    def leave(self, now: float) -> list[Send]:
        """Announce that we leave: peers mark us left (not dead) and stop probing us."""
        rec = self._self
        rec.state, rec.state_since = "left", now
        self._probe = None
        self._changed(rec)
        update = self._update_of(rec, now)
        return [Send(p, Gossip([update])) for p in self._pick(self.config.gossip_fanout,
                                                              self._gossipable, now)]

    # -- the core ----------------------------------------------------------------------

    def handle(self, src: str, msg: object, now: float) -> list[object]:
        out: list[object] = []
        sender = self._members.get(src)
        if sender is not None and src != self.node_id:
            sender.last_heard = now
            probe = self._probe
            if probe is not None and probe.target == src:
                probe.acked = True  # any direct word from the target proves it is up
        if isinstance(msg, Ping):
            self._apply(src, msg.updates, now, out)
            self._compare_views(src, msg.view)
            out.append(Send(src, Ack(msg.seq, self._piggyback(now), self._view_hash)))
        elif isinstance(msg, Ack):
            self._compare_views(src, msg.view)
            relay = self._relays.pop(msg.seq, None)
            if relay is not None:
                out.append(Send(relay.requester, Ack(relay.seq, view=self._view_hash)))
            elif self._probe is not None and msg.seq == self._probe.seq:
                self._probe.acked = True
            self._apply(src, msg.updates, now, out)
        elif isinstance(msg, PingReq):
            if (msg.target in self._members and msg.target != self.node_id
                    and len(self._relays) < MAX_RELAYS):
                seq = self._next_seq()
                self._relays[seq] = _Relay(src, msg.seq, now + self.config.probe_interval)
                out.append(Send(msg.target, Ping(seq, self._piggyback(now), self._view_hash)))
        elif isinstance(msg, Gossip):
            self._apply(src, msg.updates, now, out)
        elif isinstance(msg, SyncRequest):
            self._apply(src, msg.updates, now, out)
            out.extend(self._answer_sync(src, msg.digest, now))
        elif isinstance(msg, SyncReply):
            self._apply(src, msg.updates, now, out)
            if self._catching_up and self._catch_up_at is not None and self._timers:
                self._catching_up = False  # caught up: back to the regular period
                self._timers.push_pull = now + self._push_pull_period()
            if self._seeds and self.address_of(src) in self._seeds:
                self._seeds = []  # a seed answered: joined
                self._catching_up = True
            wanted = [self._members[n] for n in msg.wanted if n in self._members]
            for chunk in self._chunks([self._update_of(r, now, full=True) for r in wanted]):
                out.append(Send(src, Gossip(chunk)))
        if src not in self._members:
            self._heard_stranger = True  # even what it sent did not introduce it
        if self._renew_to > self._renew_asked:
            self._renew_asked = self._renew_to
            out.append(Renew(self._renew_to))
        return out

    def tick(self, now: float) -> list[object]:
        out: list[object] = []
        cfg = self.config
        timers = self._timers
        if timers is None:
            # Random phases, so nodes started together do not probe and gossip in lockstep.
            rng = self._rng
            timers = self._timers = _Timers(
                probe=now + rng.uniform(0, cfg.probe_interval),
                gossip=now + rng.uniform(0, cfg.gossip_interval),
                push_pull=now + rng.uniform(0, self._push_pull_period()),
                reconnect=now + rng.uniform(0, cfg.reconnect_interval),
                housekeeping=now + cfg.probe_interval)
        active = self._self.state == "alive"
        if self._seeds and self._join_retry_at is None:
            self._join_retry_at = now + self._join_backoff
        elif active and self._seeds and now + _EPS >= self._join_retry_at:
            self._join_retry_at = now + self._join_backoff
            self._join_backoff = min(2 * self._join_backoff, cfg.push_pull_interval)
            out.extend(self._join_sends())
        if self._catching_up and self._catch_up_at is None:
            # News gossiped while we were joining went to peers that did not know us yet;
            # a push-pull soon after (repeated until one is answered) catches up on it
            # instead of waiting a full period.
            self._catch_up_at = now
            timers.push_pull = min(timers.push_pull, now + 2 * cfg.probe_interval)
        if active:
            self._advance_probe(now, out)
            if now + _EPS >= timers.probe:
                timers.probe = max(timers.probe + self._scaled(cfg.probe_interval), now)
                self._start_probe(now, out)
        for node_id, deadline in list(self._suspects.items()):
            if now + _EPS >= deadline:
                self._declare_dead(node_id, now, out)
        if now + _EPS >= timers.gossip:
            timers.gossip = max(timers.gossip + cfg.gossip_interval, now)
            if self._queue:
                for peer in self._pick(cfg.gossip_fanout, self._gossipable, now):
                    updates = self._piggyback(now)
                    if not updates:
                        break
                    out.append(Send(peer, Gossip(updates)))
        if self._heard_stranger and self._catch_up_at is not None:
            # A stranger spoke to us after we joined: news about it passed us by. Pull from
            # a random peer within a couple of probe intervals rather than a full period;
            # at most once per such window however many strangers call.
            self._heard_stranger = False
            timers.push_pull = min(timers.push_pull, now + 2 * cfg.probe_interval)
        if (active and self._mismatches >= cfg.repair_after and now >= self._repair_after
                and self._members.get(self._mismatch_peer) is not None):
            # Our view has differed from every peer we heard lately: pull from the last.
            self._mismatches = 0
            self._repair_after = now + cfg.repair_interval
            self.stats.repairs += 1
            out.append(Send(self._mismatch_peer, SyncRequest(
                self._digest(), [self._update_of(self._self, now)])))
        if active and now + _EPS >= timers.push_pull:
            timers.push_pull = now + (2 * cfg.probe_interval if self._catching_up
                                      else self._push_pull_period())
            for peer in self._pick(1, self._is_alive, now):
                self.stats.push_pulls += 1
                out.append(Send(peer, SyncRequest(self._digest(),
                                                  [self._update_of(self._self, now)])))
        if active and now + _EPS >= timers.reconnect:
            timers.reconnect = now + cfg.reconnect_interval
            dead = sorted(n for n in self._gone if self._members[n].state == "dead")
            if dead:
                peer = self._rng.choice(dead)
                out.append(Send(peer, SyncRequest(self._digest(),
                                                  [self._update_of(self._self, now)])))
        if now + _EPS >= timers.housekeeping:
            timers.housekeeping = now + cfg.probe_interval
            self._housekeeping(now)
        return out

    # -- probing -----------------------------------------------------------------------

    def _start_probe(self, now: float, out: list[object]) -> None:
        target = self._next_probe_target()
        if target is None:
            return
        self.stats.probes += 1
        rec = self._members[target]
        probe = _Probe(target, self._next_seq(), now, rec.incarnation)
        self._probe = probe
        updates = self._piggyback(now)
        if rec.state == "suspect":
            # Lifeguard's buddy system: a suspect hears of it from whoever probes it.
            updates = [self._update_of(rec, now), *(u for u in updates if u.node_id != target)]
        out.append(Send(target, Ping(probe.seq, updates, self._view_hash)))

    def _advance_probe(self, now: float, out: list[object]) -> None:
        probe = self._probe
        if probe is None:
            return
        if probe.acked or probe.target not in self._members:
            if probe.acked:
                self._health = max(0, self._health - 1)
            self._probe = None
            return
        if (not probe.indirect_sent
                and now + _EPS >= probe.start + self._scaled(self.config.probe_timeout)):
            probe.indirect_sent = True
            helpers = self._pick(self.config.indirect_checks,
                                 lambda n, _now: n != probe.target and self._is_alive(n, _now),
                                 now)
            self.stats.indirect_probes += len(helpers)
            out.extend(Send(h, PingReq(probe.seq, probe.target)) for h in helpers)
            # And once more directly, as memberlist's fallback ping does: a lost ping or ack
            # is the common failure, and this path has two hops where a helper's has four.
            out.append(Send(probe.target, Ping(probe.seq, view=self._view_hash)))
        if now + _EPS >= probe.start + self._scaled(self.config.probe_interval):
            self._probe = None
            self._health = min(self.config.awareness_max - 1, self._health + 1)
            rec = self._members[probe.target]
            if rec.incarnation != probe.incarnation:
                return
            if rec.state == "alive":
                self._suspect(rec, now, out)
            elif rec.state == "suspect":
                self._confirm(rec, self.node_id, now)

    def _next_probe_target(self) -> str | None:
        for _ in range(2):
            while self._probe_order:
                node_id = self._probe_order.pop()
                rec = self._members.get(node_id)
                if rec is not None and rec.state in ("alive", "suspect"):
                    return node_id
            # A fresh shuffled round: every member is probed once per round (bounded
            # detection time), in an order peers cannot predict.
            self._probe_order = list(self._others)
            self._rng.shuffle(self._probe_order)
        return None

    # -- state changes -----------------------------------------------------------------

    def _scaled(self, seconds: float) -> float:
        """A probe timer stretched by local health (Lifeguard)."""
        return seconds * (1 + self._health)

    @property
    def health(self) -> int:
        """Lifeguard local health score: 0 while our probes are answered."""
        return self._health

    def _suspect(self, rec: _Record, now: float, out: list[object]) -> None:
        self.stats.suspicions += 1
        self._set_state(rec, "suspect", rec.incarnation, now, 0.0, out, by=self.node_id)
        # Tell the suspect straight away: refuting early is what keeps loss from killing it.
        out.append(Send(rec.node_id, Gossip([self._update_of(rec, now)])))

    def _declare_dead(self, node_id: str, now: float, out: list[object]) -> None:
        rec = self._members[node_id]
        self.stats.deaths += 1
        self._set_state(rec, "dead", rec.incarnation, now, 0.0, out)

    def _set_state(self, rec: _Record, state: State, incarnation: int, now: float,
                   suspected_for: float, out: list[object], by: str = "") -> None:
        rec.state, rec.incarnation = state, incarnation
        node_id = rec.node_id
        self._suspects.pop(node_id, None)
        self._gone.discard(node_id)
        rec.suspectors = []
        if state == "suspect":
            longest = self.config.suspicion_timeout(self.live_count(), 0)
            suspected_for = min(suspected_for, longest)
            rec.state_since = now - suspected_for
            rec.suspectors = [by] if by else []
            self._set_deadline(rec)
            if by != self.node_id and node_id in self._position:
                # Probe it next: our own verdict is a confirmation, or its ack our doubt's end.
                order = self._probe_order
                if node_id in order:
                    order.remove(node_id)
                order.append(node_id)
        elif state in _GONE:
            rec.state_since = now
            self._gone.add(node_id)
        self._changed(rec)
        out.append(MemberChange(node_id, state, incarnation, rec.version))

    def _set_deadline(self, rec: _Record) -> None:
        confirmations = max(0, len(rec.suspectors) - 1)
        timeout = self.config.suspicion_timeout(self.live_count(), confirmations)
        self._suspects[rec.node_id] = rec.state_since + timeout

    def _confirm(self, rec: _Record, by: str, now: float) -> None:
        """`by` suspects `rec` independently: its timeout shortens, and the news spreads."""
        if not by or by in rec.suspectors or len(rec.suspectors) > MAX_SUSPECTORS:
            return
        rec.suspectors.append(by)
        self._set_deadline(rec)
        self._queue[rec.node_id] = 0

    def _apply(self, src: str, updates: list[Update], now: float, out: list[object]) -> None:
        # Claims that a node is suspect or dead which we know to be refuted already: the
        # sender missed the refutation, and its suspicion timer would turn a live node dead.
        # Answering it straight away closes that gap (gossip alone reaches everyone only
        # with high probability).
        answers: list[Update] = []
        for update in updates:
            if update.node_id == self.node_id:
                if self._about_me(update, src):
                    continue  # answered with the renewed manifest (`renewed`)
                if update.state != "alive" and self._self.state == "alive":
                    answers.append(self._update_of(self._self, now))
            elif self._merge(update, now, out):
                answers.append(self._update_of(self._members[update.node_id], now))
        if answers and src != self.node_id:
            out.append(Send(src, Gossip(answers)))

    def _merge(self, u: Update, now: float, out: list[object]) -> bool:
        """Merge one update about another node; True if it is a refuted suspicion."""
        rec = self._members.get(u.node_id)
        signed = rec.version[0] if rec is not None else 0
        # The step bounds bare claims only: a newer manifest is signed by the node itself.
        if (u.incarnation > MAX_INCARNATION or u.version[0] > MAX_INCARNATION
                or (rec is not None and u.state != "alive"
                    and u.incarnation > signed + MAX_INCARNATION_STEP)):
            self.stats.refused["incarnation_step"] += 1
            return False
        if u.manifest is not None and (rec is None or u.version > rec.version):
            manifest = self._verify(u.manifest)
            if (manifest is None or manifest.node_id != u.node_id
                    or manifest.freshness != u.version):
                self.stats.invalid_updates += 1
                return False
            if rec is None:
                if len(self._members) >= MAX_MEMBERS:
                    # Digests must fit in a message; past this the cluster is misconfigured
                    # or someone is minting identities, and either way we stop growing.
                    self.stats.invalid_updates += 1
                    return False
                rec = _Record(u.node_id, u.state, u.incarnation, u.manifest, manifest, u.version)
                self._add(rec)
                self._set_state(rec, u.state, u.incarnation, now, u.suspected_for, out, u.by)
                return False
            rec.signed, rec.manifest, rec.version = u.manifest, manifest, u.version
            if not supersedes((u.state, u.incarnation), (rec.state, rec.incarnation)):
                self._changed(rec)
                out.append(MemberChange(u.node_id, rec.state, rec.incarnation, rec.version))
                return False
        elif rec is None:
            return False  # a claim about a node we cannot address yet; push-pull brings it
        if supersedes((u.state, u.incarnation), (rec.state, rec.incarnation)):
            self._set_state(rec, u.state, u.incarnation, now, u.suspected_for, out, u.by)
            return False
        if u.state == "suspect" and rec.state == "suspect" and u.incarnation == rec.incarnation:
            self._confirm(rec, u.by, now)
        return (u.state in ("suspect", "dead") and rec.state == "alive"
                and rec.incarnation > u.incarnation)

    def _about_me(self, u: Update, src: str) -> bool:
        """Refute a claim about us that would win over our own state; True if we did.

        Nothing others say about this node is taken as fact: a claimed newer manifest must be
        one this node signed (a previous life), and a suspicion may outbid our incarnation by
        at most MAX_INCARNATION_STEP.
        """
        me = self._self
        if me.state == "left":
            return False
        if u.state == "alive":
            if u.version <= me.version:
                return False
            manifest = None if u.manifest is None else self._verify(u.manifest)
            if (manifest is None or manifest.node_id != self.node_id
                    or manifest.freshness != u.version or u.version[0] >= MAX_INCARNATION):
                self.stats.refused["self_claim"] += 1
                return False
            # A manifest of ours newer than what we hold: a previous life of this node.
            self._refute(u.version[0] + 1, src)
            return True
        if u.incarnation < me.incarnation:
            return False
        if u.incarnation > me.incarnation + MAX_INCARNATION_STEP:
            self.stats.refused["self_claim"] += 1
            return False
        self._refute(u.incarnation + 1, src)
        return True

    def _refute(self, incarnation: int, src: str) -> None:
        """Ask the owner (`Renew`, at the end of this step) for our manifest at `incarnation`."""
        if incarnation > self._renew_to:
            self._renew_to = incarnation
            self.stats.refutations += 1
            # Lifeguard: being suspected hints that our own messages are getting lost.
            self._health = min(self.config.awareness_max - 1, self._health + 1)
        if src != self.node_id:
            self._doubters.add(src)

    def _compare_views(self, src: str, view: int) -> None:
        if not view or src == self.node_id:
            return
        if view == self._view_hash:
            self._mismatches = 0
        else:
            self._mismatches += 1
            self._mismatch_peer = src

    def _changed(self, rec: _Record) -> None:
        """`rec`'s state or manifest changed: recount it in the view hash, queue the news."""
        self._view_hash ^= rec.digest
        rec.digest = _record_digest(rec)
        self._view_hash ^= rec.digest
        self._queue[rec.node_id] = 0

    def _add(self, rec: _Record) -> None:
        self._members[rec.node_id] = rec
        self._position[rec.node_id] = len(self._others)
        self._others.append(rec.node_id)
        # Into the current probe round at a random place (as memberlist does): a node that
        # joined a small cluster would otherwise finish a round over the first few members
        # before it ever probes the rest.
        order = self._probe_order
        order.insert(self._rng.randrange(len(order) + 1), rec.node_id)

    def _remove(self, node_id: str) -> None:
        self._view_hash ^= self._members.pop(node_id).digest
        pos = self._position.pop(node_id)
        last = self._others.pop()
        if last != node_id:
            self._others[pos] = last
            self._position[last] = pos
        self._gone.discard(node_id)
        self._suspects.pop(node_id, None)
        self._queue.pop(node_id, None)

    def _housekeeping(self, now: float) -> None:
        for seq in [s for s, r in self._relays.items() if r.expires <= now]:
            del self._relays[seq]
        for node_id in sorted(self._gone):
            if now - self._members[node_id].state_since >= self.config.reap_after:
                self._remove(node_id)

    # -- dissemination -----------------------------------------------------------------

    def _update_of(self, rec: _Record, now: float, full: bool = False) -> Update:
        """`rec` as an update; the manifest rides along when alive, or always when `full`."""
        with_manifest = full or rec.state == "alive"
        suspected_for = max(0.0, now - rec.state_since) if rec.state == "suspect" else 0.0
        # The newest suspector: confirmations spread one relay at a time, as memberlist's do.
        by = rec.suspectors[-1] if rec.suspectors else ""
        return Update(rec.node_id, rec.state, rec.incarnation,
                      rec.signed if with_manifest else None, rec.version, suspected_for, by)

    def _piggyback(self, now: float) -> list[Update]:
        """Queued news for one message, least-sent first, within the byte budget."""
        if not self._queue:
            return []
        limit = self.config.retransmit_limit(self.live_count())
        budget = self.config.gossip_max_bytes
        picked: list[Update] = []
        for node_id, sent in sorted(self._queue.items(), key=lambda item: item[1]):
            rec = self._members.get(node_id)
            if rec is None:
                del self._queue[node_id]
                continue
            if budget < _UPDATE_BASE_BYTES:
                break  # not even a bare update fits any more
            update = self._update_of(rec, now)
            size = _estimated_size(update)
            if size > budget:
                continue  # a smaller one further on may still fit
            budget -= size
            picked.append(update)
            if sent + 1 >= limit:
                del self._queue[node_id]
            else:
                self._queue[node_id] = sent + 1
        return picked

    def _digest(self) -> list[DigestRow]:
        return [(r.node_id, r.state, r.incarnation, r.version[0], r.version[1])
                for r in self._members.values()]

    def _answer_sync(self, src: str, digest: list[DigestRow], now: float) -> list[Send]:
        theirs: dict[str, DigestRow] = {}
        for row in digest:
            node_id, state, incarnation, m_inc, m_seq = row
            if node_id == self.node_id:
                if state != "alive":
                    self._about_me(Update(node_id, state, incarnation), src)
                elif (m_inc, m_seq) > self._self.version:
                    # A digest row is a bare claim, signed by nobody: refute a manifest of
                    # ours we do not hold only within the bounded step.
                    if m_inc > self._self.incarnation + MAX_INCARNATION_STEP:
                        self.stats.refused["self_claim"] += 1
                    else:
                        self._refute(m_inc + 1, src)
            theirs[node_id] = row
        newer: list[Update] = []
        for rec in self._members.values():
            row = theirs.get(rec.node_id)
            if (row is None or supersedes((rec.state, rec.incarnation), (row[1], row[2]))
                    or rec.version > (row[3], row[4])):
                newer.append(self._update_of(rec, now, full=True))
        wanted = []
        for node_id, row in theirs.items():
            rec = self._members.get(node_id)
            if node_id == self.node_id or node_id == src:
                continue
            if (rec is None or supersedes((row[1], row[2]), (rec.state, rec.incarnation))
                    or (row[3], row[4]) > rec.version):
                wanted.append(node_id)
        chunks = self._chunks(newer) or [[]]
        replies = [Send(src, SyncReply(chunks[0], wanted))]
        replies.extend(Send(src, SyncReply(chunk)) for chunk in chunks[1:])
        return replies

    def _chunks(self, updates: list[Update]) -> list[list[Update]]:
        size = self.config.sync_chunk
        return [updates[i:i + size] for i in range(0, len(updates), size)]

    # -- peer selection ----------------------------------------------------------------

    def _is_alive(self, node_id: str, now: float) -> bool:
        return self._members[node_id].state == "alive"

    def _gossipable(self, node_id: str, now: float) -> bool:
        rec = self._members[node_id]
        if rec.state in ("alive", "suspect"):
            return True
        return rec.state == "dead" and now - rec.state_since < self.config.gossip_to_dead

    def _pick(self, k: int, eligible: Callable[[str, float], bool], now: float) -> list[str]:
        """Up to `k` distinct random other members that pass `eligible`."""
        others = self._others
        if len(others) <= 4 * k:
            pool = [n for n in others if eligible(n, now)]
            return self._rng.sample(pool, min(k, len(pool)))
        # Rejection sampling keeps a pick O(k) in large clusters, where most members are
        # eligible; a cluster mostly gone falls back to the full scan.
        picked: list[str] = []
        for _ in range(8 * k):
            node_id = others[self._rng.randrange(len(others))]
            if node_id not in picked and eligible(node_id, now):
                picked.append(node_id)
                if len(picked) == k:
                    return picked
        pool = [n for n in others if n not in picked and eligible(n, now)]
        return picked + self._rng.sample(pool, min(k - len(picked), len(pool)))

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _push_pull_period(self) -> float:
        return self.config.push_pull_period(self.live_count())

    @staticmethod
    def _view(rec: _Record) -> MemberView:
        return MemberView(rec.node_id, rec.manifest.address, rec.state, rec.incarnation,
                          rec.last_heard, rec.manifest)


# Encoded bytes of an update without a manifest: field names, node id, state, numbers.
_UPDATE_BASE_BYTES = 128


def _record_digest(rec: _Record) -> int:
    """64-bit hash of what two nodes must agree on about a member (XOR-ed into the view)."""
    text = f"{rec.node_id}|{rec.state}|{rec.incarnation}|{rec.version[0]}|{rec.version[1]}"
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big") or 1


def _estimated_size(update: Update) -> int:
    """Encoded bytes of an update, near enough for the gossip budget (no encoding pass)."""
    size = _UPDATE_BASE_BYTES
    if update.manifest is not None:
        size += len(update.manifest.body) + len(update.manifest.sig) + 16
    return size
