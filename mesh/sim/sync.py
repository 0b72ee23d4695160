"""The sync scenario: partitioned writes, crashes and loss, then heal; count rounds to converge.

N nodes, each with in-memory stores (`storage.memory`, the real merge rules and digests) and
the real sync core (`mesh.sync`) driven over `SimNet`. The network is split in two halves;
both halves write games and Elo match rows (match ids drawn from a shared pool, so the same
match is overwritten from both sides and last-write-wins has work to do) while the halves sync
among themselves; some nodes crash mid-way and come back with their stores intact (a restart
keeps its SQLite file) but with no session or scheduler state. The writes stop and each half
settles (agrees within itself; `settle_rounds`). Then the partition heals, a few nodes crash
for part of a round, and we count sync rounds (one round = one sync interval, in which every
node runs at most one pull session) until every node holds the same roots.

Why settle first: the goal (identical roots within 3 rounds of the heal) is about reconciling
two sides. A row written the instant before the heal exists on one node only, and with one
pull per node per round it needs about log2(n) rounds to reach everyone whether or not there
was a partition (`settle=False` measures that case: 12 rounds at 200 nodes, seed 1).

Manifests are modelled as a board: every node posts its store summaries at each tick, and a
peer reads the post as it was `manifest_delay` seconds ago (one gossip delay). A node sees the
peers it is connected to, crashed or not (membership needs a while to notice a crash; the
scheduler's back-off handles them meanwhile). The full membership integration is the agent's.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import msgpack

from mesh import codec
from mesh.manifest import StoreSummary
from mesh.sim.net import ENVELOPE_OVERHEAD_BYTES, HTTP_OVERHEAD_BYTES, SimNet, wire_size
from mesh.sim.puller import SimPuller
from mesh.sync import (
    SyncConfig,
    SyncScheduler,
)
from mesh.sync_messages import (
    DigestsReply,
    DigestsRequest,
    EntriesReply,
    EntriesRequest,
    RangeRowsReply,
    RangeRowsRequest,
    RowsReply,
    RowsRequest,
    SubDigestsReply,
    SubDigestsRequest,
    SyncRefused,
)
from storage.hlc import HybridClock
from storage.memory import MemoryStores
from storage.rows import new_game, new_match

Summaries = dict[str, StoreSummary]


@dataclass(slots=True)
class Counters:
    """Totals over all nodes of one run."""

    sessions: int = 0
    sessions_failed: int = 0
    requests: int = 0
    rows_pulled: int = 0
    # Rows pulled that changed nothing on arrival (merge "skipped"). ~0: the only source is a
    # local write landing while a pull of the same match row was in flight, which makes the
    # pulled version older by the time it arrives (seen once in 5 runs at 5% loss).
    duplicate_rows_pulled: int = 0


class ManifestBoard:
    """Each node's store summaries as peers see them: posted every tick, read `delay` late."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self._posts: dict[str, deque[tuple[float, Summaries]]] = {}

    def post(self, node_id: str, now: float, summaries: Summaries) -> None:
        posts = self._posts.setdefault(node_id, deque())
        posts.append((now, summaries))
        # Keep only what a reader `delay` late can still need: the newest post older than that.
        while len(posts) > 1 and posts[1][0] <= now - self.delay:
            posts.popleft()

    def read(self, node_id: str, now: float) -> Summaries | None:
        posts = self._posts.get(node_id)
        if not posts:
            return None
        visible = None
        for at, summaries in posts:
            if at > now - self.delay:
                break
            visible = summaries
        return visible


def summaries_of(stores: MemoryStores) -> Summaries:
    return {name: StoreSummary(*store.summary()) for name, store in stores.by_name().items()}


