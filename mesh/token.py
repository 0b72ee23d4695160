"""Join tokens: everything a new node needs to enter a cluster, as one copy-pasteable string.

A token holds the cluster id, the cluster secret and the address of the node that issued it.
Anyone holding it can join, so it is as secret as the cluster secret itself. The text is
`rrn1.` + base64url(msgpack [cluster_id, secret, address, check]) where `check` is the first
4 bytes of sha256 over the three fields: a truncated or mistyped paste fails with a clear error
instead of yielding a wrong secret.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass

import msgpack

from mesh.keyring import MAX_SECRET_BYTES, MIN_SECRET_BYTES
from mesh.manifest import is_address

PREFIX = "rrn1."
MAX_TOKEN_CHARS = 1024
_CLUSTER_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_CHECK_BYTES = 4


class TokenError(ValueError):
    """A join token that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True, slots=True)
class JoinToken:
    cluster_id: str
    secret: bytes
    address: str

    def __repr__(self) -> str:
        # Never the secret: reprs end up in logs.
        return f"JoinToken(cluster_id={self.cluster_id!r}, address={self.address!r})"


def make_token(cluster_id: str, secret: bytes, address: str) -> str:
    """The join token for `cluster_id` and `secret`, pointing at the issuer's `address`."""
    token = _validated(cluster_id, secret, address)
    fields = [token.cluster_id, token.secret, token.address]
    payload = msgpack.packb([*fields, _check(fields)], use_bin_type=True)
    return PREFIX + base64.urlsafe_b64encode(payload).rstrip(b"=").decode("ascii")


def parse_token(text: str) -> JoinToken:
    """Decode a token printed by `make_token`; raises TokenError naming the problem."""
    if type(text) is not str:
        raise TokenError(f"join token must be text, got {type(text).__name__}")
    text = text.strip()
    if len(text) > MAX_TOKEN_CHARS:
        raise TokenError(f"join token is {len(text)} characters; a real one is under "
                         f"{MAX_TOKEN_CHARS}")
    if not text.startswith(PREFIX):
        raise TokenError(f"join token must start with {PREFIX!r} (got {text[:8]!r}...); "
                         "copy the whole token printed by `ringrift-node init`")
    encoded = text[len(PREFIX):]
    try:
        payload = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
        fields = msgpack.unpackb(payload, raw=False)
    except (binascii.Error, ValueError, msgpack.UnpackException):
        raise TokenError("join token is damaged (not valid base64url/msgpack); "
                         "copy it again in full") from None
    if type(fields) is not list or len(fields) != 4:
        raise TokenError("join token has the wrong layout; it may come from another version")
    cluster_id, secret, address, check = fields
    if type(check) is not bytes or check != _check([cluster_id, secret, address]):
        raise TokenError("join token checksum does not match; it was altered or mistyped")
    return _validated(cluster_id, secret, address)


def _check(fields: list[object]) -> bytes:
    return hashlib.sha256(msgpack.packb(fields, use_bin_type=True)).digest()[:_CHECK_BYTES]


def _validated(cluster_id: object, secret: object, address: object) -> JoinToken:
    if type(cluster_id) is not str or not _CLUSTER_ID.fullmatch(cluster_id):
        raise TokenError(f"cluster id {cluster_id!r}: expected 1..64 characters of "
                         "letters, digits, '_' or '-'")
    if type(secret) is not bytes or not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise TokenError(f"cluster secret: expected {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, "
                         f"got {type(secret).__name__}")
    if not is_address(address):
        raise TokenError(f"address {address!r}: expected host:port with port in 1..65535")
    return JoinToken(cluster_id, secret, address)

