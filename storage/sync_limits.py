"""The contract of the sync calls every store offers, and of the node-state table.

Arguments of `bucket_entries` and `rows` come from peers, so both store kinds check them here
with the same bounds and messages.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack

from storage.digests import NUM_BUCKETS

STORE_NAMES = ("games", "matches", "models")
MAX_KEYS_PER_CALL = 10_000  # rows() batches: bounded so one request cannot pin a node
MAX_KEY_CHARS = 256
MAX_STATE_KEY_CHARS = 128
MAX_STATE_VALUE_BYTES = 1 << 20


def check_bucket_list(buckets: Sequence[int]) -> None:
    if len(buckets) > NUM_BUCKETS:
        raise ValueError(f"{len(buckets)} buckets requested, expected at most {NUM_BUCKETS}")
    for b in buckets:
        if type(b) is not int or not 0 <= b < NUM_BUCKETS:
            raise ValueError(f"bucket {b!r} is not an int in 0..{NUM_BUCKETS - 1}")


def check_key_list(keys: Sequence[str]) -> None:
    if len(keys) > MAX_KEYS_PER_CALL:
        raise ValueError(f"{len(keys)} keys requested, expected at most {MAX_KEYS_PER_CALL}")
    for k in keys:
        if type(k) is not str or len(k) > MAX_KEY_CHARS:
            raise ValueError(f"key {k!r:.80} is not a string of at most {MAX_KEY_CHARS} chars")


def check_state_key(key: str) -> str:
    if type(key) is not str or not 0 < len(key) <= MAX_STATE_KEY_CHARS:
        raise ValueError(f"state key {key!r:.80} is not a string of 1..{MAX_STATE_KEY_CHARS} chars")
    return key


def encode_state(value: object) -> bytes:
    """The stored form of a node-state value (any msgpack-able value up to 1 MiB)."""
    try:
        packed = msgpack.packb(value, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"state value {value!r:.80} is not msgpack-encodable: {exc}") from None
    if len(packed) > MAX_STATE_VALUE_BYTES:
        raise ValueError(f"state value is {len(packed)} bytes, expected <= {MAX_STATE_VALUE_BYTES}")
    return packed


def decode_state(packed: bytes) -> object:
    return msgpack.unpackb(packed, raw=False, strict_map_key=False)
