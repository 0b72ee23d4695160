"""Real `ringrift-node` processes: init, start, health, status, clean shutdown."""

from __future__ import annotations

import json
import os
import signal
import stat

from tests.node.procs import NodeProcess, cli


def test_init_creates_identity_and_prints_the_join_token_last(tmp_path):
    data = tmp_path / "n1"
    result = cli("init", "--data-dir", str(data), "--json")
    info = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(info) >= {"node_id", "cluster_id", "token"}
    assert len(info["node_id"]) == 32
    assert stat.S_IMODE(os.stat(data / "identity.key").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(data / "cluster.key").st_mode) == 0o600
    plain = cli("init", "--data-dir", str(tmp_path / "n2"))
    assert plain.stdout.strip().splitlines()[-1].startswith(info["token"][:4])


def test_init_refuses_to_overwrite_an_existing_node(tmp_path):
    cli("init", "--data-dir", str(tmp_path / "n"))
    again = cli("init", "--data-dir", str(tmp_path / "n"), check=False)
    assert again.returncode == 2
    assert "already holds a node" in again.stderr


def test_start_serves_health_and_status_and_stops_cleanly_on_sigterm(tmp_path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "n"), "--json").stdout)
    node = NodeProcess(tmp_path / "n", "start")
    try:
        node.wait_healthy()
        status = node.status()
        assert status["node_id"] == init["node_id"]
        assert status["cluster_id"] == init["cluster_id"]
        assert status["uptime_s"] >= 0
        for name in ("games", "matches", "models"):
            assert status["stores"][name]["count"] == 0
            assert isinstance(status["stores"][name]["root"], str)
        code, body = node.get("/metrics")
        assert code == 200 and b"ringrift_node_uptime_seconds" in body
    finally:
        assert node.stop(signal.SIGTERM) == 0, node.log()
    assert "stores closed" in node.log()
    assert not (tmp_path / "n" / "node.pid").exists()


def test_start_on_a_missing_data_dir_initialises_it(tmp_path):
    node = NodeProcess(tmp_path / "fresh", "start")
    try:
        node.wait_healthy()
        assert (tmp_path / "fresh" / "identity.key").exists()
        assert node.status()["node_id"]
    finally:
        node.stop()


def test_status_command_reads_a_running_node(tmp_path):
    node = NodeProcess(tmp_path / "n", "start")
    try:
        node.wait_healthy()
        out = cli("status", "--peer", node.address, "--json")
        assert json.loads(out.stdout)["node_id"] == node.status()["node_id"]
        text = cli("status", "--peer", node.address).stdout
        assert "games" in text and node.status()["node_id"] in text
    finally:
        node.stop()


def test_leave_stops_the_local_node(tmp_path):
    node = NodeProcess(tmp_path / "n", "start")
    try:
        node.wait_healthy()
        result = cli("leave", "--data-dir", str(tmp_path / "n"))
        assert "left" in result.stdout
        assert node.proc.wait(timeout=30) == 0
    finally:
        node.stop()


def test_bad_config_stops_start_with_one_line_and_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[node]\nport = 99999\n")
    result = cli("start", "--data-dir", str(tmp_path / "n"), "--config", str(bad), check=False)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "node.port = 99999" in result.stderr


def test_status_of_an_unreachable_peer_fails_clearly(tmp_path):
    result = cli("status", "--peer", "127.0.0.1:1", check=False)
    assert result.returncode == 1
    assert "cannot read http://127.0.0.1:1/api/v1/status" in result.stderr