class SyncSimNode:
    """One node's sync: the real scheduler choosing pulls, run by the simulator's sync shell
    (`mesh.sim.puller.SimPuller`, the same one whole simulated nodes use)."""

    def __init__(self, node_id: str, stores: MemoryStores, peers: Callable[[str, float], Any],
                 board: ManifestBoard, rng: random.Random, counters: Counters,
                 interval: float, config: SyncConfig, tick_interval: float) -> None:
        self.node_id = node_id
        self.stores = stores
        self.tick_interval = tick_interval
        self._peers = peers
        self._board = board
        self._rng = rng
        self._counters = counters
        self._interval = interval
        self._scheduler = SyncScheduler(rng, config)
        self._puller = SimPuller(stores.by_name(), config)
        self._merges = 0
        self._next_round: float | None = None
        self._summaries: Summaries | None = None  # cached until our stores change

    def stores_changed(self) -> None:
        """Our stores were written outside a pull (a local write): summarise them afresh."""
        self._summaries = None

    def summaries(self) -> Summaries:
        if self._puller.merges != self._merges:
            self._merges = self._puller.merges
            self._summaries = None
        if self._summaries is None:
            self._summaries = summaries_of(self.stores)
        return self._summaries

    def tick(self, now: float) -> list[Any]:
        out: list[Any] = self._puller.tick(now)
        self._finish(now)
        self._board.post(self.node_id, now, self.summaries())
        if self._next_round is None:
            # First tick after (re)start: rounds at a random phase, as real nodes have.
            self._next_round = now + self._rng.uniform(0.0, self._interval)
        if now >= self._next_round:
            self._next_round += self._interval * math.ceil(
                (now - self._next_round + 1e-9) / self._interval)
            if not self._puller.busy:
                plan = self._scheduler.plan(now, self.summaries(),
                                            self._peers(self.node_id, now))
                if plan is not None:
                    self._counters.sessions += 1
                    out += self._puller.start(plan, now)
                    self._finish(now)
        return out

    def handle(self, src: str, msg: Any, now: float) -> list[Any]:
        answer = self._puller.answer(src, msg)
        if answer is not None:
            return answer
        out = self._puller.on_reply(src, msg, now) or []
        self._finish(now)
        return out

    def _finish(self, now: float) -> None:
        while self._puller.done:
            plan, outcome = self._puller.done.pop(0)
            self._scheduler.finished(plan, outcome, now)
            counters = self._counters
            counters.sessions_failed += not outcome.ok
            counters.requests += outcome.requests
            counters.rows_pulled += outcome.rows_pulled
            counters.duplicate_rows_pulled += outcome.merged.skipped


def _node_ids(n: int) -> list[str]:
    width = len(str(n - 1))
    return [f"n{i:0{width}d}" for i in range(n)]


def sync_wire_size(msg: Any) -> int:
    """`net.wire_size` of a message, computed without the codec's per-value walk for sync ones.

    Every field of a sync message is already plain data (str, bool, int, lists of those, rows
    as `codec.Plain`), so the codec's body is the dict of its fields and msgpack alone gives the
    same byte count (tested); that keeps 200-node runs in seconds.
    """
    names = _SYNC_FIELDS.get(type(msg))
    if names is None:
        return wire_size(msg)
    body = {name: getattr(msg, name) for name in names}
    return (len(msgpack.packb(body, use_bin_type=True)) + len(msgpack.packb(codec.kind_of(msg)))
            + ENVELOPE_OVERHEAD_BYTES + HTTP_OVERHEAD_BYTES)


_SYNC_FIELDS = {cls: tuple(f.name for f in dataclasses.fields(cls))
                for cls in (DigestsRequest, DigestsReply, SubDigestsRequest, SubDigestsReply,
                            EntriesRequest, EntriesReply, RowsRequest, RowsReply,
                            RangeRowsRequest, RangeRowsReply, SyncRefused)}


def _identical(stores: Mapping[str, MemoryStores], ids: Iterable[str]) -> bool:
    return len({tuple(sorted((n, s.root) for n, s in summaries_of(stores[i]).items()))
                for i in ids}) <= 1


