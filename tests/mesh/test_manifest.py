"""Manifests are signed by their node, verified by every receiver, and stay under 1 KB."""

from __future__ import annotations

import dataclasses

import msgpack
import pytest

from mesh import codec
from mesh.identity import Identity
from mesh.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_VOTERS,
    Manifest,
    ManifestError,
    SignedManifest,
    StoreSummary,
    encode_manifest,
    is_address,
    open_manifest,
    sign_manifest,
)


def _manifest(ident: Identity, **changes: object) -> Manifest:
    base = Manifest(
        node_id=ident.node_id, public_key=ident.public_key, address="10.0.0.7:8770",
        version="0.1.0", incarnation=3, seq=17, device="cuda", device_mem_mb=81_559, cores=16,
        state="selfplay",
        stores={"games": StoreSummary(120_000, "f" * 32), "matches": StoreSummary(5_000, "e" * 32),
                "models": StoreSummary(12, "d" * 32)},
        production_model="a" * 64, leader=ident.node_id, term=4, lease_until_ms=1_800_000_000_000,
    )
    return dataclasses.replace(base, **changes)


def _raw_body(ident: Identity, **changes: object) -> bytes:
    """A manifest body with some positional fields replaced by raw (possibly invalid) values."""
    names = [f.name for f in dataclasses.fields(Manifest)]
    values = dict(zip(names, codec.to_body(_manifest(ident)), strict=True))
    values.update(changes)
    return msgpack.packb(list(values.values()), use_bin_type=True)


def test_manifest_travels_as_a_list_in_field_order() -> None:
    ident = Identity.generate()
    body = msgpack.unpackb(encode_manifest(_manifest(ident)), raw=False)
    assert body[0] == ident.node_id
    assert body[10] == {"games": [120_000, "f" * 32], "matches": [5_000, "e" * 32],
                        "models": [12, "d" * 32]}


def test_signed_manifest_opens_to_the_same_manifest() -> None:
    ident = Identity.generate()
    manifest = _manifest(ident)
    assert open_manifest(sign_manifest(ident, manifest)) == manifest


def test_relayed_manifest_verifies_after_travelling_inside_another_message() -> None:
    ident = Identity.generate()
    signed = sign_manifest(ident, _manifest(ident))

    @codec.message("test.manifest.carrier")
    @dataclasses.dataclass(frozen=True, slots=True)
    class Carrier:
        manifests: list[SignedManifest]

    wire = msgpack.packb(codec.to_body(Carrier([signed, signed])), use_bin_type=True)
    relayed = codec.from_body("test.manifest.carrier", msgpack.unpackb(wire, raw=False))
    assert [open_manifest(s) for s in relayed.manifests] == [_manifest(ident)] * 2


def _signed_size(ident: Identity, manifest: Manifest) -> int:
    signed = sign_manifest(ident, manifest)
    return len(msgpack.packb({"body": signed.body, "sig": signed.sig}, use_bin_type=True))


def test_a_typical_signed_manifest_is_well_under_1_kb() -> None:
    ident = Identity.generate()
    assert _signed_size(ident, _manifest(ident)) < 500


def test_a_large_signed_manifest_still_fits_under_1_kb() -> None:
    ident = Identity.generate()
    large = _manifest(ident, address="[2001:db8:1234:5678:9abc:def0:1234:5678]:65535",
                      version="10.20.30-rc4+abcdef0", stores={
                          name: StoreSummary(10**12, "f" * 32)
                          for name in ("games", "matches", "models", "aliases")})
    assert _signed_size(ident, large) < 650


def test_a_tampered_body_fails_verification() -> None:
    ident = Identity.generate()
    signed = sign_manifest(ident, _manifest(ident))
    forged_body = encode_manifest(_manifest(ident, state="training"))
    with pytest.raises(ManifestError, match="bad signature"):
        open_manifest(SignedManifest(forged_body, signed.sig))


