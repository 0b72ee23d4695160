"""The cluster scenario: whole nodes (the real `MeshNode`) on `SimNet`, from one seed.

Each simulated process is a `SimHost`: the very node core the agent runs, plus what the
agent's asyncio shell does for it (sign manifests, keep node state, run pull sessions over
the network, serve sync requests and model blobs from in-memory stores, run the leader's
voter-admission duty). One run:

1. nodes join one after another, each through a node already up; the first founds the
   cluster and the next four ask to vote, so the leader grows the voter set to five;
2. rows (games and match rows) are written on random nodes, and one model (registry row and
   blob) on another, while the cluster is whole;
3. the cluster is split in two halves for a while, both sides keep writing, then it heals;
4. the leader crashes, another takes over, and the old leader comes back with its stores.

Figures (virtual seconds):

- converge_999_s: 99.9th percentile, over every (row written in step 2, live node), of the
  delay until the node held the row;
- roots_equal_after_heal_s: from the heal until every live node holds equal store roots;
- failover_s: from the leader's crash until another node holds a valid lease;
- safety_violations: two leaders in one term or two valid leases at one time (checked after
  every step of every node, mesh.sim.election.SafetyMonitor);
- rows_lost: rows written that some live node does not hold at the end (must be 0), and
  blobs_missing: nodes lacking the model blob at the end (must be 0).

A run prints its seed; `--seed` replays it exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import replace
from typing import Any

from mesh.core import Send
from mesh.identity import Identity
from mesh.manifest import StoreSummary, sign_manifest
from mesh.membership import MemberChange
from mesh.node import (
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
from mesh.sim.election import Clock, SafetyMonitor
from mesh.sim.membership import SharedVerifier
from mesh.sim.net import SimNet
from mesh.sim.puller import SimModelStore, SimPuller
from mesh.sim.sync import sync_wire_size
from mesh.sync import SyncConfig
from mesh.manifest import MAX_VOTERS
from storage.hlc import HybridClock
from storage.memory import MemoryStores
from storage.rows import new_game, new_match, new_model, validate_game, validate_match

PORT = 7420
EPOCH_MS = 1_700_000_000_000
JOIN_SPACING_S = 0.05
# Give up waiting for a phase after this much virtual time (the phase then fails).
PATIENCE_S = 120.0
# How often the leader's voter-admission duty runs (node/agent.py runs it every second).
ADMIT_EVERY_S = 1.0
_TRUE_CLOCK = Clock(1.0, 0.0)


class SimHost:
    """One simulated process: a `MeshNode` and the shell duties of mesh/runtime.py."""

    def __init__(self, cluster: Cluster, index: int, identity: Identity, stores: MemoryStores,
                 state: dict[str, object], wants_voter: bool) -> None:
        self.cluster = cluster
        self.index = index
        self.identity = identity
        self.node_id = identity.node_id
        self.stores = stores
        self.state = state
        self.address = address_of(index)
        config = replace(cluster.config, wants_voter=wants_voter)
        info = NodeInfo(identity.node_id, identity.public_key, self.address, "sim", cores=2)
        self.node = MeshNode(info, config, Persisted.from_state(state.get),
                             random.Random(cluster.rng.getrandbits(64)),
                             notary=Notary(identity), wall_offset_ms=EPOCH_MS,
                             verify=cluster.verify)
        self.puller = SimPuller(stores.by_name(), config.sync)
        self._merges = 0
        self._next_admit = 0.0
        self.refresh_local()

    @property
    def tick_interval(self) -> float:
        # Voters run election timers at half a heartbeat; the rest only need membership's.
        if self.node.election.is_voter:
            return self.node.config.tick_interval
        return self.node.config.membership.tick_interval

    def start(self, now: float, seeds: list[str]) -> list[Any]:
        signed = sign_manifest(self.identity, self.node.manifest)
        return self.run(self.node.start(signed, now, seeds), now)

    def refresh_local(self) -> None:
        models = self.stores.models
        assert isinstance(models, SimModelStore)
        self.node.set_local(summaries_of(self.stores), bool(models.missing_blobs()))

    # -- SimNet node ------------------------------------------------------------------

    def handle(self, src: str, msg: Any, now: float) -> list[Any]:
        answer = self.puller.answer(src, msg)
        if answer is not None:
            return answer
        replies = self.puller.on_reply(src, msg, now)
        if replies is not None:
            return replies + self._pulls_done(now)
        return self.run(self.node.handle(src, msg, now), now)

    def tick(self, now: float) -> list[Any]:
        out: list[Any] = self.puller.tick(now)
        out += self._pulls_done(now)
        if now >= self._next_admit:
            self._next_admit = now + ADMIT_EVERY_S
            out += self.run(self.node.admit_voter(now), now)
        out += self.run(self.node.tick(now), now)
        return out

    # -- effects ----------------------------------------------------------------------

    def run(self, effects: list[Any], now: float) -> list[Any]:
        """Carry out `effects` in order; returns the sends for the network."""
        out: list[Any] = []
        for effect in effects:
            if isinstance(effect, Send):
                out.append(effect)
            elif isinstance(effect, SaveState):
                self.state[effect.key] = effect.value
            elif isinstance(effect, SignManifest):
                signed = sign_manifest(self.identity, effect.manifest)
                out += self.run(self.node.published(signed, now), now)
            elif isinstance(effect, Pull):
                out += self.puller.start(effect.plan, now)
                out += self._pulls_done(now)
            elif isinstance(effect, MemberChange):
                self.cluster.member_changed(self.node_id, effect)
            elif not isinstance(effect, (LeaderChanged, VotersChanged)):
                raise TypeError(f"{self.node_id}: unexpected effect {effect!r}")
        self.cluster.monitor.step(self.node_id, self.node.election, _TRUE_CLOCK, now)
        return out

    def _pulls_done(self, now: float) -> list[Any]:
        out: list[Any] = []
        if self.puller.merges != self._merges:
            self._merges = self.puller.merges
            self.refresh_local()
        while self.puller.done:
            plan, outcome = self.puller.done.pop(0)
            self.refresh_local()  # blobs fetched change what is missing
            out += self.run(self.node.pull_finished(plan, outcome, now), now)
        return out


def address_of(index: int) -> str:
    return f"10.{index // 65536}.{index // 256 % 256}.{index % 256}:{PORT}"


def summaries_of(stores: MemoryStores) -> dict[str, StoreSummary]:
    return {name: StoreSummary(*store.summary()) for name, store in stores.by_name().items()}


class Cluster:
    """N hosts on one SimNet, with the stores and node state that survive their crashes."""

    def __init__(self, nodes: int, seed: int, loss: float = 0.0,
                 config: NodeConfig | None = None) -> None:
        if nodes < 2:
            raise ValueError(f"nodes must be >= 2, got {nodes}")
        self.n = nodes
        self.net = SimNet(seed, loss=loss, sizer=sync_wire_size)
        self.rng = self.net.rng
        # Sessions take milliseconds on the simulated LAN: a lost request is retried soon.
        self.config = config or NodeConfig(sync=SyncConfig(request_timeout_s=0.2))
        self.verify = SharedVerifier()
        self.monitor = SafetyMonitor()
        self.identities = [Identity.from_seed(self.rng.randbytes(32)) for _ in range(nodes)]
        self.ids = [i.node_id for i in self.identities]
        self.clocks = {nid: HybridClock(lambda: EPOCH_MS + int(self.net.now * 1000), 60_000)
                       for nid in self.ids}
        self.stores: dict[str, MemoryStores] = {}
        for nid in self.ids:
            stores = MemoryStores(self.clocks[nid])
            stores.models = SimModelStore(self.clocks[nid])
            self.stores[nid] = stores
        self.state: dict[str, dict[str, object]] = {nid: {} for nid in self.ids}
        self.hosts: dict[str, SimHost] = {}
        self.wants_voter = set(self.ids[1:MAX_VOTERS])
        self.false_dead = 0
        self.judge_dead_from = 0.0

    # -- processes ----------------------------------------------------------------------

    def launch(self, index: int, seeds: list[str]) -> None:
        """Start (or restart) process `index` with its stores and node state."""
        nid = self.ids[index]
        restart = nid in self.hosts
        host = SimHost(self, index, self.identities[index], self.stores[nid], self.state[nid],
                       nid in self.wants_voter)
        self.hosts[nid] = host
        if restart:
            self.net.restart(nid, host)
        else:
            self.net.add(nid, host, address=host.address)
        out = host.start(self.net.now, seeds)
        if index == 0:
            out += host.run(host.node.initialise_voters([nid], self.net.now), self.net.now)
        self.net.emit(nid, out)

    def crash(self, nid: str) -> None:
        self.net.crash(nid)
        self.monitor.crashed(nid, self.net.now)

    def member_changed(self, observer: str, change: MemberChange) -> None:
        # Behind a partition a node is rightly dead to the other side, and so it still is when
        # a suspicion from then runs out just after the heal: only marks outside that window
        # judge the failure detector.
        if (change.state == "dead" and self.net.is_up(change.node_id)
                and self.net.now >= self.judge_dead_from):
            self.false_dead += 1

    # -- observing ----------------------------------------------------------------------

    def live(self) -> list[str]:
        return [n for n in self.ids if self.net.is_up(n)]

    def leader_with_lease(self) -> str | None:
        now = self.net.now
        for nid in self.live():
            if self.hosts[nid].node.is_leader(now):
                return nid
        return None

    def views_agree(self) -> bool:
        live = set(self.live())
        for nid in live:
            alive = {m.node_id for m in self.hosts[nid].node.members() if m.state == "alive"}
            if alive != live:
                return False
        return True

    def voters_settled(self, count: int) -> bool:
        return all(len(self.hosts[n].node.voters) == count for n in self.live())

    def roots_equal(self) -> bool:
        return len({tuple(sorted((k, s.root) for k, s in summaries_of(self.stores[n]).items()))
                    for n in self.live()}) <= 1

    def wait(self, done: Any, step: float = 0.25, patience: float = PATIENCE_S) -> float | None:
        """Advance until `done()`; the virtual seconds it took, None if it never happened."""
        start = self.net.now
        while not done():
            if self.net.now - start >= patience:
                return None
            self.net.run_until(self.net.now + step)
        return self.net.now - start

    # -- writing ------------------------------------------------------------------------

    def write_row(self, nid: str, serial: int) -> tuple[str, str] | None:
        """Write one game or match row at `nid` (if it is up); its (store, key)."""
        if not self.net.is_up(nid):
            return None
        hlc = self.clocks[nid].now()
        stores = self.stores[nid]
        if serial % 2:
            moves = [bytes((self.rng.randrange(21), 1, self.rng.randrange(64), 0))
                     for _ in range(20)]
            row = new_game("square8", 2, moves, self.rng.choice([[1, 2], [2, 1]]), hlc, nid)
            store, name = stores.games, "games"
        else:
            row = new_match(f"match-{serial}", ["model-1", "model-2"], "square8", 2, [1.0, 0.0],
                            hlc, nid)
            store, name = stores.matches, "matches"
        store.put(row)
        self.hosts[nid].refresh_local()
        return name, (validate_game(row) if name == "games" else validate_match(row)).key

    def write_model(self, nid: str) -> str:
        models = self.stores[nid].models
        assert isinstance(models, SimModelStore)
        data = self.rng.randbytes(4096)
        sha = models.put_blob(data)
        models.put(new_model(sha, "square8", 2, self.clocks[nid].now(), nid, len(data)))
        self.hosts[nid].refresh_local()
        return sha

    def holds(self, nid: str, store: str, key: str) -> bool:
        return self.stores[nid].by_name()[store].get(key) is not None


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def run_once(nodes: int, seed: int, loss: float = 0.0, *, rows: int = 60,
             write_s: float = 10.0, partition_s: float = 10.0) -> dict[str, Any]:
    cluster = Cluster(nodes, seed, loss)
    net, rng = cluster.net, cluster.rng
    failures: list[str] = []
    for i in range(nodes):
        if i == 0:
            cluster.launch(0, [])
        else:
            net.schedule(i * JOIN_SPACING_S,
                         lambda i=i: cluster.launch(i, [address_of(rng.randrange(i))]))
    net.run_until(nodes * JOIN_SPACING_S)
    voters = min(MAX_VOTERS, nodes)
    join_s = cluster.wait(lambda: cluster.views_agree() and cluster.voters_settled(voters)
                          and cluster.leader_with_lease() is not None)
    if join_s is None:
        failures.append(f"no agreed view, {voters} voters and a leader within {PATIENCE_S} s")

    # Rows on random nodes while the cluster is whole; each (row, node) delivery is timed.
    written: list[tuple[str, str, str]] = []  # (origin, store, key)
    start = net.now
    pending: dict[tuple[int, str], float] = {}
    delays: list[float] = []
    times: list[float] = sorted(rng.uniform(0, write_s) for _ in range(rows))
    for serial, at in enumerate(times):
        nid = rng.choice(cluster.ids)

        def write(nid: str = nid, serial: int = serial) -> None:
            made = cluster.write_row(nid, serial)
            if made is not None:
                written.append((nid, *made))
                index = len(written) - 1
                for other in cluster.live():
                    if other != nid:
                        pending[(index, other)] = net.now

        net.schedule(start + at, write)
    model_at = rng.choice(cluster.ids)
    net.schedule(start + write_s / 2, lambda: cluster.write_model(model_at))

    def delivered() -> bool:
        for (index, other), at in list(pending.items()):
            _, store, key = written[index]
            if cluster.holds(other, store, key):
                delays.append(net.now - at)
                del pending[(index, other)]
        return net.now >= start + write_s and not pending

    if cluster.wait(delivered, step=0.1) is None:
        failures.append(f"{len(pending)} row deliveries missing {PATIENCE_S} s after writing")

    # Partition in two halves; both keep writing; then heal.
    half = set(rng.sample(cluster.ids, nodes // 2))
    net.partition([half])
    split_at = net.now
    for serial in range(rows, rows + rows // 2):
        nid = rng.choice(cluster.ids)
        net.schedule(split_at + rng.uniform(0, partition_s),
                     lambda nid=nid, serial=serial: _record(cluster.write_row(nid, serial),
                                                            nid, written))
    cluster.judge_dead_from = math.inf
    net.run_until(split_at + partition_s)
    net.heal()
    membership = cluster.config.membership
    cluster.judge_dead_from = net.now + (membership.suspicion_timeout(nodes)
                                         + 2 * membership.probe_interval)
    heal_s = cluster.wait(cluster.roots_equal, step=0.1)
    if heal_s is None:
        failures.append(f"roots still differ {PATIENCE_S} s after the heal")

    # The leader crashes; another must take over; the old one comes back with its stores.
    if cluster.wait(lambda: cluster.leader_with_lease() is not None) is None:
        failures.append("no leader with a lease before the crash")
    failover_s: float | None = None
    old = cluster.leader_with_lease()
    if old is not None:
        net.run_until(net.now + rng.uniform(0, 1.0))
        old = cluster.leader_with_lease() or old
        crashed_at = net.now
        cluster.crash(old)
        first: list[float] = []
        cluster.monitor.on_lease.append(
            lambda nid, now: first.append(now) if nid != old and not first else None)
        if cluster.wait(lambda: bool(first), step=0.05) is None:
            failures.append(f"no new leader within {PATIENCE_S} s of the leader's crash")
        else:
            failover_s = first[0] - crashed_at
        cluster.monitor.on_lease.clear()
        net.run_until(net.now + 3.0)
        index = cluster.ids.index(old)
        cluster.launch(index, [address_of(rng.choice(
            [i for i in range(nodes) if i != index]))])
    final_s = cluster.wait(lambda: cluster.roots_equal() and cluster.views_agree())
    if final_s is None:
        failures.append(f"no agreement (roots, views) {PATIENCE_S} s after the restart")

    live = cluster.live()
    lost = sum(1 for _, store, key in written
               if not all(cluster.holds(n, store, key) for n in live))
    blobs_missing = sum(1 for n in live
                        if cluster.stores[n].models.missing_blobs())  # type: ignore[attr-defined]
    violations = cluster.monitor.violations
    if violations:
        failures += violations[:10]
    if lost:
        failures.append(f"{lost} rows written are missing on some live node")
    if blobs_missing:
        failures.append(f"{blobs_missing} nodes lack the model blob")
    if cluster.false_dead:
        failures.append(f"{cluster.false_dead} dead marks of live nodes")
    return {
        "nodes": nodes,
        "seed": seed,
        "loss": loss,
        "join_s": _round(join_s),
        "converge_999_s": _round(_percentile(delays, 0.999) if delays else None),
        "roots_equal_after_heal_s": _round(heal_s),
        "failover_s": _round(failover_s),
        "safety_violations": len(violations),
        "rows_written": len(written),
        "rows_lost": lost,
        "blobs_missing": blobs_missing,
        "false_dead": cluster.false_dead,
        "elections": cluster.monitor.elections,
        "virtual_s": round(net.now, 3),
        "failures": failures,
    }


def _record(made: tuple[str, str] | None, nid: str,
            written: list[tuple[str, str, str]]) -> None:
    if made is not None:
        written.append((nid, *made))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


_WORST = {"join_s": max, "converge_999_s": max, "roots_equal_after_heal_s": max,
          "failover_s": max, "safety_violations": sum, "rows_lost": sum, "blobs_missing": sum,
          "false_dead": sum, "rows_written": sum, "elections": sum}


def run(nodes: int = 20, seed: int = 1, seeds: int = 1, loss: float = 0.0,
        **extra: Any) -> dict[str, Any]:
    """Seeds `seed .. seed+seeds-1`: one run's figures, or the worst of each over all runs."""
    runs = [run_once(nodes, s, loss, **extra) for s in range(seed, seed + seeds)]
    if seeds == 1:
        return {"scenario": "cluster", **runs[0]}
    summary: dict[str, Any] = {"scenario": "cluster", "nodes": nodes, "seed": seed,
                               "seeds": seeds, "loss": loss}
    for key, pick in _WORST.items():
        values = [r[key] for r in runs if r[key] is not None]
        summary[key] = pick(values) if len(values) == len(runs) else None
    summary["failures"] = [f"seed {r['seed']}: {f}" for r in runs for f in r["failures"]]
    summary["runs"] = runs
    return summary
