"""Fencing: a leader action carrying an older term than the newest one seen is refused.

Each alias move and promotion event is stamped with the leader's term. A deposed leader that
has not noticed yet (paused process, partition) still holds its old term; once this node has
seen a newer term, its writes are refused here rather than racing the new leader's.
"""

from __future__ import annotations


class StaleTermError(Exception):
    """A write carried a term older than the newest term this store has seen."""

    def __init__(self, term: int, newest: int) -> None:
        super().__init__(f"term {term} is older than the newest term seen ({newest}): refused")
        self.term = term
        self.newest = newest


class TermFence:
    __slots__ = ("newest", "stale_total")

    def __init__(self, newest: int = 0) -> None:
        self.newest = newest
        # Refused writes; exported as a metric (a deposed leader still trying to act).
        self.stale_total = 0

    def observe(self, term: int) -> None:
        """Learn a term (from a merged row, an election, a gossiped leader)."""
        self.newest = max(self.newest, term)

    def check(self, term: int) -> None:
        """Raise StaleTermError for a term older than the newest seen; else observe it."""
        if type(term) is not int or term < 0:
            raise ValueError(f"term {term!r} is not a non-negative int")
        if term < self.newest:
            self.stale_total += 1
            raise StaleTermError(term, self.newest)
        self.newest = term
