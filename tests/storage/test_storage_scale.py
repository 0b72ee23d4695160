"""Scale run (slow): a large import keeps digests equal to a recompute, across a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.digests import Digests, hash_rows
from storage.hlc import HybridClock
from storage.memory import MemoryStores
from storage.rows import new_match
from storage.stores import open_stores

ROWS = 200_000


@pytest.mark.slow
async def test_large_import_digests_match_recompute_and_memory_store(tmp_path: Path) -> None:
    rows = [new_match(f"m{i % (ROWS // 2)}", ["a", "b"], "square8", 2,
                      [1.0, 0.0] if i % 3 else [0.0, 1.0], i, f"n{i % 3}") for i in range(ROWS)]
    memory = MemoryStores().matches
    stores = await open_stores(tmp_path, HybridClock(lambda: 1, 0), "n")
    try:
        for i in range(0, ROWS, 10_000):
            memory.merge(rows[i:i + 10_000])
            await stores.matches.merge(rows[i:i + 10_000])
        assert await stores.matches.summary() == memory.summary()
    finally:
        await stores.close()
    again = await open_stores(tmp_path, HybridClock(lambda: 1, 0), "n")
    try:
        entries = await again.matches.bucket_entries(list(range(256)))
        scratch = Digests.from_hashes(*hash_rows([k for k, _ in entries], [v for _, v in entries]))
        assert await again.matches.summary() == memory.summary() == (ROWS // 2, scratch.root_hex())
    finally:
        await again.close()
