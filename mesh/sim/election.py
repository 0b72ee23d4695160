"""The election scenario: real `Election` cores on `SimNet`, with drifting clocks and chaos.

Per seed it runs two clusters (voter sets of 3 and 5 alternate with the seed, plus
non-voters that learn the leader by emulated gossip):

- **chaos runs** on LAN and on WAN defaults: loss, delay, random partitions (often isolating
  the leader), crashes and restarts (often of the leader), leadership transfers, and voter-set
  changes written by the leader and learned by each node at its own moment;
- **failover runs** on LAN and WAN defaults: a leader crashes, and the time until another node
  holds a lease is measured in true virtual time.

Safety is checked after every event of every node (`SafetyMonitor`): at most one leader per
term; no two nodes holding a valid lease at one true time, each lease judged by true time
through its node's drifting clock; no leader elected inside a partition that holds no majority
of voters; non-voters never campaign or lead.

Once per invocation a **stable run** (10 simulated minutes, 10% loss, no crashes) counts leader
changes, which should be zero.

Every node's clock runs at a rate within `1 +- drift` of true time (drift defaults to the
config's `max_clock_drift`, drawn at the extremes half of the time) with a random offset that
changes on restart, as a monotonic clock does across a reboot.
"""

from __future__ import annotations

import hashlib
import math
import random
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mesh.core import Send
from mesh.election import Election, ElectionConfig, Persist, Role
from mesh.identity import Identity
from mesh.quorum import Notary
from mesh.sim.net import SimNet
from mesh.voters import VoterSet, adopt_voters

# Failover targets of issue 4 (seconds of true time from the crash to a new valid lease).
LAN_FAILOVER_TARGET_S = 3.0
WAN_FAILOVER_TARGET_S = 15.0
# One-way delays: LAN is what SimNet defaults to; WAN is 50-300 ms round trips.
LAN_DELAY = (0.001, 0.005)
WAN_DELAY = (0.025, 0.150)
# Non-voters learn the leader by gossip; members gossip about once a second (LAN).
GOSSIP_INTERVAL_S = 1.0
# Give up on a failover after this many election timeouts (counted as a failed failover).
FAILOVER_GIVE_UP_TIMEOUTS = 20
# Non-voters only listen (gossip tells them the leader), so a hundred behave like a few; the
# scenario simulates at most this many, whatever `nodes` asks for, to keep 1000 seeds fast.
MAX_NON_VOTERS = 4
# At most this many failure lines in a summary (the first ones; each names its seed).
MAX_FAILURES_SHOWN = 50


@dataclass(frozen=True, slots=True)
class Clock:
    """local = offset + rate * true."""

    rate: float
    offset: float

    def local(self, true_now: float) -> float:
        return self.offset + self.rate * true_now

    def true(self, local_now: float) -> float:
        return (local_now - self.offset) / self.rate


def random_clock(rng: random.Random, drift: float) -> Clock:
    # Half the clocks sit at the extremes of the bound: that is where a lease bug shows.
    if rng.random() < 0.5:
        rate = 1.0 + rng.choice((-drift, drift))
    else:
        rate = rng.uniform(1.0 - drift, 1.0 + drift)
    return Clock(rate, rng.uniform(0.0, 10_000.0))


