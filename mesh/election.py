"""Leader election: Raft terms and votes among the voter set, pre-vote, check-quorum, a lease.

The core is sans-IO (see mesh/core.py): `handle(src, msg, now)` and `tick(now)` return `Send`s
and `Persist` effects. The shell must make a `Persist` durable before it sends any message that
follows it in the same list: a vote that is answered but not stored could be given twice in one
term after a crash.

There is no replicated log; the mesh only needs *who leads, in which term, and may it act now*.
So this is Raft's election half with the extensions etcd uses to make a leader safe to act on
without a log round per action:

- **Pre-vote.** A node whose timer fires first asks "would you vote for me in term+1?" without
  raising its term. Voters that still hear from a leader say no, so a node coming back from a
  partition does not depose a healthy leader.
- **Leader lease with vote withholding.** A voter that acknowledges a heartbeat promises not
  to vote for anyone else for `election_timeout_min` on its own clock, counted from when it
  received the heartbeat. The leader's lease is `lease_duration` on *its* clock, counted from
  the send time of the newest heartbeat a majority (itself included) acknowledged. With clock
  rates within `1 +- max_clock_drift`, a promise lasts at least `E/(1+d)` of true time and the
  lease at most `D/(1-d)`; `D <= E(1-d)/(1+d)` (see `ElectionConfig.lease_duration`) makes every
  lease end, in true time, before any majority can have voted for someone else.
  A node that (re)starts withholds its vote for `election_timeout_min` too: it may have made a
  promise just before it crashed, and promises are not persisted.
- **Check-quorum.** A leader that has not heard from a majority for `election_timeout_min`
  steps down, so a leader cut off in a minority stops claiming to lead.
- **Leadership transfer.** `transfer_leadership` drops the lease at once, then sends TimeoutNow
  to the best reachable voter, which campaigns at once with `force` set: a forced vote request
  may override a promise, which is safe because the only lease such a promise protects is the
  one the old leader gave up before asking (a forced campaign is only for term T+1 of the
  leader of T, which sends at most one).
- **Voter-set changes** go one voter at a time and carry a version `(writer's term, change)`;
  voters refuse candidates holding an older set (Raft gets this from its log). See
  `set_voters`.

`is_leader_with_lease(now)` is the only thing leader duties may check; every leader action
carries `term` as its fencing token (storage refuses writes older than the newest term seen).

Non-voters run the same class with `self_id not in voters`: they never vote or campaign and
learn `(leader, term, lease_until)` from gossip through `observe`.

**Against a peer holding the cluster key** (the wire proves who sent each message):

- Votes, vote replies, heartbeats and acks count only from current voters.
- A granted vote carries the voter's signed endorsement (mesh/quorum.py); a winner keeps a
  majority of them as its quorum certificate and sends it with every heartbeat. A follower
  follows a leader, and moves to its term, only once the certificate checks out against its own
  voter set; non-voters demand the same in `observe`. `proven_term` is the highest term this
  node has seen won with such a proof: storage fences leader-written rows with it. Followers
  also endorse their leader in their acks, so a leader whose voter set grew can show a
  certificate that a majority of the new set signed.
- A term raised without a proof (a vote request, a reply, a refused ack) may exceed this
  node's term by at most `MAX_TERM_STEP`, so no voter can push the cluster to the maximum.

Each refusal is counted in `refused` by reason.
"""

from __future__ import annotations

import enum
import math
import random
from dataclasses import dataclass, field

from mesh import codec
from mesh.core import Send
from mesh.quorum import ENDORSEMENT_BYTES, MAX_QUORUM, Notary

# Terms and heartbeat sequence numbers are stored as SQLite integers (signed 64-bit).
MAX_TERM = (1 << 63) - 1
# A leader announces at most this much remaining lease (seconds); far above any sane config,
# it only bounds what a peer can make a follower believe.
MAX_LEASE_REMAINING = 3600.0
# How far a term may rise without a quorum certificate (a vote request, a refused ack). An
# honest election raises it by one; a node cut off through many failed elections may lag by a
# few hundred; a certificate proves any higher term at once. At this step a hostile voter
# would need 2^53 messages to push terms to the maximum.
MAX_TERM_STEP = 1024
# Why the core ignored a message; counted in `Election.refused`.
REFUSALS = ("not_voter", "no_quorum", "term_step", "bad_vote")
# Heartbeat send times a leader remembers, to turn an ack's seq back into a send time. Acks
# older than this many rounds are too old to extend a lease anyway.
_SENT_WINDOW = 256


