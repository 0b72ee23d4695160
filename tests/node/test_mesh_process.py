"""Real processes on loopback: join through the CLI, then every store converges everywhere."""

from __future__ import annotations

import hashlib
import json

from mesh.token import make_token
from tests.node.procs import NodeProcess, cli, wait_until, write_rows

STORES = ("games", "matches", "models")


def roots(node: NodeProcess) -> tuple:
    status = node.status()
    return tuple((s, status["stores"][s]["root"], status["stores"][s]["count"]) for s in STORES)


def test_three_nodes_joined_by_cli_converge_to_identical_roots(tmp_path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    token = init["token"]
    blob = b"model weights " * 1000
    # Rows written on each node while it is stopped; overlapping match ids test LWW merging.
    write_rows(tmp_path / "a", tag="a", games=40, matches=[("m1", 1.0), ("m2", 0.5)], blob=blob)
    nodes = [NodeProcess(tmp_path / "a", "start")]
    try:
        nodes[0].wait_healthy()
        for name in ("b", "c"):
            joiner = NodeProcess(tmp_path / name, "join", nodes[0].address, "--token", token)
            nodes.append(joiner)
            joiner.wait_healthy()
        # Stop the joiners, write different rows on each, restart them without the token.
        for node, tag in zip(nodes[1:], ("b", "c"), strict=True):
            assert node.stop() == 0, node.log()
            write_rows(node.data_dir, tag=tag, games=25, matches=[("m2", 0.0), (f"m-{tag}", 1.0)])
        nodes[1:] = [NodeProcess(n.data_dir, "start", port=n.port) for n in nodes[1:]]
        for node in nodes:
            node.wait_healthy()

        def converged():
            seen = {roots(n) for n in nodes}
            return len(seen) == 1 and seen

        final = wait_until(converged, timeout=60, what="identical store roots on all nodes")
        counts = {store: count for store, _root, count in next(iter(final))}
        assert (counts["games"], counts["matches"]) == (90, 4)
        # The registry holds the written model, and the leader's pipeline adds the seeded starting
        # model of each configured config with its production alias (identical everywhere).
        assert counts["models"] >= 1
        sha = hashlib.sha256(blob).hexdigest()
        for node in nodes:
            members = node.status()["members"]
            assert sorted(m["state"] for m in members) == ["alive"] * 3
            blob_file = node.data_dir / "blobs" / sha
            wait_until(blob_file.exists, timeout=30, what=f"blob on {node.data_dir.name}")
            assert hashlib.sha256(blob_file.read_bytes()).hexdigest() == sha
    finally:
        for node in nodes:
            node.stop()


def test_join_with_a_bad_token_fails_at_once_and_writes_nothing(tmp_path):
    cli("init", "--data-dir", str(tmp_path / "a"), "--host", "127.0.0.1")
    node = NodeProcess(tmp_path / "a", "start")
    other = json.loads(cli("init", "--data-dir", str(tmp_path / "other"), "--json").stdout)
    try:
        node.wait_healthy()
        result = cli("join", node.address, "--token", other["token"],
                     "--data-dir", str(tmp_path / "b"), check=False, timeout=30)
        assert result.returncode == 2
        assert "cannot join through" in result.stderr and "403: bad_cluster" in result.stderr
        assert not (tmp_path / "b" / "node.json").exists()
        cluster_id = node.status()["cluster_id"]
        wrong_secret = make_token(cluster_id, b"\x01" * 32, node.address)
        forged = cli("join", node.address, "--token", wrong_secret,
                     "--data-dir", str(tmp_path / "b"), check=False, timeout=30)
        assert forged.returncode == 2
        assert "401: bad_tag" in forged.stderr
        assert not (tmp_path / "b" / "node.json").exists()
        garbled = cli("join", node.address, "--token", "rrn1.garbage",
                      "--data-dir", str(tmp_path / "c"), check=False, timeout=30)
        assert garbled.returncode == 2
        assert "bad join token" in garbled.stderr
        assert node.status()["node_id"]
    finally:
        node.stop()


def test_zeroconf_lets_nodes_of_one_cluster_find_each_other_without_seeds(tmp_path):
    from node.datadir import init_data_dir, open_data_dir

    cli("init", "--data-dir", str(tmp_path / "a"), "--host", "127.0.0.1")
    init_data_dir(tmp_path / "b", cluster=open_data_dir(tmp_path / "a").cluster)
    env = {"RINGRIFT_MESH_ZEROCONF": "true"}
    nodes = [NodeProcess(tmp_path / d, "start", env=env) for d in ("a", "b")]
    try:
        for node in nodes:
            node.wait_healthy()
        wait_until(lambda: all(len(n.status()["members"]) == 2 for n in nodes), timeout=30,
                   what="both nodes in each other's membership via zeroconf")
    finally:
        for node in nodes:
            node.stop()