def run_once(nodes: int = 200, seed: int = 0, loss: float = 0.0, *,
             write_rounds: int = 5, writes: int = 600, match_pool: int = 150,
             crashes: float = 0.05, heal_crashes: float = 0.02, settle: bool = True,
             interval: float = 2.0, manifest_delay: float = 0.5, max_rounds: int = 30,
             initial_rows: int = 200) -> dict[str, Any]:
    """One seeded run; returns its figures (see the module docstring)."""
    if nodes < 2:
        raise ValueError(f"nodes must be >= 2, got {nodes}")
    net = SimNet(seed, loss=loss, sizer=sync_wire_size)
    rng = net.rng
    ids = _node_ids(nodes)
    board = ManifestBoard(manifest_delay)
    counters = Counters()
    # Virtual ms since an epoch, so hybrid clocks (and LWW order) follow simulated time.
    clocks = {nid: HybridClock(lambda: 1_700_000_000_000 + int(net.now * 1000), 60_000)
              for nid in ids}
    stores = {nid: MemoryStores(clocks[nid]) for nid in ids}
    # Sessions take milliseconds in the simulated network (delay <= 5 ms): a lost request is
    # noticed within a few tenths of a second and retried.
    config = SyncConfig(request_timeout_s=0.2)
    # Replies are matched to the pending request by peer and kind only, which is sound while
    # no reply can outlive its request's timeout.
    assert config.request_timeout_s > 2 * net.delay[1]

    def peers(me: str, now: float) -> dict[str, Summaries]:
        seen = {}
        for p in ids:
            if p != me and net.connected(me, p):
                posted = board.read(p, now)
                if posted is not None:
                    seen[p] = posted
        return seen

    def make_node(nid: str) -> SyncSimNode:
        return SyncSimNode(nid, stores[nid], peers, board, random.Random(rng.random()), counters,
                           interval, config, tick_interval=0.1)

    def crash_some(fraction: float, start: float, end: float, downtime: tuple[float, float]
                   ) -> None:
        for nid in rng.sample(ids, round(fraction * nodes)):
            down = rng.uniform(start, end)
            up = down + rng.uniform(*downtime) * interval
            net.schedule(down, lambda nid=nid: net.crash(nid))
            net.schedule(up, lambda nid=nid: net.restart(nid, make_node(nid)))

    # Shared history every node starts with (the cluster before this episode).
    base = [_random_game(rng, "n0", 1_600_000_000_000 + i) for i in range(initial_rows)]
    for s in stores.values():
        s.games.merge(base)
    for nid in ids:
        net.add(nid, make_node(nid))

    half = set(rng.sample(ids, nodes // 2))
    other = set(ids) - half
    net.partition([half])
    writes_end = write_rounds * interval
    match_ids = [f"match-{i}" for i in range(match_pool)]

    def write(nid: str) -> None:
        if not net.is_up(nid):
            return
        hlc = clocks[nid].now()
        net.node(nid).stores_changed()  # type: ignore[attr-defined]
        if rng.random() < 0.5:
            stores[nid].games.put(_random_game(rng, nid, hlc))
        else:
            a, b = rng.sample(range(20), 2)
            score = rng.choice((0.0, 0.5, 1.0))
            stores[nid].matches.put(new_match(rng.choice(match_ids), [f"model-{a}", f"model-{b}"],
                                              "square8", 2, [score, 1.0 - score], hlc, nid))

    for _ in range(writes):
        nid = rng.choice(ids)
        net.schedule(rng.uniform(0.0, writes_end), lambda nid=nid: write(nid))
    # Crashed nodes are back before the writes end: all nodes take part in the heal.
    crash_some(crashes, 0.0, writes_end - 2 * interval, (0.5, 1.0))

    net.run_until(writes_end)
    settle_rounds = 0
    if settle:
        # Let each side agree within itself, so the rounds after the heal measure the heal.
        while settle_rounds < max_rounds and not (_identical(stores, half)
                                                  and _identical(stores, other)):
            settle_rounds += 1
            net.run_until(writes_end + settle_rounds * interval)
    heal_at = net.now
    net.heal()
    # A few nodes crash right after the heal, cutting pulls short on both ends.
    crash_some(heal_crashes, heal_at, heal_at + interval / 2, (0.2, 0.5))
    before = counters.rows_pulled
    rounds = None
    for k in range(1, max_rounds + 1):
        net.run_until(heal_at + k * interval)
        if _identical(stores, ids):
            rounds = k
            break
    rows_after_heal = counters.rows_pulled - before
    # In sync: one round for the last manifests to show it, then whatever sync traffic flows
    # in the next round is what in-sync pairs cost.
    net.run_until(net.now + interval)
    bytes_before = sum(t.bytes_sent for t in net.traffic.values())
    sessions_before = counters.sessions
    net.run_until(net.now + interval)
    insync_bytes = sum(t.bytes_sent for t in net.traffic.values()) - bytes_before
    final = summaries_of(stores[ids[0]])
    return {
        "seed": seed,
        "converged": rounds is not None,
        "rounds_to_converge": rounds,
        "settle_rounds": settle_rounds,
        "rows_pulled": counters.rows_pulled,
        "duplicate_rows_pulled": counters.duplicate_rows_pulled,
        "rows_pulled_after_heal": rows_after_heal,
        "sessions": counters.sessions,
        "sessions_failed": counters.sessions_failed,
        "requests": counters.requests,
        "bytes_sent": sum(t.bytes_sent for t in net.traffic.values()),
        "insync_sessions": counters.sessions - sessions_before,
        # Sync bytes per in-sync pair per round (pairs = n*(n-1)/2); manifests are membership's.
        "insync_pair_bytes": insync_bytes / (nodes * (nodes - 1) / 2),
        "final_counts": {name: s.count for name, s in sorted(final.items())},
    }


def _random_game(rng: random.Random, origin: str, hlc: int) -> dict:
    moves = [bytes((rng.randrange(21), 1, rng.randrange(64), 0))
             for _ in range(rng.randrange(20, 60))]
    return new_game("square8", 2, moves, rng.choice([[1, 2], [2, 1]]), hlc, origin)


def run(nodes: int = 200, seed: int = 0, seeds: int = 1, loss: float = 0.0,
        target_rounds: int = 3, **extra: Any) -> dict[str, Any]:
    """`seeds` runs from `seed` on; each run's figures and the worst case over all.

    A run fails when it does not converge within `target_rounds` rounds of the heal (the
    goal); `failures` names its seed so that it can be replayed.
    """
    runs = [run_once(nodes, s, loss, **extra) for s in range(seed, seed + seeds)]
    failures = [f"seed {r['seed']}: roots still differ {target_rounds} rounds after the heal "
                f"(converged after {r['rounds_to_converge']})"
                for r in runs if not r["converged"] or r["rounds_to_converge"] > target_rounds]
    converged = [r["rounds_to_converge"] for r in runs if r["converged"]]
    return {
        "scenario": "sync",
        "nodes": nodes,
        "seed": seed,
        "seeds": seeds,
        "loss": loss,
        "ok": not failures,
        "failures": failures,
        "rounds_to_converge": max(converged) if len(converged) == len(runs) else None,
        "settle_rounds": max(r["settle_rounds"] for r in runs),
        "rows_pulled": sum(r["rows_pulled"] for r in runs),
        "duplicate_rows_pulled": sum(r["duplicate_rows_pulled"] for r in runs),
        "sessions_failed": sum(r["sessions_failed"] for r in runs),
        "insync_pair_bytes": max(r["insync_pair_bytes"] for r in runs),
        "runs": runs,
    }