def test_a_relay_cannot_sign_another_nodes_manifest_with_its_own_key() -> None:
    victim, relay = Identity.generate(), Identity.generate()
    forged = _manifest(victim, public_key=relay.public_key)
    body = encode_manifest(forged)
    with pytest.raises(ManifestError, match="public key belongs to"):
        open_manifest(SignedManifest(body, relay.sign(body)))


def test_a_node_refuses_to_sign_a_manifest_that_is_not_its_own() -> None:
    a, b = Identity.generate(), Identity.generate()
    with pytest.raises(ManifestError, match="signs only its own manifest"):
        sign_manifest(a, _manifest(b))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b"\xc1", "not msgpack"),
        (msgpack.packb([1, 2]), "list of the 19 Manifest fields"),
        (msgpack.packb({"node_id": "x"}), "list of the 19 Manifest fields"),
        (b"x" * (MAX_MANIFEST_BYTES + 1), f"at most {MAX_MANIFEST_BYTES}"),
    ],
)
def test_garbage_bodies_raise_manifest_error(body: bytes, expected: str) -> None:
    with pytest.raises(ManifestError, match=expected):
        open_manifest(SignedManifest(body, b"\0" * 64))


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"state": "sleeping"}, "field state: expected one of"),
        ({"node_id": "XYZ"}, "node_id 'XYZ'"),
        ({"leader": "not-a-node"}, "leader 'not-a-node'"),
        ({"production_model": "abc"}, "production_model 'abc'"),
        ({"address": "no-port"}, "address 'no-port'"),
        ({"seq": -1}, "field seq: expected int in"),
        ({"stores": {"games": ["many", "x"]}}, r"stores\['games'\]\.count"),
        ({"stores": {"games": {"count": 1, "root": "x"}}}, "list of the 2 StoreSummary fields"),
    ],
)
def test_decoded_manifest_fields_are_validated(change: dict, expected: str) -> None:
    ident = Identity.generate()
    body = _raw_body(ident, **change)
    with pytest.raises(ManifestError, match=expected):
        open_manifest(SignedManifest(body, ident.sign(body)))


def test_freshness_orders_by_incarnation_then_seq() -> None:
    ident = Identity.generate()
    older = _manifest(ident, incarnation=2, seq=99)
    newer = _manifest(ident, incarnation=3, seq=0)
    assert newer.freshness > older.freshness
    assert _manifest(ident, seq=5).freshness < _manifest(ident, seq=6).freshness


def test_building_an_invalid_manifest_locally_raises() -> None:
    ident = Identity.generate()
    with pytest.raises(ValueError, match="address"):
        _manifest(ident, address="host:0")


@pytest.mark.parametrize("address", ["10.0.0.1:8770", "[::1]:8770", "node-3.lan:1", "n_1:65535"])
def test_is_address_accepts_host_port_forms(address: str) -> None:
    assert is_address(address)


@pytest.mark.parametrize(
    "address",
    ["host", "host:0", "host:65536", ":80", "a b:80", "evil/x:80", "user@h:80", "h:80/path",
     "fe80::1:80", "http://h:80", 80, "h" * 300 + ":80"],
)
def test_is_address_refuses_anything_that_could_bend_a_url(address: object) -> None:
    assert not is_address(address)


def test_store_names_are_bounded() -> None:
    ident = Identity.generate()
    body = _raw_body(ident, stores={"x" * 33: [1, "r"]})
    with pytest.raises(ManifestError, match="str of at most 32"):
        open_manifest(SignedManifest(body, ident.sign(body)))


def test_a_manifest_announces_at_most_the_one_voter_cap() -> None:
    ident = Identity.generate()
    six = [Identity.from_seed(bytes([i]) * 32).node_id for i in range(MAX_VOTERS + 1)]
    body = _raw_body(ident, voters=six, voters_version=[1, 1])
    with pytest.raises(ManifestError, match="voters"):
        open_manifest(SignedManifest(body, ident.sign(body)))
    five = _manifest(ident, voters=tuple(six[:MAX_VOTERS]), voters_version=(1, 1))
    assert open_manifest(sign_manifest(ident, five)) == five
