"""`ringrift-node import` as a user runs it: through the running node, and across the mesh."""

from __future__ import annotations

import json

import pytest

from tests.node.importer.sources import copy_seed
from tests.node.procs import NodeProcess, cli, wait_until


def store(node: NodeProcess, name: str) -> tuple[int, str]:
    summary = node.status()["stores"][name]
    return summary["count"], summary["root"]


def test_two_nodes_importing_different_files_converge_through_the_mesh(tmp_path):
    service = copy_seed("elo_service.db", tmp_path / "src" / "elo_service.db")
    recon = copy_seed("elo_reconciliation.db", tmp_path / "src" / "unified_elo.db")
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    # A stopped node imports on its own, with the same counts a running node reports.
    dry = json.loads(cli("import", str(service), "--data-dir", str(tmp_path / "a"),
                         "--dry-run", "--json", "--no-progress").stdout.splitlines()[-1])
    assert dry["matches"]["imported"] == 1591 and dry["dry_run"] is True
    nodes = [NodeProcess(tmp_path / "a", "start")]
    try:
        nodes[0].wait_healthy()
        nodes.append(NodeProcess(tmp_path / "b", "join", nodes[0].address, "--token",
                                 init["token"]))
        nodes[1].wait_healthy()
        # Each running node is asked to import one file (signed with its data dir's key).
        for node, path in zip(nodes, (service, recon), strict=True):
            out = cli("import", str(path), "--data-dir", str(node.data_dir),
                      "--port", str(node.port), "--json")
            report = json.loads(out.stdout.splitlines()[-1])
            assert report["files"][0]["error"] is None, report
            assert "importing through it" in out.stderr
        # Both hold the union of the two imports: the rows of one source row are the same rows
        # wherever it was imported (ids and versions from the source), so ratings, a pure
        # function of the rows, are the same on both too.
        converged = wait_until(
            lambda: len({store(n, "matches") for n in nodes}) == 1 and store(nodes[0], "matches"),
            timeout=90, what="identical match stores on both importing nodes")
        assert converged[0] >= 1591
    finally:
        for node in nodes:
            node.stop()


@pytest.mark.slow  # 25 s of real processes; the default run interrupts an import in-process
def test_an_import_killed_midway_leaves_consistent_stores_and_a_rerun_completes(tmp_path):
    import signal
    import sqlite3
    import subprocess
    import sys

    from tests.node.procs import node_env
    from tools.bench.reference_import import write_files

    files = write_files(tmp_path, 20_000)  # 60,000 rows: six merge batches
    for name in ("killed", "clean"):
        cli("init", "--data-dir", str(tmp_path / name), "--host", "127.0.0.1")
    cli("import", *map(str, files), "--data-dir", str(tmp_path / "clean"), "--no-progress",
        timeout=300)
    proc = subprocess.Popen(
        [sys.executable, "-m", "node.cli", "import", *map(str, files), "--data-dir",
         str(tmp_path / "killed"), "--no-progress"],
        env=node_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    db = tmp_path / "killed" / "node.db"

    def some_rows_committed() -> bool:
        if proc.poll() is not None:
            return True
        try:
            conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
            try:
                return conn.execute("SELECT count(*) FROM matches").fetchone()[0] > 0
            finally:
                conn.close()
        except sqlite3.Error:
            return False

    try:
        wait_until(some_rows_committed, timeout=240, what="the first committed import batch")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        # The node opens the interrupted stores, and running the import again completes it.
        cli("import", *map(str, files), "--data-dir", str(tmp_path / "killed"), "--no-progress",
            timeout=300)
    finally:
        proc.kill()
    nodes = [NodeProcess(tmp_path / name, "start") for name in ("killed", "clean")]
    try:
        for node in nodes:
            node.wait_healthy()
        assert store(nodes[0], "matches") == store(nodes[1], "matches")
        assert store(nodes[0], "matches")[0] == 60_000
    finally:
        for node in nodes:
            node.stop()
