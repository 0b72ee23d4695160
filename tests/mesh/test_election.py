"""The election core: votes, pre-vote, lease, check-quorum, transfer, non-voters, config."""

from __future__ import annotations

import math
import random

import pytest

from mesh import codec
from mesh.core import Send
from mesh.election import (
    Election,
    ElectionConfig,
    Heartbeat,
    HeartbeatAck,
    Persist,
    RequestVote,
    Role,
    TimeoutNow,
    VoteReply,
)
from mesh.sim.election import KeyDirectory
from tests.mesh.test_election_harness import Harness

LAN = ElectionConfig.lan()
VOTERS3 = frozenset({"a", "b", "c"})
KEYS = KeyDirectory()


def _core(self_id: str = "a", voters: frozenset[str] = VOTERS3,
          persisted: tuple[int, str | None] = (0, None), seed: int = 1) -> Election:
    return Election(self_id, voters, LAN, random.Random(seed), persisted,
                    notary=KEYS.notary(self_id))


def _quorum(leader: str, term: int, voters: frozenset[str] = VOTERS3) -> dict[str, bytes]:
    """The certificate a leader of `term` holds: signed votes of a majority of `voters`."""
    backers = sorted(voters)[:len(voters) // 2 + 1]
    return {v: KEYS.notary(v).endorse(term, leader) for v in backers}


def _yes(voter: str, term: int, candidate: str = "a") -> VoteReply:
    """`voter`'s granted (real) vote for `candidate`, with its signed endorsement."""
    return VoteReply(term, granted=True, endorsement=KEYS.notary(voter).endorse(term, candidate))


def _hb(term: int, seq: int, lease_remaining: float, leader: str = "a") -> Heartbeat:
    return Heartbeat(term, seq, lease_remaining, quorum=_quorum(leader, term))


def _sends(outputs: list[object]) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send)]


def _elect(h: Harness, limit: float = 10.0) -> str:
    h.run(limit)
    leaders = h.leaders()
    assert len(leaders) == 1, f"expected one leader with a lease, got {leaders}"
    return leaders[0]


# -- elections ----------------------------------------------------------------------------


def test_single_voter_elects_itself_after_its_timeout_and_holds_a_lease() -> None:
    core = _core("a", frozenset({"a"}))
    assert core.tick(0.0) == []
    assert core.role is Role.FOLLOWER
    out = core.tick(LAN.election_timeout_max + 0.01)
    assert out == [Persist(1, "a")]
    assert core.role is Role.LEADER and core.term == 1 and core.leader == "a"
    now = LAN.election_timeout_max + 0.01
    assert core.is_leader_with_lease(now)
    assert core.lease_until == pytest.approx(now + LAN.lease_duration)


def test_three_voters_elect_exactly_one_leader_and_followers_learn_it() -> None:
    h = Harness(3, non_voters=1, seed=7)
    leader = _elect(h)
    term = h.cores[leader].term
    for node_id in ("v0", "v1", "v2"):
        assert h.cores[node_id].leader == leader
        assert h.cores[node_id].term == term
    assert h.monitor.violations == []
    # The non-voter got no heartbeat (gossip tells it) and never campaigned.
    assert h.role("n0") is Role.FOLLOWER and h.cores["n0"].term == 0


def test_a_stable_leader_keeps_its_lease_and_term_indefinitely() -> None:
    h = Harness(5, seed=3)
    leader = _elect(h)
    term = h.cores[leader].term
    h.run(60.0)
    assert h.leaders() == [leader]
    assert h.cores[leader].term == term
    assert h.monitor.elections == 1


def test_leader_crash_leads_to_a_new_leader_in_a_higher_term() -> None:
    h = Harness(3, seed=11)
    old = _elect(h)
    old_term = h.cores[old].term
    h.crash(old)
    h.run(3 * LAN.election_timeout_max)
    new = h.leaders()
    assert len(new) == 1 and new[0] != old
    assert h.cores[new[0]].term > old_term
    assert h.monitor.violations == []


# -- votes and persistence ----------------------------------------------------------------


def test_vote_is_persisted_before_the_reply_that_grants_it() -> None:
    core = _core("b")
    core.tick(0.0)
    later = LAN.election_timeout_min + 0.01  # the start-up promise has lapsed
    out = core.handle("a", RequestVote(1), later)
    endorsement = KEYS.notary("b").endorse(1, "a")
    assert out == [Persist(1, "a"), Send("a", VoteReply(1, granted=True,
                                                        endorsement=endorsement))]


