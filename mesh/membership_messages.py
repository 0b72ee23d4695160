"""The membership messages (`swim.*`): probes, gossip and push-pull state exchange.

Every message may carry `Update`s: one node's membership state as the sender sees it.
An alive update must carry the node's own signed manifest, whose `(incarnation, seq)`
travels beside it in the clear (`version`) so a receiver verifies the signature only
when the manifest is newer than the one it holds; a relay cannot forge an alive claim
(only the node can sign a higher incarnation), while suspect, dead and left claims are
statements about a node by its peers, as in SWIM.

`__post_init__` checks what the codec's field metadata cannot say, so a body that
breaks these rules is refused while decoding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from mesh import codec
from mesh.manifest import SignedManifest

State = Literal["alive", "suspect", "dead", "left"]
STATES: tuple[str, ...] = ("alive", "suspect", "dead", "left")

_MAX_U64 = (1 << 64) - 1
# Node ids are 32 hex characters (mesh.identity).
_NODE_ID_LEN = 32
# Updates in one gossip message: the sender stops at a byte budget long before this
# (MembershipConfig.gossip_max_bytes); this only bounds what a hostile peer can send.
MAX_UPDATES = 256
# Members one push-pull digest or wanted list may name: far above the clusters this
# mesh is for (hundreds of nodes), and 4096 digest rows stay under ~300 KB.
MAX_MEMBERS = 4096
# A suspicion older than a day is nonsense; the bound keeps the float finite and sane.
MAX_SUSPECTED_FOR_S = 86_400.0


@dataclass(frozen=True, slots=True)
class Update:
    """What the sender believes about one node."""

    node_id: str = field(metadata={"max_len": _NODE_ID_LEN})
    state: State
    incarnation: int = field(metadata={"min": 0, "max": _MAX_U64})
    manifest: SignedManifest | None = None
    # (incarnation, seq) of `manifest`; checked against the manifest once it is opened.
    version: tuple[int, int] = field(default=(0, 0), metadata={"min": 0, "max": _MAX_U64})
    # Seconds the sender has already held this node suspect, so every node's suspicion
    # timer runs out at about the same moment instead of one gossip hop later each.
    suspected_for: float = field(default=0.0, metadata={"min": 0.0, "max": MAX_SUSPECTED_FOR_S})
    # Suspect updates: a node whose own probe failed (the first suspector or a confirmer).
    # Independent confirmations shorten the suspicion timeout (Lifeguard, see membership).
    by: str = field(default="", metadata={"max_len": _NODE_ID_LEN})

    def __post_init__(self) -> None:
        if self.state == "alive":
            if self.manifest is None:
                raise ValueError(f"alive update of {self.node_id}: the node's signed manifest "
                                 "is required")
            if self.incarnation != self.version[0]:
                raise ValueError(f"alive update of {self.node_id}: incarnation "
                                 f"{self.incarnation} differs from the manifest's "
                                 f"{self.version[0]}")
        if not math.isfinite(self.suspected_for) or self.suspected_for < 0:
            raise ValueError(f"suspected_for {self.suspected_for!r}: expected a finite number "
                             ">= 0")


# One push-pull digest row: (node_id, state, incarnation, manifest incarnation, manifest seq).
# A tuple, not a dataclass, because at hundreds of rows the field names would double the size.
DigestRow = tuple[str, State, int, int, int]


@codec.message("swim.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    """Are you alive? Answer with `Ack(seq)`."""

    seq: int = field(metadata={"min": 0, "max": _MAX_U64})
    updates: list[Update] = field(default_factory=list, metadata={"max_len": MAX_UPDATES})
    # The sender's view hash (XOR of its members' digests; 0: not given): a receiver whose
    # hash keeps differing from its peers' has missed news and pulls it.
    view: int = field(default=0, metadata={"min": 0, "max": _MAX_U64})


@codec.message("swim.ack")
@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to `Ping(seq)`, or relayed by a helper for an indirect probe."""

    seq: int = field(metadata={"min": 0, "max": _MAX_U64})
    updates: list[Update] = field(default_factory=list, metadata={"max_len": MAX_UPDATES})
    view: int = field(default=0, metadata={"min": 0, "max": _MAX_U64})  # as in Ping


@codec.message("swim.ping_req")
@dataclass(frozen=True, slots=True)
class PingReq:
    """Probe `target` for me and send me `Ack(seq)` if it answers (indirect probe)."""

    seq: int = field(metadata={"min": 0, "max": _MAX_U64})
    target: str = field(metadata={"max_len": _NODE_ID_LEN})


@codec.message("swim.gossip")
@dataclass(frozen=True, slots=True)
class Gossip:
    """Piggybacked updates, pushed to `fanout` random peers each gossip interval."""

    updates: list[Update] = field(metadata={"max_len": MAX_UPDATES})


@codec.message("swim.sync")
@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Push-pull, first half: what I hold (digest) plus my own alive update.

    Also the join message: a seed learns the joiner (and its address) from `updates`.
    """

    digest: list[DigestRow] = field(metadata={"max_len": MAX_MEMBERS})
    updates: list[Update] = field(default_factory=list, metadata={"max_len": MAX_UPDATES})


@codec.message("swim.sync_reply")
@dataclass(frozen=True, slots=True)
class SyncReply:
    """Push-pull, second half: the updates you lack, and the nodes I want yours of.

    A reply larger than one message goes out as several; `wanted` rides on the first.
    """

    updates: list[Update] = field(metadata={"max_len": MAX_UPDATES})
    wanted: list[str] = field(default_factory=list,
                              metadata={"max_len": MAX_MEMBERS, "item_max_len": _NODE_ID_LEN})
