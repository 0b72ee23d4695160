"""The node core driven directly: the glue between membership, election and sync.

Manifest authoring, refutation, voter adoption, learning the leader from manifests, pull
planning and remembering peers used to live in the asyncio shell, untested; here each is an
input to `MeshNode` and an ordered list of effects out.
"""

from __future__ import annotations

import dataclasses
import random

import pytest

from mesh.core import Send
from mesh.identity import Identity
from mesh.manifest import Manifest, StoreSummary, sign_manifest
from mesh.membership_messages import Ack, Gossip, Ping, SyncRequest, Update
from mesh.node import (
    STATE_ELECTION,
    STATE_INCARNATION,
    STATE_PEERS,
    STATE_VOTERS,
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
from mesh.sim import cluster
from mesh.sim.membership import SharedVerifier
from mesh.sync import PullOutcome
from mesh.voters import VoterSet

VERIFY = SharedVerifier()
IDS = [Identity.from_seed(bytes([i]) * 32) for i in range(4)]
WALL0 = 1_700_000_000_000


def make(index: int, persisted: Persisted = Persisted(), **config: object) -> MeshNode:
    identity = IDS[index]
    info = NodeInfo(identity.node_id, identity.public_key, f"10.0.0.{index + 1}:7420", "test")
    return MeshNode(info, NodeConfig(**config), persisted, random.Random(index),  # type: ignore[arg-type]
                    notary=Notary(identity), wall_offset_ms=WALL0, verify=VERIFY)


def execute(node: MeshNode, effects: list[object], now: float) -> list[object]:
    """What the shell does with `SignManifest` (sign, hand back); every effect listed."""
    out: list[object] = []
    for effect in effects:
        out.append(effect)
        if isinstance(effect, SignManifest):
            identity = next(i for i in IDS if i.node_id == node.node_id)
            out += execute(node, node.published(sign_manifest(identity, effect.manifest), now),
                           now)
    return out


def ticks(node: MeshNode, start: float, end: float) -> list[object]:
    """Tick every 50 ms from `start` to `end` (inclusive); all effects, executed."""
    out: list[object] = []
    steps = round((end - start) / 0.05)
    for k in range(steps + 1):
        now = start + k * 0.05
        out += execute(node, node.tick(now), now)
    return out


def answered(node: MeshNode, effects: list[object], now: float) -> list[object]:
    """`effects`, with every ping the node sent answered at once (its peers are up)."""
    for effect in effects:
        if isinstance(effect, Send) and isinstance(effect.msg, Ping):
            node.handle(effect.to, Ack(effect.msg.seq), now)
    return effects


def started(index: int, now: float = 0.0, **kwargs: object) -> MeshNode:
    node = make(index, **kwargs)  # type: ignore[arg-type]
    node.start(sign_manifest(IDS[index], node.manifest), now)
    return node


def signed_update(identity: Identity, manifest: Manifest) -> Update:
    return Update(identity.node_id, "alive", manifest.incarnation,
                  sign_manifest(identity, manifest), manifest.freshness)


def peer_manifest(index: int, **fields: object) -> Manifest:
    base = make(index).manifest
    return dataclasses.replace(base, **fields)  # type: ignore[arg-type]


def of(effects: list[object], kind: type) -> list:
    return [e for e in effects if isinstance(e, kind)]


def test_a_restart_stores_the_next_incarnation_before_joining() -> None:
    node = make(0, Persisted(incarnation=3, peers=("10.0.0.9:7420",)))
    assert node.manifest.incarnation == 4
    effects = node.start(sign_manifest(IDS[0], node.manifest), 0.0, ["10.0.0.2:7420"])
    assert effects[0] == SaveState(STATE_INCARNATION, 4)
    joins = [e for e in effects[1:] if isinstance(e, Send)]
    assert [s.address for s in joins] == ["10.0.0.2:7420", "10.0.0.9:7420"]
    assert all(isinstance(s.msg, SyncRequest) for s in joins)


def test_the_manifest_is_re_signed_only_when_what_it_says_changes() -> None:
    node = started(0)
    first = node.manifest
    quiet = execute(node, node.tick(1.0), 1.0) + execute(node, node.tick(1.5), 1.5)
    assert not of(quiet, SignManifest)
    node.set_local({"games": StoreSummary(3, "ab" * 16)}, blobs_missing=False)
    node.set_state("selfplay")
    effects = execute(node, node.tick(2.0), 2.0)
    (sign,) = of(effects, SignManifest)
    assert sign.manifest.seq == first.seq + 1 and sign.manifest.incarnation == first.incarnation
    assert sign.manifest.state == "selfplay"
    assert sign.manifest.stores == {"games": StoreSummary(3, "ab" * 16)}
    assert node.membership.manifest_of(node.node_id) == sign.manifest  # type: ignore[union-attr]


def test_a_suspicion_is_refuted_by_signing_a_higher_incarnation_stored_first() -> None:
    node = started(0)
    doubter = IDS[1]
    execute(node, node.handle(doubter.node_id, Gossip([signed_update(doubter, peer_manifest(1))]),
                              0.5), 0.5)
    effects = execute(node, node.handle(doubter.node_id,
                                        Gossip([Update(node.node_id, "suspect", 1)]), 1.0), 1.0)
    saves = [i for i, e in enumerate(effects) if isinstance(e, SaveState)
             and e.key == STATE_INCARNATION]
    signs = [i for i, e in enumerate(effects) if isinstance(e, SignManifest)]
    answers = [i for i, e in enumerate(effects) if isinstance(e, Send)
               and e.to == doubter.node_id and isinstance(e.msg, Gossip)]
    assert effects[saves[0]] == SaveState(STATE_INCARNATION, 2)
    assert saves[0] < signs[0] < answers[0]  # stored, then signed, then told
    (told,) = [u for u in effects[answers[0]].msg.updates if u.node_id == node.node_id]
    assert (told.state, told.incarnation) == ("alive", 2)
    assert node.membership.incarnation == 2  # type: ignore[union-attr]


def test_a_non_voter_learns_the_leader_from_the_leaders_own_manifest() -> None:
    node = started(0)
    leader = IDS[1]
    # Its lease announcement carries the certificate of its election (here: its own vote).
    claim = peer_manifest(1, leader=leader.node_id, term=7, lease_until_ms=WALL0 + 5_000,
                          voters=(leader.node_id,), voters_version=(1, 1),
                          quorum={leader.node_id: Notary(leader).endorse(7, leader.node_id)})
    node.handle(leader.node_id, Gossip([signed_update(leader, claim)]), 1.0)
    effects = ticks(node, 1.0, 1.5)
    assert node.election.leader == leader.node_id and node.election.term == 7
    assert any(isinstance(e, LeaderChanged) and e.leader == leader.node_id and e.term_raised
               for e in effects)
    # Its own next manifest announces the leader it follows.
    assert any(isinstance(e, SignManifest) and e.manifest.leader == leader.node_id
               for e in effects + ticks(node, 1.55, 2.0))


def test_a_leader_claim_without_a_certificate_is_not_learned() -> None:
    node = started(0, persisted=Persisted(voter_set=VoterSet((IDS[1].node_id,), (1, 1))))
    claim = peer_manifest(1, leader=IDS[1].node_id, term=7, lease_until_ms=WALL0 + 5_000,
                          voters=(IDS[1].node_id,), voters_version=(1, 1))
    node.handle(IDS[1].node_id, Gossip([signed_update(IDS[1], claim)]), 1.0)
    ticks(node, 1.0, 1.5)
    assert node.election.leader is None and node.election.term < 7


def test_the_newest_proven_voter_set_in_any_manifest_is_adopted_and_stored() -> None:
    node = started(0, persisted=Persisted(voter_set=VoterSet((IDS[0].node_id,), (0, 1))))
    voters = tuple(sorted((IDS[0].node_id, IDS[1].node_id)))
    # IDS[1] won term 2 with the vote of the only voter of the set node 0 holds.
    proof = {IDS[0].node_id: Notary(IDS[0]).endorse(2, IDS[1].node_id)}
    news = peer_manifest(1, voters=voters, voters_version=(2, 2), term=2, quorum=proof)
    node.handle(IDS[1].node_id, Gossip([signed_update(IDS[1], news)]), 1.0)
    effects = ticks(node, 1.0, 1.3)
    assert SaveState(STATE_VOTERS, {"voters": list(voters), "version": [2, 2]}) in effects
    assert VotersChanged(VoterSet(voters, (2, 2))) in effects
    assert node.election.voters == frozenset(voters)
    assert node.election.term >= 2  # adopting a set moves to its writer's term
    # A newer set announced without a leader's proof is refused and counted.
    forged = peer_manifest(2, voters=(IDS[2].node_id,), voters_version=(9, 9), term=9,
                           quorum={IDS[2].node_id: Notary(IDS[2]).endorse(9, IDS[2].node_id)})
    node.handle(IDS[2].node_id, Gossip([signed_update(IDS[2], forged)]), 1.5)
    assert not of(ticks(node, 1.5, 2.0), VotersChanged)
    assert node.voter_sets_refused == 1 and node.voters == voters


def test_configured_voters_override_the_set_the_cluster_announces() -> None:
    mine = (IDS[2].node_id,)
    node = started(0, voters=mine)
    news = peer_manifest(1, voters=(IDS[1].node_id,), voters_version=(5, 5), term=5,
                         quorum={IDS[1].node_id: Notary(IDS[1]).endorse(5, IDS[1].node_id)})
    node.handle(IDS[1].node_id, Gossip([signed_update(IDS[1], news)]), 1.0)
    assert not of(ticks(node, 1.0, 1.5), VotersChanged)
    assert node.voters == mine


def test_a_lone_founder_elects_itself_and_persists_its_vote_before_leading() -> None:
    node = started(0)
    effects = node.initialise_voters([IDS[0].node_id], 0.0)
    assert of(effects, VotersChanged)
    out: list[object] = []
    now = 0.0
    while not node.is_leader(now) and now < 5.0:
        now += node.config.tick_interval
        out += execute(node, node.tick(now), now)
    assert node.is_leader(now)
    votes = [i for i, e in enumerate(out) if isinstance(e, SaveState) and e.key == STATE_ELECTION]
    led = [i for i, e in enumerate(out) if isinstance(e, LeaderChanged) and e.leading]
    assert votes and led and votes[0] < led[0]  # the vote is stored before it leads
    assert node.lease_until_ms(now) > node.wall_ms(now)


def test_one_pull_at_a_time_goes_to_a_peer_whose_roots_differ() -> None:
    node = started(0, sync_interval_s=1.0)
    node.set_local({"games": StoreSummary(1, "00" * 16)}, blobs_missing=False)
    theirs = peer_manifest(1, stores={"games": StoreSummary(5, "11" * 16)})
    node.handle(IDS[1].node_id, Gossip([signed_update(IDS[1], theirs)]), 0.1)
    pulls: list[Pull] = []
    now = 0.0
    while now < 3.0:
        now += 0.05
        pulls += of(answered(node, node.tick(now), now), Pull)
    (pull,) = pulls  # the first round planned it; later rounds wait for it to end
    assert pull.plan.peer == IDS[1].node_id and pull.plan.stores == ("games",)
    node.pull_finished(pull.plan, PullOutcome(pull.plan.peer, ("games",)), now)
    # Covered at that root: no further pull while the peer's root stays the same.
    later = [p for t in range(1, 60)
             for p in of(answered(node, node.tick(now + t * 0.05), now + t * 0.05), Pull)]
    assert later == [] and node.pulling is None


def test_a_pull_that_brought_rows_starts_the_next_at_once() -> None:
    node = started(0, sync_interval_s=30.0)
    node.set_local({"games": StoreSummary(1, "00" * 16)}, blobs_missing=False)
    for i, root in ((1, "11"), (2, "22")):
        theirs = peer_manifest(i, stores={"games": StoreSummary(5, root * 16)})
        node.handle(IDS[i].node_id, Gossip([signed_update(IDS[i], theirs)]), 0.1)
    pulls: list[Pull] = []
    now = 0.0
    while not pulls:
        now += 0.05
        pulls = of(answered(node, node.tick(now), now), Pull)
    first = pulls[0].plan
    # Rows came: the other peer, whose root still differs, is pulled from straight away.
    (chained,) = of(node.pull_finished(first, PullOutcome(first.peer, ("games",),
                                                          rows_pulled=4), now), Pull)
    assert chained.plan.peer != first.peer and node.pulling == chained.plan
    # A pull that failed waits for the next round (and backs off from that peer).
    failed = PullOutcome(chained.plan.peer, (), failed="games", error="no reply")
    assert node.pull_finished(chained.plan, failed, now + 0.1) == []
    assert node.pulling is None


def test_a_pull_a_peer_ended_moves_to_another_peer_at_once() -> None:
    node = started(0, sync_interval_s=30.0)
    node.set_local({"games": StoreSummary(1, "00" * 16)}, blobs_missing=False)
    for i in (1, 2):  # both hold the same rows we lack
        theirs = peer_manifest(i, stores={"games": StoreSummary(5, "11" * 16)})
        node.handle(IDS[i].node_id, Gossip([signed_update(IDS[i], theirs)]), 0.1)
    pulls: list[Pull] = []
    now = 0.0
    while not pulls:
        now += 0.05
        pulls = of(answered(node, node.tick(now), now), Pull)
    first = pulls[0].plan
    ended = PullOutcome(first.peer, (), failed="games", error="rows that fail validation",
                        reason="invalid_rows")
    (moved,) = of(node.pull_finished(first, ended, now), Pull)
    assert moved.plan.peer != first.peer and node.pulling == moved.plan
    assert node.scheduler.refusals["invalid_rows"] == 1


def test_alive_peers_are_remembered_for_the_next_start() -> None:
    node = started(0)
    node.handle(IDS[1].node_id, Gossip([signed_update(IDS[1], peer_manifest(1))]), 0.1)
    effects = ticks(node, 0.1, 0.5)
    assert SaveState(STATE_PEERS, ["10.0.0.2:7420"]) in effects
    assert not [e for e in ticks(node, 0.55, 1.5)
                if isinstance(e, SaveState) and e.key == STATE_PEERS]


def test_leaving_hands_off_leadership_and_then_ignores_input() -> None:
    node = started(0)
    node.initialise_voters([IDS[0].node_id], 0.0)
    now = 0.0
    while not node.is_leader(now):
        now += node.config.tick_interval
        execute(node, node.tick(now), now)
    effects = node.leave(now)
    assert any(isinstance(e, LeaderChanged) and e.leader is None for e in effects)
    assert not node.is_leader(now)
    assert node.tick(now + 1) == [] and node.handle(IDS[1].node_id, Gossip([]), now + 1) == []


def test_whole_nodes_join_elect_sync_heal_and_fail_over_in_the_simulator() -> None:
    result = cluster.run_once(6, seed=3, rows=20, write_s=4.0, partition_s=4.0)
    assert result["failures"] == []
    assert result["safety_violations"] == 0 and result["rows_lost"] == 0
    assert result["blobs_missing"] == 0
    assert result["failover_s"] is not None and result["roots_equal_after_heal_s"] is not None


def test_a_cluster_run_replays_identically_from_its_seed() -> None:
    first = cluster.run_once(4, seed=11, rows=8, write_s=2.0, partition_s=2.0)
    assert cluster.run_once(4, seed=11, rows=8, write_s=2.0, partition_s=2.0) == first


def test_losing_the_lease_by_time_alone_is_reported() -> None:
    node = started(0)
    node.initialise_voters([IDS[0].node_id], 0.0)
    now = 0.0
    while not node.is_leader(now):
        now += node.config.tick_interval
        execute(node, node.tick(now), now)
    # Add a second voter that never answers: the lease runs out without any message.
    two = tuple(sorted((IDS[0].node_id, IDS[1].node_id)))
    execute(node, node._adopt(VoterSet(two, (node.election.term, 2)), now), now)
    effects: list[object] = []
    while node.is_leader(now) or not effects:
        now += node.config.tick_interval
        effects += [e for e in execute(node, node.tick(now), now)
                    if isinstance(e, LeaderChanged)]
        assert now < 10
    assert effects[-1].leading is False


@pytest.mark.slow
def test_cluster_scenario_is_safe_and_loses_nothing_across_many_seeds() -> None:
    result = cluster.run(nodes=12, seed=100, seeds=10)
    assert result["failures"] == [], result
    assert result["safety_violations"] == 0 and result["rows_lost"] == 0
    assert result["blobs_missing"] == 0 and result["false_dead"] == 0
