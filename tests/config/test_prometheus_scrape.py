"""A real Prometheus (Debian's `prometheus`) scraping two nodes with the alerting rules loaded:
every reference family arrives from both, the cluster has one leader, every rule evaluates."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.config.test_monitoring import RULES
from tests.node.procs import NodeProcess, cli, free_port, wait_until
from tests.node.test_metrics_reference import REFERENCE

PROMETHEUS = shutil.which("prometheus")

pytestmark = [
    pytest.mark.prometheus,
    pytest.mark.skipif(PROMETHEUS is None,
                       reason="prometheus not installed (Debian: apt-get install prometheus)"),
]


def query(port: int, expr: str) -> list[dict]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=10) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def get(port: int, path: str) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_prometheus_scrapes_two_nodes_and_evaluates_every_rule(tmp_path: Path):
    init = json.loads(cli("init", "--data-dir", str(tmp_path / "a"), "--json",
                          "--host", "127.0.0.1").stdout)
    nodes = [NodeProcess(tmp_path / "a", "start")]
    prometheus = None
    try:
        nodes[0].wait_healthy()
        nodes.append(NodeProcess(tmp_path / "b", "join", nodes[0].address,
                                 "--token", init["token"]))
        nodes[1].wait_healthy()
        port = free_port()
        config = tmp_path / "prometheus.yml"
        targets = ", ".join(f"'{n.address}'" for n in nodes)
        config.write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"rule_files: ['{RULES}']\n"
            f"scrape_configs:\n  - job_name: ringrift\n    static_configs:\n"
            f"      - targets: [{targets}]\n")
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

        def both_up() -> bool:
            try:
                up = query(port, "up")
            except OSError:
                return False
            return len(up) == 2 and all(r["value"][1] == "1" for r in up)

        wait_until(both_up, timeout=60, what="prometheus scraping both nodes")
        for name in REFERENCE:
            kind = REFERENCE[name][0]
            series = {"counter": name + "_total", "histogram": name + "_count"}.get(kind, name)
            if name == "ringrift_rollback_elo_regression":
                continue  # no series until a model is production
            instances = {r["metric"]["instance"] for r in query(port, series)}
            assert instances == {n.address for n in nodes}, series
        drift = query(port, 'ringrift_elo_drift_max{board_type="square8",num_players="2"}')
        assert len(drift) == 2 and {r["value"][1] for r in drift} == {"0"}
        wait_until(lambda: query(port, "sum(ringrift_leader_is_self)") and
                   query(port, "sum(ringrift_leader_is_self)")[0]["value"][1] == "1",
                   timeout=30, what="exactly one leader seen by prometheus")

        def rules_evaluated() -> list[dict] | None:
            groups = get(port, "/api/v1/rules")["data"]["groups"]
            rules = [r for g in groups for r in g["rules"]]
            # An unevaluated rule reports Go's zero time as its last evaluation.
            return rules if rules and all(not r["lastEvaluation"].startswith("0001")
                                          and r["health"] == "ok" for r in rules) else None

        rules = wait_until(rules_evaluated, timeout=30, what="every rule evaluated, healthy")
        assert len(rules) == 11
        firing = [a["labels"]["alertname"] for a in get(port, "/api/v1/alerts")["data"]["alerts"]
                  if a["state"] == "firing"]
        assert firing == [], firing
    finally:
        if prometheus is not None:
            prometheus.terminate()
            prometheus.wait(timeout=30)
        for node in nodes:
            node.stop()
