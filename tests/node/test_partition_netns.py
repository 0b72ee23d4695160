"""Real processes on a real (virtual) network: three voters, each in its own Linux network
namespace on one bridge; one node is cut off and healed again.

Pins down the election's partition behaviour end to end, over TCP between distinct addresses:
the cut-off minority never holds a lease while the majority keeps (or elects) exactly one
leader, and the node that comes back follows that leader without deposing it (pre-vote: its
term did not run away while it was alone). Needs root (CI runs as root); skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mesh.election import ElectionConfig
from tests.node.netns import Host, Lan, NetnsUnavailable
from tests.node.procs import node_env, wait_until

REPO = Path(__file__).resolve().parents[2]
PORT = 7420  # every node has its own address, so all use the default port
# "Several election timeouts" of the LAN profile, in which nothing may change.
QUIET_S = 3 * ElectionConfig.lan().election_timeout_max


def ns_env(host: Host) -> dict[str, str]:
    env = {k: v for k, v in node_env().items() if not k.lower().endswith("_proxy")}
    env["RINGRIFT_NODE_HOST"] = host.ip
    env["NO_PROXY"] = env["no_proxy"] = "*"  # the status CLI's urllib must not use a proxy
    return env


class NsNode:
    """One `ringrift-node` process inside a namespace of the LAN; its output goes to a log."""

    def __init__(self, host: Host, data_dir: Path, *args: str) -> None:
        self.host = host
        self.data_dir = data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"{host.name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            host.argv(sys.executable, "-m", "node.cli", *args, "--data-dir", str(data_dir),
                      "--host", host.ip, "--port", str(PORT)),
            stdout=self._log, stderr=subprocess.STDOUT, env=ns_env(host), cwd=REPO,
        )

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{PORT}"

    def wait_healthy(self, timeout: float = 60) -> None:
        """Reached from the root namespace, through the bridge."""
        def healthy() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.host.name} exited with {self.proc.returncode}:\n"
                                     f"{self.log()}")
            try:
                with urllib.request.urlopen(f"http://{self.address}/healthz", timeout=1) as r:
                    return r.status == 200
            except (urllib.error.URLError, OSError):
                return False
        wait_until(healthy, timeout=timeout, what=f"{self.host.name} healthy", interval=0.1)

    def status_cmd(self) -> list[str]:
        """`ringrift-node status` run inside the node's own namespace, where it answers even
        while its link to the bridge is down."""
        return self.host.argv(sys.executable, "-m", "node.cli", "status", "--peer",
                              self.address, "--json")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def signal(self, sig: int) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> None:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()


def statuses(nodes: list[NsNode], inside: tuple[NsNode, ...] = ()) -> list[dict[str, Any]]:
    """Every node's /api/v1/status, queried together so they form a snapshot.

    Nodes in `inside` (the cut-off ones) are asked with `ringrift-node status` run in their
    own namespace; the others over HTTP from the root namespace, through the bridge.
    """
    procs = {id(n): subprocess.Popen(n.status_cmd(), stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=ns_env(n.host),
                                     cwd=REPO) for n in inside}
    out = []
    try:
        for node in nodes:
            proc = procs.get(id(node))
            if proc is None:
                with urllib.request.urlopen(f"http://{node.address}/api/v1/status",
                                            timeout=5) as response:
                    out.append(json.loads(response.read()))
                continue
            stdout, stderr = proc.communicate(timeout=30)
            if proc.returncode != 0:
                raise AssertionError(f"status of {node.host.name} failed: {stderr.strip()}")
            out.append(json.loads(stdout))
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return out


class Cluster:
    def __init__(self, lan: Lan, tmp_path: Path) -> None:
        self.lan = lan
        self.tmp_path = tmp_path
        self.nodes: list[NsNode] = []

    def start(self) -> None:
        a, b, c = (self.lan.hosts[name] for name in ("a", "b", "c"))
        init = subprocess.run(
            [sys.executable, "-m", "node.cli", "init", "--data-dir", str(self.tmp_path / "a"),
             "--json", "--host", a.ip, "--port", str(PORT)],
            capture_output=True, text=True, timeout=60, env=ns_env(a), cwd=REPO, check=False)
        assert init.returncode == 0, init.stderr
        token = json.loads(init.stdout)["token"]
        self.nodes.append(NsNode(a, self.tmp_path / "a", "start"))
        self.nodes[0].wait_healthy()
        for host in (b, c):
            self.nodes.append(NsNode(host, self.tmp_path / host.name, "join",
                                     self.nodes[0].address, "--token", token, "--voter"))
            self.nodes[-1].wait_healthy()

    def by_id(self, node_id: str) -> NsNode:
        return next(n for n, s in zip(self.nodes, statuses(self.nodes)) if s["node_id"] == node_id)

    def stop(self) -> None:
        for node in self.nodes:  # all at once: each orderly shutdown waits on its peers
            node.signal(signal.SIGTERM)
        for node in self.nodes:
            node.wait(timeout=15)

    def logs(self) -> str:
        return "\n".join(f"--- {n.host.name} ({n.address}) ---\n{n.log()}" for n in self.nodes)

    @contextlib.contextmanager
    def logs_on_failure(self) -> Iterator[None]:
        try:
            yield
        except BaseException:
            print(self.logs())
            raise


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    lan = Lan(["a", "b", "c"])
    cluster = Cluster(lan, tmp_path)
    try:
        try:
            lan.open()
        except NetnsUnavailable as exc:
            pytest.skip(f"needs Linux network namespaces: {exc}")
        with cluster.logs_on_failure():
            cluster.start()
        yield cluster
    finally:
        try:
            cluster.stop()
        finally:
            lan.close()


def one_leader(group: list[dict[str, Any]]) -> tuple[str, int] | None:
    """(leader, term) when every status names the same leader, which alone has duties."""
    seen = {(s["leader"], s["term"]) for s in group}
    if len(seen) != 1:
        return None
    leader, term = next(iter(seen))
    duties = [s["node_id"] for s in group if s["leader_duties"]]
    return (leader, term) if leader is not None and duties == [leader] else None


def settled(cluster: Cluster) -> tuple[str, int]:
    wait_until(lambda: all(len(s["voters"]) == 3 for s in statuses(cluster.nodes)), timeout=60,
               what="three voters everywhere")
    return wait_until(lambda: one_leader(statuses(cluster.nodes)), timeout=30,
                      what="one leader with a lease, followed by all")


def status_inside(node: NsNode) -> dict[str, Any]:
    return statuses([node], inside=(node,))[0]


def metric(node: NsNode, name: str) -> float:
    with urllib.request.urlopen(f"http://{node.address}/metrics", timeout=5) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(f"{name} "):
                return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{node.host.name} exports no {name}")


def holds_for_a_while(check: Callable[[], None]) -> None:
    """`check` keeps passing over several election timeouts (and at least a few samples)."""
    deadline = time.monotonic() + QUIET_S
    samples = 0
    while samples < 3 or time.monotonic() < deadline:
        check()
        samples += 1
        time.sleep(0.1)


def all_alive(cluster: Cluster) -> bool:
    views = statuses(cluster.nodes)
    return all(sorted(m["state"] for m in v["members"]) == ["alive"] * 3 for v in views)


def assert_alone_without_lease(status: dict[str, Any], term: int) -> None:
    """A cut-off voter: no leader, no lease, no duties, and (pre-vote) its term unchanged:
    campaigning alone must not raise it, or its return would depose the majority's leader."""
    assert status["leader"] is None, status
    assert status["leader_duties"] is False, status
    assert status["lease_until"] is None, status
    assert status["role"] in ("follower", "pre_candidate"), status
    assert status["term"] == term, status


