"""Membership scenario: the real SWIM-lite cores on the simulated network.

One run: N nodes join one after another (each through a random node already up), the
cluster converges, then `changes` manifest changes are made at random nodes, then
`crashes` random nodes crash. Figures (virtual seconds unless named otherwise):

- converge_999_s / converge_100_s: of all (change, node) deliveries, the 99.9th
  percentile of the delay, and the longest time any change took to reach every node;
- detect_dead_s: longest time from a crash until every live node marks the node dead;
- first_suspect_s: time from the crash to the first suspicion of it (the probe's luck);
- false_dead: dead marks of nodes that were up at the time;
- bytes_per_node_s: bytes each node sends per second over the measured part (after the
  join: the changes, the quiet window, the crash), envelope and HTTP framing included
  (see mesh.sim.net); quiet_bytes_per_node_s: the same over the quiet window alone;
- insync_round_bytes: bytes of one probe round (ping + ack) between two nodes with
  nothing to tell each other (no piggybacked news), measured over a quiet window: in
  SWIM the probe is the only traffic an in-sync pair exchanges each round (gossip is
  sent only when there is news), and push-pull, every 30-90 s, is in bytes_per_node_s.

A run that breaks an invariant (views never agree, a change or a death never reaches
every node, a live node marked dead) lists it under `failures`, with its seed.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from typing import Any

from mesh.identity import Identity
from mesh.manifest import Manifest, SignedManifest, sign_manifest
from mesh.membership import MemberChange, Membership, MembershipConfig, Renew, verify_manifest
from mesh.membership_messages import Ack, Ping
from mesh.sim.net import SimNet, wire_size

PORT = 7946
# Joins are this far apart: a steady stream, not one instant storm on a single seed.
JOIN_SPACING_S = 0.02
# Manifest changes are this far apart, so each one's spread is measured mostly alone.
CHANGE_SPACING_S = 3.0
# Give up waiting for convergence or detection after this much virtual time.
PATIENCE_S = 120.0


class SharedVerifier:
    """`verify_manifest` with its answers remembered, shared by every simulated node.

    Verifying is a pure function of the signed bytes, so remembering it changes nothing
    but the run time: a 500-node run would otherwise check the same signature 500 times.
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[bytes, bytes], Manifest | None] = {}
        self.checks = 0

    def __call__(self, signed: SignedManifest) -> Manifest | None:
        key = (signed.body, signed.sig)
        if key not in self._seen:
            self.checks += 1
            self._seen[key] = verify_manifest(signed)
        return self._seen[key]


class SimPeer:
    """One simulated node: its identity, its current manifest and its membership core.

    As a `SimNet` node it is the core plus the one duty of an owner that membership needs:
    signing a renewed manifest when the core asks (`Renew`).
    """

    def __init__(self, index: int, rng: random.Random, config: MembershipConfig,
                 verify: SharedVerifier, identity: Identity | None = None) -> None:
        """Node number `index` (its address); a restart passes the old `identity` back in."""
        self.index = index
        self.identity = identity or Identity.from_seed(rng.randbytes(32))
        self.address = f"10.{index // 65536}.{index // 256 % 256}.{index % 256}:{PORT}"
        self.manifest = Manifest(
            node_id=self.identity.node_id, public_key=self.identity.public_key,
            address=self.address, version="sim", incarnation=0, seq=0,
            device="cpu", device_mem_mb=0, cores=2, state="idle",
            stores={}, production_model=None, leader=None, term=0, lease_until_ms=0)
        self.core = Membership(sign_manifest(self.identity, self.manifest), config,
                               random.Random(rng.getrandbits(64)), verify)
        self.tick_interval = config.tick_interval

    @property
    def node_id(self) -> str:
        return self.identity.node_id

    def handle(self, src: str, msg: Any, now: float) -> list[Any]:
        return self.run(self.core.handle(src, msg, now), now)

    def tick(self, now: float) -> list[Any]:
        return self.run(self.core.tick(now), now)

    def run(self, outputs: list[Any], now: float) -> list[Any]:
        """`outputs` with each `Renew` carried out: replaced by what `renewed` sends."""
        out: list[Any] = []
        for output in outputs:
            if isinstance(output, Renew):
                out.extend(self.core.renewed(self.renew(output.incarnation), now))
            else:
                out.append(output)
        return out

    def renew(self, incarnation: int) -> SignedManifest:
        # seq goes on rising: a manifest is ordered by (incarnation, seq), never reused.
        self.manifest = dataclasses.replace(self.manifest, incarnation=incarnation,
                                            seq=self.manifest.seq + 1)
        return sign_manifest(self.identity, self.manifest)

    def change(self) -> tuple[int, int]:
        """Change something in our manifest (the work state) and spread it."""
        states = ("idle", "selfplay", "training", "evaluating")
        self.manifest = dataclasses.replace(
            self.manifest, seq=self.manifest.seq + 1,
            state=states[(states.index(self.manifest.state) + 1) % len(states)])
        self.core.update_manifest(sign_manifest(self.identity, self.manifest))
        return self.manifest.incarnation, self.manifest.seq