def test_a_voter_grants_one_vote_per_term_even_across_a_restart() -> None:
    core = _core("b")
    core.tick(0.0)
    later = LAN.election_timeout_min + 0.01
    assert _sends(core.handle("a", RequestVote(4), later))[0].msg.granted
    assert not _sends(core.handle("c", RequestVote(4), later))[0].msg.granted
    restarted = _core("b", persisted=(4, "a"))
    restarted.tick(100.0)
    out = restarted.handle("c", RequestVote(4), 100.0 + LAN.election_timeout_min + 0.01)
    assert _sends(out)[0].msg == VoteReply(4, granted=False)
    # The same candidate asking again (a resend) gets the same answer.
    out = restarted.handle("a", RequestVote(4), 100.0 + LAN.election_timeout_min + 0.02)
    assert _sends(out)[0].msg == VoteReply(4, granted=True,
                                           endorsement=KEYS.notary("b").endorse(4, "a"))


def test_a_restarted_voter_withholds_its_vote_for_one_election_timeout() -> None:
    # It may have promised a leader just before crashing; promises are not persisted.
    core = _core("b", persisted=(3, None))
    core.tick(50.0)
    assert core.handle("a", RequestVote(4), 50.5) == []
    assert core.handle("a", RequestVote(4, pre=True), 50.5) == []
    assert core.term == 3
    out = core.handle("a", RequestVote(4), 50.0 + LAN.election_timeout_min)
    assert Persist(4, "a") in out


def test_non_voters_and_unknown_candidates_get_no_vote() -> None:
    non_voter = _core("n")
    non_voter.tick(0.0)
    assert non_voter.handle("a", RequestVote(1), 10.0) == []
    voter = _core("b")
    voter.tick(0.0)
    assert voter.handle("stranger", RequestVote(1), 10.0) == []
    assert voter.term == 0


# -- pre-vote and the lease promise -------------------------------------------------------


def test_pre_vote_from_a_returning_node_is_ignored_while_the_leader_is_heard() -> None:
    h = Harness(3, seed=5)
    leader = _elect(h)
    follower = next(n for n in ("v0", "v1", "v2") if n != leader)
    term = h.cores[follower].term
    # A node back from a partition asks for a pre-vote and even a real vote in a later term.
    assert h.cores[follower].handle("v9", RequestVote(term + 5, pre=True), h.local(follower)) == []
    other = next(n for n in ("v0", "v1", "v2") if n not in (leader, follower))
    assert h.cores[follower].handle(other, RequestVote(term + 1), h.local(follower)) == []
    assert h.cores[follower].term == term and h.cores[follower].voted_for != other
    h.run(5.0)
    assert h.leaders() == [leader] and h.cores[leader].term == term


def test_an_isolated_voter_does_not_raise_its_term_while_partitioned() -> None:
    h = Harness(3, seed=9)
    leader = _elect(h)
    lonely = next(n for n in ("v0", "v1", "v2") if n != leader)
    term = h.cores[lonely].term
    for _ in range(400):  # 20 s: its pre-votes go nowhere
        h.advance(LAN.heartbeat_interval / 2)
        h.tick_all()
        h.pending = [m for m in h.pending if lonely not in (m.src, m.dst)]
        h.deliver_all()
    assert h.cores[lonely].term == term
    assert h.role(lonely) is Role.PRE_CANDIDATE
    h.run(2.0)  # healed: it follows the same leader again, no election
    assert h.leaders() == [leader] and h.cores[lonely].leader == leader
    assert h.monitor.elections == 1


def test_pre_vote_is_granted_without_changing_term_or_vote() -> None:
    core = _core("b", persisted=(2, "c"))
    core.tick(0.0)
    out = core.handle("a", RequestVote(3, pre=True), LAN.election_timeout_min + 0.1)
    assert out == [Send("a", VoteReply(3, granted=True, pre=True))]
    assert (core.term, core.voted_for) == (2, "c")


# -- lease and check-quorum ---------------------------------------------------------------


def _leader_of_three() -> tuple[Election, float]:
    core = _core("a")
    core.tick(0.0)
    now = LAN.election_timeout_max + 0.01
    core.tick(now)  # pre-vote
    core.handle("b", VoteReply(1, granted=True, pre=True), now)
    out = core.handle("b", _yes("b", 1), now)
    assert core.role is Role.LEADER
    assert {s.to for s in _sends(out)} == {"b", "c"}
    return core, now