def assert_one_leader(cluster: Cluster, expected: tuple[str, int]) -> None:
    seen = statuses(cluster.nodes)
    assert one_leader(seen) == expected, seen


def test_isolated_follower_loses_the_leader_and_rejoins_without_deposing_it(cluster):
    with cluster.logs_on_failure():
        leader, term = settled(cluster)
        alone = next(n for n, s in zip(cluster.nodes, statuses(cluster.nodes))
                     if s["node_id"] != leader)
        rest = [n for n in cluster.nodes if n is not alone]
        campaigns = metric(alone, "ringrift_elections_started_total")
        cluster.lan.isolate(alone.host)
        try:
            # It stops hearing heartbeats: after one election timeout it has no leader.
            wait_until(lambda: status_inside(alone)["leader"] is None, timeout=30,
                       what="the isolated follower dropping the leader")

            def partitioned() -> None:
                mine, *theirs = statuses([alone, *rest], inside=(alone,))
                assert_alone_without_lease(mine, term)
                assert one_leader(theirs) == (leader, term), theirs

            holds_for_a_while(partitioned)
        finally:
            cluster.lan.heal(alone.host)
        wait_until(lambda: status_inside(alone)["leader"] == leader, timeout=30,
                   what="the healed node following the leader")
        # It did campaign while alone (so its unchanged term is pre-vote at work, not silence).
        assert metric(alone, "ringrift_elections_started_total") > campaigns
        holds_for_a_while(lambda: assert_one_leader(cluster, (leader, term)))
        # Membership heals too: each side had declared the other dead during the cut.
        wait_until(lambda: all_alive(cluster), timeout=30, what="every member alive everywhere")


def test_isolated_leader_gives_up_its_lease_before_the_majority_elects_another(cluster):
    with cluster.logs_on_failure():
        leader, term = settled(cluster)
        old = cluster.by_id(leader)
        rest = [n for n in cluster.nodes if n is not old]
        cluster.lan.isolate(old.host)
        try:
            # Every lease end the cut-off leader reports, on the clock all namespaces share.
            old_leases: list[float] = []

            def new_leader() -> tuple[str, int] | None:
                mine, *theirs = statuses([old, *rest], inside=(old,))
                if mine["lease_until"] is not None:
                    old_leases.append(mine["lease_until"])
                found = one_leader(theirs)
                return found if found and found[0] != leader else None

            new, new_term = wait_until(new_leader, timeout=30,
                                       what="a new leader on the majority side")
            seen_at = time.time()
            assert new_term > term
            # Safety, not speed: the new leader was elected before we saw it, and the old
            # leader's lease must have ended before that election.
            assert all(lease < seen_at for lease in old_leases), (old_leases, seen_at)
            # Check-quorum: it steps down by itself, then campaigns alone.
            wait_until(lambda: status_inside(old)["leader"] is None, timeout=30,
                       what="the isolated old leader stepping down")

            def partitioned() -> None:
                mine, *theirs = statuses([old, *rest], inside=(old,))
                assert_alone_without_lease(mine, term)
                assert one_leader(theirs) == (new, new_term), theirs

            holds_for_a_while(partitioned)
        finally:
            cluster.lan.heal(old.host)
        wait_until(lambda: status_inside(old)["leader"] == new, timeout=30,
                   what="the old leader following the new one after the heal")
        holds_for_a_while(lambda: assert_one_leader(cluster, (new, new_term)))
        wait_until(lambda: all_alive(cluster), timeout=30, what="every member alive everywhere")
