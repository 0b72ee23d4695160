"""Rows as they travel between stores: msgpack streams of wire rows, cut to a byte budget.

A store serves rows to a peer as one byte string: the msgpack encodings of their wire dicts,
one after the other. The SQLite stores keep each row's wire dict already encoded (`body`, and
a game's moves apart as their own encoded list, `tables.py`), so serving rows is reading them
and joining bytes: no row is decoded or encoded on the way out. The receiver decodes the
stream value by value (a count it was promised, no bytes left over) when the rows go to a
merge, and validates each row as it would a local one.

Rows are also served by key-hash range, for a puller that holds nothing there: sub-bucket ids
(the top 16 bits of the key hash, `storage.digests.SUBS_PER_BUCKET`) name the range, and a
range is walked in the order SQLite keeps it: the key hash as a signed 64-bit int, then the key.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgpack
import numpy as np

from storage.digests import NUM_SUBS, key_hashes

_SUB_SHIFT = 64 - 16  # a sub-bucket is the top 16 bits of the key hash
_TOP = 1 << 64


class BadStream(ValueError):
    """A row stream that does not hold the promised number of msgpack values."""


def sub_ranges(first: int, last: int) -> list[tuple[int, int]]:
    """Inclusive signed key-hash intervals covering sub-buckets `first..last`, in the order
    SQLite walks them (the upper half of the unsigned hashes is negative, so it comes first)."""
    if not 0 <= first <= last < NUM_SUBS:
        raise ValueError(f"sub-bucket range {first!r}..{last!r}: expected 0 <= first <= last "
                         f"< {NUM_SUBS}")
    lo, hi = first << _SUB_SHIFT, ((last + 1) << _SUB_SHIFT) - 1
    half = 1 << 63
    if hi < half:
        return [(lo, hi)]
    if lo >= half:
        return [(lo - _TOP, hi - _TOP)]
    return [(-half, hi - _TOP), (lo, half - 1)]


def order_keys(keys: Sequence[str]) -> list[tuple[int, str]]:
    """(signed key hash, key) of each key: the order rows of a range are served in."""
    return list(zip(key_hashes(keys).view(np.int64).tolist(), keys, strict=True))


def within_budget(sizes: Sequence[int], budget: int) -> int:
    """How many leading rows of these sizes fit in `budget` bytes; at least one, so that a row
    larger than the budget still travels (alone)."""
    used = 0
    for n, size in enumerate(sizes):
        used += size
        if used > budget and n:
            return n
    return len(sizes)


def with_field(body: bytes, name: bytes, value: bytes) -> bytes:
    """A msgpack map (`body`) with one more entry: `name` (an encoded key) -> `value` (an
    encoded value). Byte surgery on the map header, so neither part is decoded."""
    head = body[0]
    if 0x80 <= head <= 0x8F:
        count, rest = head & 0x0F, body[1:]
    elif head == 0xDE:
        count, rest = int.from_bytes(body[1:3], "big"), body[3:]
    elif head == 0xDF:
        count, rest = int.from_bytes(body[1:5], "big"), body[5:]
    else:
        raise ValueError(f"stored body starts with byte {head:#x}, not a msgpack map header")
    count += 1
    if count <= 0x0F:
        header = bytes((0x80 | count,))
    elif count <= 0xFFFF:
        header = b"\xde" + count.to_bytes(2, "big")
    else:
        header = b"\xdf" + count.to_bytes(4, "big")
    return header + rest + name + value


_MAP_HEADS = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def malformed(parts: Sequence[bytes]) -> list[int]:
    """Indexes of the encodings that are not exactly one msgpack map.

    A structural walk in C (nothing is decoded into objects), over the parts joined: what a
    server checks of the stored rows it sends, so that one damaged on disk is not passed on.
    """
    unpacker = msgpack.Unpacker(max_buffer_size=sum(map(len, parts)) or 1)
    unpacker.feed(b"".join(parts))
    end = 0
    try:
        for part in parts:
            end += len(part)
            if not part or part[0] not in _MAP_HEADS:
                break
            unpacker.skip()
            if unpacker.tell() != end:
                break
        else:
            return []
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
        pass
    return [i for i, part in enumerate(parts) if not _one_map(part)]


def _one_map(part: bytes) -> bool:
    if not part or part[0] not in _MAP_HEADS:
        return False
    unpacker = msgpack.Unpacker(max_buffer_size=len(part))
    unpacker.feed(part)
    try:
        unpacker.skip()
    except (ValueError, msgpack.UnpackException, msgpack.OutOfData):
        return False
    return unpacker.tell() == len(part)


def unpack_stream(data: bytes, count: int) -> list[object]:
    """The `count` msgpack values of a row stream; raises BadStream when the stream is not
    exactly that (garbage, cut short, or trailing bytes).

    Rows that decode but are not rows of their kind are the store's to refuse and count.
    """
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=len(data) or 1)
    unpacker.feed(data)
    rows: list[object] = []
    try:
        for _ in range(count):
            rows.append(unpacker.unpack())
    except msgpack.OutOfData:
        raise BadStream(f"row stream of {len(data)} bytes ends after {len(rows)} of {count} "
                        "rows") from None
    except (ValueError, TypeError, msgpack.UnpackException) as exc:
        raise BadStream(f"row {len(rows)} of a stream of {count} is not msgpack "
                        f"({type(exc).__name__})") from None
    if unpacker.tell() != len(data):
        raise BadStream(f"row stream holds {len(data) - unpacker.tell()} bytes after its "
                        f"{count} rows")
    return rows


def pack_rows(rows: Sequence[object]) -> bytes:
    """The stream of rows given as wire dicts (stores that keep rows decoded: the simulator)."""
    pack = msgpack.Packer(use_bin_type=True).pack
    return b"".join(map(pack, rows))
