"""Leader duties run exactly while the node leads with a lease, and stale terms are fenced."""

from __future__ import annotations

import asyncio
import logging

from node.leader import LeaderDuties
from storage.hlc import HybridClock
from storage.stores import open_stores


class Leadership:
    def __init__(self) -> None:
        self.leading = False
        self.term = 0


async def test_duties_start_on_gaining_the_lease_and_stop_on_losing_it():
    lead = Leadership()
    ran: list[int] = []
    cancelled: list[int] = []

    async def duty(term: int) -> None:
        ran.append(term)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.append(term)
            raise

    duties = LeaderDuties(lambda: lead.leading, lambda: lead.term, retry_s=0.01, retry_max_s=0.04)
    duties.add("watch", duty)
    await duties.update()
    assert not duties.active and ran == []
    lead.leading, lead.term = True, 3
    await duties.update()
    await asyncio.sleep(0)
    assert duties.active and ran == [3]
    await duties.update()  # still leading in the same term: nothing restarts
    assert ran == [3]
    lead.term = 5  # re-elected in a newer term: duties restart carrying the new term
    await duties.update()
    await asyncio.sleep(0)
    assert ran == [3, 5] and cancelled == [3]
    lead.leading = False
    await duties.update()
    assert not duties.active and cancelled == [3, 5]
    assert duties.terms_led == [3, 5]


async def test_a_duty_with_a_stale_term_is_fenced_off_by_the_registry(tmp_path, caplog):
    stores = await open_stores(tmp_path, HybridClock(lambda: 1_000, 60_000), "f" * 32)
    try:
        sha = await stores.models.put_blob(b"weights")
        await stores.models.register_model(sha, "square8", 2)
        stores.models.observe_term(7)  # a newer leader has been seen
        lead = Leadership()
        lead.leading, lead.term = True, 6

        async def promote(term: int) -> None:
            await stores.models.set_alias("production", sha, term)

        duties = LeaderDuties(lambda: lead.leading, lambda: lead.term, retry_s=0.01, retry_max_s=0.04)
        duties.add("promote", promote)
        with caplog.at_level(logging.WARNING, logger="ringrift.leader"):
            await duties.update()
            await asyncio.sleep(0.1)
        assert "fenced off in term 6" in caplog.text
        assert stores.models.stale_term_total == 1
        assert await stores.models.get_alias("production", "square8", 2) is None
        await duties.stop()
    finally:
        await stores.close()


async def test_a_duty_that_raises_is_visible_and_retried_with_backoff_while_the_lease_holds():
    lead = Leadership()
    lead.leading, lead.term = True, 4
    calls: list[int] = []
    third_run = asyncio.Event()

    async def flaky(term: int) -> None:
        calls.append(term)
        if len(calls) <= 2:
            raise RuntimeError(f"disk full ({len(calls)})")
        third_run.set()
        await asyncio.sleep(3600)  # the duty's own loop, until cancelled

    duties = LeaderDuties(lambda: lead.leading, lambda: lead.term, retry_s=0.01,
                          retry_max_s=0.04)
    duties.add("flaky", flaky)
    await duties.update()
    await asyncio.wait_for(third_run.wait(), timeout=10)
    # Two failures counted and shown, the duty running again in the same term.
    assert calls == [4, 4, 4]
    status = duties.status()["flaky"]
    assert status["state"] == "running" and status["failures"] == 2
    assert status["last_error"] == "RuntimeError: disk full (2)"
    assert duties.active
    await duties.stop()
    assert not duties.active and duties.status()["flaky"]["state"] == "stopped"


async def test_a_failed_duty_is_not_retried_once_the_lease_is_gone():
    lead = Leadership()
    lead.leading, lead.term = True, 2
    failed = asyncio.Event()

    async def broken(term: int) -> None:
        lead.leading = False  # the lease lapses while the duty fails
        failed.set()
        raise RuntimeError("boom")

    duties = LeaderDuties(lambda: lead.leading, lambda: lead.term, retry_s=0.01,
                          retry_max_s=0.01)
    duties.add("broken", broken)
    await duties.update()
    await asyncio.wait_for(failed.wait(), timeout=10)
    task = duties._running["broken"]
    await asyncio.wait_for(task, timeout=10)  # ends after its back-off: not leading any more
    assert duties.status()["broken"] == {"state": "stopped", "failures": 1,
                                         "last_error": "RuntimeError: boom"}
    assert not duties.active
