"""The leader's loop across real processes: train on the games a node holds, farm the
evaluation out to every node by assignment, decide, and spread the production model.

Slow (a couple of minutes on loopback): `python3 -m pytest -q -m slow
tests/node/test_loop_process.py`. Games are written into the first node's store before it
starts (legal random games), so the loop runs whether or not selfplay is producing.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from node.datadir import open_data_dir
from node.demo import DEMO, _toml
from storage.hlc import HybridClock
from storage.stores import open_stores
from tests.node.procs import NodeProcess, cli, wait_until
from tests.node.test_pipeline import _game_args


def _seed_games(data_dir, count: int) -> None:
    files = open_data_dir(data_dir)

    async def write() -> None:
        stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                         60_000), files.node_id)
        try:
            await stores.games.add_games([_game_args(i) for i in range(count)])
        finally:
            await stores.close()

    asyncio.run(write())


@pytest.mark.slow
def test_three_processes_train_farm_the_evaluation_and_record_a_decision(tmp_path):
    config = tmp_path / "demo.toml"
    config.write_text(_toml(DEMO), encoding="utf-8")
    env = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json", "--host",
                          "127.0.0.1", "--config", str(config)).stdout)
    _seed_games(tmp_path / "a", 30)
    nodes = [NodeProcess(tmp_path / "a", "start", "--config", str(config), env=env)]
    try:
        nodes[0].wait_healthy(timeout=240)
        for name in ("b", "c"):
            nodes.append(NodeProcess(tmp_path / name, "join", nodes[0].address, "--token",
                                     init["token"], "--voter", "--config", str(config),
                                     env=env))
        for node in nodes:
            node.wait_healthy(timeout=240)  # start-up imports torch: slow on a loaded box

        def decided():
            try:
                status = nodes[0].status()
            except OSError:  # a busy two-core box can take more than the read's 5 s
                return []
            return [e for e in status.get("promotions", [])
                    if e["decision"] != "insufficient_data"]

        events = wait_until(decided, timeout=400, what="a promotion decision", interval=2)
        assert events[0]["decision"] in ("swap_production", "retain_production")
        assert "SPRT" in events[0]["reason"]
        production = events[0]["candidate"] if events[0]["decision"] == "swap_production" \
            else events[0]["incumbent"]

        def everywhere():
            held = []
            for node in nodes:
                configs = node.status().get("configs", [])
                prod = next((c["production"] for c in configs if c["board_type"] == "square8"),
                            None)
                held.append(prod == production
                            and (node.data_dir / "blobs" / production).exists())
            return all(held)

        wait_until(everywhere, timeout=120, what="the production model on every node")
        log = nodes[0].log() + nodes[1].log() + nodes[2].log()
        assert "Traceback" not in log, log
    finally:
        for node in nodes:
            node.stop()