def test_a_new_leader_has_no_lease_until_a_majority_acknowledges_a_heartbeat() -> None:
    core, now = _leader_of_three()
    assert not core.is_leader_with_lease(now)
    core.handle("b", HeartbeatAck(1, seq=1, ok=True), now + 0.003)
    assert core.is_leader_with_lease(now + 0.003)
    # Counted from the heartbeat's send time, not the ack's arrival.
    assert core.lease_until == pytest.approx(now + LAN.lease_duration)


def test_the_lease_lapses_when_acks_stop_and_is_never_extended_by_old_rounds() -> None:
    core, now = _leader_of_three()
    core.handle("b", HeartbeatAck(1, seq=1, ok=True), now)
    t = now
    while t < now + LAN.lease_duration + 0.05:
        t += LAN.heartbeat_interval / 2
        core.tick(t)
    assert core.role is Role.LEADER  # check-quorum has not fired yet
    assert not core.is_leader_with_lease(t)
    core.handle("c", HeartbeatAck(1, seq=1, ok=True), t)  # a late ack of the first round
    assert not core.is_leader_with_lease(t)


def test_a_leader_that_hears_no_majority_for_an_election_timeout_steps_down() -> None:
    core, now = _leader_of_three()
    t = now
    while core.role is Role.LEADER and t < now + 10:
        t += LAN.heartbeat_interval / 2
        core.tick(t)
    assert core.role is Role.FOLLOWER
    assert now + LAN.election_timeout_min <= t <= now + LAN.election_timeout_min + 0.1


def test_a_stale_leader_steps_down_when_told_of_a_newer_term() -> None:
    core, now = _leader_of_three()
    out = core.handle("b", HeartbeatAck(5, seq=1, ok=False), now)
    assert out == [Persist(5, None)]
    assert core.role is Role.FOLLOWER and not core.is_leader_with_lease(now)
    follower = _core("c", persisted=(7, None))
    out = follower.handle("a", Heartbeat(6, seq=3, lease_remaining=0.5), 1.0)
    assert out == [Send("a", HeartbeatAck(7, seq=3, ok=False))]


def test_leases_never_overlap_when_the_leader_is_cut_off_with_clocks_at_the_drift_bound() -> None:
    # Slow leader clock (its lease lasts longest in true time), fast follower clocks (their
    # promises end soonest): the worst case the lease formula must cover.
    d = LAN.max_clock_drift
    for seed in range(20):
        rates = {"v0": 1 - d, "v1": 1 + d, "v2": 1 + d}
        h = Harness(3, seed=seed, rates=rates)
        leader = _elect(h)
        for _ in range(200):
            h.advance(0.01)
            h.tick_all()
            h.pending = [m for m in h.pending if leader not in (m.src, m.dst)]
            h.deliver_all()
        assert len([n for n in h.ids if h.role(n) is Role.LEADER]) >= 1
        assert h.monitor.violations == [], f"seed {seed}: {h.monitor.violations}"


# -- transfer -----------------------------------------------------------------------------


def test_transfer_drops_the_lease_at_once_and_the_target_wins_despite_promises() -> None:
    h = Harness(3, seed=21)
    old = _elect(h)
    old_term = h.cores[old].term
    out = h.cores[old].transfer_leadership(h.local(old))
    assert not h.cores[old].is_leader_with_lease(h.local(old))
    assert h.role(old) is Role.FOLLOWER
    [send] = out
    assert isinstance(send.msg, TimeoutNow) and send.msg.term == old_term and send.to != old
    h._absorb(old, out)
    h.deliver_all()  # well within every follower's promise to the old leader
    target = h.cores[send.to]
    assert target.role is Role.LEADER and target.term == old_term + 1
    h.run(0.5)
    assert h.leaders() == [send.to]
    assert h.monitor.violations == []


def test_transfer_from_a_follower_does_nothing() -> None:
    core = _core("b")
    assert core.transfer_leadership(0.0) == []


def test_timeout_now_from_anyone_but_the_current_leader_is_ignored() -> None:
    core = _core("b")
    core.tick(0.0)
    core.handle("a", _hb(1, seq=1, lease_remaining=0.5), 0.1)
    assert core.handle("c", TimeoutNow(1), 0.2) == []
    assert core.handle("a", TimeoutNow(0), 0.2) == []
    out = core.handle("a", TimeoutNow(1), 0.2)
    assert out[0] == Persist(2, "b")
    assert {s.msg for s in _sends(out)} == {RequestVote(2, force=True)}


