"""Hybrid logical clock: 48-bit wall milliseconds and a 16-bit counter packed in one int.

A value is `ms << 16 | counter`, so plain integer comparison orders stamps, and the packed
form fits the signed 64-bit integers SQLite stores. The clock is injected (`wall_ms`) so the
simulator and the tests run it in virtual time.
"""

from __future__ import annotations

from collections.abc import Callable

COUNTER_BITS = 16
MAX_COUNTER = (1 << COUNTER_BITS) - 1
MAX_MS = (1 << 47) - 1  # 47 bits keep packed values below 2**63 (signed SQLite INTEGER)
MAX_HLC = (MAX_MS << COUNTER_BITS) | MAX_COUNTER


def pack(ms: int, counter: int) -> int:
    """Pack wall milliseconds and a counter into one stamp."""
    if not 0 <= ms <= MAX_MS:
        raise ValueError(f"hlc ms {ms!r} out of range, expected 0..{MAX_MS}")
    if not 0 <= counter <= MAX_COUNTER:
        raise ValueError(f"hlc counter {counter!r} out of range, expected 0..{MAX_COUNTER}")
    return (ms << COUNTER_BITS) | counter


def unpack(stamp: int) -> tuple[int, int]:
    """Split a stamp into (ms, counter)."""
    if not 0 <= stamp <= MAX_HLC:
        raise ValueError(f"hlc stamp {stamp!r} out of range, expected 0..{MAX_HLC}")
    return stamp >> COUNTER_BITS, stamp & MAX_COUNTER


class HybridClock:
    """Monotonic stamps close to wall time that also order causally after every stamp seen.

    Stamps are kept as packed ints and advanced by adding one: when the counter would pass
    0xFFFF the carry moves into the millisecond part, so monotonicity survives a burst of more
    than 65,536 events in one millisecond (the clock then runs slightly ahead of the wall).
    """

    __slots__ = ("_last", "_max_offset_ms", "_wall_ms", "clamped_total")

    def __init__(self, wall_ms: Callable[[], int], max_offset_ms: int) -> None:
        if max_offset_ms < 0:
            raise ValueError(f"max_offset_ms {max_offset_ms!r} must be >= 0")
        self._wall_ms = wall_ms
        self._max_offset_ms = max_offset_ms
        self._last = 0
        # Remote stamps that were too far ahead of our wall clock; exported as a metric.
        self.clamped_total = 0

    @property
    def last(self) -> int:
        """The most recent stamp issued or observed (0 before the first)."""
        return self._last

    def _wall_stamp(self) -> int:
        ms = min(max(int(self._wall_ms()), 0), MAX_MS)
        return ms << COUNTER_BITS

    def limit(self, offset_ms: int) -> int:
        """The highest stamp that is at most `offset_ms` ahead of our wall clock now."""
        return min(self._wall_stamp() + (offset_ms << COUNTER_BITS) + MAX_COUNTER, MAX_HLC)

    def now(self) -> int:
        """A stamp greater than every stamp issued or observed before (a local event)."""
        stamp = max(self._wall_stamp(), self._last + 1)
        self._last = self._check(stamp)
        return stamp

    def update(self, remote: int) -> int:
        """Observe a remote stamp (a receive event); returns a stamp greater than both.

        A remote stamp more than `max_offset_ms` ahead of our wall clock is clamped to
        wall + max_offset and counted in `clamped_total`: one box with a wrong clock must not
        drag every later stamp in the cluster into the future.
        """
        if not isinstance(remote, int) or isinstance(remote, bool) or remote < 0:
            raise ValueError(f"remote hlc {remote!r} is not a non-negative int")
        wall = self._wall_stamp()
        limit = self.limit(self._max_offset_ms)
        if remote > limit:
            self.clamped_total += 1
            remote = limit
        stamp = max(wall, self._last + 1, remote + 1)
        self._last = self._check(stamp)
        return stamp

    @staticmethod
    def _check(stamp: int) -> int:
        if stamp > MAX_HLC:
            raise OverflowError(f"hlc stamp {stamp} exceeds {MAX_HLC}")
        return stamp
