"""The envelope every mesh message travels in, and the admission checks on the way in.

Bytes on the wire: `envelope || sig || tag`, where `envelope` is
`msgpack({v, cluster, from, key, ts, nonce, kind, body})`. The *binding* of a message is a purpose
byte plus the destination's node id plus the envelope bytes: binding the destination means a
message recorded on its way to one node is refused by every other (empty destination: a seed
known only by address). A reply is bound to the nonce of the request it answers instead, so a
recorded reply cannot be passed off as the answer to another request.

Two proofs cover the binding:

- `sig`: the sender's Ed25519 signature. `key` is the sender's public key and `from` must be
  its hash (mesh/identity.py), so identities are self-certifying: holding the cluster key lets
  a machine mint new node ids, never speak as an existing one. The signature covers the
  destination too, so a key holder cannot re-address another node's message to a third node.
- `tag`: HMAC-SHA256 keyed from the cluster secret (`Keyring`) over the binding and `sig`, i.e.
  every byte received. It admits a machine to the cluster at all.

`Wire.open` does no work an outsider can trigger beyond a size check and one HMAC: size, tag
over the raw bytes, and only then unpacking (with container sizes capped, so even a key holder
cannot make the decoder build millions of objects), version, cluster, a message claiming to
come from the receiver itself (a reflection), sender key and signature, clock window, nonce
replay, kind, then every body field through the codec. Each failure raises `Refusal` with one
of `REASONS`, which the transport turns into a 4xx and a counter. Sans-IO: the caller passes
the time in; nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

import heapq
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import msgpack

from mesh import codec
from mesh.identity import PUBLIC_KEY_BYTES, SIGNATURE_BYTES, Identity, node_id_for, \
    verify_signature
from mesh.keyring import PURPOSE_BLOB, PURPOSE_ENVELOPE, TAG_BYTES, Keyring

VERSION = 1
NONCE_BYTES = 16
MAX_CLUSTER_ID_CHARS = 64
MAX_SENDER_CHARS = 64
# Peers' clocks agree to NTP precision; 30 s tolerates a badly synced host while keeping the
# replay cache (which must remember nonces for the whole window) small.
DEFAULT_WINDOW_MS = 30_000
# Nonces remembered at once. At the default window a nonce lives at most 60 s, so this covers
# over 1000 admitted messages a second; past it the oldest are evicted and the window shrinks.
DEFAULT_REPLAY_CAPACITY = 65_536

# A blob GET has no body to wrap, so its envelope facts travel as headers instead.
HEADER_VERSION = "X-Mesh-V"
HEADER_CLUSTER = "X-Mesh-Cluster"
HEADER_FROM = "X-Mesh-From"
HEADER_TS = "X-Mesh-Ts"
HEADER_NONCE = "X-Mesh-Nonce"
HEADER_TAG = "X-Mesh-Tag"
_BLOB_HEADERS = (HEADER_VERSION, HEADER_CLUSTER, HEADER_FROM, HEADER_TS, HEADER_NONCE, HEADER_TAG)
_DIGITS = re.compile(r"[0-9]{1,19}")
_HEX = re.compile(r"[0-9a-f]+")

_ENVELOPE_KEYS = frozenset({"v", "cluster", "from", "key", "ts", "nonce", "kind", "body"})
# Binding prefixes: a request and a reply can never be confused for one another.
_AS_REQUEST = b"\x01"
_AS_REPLY = b"\x02"
# Signed input = this domain + binding: a node's envelope signature can never be passed off as
# its signature of anything else (a manifest, a vote).
SIG_DOMAIN = b"ringrift-mesh v1 envelope signature\x00"
# Items in any one msgpack array or map of an envelope. The largest legitimate container is a
# push-pull digest (4096 rows, mesh/membership_messages.py); msgpack checks this while reading a
# header, before it allocates, and its own stack bounds nesting at 1024 levels (the codec then
# refuses any nesting its message classes do not declare).
MAX_CONTAINER_ITEMS = 65_536
# Bytes of an unauthenticated envelope read to name its cluster in a refusal: `v` and `cluster`
# come first and a cluster id is at most 64 characters.
_PEEK_BYTES = 96

REASONS = frozenset({
    "bad_cluster", "bad_tag", "bad_signature", "stale", "replay", "bad_version", "unknown_kind",
    "too_large", "malformed", "bad_field",
})


class Refusal(Exception):
    """An incoming message refused; `reason` is one of REASONS, `detail` one line for a human."""

    def __init__(self, reason: str, detail: str) -> None:
        if reason not in REASONS:
            raise ValueError(f"refusal reason {reason!r}: expected one of {sorted(REASONS)}")
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Opened:
    """An admitted message with the envelope facts a caller may need (the nonce binds a reply)."""

    sender: str
    kind: str
    msg: object
    ts_ms: int
    nonce: bytes


class ReplayCache:
    """Nonces seen within the clock window, bounded in memory.

    A nonce must be remembered only while its timestamp is inside the window. When the cache is
    full, the entry expiring first is evicted and its timestamp becomes a floor: anything not
    newer is refused as stale, so eviction narrows the window instead of opening a replay hole.
    """

    __slots__ = ("_capacity", "_expiry", "_floor_ts", "_seen", "_window_ms")

    def __init__(self, window_ms: int, capacity: int = DEFAULT_REPLAY_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"replay cache capacity must be positive, got {capacity}")
        self._window_ms = window_ms
        self._capacity = capacity
        self._seen: set[bytes] = set()
        self._expiry: list[tuple[int, bytes]] = []  # heap of (ts + window, nonce)
        self._floor_ts = -1

    def __len__(self) -> int:
        return len(self._seen)

    @property
    def floor_ts(self) -> int:
        """Messages with a timestamp at or below this are refused as stale (evicted horizon)."""
        return self._floor_ts

    def check_and_add(self, nonce: bytes, ts_ms: int, now_ms: int) -> str | None:
        """Record `nonce`; returns a refusal reason ("replay" or "stale") or None if fresh."""
        self._expire(now_ms)
        if ts_ms <= self._floor_ts:
            return "stale"
        if nonce in self._seen:
            return "replay"
        if len(self._seen) >= self._capacity:
            evicted_expiry, evicted = heapq.heappop(self._expiry)
            self._seen.discard(evicted)
            self._floor_ts = max(self._floor_ts, evicted_expiry - self._window_ms)
            if ts_ms <= self._floor_ts:
                return "stale"
        self._seen.add(nonce)
        heapq.heappush(self._expiry, (ts_ms + self._window_ms, nonce))
        return None

    def _expire(self, now_ms: int) -> None:
        while self._expiry and self._expiry[0][0] < now_ms:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)


class Wire:
    """Seals outgoing messages and admits incoming ones for one node of one cluster."""

    def __init__(self, cluster_id: str, identity: Identity, keyring: Keyring, *,
                 window_ms: int = DEFAULT_WINDOW_MS,
                 replay_capacity: int = DEFAULT_REPLAY_CAPACITY,
                 nonce_source: Callable[[int], bytes] = os.urandom) -> None:
        if type(cluster_id) is not str or not 0 < len(cluster_id) <= MAX_CLUSTER_ID_CHARS:
            raise ValueError(f"cluster id {cluster_id!r}: expected 1..{MAX_CLUSTER_ID_CHARS} chars")
        if not isinstance(identity, Identity):
            raise TypeError(f"identity {identity!r}: expected the node's Identity (it signs "
                            "every message)")
        if window_ms <= 0:
            raise ValueError(f"clock window {window_ms} ms: expected a positive number")
        self.cluster_id = cluster_id
        self.identity = identity
        self.node_id = identity.node_id
        self.keyring = keyring
        self.signed = 0
        self.verified = 0
        self.window_ms = window_ms
        self.replays = ReplayCache(window_ms, replay_capacity)
        self._nonce_source = nonce_source

    def seal(self, msg: object, now_ms: int, *, to: str | None = None,
             reply_to: bytes | None = None) -> bytes:
        """The bytes to send for `msg`.

        `to` is the destination's node id when known (only that node will admit the message);
        None for a peer known only by address (a seed). `reply_to` is the nonce of the request
        being answered (a reply is bound to it instead).
        """
        return self.seal_with_nonce(msg, now_ms, to=to, reply_to=reply_to)[0]

    def seal_with_nonce(self, msg: object, now_ms: int, *, to: str | None = None,
                        reply_to: bytes | None = None) -> tuple[bytes, bytes]:
        """`seal`, also returning the nonce, which a request's reply must be bound to."""
        if to is not None and (type(to) is not str or len(to) > MAX_SENDER_CHARS
                               or not to.isascii()):
            raise ValueError(f"destination {to!r}: expected a node id of at most "
                             f"{MAX_SENDER_CHARS} ASCII chars")
        nonce = self._nonce_source(NONCE_BYTES)
        envelope = msgpack.packb({
            "v": VERSION, "cluster": self.cluster_id, "from": self.node_id,
            "key": self.identity.public_key, "ts": int(now_ms), "nonce": nonce,
            "kind": codec.kind_of(msg), "body": codec.to_body(msg),
        }, use_bin_type=True)
        if reply_to is not None:
            binding = _AS_REPLY + reply_to + envelope
        else:
            binding = _addressed(to or "", envelope)
        sig = self.identity.sign(SIG_DOMAIN + binding)
        self.signed += 1
        tag = self.keyring.tag(PURPOSE_ENVELOPE, binding + sig)
        return envelope + sig + tag, nonce

    def open(self, data: bytes, now_ms: int, *, max_bytes: int | None = None,
             accept: Callable[[str], bool] | None = None,
             reply_to: bytes | None = None) -> Opened:
        """Admit one message or raise Refusal.

        `max_bytes` is the endpoint's size limit, `accept` says which kinds the endpoint takes,
        and `reply_to` (client side) is the nonce of our request this must answer.
        """
        if max_bytes is not None and len(data) > max_bytes:
            raise Refusal("too_large",
                          f"{len(data)} bytes; this endpoint takes at most {max_bytes}")
        if len(data) <= SIGNATURE_BYTES + TAG_BYTES:
            raise Refusal("malformed", f"{len(data)} bytes is too short for an envelope, "
                                       "signature and tag")
        envelope = data[:-SIGNATURE_BYTES - TAG_BYTES]
        sig, tag = data[-SIGNATURE_BYTES - TAG_BYTES:-TAG_BYTES], data[-TAG_BYTES:]
        binding = self._authentic(envelope, sig, tag, reply_to)
        if binding is None:
            other = _peek_cluster(envelope)
            if other is not None and other != self.cluster_id:
                # Most likely a node of another cluster (a wrong join token): say so.
                raise Refusal("bad_cluster", f"cluster {codec.describe_value(other)}; this "
                                             f"node belongs to {self.cluster_id!r}")
            what = "reply to our request" if reply_to is not None else "message"
            raise Refusal("bad_tag", f"{what} of {len(data)} bytes has a tag no installed "
                                     "cluster key produced for this node")
        fields = _unpack(envelope)
        version = fields["v"]
        if type(version) is not int or version != VERSION:
            raise Refusal("bad_version", f"envelope version {codec.describe_value(version)}; "
                                         f"this node speaks {VERSION}")
        _check_header_types(fields)
        if fields["cluster"] != self.cluster_id:
            raise Refusal("bad_cluster", f"cluster {codec.describe_value(fields['cluster'])}; "
                                         f"this node belongs to {self.cluster_id!r}")
        sender = fields["from"]
        if sender == self.node_id:
            # Our own message sent back to us (an unaddressed one can be): a reflection.
            raise Refusal("replay", "message claims to come from this node itself")
        if node_id_for(fields["key"]) != sender:
            raise Refusal("bad_signature", f"sender {codec.describe_value(sender)} does not "
                                           "match the public key the message carries")
        self.verified += 1
        if not verify_signature(fields["key"], sig, SIG_DOMAIN + binding):
            raise Refusal("bad_signature", f"message from {sender} is not signed by its key")
        ts = fields["ts"]
        self._check_fresh(ts, fields["nonce"], now_ms)
        kind = fields["kind"]
        if not codec.is_registered(kind):
            raise Refusal("unknown_kind",
                          f"kind {codec.describe_value(kind)} is not known to this node")
        if accept is not None and not accept(kind):
            raise Refusal("unknown_kind", f"kind {kind!r} is not accepted on this endpoint")
        try:
            msg = codec.from_body(kind, fields["body"])
        except codec.DecodeError as err:
            raise Refusal("bad_field", str(err)) from None
        return Opened(sender=sender, kind=kind, msg=msg, ts_ms=ts, nonce=fields["nonce"])

    def _authentic(self, envelope: bytes, sig: bytes, tag: bytes,
                   reply_to: bytes | None) -> bytes | None:
        """The binding whose tag matches (covering `sig`), or None when no installed key made it."""
        if reply_to is not None:
            candidates = [_AS_REPLY + reply_to + envelope]
        else:
            # Addressed to us, or unaddressed (sent to our address before our id was known).
            candidates = [_addressed(self.node_id, envelope), _addressed("", envelope)]
        for binding in candidates:
            if self.keyring.verify(PURPOSE_ENVELOPE, binding + sig, tag):
                return binding
        return None

    def open_envelope(self, data: bytes, now_ms: int) -> tuple[str, object]:
        """`(sender, msg)` of an admitted message, with no endpoint limits; raises Refusal."""
        opened = self.open(data, now_ms)
        return opened.sender, opened.msg

    def blob_request_headers(self, sha256: str, now_ms: int) -> dict[str, str]:
        """HTTP headers that authenticate a GET of blob `sha256` (a GET carries no envelope)."""
        nonce = self._nonce_source(NONCE_BYTES)
        ts = int(now_ms)
        tag = self.keyring.tag(PURPOSE_BLOB, _blob_tag_input(
            self.cluster_id, self.node_id, ts, nonce, sha256))
        return {
            HEADER_VERSION: str(VERSION), HEADER_CLUSTER: self.cluster_id,
            HEADER_FROM: self.node_id, HEADER_TS: str(ts), HEADER_NONCE: nonce.hex(),
            HEADER_TAG: tag.hex(),
        }

    def check_blob_request(self, sha256: str, headers: Mapping[str, str], now_ms: int) -> str:
        """The sender of an authentic, fresh blob request; raises Refusal otherwise."""
        values = {name: headers.get(name) for name in _BLOB_HEADERS}
        missing = [name for name, value in values.items() if value is None]
        if missing:
            raise Refusal("malformed", f"blob request lacks the headers {missing}")
        if values[HEADER_VERSION] != str(VERSION):
            raise Refusal("bad_version", f"blob request version "
                                         f"{codec.describe_value(values[HEADER_VERSION])}; "
                                         f"this node speaks {VERSION}")
        cluster, sender = values[HEADER_CLUSTER], values[HEADER_FROM]
        ts_text, nonce_hex, tag_hex = values[HEADER_TS], values[HEADER_NONCE], values[HEADER_TAG]
        if not (0 < len(cluster) <= MAX_CLUSTER_ID_CHARS and 0 < len(sender) <= MAX_SENDER_CHARS
                and _DIGITS.fullmatch(ts_text) and _HEX.fullmatch(nonce_hex)
                and len(nonce_hex) == 2 * NONCE_BYTES and _HEX.fullmatch(tag_hex)
                and len(tag_hex) == 2 * TAG_BYTES):
            raise Refusal("malformed", "blob request headers: expected cluster and sender ids, "
                                       "ts as decimal ms, nonce and tag as lowercase hex")
        if cluster != self.cluster_id:
            raise Refusal("bad_cluster", f"cluster {codec.describe_value(cluster)}; "
                                         f"this node belongs to {self.cluster_id!r}")
        ts, nonce = int(ts_text), bytes.fromhex(nonce_hex)
        if not self.keyring.verify(PURPOSE_BLOB, _blob_tag_input(cluster, sender, ts, nonce,
                                                                 sha256), bytes.fromhex(tag_hex)):
            raise Refusal("bad_tag", f"blob request from {codec.describe_value(sender)} has a tag "
                                     "no installed cluster key produced")
        self._check_fresh(ts, nonce, now_ms)
        return sender

    def _check_fresh(self, ts: int, nonce: bytes, now_ms: int) -> None:
        if abs(now_ms - ts) > self.window_ms:
            raise Refusal("stale", f"timestamp {ts} is {ts - now_ms:+d} ms from this node's "
                                   f"clock; the window is {self.window_ms} ms")
        verdict = self.replays.check_and_add(nonce, ts, now_ms)
        if verdict == "stale":
            raise Refusal("stale", f"timestamp {ts} is at or below the replay horizon "
                                   f"{self.replays.floor_ts} (replay cache full)")
        if verdict == "replay":
            raise Refusal("replay", f"nonce {nonce.hex()} was already seen")

