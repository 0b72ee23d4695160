"""The cluster's shared keys: one signs, all installed ones verify, so a secret can be rotated.

Rotation without downtime, as in memberlist: `install` the new secret on every node, then `use`
it everywhere (nodes still accept the old one meanwhile), then `remove` the old one.

The HMAC keys are derived from each cluster secret with HKDF, one key per purpose, so a tag made
for one purpose (an envelope) can never be replayed as another (a blob request).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_SECRET_BYTES = 16
MAX_SECRET_BYTES = 64
# Every installed key is tried on each incoming message; a rotation needs two.
MAX_KEYS = 4
TAG_BYTES = 32

# HKDF `info` strings: one derived key per use of the cluster secret.
PURPOSE_ENVELOPE = b"ringrift-mesh v1 envelope"
PURPOSE_BLOB = b"ringrift-mesh v1 blob"
_PURPOSES = (PURPOSE_ENVELOPE, PURPOSE_BLOB)


class KeyringError(ValueError):
    """A secret that cannot be installed, used or removed."""


def _derive(secret: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(secret)


def _check_secret(secret: object) -> bytes:
    if type(secret) is not bytes or not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        size = len(secret) if isinstance(secret, (bytes, bytearray, str)) else "n/a"
        raise KeyringError(f"cluster secret must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, "
                           f"got {type(secret).__name__} of length {size}")
    return secret


class Keyring:
    """Installed cluster secrets, the primary first; tags with the primary, verifies with any."""

    __slots__ = ("_derived", "_secrets")

    def __init__(self, secrets: Iterable[bytes]) -> None:
        self._secrets: list[bytes] = []
        self._derived: dict[bytes, dict[bytes, bytes]] = {}
        for secret in secrets:
            self.install(secret)
        if not self._secrets:
            raise KeyringError("a keyring needs at least one cluster secret")

    @property
    def primary(self) -> bytes:
        return self._secrets[0]

    @property
    def secrets(self) -> tuple[bytes, ...]:
        """Installed secrets, the primary first (the order the data dir stores them in)."""
        return tuple(self._secrets)

    def install(self, secret: bytes) -> None:
        """Accept tags made with `secret`; the first secret installed becomes the primary."""
        secret = _check_secret(secret)
        if secret in self._derived:
            return
        if len(self._secrets) >= MAX_KEYS:
            raise KeyringError(f"keyring already holds {MAX_KEYS} secrets; remove one first")
        self._secrets.append(secret)
        self._derived[secret] = {p: _derive(secret, p) for p in _PURPOSES}

    def use(self, secret: bytes) -> None:
        """Make an installed secret the primary: tags are made with it from now on."""
        if secret not in self._derived:
            raise KeyringError("cannot use a secret that is not installed; install it first")
        self._secrets.remove(secret)
        self._secrets.insert(0, secret)

    def remove(self, secret: bytes) -> None:
        """Stop accepting `secret`; the primary cannot be removed (use another first)."""
        if secret not in self._derived:
            raise KeyringError("cannot remove a secret that is not installed")
        if secret == self._secrets[0]:
            raise KeyringError("cannot remove the primary secret; use another one first")
        self._secrets.remove(secret)
        del self._derived[secret]

    def tag(self, purpose: bytes, data: bytes) -> bytes:
        """HMAC-SHA256 of `data` under the primary secret's key for `purpose`."""
        return hmac.digest(self._derived[self._secrets[0]][purpose], data, hashlib.sha256)

    def verify(self, purpose: bytes, data: bytes, tag: bytes) -> bool:
        """Whether `tag` is the tag of `data` under any installed secret (constant-time compare)."""
        ok = False
        for secret in self._secrets:
            expected = hmac.digest(self._derived[secret][purpose], data, hashlib.sha256)
            ok |= hmac.compare_digest(expected, tag)
        return ok

    def __repr__(self) -> str:
        return f"Keyring({len(self._secrets)} secrets)"
