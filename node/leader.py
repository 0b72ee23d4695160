"""Leader duties: work that only the leader does, started when it gains the lease, stopped
when it loses it.

A duty is an async function `duty(term)` that loops until cancelled. The supervisor starts every
duty when this node leads with a valid lease and cancels them all the moment it does not; each
duty checks `is_leader()` again before any action and passes `term` to every write, so storage
refuses the write if a newer leader has since been seen (fencing). A duty that raises is counted
(`ringrift_leader_duty_failures_total`, `status()`) and started again after a back-off that
doubles with each failure in a row, for as long as the lease of its term holds; one fenced off by
a newer term stops for good. The training, evaluation and promotion pipeline plugs in here as
further duties.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter

from storage.fencing import StaleTermError

log = logging.getLogger("ringrift.leader")

Duty = Callable[[int], Awaitable[None]]


@dataclass(slots=True)
class DutyState:
    """What `status()` reports of one duty in the current (or last) term."""

    state: str = "stopped"  # running, retrying (waiting out its back-off), stopped
    failures: int = 0  # failures in a row; 0 once it ran clean again or a term began
    last_error: str | None = None


class LeaderDuties:
    def __init__(self, is_leader: Callable[[], bool], term: Callable[[], int], *,
                 retry_s: float, retry_max_s: float,
                 registry: CollectorRegistry | None = None) -> None:
        self._is_leader = is_leader
        self._term = term
        self._retry_s = retry_s
        self._retry_max_s = retry_max_s
        self._duties: list[tuple[str, Duty]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._running_term: int | None = None
        self._states: dict[str, DutyState] = {}
        self.terms_led: list[int] = []
        self._failures = Counter("ringrift_leader_duty_failures_total",
                                 "Leader duties that raised (each is retried while the lease "
                                 "holds)", ["duty"], registry=registry)

    def add(self, name: str, duty: Duty) -> None:
        self._duties.append((name, duty))
        self._states[name] = DutyState()
        self._failures.labels(name)

    @property
    def active(self) -> bool:
        """Whether some duty is running right now (not ended, not waiting to be retried)."""
        return any(s.state == "running" for s in self._states.values())

    def status(self) -> dict[str, dict[str, object]]:
        return {name: {"state": s.state, "failures": s.failures, "last_error": s.last_error}
                for name, s in self._states.items()}

    async def update(self) -> None:
        """Start or stop the duties to match leadership now; called after every election step."""
        leading = self._is_leader()
        term = self._term()
        if self._running and (not leading or term != self._running_term):
            await self.stop()
        if leading and not self._running:
            self._running_term = term
            self.terms_led.append(term)
            log.info("leader duties start (term %d)", term)
            for name, duty in self._duties:
                self._states[name] = DutyState("running")
                self._running[name] = asyncio.get_running_loop().create_task(
                    self._guarded(name, duty, term), name=f"duty:{name}")

    def _holds(self, term: int) -> bool:
        return self._is_leader() and self._term() == term

    async def _guarded(self, name: str, duty: Duty, term: int) -> None:
        state = self._states[name]
        while True:
            state.state = "running"
            try:
                await duty(term)
                state.state = "stopped"
                return
            except asyncio.CancelledError:
                state.state = "stopped"
                raise
            except StaleTermError as exc:
                log.warning("leader duty %s fenced off in term %d: %s", name, term, exc)
                state.state, state.last_error = "stopped", f"fenced off: {exc}"
                return
            except Exception as exc:
                state.failures += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                self._failures.labels(name).inc()
                delay = min(self._retry_max_s, self._retry_s * 2 ** min(state.failures - 1, 30))
                log.exception("leader duty %s failed in term %d (%d in a row); retrying in "
                              "%.1f s while the lease holds", name, term, state.failures, delay)
            state.state = "retrying"
            await asyncio.sleep(delay)
            if not self._holds(term):
                state.state = "stopped"
                return

    async def stop(self) -> None:
        if not self._running:
            return
        log.info("leader duties stop (term %s)", self._running_term)
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for state in self._states.values():
            state.state = "stopped"
