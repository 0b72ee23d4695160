"""The envelope admits only well-formed, fresh, authentic messages of this cluster."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh import codec
from mesh.identity import SIGNATURE_BYTES, Identity
from mesh.keyring import PURPOSE_BLOB, PURPOSE_ENVELOPE, TAG_BYTES, Keyring, KeyringError
from mesh.wire import (
    MAX_CONTAINER_ITEMS,
    NONCE_BYTES,
    REASONS,
    SIG_DOMAIN,
    VERSION,
    Refusal,
    ReplayCache,
    Wire,
)

SECRET = b"s" * 32
OTHER_SECRET = b"o" * 32
NOW = 1_800_000_000_000
SENDER_KEY = Identity.from_seed(b"\x01" * 32)
RECEIVER_KEY = Identity.from_seed(b"\x02" * 32)
MALLORY_KEY = Identity.from_seed(b"\x03" * 32)
SENDER = SENDER_KEY.node_id
RECEIVER = RECEIVER_KEY.node_id
TRAILER = SIGNATURE_BYTES + TAG_BYTES


@codec.message("test.wire.ping")
@dataclass(frozen=True, slots=True)
class Ping:
    seq: int
    note: str = field(default="", metadata={"max_len": 8})


@codec.message("test.wire.bench")
@dataclass(frozen=True, slots=True)
class Bench:
    items: list[bytes]


def _pair(cluster: str = "c1", secret: bytes = SECRET) -> tuple[Wire, Wire]:
    return (Wire(cluster, SENDER_KEY, Keyring([secret])),
            Wire(cluster, RECEIVER_KEY, Keyring([secret])))


def _tagged(envelope: bytes, secret: bytes = SECRET, signer: Identity = SENDER_KEY) -> bytes:
    """What a sender holding `secret` and `signer`'s key sends for arbitrary envelope bytes."""
    binding = b"\x01\x00" + envelope  # unaddressed
    sig = signer.sign(SIG_DOMAIN + binding)
    return envelope + sig + Keyring([secret]).tag(PURPOSE_ENVELOPE, binding + sig)


def _reseal(fields: dict, secret: bytes = SECRET, signer: Identity = SENDER_KEY) -> bytes:
    """A sender holding `secret` that writes an arbitrary, unaddressed envelope."""
    return _tagged(msgpack.packb(fields, use_bin_type=True), secret, signer)


def _fields(**changes: object) -> dict:
    base = {"v": VERSION, "cluster": "c1", "from": SENDER, "key": SENDER_KEY.public_key,
            "ts": NOW, "nonce": b"n" * 16, "kind": "test.wire.ping",
            "body": {"seq": 1, "note": ""}}
    base.update(changes)
    return base


def _refusal(wire: Wire, data: bytes, now: int = NOW, **kw: object) -> Refusal:
    with pytest.raises(Refusal) as err:
        wire.open(data, now, **kw)  # type: ignore[arg-type]
    assert err.value.reason in REASONS
    return err.value


def test_sealed_message_opens_to_sender_and_message() -> None:
    sender, receiver = _pair()
    opened = receiver.open_envelope(sender.seal(Ping(7, "hi"), NOW), NOW + 5)
    assert opened == (SENDER, Ping(7, "hi"))


def test_wrong_cluster_is_refused_as_bad_cluster() -> None:
    sender, _ = _pair(cluster="other")
    _, receiver = _pair()
    assert _refusal(receiver, sender.seal(Ping(1), NOW)).reason == "bad_cluster"


def test_a_flipped_bit_or_another_secret_is_refused_as_bad_tag() -> None:
    sender, receiver = _pair()
    data = bytearray(sender.seal(Ping(1), NOW))
    data[-1] ^= 1
    assert _refusal(receiver, bytes(data)).reason == "bad_tag"
    forger, _ = _pair(secret=OTHER_SECRET)
    assert _refusal(receiver, forger.seal(Ping(1), NOW)).reason == "bad_tag"


