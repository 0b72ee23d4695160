"""The reference metric families: names, types, labels, zero series and bounded labels."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mesh.sync import PullOutcome, PullPlan
from node.metrics_feed import MetricsFeed
from node.metrics_reference import OTHER, BoundedLabel, ReferenceMetrics, board_configs
from storage.merge import MergeStats

# name -> (type, label names): the reference system's families, as its dashboards use them.
REFERENCE = {
    "ringrift_promotion_decisions": ("counter", {"promotion_type", "outcome"}),
    "ringrift_promotion_executions": ("counter", {"promotion_type", "result"}),
    "ringrift_promotion_elo_improvement": ("histogram", {"promotion_type"}),
    "ringrift_elo_sync_operations": ("counter", {"remote_host", "result"}),
    "ringrift_elo_sync_matches_added": ("counter", {"remote_host"}),
    "ringrift_elo_sync_conflicts": ("counter", {"remote_host"}),
    "ringrift_elo_drift_max": ("gauge", {"board_type", "num_players"}),
    "ringrift_elo_drift_avg": ("gauge", {"board_type", "num_players"}),
    "ringrift_elo_drift_significant": ("gauge", {"board_type", "num_players"}),
    "ringrift_rollback_checks": ("counter", {"model_id", "triggered"}),
    "ringrift_auto_rollbacks": ("counter", {"from_model", "to_model", "result"}),
    "ringrift_rollback_elo_regression": ("gauge", {"model_id"}),
}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def check_reference_families(text: str) -> None:
    """Every reference family with its type and exactly its labels (shared with the process
    test that scrapes a real node)."""
    found = families(text)
    for name, (kind, labels) in REFERENCE.items():
        assert name in found, f"{name} missing from /metrics"
        family = found[name]
        assert family.type == kind, (name, family.type)
        samples = [s for s in family.samples if not s.name.endswith("_created")]
        # Model ids are not known in advance: that gauge has series once a model is production.
        assert samples or name == "ringrift_rollback_elo_regression", f"{name} has no series"
        for sample in samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)


def fresh(hosts: int = 2, models: int = 1) -> tuple[CollectorRegistry, ReferenceMetrics]:
    registry = CollectorRegistry()
    metrics = ReferenceMetrics(registry, version="9.9", max_remote_hosts=hosts,
                               model_history=models, node_state=lambda: "selfplay")
    return registry, metrics


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_every_reference_family_exists_at_zero_with_its_labels():
    registry, _ = fresh()
    check_reference_families(generate_latest(registry).decode())
    for board, players in board_configs():
        assert value(registry, "ringrift_elo_drift_max", board_type=board,
                     num_players=players) == 0
    assert value(registry, "ringrift_promotion_decisions_total", promotion_type="production",
                 outcome="rejected") == 0
    assert value(registry, "ringrift_node_state", state="selfplay") == 1
    assert value(registry, "ringrift_node_state", state="idle") == 0
    assert value(registry, "ringrift_build_info", version="9.9", python=__import__(
        "platform").python_version()) == 1


def test_bounded_label_keeps_the_first_values_and_folds_the_rest_into_other():
    label = BoundedLabel(2)
    assert label.allow(["a", "b", "c"]) == []
    assert label("a") == "a" and label("c") == OTHER and label(None) == OTHER
    # "a" leaves, "c" takes its place; "b" keeps its place though "c" sorts before it.
    assert label.allow(["c", "b"]) == ["a"]
    assert label.allowed == ("b", "c")
    assert label("other") == OTHER


def test_remote_host_series_exist_only_for_current_members_up_to_the_limit():
    registry, metrics = fresh(hosts=2)
    metrics.set_members(["10.0.0.1:7420", "10.0.0.2:7420", "10.0.0.3:7420"])
    metrics.elo_synced("10.0.0.1:7420", True, added=5, conflicts=1)
    metrics.elo_synced("10.0.0.3:7420", False, added=0, conflicts=0)
    assert value(registry, "ringrift_elo_sync_matches_added_total",
                 remote_host="10.0.0.1:7420") == 5
    assert value(registry, "ringrift_elo_sync_conflicts_total", remote_host="10.0.0.1:7420") == 1
    assert value(registry, "ringrift_elo_sync_operations_total", remote_host=OTHER,
                 result="failure") == 1
    assert value(registry, "ringrift_elo_sync_operations_total", remote_host="10.0.0.2:7420",
                 result="success") == 0
    metrics.set_members(["10.0.0.2:7420"])
    assert value(registry, "ringrift_elo_sync_matches_added_total",
                 remote_host="10.0.0.1:7420") is None
    hosts = {s.labels["remote_host"] for f in registry.collect() for s in f.samples
             if "remote_host" in s.labels}
    assert hosts == {"10.0.0.2:7420", OTHER}


def test_model_labels_name_only_recent_production_models():
    registry, metrics = fresh(models=1)
    # Room for every config's production model and the two of one promotion; one more folds.
    room = len(board_configs()) + 2
    fillers = [f"m-prod-{i}" for i in range(room - 2)]
    metrics.set_production_models(["m-new", "m-old", *fillers, "m-older"])
    assert value(registry, "ringrift_rollback_elo_regression", model_id="m-old") == 0
    metrics.rollback_checked("m-new", triggered=True, regression_elo=42.0)
    metrics.rollback_checked("m-older", triggered=False, regression_elo=5.0)
    metrics.rolled_back("m-new", "m-old", ok=True)
    assert value(registry, "ringrift_rollback_checks_total", model_id="m-new",
                 triggered="true") == 1
    assert value(registry, "ringrift_rollback_checks_total", model_id=OTHER,
                 triggered="false") == 1
    assert value(registry, "ringrift_rollback_elo_regression", model_id="m-new") == 42
    assert value(registry, "ringrift_auto_rollbacks_total", from_model="m-new",
                 to_model="m-old", result="success") == 1
    metrics.set_production_models(["m-next", "m-new", *fillers])
    assert value(registry, "ringrift_auto_rollbacks_total", from_model="m-new",
                 to_model="m-old", result="success") is None
    assert value(registry, "ringrift_rollback_elo_regression", model_id="m-new") == 42


def test_promotion_decisions_and_improvement_histogram():
    registry, metrics = fresh()
    metrics.promotion_decided("swap_production", 30.0)
    metrics.promotion_decided("retain_production", -10.0)
    metrics.promotion_decided("insufficient_data", None)
    metrics.promotion_executed("production", "success")
    assert value(registry, "ringrift_promotion_decisions_total", promotion_type="production",
                 outcome="approved") == 1
    assert value(registry, "ringrift_promotion_decisions_total", promotion_type="production",
                 outcome="rejected") == 2
    assert value(registry, "ringrift_promotion_elo_improvement_count",
                 promotion_type="production") == 2
    assert value(registry, "ringrift_promotion_elo_improvement_bucket",
                 promotion_type="production", le="0.0") == 1
    assert value(registry, "ringrift_promotion_executions_total", promotion_type="production",
                 result="success") == 1


class _Models:
    def __init__(self) -> None:
        self.events: list[dict] = []

    async def promotion_events(self) -> list[dict]:
        return list(self.events)

    async def aliases(self) -> list[dict]:
        return []


class _Stores:
    def __init__(self) -> None:
        self.models = _Models()


def _event(hlc: int, decision: str, origin: str, candidate: str = "c", incumbent: str = "i"):
    return {"hlc": hlc, "decision": decision, "origin_node": origin, "elo_delta": 12.0,
            "candidate": candidate, "incumbent": incumbent}


def test_feed_counts_only_new_events_this_node_wrote():
    registry, metrics = fresh(models=2)
    stores = _Stores()
    feed = MetricsFeed(metrics, stores, "me", model_history=2)  # type: ignore[arg-type]
    stores.models.events.append(_event(1, "swap_production", "me"))
    asyncio.run(feed.refresh())  # events held at start are not counted again
    stores.models.events += [_event(2, "retain_production", "me"),
                             _event(3, "swap_production", "someone-else"),
                             _event(4, "rollback", "me", candidate="old", incumbent="bad")]
    asyncio.run(feed.refresh())
    assert value(registry, "ringrift_promotion_decisions_total", promotion_type="production",
                 outcome="approved") == 0
    assert value(registry, "ringrift_promotion_decisions_total", promotion_type="production",
                 outcome="rejected") == 1
    assert value(registry, "ringrift_auto_rollbacks_total", from_model="bad", to_model="old",
                 result="success") == 1


def test_feed_counts_pulls_of_match_rows_as_elo_syncs():
    registry, metrics = fresh()
    feed = MetricsFeed(metrics, _Stores(), "me", model_history=1)  # type: ignore[arg-type]
    feed.members([{"node_id": "p", "address": "h:1", "state": "alive"}])
    plan = PullPlan("p", ("games", "matches"), ("r", "r"), (1, 1))
    merged = (("games", MergeStats(added=9)), ("matches", MergeStats(added=3, resolved=2)))
    feed.pulled("h:1", plan, PullOutcome("p", ("games", "matches"), merged_by_store=merged))
    feed.pulled("h:1", plan, PullOutcome("p", ("games",), failed="matches", error="gone"))
    feed.pulled("h:1", PullPlan("p", ("games",), ("r",), (1,)), PullOutcome("p", ("games",)))
    assert value(registry, "ringrift_elo_sync_matches_added_total", remote_host="h:1") == 3
    assert value(registry, "ringrift_elo_sync_conflicts_total", remote_host="h:1") == 2
    assert value(registry, "ringrift_elo_sync_operations_total", remote_host="h:1",
                 result="success") == 1
    assert value(registry, "ringrift_elo_sync_operations_total", remote_host="h:1",
                 result="failure") == 1
    health = feed.sync_health(now=0.0)
    assert health["pulls_ok"] == 2 and health["pulls_failed"] == 1
