"""A peer holding the cluster key attacks the protocol cores; each attack fails and is counted.

The wire (tests/mesh/test_wire.py) proves who sent a message, so these attacks come from ids
the attacker holds keys for: ids it minted, or (for the voter attacks) a voter it controls.
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.election import MAX_TERM, MAX_TERM_STEP, Election, ElectionConfig, Heartbeat, \
    HeartbeatAck, RequestVote, Role, VoteReply
from mesh.identity import Identity
from mesh.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_VOTERS,
    Manifest,
    StoreSummary,
    encode_manifest,
    sign_manifest,
)
from mesh.core import Send
from mesh.membership import MAX_INCARNATION_STEP, Renew, verify_manifest
from mesh.membership_messages import Gossip, SyncRequest, Update
from mesh.quorum import Notary
from mesh.sim.election import KeyDirectory
from mesh.sim.membership import SharedVerifier, SimPeer
from mesh.voters import VoterSet, authorised, first_voter_set
from tests.mesh.test_membership import CFG, alive, connect, make_peers

LAN = ElectionConfig.lan()
VOTERS3 = frozenset({"a", "b", "c"})
KEYS = KeyDirectory(7)
U64_MAX = (1 << 64) - 1


def _follower(self_id: str = "b", voters: frozenset[str] = VOTERS3) -> Election:
    core = Election(self_id, voters, LAN, random.Random(1), notary=KEYS.notary(self_id))
    core.tick(0.0)
    return core


def _quorum(leader: str, term: int, backers: list[str]) -> dict[str, bytes]:
    return {v: KEYS.notary(v).endorse(term, leader) for v in backers}


# -- election -------------------------------------------------------------------------------


def test_a_phantom_leader_at_term_plus_one_from_a_made_up_id_is_not_followed() -> None:
    core = _follower()
    out = core.handle("mallory", Heartbeat(1, 1, 0.5, quorum=_quorum("mallory", 1, ["mallory"])),
                      0.1)
    assert out == [] and core.term == 0 and core.leader is None
    assert core.refused["not_voter"] == 1


def test_a_voter_without_a_quorum_certificate_cannot_make_itself_leader() -> None:
    # Mallory controls voter c: it signs its own vote, but a majority of three needs two.
    core = _follower()
    forged = {"c": KEYS.notary("c").endorse(1, "c"), "a": KEYS.notary("c").endorse(1, "c")}
    assert core.handle("c", Heartbeat(1, 1, 0.5, quorum=forged), 0.1) == []
    assert core.term == 0 and core.leader is None and core.proven_term == 0
    assert core.refused["no_quorum"] == 1
    # With a real majority's votes it is followed, and the term counts as proven.
    real = _quorum("c", 1, ["a", "c"])
    out = core.handle("c", Heartbeat(1, 2, 0.5, quorum=real), 0.2)
    assert core.leader == "c" and core.term == 1 and core.proven_term == 1
    assert isinstance(out[-1].msg, HeartbeatAck) and out[-1].msg.ok


def test_heartbeats_at_the_maximum_term_leave_the_term_where_it_was() -> None:
    core = _follower()
    for src in ("mallory", "c"):
        core.handle(src, Heartbeat(MAX_TERM, 1, 0.5, quorum=_quorum(src, MAX_TERM, [src])), 0.1)
    assert core.term == 0 and core.proven_term == 0
    assert core.refused["not_voter"] == 1 and core.refused["no_quorum"] == 1


def test_unproven_terms_rise_only_by_a_bounded_step() -> None:
    core = _follower()
    late = LAN.election_timeout_min + 0.01  # past the start-up promise
    assert core.handle("c", RequestVote(MAX_TERM), late) == []
    assert core.handle("c", RequestVote(MAX_TERM_STEP + 1, pre=True), late) == []
    assert core.handle("c", HeartbeatAck(MAX_TERM, 1, ok=False), late) == []
    assert core.handle("c", VoteReply(MAX_TERM, granted=False), late) == []
    assert core.term == 0 and core.refused["term_step"] == 4
    core.handle("c", RequestVote(MAX_TERM_STEP), late)
    assert core.term == MAX_TERM_STEP


def test_votes_and_acks_from_non_voters_do_not_count() -> None:
    core = Election("a", VOTERS3, LAN, random.Random(1), notary=KEYS.notary("a"))
    core.tick(0.0)
    now = LAN.election_timeout_max + 0.01
    core.tick(now)  # pre-vote
    for minted in ("m1", "m2", "m3"):
        core.handle(minted, VoteReply(1, granted=True, pre=True), now)
    assert core.role is Role.PRE_CANDIDATE
    core.handle("b", VoteReply(1, granted=True, pre=True), now)
    assert core.role is Role.CANDIDATE
    for minted in ("m1", "m2"):
        vote = KEYS.notary(minted).endorse(1, "a")
        core.handle(minted, VoteReply(1, granted=True, endorsement=vote), now)
        core.handle(minted, RequestVote(2), now)
    assert core.role is Role.CANDIDATE and core.refused["not_voter"] == 7


def test_a_granted_vote_without_a_valid_endorsement_is_not_counted() -> None:
    core = Election("a", VOTERS3, LAN, random.Random(1), notary=KEYS.notary("a"))
    core.tick(0.0)
    now = LAN.election_timeout_max + 0.01
    core.tick(now)
    core.handle("b", VoteReply(1, granted=True, pre=True), now)
    someone_elses = KEYS.notary("c").endorse(1, "a")
    core.handle("b", VoteReply(1, granted=True, endorsement=someone_elses), now)
    assert core.role is Role.CANDIDATE and core.refused["bad_vote"] == 1
    core.handle("b", VoteReply(1, granted=True, endorsement=KEYS.notary("b").endorse(1, "a")),
                now)
    assert core.role is Role.LEADER and core.proven_term == 1
    assert set(core.quorum) == {"a", "b"}


def test_non_voters_follow_only_a_leader_with_a_certificate() -> None:
    core = _follower("n")
    assert not core.observe("mallory", 10**9, 5.0, _quorum("mallory", 10**9, ["mallory"]))
    assert not core.observe("c", 3, 5.0, _quorum("c", 3, ["c"]))
    assert core.term == 0 and core.leader is None and core.refused["no_quorum"] == 2
    assert core.observe("c", 3, 5.0, _quorum("c", 3, ["b", "c"]))
    assert (core.leader, core.term, core.proven_term) == ("c", 3, 3)


def test_a_leader_renews_its_certificate_from_acks_when_the_voter_set_grows() -> None:
    # Elected by a and b of {a, b, c}; d joins: {a, b} is no majority of four.
    core = Election("a", VOTERS3, LAN, random.Random(1), notary=KEYS.notary("a"))
    core.tick(0.0)
    now = LAN.election_timeout_max + 0.01
    core.tick(now)
    core.handle("b", VoteReply(1, granted=True, pre=True), now)
    core.handle("b", VoteReply(1, granted=True, endorsement=KEYS.notary("b").endorse(1, "a")),
                now)
    assert core.role is Role.LEADER
    core.set_voters(VOTERS3 | {"d"}, version=(1, 2))
    newcomer = _follower("d", VOTERS3 | {"d"})
    beat = [s.msg for s in core.tick(now + LAN.heartbeat_interval) if s.to == "d"][0]
    assert newcomer.handle("a", beat, now) == []  # the old certificate does not prove it
    ack = HeartbeatAck(1, beat.seq, ok=True, endorsement=KEYS.notary("c").endorse(1, "a"))
    core.handle("c", ack, now)
    beat = [s.msg for s in core.tick(now + 2.5 * LAN.heartbeat_interval) if s.to == "d"][0]
    newcomer.handle("a", beat, now)
    assert newcomer.leader == "a" and newcomer.proven_term == 1


# -- voter set ------------------------------------------------------------------------------


def _manifest(identity: Identity, **fields: object) -> Manifest:
    base = Manifest(node_id=identity.node_id, public_key=identity.public_key,
                    address="127.0.0.1:9", version="t", incarnation=0, seq=0, device="cpu",
                    device_mem_mb=0, cores=1, state="idle", stores={}, production_model=None,
                    leader=None, term=0, lease_until_ms=0)
    return dataclasses.replace(base, **fields)


def test_a_self_signed_manifest_naming_itself_sole_voter_is_not_adopted() -> None:
    honest = [Identity.from_seed(bytes([i]) * 32) for i in (1, 2, 3)]
    mallory = Identity.from_seed(b"\x09" * 32)
    current = VoterSet(tuple(sorted(i.node_id for i in honest)), (1, 3))
    notary = Notary(honest[0])
    evil = _manifest(mallory, leader=mallory.node_id, term=10**9, lease_until_ms=1,
                     voters=(mallory.node_id,), voters_version=(10**9, 1),
                     quorum={mallory.node_id: Notary(mallory).endorse(10**9, mallory.node_id)})
    assert verify_manifest(sign_manifest(mallory, evil)) == evil  # a valid, signed manifest
    assert not authorised(current, evil, notary)
    # The honest leader of term 2, elected by two of the three, may move the set on.
    leader = honest[1]
    votes = {i.node_id: Notary(i).endorse(2, leader.node_id) for i in honest[1:]}
    grown = _manifest(leader, leader=leader.node_id, term=2, lease_until_ms=1,
                      voters=(*current.voters, mallory.node_id), voters_version=(2, 4),
                      quorum=votes)
    assert authorised(current, grown, notary)
    assert not authorised(current, dataclasses.replace(grown, voters_version=(3, 4)), notary)
    assert not authorised(current, dataclasses.replace(grown, quorum={}), notary)


# -- membership -----------------------------------------------------------------------------


def test_a_live_node_marked_dead_at_the_maximum_incarnation_is_not_evicted() -> None:
    me, victim, mallory = make_peers(3, seed=5)
    connect(me.core, [victim, mallory])
    me.core.handle(mallory.node_id, Gossip([Update(victim.node_id, "dead", U64_MAX)]), 1.0)
    assert me.core.member(victim.node_id).state == "alive"
    assert me.core.stats.refused["incarnation_step"] == 1
    # An honest suspicion still works, and the victim refutes it.
    me.core.handle(mallory.node_id, Gossip([Update(victim.node_id, "suspect", 0)]), 1.0)
    assert me.core.member(victim.node_id).state == "suspect"


def test_a_node_told_it_is_dead_at_a_huge_incarnation_keeps_running_and_answers() -> None:
    victim, mallory = make_peers(2, seed=6)
    connect(victim.core, [mallory])
    for claim in (Update(victim.node_id, "dead", U64_MAX),
                  Update(victim.node_id, "dead", MAX_INCARNATION_STEP + 1)):
        out = victim.core.handle(mallory.node_id, Gossip([claim]), 1.0)
        assert not [o for o in out if isinstance(o, Renew)]  # not pushed to the maximum
        answer = [s.msg for s in out if isinstance(s, Send) and s.to == mallory.node_id][0]
        assert answer.updates[0].state == "alive"
    digest = [(victim.node_id, "alive", 0, U64_MAX, 0)]
    out = victim.core.handle(mallory.node_id, SyncRequest(digest), 1.0)
    assert not [o for o in out if isinstance(o, Renew)]
    assert victim.core.stats.refused["self_claim"] == 3
    # A claim within the step is refuted as SWIM says.
    out = victim.core.handle(mallory.node_id, Gossip([Update(victim.node_id, "dead", 3)]), 1.0)
    assert [o.incarnation for o in out if isinstance(o, Renew)] == [4]


def test_a_forged_manifest_of_this_node_is_not_taken_for_a_previous_life() -> None:
    victim, mallory = make_peers(2, seed=7)
    connect(victim.core, [mallory])
    fake = dataclasses.replace(victim.manifest, incarnation=U64_MAX - 1, seq=0)
    forged = sign_manifest(victim.identity, fake)
    forged = dataclasses.replace(forged, sig=bytes(64))
    claim = Update(victim.node_id, "alive", U64_MAX - 1, forged, (U64_MAX - 1, 0))
    out = victim.core.handle(mallory.node_id, Gossip([claim]), 1.0)
    assert not [o for o in out if isinstance(o, Renew)]
    assert victim.core.stats.refused["self_claim"] == 1


def test_a_member_refuted_by_its_own_signed_manifest_is_unaffected_by_the_bounds() -> None:
    me, other = make_peers(2, seed=8)
    connect(me.core, [other])
    me.core.handle(other.node_id, Gossip([alive(other, incarnation=500)]), 1.0)
    assert me.core.member(other.node_id).incarnation == 500


def test_shared_verifier_is_the_real_one() -> None:
    # The simulator's verifier caches, but it must refuse exactly what a node refuses.
    peer = SimPeer(0, random.Random(1), CFG, SharedVerifier())
    signed = sign_manifest(peer.identity, peer.manifest)
    bad = dataclasses.replace(signed, sig=bytes(64))
    assert SharedVerifier()(signed) is not None and SharedVerifier()(bad) is None


def test_a_leader_manifest_with_the_largest_certificate_fits_the_manifest_cap() -> None:
    # The largest voter set and a majority of its endorsements, every field at its maximum.
    leader = Identity.from_seed(b"\x11" * 32)
    voters = [Identity.from_seed(bytes([i]) * 32) for i in range(20, 20 + MAX_VOTERS)]
    backers = voters[:MAX_VOTERS // 2 + 1]
    quorum = {v.node_id: Notary(v).endorse(MAX_TERM, leader.node_id) for v in backers}
    host = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 61])  # 253 characters, a DNS maximum
    manifest = _manifest(leader, address=f"{host}:65535", leader=leader.node_id,
                         version="v" * 32, production_model="ab" * 32,
                         term=MAX_TERM, lease_until_ms=U64_MAX, incarnation=U64_MAX,
                         seq=U64_MAX, voters=tuple(sorted(v.node_id for v in voters)),
                         voters_version=(MAX_TERM, MAX_TERM), quorum=quorum, stores={
                             s: StoreSummary(U64_MAX, "ab" * 16)
                             for s in ("games", "matches", "models", "settings")})
    assert verify_manifest(sign_manifest(leader, manifest)) == manifest
    assert len(encode_manifest(manifest)) <= MAX_MANIFEST_BYTES


_terms = st.one_of(st.integers(0, 5), st.just(MAX_TERM), st.integers(0, MAX_TERM))
_minted = st.sampled_from(["m1", "m2", "m3"])
_attacks = st.one_of(
    st.builds(lambda t, s: Heartbeat(t, s, 0.5, quorum=_quorum("m1", t, ["m1", "m2", "m3"])),
              _terms, st.integers(0, 100)),
    st.builds(lambda t: RequestVote(t), _terms),
    st.builds(lambda t: RequestVote(t, pre=True), _terms),
    st.builds(lambda t, g: VoteReply(t, granted=g), _terms, st.booleans()),
    st.builds(lambda t, ok: HeartbeatAck(t, 1, ok=ok), _terms, st.booleans()),
)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(_minted, _attacks, st.floats(0.0, 30.0)), max_size=12))
def test_nothing_from_minted_ids_moves_a_voter(attacks) -> None:
    core = _follower()
    for src, msg, now in sorted(attacks, key=lambda a: a[2]):
        assert core.handle(src, msg, now) == []
    assert (core.term, core.leader, core.voted_for, core.proven_term) == (0, None, None, 0)
    assert core.refused["not_voter"] == len(attacks)


def test_a_joiner_starts_from_its_seeds_set_and_a_key_holder_claiming_a_seed_only_delays_it() -> None:
    honest = [Identity.from_seed(bytes([i]) * 32) for i in (1, 2, 3)]
    mallory = Identity.from_seed(b"\x09" * 32)
    voters = tuple(sorted(i.node_id for i in honest))
    seed = _manifest(honest[0], voters=voters, voters_version=(2, 3))
    assert first_voter_set([seed]) == VoterSet(voters, (2, 3))
    assert first_voter_set([seed, _manifest(honest[1], voters=voters, voters_version=(2, 3))])
    impostor = _manifest(mallory, voters=(mallory.node_id,), voters_version=(10**9, 1))
    assert first_voter_set([seed, impostor]) is None
    assert first_voter_set([_manifest(honest[0])]) is None  # a seed that holds no set yet