def _addressed(to: str, envelope: bytes) -> bytes:
    # The destination is bound into the tag, not carried in the envelope: the receiver knows
    # its own id. Length-prefixed, so no (to, envelope) pair reads as another.
    to_bytes = to.encode()
    return _AS_REQUEST + len(to_bytes).to_bytes(1, "big") + to_bytes + envelope


def _blob_tag_input(cluster: str, sender: str, ts: int, nonce: bytes, sha256: str) -> bytes:
    # msgpack of the parsed values: unambiguous, and rebuilt identically by the verifier.
    return msgpack.packb(["blob", VERSION, cluster, sender, ts, nonce, sha256], use_bin_type=True)


def _peek_cluster(envelope: bytes) -> object:
    """The `cluster` of an unauthenticated envelope, read from its first bytes only (bounded
    work, for the refusal's wording); None when it is not where `seal` puts it."""
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=_PEEK_BYTES, max_array_len=0,
                                max_map_len=len(_ENVELOPE_KEYS))
    unpacker.feed(envelope[:_PEEK_BYTES])
    try:
        if unpacker.read_map_header() != len(_ENVELOPE_KEYS):
            return None
        for _ in range(2):
            if unpacker.unpack() == "cluster":
                return unpacker.unpack()
            unpacker.skip()
    except (ValueError, TypeError, msgpack.UnpackException, msgpack.OutOfData):
        return None
    return None


