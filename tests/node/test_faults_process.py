"""Faults on real nodes: a broken or empty node.db stops start-up with one line, a full disk
pauses writes while the node keeps serving, and the join token comes from a file or the
environment without reaching the config."""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pytest

from node.cli import CliError, join_token_text
from node.config import JOIN_TOKEN_ENV, load_config
from tests.node.procs import NodeProcess, cli, free_port, wait_until, write_rows
from tests.node.test_hostile_rows_process import metric


@pytest.fixture(scope="module")
def stopped_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir whose node has run once: it holds an identity and a node.db."""
    path = tmp_path_factory.mktemp("once") / "a"
    cli("init", "--data-dir", str(path), "--host", "127.0.0.1")
    write_rows(path, tag="a", games=0, matches=[("m1", 1.0)])  # opens and fills node.db
    return path


@pytest.mark.parametrize("damage, words", [
    (lambda db: db.write_bytes(b""), "is empty (0 bytes)"),
    (lambda db: db.write_bytes(b"\x00not sqlite\x00" * 4096), "not a readable SQLite database"),
])
def test_a_broken_or_empty_database_stops_start_up_with_one_line_naming_it(
        stopped_node: Path, tmp_path: Path, damage, words: str) -> None:
    data_dir = tmp_path / "a"
    shutil.copytree(stopped_node, data_dir)  # keeps the key's 0600 mode
    damage(data_dir / "node.db")
    result = cli("start", "--data-dir", str(data_dir), "--port", str(free_port()),
                 check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(data_dir / "node.db") in lines[0] and words in lines[0]
    assert "restore" in lines[0] and "move it aside" in lines[0]


def test_a_full_disk_pauses_writes_and_the_node_keeps_serving(tmp_path: Path) -> None:
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "big"), "--json",
                          "--host", "127.0.0.1").stdout)
    # ~2 MB of games: more than the 1 MiB the joiner's database may hold.
    write_rows(tmp_path / "big", tag="big", games=3000, matches=[])
    big = NodeProcess(tmp_path / "big", "start")
    nodes = [big]
    try:
        big.wait_healthy()
        small = NodeProcess(tmp_path / "small", "join", big.address,
                            env={"RINGRIFT_STORAGE_MAX_DB_MIB": "1",
                                 "RINGRIFT_STORAGE_DISK_RETRY_S": "600",
                                 JOIN_TOKEN_ENV: init["token"]})
        nodes.append(small)
        small.wait_healthy()
        wait_until(lambda: small.status()["disk_full"], timeout=60, what="writes paused")
        assert metric(small, "ringrift_disk_full") == 1.0
        assert metric(small, "ringrift_disk_full_pauses_total") == 1.0
        assert small.get("/healthz")[0] == 200
        rows = small.status()["stores"]["games"]["count"]
        assert rows < 3000
        # Still a member, still answering: the other node sees it alive.
        wait_until(lambda: any(m["state"] == "alive" for m in big.status()["members"]
                               if m["node_id"] == small.status()["node_id"]),
                   timeout=30, what="the paused node alive in its peer's view")
        assert small.proc.poll() is None
        assert small.log().count("writes and selfplay paused") == 1
        assert "Traceback" not in small.log()
    finally:
        for node in nodes:
            node.stop()


def _join_args(**kw: object) -> argparse.Namespace:
    return argparse.Namespace(**{"token": None, "token_file": None, **kw})


def test_the_join_token_comes_from_a_file_or_the_environment_and_not_the_config(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("rrn1.from-file\n")
    assert join_token_text(_join_args(token_file=token_file)) == "rrn1.from-file"
    monkeypatch.setenv(JOIN_TOKEN_ENV, "rrn1.from-env")
    assert join_token_text(_join_args()) == "rrn1.from-env"
    assert join_token_text(_join_args(token="rrn1.flag")) == "rrn1.flag"
    # The loader knows the name: it is not taken for a config key, nor refused as unknown.
    load_config(env={JOIN_TOKEN_ENV: "rrn1.from-env"})
    monkeypatch.delenv(JOIN_TOKEN_ENV)
    with pytest.raises(CliError, match="join needs a token"):
        join_token_text(_join_args())
    with pytest.raises(CliError, match="cannot read it"):
        join_token_text(_join_args(token_file=tmp_path / "missing"))
