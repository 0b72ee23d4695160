"""Cluster settings in the model registry: the selfplay allocation row is validated and
bounded, a malformed one from a peer is refused and counted, and writes are term-fenced."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.fencing import StaleTermError
from storage.hlc import HybridClock
from storage.merge import InvalidRow
from storage.rows import (
    MAX_ALLOCATION_ENTRIES,
    SELFPLAY_ALLOCATION,
    check_allocation,
    new_setting,
    validate_registry,
)
from storage.stores import open_stores

ALLOCATION = [["square8", 2, 11], ["hex8", 3, 1]]


@pytest.fixture
async def stores(tmp_path: Path):
    opened = await open_stores(tmp_path, HybridClock(lambda: 1_000, 60_000), "node-a")
    yield opened
    await opened.close()


def test_an_allocation_is_a_bounded_list_of_distinct_weighted_configs():
    assert check_allocation(ALLOCATION) == [("square8", 2, 11), ("hex8", 3, 1)]
    every = [[b, n, 1] for b in ("square8", "square19", "hex8", "hexagonal") for n in (2, 3, 4)]
    assert len(check_allocation(every)) == MAX_ALLOCATION_ENTRIES
    for bad, why in [
        ([], "not a list of 1..12"),
        (every + [["square8", 2, 1]], "not a list of 1..12"),
        ({"square8": 1}, "not a list"),
        ([["square8", 2, 1], ["square8", 2, 3]], "more than once"),
        ([["square8", 2, 0]], "is not \\[board_type"),
        ([["square8", 2, 1001]], "is not \\[board_type"),
        ([["square8", 2, 1.0]], "is not \\[board_type"),
        ([["square8", 2, True]], "is not \\[board_type"),
        ([["square8", 5, 1]], "is not \\[board_type"),
        ([["chess", 2, 1]], "is not \\[board_type"),
        ([["square8", 2]], "is not \\[board_type"),
    ]:
        with pytest.raises(InvalidRow, match=why):
            check_allocation(bad)


def test_setting_rows_are_keyed_by_name_and_versioned_by_term_then_hlc():
    row = validate_registry(new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 3, 50, "node-a"))
    assert row.key == "s:selfplay_allocation"
    newer_term = validate_registry(new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 4, 10, "node-b"))
    later_hlc = validate_registry(new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 3, 60, "node-a"))
    assert row.version < later_hlc.version < newer_term.version
    for bad, why in [
        ({**new_setting("favourite_colour", "blue", 1, 1, "n")}, "setting name"),
        ({**new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 1, 1, "n"), "extra": 1}, "unexpected"),
        (new_setting(SELFPLAY_ALLOCATION, ALLOCATION, -1, 1, "n"), "term"),
        (new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 1, 1, "no spaces"), "origin_node"),
    ]:
        with pytest.raises(InvalidRow, match=why):
            validate_registry(bad)


async def test_a_malformed_setting_from_a_peer_is_refused_and_counted(stores):
    bad = new_setting(SELFPLAY_ALLOCATION, [["square8", 2, 1]] * 2, 1, 1_000, "peer")
    good = new_setting(SELFPLAY_ALLOCATION, ALLOCATION, 1, 1_000, "peer")
    stats = await stores.models.merge([bad, good])
    assert (stats.invalid, stats.added) == (1, 1)
    assert stores.refusals.total("models") == 1
    assert (await stores.models.setting(SELFPLAY_ALLOCATION))["value"] == ALLOCATION
    with pytest.raises(InvalidRow, match="more than once"):
        await stores.models.set_setting(SELFPLAY_ALLOCATION, bad["value"], term=2)


async def test_an_allocation_written_in_a_stale_term_is_refused_and_counted(stores):
    await stores.models.set_setting(SELFPLAY_ALLOCATION, ALLOCATION, term=2)
    with pytest.raises(StaleTermError):
        await stores.models.set_setting(SELFPLAY_ALLOCATION, [["hex8", 2, 1]], term=1)
    assert stores.models.stale_term_total == 1
    assert (await stores.models.setting(SELFPLAY_ALLOCATION))["value"] == ALLOCATION
    # A newer term learnt from a peer's setting row fences this node's old leader too.
    await stores.models.merge([new_setting(SELFPLAY_ALLOCATION, [["hex8", 4, 2]], 5, 900,
                                           "new-leader")])
    with pytest.raises(StaleTermError):
        await stores.models.set_setting(SELFPLAY_ALLOCATION, ALLOCATION, term=4)
    assert (await stores.models.setting(SELFPLAY_ALLOCATION))["value"] == [["hex8", 4, 2]]


async def test_the_newest_term_seen_survives_a_reopen_through_the_settings_table(tmp_path):
    clock = HybridClock(lambda: 1_000, 60_000)
    first = await open_stores(tmp_path, clock, "node-a")
    await first.models.set_setting(SELFPLAY_ALLOCATION, ALLOCATION, term=7)
    await first.close()
    again = await open_stores(tmp_path, clock, "node-a")
    try:
        assert again.models.newest_term == 7
        with pytest.raises(StaleTermError):
            await again.models.set_setting(SELFPLAY_ALLOCATION, ALLOCATION, term=6)
    finally:
        await again.close()
