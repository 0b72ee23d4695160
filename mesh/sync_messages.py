"""The anti-entropy messages (`sync.*`): five request/reply pairs and a refusal.

A puller asks a peer for its 256 bucket digests of one store, then (large stores) for the
sub-bucket digests of the buckets that differ, then for the `(key, version)` entries of what
differs, then for the rows it lacks or holds older; and which of
the model blobs it lacks the peer holds (blobs themselves travel over the transport's blob
endpoint). Every request is a read, so repeating one is harmless (a shell may retry it).

Bounds are sized so that one reply stays well under a megabyte on the wire (see the per-constant
reasons); `__post_init__` checks what the codec's field metadata cannot say (bucket range,
strictly increasing entry keys), so a reply that breaks them is refused while decoding.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mesh import codec
from storage.digests import NUM_BUCKETS, NUM_SUBS, SUBS_PER_BUCKET
from storage.rows import MAX_GAME_BYTES

# Store names are short identifiers ("games", "matches", "models").
MAX_STORE_NAME = 32
# Row keys: a content hash in hex (64 chars) or a UUID, with room to spare.
MAX_KEY_LEN = 128
# Versions: 8-byte hybrid clock (+ term) + node id; 64 bytes leaves room and bounds a hostile one.
MAX_VERSION_LEN = 64
# Entries per reply: one entry is ~100 bytes encoded (64-char key, ~24-byte version, framing),
# so 2048 entries are ~200 KB: big enough that a 256-bucket diff of a 100k-row store takes a
# handful of round trips, small enough to stay far below the sync endpoint's body limit.
MAX_ENTRIES_PER_REPLY = 2048
# Buckets per sub-digests request: 16 * 256 digests of ~9 bytes each are ~37 KB a reply.
MAX_BUCKETS_PER_SUBDIGESTS = 16
# Keys per rows request: 2048 keys of 64 hex chars are ~140 KB, and the reply's byte budget
# (below) bounds what they fetch. Small requests cost a round trip each: at 64 keys a large
# first sync ran at ~2.4k rows/s, and at 512 it was still bound by round trips.
MAX_KEYS_PER_REQUEST = 2048
# Size budget (codec.Plain units: items + string/bytes lengths, never more than the msgpack
# bytes) of one row: whatever the storage accepts (a game's moves and targets up to
# MAX_GAME_BYTES) plus room for the other fields, so every stored row can travel.
MAX_ROW_SIZE = MAX_GAME_BYTES + 64 * 1024
# Encoded bytes of the rows in one reply, beyond which the responder stops adding rows (it
# always serves at least one, so a reply's rows take at most this plus one MAX_ROW_SIZE).
# 4 MiB is ~700 games of 125 moves or ~30,000 match rows, and bounds what one request can make
# a responder buffer.
MAX_ROWS_REPLY_BYTES = 4 * 1024 * 1024
# Rows in one reply: 8192 match rows are ~1 MB, big enough that a pull of small rows is not
# bound by round trips, small enough that one reply is merged in a fraction of a second.
MAX_ROWS_PER_REPLY = 8192
# Model blobs belong to the model registry store; only it answers blob questions.
BLOB_STORE = "models"
# Blob ids per "which do you hold" question: 64 sha256 hex ids are ~4 KB, and a node rarely
# lacks more models than that at once (the rest are asked next round).
MAX_BLOBS_PER_REQUEST = 64
SHA256_HEX_LEN = 64
# A refusal's detail is one line naming the bad value.
MAX_DETAIL_LEN = 200


def _check_store(store: str) -> None:
    if not store:
        raise ValueError("store name must not be empty")


@codec.message("sync.digests")
@dataclass(frozen=True, slots=True)
class DigestsRequest:
    """Send me your 256 bucket digests of `store`."""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})

    def __post_init__(self) -> None:
        _check_store(self.store)


@codec.message("sync.digests_reply")
@dataclass(frozen=True, slots=True)
class DigestsReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    # 64-bit XOR digests, bucket i at index i.
    digests: list[int] = field(metadata={"max_len": NUM_BUCKETS, "min": 0, "max": (1 << 64) - 1})

    def __post_init__(self) -> None:
        if len(self.digests) != NUM_BUCKETS:
            raise ValueError(f"digests must hold exactly {NUM_BUCKETS} values, got {len(self.digests)}")


def _check_buckets(buckets: list[int], most: int) -> None:
    if not 0 < len(buckets) <= most:
        raise ValueError(f"buckets must name 1..{most} buckets, got {len(buckets)}")
    for b in buckets:
        if not 0 <= b < NUM_BUCKETS:
            raise ValueError(f"bucket {b!r} is outside 0..{NUM_BUCKETS - 1}")
    if len(set(buckets)) != len(buckets):
        raise ValueError(f"buckets must not repeat, got {sorted(buckets)[:8]}...")


@codec.message("sync.subdigests")
@dataclass(frozen=True, slots=True)
class SubDigestsRequest:
    """Send me the 256 sub-bucket digests of each of `buckets`."""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    buckets: list[int] = field(metadata={"max_len": MAX_BUCKETS_PER_SUBDIGESTS, "min": 0,
                                         "max": NUM_BUCKETS - 1})

    def __post_init__(self) -> None:
        _check_store(self.store)
        _check_buckets(self.buckets, MAX_BUCKETS_PER_SUBDIGESTS)


@codec.message("sync.subdigests_reply")
@dataclass(frozen=True, slots=True)
class SubDigestsReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    # 256 per requested bucket, in the request's bucket order.
    digests: list[int] = field(metadata={"max_len": MAX_BUCKETS_PER_SUBDIGESTS * SUBS_PER_BUCKET,
                                         "min": 0, "max": (1 << 64) - 1})

    def __post_init__(self) -> None:
        if not self.digests or len(self.digests) % SUBS_PER_BUCKET:
            raise ValueError(f"digests must hold 256 values per bucket, got {len(self.digests)}")


@codec.message("sync.entries")
@dataclass(frozen=True, slots=True)
class EntriesRequest:
    """Send me the `(key, version)` entries of `buckets` with key > `after`, in key order;
    with `subs`, only those in these sub-buckets (each inside one of `buckets`)."""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    buckets: list[int] = field(metadata={"max_len": NUM_BUCKETS, "min": 0, "max": NUM_BUCKETS - 1})
    # Resume point of a paged listing: the last key of the previous page (None: from the start).
    after: str | None = field(default=None, metadata={"max_len": MAX_KEY_LEN})
    subs: list[int] | None = field(default=None, metadata={
        "max_len": MAX_BUCKETS_PER_SUBDIGESTS * SUBS_PER_BUCKET, "min": 0, "max": NUM_SUBS - 1})

    def __post_init__(self) -> None:
        _check_store(self.store)
        _check_buckets(self.buckets, NUM_BUCKETS)
        if self.subs is not None:
            if not self.subs:
                raise ValueError("subs, when given, must name at least one sub-bucket")
            buckets = set(self.buckets)
            for sub in self.subs:
                if not 0 <= sub < NUM_SUBS or sub // SUBS_PER_BUCKET not in buckets:
                    raise ValueError(f"sub-bucket {sub!r} is not in one of the buckets listed")


@codec.message("sync.entries_reply")
@dataclass(frozen=True, slots=True)
class EntriesReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    entries: list[tuple[str, bytes]] = field(metadata={"max_len": MAX_ENTRIES_PER_REPLY})
    # True when the listing was cut at MAX_ENTRIES_PER_REPLY: ask again with after=last key.
    more: bool = False

    def __post_init__(self) -> None:
        previous: str | None = None
        for key, version in self.entries:
            if len(key) > MAX_KEY_LEN or len(version) > MAX_VERSION_LEN:
                raise ValueError(f"entry key {key[:40]!r} / version of {len(version)} bytes "
                                 f"exceeds {MAX_KEY_LEN} chars / {MAX_VERSION_LEN} bytes")
            # Strict order is what makes paging terminate and lets the puller merge-join lists.
            if previous is not None and key <= previous:
                raise ValueError(f"entry keys must be strictly increasing, got {key[:40]!r} "
                                 f"after {previous[:40]!r}")
            previous = key
        if self.more and not self.entries:
            raise ValueError("a reply with more=True must carry at least one entry")


@codec.message("sync.rows")
@dataclass(frozen=True, slots=True)
class RowsRequest:
    """Send me the rows stored under `keys` (the ones you hold)."""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    keys: list[str] = field(metadata={"max_len": MAX_KEYS_PER_REQUEST,
                                      "item_max_len": MAX_KEY_LEN})

    def __post_init__(self) -> None:
        _check_store(self.store)
        if not 0 < len(self.keys) <= MAX_KEYS_PER_REQUEST:
            raise ValueError(f"keys must name 1..{MAX_KEYS_PER_REQUEST} keys, "
                             f"got {len(self.keys)}")


def _check_stream(rows: bytes, count: int, most: int) -> None:
    if not 0 <= count <= most:
        raise ValueError(f"count {count} is outside 0..{most}")
    if len(rows) < count:  # a msgpack value takes at least one byte
        raise ValueError(f"{len(rows)} bytes cannot hold {count} rows")


@codec.message("sync.rows_reply")
@dataclass(frozen=True, slots=True)
class RowsReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    # The rows as one stream of msgpack values (`storage.packed`): the responder joins the
    # encodings it stores and the puller decodes them in one call; the store then validates
    # every field of every row as it merges, so rows are checked once, not twice (walking every
    # value of every game in the codec cost two thirds of a sync's time).
    rows: bytes = field(metadata={"max_len": MAX_ROWS_REPLY_BYTES + MAX_ROW_SIZE})
    count: int = field(metadata={"min": 0, "max": MAX_KEYS_PER_REQUEST})
    # How many of the requested keys (a prefix) this reply answers; a key the responder does
    # not hold is answered by its absence. Fewer than asked: the byte budget ran out, ask again
    # for the rest.
    served: int = field(metadata={"min": 1, "max": MAX_KEYS_PER_REQUEST})

    def __post_init__(self) -> None:
        if not 1 <= self.served <= MAX_KEYS_PER_REQUEST:
            raise ValueError(f"served {self.served} is outside 1..{MAX_KEYS_PER_REQUEST}")
        _check_stream(self.rows, self.count, self.served)


@codec.message("sync.range")
@dataclass(frozen=True, slots=True)
class RangeRowsRequest:
    """Send me the rows whose key hash lies in sub-buckets `first..last`, in walk order
    (`storage.packed`), after the key `after`: for a puller that holds nothing there, rows
    without a listing first."""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    first: int = field(metadata={"min": 0, "max": NUM_SUBS - 1})
    last: int = field(metadata={"min": 0, "max": NUM_SUBS - 1})
    after: str | None = field(default=None, metadata={"max_len": MAX_KEY_LEN})

    def __post_init__(self) -> None:
        _check_store(self.store)
        if not 0 <= self.first <= self.last < NUM_SUBS:
            raise ValueError(f"sub-bucket range {self.first}..{self.last} is not within "
                             f"0..{NUM_SUBS - 1} in order")


@codec.message("sync.range_reply")
@dataclass(frozen=True, slots=True)
class RangeRowsReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    rows: bytes = field(metadata={"max_len": MAX_ROWS_REPLY_BYTES + MAX_ROW_SIZE})
    count: int = field(metadata={"min": 0, "max": MAX_ROWS_PER_REPLY})
    # The key of the last row sent when the range holds more (ask again after it); None when
    # this reply ends the range.
    after: str | None = field(default=None, metadata={"max_len": MAX_KEY_LEN})

    def __post_init__(self) -> None:
        _check_stream(self.rows, self.count, MAX_ROWS_PER_REPLY)
        if self.after is not None and not self.count:
            raise ValueError("a reply that asks to go on must carry at least one row")


def _check_shas(shas: list[str]) -> None:
    for sha in shas:
        if len(sha) != SHA256_HEX_LEN or sha.strip("0123456789abcdef"):
            raise ValueError(f"blob id {sha[:80]!r} is not a sha256 as 64 lowercase hex chars")


@codec.message("sync.blobs")
@dataclass(frozen=True, slots=True)
class BlobsRequest:
    """Which of these model blobs do you hold (and can serve at GET /mesh/v1/blob/{sha})?"""

    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    shas: list[str] = field(metadata={"max_len": MAX_BLOBS_PER_REQUEST,
                                      "item_max_len": SHA256_HEX_LEN})

    def __post_init__(self) -> None:
        _check_store(self.store)
        if not 0 < len(self.shas) <= MAX_BLOBS_PER_REQUEST:
            raise ValueError(f"shas must name 1..{MAX_BLOBS_PER_REQUEST} blobs, "
                             f"got {len(self.shas)}")
        _check_shas(self.shas)


@codec.message("sync.blobs_reply")
@dataclass(frozen=True, slots=True)
class BlobsReply:
    store: str = field(metadata={"max_len": MAX_STORE_NAME})
    held: list[str] = field(metadata={"max_len": MAX_BLOBS_PER_REQUEST,
                                      "item_max_len": SHA256_HEX_LEN})

    def __post_init__(self) -> None:
        _check_shas(self.held)


@codec.message("sync.refused")
@dataclass(frozen=True, slots=True)
class SyncRefused:
    """The responder could not answer: `reason` is a fixed name, `detail` names the bad value."""

    reason: str = field(metadata={"max_len": 32})
    detail: str = field(metadata={"max_len": MAX_DETAIL_LEN})


SyncRequest = (DigestsRequest | SubDigestsRequest | EntriesRequest | RowsRequest
               | RangeRowsRequest | BlobsRequest)
SyncReply = (DigestsReply | SubDigestsReply | EntriesReply | RowsReply | RangeRowsReply
             | BlobsReply | SyncRefused)
# The reply kind of each request kind (a refusal answers any of them): for shells that match
# replies to requests (the simulator).
REPLY_TO: dict[type, type] = {
    DigestsRequest: DigestsReply, SubDigestsRequest: SubDigestsReply,
    EntriesRequest: EntriesReply, RowsRequest: RowsReply, RangeRowsRequest: RangeRowsReply,
    BlobsRequest: BlobsReply,
}