class SafetyMonitor:
    """Checks the election invariants after every step of every node (true time)."""

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.leader_of_term: dict[int, str] = {}
        # node -> true time its current lease ends (-inf: none). A lease is valid while > now.
        self.lease_end: dict[str, float] = {}
        self.elections = 0
        self._seen: set[tuple[str, int]] = set()
        self.on_lease: list[Callable[[str, float], None]] = []

    def step(self, node_id: str, core: Election, clock: Clock, now: float,
             connected_voters: int | None = None, votes: int | None = None) -> None:
        """Record `core`'s state after it handled an input at true time `now`.

        `connected_voters`: voters (of the node's own set) in its partition group, or that
        granted it their vote in this term before the partition (None: no partition).
        `votes`: voters of its set that durably granted it their vote in its term.
        """
        if core.role is Role.LEADER:
            if not core.is_voter:
                self.fail(now, f"non-voter {node_id} leads term {core.term}")
            holder = self.leader_of_term.setdefault(core.term, node_id)
            if holder != node_id:
                self.fail(now, f"two leaders in term {core.term}: {holder} and {node_id}")
            elif (node_id, core.term) not in self._seen:
                self._seen.add((node_id, core.term))
                self.elections += 1
                majority = len(core.voters) // 2 + 1
                if votes is not None and votes < majority:
                    self.fail(now, f"{node_id} leads term {core.term} with {votes} of "
                                   f"{len(core.voters)} votes")
                if connected_voters is not None and connected_voters < majority:
                    self.fail(now, f"{node_id} elected in term {core.term} inside a partition "
                                    f"holding {connected_voters} of {len(core.voters)} voters")
        elif core.role is not Role.FOLLOWER and not core.is_voter:
            self.fail(now, f"non-voter {node_id} is {core.role} in term {core.term}")
        local = clock.local(now)
        if core.is_leader_with_lease(local):
            end = clock.true(core.lease_until)
            for other, other_end in self.lease_end.items():
                if other != node_id and other_end > now:
                    self.fail(now, f"two valid leases: {node_id} (term {core.term}, until "
                                    f"{end:.4f}) and {other} (until {other_end:.4f})")
            self.lease_end[node_id] = end
            for hook in self.on_lease:
                hook(node_id, now)
        else:
            # Stepped down, transferred or expired: it takes no leader action from now on.
            self.lease_end[node_id] = min(self.lease_end.get(node_id, -math.inf), now)

    def crashed(self, node_id: str, now: float) -> None:
        self.lease_end[node_id] = min(self.lease_end.get(node_id, -math.inf), now)

    def fail(self, now: float, text: str) -> None:
        self.violations.append(f"t={now:.4f}: {text}")


class _Host:
    """Adapts one core to SimNet: drifting local clock, safety check after every step."""

    def __init__(self, node_id: str, core: Election, clock: Clock, cluster: Cluster) -> None:
        self.node_id = node_id
        self.core = core
        self.clock = clock
        self.cluster = cluster

    @property
    def tick_interval(self) -> float:
        # Timers resolve to a tick: half a heartbeat for voters; non-voters only observe.
        # Read by SimNet at every tick, so a promoted node speeds up at once.
        return self.core.config.heartbeat_interval / 2 if self.core.is_voter else 1.0

    def handle(self, src: str, msg: Any, now: float) -> list[Any]:
        out = self.core.handle(src, msg, self.clock.local(now))
        self.cluster.check(self, now)
        return out

    def tick(self, now: float) -> list[Any]:
        out = self.core.tick(self.clock.local(now))
        self.cluster.check(self, now)
        return out


class KeyDirectory:
    """Ed25519 identities for simulated nodes, which keep short readable ids ("v0", "n1"):
    each node signs its votes with a real key, and keys map back to ids here instead of by
    hash, so simulated certificates are checked exactly as real ones. Verdicts are shared
    between the simulated nodes (as `SharedVerifier` does for manifests): a signature checked
    once on one node would check out the same on every other."""

    def __init__(self, seed: int = 0) -> None:
        self._seed = seed
        self._identities: dict[str, Identity] = {}
        self._ids_by_key: dict[bytes, str] = {}
        self._verdicts: dict[tuple[str, int, str, bytes], bool] = {}

    def notary(self, node_id: str) -> Notary:
        identity = self._identities.get(node_id)
        if identity is None:
            seed = hashlib.sha256(f"{self._seed}:{node_id}".encode()).digest()
            identity = self._identities[node_id] = Identity.from_seed(seed)
            self._ids_by_key[identity.public_key] = node_id
        return _SharedNotary(identity, self._ids_by_key.get, self._verdicts)


