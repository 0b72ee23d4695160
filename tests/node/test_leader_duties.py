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

    duties = LeaderDuties(lambda: lead.leading, lambda: lead.term)
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

        duties = LeaderDuties(lambda: lead.leading, lambda: lead.term)
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