class Cluster:
    """A simulated cluster plus the bookkeeping the figures need."""

    def __init__(self, nodes: int, seed: int, loss: float = 0.0,
                 config: MembershipConfig | None = None,
                 sizer: Callable[[Any], int] = wire_size) -> None:
        if nodes < 2:
            raise ValueError(f"nodes must be at least 2, got {nodes}")
        self.n = nodes
        self.seed = seed
        self.config = config or MembershipConfig()
        self.net = SimNet(seed, loss=loss, sizer=sizer)
        self.verify = SharedVerifier()
        self._rng = random.Random(seed ^ 0x5EED)
        self.peers: dict[str, SimPeer] = {}
        self.order: list[str] = []
        # (time, observer, subject, state) of every suspect and dead mark.
        self.marks: list[tuple[float, str, str, str]] = []
        # Dead marks of nodes that were up at that moment (judged when the mark is made).
        self.false_dead = 0
        self._watch: dict[str, tuple[tuple[int, int], dict[str, float]]] = {}

    # -- building ------------------------------------------------------------------

    def start(self) -> None:
        """Add every node; each joins through a random node already up."""
        for i in range(self.n):
            peer = SimPeer(i, self._rng, self.config, self.verify)
            self.peers[peer.node_id] = peer
            self.order.append(peer.node_id)
            at = i * JOIN_SPACING_S
            if i == 0:
                self._add(peer)
            else:
                seed_id = self.order[self._rng.randrange(i)]
                self.net.schedule(at, lambda p=peer, s=seed_id: self._join(p, s))

    def _add(self, peer: SimPeer) -> None:
        self.net.add(peer.node_id, peer, address=peer.address,
                     effect=lambda e, me=peer.node_id: self._effect(me, e))

    def _join(self, peer: SimPeer, seed_id: str) -> None:
        self._add(peer)
        self.net.emit(peer.node_id, peer.core.join([self.peers[seed_id].address]))

    def restart(self, node_id: str, seed_id: str) -> SimPeer:
        """Bring a crashed node back as a fresh process (incarnation 0) joining via a seed."""
        old = self.peers[node_id]
        fresh = SimPeer(old.index, self._rng, self.config, self.verify, old.identity)
        self.peers[node_id] = fresh
        self.net.restart(node_id, fresh)
        self.net.emit(node_id, fresh.core.join([self.peers[seed_id].address]))
        return fresh

    def _effect(self, observer: str, effect: Any) -> None:
        if not isinstance(effect, MemberChange):
            return
        if effect.state in ("suspect", "dead"):
            self.marks.append((self.net.now, observer, effect.node_id, effect.state))
        if effect.state == "dead" and self.net.is_up(effect.node_id):
            self.false_dead += 1
        watch = self._watch.get(effect.node_id)
        if watch is not None and effect.version >= watch[0] and observer not in watch[1]:
            watch[1][observer] = self.net.now

    # -- observing -----------------------------------------------------------------

    def live(self) -> list[str]:
        return [n for n in self.order if self.net.is_up(n)]

    def converged(self) -> bool:
        """Every live node sees exactly the live nodes as alive, at their newest manifests."""
        live = self.live()
        versions = {n: self.peers[n].core.manifest_of(n).freshness for n in live}  # type: ignore[union-attr]
        for observer in live:
            core = self.peers[observer].core
            alive = 0
            for view in core.members():
                if view.state == "alive":
                    if view.node_id not in versions or view.manifest.freshness != versions[
                            view.node_id]:
                        return False
                    alive += 1
            if alive != len(live):
                return False
        return True

    def run_until_converged(self, step: float = 0.5) -> float | None:
        """Advance until `converged()`; the virtual time it took, None if it never did."""
        start = self.net.now
        while self.net.now - start < PATIENCE_S:
            if self.converged():
                return self.net.now - start
            self.net.run_until(self.net.now + step)
        return None

    # -- experiments ---------------------------------------------------------------

    def change_manifest(self, node_id: str) -> dict[str, float]:
        """Change `node_id`'s manifest now; returns observer -> time it saw the change."""
        version = self.peers[node_id].change()
        seen: dict[str, float] = {}
        self._watch[node_id] = (version, seen)
        return seen

    def crash_times(self, victim: str, at: float) -> dict[str, float]:
        """Delays after `at` at which each live node marked `victim` dead."""
        out: dict[str, float] = {}
        for t, observer, subject, state in self.marks:
            if state == "dead" and subject == victim and t >= at and observer not in out:
                out[observer] = t - at
        return out


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, math.ceil(q * len(ordered)) - 1)
    return ordered[rank]


