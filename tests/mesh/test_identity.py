"""A node identity is an Ed25519 key; its node id is derived from the public key."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import pytest

from mesh.identity import Identity, IdentityError, is_node_id, node_id_for, verify_signature


def test_node_id_is_first_16_bytes_of_sha256_of_public_key_in_hex() -> None:
    ident = Identity.generate()
    assert len(ident.public_key) == 32
    assert ident.node_id == hashlib.sha256(ident.public_key).hexdigest()[:32]
    assert is_node_id(ident.node_id)


def test_node_id_for_refuses_a_key_of_the_wrong_length() -> None:
    with pytest.raises(IdentityError, match="32 raw bytes, got bytes of length 31"):
        node_id_for(b"x" * 31)


def test_signature_verifies_only_for_the_same_key_and_data() -> None:
    a, b = Identity.generate(), Identity.generate()
    sig = a.sign(b"hello")
    assert verify_signature(a.public_key, sig, b"hello")
    assert not verify_signature(a.public_key, sig, b"hellO")
    assert not verify_signature(b.public_key, sig, b"hello")
    assert not verify_signature(a.public_key, sig[:-1], b"hello")
    assert not verify_signature(b"short", sig, b"hello")


def test_save_then_load_gives_the_same_identity_with_mode_0600(tmp_path: Path) -> None:
    ident = Identity.generate()
    path = tmp_path / "identity.key"
    ident.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Identity.load(path)
    assert loaded.node_id == ident.node_id
    assert verify_signature(ident.public_key, loaded.sign(b"x"), b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["identity.key"]


def test_load_refuses_a_key_file_other_users_can_read(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    Identity.generate().save(path)
    path.chmod(0o644)
    with pytest.raises(IdentityError, match="mode 644"):
        Identity.load(path)


def test_load_refuses_garbage_and_oversized_files(tmp_path: Path) -> None:
    path = tmp_path / "identity.key"
    path.write_bytes(b"not a key")
    path.chmod(0o600)
    with pytest.raises(IdentityError, match="not a PEM private key"):
        Identity.load(path)
    path.write_bytes(b"x" * 5000)
    with pytest.raises(IdentityError, match="over 4096 bytes"):
        Identity.load(path)


def test_from_seed_is_deterministic() -> None:
    assert Identity.from_seed(b"\x01" * 32).node_id == Identity.from_seed(b"\x01" * 32).node_id
    assert Identity.from_seed(b"\x01" * 32).node_id != Identity.from_seed(b"\x02" * 32).node_id


def test_repr_does_not_leak_the_private_key() -> None:
    ident = Identity.from_seed(b"\x07" * 32)
    assert repr(ident) == f"Identity(node_id={ident.node_id!r})"
