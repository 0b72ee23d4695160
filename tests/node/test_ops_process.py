"""Two real nodes whose match rows differ in planted ways: /metrics carries the reference
families, tools.elo_drift names the differences exactly, syncs by each conflict strategy,
keeps history, and the node refuses operator requests not signed by its own key."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from node.datadir import open_data_dir
from storage.hlc import HybridClock
from storage.stores import open_stores
from tests.node.procs import NodeProcess, cli, wait_until
from tests.node.test_metrics_reference import check_reference_families
from tools import elo_drift

# No anti-entropy during the test: the planted differences must stay until a sync we ask for.
QUIET = {"RINGRIFT_MESH_SYNC_INTERVAL_S": "3600"}


def record(data_dir: Path, matches: list[tuple[str, list[str], list[float]]],
           copies: tuple[dict, ...] = ()) -> list[dict]:
    """Record matches into a stopped node's store (and merge `copies`, rows made elsewhere)."""
    files = open_data_dir(data_dir)

    async def write() -> list[dict]:
        stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                         60_000), files.node_id)
        try:
            await stores.matches.merge(list(copies))
            return [await stores.matches.record_match(match_id, players, "square8", 2, result)
                    for match_id, players, result in matches]
        finally:
            await stores.close()

    return asyncio.run(write())


def drift_tool(capsys, *args: str, data_dir: Path, node: NodeProcess) -> tuple[int, dict]:
    """`python -m tools.elo_drift ARGS --json`, run in this process (it talks HTTP to the node
    all the same; a fresh interpreter per call would only add its start-up time)."""
    capsys.readouterr()
    code = elo_drift.main([*args, "--json", "--data-dir", str(data_dir), "--node", node.address])
    out, err = capsys.readouterr()
    assert code in (0, 1), err
    return code, json.loads(out)


