"""A node's manifest: who it is, what it can do, what it holds and who it thinks leads.

A node signs its own manifest with its Ed25519 key. What travels is `SignedManifest`: the exact
msgpack bytes of the manifest plus the signature, so any peer can relay it unchanged and every
receiver verifies it against the public key inside, whose hash must be the node id. A relaying
peer therefore cannot alter or forge another node's manifest.

Freshness is `(incarnation, seq)`: incarnation rises when the node restarts or refutes a
suspicion, seq with every change within one incarnation.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

import msgpack

from mesh import codec
from mesh.identity import Identity, is_node_id, node_id_for, verify_signature
from mesh.quorum import ENDORSEMENT_BYTES, MAX_QUORUM

State = Literal["idle", "selfplay", "training", "evaluating"]
STATES: tuple[str, ...] = ("idle", "selfplay", "training", "evaluating")

# A typical manifest (three stores with 128-bit roots, IPv4 address) encodes to about 360 bytes,
# about 440 signed; one with an IPv6 address and four stores to about 560 signed (tested). A
# leader's lease announcement adds its quorum certificate: about 130 bytes per endorsement, 3 of
# them for a 5-voter set (930 bytes signed, `python -m tools.bench signatures`). The worst case,
# every number at its maximum and a 253-character host name, is 1309 bytes (tested); the cap
# leaves room for that without letting gossip grow.
MAX_MANIFEST_BYTES = 1536
# Stores are few and named by the code (games, matches, models); a peer cannot invent many.
MAX_STORES = 8
# Most voters a cluster has (the one cap: config, the voter set, the wire). Raft-class clusters
# use 3 or 5 voters: more voters make every election and lease renewal wait for more acks
# without tolerating a failure that matters at this scale.
MAX_VOTERS = 5

_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_ADDRESS = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):([0-9]{1,5})")
# A DNS name is at most 253 characters; brackets, colon and port fit in the rest.
MAX_ADDRESS_CHARS = 261
_MAX_U64 = (1 << 64) - 1


class ManifestError(ValueError):
    """A signed manifest that does not decode, does not verify, or claims a false node id."""


@codec.positional
@dataclass(frozen=True, slots=True)
class StoreSummary:
    """Row count and root digest of one store: equal roots mean nothing to pull."""

    count: int = field(metadata={"min": 0})
    root: str = field(metadata={"max_len": 32})  # hex of a digest of at most 128 bits


@codec.message("manifest")
@codec.positional
@dataclass(frozen=True, slots=True)
class Manifest:
    """What one node says about itself, encoded positionally.

    It rides on most gossip messages and field names were a third of its bytes, so it travels
    as a list: field order is part of the protocol, and new fields go at the end with a default.
    """

    node_id: str = field(metadata={"max_len": 32})
    public_key: bytes = field(metadata={"max_len": 32})
    address: str = field(metadata={"max_len": MAX_ADDRESS_CHARS})  # see is_address
    version: str = field(metadata={"max_len": 32})
    incarnation: int = field(metadata={"min": 0, "max": _MAX_U64})
    seq: int = field(metadata={"min": 0, "max": _MAX_U64})
    device: str = field(metadata={"max_len": 16})  # "cpu", "cuda", "mps"
    device_mem_mb: int = field(metadata={"min": 0, "max": 1 << 32})
    cores: int = field(metadata={"min": 0, "max": 1 << 16})
    state: State
    stores: dict[str, StoreSummary] = field(metadata={"max_len": MAX_STORES, "key_max_len": 32})
    production_model: str | None = field(metadata={"max_len": 64})
    leader: str | None = field(metadata={"max_len": 32})
    term: int = field(metadata={"min": 0, "max": _MAX_U64})
    lease_until_ms: int = field(metadata={"min": 0, "max": _MAX_U64})
    # The voter set its author holds, versioned (term, change) (mesh/voters.py): every node
    # adopts the newest set it sees in any manifest.
    voters: tuple[str, ...] = field(default=(), metadata={"max_len": MAX_VOTERS,
                                                                 "item_max_len": 32})
    voters_version: tuple[int, int] = field(default=(0, 0), metadata={"min": 0, "max": _MAX_U64})
    # Set by a node started with `join --voter` until the leader has added it to the voters.
    wants_voter: bool = False
    # With a lease announcement (leader == node_id): the quorum certificate of its election
    # for `term` (mesh/quorum.py), so that every node, voter or not, can check it won.
    quorum: dict[str, bytes] = field(default_factory=dict, metadata={
        "max_len": MAX_QUORUM, "key_max_len": 32, "item_max_len": ENDORSEMENT_BYTES})

    def __post_init__(self) -> None:
        if not all(is_node_id(v) for v in self.voters):
            raise ValueError(f"voters {self.voters!r}: expected node ids")
        if not is_node_id(self.node_id):
            raise ValueError(f"node_id {self.node_id!r}: expected 32 lowercase hex characters")
        if self.leader is not None and not is_node_id(self.leader):
            raise ValueError(f"leader {self.leader!r}: expected a node id or None")
        if self.production_model is not None and not _SHA256_HEX.fullmatch(
                self.production_model):
            raise ValueError(f"production_model {self.production_model!r}: expected a sha256 "
                             "as 64 lowercase hex characters or None")
        if len(self.public_key) != 32:
            raise ValueError(f"public_key: expected 32 bytes, got {len(self.public_key)}")
        _check_address(self.address)

    @property
    def freshness(self) -> tuple[int, int]:
        """Order of two manifests from the same node: the larger one replaces the smaller."""
        return (self.incarnation, self.seq)


@dataclass(frozen=True, slots=True)
class SignedManifest:
    """A manifest's exact encoded bytes and its author's signature over them."""

    body: bytes = field(metadata={"max_len": MAX_MANIFEST_BYTES})
    sig: bytes = field(metadata={"max_len": 64})


def encode_manifest(manifest: Manifest) -> bytes:
    data = msgpack.packb(codec.to_body(manifest), use_bin_type=True)
    if len(data) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest of {manifest.node_id} encodes to {len(data)} bytes; "
                            f"the limit is {MAX_MANIFEST_BYTES}")
    return data


def sign_manifest(identity: Identity, manifest: Manifest) -> SignedManifest:
    """Sign `manifest`, which must describe `identity` itself."""
    if manifest.node_id != identity.node_id or manifest.public_key != identity.public_key:
        raise ManifestError(f"identity {identity.node_id} cannot sign the manifest of "
                            f"{manifest.node_id}: a node signs only its own manifest")
    body = encode_manifest(manifest)
    return SignedManifest(body=body, sig=identity.sign(body))


def open_manifest(signed: SignedManifest) -> Manifest:
    """Decode and verify a signed manifest; raises ManifestError naming what is wrong."""
    if type(signed.body) is not bytes or len(signed.body) > MAX_MANIFEST_BYTES:
        raise ManifestError(f"manifest body must be bytes of at most {MAX_MANIFEST_BYTES}, "
                            f"got {type(signed.body).__name__} of {_size(signed.body)}")
    try:
        raw = msgpack.unpackb(signed.body, raw=False, strict_map_key=True)
    except (ValueError, msgpack.UnpackException) as err:
        raise ManifestError(f"manifest body is not msgpack ({err})") from None
    try:
        manifest: Manifest = codec.from_body("manifest", raw)
    except codec.DecodeError as err:
        raise ManifestError(str(err)) from None
    if node_id_for(manifest.public_key) != manifest.node_id:
        raise ManifestError(f"manifest claims node id {manifest.node_id} but its public key "
                            f"belongs to {node_id_for(manifest.public_key)}")
    if not verify_signature(manifest.public_key, signed.sig, signed.body):
        raise ManifestError(f"manifest of {manifest.node_id}: bad signature")
    return manifest


def is_address(text: object) -> bool:
    """Whether `text` is a peer address: `host:port` or `[IPv6]:port`, port in 1..65535.

    Addresses come from peers and end up in URLs, so nothing but a host name or IP literal and
    a port may pass: no path, credentials, scheme or whitespace.
    """
    if type(text) is not str or len(text) > MAX_ADDRESS_CHARS:
        return False
    match = _ADDRESS.fullmatch(text)
    return match is not None and 0 < int(match.group(2)) < 65536


def _check_address(address: str) -> None:
    if not is_address(address):
        raise ValueError(f"address {address!r}: expected host:port (IPv6 as [addr]:port) "
                         "with port in 1..65535")


def _size(value: object) -> str:
    try:
        return f"{len(value)} bytes"  # type: ignore[arg-type]
    except TypeError:
        return "unknown size"
