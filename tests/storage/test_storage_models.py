"""Model registry: blob atomicity and verification, fencing of leader writes, aliases, events."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import pytest

from storage.blobs import BlobCorruptError, BlobMissingError
from storage.fencing import StaleTermError
from storage.hlc import HybridClock
from storage.models import UnknownModelError
from storage.rows import new_alias, new_promotion
from storage.stores import open_stores


@pytest.fixture
async def stores(tmp_path: Path):
    opened = await open_stores(tmp_path, HybridClock(lambda: 1_000, 60_000), "node-a")
    yield opened
    await opened.close()


async def test_put_blob_is_content_addressed_and_leaves_no_temp_files(stores, tmp_path) -> None:
    data = os.urandom(100_000)
    sha = await stores.models.put_blob(data)
    assert sha == hashlib.sha256(data).hexdigest()
    assert await stores.models.put_blob(data) == sha  # idempotent
    assert sorted(p.name for p in (tmp_path / "blobs").iterdir()) == [sha]
    assert await stores.models.get_blob(sha) == data


async def test_put_blob_with_wrong_expected_sha_stores_nothing(stores, tmp_path) -> None:
    with pytest.raises(BlobCorruptError, match="hashes to"):
        await stores.models.put_blob(b"payload", expected_sha="0" * 64)
    assert list((tmp_path / "blobs").iterdir()) == []


async def test_corrupt_blob_is_refused_and_quarantined(stores, tmp_path) -> None:
    sha = await stores.models.put_blob(b"weights")
    (tmp_path / "blobs" / sha).write_bytes(b"rotted")
    with pytest.raises(BlobCorruptError) as info:
        await stores.models.get_blob(sha)
    assert info.value.quarantined is not None and info.value.quarantined.read_bytes() == b"rotted"
    assert not stores.models.has_blob(sha)
    with pytest.raises(BlobMissingError):
        await stores.models.get_blob(sha)


async def test_temp_files_left_by_a_crash_are_removed_at_open(tmp_path) -> None:
    blobs = tmp_path / "blobs"
    blobs.mkdir()
    (blobs / ".tmp-deadbeef.part").write_bytes(b"half a fetched model")
    (blobs / f".{'a' * 64}.x1y2.tmp").write_bytes(b"half a written model")
    opened = await open_stores(tmp_path, HybridClock(lambda: 1, 0), "n")
    try:
        assert list(blobs.iterdir()) == []
    finally:
        await opened.close()


async def test_blob_ids_are_validated(stores) -> None:
    with pytest.raises(ValueError, match="sha256"):
        stores.models.blob_path("../../etc/passwd")


async def test_register_and_alias_need_a_held_blob_and_registered_model(stores) -> None:
    with pytest.raises(UnknownModelError):
        await stores.models.register_model("b" * 64, "square8", 2)
    with pytest.raises(UnknownModelError):
        await stores.models.set_alias("production", "b" * 64, 1)
    sha = await stores.models.put_blob(b"net")
    row = await stores.models.register_model(sha, "square8", 2)
    assert row["size"] == 3
    assert await stores.models.register_model(sha, "square8", 2) == row
    assert await stores.models.missing_blobs() == []


async def test_alias_write_with_an_older_term_is_refused_and_counted(stores) -> None:
    sha = await stores.models.put_blob(b"net-1")
    await stores.models.register_model(sha, "square8", 2)
    await stores.models.set_alias("production", sha, term=5)
    with pytest.raises(StaleTermError, match="term 4 is older than the newest term seen"):
        await stores.models.set_alias("production", sha, term=4)
    with pytest.raises(StaleTermError):
        await stores.models.append_promotion_event(
            "square8", 2, sha, None, "swap_production", False, 100, 0.6, 40.0, term=3)
    assert stores.models.stale_term_total == 2
    assert (await stores.models.get_alias("production", "square8", 2))["term"] == 5


async def test_a_newer_term_seen_by_merge_or_election_fences_the_old_leader(stores) -> None:
    sha = await stores.models.put_blob(b"net-2")
    await stores.models.register_model(sha, "square8", 2)
    remote = new_alias("candidate", "square8", 2, sha, 9, 10, "node-b")
    assert (await stores.models.merge([remote])).added == 1
    with pytest.raises(StaleTermError):
        await stores.models.set_alias("production", sha, term=8)
    stores.models.observe_term(12)
    with pytest.raises(StaleTermError):
        await stores.models.set_alias("production", sha, term=11)
    await stores.models.set_alias("production", sha, term=12)


async def test_fence_survives_reopen(tmp_path) -> None:
    first = await open_stores(tmp_path, HybridClock(lambda: 1, 0), "n")
    event = new_promotion("square8", 2, "c" * 64, None, "insufficient_data", False, 20, None,
                          None, 6, 1, "node-b")
    await first.models.merge([event])
    await first.close()
    again = await open_stores(tmp_path, HybridClock(lambda: 1, 0), "n")
    try:
        assert again.models.newest_term == 6
    finally:
        await again.close()


async def test_older_term_alias_from_a_peer_loses_to_the_newer_term(stores) -> None:
    newer = new_alias("production", "hex8", 2, "1" * 64, 3, 1, "node-b")
    older = new_alias("production", "hex8", 2, "2" * 64, 2, 99_999, "node-c")
    await stores.models.merge([newer])
    assert (await stores.models.merge([older])).skipped == 1
    assert (await stores.models.get_alias("production", "hex8", 2))["sha256"] == "1" * 64


async def test_promotion_events_keep_decision_and_reorder_as_separate_fields(stores) -> None:
    sha = "d" * 64
    await stores.models.append_promotion_event(
        "square19", 4, sha, "e" * 64, "retain_production", True, 400, 0.49, -3.5, 1, "sprt H0")
    await stores.models.append_promotion_event(
        "square19", 4, sha, "e" * 64, "rollback", False, 50, None, None, 2)
    events = await stores.models.promotion_events("square19", 4)
    assert [(e["decision"], e["reorder_applied"]) for e in events] == [
        ("retain_production", True), ("rollback", False)]
    assert (await stores.models.summary())[0] == 2


async def test_fence_is_checked_when_the_alias_is_written_not_before(stores) -> None:
    sha = await stores.models.put_blob(b"net-3")
    await stores.models.register_model(sha, "square8", 2)
    newer = new_alias("production", "square8", 2, sha, 9, 10, "node-b")
    # The peer's newer-term row is merged while the old leader's write is on its way.
    merged, refused = await asyncio.gather(
        stores.models.merge([newer]),
        stores.models.set_alias("candidate", sha, term=5),
        return_exceptions=True,
    )
    assert merged.added == 1
    assert isinstance(refused, StaleTermError)
    assert await stores.models.get_alias("candidate", "square8", 2) is None
