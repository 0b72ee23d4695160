"""The voter set: which nodes elect the leader, and how it grows one voter at a time.

The set is a last-writer-wins register versioned `(term, change)`: only a leader holding its
lease writes it, stamping its own term, so a deposed leader's write always loses to its
successor's. Every manifest carries the set its author holds; nodes adopt the newest version
they see. Changes go one voter at a time (any majority of the old set then overlaps any majority
of the new one), and the next change waits until a majority of the current voters announce the
current version: Raft's rule that a configuration must be committed before the next one starts.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from mesh.election import Election
from mesh.identity import is_node_id
from mesh.manifest import MAX_VOTERS
from mesh.membership import MemberView


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
                        (election.term, election.voted_for), voters_version=voter_set.version)
    election.set_voters(voters, version=voter_set.version)
    return election