class _SharedNotary(Notary):
    __slots__ = ("_verdicts",)

    def __init__(self, identity: Identity, id_of: Callable[[bytes], str | None],
                 verdicts: dict[tuple[str, int, str, bytes], bool]) -> None:
        super().__init__(identity, id_of)
        self._verdicts = verdicts

    def check(self, voter: str, term: int, candidate: str, endorsement: bytes) -> bool:
        key = (voter, term, candidate, endorsement)
        verdict = self._verdicts.get(key)
        if verdict is None:
            verdict = self._verdicts[key] = super().check(voter, term, candidate, endorsement)
        return verdict


class Cluster:
    """A voter set plus non-voters on one SimNet, with persisted state that survives crashes."""

    def __init__(self, seed: int, voters: int, non_voters: int, config: ElectionConfig,
                 loss: float, delay: tuple[float, float], drift: float | None = None) -> None:
        self.net = SimNet(seed, loss=loss, delay=delay)
        self.rng = self.net.rng
        self.config = config
        self.drift = config.max_clock_drift if drift is None else drift
        # The newest voter set and its version (term of the leader that wrote it, change
        # number); each node adopts it by gossip at its own moment and keeps what it adopted.
        self.voter_ids = frozenset(f"v{i}" for i in range(voters))
        self.voters_version = (0, 1)
        self.ids = sorted(self.voter_ids) + [f"n{i}" for i in range(non_voters)]
        self.adopted = {n: (self.voter_ids, self.voters_version) for n in self.ids}
        self.monitor = SafetyMonitor()
        self.persisted: dict[str, tuple[int, str | None]] = {n: (0, None) for n in self.ids}
        # Every durable vote ever given: (voter, term, candidate).
        self.grants: set[tuple[str, int, str]] = set()
        self.hosts: dict[str, _Host] = {}
        self.keys = KeyDirectory(seed)
        self.partitioned = False
        for node_id in self.ids:
            host = self._new_host(node_id)
            self.net.add(node_id, host, effect=self._effect_hook(node_id))
        self.net.schedule(GOSSIP_INTERVAL_S, self._gossip)

    def _new_host(self, node_id: str, clock: Clock | None = None) -> _Host:
        voters, version = self.adopted[node_id]
        core = Election(node_id, voters, self.config, random.Random(self.rng.getrandbits(64)),
                        self.persisted[node_id], version, notary=self.keys.notary(node_id))
        host = _Host(node_id, core, clock or random_clock(self.rng, self.drift), self)
        self.hosts[node_id] = host
        return host

    def _effect_hook(self, node_id: str) -> Callable[[Any], None]:
        def effect(out: Any) -> None:
            if not isinstance(out, Persist):
                raise TypeError(f"{node_id}: unexpected effect {out!r}")
            old_term, _ = self.persisted[node_id]
            if out.term < old_term:
                self.monitor.fail(self.net.now, f"{node_id} persisted term {out.term} "
                                                 f"below {old_term}")
            self.persisted[node_id] = (out.term, out.voted_for)
            if out.voted_for is not None:
                self.grants.add((node_id, out.term, out.voted_for))

        return effect

    def check(self, host: _Host, now: float) -> None:
        core, node_id = host.core, host.node_id
        group = votes = None
        if core.role is Role.LEADER:
            granted = {v for v in core.voters if (v, core.term, node_id) in self.grants}
            votes = len(granted)
            if self.partitioned:
                group = sum(1 for v in core.voters
                            if v in granted or self.net.connected(node_id, v))
        self.monitor.step(node_id, core, host.clock, now, group, votes)

    # -- chaos actions ------------------------------------------------------------------

    def up(self) -> list[str]:
        return [n for n in self.ids if self.net.is_up(n)]

    def leader_with_lease(self) -> str | None:
        now = self.net.now
        for node_id in self.up():
            host = self.hosts[node_id]
            if host.core.is_leader_with_lease(host.clock.local(now)):
                return node_id
        return None

    def partition(self, groups: list[set[str]]) -> None:
        self.net.partition(groups)
        self.partitioned = True

    def heal(self) -> None:
        self.net.heal()
        self.partitioned = False

    def voters_settled(self) -> bool:
        """The shell's rule before the next change: most current voters hold the current set."""
        holding = sum(1 for v in self.voter_ids if self.adopted[v][1] == self.voters_version)
        return holding > len(self.voter_ids) // 2

    def change_voters(self, leader: str, voters: frozenset[str], spread: float) -> None:
        """`leader` (holding its lease) writes a voter set stamped with its term; the others
        adopt it at their own moments within `spread` seconds, as by gossip."""
        self.voters_version = (self.hosts[leader].core.term, self.voters_version[1] + 1)
        self.voter_ids = voters
        self._adopt(leader, voters, self.voters_version)
        for node_id in self.ids:
            self._adopt_later(node_id, spread)

    def _adopt_later(self, node_id: str, spread: float) -> None:
        voters, version = self.voter_ids, self.voters_version
        self.net.schedule(self.net.now + self.rng.uniform(0, spread),
                          lambda: self._adopt(node_id, voters, version))

    def _adopt(self, node_id: str, voters: frozenset[str], version: tuple[int, int]) -> None:
        if not self.net.is_up(node_id) or version <= self.adopted[node_id][1]:
            return
        self.adopted[node_id] = (voters, version)
        host = self.hosts[node_id]
        # The node core's rule (mesh.voters.adopt_voters), run on this host's core.
        core = adopt_voters(host.core, VoterSet(tuple(sorted(voters)), version),
                            random.Random(self.rng.getrandbits(64)))
        if core is not host.core:
            # Missed a change: a fresh core, as after a restart (it keeps term and vote).
            fresh = _Host(node_id, core, host.clock, self)
            self.hosts[node_id] = fresh
            self.net.restart(node_id, fresh)
            self.monitor.crashed(node_id, self.net.now)
            return
        self.check(host, self.net.now)

    def crash(self, node_id: str) -> None:
        self.net.crash(node_id)
        self.monitor.crashed(node_id, self.net.now)

    def restart(self, node_id: str) -> None:
        # A new process: fresh core from what was persisted, a new clock offset; it hears of
        # a newer voter set by gossip soon after.
        self.net.restart(node_id, self._new_host(node_id))
        self._adopt_later(node_id, 3.0)

    def transfer(self, node_id: str) -> None:
        host = self.hosts[node_id]
        now = self.net.now
        outs = host.core.transfer_leadership(host.clock.local(now))
        self.check(host, now)
        for out in outs:
            if isinstance(out, Send):
                self.net.send(node_id, out.to, out.msg)
            else:
                self._effect_hook(node_id)(out)

    def _gossip(self) -> None:
        # Emulated manifest gossip: each non-voter hears the lease announcement (with its
        # quorum certificate) of one reachable leader, subject to loss like any message.
        now = self.net.now
        for node_id in self.up():
            host = self.hosts[node_id]
            if host.core.is_voter:
                continue
            leaders = [p for p in self.up() if p != node_id and self.net.connected(node_id, p)
                       and self.hosts[p].core.role is Role.LEADER]
            if not leaders or self.rng.random() < self.net.loss:
                continue
            peer = self.hosts[self.rng.choice(leaders)]
            lease_true = peer.clock.true(peer.core.lease_until)
            host.core.observe(peer.node_id, peer.core.term, host.clock.local(lease_true),
                              peer.core.quorum)
            self.check(host, now)
        self.net.schedule(now + GOSSIP_INTERVAL_S, self._gossip)