@dataclass(frozen=True, slots=True)
class ElectionConfig:
    """Every election timing knob. Field defaults are the LAN values; `wan()` the WAN ones.

    Safety does not depend on the timeouts being "right": the lease is derived from them (see
    `lease_duration`), so any valid config is safe under its `max_clock_drift`. The numbers only
    trade failover time against spurious elections.
    """

    # LAN: 100 ms heartbeats give a follower 10 chances per election timeout, so at 10% loss
    # the chance of missing them all is 1e-10 per timeout: no spurious elections.
    heartbeat_interval: float = 0.1
    # LAN: 1 s is Raft-class (etcd defaults to 1 s) and is far above LAN round trips (~1 ms),
    # so a busy Python event loop stalling for 100 ms cannot trigger an election.
    election_timeout_min: float = 1.0
    # LAN: timers spread over [1.0, 1.6) s, so two voters rarely fire within one round trip
    # of each other (split votes), and even a split vote plus one retry fails over in ~3 s.
    election_timeout_max: float = 1.6
    # Bound on clock *rate* error between any two nodes' monotonic clocks. Quartz is within
    # 100 ppm and NTP slews at most 500 ppm; 1% is 20x that, and costs only 2% of the lease.
    max_clock_drift: float = 0.01
    # Taken off the lease on top of drift: a leader checks its lease, then acts; the action
    # (a storage write, starting a job) must land before the lease ends. Fencing by term
    # catches anything later; this keeps it rare. LAN: 100 ms covers an event-loop stall.
    lease_guard: float = 0.1

    def __post_init__(self) -> None:
        for name in ("heartbeat_interval", "election_timeout_min", "election_timeout_max",
                     "lease_guard"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"ElectionConfig.{name}={value!r}: expected a finite "
                                 "number >= 0")
        if not 0 <= self.max_clock_drift < 0.5:
            raise ValueError(f"ElectionConfig.max_clock_drift={self.max_clock_drift!r}: "
                             "expected a rate error in [0, 0.5)")
        if self.heartbeat_interval <= 0:
            raise ValueError(f"ElectionConfig.heartbeat_interval={self.heartbeat_interval!r}: "
                             "expected > 0")
        if self.election_timeout_max <= self.election_timeout_min:
            raise ValueError(
                f"ElectionConfig.election_timeout_max={self.election_timeout_max!r}: expected "
                f"> election_timeout_min={self.election_timeout_min!r} (randomized timeouts "
                "need a range, or voters split every vote)")
        # A lease must outlive a few heartbeat rounds, or one lost ack makes the leader idle.
        if self.lease_duration < 2 * self.heartbeat_interval:
            raise ValueError(
                f"ElectionConfig: lease_duration={self.lease_duration:.3f} s (from "
                f"election_timeout_min={self.election_timeout_min!r}, drift, guard) is shorter "
                f"than two heartbeat_interval={self.heartbeat_interval!r}: expected a longer "
                "election timeout or shorter heartbeats")

    @property
    def lease_duration(self) -> float:
        """Leader lease in the leader's clock, counted from the acked heartbeat's send time.

        A voter's promise lasts `election_timeout_min` on its clock: at least
        `E / (1 + drift)` true seconds. A lease of `D` leader seconds lasts at most
        `D / (1 - drift)` true seconds, so `D = E (1 - drift) / (1 + drift)` ends no later than
        the earliest promise, and the guard ends it earlier still.
        """
        d = self.max_clock_drift
        return self.election_timeout_min * (1 - d) / (1 + d) - self.lease_guard

    @classmethod
    def lan(cls) -> ElectionConfig:
        return cls()

    @classmethod
    def wan(cls) -> ElectionConfig:
        return cls(
            # WAN: round trips of 50-300 ms and lossier paths; 300 ms heartbeats still give
            # a follower ten chances per election timeout (1e-10 to miss them all at 10% loss).
            heartbeat_interval=0.3,
            # WAN: 3 s is ten or more round trips even on a slow path, so a congested link or a
            # short routing flap does not start an election.
            election_timeout_min=3.0,
            # WAN: a 3 s spread is ten or more round trips wide, so split votes stay rare, and
            # the loser of a split defers to the winner's retry: one election plus one retry
            # ends within 2 x 6 s plus a few round trips, inside the 15 s failover goal.
            election_timeout_max=6.0,
            max_clock_drift=0.01,
            # WAN: a leader action may itself cross the WAN (a storage write on a peer); 300 ms
            # covers a slow round trip.
            lease_guard=0.3,
        )


