"""The voter set: which nodes elect the leader, and how it grows one voter at a time.

The set is a last-writer-wins register versioned `(term, change)`: only a leader holding its
lease writes it, stamping its own term, so a deposed leader's write always loses to its
successor's. Every manifest carries the set its author holds; nodes adopt the newest version
they see. Changes go one voter at a time (any majority of the old set then overlaps any majority
of the new one), and the next change waits until a majority of the current voters announce the
current version: Raft's rule that a configuration must be committed before the next one starts.

A node takes a newer set only from a proven leader (`authorised`): the manifest of a node
carrying the quorum certificate of its win of its current term, from a majority of the set
this node holds. A key holder can sign a manifest
naming itself sole voter at any version, but cannot sign a majority's votes for itself.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.election import Election
from mesh.identity import is_node_id
from mesh.manifest import MAX_VOTERS, Manifest
from mesh.membership import MemberView
from mesh.quorum import Notary

# Changes one announcement may move the change number on: a leader adds one voter at a time and
# waits for each to settle, so even a node that was away for many changes is far below this.
MAX_CHANGE_STEP = 1024


@dataclass(frozen=True, slots=True)
class VoterSet:
    voters: tuple[str, ...]
    version: tuple[int, int]  # (term of the leader that wrote it, change number)

    @classmethod
    def from_state(cls, raw: object) -> VoterSet:
        """Parse what `to_state` stored; anything else (absent, corrupt) is the empty set."""
        if not isinstance(raw, dict):
            return cls((), (0, 0))
        voters, version = raw.get("voters"), raw.get("version")
        if (not isinstance(voters, list) or not all(is_node_id(v) for v in voters)
                or not isinstance(version, list) or len(version) != 2
                or not all(type(x) is int and x >= 0 for x in version)):
            return cls((), (0, 0))
        return cls(tuple(sorted(set(voters))), (version[0], version[1]))

    def to_state(self) -> dict[str, object]:
        return {"voters": list(self.voters), "version": list(self.version)}


def next_voter_set(current: VoterSet, members: Iterable[MemberView], term: int) -> VoterSet | None:
    """The leader's next voter set: one more voter, if one asked and the last change settled."""
    members = list(members)
    if len(current.voters) >= MAX_VOTERS:
        return None
    announced = {m.node_id: m.manifest.voters_version for m in members}
    settled = sum(1 for v in current.voters if announced.get(v) == current.version)
    if settled <= len(current.voters) // 2:
        return None
    asking = sorted(m.node_id for m in members
                    if m.state == "alive" and m.manifest.wants_voter
                    and m.node_id not in current.voters)
    if not asking:
        return None
    voters = tuple(sorted((*current.voters, asking[0])))
    return VoterSet(voters, (term, current.version[1] + 1))


def seed_anchors(members: Iterable[MemberView], seeds: Iterable[str]) -> list[Manifest]:
    """The alive members' manifests that claim one of the join seeds' addresses."""
    seeds = set(seeds)
    return [m.manifest for m in members if m.state == "alive" and m.address in seeds]


def first_voter_set(anchors: Iterable[Manifest]) -> VoterSet | None:
    """The set a node that holds none yet starts from: the one its join seeds announce.

    The seeds are the peers the operator named (the join token), so their own signed
    manifests are the trust anchor, where any set a key holder announces checks out against
    itself. None unless every anchor announces the same non-empty set: a key holder that
    claims a seed's address can delay a joiner that way, not mislead it.
    """
    announced = {(tuple(sorted(m.voters)), m.voters_version) for m in anchors}
    if len(announced) != 1:
        return None
    voters, version = announced.pop()
    return VoterSet(voters, version) if voters else None


def authorised(current: VoterSet, manifest: Manifest, notary: Notary) -> bool:
    """Whether `manifest` may move a node holding `current` to the newer set it announces.

    Only the manifest of the winner of its current term counts (it may have lost its lease
    since: the writer of a set that needs a new voter's ack loses it at once), its set
    written no later than that term, proven by a certificate checked against `current` (a node
    that holds no set yet and has no seed to start from checks it against the announced set
    itself: it has nothing else to trust).
    """
    version = manifest.voters_version
    if (version <= current.version or not manifest.voters or version[0] > manifest.term
            or version[1] > current.version[1] + MAX_CHANGE_STEP):
        return False
    judges = frozenset(current.voters or manifest.voters)
    return notary.proves(manifest.quorum, manifest.term, manifest.node_id, judges)


def adopt_voters(election: Election, voter_set: VoterSet, rng: random.Random) -> Election:
    """The election core to run under `voter_set` (newer than the one `election` holds).

    One voter more or fewer: the core changes its set in place (`Election.set_voters`). More
    than one (we missed changes: a new node, a long partition): a fresh core on the new set. It
    keeps term and vote, and a fresh core withholds its vote for one election timeout as after
    a restart, so no promise the old one made can be broken.
    """
    voters = frozenset(voter_set.voters)
    if len(voters ^ election.voters) > 1:
        return Election(election.self_id, voters, election.config, rng,
                        (election.term, election.voted_for), voters_version=voter_set.version,
                        notary=election.notary, proven_term=election.proven_term)
    election.set_voters(voters, version=voter_set.version)
    return election