@dataclass(slots=True)
class SeedResult:
    seed: int
    voters: int
    violations: list[str] = field(default_factory=list)
    # Liveness failures: no leader after healing, a failover that never completed.
    stalls: list[str] = field(default_factory=list)
    failovers_lan: list[float] = field(default_factory=list)
    failovers_wan: list[float] = field(default_factory=list)
    failed_failovers: int = 0
    elections: int = 0


def chaos_run(seed: int, voters: int, non_voters: int, loss: float, duration: float = 40.0,
              drift: float | None = None, wan: bool = False) -> Cluster:
    """Random partitions, crashes, restarts, transfers and voter changes; returns the cluster.

    `duration` is in LAN election timeouts' worth of seconds: on WAN defaults the run and the
    gaps between actions stretch by the ratio of the election timeouts.
    """
    config = ElectionConfig.wan() if wan else ElectionConfig.lan()
    cluster = Cluster(seed, voters, non_voters, config, loss, WAN_DELAY if wan else LAN_DELAY,
                      drift)
    net, rng = cluster.net, cluster.rng
    scale = config.election_timeout_min / ElectionConfig.lan().election_timeout_min
    duration *= scale
    crashed: set[str] = set()
    t = 2.0 * scale
    while t < duration:
        net.run_until(t)
        leader = cluster.leader_with_lease()
        action = rng.random()
        if action < 0.25:
            # Partition; half the time cut the leader off with a minority.
            ids = list(cluster.ids)
            rng.shuffle(ids)
            if leader is not None and rng.random() < 0.5:
                ids.remove(leader)
                ids.insert(0, leader)
            cut = rng.randint(1, len(ids) - 1)
            cluster.partition([set(ids[:cut])])
        elif action < 0.45:
            cluster.heal()
        elif action < 0.65:
            up = [n for n in cluster.up()]
            victim = leader if leader is not None and rng.random() < 0.6 else rng.choice(up)
            # Keep at least one node running so the run has something to check.
            if len(up) > 1:
                cluster.crash(victim)
                crashed.add(victim)
        elif action < 0.85:
            if crashed:
                node_id = rng.choice(sorted(crashed))
                crashed.discard(node_id)
                cluster.restart(node_id)
        elif action < 0.93:
            if leader is not None:
                cluster.transfer(leader)
        elif leader is not None and cluster.voters_settled():
            # The leader adds or removes one voter (join --voter, or an operator's removal).
            voters = cluster.voter_ids
            others = [n for n in cluster.ids if n not in voters]
            if others and (len(voters) < 4 or rng.random() < 0.5):
                cluster.change_voters(leader, voters | {rng.choice(others)}, spread=3.0 * scale)
            elif len(voters) > 2:
                cluster.change_voters(leader, voters - {rng.choice(sorted(voters))},
                                      spread=3.0 * scale)
        t += rng.uniform(0.2, 4.0) * scale
    # End healed and whole, so the run also shows the cluster recovers.
    cluster.heal()
    for node_id in sorted(crashed):
        cluster.restart(node_id)
    net.run_until(duration + 10 * config.election_timeout_max)
    return cluster