def test_a_body_edited_after_sealing_is_refused_as_bad_tag() -> None:
    sender, receiver = _pair()
    data = sender.seal(Ping(1), NOW)
    fields = msgpack.unpackb(data[:-TRAILER], raw=False)
    fields["body"]["seq"] = 2
    edited = msgpack.packb(fields, use_bin_type=True) + data[-TRAILER:]
    assert _refusal(receiver, edited).reason == "bad_tag"


@pytest.mark.parametrize("offset_ms", [-30_001, 30_001, -10**9])
def test_timestamp_outside_the_window_is_refused_as_stale(offset_ms: int) -> None:
    sender, receiver = _pair()
    refusal = _refusal(receiver, sender.seal(Ping(1), NOW + offset_ms))
    assert refusal.reason == "stale"
    assert "window is 30000 ms" in refusal.detail


def test_the_same_bytes_twice_are_refused_as_replay() -> None:
    sender, receiver = _pair()
    data = sender.seal(Ping(1), NOW)
    receiver.open(data, NOW)
    assert _refusal(receiver, data, NOW + 1000).reason == "replay"


def test_without_the_cluster_key_nothing_is_unpacked() -> None:
    # 8 MiB of empty arrays once blocked the event loop for seconds while being unpacked
    # before the tag was checked; now the tag over the raw bytes refuses it first.
    _, receiver = _pair()
    flood = b"\xdd" + (8 << 20).to_bytes(4, "big") + b"\x90" * (8 << 20) + b"\x00" * TRAILER
    assert _refusal(receiver, flood).reason == "bad_tag"
    assert _refusal(receiver, _reseal(_fields(v=2), secret=OTHER_SECRET)).reason == "bad_tag"


def test_a_key_holder_cannot_make_the_decoder_build_huge_containers() -> None:
    _, receiver = _pair()
    items = MAX_CONTAINER_ITEMS + 1
    huge = msgpack.packb(_fields(body={"seq": 1, "note": [0] * items}), use_bin_type=True)
    assert _refusal(receiver, _tagged(huge)).reason == "malformed"
    deep = b"\x91" * 100_000 + b"\xc0"
    assert _refusal(receiver, _tagged(deep)).reason == "malformed"


def test_unknown_version_is_refused_before_the_signature_is_checked() -> None:
    _, receiver = _pair()
    refusal = _refusal(receiver, _reseal(_fields(v=2), signer=MALLORY_KEY))
    assert refusal.reason == "bad_version"
    assert "this node speaks 1" in refusal.detail


def test_a_key_holder_cannot_speak_as_another_node() -> None:
    # Mallory holds the cluster key but not SENDER's node key.
    _, receiver = _pair()
    as_sender = _reseal(_fields(), signer=MALLORY_KEY)
    assert _refusal(receiver, as_sender).reason == "bad_signature"
    with_mallorys_key = _reseal(_fields(key=MALLORY_KEY.public_key), signer=MALLORY_KEY)
    refusal = _refusal(receiver, with_mallorys_key)
    assert refusal.reason == "bad_signature" and "does not match" in refusal.detail
    # Under its own (minted) id it is admitted: the cluster key admits machines.
    own = _reseal(_fields(**{"from": MALLORY_KEY.node_id, "key": MALLORY_KEY.public_key}),
                  signer=MALLORY_KEY)
    assert receiver.open(own, NOW).sender == MALLORY_KEY.node_id


def test_a_key_holder_cannot_readdress_another_nodes_message() -> None:
    # The signature covers the destination: re-tagging a message meant for the receiver
    # towards a bystander (the cluster key suffices for the tag) is refused.
    sender, receiver = _pair()
    bystander = Wire("c1", MALLORY_KEY, Keyring([SECRET]))
    data = sender.seal(Ping(1), NOW, to=RECEIVER)
    envelope, sig = data[:-TRAILER], data[-TRAILER:-TAG_BYTES]
    to = bystander.node_id.encode()
    binding = b"\x01" + len(to).to_bytes(1, "big") + to + envelope
    retagged = envelope + sig + Keyring([SECRET]).tag(PURPOSE_ENVELOPE, binding + sig)
    assert _refusal(bystander, retagged).reason == "bad_signature"


