"""A fresh `ringrift-node start` turns idle time into stored games, shown in its status and
metrics, and `ringrift-node selfplay` stores its games through the running node."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import time
from pathlib import Path

from engine.records import check_finished
from storage.hlc import HybridClock
from storage.stores import open_stores
from tests.node.procs import NodeProcess, cli, wait_until

SELFPLAY_ON = {"RINGRIFT_SELFPLAY_ENABLED": "true", "RINGRIFT_SELFPLAY_CONCURRENCY": "4",
               "RINGRIFT_SELFPLAY_MODEL_CHECK_S": "1"}


async def _games(data_dir: Path) -> list[dict]:
    stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                     60_000), "reader")
    try:
        return await stores.games.games_for("square8", 2)
    finally:
        await stores.close()


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_a_fresh_node_stores_selfplay_games_and_keeps_doing_so(tmp_path):
    node = NodeProcess(tmp_path / "n", "start", env=SELFPLAY_ON)
    try:
        node.wait_healthy()
        first = wait_until(lambda: node.status()["stores"]["games"]["count"], 120,
                           "a stored selfplay game")
        status = node.status()
        assert status["state"] == "selfplay" and status["device"] == "cpu"
        assert re.fullmatch(r"[0-9a-f]{64}", status["production_model"])
        assert status["selfplay"]["board_type"] == "square8"
        # The node leads itself: its pipeline writes the allocation, its selfplay follows it.
        wait_until(lambda: node.status()["selfplay"]["allocated"], 60, "the leader's allocation")
        wait_until(lambda: node.status()["stores"]["games"]["count"] > first, 120,
                   "more games")
        metrics = node.get("/metrics")[1].decode()
        assert _metric(metrics, 'ringrift_selfplay_games_total{board_type="square8",'
                                'num_players="2"}') >= 1
        assert _metric(metrics, "ringrift_selfplay_moves_total") > 0
        assert _metric(metrics, "ringrift_selfplay_positions_evaluated_total") > 0
        assert _metric(metrics, 'ringrift_node_state{state="selfplay"}') == 1.0

        played = cli("selfplay", "--games", "2", "--algorithm", "policy", "--data-dir",
                     str(node.data_dir), "--port", str(node.port), "--json")
        figures = json.loads(played.stdout.strip().splitlines()[-1])
        assert figures["games"] == figures["stored"] == 2
    finally:
        assert node.stop(signal.SIGTERM) == 0, node.log()
    # Every stored game replays legally to the result it records.
    for game in asyncio.run(_games(node.data_dir)):
        check_finished("square8", 2, game["swap_rule"], game["moves"], game["policy"],
                       game["rankings"], game["winner"])


def test_selfplay_with_a_data_dir_no_node_holds_is_refused(tmp_path):
    result = cli("selfplay", "--games", "1", "--data-dir", str(tmp_path / "none"), check=False)
    assert result.returncode == 2
    assert "no running node holds" in result.stderr
