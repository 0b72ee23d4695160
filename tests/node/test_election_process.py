"""Real processes: three voters elect one leader; kill -9 it; a new one takes over; the old
one comes back as a follower without deposing it."""

from __future__ import annotations

import json
import time

from tests.node.procs import NodeProcess, cli, wait_until


def metric_values(node: NodeProcess) -> dict[str, float]:
    _, body = node.get("/metrics")
    values = {}
    for line in body.decode().splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, value = line.rsplit(" ", 1)
            values[name] = float(value)
    return values


def leaders(nodes: list[NodeProcess]) -> set[tuple[str | None, int]]:
    return {(s["leader"], s["term"]) for s in (n.status() for n in nodes)}


def start_three_voters(tmp_path) -> list[NodeProcess]:
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    nodes = [NodeProcess(tmp_path / "a", "start")]
    nodes[0].wait_healthy()
    for name in ("b", "c"):
        nodes.append(NodeProcess(tmp_path / name, "join", nodes[0].address,
                                 "--token", init["token"], "--voter"))
        nodes[-1].wait_healthy()
    return nodes


def test_leader_killed_is_replaced_and_returns_as_follower(tmp_path):
    nodes = start_three_voters(tmp_path)
    try:
        wait_until(lambda: all(len(n.status()["voters"]) == 3 for n in nodes), timeout=60,
                   what="three voters everywhere")

        def one_leader(group):
            seen = leaders(group)
            if len(seen) == 1:
                leader, term = next(iter(seen))
                if leader is not None:
                    return leader, term
            return None

        leader, term = wait_until(lambda: one_leader(nodes), timeout=30, what="one leader")
        old = next(n for n in nodes if n.status()["node_id"] == leader)
        assert old.status()["leader_duties"] is True
        rest = [n for n in nodes if n is not old]
        old.kill()
        killed_at = time.monotonic()
        new_leader, new_term = wait_until(
            lambda: (r := one_leader(rest)) and r[0] != leader and r, timeout=30,
            what="a new leader among the survivors", interval=0.05)
        print(f"failover after kill -9: {time.monotonic() - killed_at:.2f} s (wall, loopback)")
        assert new_term > term
        metrics = [metric_values(n) for n in rest]
        assert all(m["ringrift_leader_term"] == new_term for m in metrics)
        assert sum(m["ringrift_elections_started_total"] for m in metrics) >= 1
        assert all(m["ringrift_leader_changes_total"] >= 1 for m in metrics)
        assert sum(m["ringrift_leader_is_self"] for m in metrics) == 1

        back = NodeProcess(old.data_dir, "start", port=old.port)
        nodes = [*rest, back]
        back.wait_healthy()
        wait_until(lambda: back.status()["leader"] == new_leader, timeout=30,
                   what="the old leader following the new one")
        time.sleep(3)  # several election timeouts: the returning node must not depose anyone
        assert leaders(nodes) == {(new_leader, new_term)}
    finally:
        for node in nodes:
            node.stop()


def test_leave_on_the_leader_hands_leadership_to_another_voter(tmp_path):
    nodes = start_three_voters(tmp_path)
    try:
        wait_until(lambda: all(len(n.status()["voters"]) == 3 for n in nodes), timeout=60,
                   what="three voters everywhere")
        leader, term = wait_until(
            lambda: len(s := leaders(nodes)) == 1 and next(iter(s))[0] and next(iter(s)),
            timeout=30, what="one leader")
        old = next(n for n in nodes if n.status()["node_id"] == leader)
        cli("leave", "--data-dir", str(old.data_dir))
        assert old.proc.wait(timeout=30) == 0
        assert "handing off leadership" in old.log()
        rest = [n for n in nodes if n is not old]
        new_leader, new_term = wait_until(
            lambda: len(s := leaders(rest)) == 1 and next(iter(s))[0] and next(iter(s)),
            timeout=30, what="the hand-off target leading")
        assert new_leader != leader
        # TimeoutNow lets the target campaign at once in term+1: no election timeout, no split.
        assert new_term == term + 1
    finally:
        for node in nodes:
            node.stop()