def test_unknown_kind_is_refused() -> None:
    _, receiver = _pair()
    assert _refusal(receiver, _reseal(_fields(kind="no.such"))).reason == "unknown_kind"


def test_a_kind_the_endpoint_does_not_accept_is_refused() -> None:
    sender, receiver = _pair()
    refusal = _refusal(receiver, sender.seal(Ping(1), NOW), accept=lambda k: k.startswith("sync."))
    assert refusal.reason == "unknown_kind"
    assert "not accepted on this endpoint" in refusal.detail


def test_a_wrongly_typed_body_field_is_refused_as_bad_field_naming_it() -> None:
    _, receiver = _pair()
    refusal = _refusal(receiver, _reseal(_fields(body={"seq": "one"})))
    assert refusal.reason == "bad_field"
    assert "field seq: expected int" in refusal.detail


def test_an_envelope_over_the_endpoint_limit_is_refused_as_too_large() -> None:
    sender, receiver = _pair()
    data = sender.seal(Ping(1), NOW)
    assert _refusal(receiver, data, max_bytes=len(data) - 1).reason == "too_large"
    receiver.open(data, NOW, max_bytes=len(data))


@pytest.mark.parametrize(
    "data",
    [
        b"\xc1",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"v": 1}),
        msgpack.packb({**_fields(), "extra": 1}, use_bin_type=True),
        msgpack.packb(_fields(nonce=b"short"), use_bin_type=True),
        msgpack.packb(_fields(key=b"short"), use_bin_type=True),
        msgpack.packb(_fields(ts="now"), use_bin_type=True),
        msgpack.packb(_fields(cluster=7), use_bin_type=True),
        msgpack.packb(_fields(), use_bin_type=True) + b"junk",
    ],
)
def test_malformed_envelopes_are_refused_as_malformed(data: bytes) -> None:
    _, receiver = _pair()
    assert _refusal(receiver, _tagged(data)).reason == "malformed"


@pytest.mark.parametrize("size", [0, TAG_BYTES, TRAILER])
def test_messages_too_short_for_a_trailer_are_malformed(size: int) -> None:
    _, receiver = _pair()
    assert _refusal(receiver, b"\x00" * size).reason == "malformed"


def test_a_message_addressed_to_one_node_is_refused_by_another() -> None:
    sender, receiver = _pair()
    bystander = Wire("c1", MALLORY_KEY, Keyring([SECRET]))
    data = sender.seal(Ping(1), NOW, to=RECEIVER)
    assert _refusal(bystander, data).reason == "bad_tag"
    assert receiver.open(data, NOW).msg == Ping(1)


def test_an_unaddressed_message_is_admitted_by_any_node() -> None:
    sender, receiver = _pair()
    assert receiver.open(sender.seal(Ping(1), NOW, to=None), NOW).sender == SENDER


def test_a_nodes_own_message_reflected_back_to_it_is_refused() -> None:
    sender, _ = _pair()
    refusal = _refusal(sender, sender.seal(Ping(1), NOW))
    assert refusal.reason == "replay"
    assert "this node itself" in refusal.detail


def test_seal_refuses_a_destination_that_is_not_a_short_ascii_id() -> None:
    sender, _ = _pair()
    with pytest.raises(ValueError, match="destination"):
        sender.seal(Ping(1), NOW, to="x" * 65)


