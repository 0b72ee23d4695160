"""Rotating the cluster secret on a live cluster: install, use, remove, without a restart."""

from __future__ import annotations

import json

from mesh.token import make_token
from tests.node.procs import NodeProcess, cli, wait_until


def secrets_of(data_dir) -> list[str]:
    return json.loads((data_dir / "cluster.key").read_text())["secrets"]


def test_live_key_rotation_keeps_the_cluster_together_and_retires_the_old_secret(tmp_path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    nodes = [NodeProcess(tmp_path / "a", "start")]
    try:
        nodes[0].wait_healthy()
        nodes.append(NodeProcess(tmp_path / "b", "join", nodes[0].address, "--token",
                                 init["token"]))
        nodes[1].wait_healthy()
        old = secrets_of(tmp_path / "a")[0]
        new = cli("keys", "generate").stdout.strip()
        assert len(bytes.fromhex(new)) == 32
        for action, secret in (("install", new), ("use", new), ("remove", old)):
            for node in nodes:
                out = cli("keys", action, secret, "--data-dir", str(node.data_dir)).stdout
                assert "reloads its keys" in out
        assert all(secrets_of(n.data_dir) == [new] for n in nodes)
        listed = cli("keys", "list", "--data-dir", str(nodes[0].data_dir)).stdout
        assert listed.count("primary") == 1 and "accepted" not in listed

        def both_alive_and_recent():
            views = [n.status()["members"] for n in nodes]
            return all(len(v) == 2 and all(m["state"] == "alive" for m in v) for v in views)

        wait_until(both_alive_and_recent, timeout=30, what="both nodes alive after rotation")
        cluster_id = nodes[0].status()["cluster_id"]
        stale = make_token(cluster_id, bytes.fromhex(old), nodes[0].address)
        refused = cli("join", nodes[0].address, "--token", stale,
                      "--data-dir", str(tmp_path / "c"), check=False, timeout=30)
        assert refused.returncode == 2 and "401: bad_tag" in refused.stderr
        fresh = make_token(cluster_id, bytes.fromhex(new), nodes[0].address)
        nodes.append(NodeProcess(tmp_path / "d", "join", nodes[0].address, "--token", fresh))
        nodes[2].wait_healthy()
        wait_until(lambda: len(nodes[0].status()["members"]) == 3, timeout=30,
                   what="the node joined with the new secret")
    finally:
        for node in nodes:
            node.stop()


def test_keys_refuses_to_remove_the_primary(tmp_path):
    cli("init", "--data-dir", str(tmp_path / "a"))
    primary = secrets_of(tmp_path / "a")[0]
    result = cli("keys", "remove", primary, "--data-dir", str(tmp_path / "a"), check=False)
    assert result.returncode == 2
    assert "cannot remove the primary secret" in result.stderr
    assert secrets_of(tmp_path / "a") == [primary]
