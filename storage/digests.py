"""Bucket digests for anti-entropy: 256 XOR-folded 64-bit row hashes and a root over them.

Every row contributes `row_hash(key, version)` to the bucket `key_bucket(key)`. XOR makes the
digest order-free and incrementally updatable: replacing a row XORs its old hash out and its
new hash in (the same operation). Two stores with equal roots hold the same (key, version)
set with overwhelming probability; differing buckets say where to look.

The hash is a 64-bit multiply-xorshift (murmur3's finaliser applied word by word) computed with
numpy over whole batches, because the import path hashes every incoming row and the
from-scratch recompute hashes millions. It is not Python's `hash` (salted per process) and does
not depend on the platform's byte order. It is not meant to resist a forger: rows only arrive
from authenticated cluster members.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

NUM_BUCKETS = 256
ROOT_BYTES = 16
# Each bucket splits into 256 sub-buckets by the next byte of the key hash; a sub-bucket id is
# bucket * 256 + sub (the top 16 bits of the key hash). Large stores compare sub-digests of the
# differing buckets before listing entries, so a few new rows in a million-row store cost a few
# KB instead of whole bucket listings.
SUBS_PER_BUCKET = 256
NUM_SUBS = NUM_BUCKETS * SUBS_PER_BUCKET

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_KEY_SEED = np.uint64(0x6B6579)  # "key"
_VERSION_SEED = np.uint64(0x76657273696F6E)  # "version"
_S33 = np.uint64(33)
_S56 = np.uint64(56)
_S48 = np.uint64(48)


def _fmix(h: np.ndarray) -> np.ndarray:
    h = h ^ (h >> _S33)
    h = h * _M1
    h = h ^ (h >> _S33)
    h = h * _M2
    return h ^ (h >> _S33)


def hash_bytes(items: Sequence[bytes], seed: np.uint64 = _KEY_SEED) -> np.ndarray:
    """64-bit hashes (uint64 array) of byte strings; equal input gives equal output in any batch."""
    n = len(items)
    if n == 0:
        return np.zeros(0, dtype=np.uint64)
    lengths = np.fromiter(map(len, items), dtype=np.int64, count=n)
    words_per_item = (lengths + 7) // 8
    width = max(int(words_per_item.max()), 1)
    padded = np.array(items, dtype=f"S{width * 8}")
    words = padded.view("<u8").reshape(n, width)
    h = _fmix(lengths.astype(np.uint64) * _GOLDEN ^ seed)
    uniform = bool((words_per_item == width).all())
    for j in range(width):
        mixed = _fmix(h ^ words[:, j])
        # An item stops at its own last word, so its hash does not depend on the batch's width.
        h = mixed if uniform else np.where(words_per_item > j, mixed, h)
    return h


def key_hashes(keys: Sequence[str]) -> np.ndarray:
    """64-bit hashes (uint64 array) of keys; a key's bucket is its hash's top byte."""
    return hash_bytes(list(map(str.encode, keys)), _KEY_SEED)


def row_hashes(
    hashed_keys: np.ndarray, versions: Sequence[bytes]
) -> tuple[np.ndarray, np.ndarray]:
    """hash_rows for keys already hashed with `key_hashes`."""
    if len(hashed_keys) != len(versions):
        raise ValueError(f"{len(hashed_keys)} keys but {len(versions)} versions")
    hashed_keys = np.asarray(hashed_keys, dtype=np.uint64)
    version_hashes = hash_bytes(versions, _VERSION_SEED)
    buckets = (hashed_keys >> _S56).astype(np.intp)
    return buckets, _fmix(hashed_keys + _fmix(version_hashes ^ _GOLDEN))


def hash_rows(keys: Sequence[str], versions: Sequence[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """(bucket per row as intp array, row hash per row as uint64 array) for (key, version) pairs."""
    if len(keys) != len(versions):
        raise ValueError(f"{len(keys)} keys but {len(versions)} versions")
    return row_hashes(key_hashes(keys), versions)


def bucket_ranges(buckets: Sequence[int]) -> list[tuple[int, int]]:
    """Inclusive ranges of key hashes, as signed 64-bit ints (SQLite's INTEGER), that cover
    exactly the given buckets: runs of consecutive buckets are merged into one range."""
    ranges: list[tuple[int, int]] = []
    for b in sorted(set(buckets)):
        lo, hi = b << 56, ((b + 1) << 56) - 1
        if b >= NUM_BUCKETS // 2:  # the upper half of uint64 is negative as int64
            lo, hi = lo - (1 << 64), hi - (1 << 64)
        if ranges and ranges[-1][1] + 1 == lo:
            ranges[-1] = (ranges[-1][0], hi)
        else:
            ranges.append((lo, hi))
    return ranges


def key_bucket(key: str) -> int:
    """The bucket (0..255) a key's rows fold into."""
    return int(hash_bytes([key.encode()], _KEY_SEED)[0] >> _S56)


def key_buckets(keys: Sequence[str]) -> list[int]:
    """Buckets of many keys at once."""
    return (hash_bytes([k.encode() for k in keys], _KEY_SEED) >> _S56).astype(np.intp).tolist()


def row_hash(key: str, version: bytes) -> int:
    """The 64-bit hash one (key, version) row contributes to its bucket."""
    return int(hash_rows([key], [version])[1][0])


class Digests:
    """The 256 bucket digests of one store, updated in place as rows come and go."""

    __slots__ = ("_values",)

    def __init__(self) -> None:
        self._values = np.zeros(NUM_BUCKETS, dtype=np.uint64)

    @classmethod
    def from_hashes(cls, buckets: np.ndarray, hashes: np.ndarray) -> Digests:
        """Digests of a whole store from its rows' buckets and hashes (a from-scratch recompute)."""
        digests = cls()
        digests.toggle(buckets, hashes)
        return digests

    def toggle(self, buckets: np.ndarray, hashes: np.ndarray) -> None:
        """XOR row hashes into their buckets: adds absent rows, removes present ones."""
        if len(buckets):
            np.bitwise_xor.at(self._values, np.asarray(buckets, dtype=np.intp), hashes)

    def as_list(self) -> list[int]:
        """The 256 digests as plain ints (the wire form)."""
        return self._values.tolist()

    def root(self) -> bytes:
        """A 16-byte hash over all buckets: equal roots mean equal bucket digests."""
        data = self._values.astype("<u8").tobytes()
        return hashlib.blake2b(data, digest_size=ROOT_BYTES).digest()

    def root_hex(self) -> str:
        return self.root().hex()

    def copy(self) -> Digests:
        other = Digests()
        other._values = self._values.copy()
        return other

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Digests) and bool((self._values == other._values).all())

    def __repr__(self) -> str:
        return f"Digests(root={self.root_hex()})"