class _FirstLease:
    """Remembers when a node other than `old` first holds a valid lease."""

    def __init__(self, old: str) -> None:
        self.old = old
        self.at: float | None = None

    def __call__(self, node_id: str, now: float) -> None:
        if node_id != self.old and self.at is None:
            self.at = now


def failover_run(seed: int, voters: int, non_voters: int, loss: float, config: ElectionConfig,
                 delay: tuple[float, float], crashes: int = 2) -> tuple[list[float], int, Cluster]:
    """Crash the leader `crashes` times; true seconds from each crash to a new valid lease."""
    cluster = Cluster(seed, voters, non_voters, config, loss, delay)
    net = cluster.net
    give_up = FAILOVER_GIVE_UP_TIMEOUTS * config.election_timeout_max
    times: list[float] = []
    failed = 0
    wait = config.election_timeout_max
    for _ in range(crashes):
        # Settle: a leader with a lease, then a random moment within its heartbeat cycle.
        deadline = net.now + give_up
        while cluster.leader_with_lease() is None and net.now < deadline:
            net.run_until(net.now + config.heartbeat_interval)
        old = cluster.leader_with_lease()
        if old is None:
            failed += 1
            break
        net.run_until(net.now + wait + cluster.rng.uniform(0, config.heartbeat_interval))
        old = cluster.leader_with_lease()
        if old is None:
            continue
        crashed_at = net.now
        cluster.crash(old)
        watch = _FirstLease(old)
        cluster.monitor.on_lease.append(watch)
        while watch.at is None and net.now < crashed_at + give_up:
            net.run_until(net.now + config.heartbeat_interval / 2)
        cluster.monitor.on_lease.clear()
        if watch.at is not None:
            times.append(watch.at - crashed_at)
        else:
            failed += 1
        cluster.restart(old)
    return times, failed, cluster


