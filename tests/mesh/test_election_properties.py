"""Laws of the election core under arbitrary schedules (hypothesis).

Hypothesis picks the schedule step by step: how far true time moves, which share of the
messages in flight is dropped, duplicated or held back for later steps (so messages reorder
freely and arrive late), in which order the rest arrive, and what happens to the nodes (a crash,
a restart, one node cut off, the leader handing over, the leader adding or removing a voter and
each node learning of it late). Clock rates sit anywhere within the drift bound. Whatever the schedule: at most one leader per term, no two valid leases at one true time,
no vote changed within a term, no persisted term going back, and nothing sent before the state it
depends on is durable (the last three are checked by the harness on every output).
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.election import ElectionConfig, Role
from tests.mesh.test_election_harness import Harness

LAN = ElectionConfig.lan()

_event = st.sampled_from([None] * 6 + ["crash", "restart", "isolate", "isolate-leader", "heal",
                                       "transfer"] + ["change-voters"] * 4)


@st.composite
def _steps(draw: st.DrawFn, max_steps: int) -> list[tuple[float, int, int, int, int, object]]:
    steps = []
    for _ in range(draw(st.integers(20, max_steps))):
        steps.append((
            draw(st.integers(1, 60)) / 100,  # seconds of true time
            draw(st.integers(0, 40)),  # % of messages dropped
            draw(st.integers(0, 20)),  # % duplicated
            draw(st.integers(0, 50)),  # % held back to a later step
            draw(st.integers(0, 1 << 16)),  # delivery order and event target
            draw(_event),
        ))
    return steps


def _play(h: Harness, steps: list[tuple[float, int, int, int, int, object]]
          ) -> tuple[frozenset[str], tuple[int, int]]:
    """Run the schedule; returns the newest voter set and its version."""
    voters = sorted(h.voter_ids)
    isolated: str | None = None
    # The newest voter set, its version, and who has yet to learn it (gossip is slow).
    current, version = h.voter_ids, (0, 1)
    unaware: set[str] = set()
    for dt, drop, dup, hold, pick, event in steps:
        rng = random.Random(pick)
        for node_id in sorted(unaware):
            if rng.random() < 0.3:
                unaware.discard(node_id)
                h.adopt(node_id, current, version)
        if event == "change-voters":
            # The agent's rule: a leader holding its lease writes the set, stamped with its
            # term, once most current voters hold the last one; one voter in or out.
            leader = next((n for n in h.ids if n not in h.down
                           and h.cores[n].is_leader_with_lease(h.local(n))), None)
            settled = sum(1 for v in current if h.adopted[v][1] == version)
            if leader is not None and settled > len(current) // 2:
                others = [n for n in h.ids if n not in current]
                if others and (len(current) < 3 or rng.random() < 0.5):
                    current = current | {rng.choice(others)}
                elif len(current) > 1:
                    current = current - {rng.choice(sorted(current))}
                version = (h.cores[leader].term, version[1] + 1)
                h.adopt(leader, current, version)
                unaware = set(h.ids) - {leader}
                voters = sorted(current)
        if event == "crash":
            h.crash(rng.choice(voters))
        elif event == "restart" and h.down:
            node_id = rng.choice(sorted(h.down))
            h.restart(node_id)
            unaware.add(node_id)
        elif event == "isolate":
            isolated = rng.choice(voters)
        elif event == "isolate-leader":
            leaders = [n for n in voters if h.role(n) is Role.LEADER and n not in h.down]
            isolated = leaders[0] if leaders else isolated
        elif event == "heal":
            isolated = None
        elif event == "transfer":
            for node_id in voters:
                if node_id not in h.down and h.role(node_id) is Role.LEADER:
                    h._absorb(node_id, h.cores[node_id].transfer_leadership(h.local(node_id)))
        h.advance(dt)
        h.tick_all()
        batch, h.pending = h.pending, []
        rng.shuffle(batch)
        for item in batch:
            roll = rng.randrange(100)
            if isolated in (item.src, item.dst) or roll < drop:
                continue
            if roll < drop + hold:
                h.pending.append(item)  # arrives in a later step, after newer messages
                continue
            h.pending.insert(0, item)
            if rng.randrange(100) < dup:
                h.pending.append(item)
            h.deliver(0)
            # Replies produced while delivering wait for the next step.
    return current, version


@settings(deadline=None, max_examples=120)
@given(
    voters=st.sampled_from([1, 2, 3, 4, 5]),
    rates=st.lists(st.floats(1 - LAN.max_clock_drift, 1 + LAN.max_clock_drift),
                   min_size=5, max_size=5),
    steps=_steps(200),
    seed=st.integers(0, 1 << 20),
)
def test_any_schedule_keeps_one_leader_per_term_and_one_valid_lease(
        voters: int, rates: list[float], steps: list, seed: int) -> None:
    ids = [f"v{i}" for i in range(voters)]
    h = Harness(voters, non_voters=2, seed=seed, rates=dict(zip(ids, rates, strict=False)))
    _play(h, steps)
    assert h.monitor.violations == []


@settings(deadline=None, max_examples=30)
@given(voters=st.sampled_from([3, 5]), steps=_steps(120), seed=st.integers(0, 1 << 20))
def test_after_any_schedule_a_healed_cluster_elects_one_leader_everyone_follows(
        voters: int, steps: list, seed: int) -> None:
    h = Harness(voters, non_voters=2, seed=seed)
    current, version = _play(h, steps)
    for node_id in sorted(h.down):
        h.restart(node_id)
    for node_id in h.ids:
        h.adopt(node_id, current, version)
    h.pending.clear()
    h.run(6 * LAN.election_timeout_max)
    leaders = h.leaders()
    assert len(leaders) == 1
    assert all(h.cores[v].leader == leaders[0] for v in current)
    assert h.monitor.violations == []


@settings(deadline=None, max_examples=40)
@given(voters=st.sampled_from([3, 5]), steps=_steps(150), seed=st.integers(0, 1 << 20))
def test_a_minority_alone_never_elects_and_never_raises_its_term(
        voters: int, steps: list, seed: int) -> None:
    h = Harness(voters, seed=seed)
    minority = {f"v{i}" for i in range(voters // 2)}
    for node_id in sorted(h.voter_ids - minority):
        h.crash(node_id)
    _play(h, [(dt, drop, dup, hold, pick, None) for dt, drop, dup, hold, pick, _ in steps])
    assert all(h.role(n) is not Role.LEADER for n in minority)
    assert all(h.cores[n].term == 0 for n in minority)  # pre-vote kept terms down
