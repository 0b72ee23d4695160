"""`ringrift-node import` as a user runs it: through the running node, and across the mesh."""

from __future__ import annotations

import json

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
