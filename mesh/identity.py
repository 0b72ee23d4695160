"""A node's identity: an Ed25519 key pair, and the node id derived from its public key.

The node id is a hash of the public key, so nobody can claim an id without holding the matching
private key: a manifest signed by that key proves who wrote it, even when a third node relays it.
"""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from storage.files import atomic_write_bytes

PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
NODE_ID_HEX_CHARS = 32
# A PKCS#8 PEM Ed25519 key is about 120 bytes; anything far larger is not a key file.
_MAX_KEY_FILE_BYTES = 4096


class IdentityError(ValueError):
    """A key file or key that cannot serve as a node identity."""


def node_id_for(public_key: bytes) -> str:
    """First 16 bytes of sha256(public key) as 32 lowercase hex characters."""
    if type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES:
        raise IdentityError(f"public key must be {PUBLIC_KEY_BYTES} raw bytes, "
                            f"got {type(public_key).__name__} of length {_len(public_key)}")
    return hashlib.sha256(public_key).digest()[:NODE_ID_HEX_CHARS // 2].hex()


def is_node_id(text: object) -> bool:
    """Whether `text` has the shape of a node id (32 lowercase hex characters)."""
    return (type(text) is str and len(text) == NODE_ID_HEX_CHARS
            and all(c in "0123456789abcdef" for c in text))


def verify_signature(public_key: bytes, sig: bytes, data: bytes) -> bool:
    """True when `sig` is `public_key`'s Ed25519 signature of `data`; False for any bad input."""
    if (type(public_key) is not bytes or len(public_key) != PUBLIC_KEY_BYTES
            or type(sig) is not bytes or len(sig) != SIGNATURE_BYTES):
        return False
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(sig, data)
    except (InvalidSignature, ValueError):
        return False
    return True


class Identity:
    """An Ed25519 private key with its public key and node id."""

    __slots__ = ("_key", "node_id", "public_key")

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        self.public_key: bytes = key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self.node_id: str = node_id_for(self.public_key)

    @classmethod
    def generate(cls) -> Identity:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity for a 32-byte private seed (deterministic test and simulator nodes)."""
        if type(seed) is not bytes or len(seed) != 32:
            raise IdentityError(f"seed must be 32 bytes, got {type(seed).__name__} "
                                f"of length {_len(seed)}")
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def load(cls, path: Path) -> Identity:
        """Read a key written by `save`; refuses a file others can read, as ssh does."""
        path = Path(path)
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise IdentityError(f"{path}: mode {stat.S_IMODE(mode):o} lets other users read the "
                                "node key; expected 600 (chmod 600 it)")
        data = path.read_bytes()[:_MAX_KEY_FILE_BYTES + 1]
        if len(data) > _MAX_KEY_FILE_BYTES:
            raise IdentityError(f"{path}: over {_MAX_KEY_FILE_BYTES} bytes; not a node key file")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as err:
            raise IdentityError(f"{path}: not a PEM private key ({err})") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise IdentityError(f"{path}: holds a {type(key).__name__}; expected an Ed25519 key")
        return cls(key)

    def save(self, path: Path) -> None:
        """Write the private key as PKCS#8 PEM, mode 0600, atomically (never a torn key file)."""
        data = self._key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        atomic_write_bytes(Path(path), data, mode=0o600)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def __repr__(self) -> str:
        # Never the key itself: reprs end up in logs.
        return f"Identity(node_id={self.node_id!r})"


def _len(value: object) -> object:
    try:
        return len(value)  # type: ignore[arg-type]
    except TypeError:
        return "n/a"