# -- non-voters and voter changes ---------------------------------------------------------


def test_non_voters_learn_leader_term_and_lease_by_observation_only() -> None:
    core = _core("n")
    core.tick(0.0)
    core.tick(100.0)
    assert core.role is Role.FOLLOWER and core.term == 0
    assert core.observe("a", 3, 12.5, _quorum("a", 3))
    assert (core.leader, core.term, core.lease_until) == ("a", 3, 12.5)
    # an older term from a slow gossip path
    assert not core.observe("b", 2, 99.0, _quorum("b", 2))
    assert (core.leader, core.term, core.lease_until) == ("a", 3, 12.5)
    assert core.observe("a", 3, 13.0, _quorum("a", 3))
    assert core.lease_until == 13.0
    assert not core.is_leader_with_lease(0.0)


def test_voters_ignore_observations() -> None:
    core = _core("a")
    assert not core.observe("b", 9, 10.0, _quorum("b", 9))
    assert core.term == 0 and core.leader is None


def test_voter_set_changes_one_node_at_a_time() -> None:
    core = _core("a")
    core.set_voters(frozenset({"a", "b", "c", "d"}))
    with pytest.raises(ValueError, match="at most one node"):
        core.set_voters(frozenset({"a", "b"}))
    assert core.voters == frozenset({"a", "b", "c", "d"})


def test_a_leader_removed_from_the_voters_steps_down_and_a_promoted_node_campaigns() -> None:
    core, now = _leader_of_three()
    core.set_voters(frozenset({"b", "c"}))
    assert core.role is Role.FOLLOWER and not core.is_leader_with_lease(now)
    assert core.tick(now + 100) == []
    core.set_voters(frozenset({"a", "b", "c"}))
    core.tick(now + 200)
    out = core.tick(now + 200 + LAN.election_timeout_max + 0.01)
    assert {s.msg for s in _sends(out)} == {RequestVote(2, pre=True)}


# -- config and messages ------------------------------------------------------------------


@pytest.mark.parametrize("config", [ElectionConfig.lan(), ElectionConfig.wan()])
def test_the_lease_ends_before_any_promise_under_the_drift_bound(config: ElectionConfig) -> None:
    d = config.max_clock_drift
    longest_lease_true = config.lease_duration / (1 - d)
    shortest_promise_true = config.election_timeout_min / (1 + d)
    assert longest_lease_true < shortest_promise_true
    assert config.lease_duration > 2 * config.heartbeat_interval