def _unpack(envelope: bytes) -> dict:
    try:
        # strict_map_key off: codec bodies may use int map keys; the codec checks every key.
        fields = msgpack.unpackb(envelope, raw=False, strict_map_key=False,
                                 max_array_len=MAX_CONTAINER_ITEMS,
                                 max_map_len=MAX_CONTAINER_ITEMS)
    except (ValueError, TypeError, msgpack.UnpackException) as err:  # TypeError: unhashable key
        raise Refusal("malformed", f"envelope is not one msgpack value ({type(err).__name__})") \
            from None
    if type(fields) is not dict or fields.keys() != _ENVELOPE_KEYS:
        got = sorted(map(str, fields)) if type(fields) is dict else type(fields).__name__
        raise Refusal("malformed", f"envelope must be a map with keys {sorted(_ENVELOPE_KEYS)}, "
                                   f"got {codec.describe_value(got)}")
    return fields


def _check_header_types(fields: dict) -> None:
    checks = (
        ("cluster", str, MAX_CLUSTER_ID_CHARS), ("from", str, MAX_SENDER_CHARS),
        ("kind", str, codec.MAX_KIND_LEN), ("nonce", bytes, NONCE_BYTES),
        ("key", bytes, PUBLIC_KEY_BYTES),
    )
    for name, expected, limit in checks:
        value = fields[name]
        if type(value) is not expected or not 0 < len(value) <= limit:
            raise Refusal("malformed", f"envelope field {name!r}: expected {expected.__name__} of "
                                       f"1..{limit}, got {codec.describe_value(value)}")
    if len(fields["nonce"]) != NONCE_BYTES or len(fields["key"]) != PUBLIC_KEY_BYTES:
        raise Refusal("malformed", f"envelope nonce must be {NONCE_BYTES} bytes and key "
                                   f"{PUBLIC_KEY_BYTES}")
    if type(fields["ts"]) is not int:
        raise Refusal("malformed", f"envelope field 'ts': expected int milliseconds, "
                                   f"got {codec.describe_value(fields['ts'])}")