def sample(node: NodeProcess, name: str, **labels: str) -> float | None:
    _, body = node.get("/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    return None


def test_drift_tool_names_planted_differences_and_syncs_by_strategy(tmp_path, capsys):
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    token = json.loads(cli("init", "--data-dir", str(a_dir), "--json",
                           "--host", "127.0.0.1").stdout)["token"]
    win, loss = [1.0, 0.0], [0.0, 1.0]
    m1 = record(a_dir, [("m1", ["p", "q"], win), ("m2", ["p", "q"], win),
                        ("m3", ["p", "r"], win), ("only-a", ["q", "r"], win)])[0]
    nodes = [NodeProcess(a_dir, "start", env=QUIET)]
    try:
        a = nodes[0]
        a.wait_healthy()
        b = NodeProcess(b_dir, "join", a.address, "--token", token, env=QUIET)
        nodes.append(b)
        b.wait_healthy()
        assert b.stop() == 0
        # b holds m1 alike, m2 with the other result (written later: the newer version), no m3,
        # and a row of its own.
        record(b_dir, [("m2", ["p", "q"], loss), ("only-b", ["p", "r"], loss)], copies=(m1,))
        b = nodes[1] = NodeProcess(b_dir, "start", port=b.port, env=QUIET)
        b.wait_healthy()
        wait_until(lambda: sorted(m["state"] for m in a.status()["members"]) == ["alive"] * 2,
                   timeout=30, what="both nodes alive in a's view")

        _, metrics = a.get("/metrics")
        check_reference_families(metrics.decode())
        # A current member gets its own remote_host series, at zero, once a has seen it.
        wait_until(lambda: sample(a, "ringrift_elo_sync_operations_total",
                                  remote_host=b.address, result="success") == 0,
                   timeout=30, what="zero Elo sync series for member b")

        code, out = drift_tool(capsys, "check-drift", "--peer", b.address, "--board-type",
                               "square8", "--num-players", "2", data_dir=a_dir, node=a)
        (report,) = out["reports"]
        assert (report["board_type"], report["num_players"]) == ("square8", 2)
        assert report["matches"]["only_source"]["ids"] == ["m3", "only-a"]
        assert report["matches"]["only_target"]["ids"] == ["only-b"]
        assert report["matches"]["differing"]["ids"] == ["m2"]
        assert report["participants_in_both"] == 3 and report["max_rating_diff"] > 50
        assert code == 1 and report["is_significant"]
        _, offline = drift_tool(capsys, "check-drift", "--db", str(b_dir / "node.db"),
                                data_dir=a_dir, node=a)
        assert offline["reports"][0]["matches"] == report["matches"]
        assert offline["reports"][0]["max_rating_diff"] == report["max_rating_diff"]
        assert sample(a, "ringrift_elo_drift_max", board_type="square8",
                      num_players="2") == report["max_rating_diff"]
        assert sample(a, "ringrift_elo_drift_significant", board_type="square8",
                      num_players="2") == 1

        _, skip = drift_tool(capsys, "sync", "--host", b.address, "--strategy", "SKIP",
                             data_dir=a_dir, node=a)
        assert (skip["matches_added"], skip["matches_conflict"], skip["matches_resolved"],
                skip["matches_replaced"], skip["matches_skipped"]) == (1, 1, 0, 0, 2)
        _, lww = drift_tool(capsys, "sync", "--host", b.address, "--strategy", "LAST_WRITE_WINS",
                            data_dir=a_dir, node=a)
        assert (lww["matches_added"], lww["matches_conflict"], lww["matches_resolved"],
                lww["matches_replaced"]) == (0, 1, 1, 1)
        _, after_lww = drift_tool(capsys, "check-drift", "--peer", b.address, data_dir=a_dir,
                                  node=a)
        matches = after_lww["reports"][0]["matches"]
        assert matches["differing"]["count"] == 0 and matches["only_source"]["ids"] == [
            "m3", "only-a"]

        # reconcile-all with no hosts named: every alive member (b), then a drift check each.
        code, whole = drift_tool(capsys, "reconcile-all", "--strategy", "LAST_WRITE_WINS",
                                 data_dir=a_dir, node=a)
        assert (code, whole["nodes_synced"], whole["nodes_failed"]) == (0, [b.address], [])
        assert (whole["total_matches_added"], whole["total_conflicts"]) == (0, 0)
        assert whole["max_drift"] == after_lww["reports"][0]["max_rating_diff"]

        _, history = drift_tool(capsys, "history", data_dir=a_dir, node=a)
        h = history["square8_2"]
        last = after_lww["reports"][0]
        diffs = [report["max_rating_diff"], last["max_rating_diff"], last["max_rating_diff"]]
        assert diffs[1] < 0.8 * diffs[0]  # LWW took b's m2: a's ratings moved towards b's
        assert (h["snapshot_count"], h["trend"]) == (3, "improving")
        assert h["persistent_drift"] == last["is_significant"]  # the first check was too
        assert h["avg_drift_last_hour"] == round(sum(diffs) / 3, 3)
        _, status = drift_tool(capsys, "status", data_dir=a_dir, node=a)
        assert status["last"]["square8_2"]["target"] == b.address
        assert sample(a, "ringrift_elo_sync_operations_total", remote_host=b.address,
                      result="success") == 3
        assert sample(a, "ringrift_elo_sync_matches_added_total", remote_host=b.address) == 1
        assert sample(a, "ringrift_elo_sync_conflicts_total", remote_host=b.address) == 2

        # Only this node's own key may ask: b's key (a cluster member) and no key are refused.
        assert elo_drift.main(["sync", "--host", b.address, "--data-dir", str(b_dir),
                               "--node", a.address]) == 2
        assert "not signed by this node's identity key" in capsys.readouterr().err
        request = urllib.request.Request(f"http://{a.address}/api/v1/ops/sync", data=b"{}",
                                         method="POST")
        try:
            urllib.request.urlopen(request, timeout=10)
            raise AssertionError("an unsigned operator request was accepted")
        except urllib.error.HTTPError as exc:
            assert exc.code == 401
        assert sample(a, "ringrift_ops_refused_total", status="401") == 2

        text = cli("status", "--peer", a.address).stdout
        assert a.status()["node_id"] in text and b.status()["node_id"] in text
        assert "drift    square8_2" in text
    finally:
        for node in nodes:
            node.stop()
