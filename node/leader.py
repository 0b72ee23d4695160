"""Leader duties: work that only the leader does, started when it gains the lease, stopped
when it loses it.

A duty is an async function `duty(term)` that loops until cancelled. The supervisor starts every
duty when this node leads with a valid lease and cancels them all the moment it does not; each
duty checks `is_leader()` again before any action and passes `term` to every write, so storage
refuses the write if a newer leader has since been seen (fencing). The training, evaluation and
promotion pipeline plugs in here as further duties.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from storage.fencing import StaleTermError

log = logging.getLogger("ringrift.leader")

Duty = Callable[[int], Awaitable[None]]


class LeaderDuties:
    def __init__(self, is_leader: Callable[[], bool], term: Callable[[], int]) -> None:
        self._is_leader = is_leader
        self._term = term
        self._duties: list[tuple[str, Duty]] = []
        self._running: dict[str, asyncio.Task[None]] = {}
        self._running_term: int | None = None
        self.terms_led: list[int] = []

    def add(self, name: str, duty: Duty) -> None:
        self._duties.append((name, duty))

    @property
    def active(self) -> bool:
        return bool(self._running)

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
                self._running[name] = asyncio.get_running_loop().create_task(
                    self._guarded(name, duty, term), name=f"duty:{name}")

    async def _guarded(self, name: str, duty: Duty, term: int) -> None:
        try:
            await duty(term)
        except asyncio.CancelledError:
            raise
        except StaleTermError as exc:
            log.warning("leader duty %s fenced off in term %d: %s", name, term, exc)
        except Exception:  # a failed duty is logged; the next term starts it again
            log.exception("leader duty %s failed in term %d", name, term)

    async def stop(self) -> None:
        if not self._running:
            return
        log.info("leader duties stop (term %s)", self._running_term)
        tasks = list(self._running.values())
        self._running.clear()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