def test_a_reply_opens_only_against_the_request_it_answers() -> None:
    client, server = _pair()
    request = client.seal(Ping(1), NOW)
    opened = server.open(request, NOW)
    reply = server.seal(Ping(2), NOW, reply_to=opened.nonce)
    assert _refusal(client, reply, reply_to=b"x" * NONCE_BYTES).reason == "bad_tag"
    assert client.open(reply, NOW, reply_to=opened.nonce).msg == Ping(2)


def test_a_reply_cannot_be_admitted_as_a_request() -> None:
    client, server = _pair()
    reply = server.seal(Ping(2), NOW, reply_to=b"r" * NONCE_BYTES)
    assert _refusal(client, reply).reason == "bad_tag"


def test_refusal_details_stay_one_short_line_for_hostile_values() -> None:
    _, receiver = _pair()
    refusal = _refusal(receiver, _reseal(_fields(cluster="x" * 60 + "\n" * 4)))
    assert refusal.reason == "bad_cluster"
    assert "\n" not in refusal.detail
    assert len(refusal.detail) < 200


def test_keyring_rotation_install_use_remove() -> None:
    old, new = b"1" * 32, b"2" * 32
    sender = Wire("c1", SENDER_KEY, Keyring([old]))
    receiver = Wire("c1", RECEIVER_KEY, Keyring([old]))
    receiver.keyring.install(new)
    sender.keyring.install(new)
    sender.keyring.use(new)
    assert receiver.open(sender.seal(Ping(1), NOW), NOW).msg == Ping(1)
    receiver.keyring.use(new)
    receiver.keyring.remove(old)
    assert receiver.keyring.secrets == (new,)
    old_only = Wire("c1", SENDER_KEY, Keyring([old]))
    assert _refusal(receiver, old_only.seal(Ping(2), NOW)).reason == "bad_tag"


def test_keyring_refuses_removing_the_primary_and_short_secrets() -> None:
    ring = Keyring([SECRET])
    with pytest.raises(KeyringError, match="primary"):
        ring.remove(SECRET)
    with pytest.raises(KeyringError, match="16..64 bytes, got bytes of length 3"):
        ring.install(b"abc")
    with pytest.raises(KeyringError, match="not installed"):
        ring.use(OTHER_SECRET)
    with pytest.raises(KeyringError, match="at least one"):
        Keyring([])


def test_keys_are_separate_per_purpose() -> None:
    ring = Keyring([SECRET])
    tag = ring.tag(PURPOSE_ENVELOPE, b"data")
    assert ring.verify(PURPOSE_ENVELOPE, b"data", tag)
    assert not ring.verify(PURPOSE_BLOB, b"data", tag)


def test_replay_cache_forgets_nonces_once_their_window_has_passed() -> None:
    cache = ReplayCache(window_ms=100, capacity=10)
    assert cache.check_and_add(b"a", ts_ms=1000, now_ms=1000) is None
    assert cache.check_and_add(b"a", ts_ms=1000, now_ms=1050) == "replay"
    assert cache.check_and_add(b"b", ts_ms=1200, now_ms=1200) is None
    assert len(cache) == 1


def test_full_replay_cache_evicts_oldest_and_refuses_what_it_forgot_as_stale() -> None:
    cache = ReplayCache(window_ms=1000, capacity=3)
    for i, ts in enumerate([10, 20, 30]):
        assert cache.check_and_add(bytes([i]), ts, now_ms=40) is None
    assert cache.check_and_add(b"new", 40, now_ms=40) is None
    assert len(cache) == 3
    # the nonce sent at ts=10 was evicted; replaying it is still refused, as stale
    assert cache.check_and_add(bytes([0]), 10, now_ms=41) == "stale"
    assert cache.check_and_add(bytes([1]), 20, now_ms=41) == "replay"


@settings(deadline=None, max_examples=200)
@given(data=st.binary(max_size=300))
def test_random_bytes_are_refused_never_crash(data: bytes) -> None:
    _, receiver = _pair()
    with pytest.raises(Refusal):
        receiver.open(data, NOW)


