"""The SWIM-lite core driven directly: merge rules, probes, suspicion, refutation, join."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh import codec
from mesh.core import Send
from mesh.manifest import sign_manifest
from mesh.membership import (
    MAX_RELAYS,
    MemberChange,
    Membership,
    MembershipConfig,
    Renew,
    supersedes,
    verify_manifest,
)
from mesh.membership_messages import (
    Ack,
    Gossip,
    Ping,
    PingReq,
    SyncReply,
    SyncRequest,
    Update,
)
from mesh.sim.membership import SharedVerifier, SimPeer

CFG = MembershipConfig()


def make_peers(n: int, seed: int = 0, config: MembershipConfig = CFG) -> list[SimPeer]:
    rng = random.Random(seed)
    verify = SharedVerifier()
    return [SimPeer(i, rng, config, verify) for i in range(n)]


def alive(peer: SimPeer, incarnation: int = 0, seq: int = 0) -> Update:
    manifest = dataclasses.replace(peer.manifest, incarnation=incarnation, seq=seq)
    return Update(peer.node_id, "alive", incarnation, sign_manifest(peer.identity, manifest),
                  (incarnation, seq))


def connect(core: Membership, others: list[SimPeer]) -> None:
    core.handle(others[0].node_id, Gossip([alive(p) for p in others]), 0.0)


def sends(outputs: list[object], kind: type | None = None) -> list[Send]:
    return [o for o in outputs if isinstance(o, Send) and (kind is None or isinstance(o.msg, kind))]


def changes(outputs: list[object]) -> list[MemberChange]:
    return [o for o in outputs if isinstance(o, MemberChange)]


# -- the SWIM order ----------------------------------------------------------------------


@pytest.mark.parametrize(("new", "old", "wins"), [
    (("alive", 1), ("alive", 0), True),
    (("alive", 1), ("alive", 1), False),   # alive needs a higher incarnation
    (("alive", 1), ("suspect", 1), False),
    (("alive", 2), ("suspect", 1), True),   # refutation
    (("alive", 2), ("dead", 1), True),      # rejoin
    (("suspect", 1), ("alive", 1), True),   # suspect wins the tie
    (("suspect", 1), ("suspect", 1), False),
    (("suspect", 0), ("alive", 1), False),  # stale suspicion
    (("dead", 1), ("suspect", 1), True),
    (("dead", 1), ("alive", 1), True),
    (("left", 1), ("dead", 1), True),
    (("dead", 0), ("alive", 1), False),
])
def test_supersedes_follows_the_swim_rules(new, old, wins) -> None:
    assert supersedes(new, old) is wins


claims = st.tuples(st.sampled_from(["alive", "suspect", "dead", "left"]),
                   st.integers(min_value=0, max_value=4))


@settings(deadline=None, max_examples=200)
@given(st.lists(claims, min_size=1, max_size=12), st.randoms(use_true_random=False))
def test_merging_claims_in_any_order_ends_in_the_same_state(items, rnd) -> None:
    def fold(seq):
        held = seq[0]
        for claim in seq[1:]:
            if supersedes(claim, held):
                held = claim
        return held

    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert fold(items) == fold(shuffled) == fold(items + shuffled)  # and duplicates are harmless


PEERS = make_peers(3, seed=42)


@settings(deadline=None, max_examples=40)
@given(st.lists(st.tuples(st.sampled_from(["alive", "suspect", "dead"]),
                          st.integers(min_value=0, max_value=3)), min_size=1, max_size=8),
       st.randoms(use_true_random=False))
def test_core_views_agree_whatever_order_the_updates_arrive_in(claims_, rnd) -> None:
    me, other = PEERS[0], PEERS[1]
    updates = [alive(other)] + [alive(other, inc) if state == "alive"
                                else Update(other.node_id, state, inc) for state, inc in claims_]
    views = []
    for order in (updates, [updates[0]] + rnd.sample(updates[1:], len(updates) - 1)):
        core = Membership(sign_manifest(me.identity, me.manifest), CFG, random.Random(1),
                          SharedVerifier())
        for update in order:
            core.handle(other.node_id, Gossip([update]), 0.0)
        view = core.member(other.node_id)
        assert view is not None
        views.append((view.state, view.incarnation, view.manifest.freshness))
    assert views[0] == views[1]


# -- probing and suspicion ---------------------------------------------------------------


def test_unanswered_probe_goes_indirect_then_suspect_then_dead() -> None:
    me, *others = make_peers(5)
    core = me.core
    connect(core, others)
    now, target, pings = 0.0, None, []
    while target is None:
        now += CFG.tick_interval
        pings = sends(core.tick(now), Ping)
        target = pings[0].to if pings else None
    start = now
    indirect: list[Send] = []
    suspected: list[MemberChange] = []
    while not suspected:
        now += CFG.tick_interval
        out = core.tick(now)
        indirect += sends(out, PingReq)
        suspected = [c for c in changes(out) if c.node_id == target and c.state == "suspect"]
    assert len(indirect) == CFG.indirect_checks
    assert all(s.msg.target == target and s.to != target for s in indirect)
    assert start + CFG.probe_interval - 1e-6 <= now <= start + CFG.probe_interval + 0.11
    timeout = CFG.suspicion_timeout(core.live_count(), 0)  # unconfirmed: the long one
    dead_at = None
    while dead_at is None:
        now += CFG.tick_interval
        if any(c.node_id == target and c.state == "dead" for c in changes(core.tick(now))):
            dead_at = now
    assert timeout - 1e-6 <= dead_at - (start + CFG.probe_interval) <= timeout + 0.2
    assert core.member(target).state == "dead"  # type: ignore[union-attr]


def test_acked_probe_raises_no_suspicion() -> None:
    me, *others = make_peers(4)
    core = me.core
    connect(core, others)
    now = 0.0
    for _ in range(100):
        now += CFG.tick_interval
        for ping in sends(core.tick(now), Ping):
            core.handle(ping.to, Ack(ping.msg.seq), now + 0.002)
    assert core.stats.probes >= 8
    assert core.stats.suspicions == 0
    assert all(v.state == "alive" for v in core.members())


def test_helper_relays_the_targets_ack_to_the_requester() -> None:
    helper, requester, target = make_peers(3)
    connect(helper.core, [requester, target])
    out = helper.core.handle(requester.node_id, PingReq(seq=77, target=target.node_id), 1.0)
    (ping,) = sends(out, Ping)
    assert ping.to == target.node_id
    relayed = helper.core.handle(target.node_id, Ack(ping.msg.seq), 1.01)
    assert [(s.to, s.msg.seq) for s in sends(relayed, Ack)] == [(requester.node_id, 77)]


def test_suspicion_carries_its_age_so_timers_expire_together() -> None:
    me, other, third = make_peers(3)
    connect(me.core, [other, third])
    timeout = CFG.suspicion_timeout(me.core.live_count(), 0)
    me.core.handle(third.node_id, Gossip([Update(other.node_id, "suspect", 0,
                                                  suspected_for=timeout - 1.0)]), 10.0)
    assert not changes(me.core.tick(10.9))
    assert [c.state for c in changes(me.core.tick(11.0)) if c.node_id == other.node_id] == [
        "dead"]


def test_suspected_node_refutes_with_a_higher_incarnation() -> None:
    me, other = make_peers(2)
    connect(me.core, [other])
    out = me.core.handle(other.node_id, Gossip([Update(me.node_id, "suspect", 0)]), 1.0)
    # The core does not sign: it asks its owner for a manifest at a higher incarnation.
    assert [o for o in out if isinstance(o, Renew)] == [Renew(1)]
    assert me.core.incarnation == 0
    out = me.run(out, 1.0)
    assert me.core.incarnation == 1
    assert me.core.stats.refutations == 1
    # The doubter hears the refutation at once, the rest through gossip.
    (answer,) = sends(out, Gossip)
    assert answer.to == other.node_id
    gossip = [s.msg for t in range(1, 4) for s in sends(me.core.tick(1.0 + t * 0.1), Gossip)]
    ups = [u for g in [answer.msg, *gossip] for u in g.updates if u.node_id == me.node_id]
    assert len(ups) >= 2
    assert all(u.state == "alive" and u.incarnation == 1 for u in ups)
    # The peer takes the refutation over its suspicion.
    other.core.handle(me.node_id, Gossip([alive(me)]), 0.0)
    other.core.handle(me.node_id, Gossip([Update(me.node_id, "suspect", 0)]), 1.0)
    other.core.handle(me.node_id, Gossip(ups), 1.6)
    assert other.core.member(me.node_id).state == "alive"  # type: ignore[union-attr]
    assert other.core.member(me.node_id).incarnation == 1  # type: ignore[union-attr]


def test_stale_suspicion_is_ignored() -> None:
    me, other = make_peers(2)
    connect(me.core, [other])
    me.core.handle(other.node_id, Gossip([alive(other, 2)]), 0.0)
    out = me.core.handle(other.node_id, Gossip([Update(other.node_id, "suspect", 1)]), 1.0)
    assert not changes(out)
    assert me.core.member(other.node_id).state == "alive"  # type: ignore[union-attr]


def test_restarted_node_claims_an_incarnation_above_its_previous_life() -> None:
    me, other = make_peers(2)
    connect(other.core, [me])
    other.core.handle(me.node_id, Gossip([alive(me, 3, 5)]), 0.0)
    other.core.handle(me.node_id, Gossip([Update(me.node_id, "dead", 3)]), 1.0)
    # `me` restarts at incarnation 0 and joins through `other`.
    (join,) = me.core.join([other.address])
    assert join.to == "" and join.address == other.address
    replies = other.core.handle(me.node_id, join.msg, 2.0)
    for reply in sends(replies, SyncReply):
        me.handle(other.node_id, reply.msg, 2.01)
    assert me.core.incarnation == 4
    for t in range(1, 6):
        for gossip in sends(me.core.tick(2.0 + t * 0.1), Gossip):
            other.core.handle(me.node_id, gossip.msg, 2.01 + t * 0.1)
    view = other.core.member(me.node_id)
    assert view is not None and (view.state, view.incarnation) == ("alive", 4)


def test_relay_table_is_bounded_against_a_flood_of_probe_requests() -> None:
    helper, requester, target = make_peers(3)
    connect(helper.core, [requester, target])
    pings = [s for seq in range(MAX_RELAYS + 50) for s in sends(
        helper.core.handle(requester.node_id, PingReq(seq, target.node_id), 1.0), Ping)]
    assert len(pings) == MAX_RELAYS
    helper.core.tick(1.0)
    helper.core.tick(5.0)  # expired relays are dropped, so honest requests work again
    assert sends(helper.core.handle(requester.node_id, PingReq(1, target.node_id), 5.0), Ping)


def test_equal_views_have_equal_hashes_whatever_the_order_they_were_learnt_in() -> None:
    a, b, *others = make_peers(5)
    for update in [alive(p) for p in others]:
        a.core.handle(others[0].node_id, Gossip([update]), 0.0)
    for update in reversed([alive(p) for p in others]):
        b.core.handle(others[0].node_id, Gossip([update]), 0.0)
    a.core.handle(b.node_id, Gossip([alive(b)]), 0.0)
    b.core.handle(a.node_id, Gossip([alive(a)]), 0.0)
    assert a.core.view_hash == b.core.view_hash
    b.core.handle(a.node_id, Gossip([Update(others[1].node_id, "suspect", 0)]), 1.0)
    assert a.core.view_hash != b.core.view_hash
    a.core.handle(b.node_id, Gossip([Update(others[1].node_id, "suspect", 0)]), 1.0)
    assert a.core.view_hash == b.core.view_hash


def test_a_view_that_keeps_differing_from_the_peers_pulls_early_and_not_too_often() -> None:
    me, *others = make_peers(5)
    connect(me.core, others[:3])  # others[3] is news that passed us by
    full = others[0].core
    connect(full, [me, *others[1:]])
    theirs = full.view_hash
    assert theirs != me.core.view_hash
    now = 1.0
    me.core.tick(now)
    for i in range(CFG.repair_after):
        me.core.handle(others[0].node_id, Ping(100 + i, view=theirs), now)
    pulls = sends(me.core.tick(now + 0.1), SyncRequest)
    assert [p.to for p in pulls] == [others[0].node_id]
    for i in range(CFG.repair_after):
        me.core.handle(others[0].node_id, Ack(200 + i, view=theirs), now + 0.2)
    assert not sends(me.core.tick(now + 0.3), SyncRequest)  # rate-limited
    # An agreeing peer resets the count.
    for i in range(CFG.repair_after - 1):
        me.core.handle(others[0].node_id, Ping(300 + i, view=theirs), now + 11)
    me.core.handle(others[1].node_id, Ping(400, view=me.core.view_hash), now + 11)
    me.core.handle(others[0].node_id, Ping(401, view=theirs), now + 11)
    assert not sends(me.core.tick(now + 11.1), SyncRequest)


# -- validation of what peers send -------------------------------------------------------


def test_verify_manifest_opens_good_and_rejects_bad_signatures() -> None:
    (peer,) = make_peers(1)
    good = alive(peer).manifest
    assert good is not None
    assert verify_manifest(good) == peer.manifest
    assert verify_manifest(dataclasses.replace(good, sig=bytes(64))) is None
    assert verify_manifest(dataclasses.replace(good, body=b"\xc1junk")) is None



def test_forged_manifest_is_refused_and_counted() -> None:
    me, other, mallory = make_peers(3)
    connect(me.core, [mallory])
    good = alive(other, 1)
    forged = Update(other.node_id, "alive", 1,
                    dataclasses.replace(good.manifest, sig=bytes(64)), (1, 0))
    me.core.handle(mallory.node_id, Gossip([forged]), 1.0)
    assert me.core.member(other.node_id) is None
    assert me.core.stats.invalid_updates == 1


def test_member_table_stops_growing_at_its_bound(monkeypatch) -> None:
    import mesh.membership

    monkeypatch.setattr(mesh.membership, "MAX_MEMBERS", 3)
    me, *others = make_peers(5)
    me.core.handle(others[0].node_id, Gossip([alive(p) for p in others]), 1.0)
    assert len(me.core.members()) == 3
    assert me.core.stats.invalid_updates == 2


def test_manifest_whose_version_lies_is_refused() -> None:
    me, other = make_peers(2)
    lying = Update(other.node_id, "alive", 5, alive(other, 1).manifest, (5, 0))
    me.core.handle(other.node_id, Gossip([lying]), 1.0)
    assert me.core.member(other.node_id) is None
    assert me.core.stats.invalid_updates == 1


def test_someone_elses_manifest_under_a_node_id_is_refused() -> None:
    me, other, third = make_peers(3)
    stolen = Update(other.node_id, "alive", 0, alive(third).manifest, (0, 0))
    me.core.handle(third.node_id, Gossip([stolen]), 1.0)
    assert me.core.member(other.node_id) is None


@pytest.mark.parametrize(("body", "field_name"), [
    ({"updates": [{"node_id": "a" * 32, "state": "alive", "incarnation": 0}]}, "manifest"),
    ({"updates": [{"node_id": "a" * 32, "state": "zombie", "incarnation": 0}]}, "state"),
    ({"updates": [{"node_id": "a" * 32, "state": "dead", "incarnation": -1}]}, "incarnation"),
    ({"updates": [{"node_id": "a" * 32, "state": "suspect", "incarnation": 0,
                   "suspected_for": -3.0}]}, "suspected_for"),
    ({"updates": [{"node_id": "a" * 40, "state": "dead", "incarnation": 0}]}, "node_id"),
    ({"updates": "lots"}, "updates"),
])
def test_malformed_gossip_bodies_are_refused_naming_the_field(body, field_name) -> None:
    with pytest.raises(codec.DecodeError, match=field_name):
        codec.from_body("swim.gossip", body)


def test_messages_survive_the_codec() -> None:
    a, b = make_peers(2)
    msgs = [Ping(1, [alive(a)]), Ack(2, [Update(b.node_id, "suspect", 3, suspected_for=1.5)]),
            PingReq(3, b.node_id), Gossip([alive(b, 2, 7)]),
            SyncRequest([(a.node_id, "alive", 0, 0, 0)], [alive(a)]),
            SyncReply([Update(b.node_id, "dead", 1, alive(b, 1).manifest, (1, 0))], [a.node_id])]
    for msg in msgs:
        assert codec.from_body(codec.kind_of(msg), codec.to_body(msg)) == msg


# -- commands ----------------------------------------------------------------------------


def test_join_through_a_seed_teaches_both_sides_everything() -> None:
    seed, joiner, *rest = make_peers(6)
    connect(seed.core, rest)
    (join,) = joiner.core.join([seed.address])
    out = seed.core.handle(joiner.node_id, join.msg, 0.5)
    assert seed.core.member(joiner.node_id) is not None
    for reply in sends(out, SyncReply):
        assert reply.to == joiner.node_id
        joiner.core.handle(seed.node_id, reply.msg, 0.51)
    assert {v.node_id for v in joiner.core.members()} == {p.node_id for p in [seed, joiner, *rest]}
    assert joiner.core.address_of(rest[0].node_id) == rest[0].address


def test_lost_join_is_retried_until_a_seed_answers() -> None:
    seed, joiner = make_peers(2)
    joiner.core.join([seed.address])
    retries = []
    now = 0.0
    while now < 8.0:
        now += CFG.tick_interval
        retries += [s for s in sends(joiner.core.tick(now), SyncRequest) if s.address]
    assert 2 <= len(retries) <= 5  # backing off from one probe interval: 0.5, 1, 2, 4 s
    out = seed.core.handle(joiner.node_id, retries[-1].msg, now)
    for reply in sends(out, SyncReply):
        joiner.core.handle(seed.node_id, reply.msg, now)
    later = [s for t in range(1, 300) for s in sends(joiner.core.tick(now + t * 0.1), SyncRequest)
             if s.address]
    assert later == []  # even when the seed stops answering probes later on


def test_a_stranger_calling_after_the_join_triggers_an_early_push_pull() -> None:
    from mesh.sim.net import SimNet

    seed, joiner, stranger, *rest = make_peers(6)
    net = SimNet(3)
    for peer in (seed, joiner, stranger, *rest):
        net.add(peer.node_id, peer.core, address=peer.address)
    for peer in rest:
        net.emit(peer.node_id, peer.core.join([seed.address]))
    net.run_until(5.0)
    pulls: list[float] = []
    net.on_send = lambda src, dst, msg, size: pulls.append(net.now) if (
        src == joiner.node_id and isinstance(msg, SyncRequest)) else None
    net.emit(joiner.node_id, joiner.core.join([seed.address]))
    net.run_until(12.0)
    assert len(pulls) == 2  # the join, then catching up once, then quiet
    assert pulls[1] - pulls[0] < 2.5
    net.emit(stranger.node_id, [Send(joiner.node_id, Ping(1))])  # it never joined
    net.run_until(14.5)
    assert len([t for t in pulls if t > 12.0]) == 1


def test_manifest_update_spreads_and_stale_one_is_refused() -> None:
    me, other = make_peers(2)
    connect(me.core, [other])
    with pytest.raises(ValueError, match="not newer"):
        me.core.update_manifest(sign_manifest(me.identity, me.manifest))
    version = me.change()
    gossip = [s for t in range(1, 4) for s in sends(me.core.tick(t * 0.1), Gossip)]
    mine = [u for g in gossip for u in g.msg.updates if u.node_id == me.node_id]
    assert mine and mine[0].version == version
    other.core.handle(me.node_id, Gossip(mine), 0.51)
    assert other.core.manifest_of(me.node_id).freshness == version  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=me.node_id):
        me.core.update_manifest(alive(other, 5).manifest)  # type: ignore[arg-type]


def test_leaving_node_is_marked_left_not_dead() -> None:
    me, other = make_peers(2)
    connect(me.core, [other])
    connect(other.core, [me])
    out = me.core.leave(3.0)
    assert out
    for send in sends(out, Gossip):
        other.core.handle(me.node_id, send.msg, 3.01)
    assert other.core.member(me.node_id).state == "left"  # type: ignore[union-attr]
    assert me.node_id not in other.core.alive_peers()
    assert other.core.live_count() == 1


def test_dead_members_are_reaped_after_the_reap_timeout() -> None:
    config = dataclasses.replace(CFG, reap_after=60.0)
    me, other, third = make_peers(3, config=config)
    connect(me.core, [other, third])
    me.core.handle(third.node_id, Gossip([Update(other.node_id, "dead", 0)]), 1.0)
    me.core.tick(30.0)
    assert me.core.member(other.node_id) is not None
    me.core.tick(62.0)
    assert me.core.member(other.node_id) is None
    assert me.core.live_count() == 2


# -- configuration -----------------------------------------------------------------------


def test_lan_defaults_are_memberlists_with_lifeguard_suspicion_timeouts() -> None:
    lan = MembershipConfig.lan()
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks) == (0.5, 0.25, 3)
    assert (lan.gossip_interval, lan.gossip_fanout) == (0.2, 3)
    # An unconfirmed suspicion waits 6 s at 100 nodes; three confirmations bring it to 2 s.
    assert lan.suspicion_timeout(100, 0) == pytest.approx(6.0)
    assert lan.suspicion_timeout(100, 1) == pytest.approx(4.0)
    assert lan.suspicion_timeout(100, 2) == pytest.approx(6.0 - 4.0 * math.log(3) / math.log(4))
    assert lan.suspicion_timeout(100, 3) == lan.suspicion_timeout(100) == pytest.approx(2.0)
    assert lan.suspicion_timeout(100, 9) == pytest.approx(2.0)
    # Three nodes: one confirmation (the only other prober) is all there can be.
    assert lan.suspicion_timeout(3, 0) == pytest.approx(3.0)
    assert lan.suspicion_timeout(3, 1) == pytest.approx(1.0)
    assert lan.probe_timeout * 2 == lan.probe_interval
    assert lan.retransmit_limit(100) == 12
    assert lan.push_pull_period(32) == 30.0
    assert lan.push_pull_period(100) == 90.0
    wan = MembershipConfig.wan()
    assert wan.probe_interval > lan.probe_interval
    assert wan.suspicion_timeout(100, 0) > lan.suspicion_timeout(100, 0)


@pytest.mark.parametrize(("changes_", "message"), [
    ({"probe_interval": 0}, "probe_interval"),
    ({"probe_timeout": 2.0}, "shorter than probe_interval"),
    ({"gossip_fanout": 0}, "gossip_fanout"),
    ({"sync_chunk": 10_000}, "sync_chunk"),
    ({"reap_after": float("nan")}, "reap_after"),
])
def test_bad_config_is_refused_naming_the_knob(changes_, message) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(CFG, **changes_)


# -- Lifeguard ---------------------------------------------------------------------------


def test_independent_confirmations_shorten_a_suspicion() -> None:
    me, other, *rest = make_peers(6)
    connect(me.core, [other, *rest])
    n = me.core.live_count()
    me.core.handle(rest[0].node_id, Gossip([Update(other.node_id, "suspect", 0,
                                                    by=rest[0].node_id)]), 10.0)
    # Relays of the same suspicion do not count; distinct suspectors do.
    me.core.handle(rest[1].node_id, Gossip([Update(other.node_id, "suspect", 0,
                                                    by=rest[0].node_id)]), 10.1)
    assert me.core._suspects[other.node_id] == pytest.approx(10.0 + CFG.suspicion_timeout(n, 0))
    for i, confirmer in enumerate(rest[1:4], start=1):
        me.core.handle(confirmer.node_id, Gossip([Update(other.node_id, "suspect", 0,
                                                          by=confirmer.node_id)]), 10.2)
        assert me.core._suspects[other.node_id] == pytest.approx(
            10.0 + CFG.suspicion_timeout(n, i))
    dead = [c for t in range(1, 40) for c in changes(me.core.tick(10.2 + t * 0.1))
            if c.node_id == other.node_id and c.state == "dead"]
    assert dead and CFG.suspicion_timeout(n) < CFG.suspicion_timeout(n, 0)


def test_a_probe_of_a_suspect_carries_the_suspicion_and_comes_first() -> None:
    me, other, third = make_peers(3)
    connect(me.core, [other, third])
    connect(other.core, [me, third])
    me.core.handle(third.node_id, Gossip([Update(other.node_id, "suspect", 0,
                                                  by=third.node_id)]), 1.0)
    pings = []
    now = 1.0
    while not pings:
        now += CFG.tick_interval
        pings = sends(me.core.tick(now), Ping)
    (ping,) = pings
    assert ping.to == other.node_id  # the suspect is probed next
    first = ping.msg.updates[0]
    assert (first.node_id, first.state) == (other.node_id, "suspect")
    # The suspect, told by the probe itself, refutes at once.
    out = other.handle(me.node_id, ping.msg, now + 0.01)
    assert other.core.incarnation == 1 and other.core.stats.refutations == 1
    assert any(isinstance(s.msg, Gossip) and s.to == me.node_id for s in sends(out))


def test_failed_probes_lower_local_health_and_slow_probing_answered_ones_restore_it() -> None:
    me, *others = make_peers(4)
    connect(me.core, others)
    now, starts = 0.0, []
    while len(starts) < 4:
        now += CFG.tick_interval
        probes = me.core.stats.probes
        me.core.tick(now)
        if me.core.stats.probes > probes:
            starts.append(now)
    # No peer answers: every probe fails, each failure stretching the next interval.
    assert me.core.health >= 2
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert gaps[-1] > gaps[0] + CFG.probe_interval / 2
    # An answered probe takes one off.
    while True:
        now += CFG.tick_interval
        probes = me.core.stats.probes
        pings = sends(me.core.tick(now), Ping)
        if me.core.stats.probes > probes:
            before = me.core.health
            me.core.handle(pings[0].to, Ack(pings[0].msg.seq), now + 0.01)
            break
    me.core.tick(now + 0.1)
    assert me.core.health == before - 1