class Role(enum.StrEnum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre_candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# --- messages ------------------------------------------------------------------------------

_TERM = {"min": 0, "max": MAX_TERM}
# A quorum certificate on the wire: voter id -> endorsement (public key || vote signature).
QUORUM_FIELD = {"max_len": MAX_QUORUM, "key_max_len": 32, "item_max_len": ENDORSEMENT_BYTES}


def _check_term(term: int) -> None:
    # The codec checks ranges on the way in; this also catches a core building a bad message.
    if not 0 <= term <= MAX_TERM:
        raise ValueError(f"term {term!r}: expected an int in [0, {MAX_TERM}]")


@codec.message("raft.vote")
@dataclass(frozen=True, slots=True)
class RequestVote:
    """Vote for the sender in `term`. `pre`: only ask whether you would (term not raised).

    `force`: sent by the target of a leadership transfer; overrides the voter's lease promise.
    """

    term: int = field(metadata=_TERM)
    pre: bool = False
    force: bool = False
    # The candidate's voter-set version: a voter holding a newer set refuses it (see
    # `Election.set_voters`).
    voters_version: tuple[int, int] = field(default=(0, 0), metadata=_TERM)

    def __post_init__(self) -> None:
        _check_term(self.term)
        if not all(0 <= x <= MAX_TERM for x in self.voters_version):
            raise ValueError(f"voters_version {self.voters_version!r}: expected two ints in "
                             f"[0, {MAX_TERM}]")
        if self.pre and self.force:
            raise ValueError("RequestVote: pre and force cannot both be set (a transfer "
                             "target campaigns without a pre-vote)")


@codec.message("raft.vote-reply")
@dataclass(frozen=True, slots=True)
class VoteReply:
    """`term`: the term voted in (the asked term if granted, else the voter's own term).

    `endorsement`: with a granted real vote, the voter's signed vote (mesh/quorum.py).
    """

    term: int = field(metadata=_TERM)
    granted: bool
    pre: bool = False
    endorsement: bytes = field(default=b"", metadata={"max_len": ENDORSEMENT_BYTES})

    def __post_init__(self) -> None:
        _check_term(self.term)


@codec.message("raft.heartbeat")
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """The leader of `term` is alive. `seq` numbers the round; the ack echoes it.

    `lease_remaining` (seconds) is informational for followers (a duration, so clock offsets
    between nodes do not matter); no follower acts on it. `quorum` is the leader's quorum
    certificate for `term`: followers check it once per leader and term.
    """

    term: int = field(metadata=_TERM)
    seq: int = field(metadata={"min": 0, "max": MAX_TERM})
    lease_remaining: float = field(metadata={"min": 0.0, "max": MAX_LEASE_REMAINING})
    quorum: dict[str, bytes] = field(default_factory=dict, metadata=QUORUM_FIELD)

    def __post_init__(self) -> None:
        _check_term(self.term)


@codec.message("raft.heartbeat-ack")
@dataclass(frozen=True, slots=True)
class HeartbeatAck:
    """`ok`: the sender follows the leader of `term` and promises its vote until the
    promise lapses. Not ok: the sender is in the higher `term` and the leader is stale.

    `endorsement`: the sender's signed backing of the leader in `term`, when the heartbeat's
    certificate lacks it; a leader whose voter set grew renews its certificate from these.
    """

    term: int = field(metadata=_TERM)
    seq: int = field(metadata={"min": 0, "max": MAX_TERM})
    ok: bool
    endorsement: bytes = field(default=b"", metadata={"max_len": ENDORSEMENT_BYTES})

    def __post_init__(self) -> None:
        _check_term(self.term)


@codec.message("raft.timeout-now")
@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """From the leader of `term`, which has given up its lease: campaign for term+1 now."""

    term: int = field(metadata=_TERM)

    def __post_init__(self) -> None:
        _check_term(self.term)


ELECTION_MESSAGES = (RequestVote, VoteReply, Heartbeat, HeartbeatAck, TimeoutNow)


@dataclass(frozen=True, slots=True)
class Persist:
    """Effect: store `(term, voted_for)` durably before sending anything after it."""

    term: int
    voted_for: str | None


Output = Send | Persist


# --- the core ------------------------------------------------------------------------------


class Election:
    """The election state machine of one node; see the module docstring."""

    def __init__(
        self,
        self_id: str,
        voters: frozenset[str],
        config: ElectionConfig,
        rng: random.Random,
        persisted: tuple[int, str | None] = (0, None),
        voters_version: tuple[int, int] = (0, 0),
        *,
        notary: Notary,
        proven_term: int = 0,
    ) -> None:
        term, voted_for = persisted
        if type(term) is not int or not 0 <= term <= MAX_TERM:
            raise ValueError(f"persisted term {term!r}: expected an int in [0, {MAX_TERM}]")
        if voted_for is not None and not isinstance(voted_for, str):
            raise ValueError(f"persisted voted_for {voted_for!r}: expected a node id or None")
        if type(proven_term) is not int or not 0 <= proven_term <= MAX_TERM:
            raise ValueError(f"proven term {proven_term!r}: expected an int in [0, {MAX_TERM}]")
        self.self_id = self_id
        self.config = config
        self.notary = notary
        self.refused: dict[str, int] = dict.fromkeys(REFUSALS, 0)
        self._rng = rng
        self._voters = _checked_voters(voters)
        self._voters_version = _checked_version(voters_version)
        if self._voters_version[0] > term:
            # The voter set was written in a later term than the one persisted: see set_voters.
            term, voted_for = self._voters_version[0], None
        self._term = term
        self._voted_for = voted_for
        self._role = Role.FOLLOWER
        self._leader: str | None = None
        # Leader: own lease end. Follower: its estimate of the leader's (informational).
        self._lease_until = -math.inf
        # Until then this node grants no (non-forced) vote or pre-vote to anyone.
        self._promise_until = -math.inf
        self._election_deadline = math.inf
        self._started = False
        # Campaign (pre-vote or vote): who granted, when unanswered requests are resent.
        self._votes: set[str] = set()
        self._forced = False
        self._next_request = math.inf
        # The pre-candidate this node last backed: (term asked, who, until when).
        self._pre_granted: tuple[int, str, float] = (-1, "", -math.inf)
        # Candidate: the signed votes of this campaign. Leader: those and the endorsements
        # acks brought, and its certificate (a majority of them).
        self._endorsements: dict[str, bytes] = {}
        self._quorum: dict[str, bytes] = {}
        self._quorum_term = -1
        # Follower: its endorsement of (term, leader), signed once and sent with acks.
        self._endorsed: tuple[int, str, bytes] = (-1, "", b"")
        # The (term, leader) whose certificate this node last checked, and the highest term
        # it has seen won with one.
        self._proven: tuple[int, str] = (-1, "")
        self._proven_term = proven_term
        # Leader bookkeeping.
        self._seq = 0
        self._sent_at: dict[int, float] = {}
        self._acked: dict[str, float] = {}  # voter -> send time of its newest acked heartbeat
        self._heard: dict[str, float] = {}  # voter -> when it last answered (check-quorum)
        self._last_broadcast = -math.inf
        self._next_broadcast = -math.inf

    # -- queries --------------------------------------------------------------------------

    @property
    def role(self) -> Role:
        return self._role

    @property
    def leader(self) -> str | None:
        return self._leader

    @property
    def term(self) -> int:
        return self._term

    @property
    def voted_for(self) -> str | None:
        return self._voted_for

    @property
    def lease_until(self) -> float:
        return self._lease_until

    @property
    def voters(self) -> frozenset[str]:
        return self._voters

    @property
    def voters_version(self) -> tuple[int, int]:
        return self._voters_version

    @property
    def is_voter(self) -> bool:
        return self.self_id in self._voters

    @property
    def proven_term(self) -> int:
        """The highest term this node has seen won by a leader with a quorum certificate
        (its own wins included): no leader-written row may carry a higher term."""
        return self._proven_term

    @property
    def quorum(self) -> dict[str, bytes]:
        """The certificate of this node's win of the current term, kept after it steps down
        within that term (it still proves who won it); empty if it did not win this term."""
        return dict(self._quorum) if self._quorum_term == self._term else {}

    def is_leader_with_lease(self, now: float) -> bool:
        """True only while this node leads and a majority-granted lease covers `now`."""
        return self._role is Role.LEADER and now < self._lease_until

    def _majority(self) -> int:
        return len(self._voters) // 2 + 1

    def _won(self) -> bool:
        # Count only grants from current voters: the set may have changed mid-campaign.
        return len(self._votes & self._voters) >= self._majority()

    # -- inputs ---------------------------------------------------------------------------

    def tick(self, now: float) -> list[Output]:
        self._start(now)
        if self._role is Role.LEADER:
            return self._tick_leader(now)
        if not self.is_voter:
            return []
        if now >= self._election_deadline:
            return self._campaign(now, pre=True)
        if self._role in (Role.PRE_CANDIDATE, Role.CANDIDATE) and now >= self._next_request:
            # Resend to whoever has not answered: one lost request must not cost a whole
            # election timeout of failover.
            return self._request_votes(now)
        return []

    def handle(self, src: str, msg: object, now: float) -> list[Output]:
        self._start(now)
        if src == self.self_id:
            return []
        if isinstance(msg, Heartbeat):
            return self._on_heartbeat(src, msg, now)
        if isinstance(msg, HeartbeatAck):
            return self._on_heartbeat_ack(src, msg, now)
        if isinstance(msg, RequestVote):
            return self._on_request_vote(src, msg, now)
        if isinstance(msg, VoteReply):
            return self._on_vote_reply(src, msg, now)
        if isinstance(msg, TimeoutNow):
            return self._on_timeout_now(src, msg, now)
        raise TypeError(f"Election.handle: expected one of "
                        f"{[c.__name__ for c in ELECTION_MESSAGES]}, got {type(msg).__name__}")

    def observe(self, leader: str, term: int, lease_until: float,
                quorum: dict[str, bytes]) -> bool:
        """A non-voter learns (leader, term, lease_until) from the leader's own lease
        announcement (its signed manifest), with the quorum certificate of its election;
        voters ignore it. Returns whether it was taken.

        `lease_until` is in this core's `now` units (the shell converts). Newer terms win; in
        the same term, a known leader and the later lease win.
        """
        if self.is_voter or self._role is Role.LEADER:
            return False
        if type(term) is not int or not 0 <= term <= MAX_TERM:
            raise ValueError(f"observe: term {term!r}: expected an int in [0, {MAX_TERM}]")
        if not isinstance(lease_until, (int, float)) or math.isnan(lease_until):
            raise ValueError(f"observe: lease_until {lease_until!r}: expected a number in "
                             "this core's clock")
        if term < self._term or (term == self._term and self._leader not in (None, leader)):
            return False
        if not self._proof(leader, term, quorum):
            return False
        if term > self._term:
            self._term = term
            self._voted_for = None
            self._leader = leader
            self._lease_until = lease_until
        else:
            self._leader = leader
            self._lease_until = max(self._lease_until, lease_until)
        return True

    def set_voters(self, voters: frozenset[str],
                   version: tuple[int, int] | None = None) -> None:
        """Change the voter set by at most one node (any majority of the old set then meets
        any majority of the new one, so two leaders cannot be elected across the change).

        `version` is `(term of the leader that wrote the set, change number)`. One-at-a-time
        alone is not enough once changes chain: sets two changes apart need not overlap. As
        in Raft, where the voter set lives in the log, (1) only a leader holding its lease
        writes a set, and the next only once a majority adopted this one (the shell's rule);
        (2) a voter refuses candidates holding an older set, so once a set is adopted by a
        majority no candidate of the set before it can win; (3) adopting a set moves this node
        to at least the writer's term, so elections under the new set happen in later terms
        than any leader of the old sets. The term need not be persisted here: the shell
        persists the set with its version and passes it to the constructor again.
        """
        new = _checked_voters(voters)
        changed = new ^ self._voters
        if len(changed) > 1:
            raise ValueError(f"set_voters: {sorted(changed)} differ from the current voters; "
                             "expected at most one node added or removed at a time")
        if version is not None:
            version = _checked_version(version)
            if version < self._voters_version:
                raise ValueError(f"set_voters: version {version} is older than the current "
                                 f"{self._voters_version}; expected the newest set only")
            self._voters_version = version
            if version[0] > self._term:
                self._term = version[0]
                self._voted_for = None
                self._become_follower(leader=None)
        self._voters = new
        for gone in set(self._acked) - new:
            del self._acked[gone]
        for gone in set(self._heard) - new:
            del self._heard[gone]
        if self._role is Role.LEADER:
            self._refresh_quorum()
        if not self.is_voter:
            self._votes.clear()
            if self._role is not Role.FOLLOWER:
                self._become_follower(leader=None)
            self._election_deadline = math.inf
        elif self._election_deadline == math.inf:
            # Just became a voter: start its election timer (and a fresh promise, as after a
            # restart) at the next input, which brings the first `now`.
            self._started = False

    def transfer_leadership(self, now: float) -> list[Output]:
        """Hand leadership to the most recently heard voter (for leave / SIGTERM).

        The lease is dropped first, so no leader action happens after this call. With no
        voter reachable this node still steps down: it is leaving.
        """
        if self._role is not Role.LEADER:
            return []
        self._start(now)
        recent = now - self.config.election_timeout_min
        candidates = [v for v in sorted(self._voters)
                      if v != self.self_id and self._heard.get(v, -math.inf) >= recent]
        target = max(candidates, key=lambda v: (self._heard[v], v)) if candidates else None
        term = self._term
        self._become_follower(leader=None)
        self._reset_election_timer(now)
        return [] if target is None else [Send(target, TimeoutNow(term))]

    # -- handlers -------------------------------------------------------------------------

    def _on_heartbeat(self, src: str, msg: Heartbeat, now: float) -> list[Output]:
        if src not in self._voters:
            return self._refuse("not_voter")
        if msg.term < self._term:
            # A stale leader: tell it the newer term so it steps down.
            return [Send(src, HeartbeatAck(self._term, msg.seq, ok=False))]
        if self._role is Role.LEADER and msg.term == self._term:
            return []  # two leaders in one term is impossible by the vote rule; never follow one
        if not self._proof(src, msg.term, msg.quorum):
            return []
        out: list[Output] = []
        if msg.term > self._term:
            out += self._raise_term(msg.term)
        if self._role is Role.LEADER:
            # Two leaders in one term is impossible by the vote rule; never follow one.
            return out
        if self._role is not Role.FOLLOWER:
            self._become_follower(leader=src)
        self._leader = src
        self._lease_until = now + min(msg.lease_remaining, self.config.lease_duration)
        # Non-voters promise too: a leader with a newer voter set may count this ack before
        # this node learns it has become a voter.
        self._promise_until = max(self._promise_until, now + self.config.election_timeout_min)
        if self.is_voter:
            self._reset_election_timer(now)
        endorsement = b"" if self.self_id in msg.quorum else self._endorsement(msg.term, src)
        out.append(Send(src, HeartbeatAck(self._term, msg.seq, ok=True,
                                          endorsement=endorsement)))
        return out

    def _endorsement(self, term: int, leader: str) -> bytes:
        if self._endorsed[:2] != (term, leader):
            self._endorsed = (term, leader, self.notary.endorse(term, leader))
        return self._endorsed[2]

    def _on_heartbeat_ack(self, src: str, msg: HeartbeatAck, now: float) -> list[Output]:
        if src not in self._voters:
            return self._refuse("not_voter")
        if msg.term > self._term:
            return self._raise_unproven(msg.term)
        if self._role is not Role.LEADER or msg.term != self._term or not msg.ok:
            return []
        sent = self._sent_at.get(msg.seq)
        if sent is None:
            return []
        if msg.endorsement and src not in self._endorsements:
            if not self.notary.check(src, self._term, self.self_id, msg.endorsement):
                return self._refuse("bad_vote")
            self._endorsements[src] = msg.endorsement
            self._refresh_quorum()
        self._heard[src] = now
        if sent > self._acked.get(src, -math.inf):
            self._acked[src] = sent
            self._extend_lease()
        return []

    def _on_request_vote(self, src: str, msg: RequestVote, now: float) -> list[Output]:
        if not self.is_voter or src not in self._voters:
            return self._refuse("not_voter")
        if msg.term > self._term + MAX_TERM_STEP:
            return self._refuse("term_step")
        if now < self._promise_until and not msg.force:
            # Still promised to a leader (or just restarted): ignore, do not even learn the
            # term, so a returning node cannot depose a leader by raising terms.
            return []
        if msg.voters_version < self._voters_version:
            # The candidate counts votes by a voter set older than ours (see set_voters).
            return []
        if msg.pre:
            # Pre-votes bind nobody, but two candidates that both collect a majority of them
            # go on to split the real vote. So a voter backs one pre-candidate per term for
            # a couple of heartbeats (time for its real vote request to arrive), and between
            # two pre-candidates only the higher id gets the grant.
            term, backed, until = self._pre_granted
            granted = (msg.term > self._term
                       and not (self._role is Role.PRE_CANDIDATE and src < self.self_id)
                       and not (term == msg.term and backed != src and now < until))
            if granted:
                self._pre_granted = (msg.term, src, now + 2 * self.config.heartbeat_interval)
            reply_term = msg.term if granted else self._term
            return [Send(src, VoteReply(reply_term, granted, pre=True))]
        out: list[Output] = []
        if msg.term > self._term:
            out += self._raise_term(msg.term)
        granted = msg.term == self._term and self._voted_for in (None, src)
        endorsement = self.notary.endorse(self._term, src) if granted else b""
        if granted and self._voted_for is None:
            self._voted_for = src
            self._reset_election_timer(now)
            out = [o for o in out if not isinstance(o, Persist)]
            out.append(Persist(self._term, self._voted_for))
        elif granted:
            self._reset_election_timer(now)
        elif (self._role is Role.CANDIDATE and msg.term == self._term
              and src > self.self_id):
            # A split vote: the lower id waits until the higher one's retry is due, so the
            # retry has one candidate.
            cfg = self.config
            self._election_deadline = max(self._election_deadline,
                                          now + cfg.election_timeout_max
                                          + self._rng.uniform(0, cfg.election_timeout_min / 2))
        out.append(Send(src, VoteReply(self._term, granted, pre=False, endorsement=endorsement)))
        return out

    def _on_vote_reply(self, src: str, msg: VoteReply, now: float) -> list[Output]:
        if src not in self._voters:
            return self._refuse("not_voter")
        if msg.term > self._term and not (msg.pre and msg.granted):
            return self._raise_unproven(msg.term)
        if not msg.granted:
            return []
        if msg.pre and self._role is Role.PRE_CANDIDATE and msg.term == self._term + 1:
            self._votes.add(src)
            if self._won():
                return self._campaign(now, pre=False)
        elif not msg.pre and self._role is Role.CANDIDATE and msg.term == self._term:
            if not self.notary.check(src, msg.term, self.self_id, msg.endorsement):
                return self._refuse("bad_vote")
            self._endorsements[src] = msg.endorsement
            self._votes.add(src)
            if self._won():
                return self._become_leader(now)
        return []

    def _on_timeout_now(self, src: str, msg: TimeoutNow, now: float) -> list[Output]:
        if (not self.is_voter or msg.term != self._term or src != self._leader
                or self._role is not Role.FOLLOWER):
            return []
        return self._campaign(now, pre=False, force=True)

    # -- transitions ----------------------------------------------------------------------

    def _start(self, now: float) -> None:
        if self._started:
            return
        self._started = True
        # Promises are not persisted: after a (re)start assume one was just given.
        self._promise_until = now + self.config.election_timeout_min
        if self.is_voter:
            self._reset_election_timer(now)

    def _reset_election_timer(self, now: float) -> None:
        cfg = self.config
        timeout = self._rng.uniform(cfg.election_timeout_min, cfg.election_timeout_max)
        self._election_deadline = max(now + timeout, self._promise_until)

    def _refuse(self, reason: str) -> list[Output]:
        self.refused[reason] += 1
        return []

    def _proof(self, leader: str, term: int, quorum: dict[str, bytes]) -> bool:
        """Whether `leader` is proven to have won `term` (its certificate checked, once)."""
        if self._proven == (term, leader):
            return True
        if not self.notary.proves(quorum, term, leader, self._voters):
            self.refused["no_quorum"] += 1
            return False
        self._proven = (term, leader)
        self._proven_term = max(self._proven_term, term)
        return True

    def _raise_unproven(self, term: int) -> list[Output]:
        """Move to a term a voter told us of without proof, if it is within a bounded step."""
        if term > self._term + MAX_TERM_STEP:
            return self._refuse("term_step")
        return self._raise_term(term)

    def _raise_term(self, term: int) -> list[Output]:
        self._term = term
        self._voted_for = None
        if self._role is not Role.FOLLOWER:
            self._become_follower(leader=None)
        else:
            self._leader = None
        return [Persist(term, None)]

    def _become_follower(self, leader: str | None) -> None:
        if self._role is Role.LEADER:
            self._lease_until = -math.inf
            self._sent_at.clear()
            self._acked.clear()
            self._heard.clear()
        self._role = Role.FOLLOWER
        self._leader = leader
        self._votes.clear()
        self._endorsements = {}
        self._forced = False

    def _campaign(self, now: float, *, pre: bool, force: bool = False) -> list[Output]:
        self._reset_election_timer(now)
        if now < self._promise_until and not force:
            return []
        self._leader = None
        self._lease_until = -math.inf
        self._votes = {self.self_id}
        self._forced = force
        out: list[Output] = []
        if pre:
            self._role = Role.PRE_CANDIDATE
        else:
            self._role = Role.CANDIDATE
            self._term += 1
            self._voted_for = self.self_id
            self._endorsements = {self.self_id: self.notary.endorse(self._term, self.self_id)}
            out.append(Persist(self._term, self.self_id))
        if self._won():
            return out + (self._campaign(now, pre=False) if pre else self._become_leader(now))
        self._next_request = now
        return out + self._request_votes(now)

    def _request_votes(self, now: float) -> list[Output]:
        self._next_request = _next_due(self._next_request, now, self.config.heartbeat_interval)
        if self._role is Role.PRE_CANDIDATE:
            msg = RequestVote(self._term + 1, pre=True, voters_version=self._voters_version)
        else:
            msg = RequestVote(self._term, force=self._forced,
                              voters_version=self._voters_version)
        return [Send(v, msg) for v in sorted(self._voters) if v not in self._votes]

    def _become_leader(self, now: float) -> list[Output]:
        self._role = Role.LEADER
        self._leader = self.self_id
        # The certificate: a majority of the current voters' signed votes, no more (it rides
        # on every heartbeat and in the manifest).
        self._quorum, self._quorum_term = {}, self._term
        self._refresh_quorum()
        self._proven = (self._term, self.self_id)
        self._proven_term = max(self._proven_term, self._term)
        self._votes.clear()
        self._lease_until = -math.inf
        self._sent_at.clear()
        self._acked.clear()
        # Check-quorum grace: give every voter one timeout to answer the new leader.
        self._heard = {v: now for v in self._voters if v != self.self_id}
        self._election_deadline = math.inf
        self._next_broadcast = now
        return self._broadcast(now)

    def _refresh_quorum(self) -> None:
        """Leader: keep a certificate that proves the win to holders of the current voter set
        (after a voter-set change the old one may not), built from the endorsements held."""
        majority = self._majority()
        if sum(1 for v in self._quorum if v in self._voters) >= majority:
            return
        backers = sorted(v for v in self._endorsements if v in self._voters)
        if len(backers) >= majority:
            self._quorum = {v: self._endorsements[v] for v in backers[:majority]}

    def _tick_leader(self, now: float) -> list[Output]:
        if not self.is_voter:
            self._become_follower(leader=None)
            return []
        heard = sorted([now] + [self._heard.get(v, -math.inf)
                                for v in self._voters if v != self.self_id], reverse=True)
        if heard[self._majority() - 1] < now - self.config.election_timeout_min:
            # Check-quorum: a majority has been silent for a whole timeout.
            self._become_follower(leader=None)
            self._reset_election_timer(now)
            return []
        if now >= self._next_broadcast:
            return self._broadcast(now)
        return []

    def _broadcast(self, now: float) -> list[Output]:
        self._seq += 1
        self._sent_at[self._seq] = now
        self._sent_at.pop(self._seq - _SENT_WINDOW, None)
        self._last_broadcast = now
        self._next_broadcast = _next_due(self._next_broadcast, now,
                                         self.config.heartbeat_interval)
        # The leader is its own voter: it promises like a follower that acked this round.
        self._promise_until = max(self._promise_until, now + self.config.election_timeout_min)
        self._extend_lease()
        remaining = min(max(0.0, self._lease_until - now), MAX_LEASE_REMAINING)
        msg = Heartbeat(self._term, self._seq, remaining, quorum=self._quorum)
        return [Send(v, msg) for v in sorted(self._voters) if v != self.self_id]

    def _extend_lease(self) -> None:
        # The newest send time that a majority (this node counted at its latest round) acked.
        times = sorted([self._last_broadcast] + [self._acked.get(v, -math.inf)
                                                 for v in self._voters if v != self.self_id],
                       reverse=True)
        base = times[self._majority() - 1]
        self._lease_until = max(self._lease_until, base + self.config.lease_duration)


def _next_due(due: float, now: float, period: float) -> float:
    # Periodic timers advance from when they were due, not from when the tick noticed, so
    # tick granularity (and a slow clock) delays a round by at most one tick instead of
    # stretching every period by up to a tick.
    due += period
    return due if due > now else now + period


def _checked_version(version: tuple[int, int]) -> tuple[int, int]:
    if (not isinstance(version, tuple) or len(version) != 2
            or not all(type(x) is int and 0 <= x <= MAX_TERM for x in version)):
        raise ValueError(f"voters version {version!r}: expected (term, change) as two ints in "
                         f"[0, {MAX_TERM}]")
    return version


def _checked_voters(voters: frozenset[str]) -> frozenset[str]:
    if not isinstance(voters, (frozenset, set)):
        raise TypeError(f"voters {voters!r}: expected a frozenset of node ids")
    for v in voters:
        if not isinstance(v, str) or not v:
            raise ValueError(f"voter {v!r}: expected a non-empty node id string")
    return frozenset(voters)