def stable_run(seed: int, voters: int, non_voters: int, loss: float = 0.1,
               duration: float = 600.0, wan: bool = False) -> dict[str, Any]:
    """No crashes, no partitions, only loss: count leader changes after the first leader."""
    config = ElectionConfig.wan() if wan else ElectionConfig.lan()
    cluster = Cluster(seed, voters, non_voters, config, loss, WAN_DELAY if wan else LAN_DELAY)
    cluster.net.run_until(duration)
    up = cluster.up()
    non_voter_ids = [n for n in up if n not in cluster.voter_ids]
    leader = cluster.leader_with_lease()
    informed = sum(1 for n in non_voter_ids if cluster.hosts[n].core.leader == leader)
    sent = sum(t.bytes_sent for t in cluster.net.traffic.values())
    return {
        "leader_changes": max(0, cluster.monitor.elections - 1),
        "violations": list(cluster.monitor.violations),
        "leader": leader,
        "non_voters_knowing_leader": informed,
        "non_voters": len(non_voter_ids),
        "bytes_per_voter_per_s": sent / len(cluster.voter_ids) / duration,
    }


def _cluster_size(seed: int, nodes: int | None) -> tuple[int, int]:
    """(voters, non-voters) for a seed: voter sets of 3 and 5 alternate."""
    voters = 3 if seed % 2 == 0 else 5
    total = nodes if nodes is not None else voters + 2
    voters = min(voters, total)
    return voters, min(total - voters, MAX_NON_VOTERS)


def run_seed(seed: int, nodes: int | None, loss: float, wan: bool = True,
             chaos_duration: float = 40.0, drift: float | None = None) -> SeedResult:
    voters, non_voters = _cluster_size(seed, nodes)
    result = SeedResult(seed, voters)
    for on_wan in (False, True) if wan else (False,):
        chaos = chaos_run(seed, voters, non_voters, loss, chaos_duration, drift, on_wan)
        result.violations += chaos.monitor.violations
        result.elections += chaos.monitor.elections
        if chaos.leader_with_lease() is None:
            result.stalls.append(f"no leader with a lease after the {'WAN ' * on_wan}chaos "
                                 "run healed")
    lan, failed, cluster = failover_run(seed, voters, non_voters, loss, ElectionConfig.lan(),
                                        LAN_DELAY)
    result.failovers_lan, result.failed_failovers = lan, failed
    if failed:
        result.stalls.append(f"{failed} LAN failover(s) found no new lease")
    result.violations += cluster.monitor.violations
    if wan:
        wan_times, failed, cluster = failover_run(seed, voters, non_voters, loss,
                                                  ElectionConfig.wan(), WAN_DELAY, crashes=1)
        result.failovers_wan = wan_times
        result.failed_failovers += failed
        if failed:
            result.stalls.append(f"{failed} WAN failover(s) found no new lease")
        result.violations += cluster.monitor.violations
    return result


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return round(ordered[index], 4)