def differing_buckets(mine: Sequence[int], theirs: Sequence[int]) -> list[int]:
    """Indexes of buckets whose digests differ (both lists must hold NUM_BUCKETS ints)."""
    if len(mine) != NUM_BUCKETS or len(theirs) != NUM_BUCKETS:
        raise ValueError(
            f"bucket digest lists must hold {NUM_BUCKETS} values, got {len(mine)} and {len(theirs)}"
        )
    return [i for i in range(NUM_BUCKETS) if mine[i] != theirs[i]]


def sub_bucket_ids(keys: Sequence[str]) -> np.ndarray:
    """Sub-bucket id (bucket * 256 + next byte: the top 16 bits of the key hash) of each key."""
    return (key_hashes(keys) >> _S48).astype(np.intp)


def sub_digests(entries: Sequence[tuple[str, bytes]], buckets: Sequence[int]) -> list[int]:
    """The 256 sub-bucket digests of each of `buckets` (in that order) over `entries`.

    A sub-digest XORs the same row hashes as its bucket's digest, so the 256 sub-digests of a
    bucket XOR to the bucket digest.
    """
    out = np.zeros(len(buckets) * SUBS_PER_BUCKET, dtype=np.uint64)
    if entries:
        keys = [k for k, _ in entries]
        _, hashes = hash_rows(keys, [v for _, v in entries])
        subs = sub_bucket_ids(keys)
        slot = np.full(NUM_BUCKETS, -1, dtype=np.intp)
        slot[np.asarray(buckets, dtype=np.intp)] = np.arange(len(buckets))
        base = slot[subs // SUBS_PER_BUCKET]
        inside = base >= 0  # a store answering for other buckets too: those rows are ignored
        np.bitwise_xor.at(out, base[inside] * SUBS_PER_BUCKET + subs[inside] % SUBS_PER_BUCKET,
                          hashes[inside])
    return out.tolist()