def run_one(nodes: int, seed: int, loss: float, changes: int = 10, crashes: int = 1,
            quiet_s: float = 10.0) -> dict[str, Any]:
    cluster = Cluster(nodes, seed, loss)
    net = cluster.net
    failures: list[str] = []
    cluster.start()
    net.run_until(nodes * JOIN_SPACING_S)
    join_s = cluster.run_until_converged()
    if join_s is None:
        failures.append(f"views did not converge within {PATIENCE_S} s after the joins")
        join_s = math.nan
    join_done = net.now
    sent_at_join = sum(t.bytes_sent for t in net.traffic.values())
    rng = random.Random(seed ^ 0xC4A4)

    # Manifest changes, spaced apart, each from a random node.
    delays: list[float] = []
    full_times: list[float] = []
    for _ in range(changes):
        origin = rng.choice(cluster.order)
        at = net.now
        seen = cluster.change_manifest(origin)
        net.run_until(at + CHANGE_SPACING_S)
        others = [n for n in cluster.live() if n != origin]
        while len(seen) < len(others) and net.now - at < PATIENCE_S:
            net.run_until(net.now + 0.5)
        if len(seen) < len(others):
            failures.append(f"change at {origin[:8]} reached {len(seen)}/{len(others)} nodes")
            continue
        times = [seen[n] - at for n in others]
        delays.extend(times)
        full_times.append(max(times))

    # Quiet window: the probe rounds of pairs with nothing to tell each other (no
    # piggybacked news) are the in-sync cost: one ping and its ack, all framing included.
    net.run_until(net.now + 2 * CHANGE_SPACING_S)
    empty: dict[type, list[int]] = {Ping: [], Ack: []}

    def record(src: str, dst: str, msg: Any, size: int) -> None:
        if type(msg) in empty and not msg.updates:
            empty[type(msg)].append(size)

    net.on_send = record
    quiet_from = sum(t.bytes_sent for t in net.traffic.values())
    net.run_until(net.now + quiet_s)
    net.on_send = None
    quiet_bytes = sum(t.bytes_sent for t in net.traffic.values()) - quiet_from
    insync = (sum(empty[Ping]) / len(empty[Ping]) + sum(empty[Ack]) / len(empty[Ack])
              if empty[Ping] and empty[Ack] else math.nan)

    # Crashes: every live node must mark each victim dead.
    detect: list[float] = []
    victims = rng.sample(cluster.order, crashes)
    crash_at = net.now
    for victim in victims:
        net.crash(victim)
    live = cluster.live()
    while net.now - crash_at < PATIENCE_S:
        net.run_until(net.now + 0.5)
        if all(len(cluster.crash_times(v, crash_at)) >= len(live) for v in victims):
            break
    first_suspect = [t - crash_at for t, _, subject, state in cluster.marks
                     if subject in victims and state == "suspect" and t >= crash_at]
    for victim in victims:
        marks = cluster.crash_times(victim, crash_at)
        if len(marks) < len(live):
            failures.append(f"crash of {victim[:8]} seen by {len(marks)}/{len(live)} nodes")
        else:
            detect.append(max(marks[n] for n in live))
    net.run_until(net.now + 2.0)

    if cluster.false_dead:
        failures.append(f"{cluster.false_dead} dead marks of live nodes")
    window = net.now - join_done
    sent = sum(t.bytes_sent for t in net.traffic.values()) - sent_at_join
    return {
        "nodes": nodes,
        "seed": seed,
        "loss": loss,
        "join_converge_s": round(join_s, 3),
        "converge_999_s": round(_percentile(delays, 0.999), 3) if delays else math.nan,
        "converge_100_s": round(max(full_times), 3) if full_times else math.nan,
        "converge_mean_s": round(sum(delays) / len(delays), 3) if delays else math.nan,
        "detect_dead_s": round(max(detect), 3) if detect else math.nan,
        "first_suspect_s": round(min(first_suspect), 3) if first_suspect else math.nan,
        "false_dead": cluster.false_dead,
        "bytes_per_node_s": round(sent / nodes / window, 1),
        "quiet_bytes_per_node_s": round(quiet_bytes / nodes / quiet_s, 1),
        "insync_round_bytes": round(insync, 1),
        "suspicion_timeout_s": round(cluster.config.suspicion_timeout(nodes), 3),
        "virtual_s": round(net.now, 3),
        "failures": failures,
    }


_WORST = {"join_converge_s": max, "first_suspect_s": max, "converge_999_s": max, "converge_100_s": max,
          "converge_mean_s": max, "detect_dead_s": max, "false_dead": sum,
          "bytes_per_node_s": max, "quiet_bytes_per_node_s": max, "insync_round_bytes": max}


def run(nodes: int = 100, seed: int = 1, seeds: int = 1, loss: float = 0.0,
        **extra: Any) -> dict[str, Any]:
    """Run `seeds` runs (seed, seed+1, ...); one run's figures, or the worst over all."""
    runs = [run_one(nodes, s, loss, **extra) for s in range(seed, seed + seeds)]
    if seeds == 1:
        return runs[0]
    worst: dict[str, Any] = {"nodes": nodes, "seed": seed, "seeds": seeds, "loss": loss}
    for key, pick in _WORST.items():
        values = [r[key] for r in runs if not (isinstance(r[key], float) and math.isnan(r[key]))]
        worst[key] = pick(values) if values else math.nan
    worst["failures"] = [f"seed {r['seed']}: {f}" for r in runs for f in r["failures"]]
    worst["runs"] = runs
    return worst