@pytest.mark.parametrize(("changes", "match"), [
    ({"election_timeout_max": 1.0}, "election_timeout_max"),
    ({"heartbeat_interval": 0.0}, "heartbeat_interval"),
    ({"max_clock_drift": 0.6}, "max_clock_drift"),
    ({"election_timeout_min": 0.3, "election_timeout_max": 0.5}, "lease_duration"),
    ({"lease_guard": math.nan}, "lease_guard"),
])
def test_unsafe_or_useless_configs_are_refused_by_name(changes: dict[str, float],
                                                        match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ElectionConfig(**changes)


@pytest.mark.parametrize("msg", [
    RequestVote(3), RequestVote(4, pre=True), RequestVote(5, force=True),
    VoteReply(2, granted=False, pre=True), Heartbeat(7, seq=9, lease_remaining=0.75),
    HeartbeatAck(7, seq=9, ok=True), TimeoutNow(8),
])
def test_messages_round_trip_through_the_codec(msg: object) -> None:
    assert codec.from_body(codec.kind_of(msg), codec.to_body(msg)) == msg
    assert codec.kind_of(msg).startswith("raft.")


@pytest.mark.parametrize(("kind", "body", "field"), [
    ("raft.vote", {"term": -1, "pre": False, "force": False}, "term"),
    ("raft.vote", {"term": 1, "pre": True, "force": True}, "force"),
    ("raft.heartbeat", {"term": 1, "seq": 1, "lease_remaining": float("inf")}, "lease_remaining"),
    ("raft.heartbeat", {"term": 1, "seq": 1, "lease_remaining": 1e9}, "lease_remaining"),
    ("raft.heartbeat-ack", {"term": 1, "seq": "1", "ok": True}, "seq"),
    ("raft.vote-reply", {"term": 1 << 70, "granted": True}, "term"),
])
def test_bad_message_bodies_are_refused_naming_the_field(kind: str, body: dict[str, object],
                                                         field: str) -> None:
    with pytest.raises(codec.DecodeError, match=field):
        codec.from_body(kind, body)


def test_handle_refuses_a_foreign_message_type() -> None:
    with pytest.raises(TypeError, match="RequestVote"):
        _core().handle("b", "hello", 0.0)


def test_a_corrupt_persisted_state_is_refused() -> None:
    with pytest.raises(ValueError, match="persisted term"):
        _core(persisted=(-1, None))


# -- voter-set versions, vote counting, sticky pre-votes ------------------------------------


def test_a_voter_refuses_candidates_holding_an_older_voter_set() -> None:
    core = _core("b")
    core.set_voters(VOTERS3 | {"d"}, version=(0, 2))
    core.tick(0.0)
    later = LAN.election_timeout_min + 0.01
    assert core.handle("a", RequestVote(1, voters_version=(0, 1)), later) == []
    assert core.handle("a", RequestVote(1, pre=True, voters_version=(0, 1)), later) == []
    out = core.handle("a", RequestVote(1, voters_version=(0, 2)), later)
    assert _sends(out)[0].msg.granted


def test_adopting_a_voter_set_moves_to_the_writers_term_and_deposes_older_leaders() -> None:
    core, now = _leader_of_three()
    core.handle("b", HeartbeatAck(1, seq=1, ok=True), now)
    assert core.is_leader_with_lease(now)
    core.set_voters(VOTERS3 | {"d"}, version=(4, 2))
    assert core.term == 4 and core.voted_for is None
    assert core.role is Role.FOLLOWER and not core.is_leader_with_lease(now)
    with pytest.raises(ValueError, match="older"):
        core.set_voters(VOTERS3, version=(3, 9))
    # What the shell persisted (term 1, voted for itself) plus the set's version on restart.
    restarted = Election("a", VOTERS3 | {"d"}, LAN, random.Random(1), (1, "a"), (4, 2),
                         notary=KEYS.notary("a"))
    assert (restarted.term, restarted.voted_for) == (4, None)


def test_the_writer_of_a_voter_set_keeps_leading() -> None:
    core, now = _leader_of_three()
    core.handle("b", HeartbeatAck(1, seq=1, ok=True), now)
    core.set_voters(VOTERS3 | {"d"}, version=(1, 2))
    assert core.is_leader_with_lease(now) and core.term == 1


def test_grants_from_nodes_removed_mid_campaign_do_not_count() -> None:
    core = _core("a", frozenset({"a", "b", "c", "d"}))
    core.tick(0.0)
    now = LAN.election_timeout_max + 0.01
    core.tick(now)
    core.handle("b", VoteReply(1, granted=True, pre=True), now)
    core.handle("c", VoteReply(1, granted=True, pre=True), now)
    assert core.role is Role.CANDIDATE
    core.handle("b", _yes("b", 1), now)
    core.set_voters(frozenset({"a", "c", "d"}))  # b is gone: a holds 1 of 3, not 2
    assert core.role is Role.CANDIDATE
    core.handle("c", _yes("c", 1), now)
    assert core.role is Role.LEADER


def test_a_voter_backs_one_pre_candidate_per_term_for_two_heartbeats() -> None:
    core = _core("c", frozenset({"a", "b", "c", "d", "e"}))
    core.tick(0.0)
    t = LAN.election_timeout_min + 0.01
    assert _sends(core.handle("a", RequestVote(1, pre=True), t))[0].msg.granted
    assert not _sends(core.handle("b", RequestVote(1, pre=True), t + 0.01))[0].msg.granted
    # Asking again (a resend) keeps the backing alive; it lapses two heartbeats after that.
    assert _sends(core.handle("a", RequestVote(1, pre=True), t + 0.02))[0].msg.granted
    later = t + 0.02 + 2 * LAN.heartbeat_interval + 0.01
    assert _sends(core.handle("b", RequestVote(1, pre=True), later))[0].msg.granted


def test_between_two_pre_candidates_only_the_higher_id_gets_the_grant() -> None:
    low, high = _core("a"), _core("b")
    for core in (low, high):
        core.tick(0.0)
        core.tick(LAN.election_timeout_max + 0.01)
        assert core.role is Role.PRE_CANDIDATE
    t = LAN.election_timeout_max + 0.02
    assert _sends(low.handle("b", RequestVote(1, pre=True), t))[0].msg.granted
    assert not _sends(high.handle("a", RequestVote(1, pre=True), t))[0].msg.granted
