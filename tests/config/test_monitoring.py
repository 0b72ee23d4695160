"""The monitoring files in config/: promtool accepts the rules and their unit tests pass, every
rule and dashboard query names only metrics a real node exports, the systemd unit verifies."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.node.procs import NodeProcess, wait_until

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "monitoring" / "alerting-rules.yaml"
RULE_TESTS = Path(__file__).with_name("alerting-rules.test.yaml")
DASHBOARD = ROOT / "config" / "grafana" / "ringrift-cluster.json"
UNIT = ROOT / "config" / "ringrift-node.service"
METRIC = re.compile(r"\bringrift_[a-z0-9_]+\b")
# The series names of a family, by its type (the text parser strips these suffixes).
FAMILY_SERIES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"),
                 "info": ("_info",)}

promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    promtool is None, reason="promtool not installed (Debian: apt-get install prometheus)")


@needs_promtool
def test_promtool_accepts_the_alerting_rules():
    result = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@needs_promtool
def test_every_alert_passes_its_promtool_unit_tests():
    rule_names = set(re.findall(r"^\s+- alert: (\w+)", RULES.read_text(), re.MULTILINE))
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert rule_names == tested, f"alerts without a unit test: {rule_names - tested}"
    result = subprocess.run([promtool, "test", "rules", RULE_TESTS.name], cwd=RULE_TESTS.parent,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def exported_series(tmp_path: Path) -> set[str]:
    node = NodeProcess(tmp_path / "n", "start")
    try:
        node.wait_healthy()
        # Leader duties register their families when the node first leads.
        wait_until(lambda: node.status().get("leader_duties"), timeout=60,
                   what="the single node leading with its duties running")
        _, body = node.get("/metrics")
    finally:
        node.stop()
    names = set()
    for family in text_string_to_metric_families(body.decode()):
        # A labelled family with no series yet still declares its type and name.
        names.update(family.name + suffix for suffix in FAMILY_SERIES.get(family.type, ("",)))
        names.update(s.name for s in family.samples)
    return names


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if isinstance(var.get("query"), dict):
            queries.append(var["query"]["query"])
    return queries


def test_rules_and_dashboard_name_only_metrics_a_node_exports(tmp_path):
    exported = exported_series(tmp_path)
    queries = dashboard_queries()
    assert len(queries) > 20
    expressions = re.findall(r"expr: (?:\|\n)?((?:.|\n)*?)(?:\n\s+(?:for|labels):)",
                             RULES.read_text())
    used = {name for text in [*queries, *expressions] for name in METRIC.findall(text)}
    assert len(used) > 25
    unknown = sorted(n for n in used if n not in exported)
    assert not unknown, f"queries name metrics no node exports: {unknown}"


def test_dashboard_panels_have_unique_ids_and_use_the_datasource_variable():
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze missing")
def test_systemd_unit_verifies(tmp_path):
    unit = tmp_path / "ringrift-node.service"
    unit.write_text(UNIT.read_text())
    result = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "ExecStart=/usr/bin/env ringrift-node start" in UNIT.read_text()
