"""Hybrid logical clock: packing, monotonicity, causality after a receive, clamping."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storage.hlc import MAX_COUNTER, MAX_HLC, MAX_MS, HybridClock, pack, unpack


class FakeWall:
    def __init__(self, ms: int = 1_000) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@given(st.integers(0, MAX_MS), st.integers(0, MAX_COUNTER))
def test_pack_unpack_round_trips_and_orders_by_ms_then_counter(ms: int, counter: int) -> None:
    stamp = pack(ms, counter)
    assert unpack(stamp) == (ms, counter)
    assert stamp == ms << 16 | counter
    assert stamp < 2**63  # fits SQLite's signed INTEGER


@pytest.mark.parametrize("ms,counter", [(-1, 0), (MAX_MS + 1, 0), (0, -1), (0, MAX_COUNTER + 1)])
def test_pack_rejects_out_of_range_parts(ms: int, counter: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        pack(ms, counter)


events = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(-50, 200)),
        st.tuples(st.just("now"), st.just(0)),
        st.tuples(st.just("recv"), st.integers(0, 3_000 << 16)),
    ),
    max_size=60,
)


@settings(deadline=None, max_examples=200)
@given(events)
def test_stamps_strictly_increase_and_receives_order_after_remote(evts: list) -> None:
    wall = FakeWall()
    clock = HybridClock(wall, max_offset_ms=500)
    last = 0
    for kind, arg in evts:
        if kind == "tick":
            wall.ms = max(0, wall.ms + arg)  # the wall clock may also step backwards
            continue
        if kind == "now":
            stamp = clock.now()
        else:
            limit = ((wall.ms + 500) << 16) | MAX_COUNTER
            stamp = clock.update(arg)
            assert stamp > min(arg, limit)
        assert stamp > last
        assert stamp >= wall.ms << 16
        last = stamp


def test_remote_far_ahead_is_clamped_and_counted() -> None:
    wall = FakeWall(10_000)
    clock = HybridClock(wall, max_offset_ms=1_000)
    stamp = clock.update(pack(10_000 + 1_000_000, 0))
    assert clock.clamped_total == 1
    assert unpack(stamp)[0] <= 10_000 + 1_000 + 1
    within = clock.update(pack(10_500, 3))
    assert clock.clamped_total == 1 and within > pack(10_500, 3)


def test_counter_overflow_borrows_into_ms_and_stays_monotonic() -> None:
    wall = FakeWall(5)
    clock = HybridClock(wall, max_offset_ms=0)
    stamps = [clock.now() for _ in range(MAX_COUNTER + 10)]
    assert all(a < b for a, b in itertools.pairwise(stamps))
    assert unpack(stamps[-1])[0] == 6


def test_update_rejects_non_integer_remote() -> None:
    clock = HybridClock(FakeWall(), max_offset_ms=0)
    for bad in (-1, 1.5, "7", True):
        with pytest.raises(ValueError, match="remote hlc"):
            clock.update(bad)  # type: ignore[arg-type]


def test_exhausted_clock_raises_instead_of_wrapping() -> None:
    clock = HybridClock(FakeWall(MAX_MS), max_offset_ms=0)
    clock.update(MAX_HLC - 1)
    with pytest.raises(OverflowError):
        clock.now()
