"""Refusals of untrusted input: counted by reason, logged at most once per interval per reason.

Anything a peer sends that the node will not take (a row, a connection, a body) is counted here
under a (scope, reason) label pair and logged, but a flood of one kind of refusal must not
become a flood of log lines (one failed accept per connection once wrote 28 MB of log): the
first refusal of a reason is logged at once, later ones within `interval_s` are only counted,
and the next line says how many were left unlogged.

The counts are plain ints so that storage needs no metrics library; `node` exports them to
Prometheus as `ringrift_refused_total{scope,reason}`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

DEFAULT_INTERVAL_S = 60.0


class RefusalLedger:
    """Counts of refusals by (scope, reason), with a rate-limited log line per pair."""

    def __init__(self, logger: logging.Logger, *, interval_s: float = DEFAULT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s = {interval_s}: expected seconds > 0")
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self.counts: dict[tuple[str, str], int] = {}
        self._logged_at: dict[tuple[str, str], float] = {}
        self._unlogged: dict[tuple[str, str], int] = {}

    def refuse(self, scope: str, reason: str, detail: str, n: int = 1) -> None:
        """Count `n` refusals of `reason` in `scope`; log `detail` unless one was just logged."""
        label = (scope, reason)
        self.counts[label] = self.counts.get(label, 0) + n
        now = self._clock()
        last = self._logged_at.get(label)
        if last is not None and now - last < self._interval_s:
            self._unlogged[label] = self._unlogged.get(label, 0) + n
            return
        self._logged_at[label] = now
        quiet = self._unlogged.pop(label, 0)
        more = f" (and {quiet} more since the last line)" if quiet else ""
        self._log.warning("refused %s %s: %s%s", scope, reason, " ".join(detail.split())[:300],
                          more)

    def total(self, scope: str | None = None, reason: str | None = None) -> int:
        """Refusals counted so far, of one scope and/or reason when given."""
        return sum(n for (s, r), n in self.counts.items()
                   if (scope is None or s == scope) and (reason is None or r == reason))
