"""A peer holding the cluster key, on real nodes over loopback: every row attack it syncs is
refused (or, for a game that is not RingRift, quarantined), counted, and the honest nodes keep
their leader and equal roots. Floods of connections and of half-sent bodies leave the node
answering with bounded memory."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import socket
import time
from pathlib import Path

import pytest

from node.datadir import init_data_dir, open_data_dir
from storage.hlc import COUNTER_BITS, MAX_HLC, HybridClock
from storage.merge import Row, Strategy, canonical_bytes, match_version
from storage.rows import MODEL_FIELDS, model_key, new_alias, new_game, new_match, new_model
from storage.stores import open_stores
from tests.node.procs import NodeProcess, cli, wait_until, write_rows

STORES = ("games", "matches", "models")
ATTACKS = {  # (scope, reason) each attack must move on every honest node
    "hlc=MAX match": ("matches", "clock_ahead"),
    "inconsistent match": ("matches", "inconsistent"),
    "2**40-byte model": ("models", "too_large"),
    "alias at term 2**63-1": ("models", "term_ahead"),
    "game that is not RingRift": ("games", "replay_illegal"),
}


def metric(node: NodeProcess, name: str, **labels: str) -> float:
    code, body = node.get("/metrics")
    assert code == 200
    want = {f'{k}="{v}"' for k, v in labels.items()}
    for line in body.decode().splitlines():
        if line.startswith(name + "{") and want <= set(line[len(name) + 1:].split("}")[0]
                                                        .split(",")):
            return float(line.rsplit(" ", 1)[1])
        if line.startswith(name + " ") and not labels:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def roots(node: NodeProcess) -> tuple:
    stores = node.status()["stores"]
    return tuple((s, stores[s]["root"], stores[s]["count"]) for s in STORES)


def poison(data_dir: Path) -> None:
    """Write the attacks into a stopped node's stores as a modified node would: past its own
    checks, straight into its tables (it then serves them to whoever pulls)."""
    node_id = open_data_dir(data_dir).node_id

    async def write() -> None:
        now_ms = time.time_ns() // 1_000_000
        stores = await open_stores(data_dir, HybridClock(lambda: now_ms, 60_000), node_id)
        now = now_ms << COUNTER_BITS
        try:
            await stores.matches.merge([
                new_match("m1", ["evil", "other"], "square8", 2, [1.0, 0.0], MAX_HLC, node_id)])
            evil = {"match_id": "m2", "participants": ["evil", "evil", "evil", "evil"],
                    "board_type": "square8", "num_players": 2, "result": [1.0] * 4,
                    "hlc": now, "origin_node": node_id}
            await stores.matches._write([Row("m2", match_version(now, node_id), evil)], 0,
                                        Strategy.LAST_WRITE_WINS, None)
            sha = "e" * 64
            model = new_model(sha, "square8", 2, now, node_id, 1 << 40)
            version = hashlib.sha256(canonical_bytes([model[f] for f in sorted(MODEL_FIELDS)]))
            await stores.models._write([Row(model_key(sha), version.digest(), model)], 0,
                                       Strategy.LAST_WRITE_WINS, None)
            await stores.models.merge([
                new_alias("production", "square8", 2, sha, (1 << 63) - 1, now, node_id)])
            await stores.games.merge([
                new_game("square8", 2, [b"\xff\xfe" + bytes(800)] * 1000, [1, 2], now,
                         node_id)])
        finally:
            await stores.close()

    asyncio.run(write())


def test_row_attacks_by_a_key_holder_fail_are_counted_and_honest_nodes_agree(tmp_path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    write_rows(tmp_path / "a", tag="a", games=0, matches=[("h1", 1.0)])
    # The attacker: a member made with the cluster key, its stores poisoned before it starts.
    init_data_dir(tmp_path / "evil", cluster=open_data_dir(tmp_path / "a").cluster)
    poison(tmp_path / "evil")
    token_file = tmp_path / "token"
    token_file.write_text(init["token"] + "\n")
    token_file.chmod(0o600)
    nodes = [NodeProcess(tmp_path / "a", "start")]
    procs = list(nodes)
    try:
        nodes[0].wait_healthy()
        leader = wait_until(lambda: nodes[0].status().get("leader"), timeout=30,
                            what="a leader")
        nodes.append(NodeProcess(tmp_path / "b", "join", nodes[0].address,
                                 "--token-file", str(token_file)))
        attacker = NodeProcess(tmp_path / "evil", "start",
                               env={"RINGRIFT_MESH_SEEDS": nodes[0].address})
        procs += [nodes[1], attacker]
        for node in (nodes[1], attacker):
            node.wait_healthy()
        # The joined agent holds the token neither in its arguments nor its environment.
        for part in ("cmdline", "environ"):
            raw = Path(f"/proc/{nodes[1].proc.pid}/{part}").read_bytes()
            assert init["token"].encode() not in raw, part

        def all_attacks_counted() -> list[str]:
            return [name for name, (scope, reason) in ATTACKS.items()
                    if any(metric(n, "ringrift_refused_total", scope=scope, reason=reason) < 1
                           for n in nodes)]

        wait_until(lambda: not all_attacks_counted(), timeout=90,
                   what="every attack refused and counted on both honest nodes")
        wait_until(lambda: roots(nodes[0]) == roots(nodes[1]), timeout=60,
                   what="equal roots on the honest nodes")
        evil_id = open_data_dir(attacker.data_dir).node_id
        for node in nodes:
            status = node.status()
            assert status["leader"] == leader
            assert status["games_quarantined"]["origins"] == {evil_id: 1}
        # The bad game stays replicated: the honest nodes pulled the attacker's games, and the
        # attacker pulls theirs, so all three agree on games (and only on games).
        wait_until(lambda: attacker.status()["stores"]["games"]
                   == nodes[0].status()["stores"]["games"], timeout=60,
                   what="equal game roots on all three nodes")
        assert roots(attacker) != roots(nodes[0])
    finally:
        for node in procs:
            node.stop()


# --- floods ---------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def half_sent_body(port: int, declared: int, sent: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(f"POST /mesh/v1/sync HTTP/1.1\r\nHost: x\r\nContent-Length: {declared}\r\n"
                 "Content-Type: application/msgpack\r\n\r\n".encode())
    sock.setblocking(False)
    try:
        sock.sendall(b"\x91" * sent)  # as much as the node takes right away
    except BlockingIOError:
        pass
    return sock


@pytest.mark.parametrize("senders, idle", [
    (40, 300),
    pytest.param(200, 5000, marks=pytest.mark.slow),
])
def test_half_sent_bodies_and_idle_connections_leave_the_node_answering_in_bounded_memory(
        tmp_path, senders, idle):
    cli("init", "--data-dir", str(tmp_path / "a"), "--host", "127.0.0.1")
    # The body timeout must outlast the senders' loop, or early bodies are cut off before later
    # ones arrive and the in-flight budget is never reached (a race on a loaded machine).
    env = {"RINGRIFT_MESH_BODY_TIMEOUT_S": "10", "RINGRIFT_MESH_BODIES_IN_FLIGHT_MIB": "8",
           "RINGRIFT_NODE_MAX_CONNECTIONS": "128"}
    node = NodeProcess(tmp_path / "a", "start", env=env)
    socks: list[socket.socket] = []
    try:
        node.wait_healthy()
        before = rss_bytes(node.proc.pid)
        peak = before
        # Each sender declares 8 MiB and sends 1 MiB: held, that would be `senders` MiB.
        for _ in range(senders):
            socks.append(half_sent_body(node.port, 8 << 20, 1 << 20))
            peak = max(peak, rss_bytes(node.proc.pid))
        for _ in range(idle):
            socks.append(socket.create_connection(("127.0.0.1", node.port)))
        assert node.get("/healthz", timeout=10)[0] == 200  # the last one in: all accepted
        wait_until(lambda: metric(node, "ringrift_refused_total", scope="body",
                                  reason="body_timeout") >= 1, timeout=30,
                   what="the slow bodies cut off")
        peak = max(peak, rss_bytes(node.proc.pid))
        assert metric(node, "ringrift_refused_total", scope="body", reason="busy") >= 1
        # The idle flood evicted itself: the node holds no more connections than its limit
        # (plus the descriptors it keeps for itself), not one per connection made.
        assert metric(node, "ringrift_refused_total", scope="connection",
                      reason="evicted_idle") >= 1
        assert len(os.listdir(f"/proc/{node.proc.pid}/fd")) <= 128 + 64
        # Bounded by the 8 MiB budget and the connection limit, not by what was sent.
        assert peak - before < 32 << 20, (before, peak)
        assert node.get("/healthz", timeout=10)[0] == 200
        assert node.proc.poll() is None
        log_lines = node.log().count("refused connection evicted_idle")
        assert log_lines <= 1
    finally:
        for sock in socks:
            sock.close()
        node.stop()
