"""A hand-driven network of election cores for the election tests (this module holds no tests).

Messages wait in `pending` until a test delivers, drops, duplicates or reorders them; every
node's clock is `offset + rate * true_now`. `Persist` effects are recorded per node and checked
to come before the sends that follow them in the same output list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from mesh.core import Send
from mesh.election import Election, ElectionConfig, Persist, Role
from mesh.sim.election import Clock, KeyDirectory, SafetyMonitor
from mesh.voters import VoterSet, adopt_voters


@dataclass(frozen=True, slots=True)
class InFlight:
    src: str
    dst: str
    msg: object


class Harness:
    def __init__(self, voters: int, non_voters: int = 0, config: ElectionConfig | None = None,
                 seed: int = 0, rates: dict[str, float] | None = None) -> None:
        self.config = config or ElectionConfig.lan()
        self.rng = random.Random(seed)
        self.voter_ids = frozenset(f"v{i}" for i in range(voters))
        self.ids = sorted(self.voter_ids) + [f"n{i}" for i in range(non_voters)]
        self.clocks = {n: Clock((rates or {}).get(n, 1.0), self.rng.uniform(0, 1000))
                       for n in self.ids}
        self.persisted: dict[str, tuple[int, str | None]] = {n: (0, None) for n in self.ids}
        # The voter set (and its version) each node holds, as its shell would persist it.
        self.adopted = {n: (self.voter_ids, (0, 1)) for n in self.ids}
        self.keys = KeyDirectory(seed)
        self.cores = {n: self._core(n) for n in self.ids}
        self.pending: list[InFlight] = []
        self.monitor = SafetyMonitor()
        self.now = 0.0
        self.down: set[str] = set()

    def _core(self, node_id: str) -> Election:
        voters, version = self.adopted[node_id]
        return Election(node_id, voters, self.config, random.Random(self.rng.getrandbits(32)),
                        self.persisted[node_id], version, notary=self.keys.notary(node_id))

    def adopt(self, node_id: str, voters: frozenset[str], version: tuple[int, int]) -> None:
        """`node_id` learns a voter set (as the agent does from gossip, newest version wins)."""
        if version <= self.adopted[node_id][1]:
            return
        self.adopted[node_id] = (voters, version)
        if node_id in self.down:
            return
        core = self.cores[node_id]
        # The node core's rule: a fresh core when changes were missed, else set_voters.
        adopted = adopt_voters(core, VoterSet(tuple(sorted(voters)), version),
                               random.Random(self.rng.getrandbits(32)))
        if adopted is not core:
            self.monitor.crashed(node_id, self.now)
            self.cores[node_id] = adopted
        self.monitor.step(node_id, self.cores[node_id], self.clocks[node_id], self.now)

    def local(self, node_id: str) -> float:
        return self.clocks[node_id].local(self.now)

    def _absorb(self, node_id: str, outputs: list[object]) -> None:
        for out in outputs:
            if isinstance(out, Persist):
                old_term, old_vote = self.persisted[node_id]
                assert out.term >= old_term, f"{node_id}: persisted term went backwards"
                assert out.term > old_term or old_vote in (None, out.voted_for), (
                    f"{node_id}: vote in term {out.term} changed from {old_vote} to "
                    f"{out.voted_for}")
                self.persisted[node_id] = (out.term, out.voted_for)
            elif isinstance(out, Send):
                # What a sent message claims must already be durable: the persisted term and
                # vote, or the term of the voter set the shell persisted, if later.
                term, voted_for = self.persisted[node_id]
                set_term = self.adopted[node_id][1][0]
                if set_term > term:
                    term, voted_for = set_term, None
                core = self.cores[node_id]
                if core.is_voter:
                    assert (term, voted_for) == (core.term, core.voted_for), (
                        f"{node_id} sent {out.msg} before persisting term {core.term} / "
                        f"vote {core.voted_for}")
                self.pending.append(InFlight(node_id, out.to, out.msg))
            else:
                raise TypeError(f"unexpected output {out!r}")
        self.monitor.step(node_id, self.cores[node_id], self.clocks[node_id], self.now)

    def tick(self, node_id: str) -> None:
        if node_id not in self.down:
            self._absorb(node_id, self.cores[node_id].tick(self.local(node_id)))

    def tick_all(self) -> None:
        for node_id in self.ids:
            self.tick(node_id)

    def deliver(self, index: int) -> None:
        item = self.pending.pop(index)
        if item.dst in self.down:
            return
        core = self.cores[item.dst]
        self._absorb(item.dst, core.handle(item.src, item.msg, self.local(item.dst)))

    def deliver_all(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            if not self.pending:
                return
            self.deliver(0)
        raise AssertionError("messages kept flowing without time passing")

    def advance(self, dt: float) -> None:
        self.now += dt

    def run(self, seconds: float, step: float | None = None) -> None:
        """Tick every node every `step` and deliver everything in between (no loss)."""
        step = step or self.config.heartbeat_interval / 2
        end = self.now + seconds
        while self.now < end:
            self.advance(step)
            self.tick_all()
            self.deliver_all()

    def crash(self, node_id: str) -> None:
        self.down.add(node_id)
        self.monitor.crashed(node_id, self.now)

    def restart(self, node_id: str) -> None:
        self.down.discard(node_id)
        self.cores[node_id] = self._core(node_id)
        self.clocks[node_id] = Clock(self.clocks[node_id].rate, self.rng.uniform(0, 1000))

    def leaders(self) -> list[str]:
        return [n for n in self.ids if n not in self.down
                and self.cores[n].is_leader_with_lease(self.local(n))]

    def role(self, node_id: str) -> Role:
        return self.cores[node_id].role
