"""What a receiving node refuses among rows that are well-formed, and what it remembers of it.

`storage.rows` checks a row against itself (types, sizes, a match's scores against its
players). Some rows are well-formed and still must not be taken, judged against the receiver's
own state: a stamp further ahead of its clock than the window (CockroachDB refuses timestamps
past its maximum offset the same way), so that no row can win every last-write-wins merge
forever; a model claiming more bytes than any net this cluster trains; an alias or promotion
event from a term no leader has been seen to win. `Admission` applies those checks after
validation, counts and logs every refusal by reason (`storage.refusals`), and remembers the
(key, version) of each refused row, so that anti-entropy does not pull it again.

Refusals that depend on the receiver's state (clock, term) are remembered only until that
state may have changed (`retry_at`): an honest row from a node whose clock runs a little
ahead, or from a leader whose term this node has not heard yet, is pulled again later.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from storage.hlc import COUNTER_BITS, HybridClock
from storage.merge import InvalidRow, Row
from storage.refusals import RefusalLedger
from storage.rows import row_hlc

# Refused rows remembered per store. A row costs ~150 bytes here; 100,000 bound the memory to
# ~15 MB against a peer that invents new bad rows, and far exceed what honest peers produce.
MEMORY_ROWS = 100_000


@dataclass(frozen=True, slots=True)
class RowPolicy:
    """The receiver's limits on well-formed rows; None switches a check off (tests, tools)."""

    # Refuse a row stamped more than this far ahead of our wall clock (the hlc's maximum offset).
    clock_window_ms: int | None = None
    # Refuse a model row claiming more bytes than this.
    max_model_bytes: int | None = None
    # A state-dependent refusal (term) is retried after this long.
    retry_s: float = 30.0
    memory_rows: int = MEMORY_ROWS

    def __post_init__(self) -> None:
        if self.clock_window_ms is not None and self.clock_window_ms < 0:
            raise ValueError(f"clock_window_ms = {self.clock_window_ms}: expected >= 0")
        if self.max_model_bytes is not None and self.max_model_bytes <= 0:
            raise ValueError(f"max_model_bytes = {self.max_model_bytes}: expected > 0")
        if not self.retry_s > 0:
            raise ValueError(f"retry_s = {self.retry_s}: expected seconds > 0")
        if self.memory_rows <= 0:
            raise ValueError(f"memory_rows = {self.memory_rows}: expected > 0")


class Verdict(NamedTuple):
    """Why a well-formed row is refused; `retry_s` None: for good, else ask again after it."""

    reason: str
    detail: str
    retry_s: float | None = None


# A store kind's own check of a validated row against the receiver's state.
KindCheck = Callable[[Row], Verdict | None]


class RefusedRows:
    """(key, version) of rows refused, each until its retry time; least recently refused go
    first when full."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._rows: OrderedDict[str, tuple[bytes, float]] = OrderedDict()

    def remember(self, key: str, version: bytes, retry_at: float = math.inf) -> None:
        self._rows[key] = (version, retry_at)
        self._rows.move_to_end(key)
        while len(self._rows) > self._capacity:
            self._rows.popitem(last=False)

    def holds(self, key: str, version: bytes, now: float) -> bool:
        """True while `version` of `key` is remembered as refused and not due for a retry."""
        entry = self._rows.get(key)
        if entry is None or entry[0] != version:
            return False
        if entry[1] <= now:
            del self._rows[key]
            return False
        return True

    def __len__(self) -> int:
        return len(self._rows)


class Admission:
    """One store's refusals of well-formed rows, their counts, and the memory of them.

    `hlc_field` names the stamp every row of the store carries; None when kinds differ (the
    model registry), then each row's own (`storage.rows.row_hlc`).
    """

    def __init__(self, store: str, ledger: RefusalLedger, policy: RowPolicy, clock: HybridClock,
                 hlc_field: str | None, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.ledger = ledger
        self.policy = policy
        self._clock = clock
        self._hlc_field = hlc_field
        self._monotonic = monotonic
        self.memory = RefusedRows(policy.memory_rows)
        # The earliest time a refusal that depended on our state may be tried again.
        self._next_retry = math.inf

    def invalid(self, obj: object, exc: InvalidRow) -> None:
        """A row failed validation: counted by reason, remembered when its key is known."""
        self.ledger.refuse(self.store, exc.reason, str(exc))
        if exc.key is not None and exc.version is not None:
            self.memory.remember(exc.key, exc.version)

    def admit(self, rows: list[Row], check: KindCheck | None = None) -> list[Row]:
        """The rows of a validated batch this node takes; the rest are counted and remembered."""
        refused: list[tuple[Row, Verdict]] = []
        window = self.policy.clock_window_ms
        if window is not None:
            limit = self._clock.limit(window)
            field = self._hlc_field
            stamps = ([row[2][field] for row in rows] if field is not None
                      else [row_hlc(row[2]) for row in rows])
            if max(stamps) > limit:
                refused += [(row, self._ahead(stamp, limit))
                            for row, stamp in zip(rows, stamps, strict=True) if stamp > limit]
        if check is not None:
            refused += [(row, verdict) for row in rows if (verdict := check(row)) is not None]
        if not refused:
            return rows
        now = self._monotonic()
        for row, verdict in refused:
            self.ledger.refuse(self.store, verdict.reason, f"{row.key[:80]}: {verdict.detail}")
            retry_at = math.inf if verdict.retry_s is None else now + verdict.retry_s
            self.memory.remember(row.key, row.version, retry_at)
            self._next_retry = min(self._next_retry, retry_at)
        out = {id(row) for row, _ in refused}
        return [row for row in rows if id(row) not in out]

    def _ahead(self, hlc: int, limit: int) -> Verdict:
        ahead_ms = (hlc - limit) >> COUNTER_BITS
        # Due again once our clock has caught up with the stamp (never, for a stamp at MAX).
        return Verdict("clock_ahead", f"hlc {hlc} is {ahead_ms} ms past the clock window",
                       retry_s=ahead_ms / 1000 + 1)

    def retry_due(self) -> bool:
        """True (once) when a refusal that depended on this node's clock or term is due to be
        tried again: a peer already pulled from in full must then be pulled from again."""
        if self._monotonic() < self._next_retry:
            return False
        self._next_retry = math.inf
        return True

    def wanted(self, entries: Sequence[tuple[str, bytes]]) -> list[str]:
        """The keys among listed (key, version) pairs that are not remembered as refused."""
        now = self._monotonic()
        holds = self.memory.holds
        return [key for key, version in entries if not holds(key, version, now)]
