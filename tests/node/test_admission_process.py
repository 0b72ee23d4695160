"""A real node refuses malformed, oversized, replayed, forged and foreign messages, counts each
by reason on /metrics, and keeps serving."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

from mesh.identity import Identity
from mesh.keyring import Keyring
from mesh.membership_messages import Gossip
from mesh.wire import Wire
from node.datadir import open_data_dir
from tests.node.procs import NodeProcess, cli

GOSSIP = "/mesh/v1/gossip"


def post(node: NodeProcess, path: str, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{node.address}{path}", data=body, method="POST",
                                     headers={"Content-Type": "application/x-msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def refused(node: NodeProcess) -> dict[str, float]:
    _, body = node.get("/metrics")
    pattern = re.compile(r'^ringrift_mesh_refused_total\{reason="(\w+)"\} ([0-9.e+]+)$', re.MULTILINE)
    return {reason: float(value) for reason, value in pattern.findall(body.decode())}


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_bad_messages_are_refused_counted_and_the_node_keeps_running(tmp_path):
    cli("init", "--data-dir", str(tmp_path / "n"), "--host", "127.0.0.1")
    files = open_data_dir(tmp_path / "n")
    node = NodeProcess(tmp_path / "n", "start")
    try:
        node.wait_healthy()
        peer = Identity.generate()
        good = Wire(files.cluster.cluster_id, peer, Keyring(files.cluster.secrets))
        forger = Wire(files.cluster.cluster_id, peer, Keyring([b"\x07" * 32]))
        foreign = Wire("another-cluster", peer, Keyring(files.cluster.secrets))
        msg = Gossip([])

        assert post(node, GOSSIP, b"\x93garbage that is not an envelope......")[0] == 400
        assert post(node, GOSSIP, b"\x00" * (600 * 1024))[0] == 413
        sealed = good.seal(msg, now_ms(), to=files.node_id)
        assert post(node, GOSSIP, sealed)[0] == 204
        status, line = post(node, GOSSIP, sealed)
        assert status // 100 == 4 and line.startswith("replay:")
        status, line = post(node, GOSSIP, forger.seal(msg, now_ms(), to=files.node_id))
        assert (status, line.split(":")[0]) == (401, "bad_tag")
        status, line = post(node, GOSSIP, foreign.seal(msg, now_ms(), to=files.node_id))
        assert (status, line.split(":")[0]) == (403, "bad_cluster")
        stale = good.seal(msg, now_ms() - 3_600_000, to=files.node_id)
        assert post(node, GOSSIP, stale)[1].startswith("stale:")

        counts = refused(node)
        for reason in ("malformed", "too_large", "replay", "bad_tag", "bad_cluster", "stale"):
            assert counts[reason] == 1, (reason, counts)
        assert node.get("/healthz")[0] == 200
        assert node.status()["node_id"] == files.node_id
    finally:
        assert node.stop() == 0, node.log()