def run(nodes: int | None = None, seed: int = 0, seeds: int = 1, loss: float = 0.0,
        stable: bool = True, stable_duration: float = 600.0, stable_loss: float = 0.1,
        wan: bool = True, chaos_duration: float = 40.0, drift: float | None = None,
        **extra: Any) -> dict[str, Any]:
    """Seeds `seed .. seed+seeds-1`; one JSON-able summary (see the module docstring).

    `nodes`: cluster size (voters alternate 3 and 5 by seed, the rest are non-voters, of
    which at most `MAX_NON_VOTERS` are simulated; default voters + 2). Each entry of
    `failures` names its seed; `run(seed=that seed, seeds=1)` replays it. `drift`: clock rate
    error of the chaos runs (default: the config's bound; set it past the bound to watch
    the monitor catch overlapping leases).
    """
    if extra:
        raise ValueError(f"election scenario: unknown options {sorted(extra)}; expected "
                         "stable, stable_duration, stable_loss, wan, chaos_duration, drift")
    if nodes is not None and nodes < 1:
        raise ValueError(f"nodes={nodes!r}: expected at least 1")
    if seeds < 1:
        raise ValueError(f"seeds={seeds!r}: expected at least 1")
    results = [run_seed(s, nodes, loss, wan, chaos_duration, drift)
               for s in range(seed, seed + seeds)]
    failing = [r for r in results if r.violations]
    failures = [f"seed {r.seed}: {v}" for r in failing for v in r.violations]
    failures += [f"seed {r.seed}: {v}" for r in results for v in r.stalls]
    lan = [t for r in results for t in r.failovers_lan]
    wan_times = [t for r in results for t in r.failovers_wan]
    summary: dict[str, Any] = {
        "scenario": "election",
        "seeds": seeds,
        "first_seed": seed,
        "loss": loss,
        "safety_violations": sum(len(r.violations) for r in results),
        "failing_seeds": [r.seed for r in failing][:MAX_FAILURES_SHOWN],
        "first_violation": failures[0] if failures else None,
        "voters_per_cluster": [3, 5] if nodes is None or nodes >= 5 else [min(3, nodes), nodes],
        "non_voters_per_cluster": max(_cluster_size(seed, nodes)[1],
                                      _cluster_size(seed + 1, nodes)[1]),
        "elections": sum(r.elections for r in results),
        "failover_samples": len(lan),
        "failover_p50_s": _quantile(lan, 0.5),
        "failover_p99_s": _quantile(lan, 0.99),
        "failover_max_s": _quantile(lan, 1.0),
        "failover_mean_s": round(statistics.fmean(lan), 4) if lan else None,
        "failover_target_s": LAN_FAILOVER_TARGET_S,
        "failover_wan_samples": len(wan_times),
        "failover_wan_p50_s": _quantile(wan_times, 0.5),
        "failover_wan_p99_s": _quantile(wan_times, 0.99),
        "failover_wan_max_s": _quantile(wan_times, 1.0),
        "failover_wan_target_s": WAN_FAILOVER_TARGET_S,
        "failed_failovers": sum(r.failed_failovers for r in results),
        "stalls": sum(len(r.stalls) for r in results),
    }
    if stable:
        voters, non_voters = _cluster_size(1, nodes)  # the larger voter set
        report = stable_run(seed, voters, non_voters, stable_loss, stable_duration)
        wan_report = stable_run(seed, voters, non_voters, stable_loss, stable_duration, wan=True)
        summary.update({
            "leader_changes_stable": report["leader_changes"],
            "leader_changes_stable_wan": wan_report["leader_changes"],
            "stable_duration_s": stable_duration,
            "stable_loss": stable_loss,
            "stable_bytes_per_voter_per_s": round(report["bytes_per_voter_per_s"], 1),
            "stable_non_voters_knowing_leader": (f"{report['non_voters_knowing_leader']}"
                                                 f"/{report['non_voters']}"),
        })
        for name, outcome in (("stable run", report), ("stable WAN run", wan_report)):
            summary["safety_violations"] += len(outcome["violations"])
            failures += [f"seed {seed} ({name}): {v}" for v in outcome["violations"]]
            if outcome["leader_changes"]:
                failures.append(f"seed {seed} ({name}): {outcome['leader_changes']} leader "
                                "changes without crashes")
        summary["first_violation"] = failures[0] if failures else None
    summary["failures"] = failures[:MAX_FAILURES_SHOWN]
    return summary