@settings(deadline=None, max_examples=100)
@given(position=st.integers(0, 10_000), bit=st.integers(0, 7))
def test_any_single_bit_flip_of_a_sealed_message_is_refused(position: int, bit: int) -> None:
    sender, receiver = _pair()
    data = bytearray(sender.seal(Ping(3, "abc"), NOW))
    data[position % len(data)] ^= 1 << bit
    with pytest.raises(Refusal):
        receiver.open(bytes(data), NOW)


def test_nonces_come_from_the_nonce_source() -> None:
    counter = itertools.count()
    wire = Wire("c1", SENDER_KEY, Keyring([SECRET]),
                nonce_source=lambda n: next(counter).to_bytes(n, "big"))
    _, receiver = _pair()
    assert receiver.open(wire.seal(Ping(1), NOW), NOW).nonce == (0).to_bytes(16, "big")


SHA = "ab" * 32


def test_blob_request_headers_authenticate_the_sender_for_that_blob_only() -> None:
    sender, receiver = _pair()
    headers = sender.blob_request_headers(SHA, NOW)
    assert receiver.check_blob_request(SHA, headers, NOW) == SENDER
    other = sender.blob_request_headers(SHA, NOW)
    with pytest.raises(Refusal) as err:
        receiver.check_blob_request("cd" * 32, other, NOW)
    assert err.value.reason == "bad_tag"


def test_a_replayed_or_stale_blob_request_is_refused() -> None:
    sender, receiver = _pair()
    headers = sender.blob_request_headers(SHA, NOW)
    receiver.check_blob_request(SHA, headers, NOW)
    with pytest.raises(Refusal, match="replay"):
        receiver.check_blob_request(SHA, headers, NOW)
    with pytest.raises(Refusal, match="stale"):
        receiver.check_blob_request(SHA, sender.blob_request_headers(SHA, NOW - 60_000), NOW)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"X-Mesh-Tag": None}, "malformed"),
        ({"X-Mesh-Ts": "-5"}, "malformed"),
        ({"X-Mesh-Nonce": "zz" * 16}, "malformed"),
        ({"X-Mesh-V": "9"}, "bad_version"),
        ({"X-Mesh-Cluster": "elsewhere"}, "bad_cluster"),
        ({"X-Mesh-From": "c" * 32}, "bad_tag"),
    ],
)
def test_bad_blob_request_headers_are_refused(change: dict, reason: str) -> None:
    sender, receiver = _pair()
    headers = sender.blob_request_headers(SHA, NOW)
    headers.update(change)
    headers = {k: v for k, v in headers.items() if v is not None}
    with pytest.raises(Refusal) as err:
        receiver.check_blob_request(SHA, headers, NOW)
    assert err.value.reason == reason


@pytest.mark.benchmark
def test_benchmark_seal_and_open_rates() -> None:
    """Prints messages per second for sealing and admitting a small and a 4 KB message."""
    import time

    for label, msg in [("small", Ping(1, "x")), ("4KB", Bench([b"x" * 100] * 40))]:
        sender = Wire("c1", SENDER_KEY, Keyring([SECRET]))
        receiver = Wire("c1", RECEIVER_KEY, Keyring([SECRET]), replay_capacity=100_000)
        n = 5000
        start = time.perf_counter()
        sealed = [sender.seal(msg, NOW) for _ in range(n)]
        sealed_s = time.perf_counter() - start
        start = time.perf_counter()
        for data in sealed:
            receiver.open(data, NOW)
        opened_s = time.perf_counter() - start
        print(f"{label} ({len(sealed[0])} bytes): seal {n / sealed_s:,.0f}/s, "
              f"open {n / opened_s:,.0f}/s")


def test_a_boolean_version_is_not_taken_for_version_1() -> None:
    _, receiver = _pair()
    assert _refusal(receiver, _reseal(_fields(v=True))).reason == "bad_version"
