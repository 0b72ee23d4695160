"""Deterministic node identities for tests: every mesh message is signed by its sender's key,
so a test node needs a real key pair whose hash is its node id."""

from __future__ import annotations

import hashlib

from mesh.identity import Identity

_BY_ID: dict[str, Identity] = {}


def identity(name: str) -> Identity:
    """The same key pair for the same `name` in every test (seeded by its sha256)."""
    ident = Identity.from_seed(hashlib.sha256(name.encode()).digest())
    _BY_ID[ident.node_id] = ident
    return ident


def identity_of(node_id: str) -> Identity:
    """The identity a test created with `identity` whose node id is `node_id`."""
    return _BY_ID[node_id]
