"""Quorum certificates: a leader's proof, checkable by any node, that a majority elected it.

A voter that grants its vote in term T to candidate C signs the statement "vote T C" with its
node key and hands the *endorsement* (its public key and that signature) back in its reply. A
candidate that gathers a majority keeps those endorsements as its certificate and shows it with
every heartbeat and in its manifest's lease announcement. Any node, voter or not, then checks
the certificate against the voter set it holds: a majority of distinct voters, each endorsement
signed by the key whose hash is that voter's id. A key holder that is not elected can mint ids,
but no ids that a majority of the voter set endorsed for it, so it cannot pose as a leader.

`Notary` is the one place that signs and checks endorsements; the election core takes one, so
the core stays deterministic and free of I/O (Ed25519 signing is a pure function of the key).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import msgpack

from mesh.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, node_id_for, \
    verify_signature

ENDORSEMENT_BYTES = PUBLIC_KEY_BYTES + SIGNATURE_BYTES
# Endorsements one certificate may carry: every voter of the largest voter set (MAX_VOTERS in
# mesh/manifest.py, which imports this module); a leader sends only a majority of them.
MAX_QUORUM = 5
# What a vote signature covers starts with this, so it can never be taken for a signature of
# an envelope or a manifest.
_VOTE_DOMAIN = b"ringrift-mesh v1 vote\x00"


def vote_statement(term: int, candidate: str) -> bytes:
    """The exact bytes a voter signs when it votes for `candidate` in `term`."""
    return _VOTE_DOMAIN + msgpack.packb([term, candidate], use_bin_type=True)


class Notary:
    """Signs this node's votes and checks the endorsements of others.

    `id_of` maps a public key to the node id it stands for: `node_id_for` (the hash) on a real
    node, a directory in a simulation whose nodes have short readable ids.
    """

    __slots__ = ("_id_of", "_identity", "checked", "signed")

    def __init__(self, identity: Identity,
                 id_of: Callable[[bytes], str | None] = node_id_for) -> None:
        self._identity = identity
        self._id_of = id_of
        self.signed = 0
        self.checked = 0

    def endorse(self, term: int, candidate: str) -> bytes:
        """This node's endorsement of `candidate` in `term`: public key || signature."""
        self.signed += 1
        return self._identity.public_key + self._identity.sign(vote_statement(term, candidate))

    def check(self, voter: str, term: int, candidate: str, endorsement: bytes) -> bool:
        """Whether `endorsement` is `voter`'s signed vote for `candidate` in `term`."""
        if type(endorsement) is not bytes or len(endorsement) != ENDORSEMENT_BYTES:
            return False
        key, sig = endorsement[:PUBLIC_KEY_BYTES], endorsement[PUBLIC_KEY_BYTES:]
        if self._id_of(key) != voter:
            return False
        self.checked += 1
        return verify_signature(key, sig, vote_statement(term, candidate))

    def proves(self, quorum: Mapping[str, bytes], term: int, leader: str,
               voters: frozenset[str]) -> bool:
        """Whether `quorum` holds valid votes for `leader` in `term` from a majority of `voters`.

        Stops checking signatures once a majority is reached, and checks none when too few
        endorsements come from `voters` to make one.
        """
        if not voters:
            return False
        majority = len(voters) // 2 + 1
        named = [v for v in sorted(quorum) if v in voters]
        if len(named) < majority:
            return False
        valid = 0
        for voter in named:
            if self.check(voter, term, leader, quorum[voter]):
                valid += 1
                if valid >= majority:
                    return True
        return False
