"""Merge laws of every store (in-memory form): order, grouping and duplication do not matter."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.digests import Digests, hash_rows
from storage.memory import MemoryStore, MemoryStores
from storage.merge import MergeConflictError, Strategy
from tests.storage.storage_strategies import ROWS_BY_STORE

SETTINGS = settings(deadline=None, max_examples=60)


def fresh(name: str) -> MemoryStore:
    return MemoryStores().by_name()[name]


def state(store: MemoryStore) -> tuple:
    keys = sorted(store.keys())
    return store.summary(), store.rows(keys)


def batches_of(name: str):
    return st.lists(st.lists(ROWS_BY_STORE[name], max_size=8), min_size=1, max_size=4)


@pytest.mark.parametrize("name", ["games", "matches", "models"])
def test_merge_is_commutative_associative_and_idempotent(name: str) -> None:
    @SETTINGS
    @given(batches_of(name), st.randoms(use_true_random=False))
    def check(batches: list[list[dict]], rnd) -> None:
        reference = fresh(name)
        for batch in batches:
            reference.merge(batch)

        shuffled = fresh(name)  # any order, any split, with duplicates
        rows = [r for b in batches for r in b]
        rows += rnd.sample(rows, k=len(rows) // 2)
        rnd.shuffle(rows)
        cut = rnd.randint(0, len(rows))
        shuffled.merge(rows[:cut])
        shuffled.merge(rows[cut:])
        assert state(shuffled) == state(reference)

        grouped = fresh(name)  # (A + B) + C == A + (B + C): merge a whole peer's state
        other = fresh(name)
        for batch in batches[1:]:
            other.merge(batch)
        grouped.merge(batches[0])
        grouped.merge(other.rows(sorted(other.keys())))
        assert state(grouped) == state(reference)

        again = reference.merge(rows)  # idempotent: nothing changes the second time
        assert again.added == again.resolved == 0
        assert state(reference) == state(grouped)

    check()


@pytest.mark.parametrize("name", ["games", "matches", "models"])
def test_incremental_digests_match_recompute(name: str) -> None:
    @SETTINGS
    @given(batches_of(name))
    def check(batches: list[list[dict]]) -> None:
        store = fresh(name)
        for batch in batches:
            store.merge(batch)
        entries = store.bucket_entries(list(range(256)))
        scratch = Digests.from_hashes(*hash_rows([k for k, _ in entries], [v for _, v in entries]))
        assert store.bucket_digests() == scratch.as_list()
        assert store.summary() == (len(entries), scratch.root_hex())

    check()


def test_lww_keeps_the_higher_version_and_counts() -> None:
    from storage.rows import new_match

    store = fresh("matches")
    old = new_match("m", ["a", "b"], "square8", 2, [1, 0], 5, "n1")
    new = new_match("m", ["a", "b"], "square8", 2, [0, 1], 6, "n1")
    assert store.merge([new]).added == 1
    stats = store.merge([old])
    assert (stats.skipped, stats.resolved, stats.conflicts) == (1, 0, 0)
    assert store.get("m")["result"] == [0.0, 1.0]


def test_equal_versions_with_different_content_count_a_conflict_resolved_by_content() -> None:
    from storage.rows import new_match

    a = new_match("m", ["a", "b"], "square8", 2, [1, 0], 5, "n1")
    b = new_match("m", ["a", "b"], "square8", 2, [0, 1], 5, "n1")
    one, two = fresh("matches"), fresh("matches")
    s1 = one.merge([a]) + one.merge([b])
    s2 = two.merge([b]) + two.merge([a])
    assert s1.conflicts == s2.conflicts == 1
    assert one.get("m") == two.get("m")


def test_strategies_first_write_wins_skip_and_raise() -> None:
    from storage.rows import new_match

    early = new_match("m", ["a", "b"], "square8", 2, [1, 0], 5, "n1")
    late = new_match("m", ["a", "b"], "square8", 2, [0, 1], 9, "n1")
    fww = fresh("matches")
    fww.merge([late])
    assert fww.merge([early], Strategy.FIRST_WRITE_WINS).resolved == 1
    assert fww.get("m")["hlc"] == 5
    skip = fresh("matches")
    skip.merge([early])
    assert skip.merge([late], Strategy.SKIP).skipped == 1
    assert skip.get("m")["hlc"] == 5
    strict = fresh("matches")
    strict.merge([early])
    assert strict.merge([early], Strategy.RAISE).skipped == 1  # identical is no conflict
    before = strict.summary()
    with pytest.raises(MergeConflictError, match="'m'"):
        strict.merge([late], Strategy.RAISE)
    assert strict.summary() == before
