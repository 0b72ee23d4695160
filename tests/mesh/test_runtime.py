"""The asyncio shell in-process, on real stores: it only carries out the node core's effects,
on its own schedule (no ports are opened: the node has no peers)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh.identity import Identity
from mesh.node import STATE_ELECTION, STATE_INCARNATION, STATE_VOTERS
from mesh.runtime import DeviceInfo, MeshRuntime, RuntimeConfig
from storage.hlc import HybridClock
from storage.rows import new_game
from storage.stores import open_stores


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.01)


async def test_runtime_keeps_rows_gauge_current_and_leads_alone_with_state_saved(tmp_path):
    identity = Identity.from_seed(b"\x07" * 32)
    clock = HybridClock(wall_ms, 60_000)
    stores = await open_stores(tmp_path, clock, identity.node_id)
    registry = CollectorRegistry()
    runtime = MeshRuntime(
        identity=identity, cluster_id="c" * 32, secrets=(b"\x01" * 32,),
        address="127.0.0.1:9", version="test", stores=stores, app=web.Application(),
        registry=registry, config=RuntimeConfig(stores_refresh_s=0.05),
        device=DeviceInfo("cpu", 0, 1), wall_ms=wall_ms)

    def rows(store: str) -> float | None:
        return registry.get_sample_value("ringrift_store_rows", {"store": store})

    try:
        await runtime.start()
        await runtime.initialise_voters((identity.node_id,))
        async with asyncio.TaskGroup() as tasks:
            await runtime.run(tasks)
            await stores.games.put(new_game("square8", 2, [bytes((1, 1, 2, 0))], [1, 2],
                                            clock.now(), identity.node_id))
            # Nobody asks for /api/v1/status: the gauge follows the store on its own schedule.
            await wait_for(lambda: rows("games") == 1.0, 10, "ringrift_store_rows{games} == 1")
            await wait_for(runtime.is_leader, 10, "the lone voter to lead")
            await runtime.stop()
        # The core's SaveState effects reached the state table.
        assert await stores.state.get_state(STATE_INCARNATION) == 1
        assert (await stores.state.get_state(STATE_VOTERS))["voters"] == [identity.node_id]
        term, voted_for = await stores.state.get_state(STATE_ELECTION)
        assert term >= 1 and voted_for == identity.node_id
    finally:
        await stores.close()
