"""The leader's status page of a real 3-node cluster, in headless Chromium at a phone's width."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from engine.net import initial_model, save_model
from node.datadir import open_data_dir
from storage.hlc import HybridClock
from storage.stores import open_stores
from tests.node.browser import CHROMIUM, load_page
from tests.node.procs import NodeProcess, cli, wait_until, write_rows

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None,
                       reason="chromium not installed (Debian: apt-get install chromium)"),
]


def leader_history(data_dir: Path) -> None:
    """A production model, a candidate and two promotion decisions on a stopped node."""
    files = open_data_dir(data_dir)

    async def write() -> None:
        stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                         60_000), files.node_id)
        try:
            old, new = [await stores.models.put_blob(save_model(initial_model("square8", 2,
                                                                              seed=seed)))
                        for seed in (11, 12)]
            for sha in (old, new):
                await stores.models.register_model(sha, "square8", 2)
            await stores.models.set_alias("production", new, term=1)
            await stores.models.set_alias("candidate", old, term=1)
            await stores.models.append_promotion_event(
                "square8", 2, new, old, "swap_production", False, 400, 0.58, 41.0, term=1,
                reason="SPRT accepted elo1 after 400 games")
            for i in range(12):
                await stores.matches.record_match(f"g{i}", [new, old], "square8", 2,
                                                  [1.0, 0.0] if i % 3 else [0.0, 1.0])
        finally:
            await stores.close()

    asyncio.run(write())


def test_leader_page_shows_every_member_without_console_errors(tmp_path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    write_rows(tmp_path / "a", tag="a", games=30, matches=[])
    leader_history(tmp_path / "a")
    # The leader checks drift against a random peer every second, so the page shows a check;
    # its pipeline works on another config, so no evaluation games load the machine meanwhile.
    quiet = {"RINGRIFT_PIPELINE_CONFIGS": "hex8:2"}
    nodes = [NodeProcess(tmp_path / "a", "start",
                         env={**quiet, "RINGRIFT_MONITORING_DRIFT_CHECK_INTERVAL_S": "1"})]
    try:
        nodes[0].wait_healthy()
        for name in ("b", "c"):
            nodes.append(NodeProcess(tmp_path / name, "join", nodes[0].address,
                                     "--token", init["token"], env=quiet))
        for node in nodes:
            node.wait_healthy()
        leader = nodes[0]
        ids = [n.status()["node_id"] for n in nodes]
        wait_until(lambda: sorted(m["state"] for m in leader.status()["members"])
                   == ["alive"] * 3 and leader.status()["leader"] == ids[0],
                   timeout=60, what="three alive members and a leader on the first node")
        wait_until(lambda: leader.status()["drift"]["last"], timeout=60,
                   what="a periodic drift check on the leader")
        screenshot = tmp_path / "status-page.png"
        page = load_page(f"http://{leader.address}/", screenshot)
        print(f"status page screenshot: {screenshot}")
        assert page.errors == []
        for node, node_id in zip(nodes, ids, strict=True):
            assert node_id[:12] in page.text and node.address in page.text
        for text in ("this node leads", "swap_production", "square8", "square8_2"):
            assert text in page.text, text
        assert page.overflow_px <= 0, "the page is wider than a phone's screen"
        assert screenshot.stat().st_size > 10_000
        follower = load_page(f"http://{nodes[1].address}/", tmp_path / "follower.png")
        assert follower.errors == [] and "this node follows" in follower.text
    finally:
        for node in nodes:
            node.stop()
