"""The reference system's metric families, with their names, types and labels kept, and the
cardinality of every label bounded.

Operators' alerts and dashboards were written against these names (see
config/monitoring/alerting-rules.yaml and config/grafana/), so they are kept exactly:

    ringrift_promotion_decisions_total{promotion_type,outcome}        counter
    ringrift_promotion_executions_total{promotion_type,result}        counter
    ringrift_promotion_elo_improvement{promotion_type}                histogram (Elo)
    ringrift_elo_sync_operations_total{remote_host,result}            counter
    ringrift_elo_sync_matches_added_total{remote_host}                counter
    ringrift_elo_sync_conflicts_total{remote_host}                    counter
    ringrift_elo_drift_max / _avg / _significant{board_type,num_players}  gauges
    ringrift_rollback_checks_total{model_id,triggered}                counter
    ringrift_auto_rollbacks_total{from_model,to_model,result}         counter
    ringrift_rollback_elo_regression{model_id}                        gauge (Elo)

plus `ringrift_build_info{version,python}` and `ringrift_node_state{state}`.

Bounds: label values known in advance (the enums below, every board config) exist at zero
from the start, so `rate()` and `absent()` work before the first event. `remote_host` is a
current member's address, at most `max_remote_hosts` of them, the rest folded into "other";
model labels name only models that are or were production in the last `model_history`
promotions, others fold into "other". A value that leaves the allowed set has its series
removed, so a long-lived node with churning peers or models keeps a bounded series count;
per-peer detail beyond that is in the JSON API.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Iterable, Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

from mesh.manifest import STATES
from storage.rows import BOARD_TYPES, MAX_PLAYERS, MIN_PLAYERS

OTHER = "other"
# promotion_type: the alias a decision moves (production) or a rollback of it.
PROMOTION_TYPES = ("production", "rollback")
OUTCOMES = ("approved", "rejected")
EXECUTION_RESULTS = ("success", "failure", "dry_run")
SYNC_RESULTS = ("success", "failure")
ROLLBACK_RESULTS = ("success", "failure")
TRIGGERED = ("true", "false")
# The reference's buckets: promotions cluster around the +25 Elo gate, rejections below 0.
ELO_IMPROVEMENT_BUCKETS = (-50, -25, 0, 10, 25, 50, 75, 100, 150, 200)
# The stored promotion decision (storage.rows.DECISIONS) as the reference's type and outcome.
DECISION_LABELS: dict[str, tuple[str, str]] = {
    "swap_production": ("production", "approved"),
    "retain_production": ("production", "rejected"),
    "insufficient_data": ("production", "rejected"),
    "rollback": ("rollback", "approved"),
}


def board_configs() -> list[tuple[str, str]]:
    """Every (board_type, num_players) label pair a node can hold rows of."""
    return [(b, str(n)) for b in sorted(BOARD_TYPES) for n in range(MIN_PLAYERS, MAX_PLAYERS + 1)]


class BoundedLabel:
    """Values that may appear as themselves in one label; anything else reads as "other".

    `allow` replaces the allowed set (keeping values already allowed first, so a label does
    not flip between a value and "other" while it stays eligible) and returns the values that
    left it, whose series the caller removes.
    """

    def __init__(self, limit: int) -> None:
        if limit < 0:
            raise ValueError(f"label limit {limit}: expected 0 or more")
        self.limit = limit
        self._allowed: list[str] = []

    @property
    def allowed(self) -> tuple[str, ...]:
        return tuple(self._allowed)

    def __call__(self, value: str | None) -> str:
        return value if value is not None and value in self._allowed else OTHER

    def allow(self, eligible: Iterable[str]) -> list[str]:
        wanted = [v for v in dict.fromkeys(eligible) if v and v != OTHER]
        kept = [v for v in self._allowed if v in wanted]
        fresh = [v for v in wanted if v not in kept]
        new = (kept + fresh)[: self.limit]
        removed = [v for v in self._allowed if v not in new]
        self._allowed = new
        return removed


class ReferenceMetrics:
    """Owns the reference families on a node's registry; the methods record one event each."""

    def __init__(self, registry: CollectorRegistry, *, version: str, max_remote_hosts: int,
                 model_history: int, node_state: Callable[[], str]) -> None:
        self.hosts = BoundedLabel(max_remote_hosts)
        # Every config's production model, and two per recent promotion (the model promoted or
        # restored, and the one it replaced).
        self.models = BoundedLabel(len(board_configs()) + 2 * model_history)
        Info("ringrift_build", "Version of the running node", registry=registry).info(
            {"version": version, "python": platform.python_version()})
        state = Gauge("ringrift_node_state", "1 for the work state the node announces, else 0",
                      ["state"], registry=registry)
        for name in STATES:
            state.labels(name).set_function(lambda n=name: float(node_state() == n))

        self.decisions = Counter(
            "ringrift_promotion_decisions_total", "Promotion decisions by type and outcome",
            ["promotion_type", "outcome"], registry=registry)
        self.executions = Counter(
            "ringrift_promotion_executions_total",
            "Promotion executions (alias moves) by type and result",
            ["promotion_type", "result"], registry=registry)
        self.elo_improvement = Histogram(
            "ringrift_promotion_elo_improvement",
            "Elo improvement of the candidate at the promotion decision",
            ["promotion_type"], buckets=ELO_IMPROVEMENT_BUCKETS, registry=registry)
        for kind in PROMOTION_TYPES:
            self.elo_improvement.labels(kind)
            for outcome in OUTCOMES:
                self.decisions.labels(kind, outcome)
            for result in EXECUTION_RESULTS:
                self.executions.labels(kind, result)

        self.sync_ops = Counter(
            "ringrift_elo_sync_operations_total", "Pulls of Elo match rows from a peer, by result",
            ["remote_host", "result"], registry=registry)
        self.sync_added = Counter(
            "ringrift_elo_sync_matches_added_total",
            "Match rows new to this node taken from a peer",
            ["remote_host"], registry=registry)
        self.sync_conflicts = Counter(
            "ringrift_elo_sync_conflicts_total",
            "Match rows from a peer that conflicted with the row held here",
            ["remote_host"], registry=registry)
        self._zero_host(OTHER)

        labels = ["board_type", "num_players"]
        self.drift_max = Gauge("ringrift_elo_drift_max",
                               "Largest rating difference to the last peer checked, in Elo",
                               labels, registry=registry)
        self.drift_avg = Gauge("ringrift_elo_drift_avg",
                               "Mean absolute rating difference to the last peer checked, in Elo",
                               labels, registry=registry)
        self.drift_significant = Gauge("ringrift_elo_drift_significant",
                                       "1 when the last drift check was significant",
                                       labels, registry=registry)
        for board, players in board_configs():
            for gauge in (self.drift_max, self.drift_avg, self.drift_significant):
                gauge.labels(board, players)

        self.rollback_checks = Counter(
            "ringrift_rollback_checks_total", "Regression checks of a production model",
            ["model_id", "triggered"], registry=registry)
        self.rollbacks = Counter(
            "ringrift_auto_rollbacks_total", "Automatic rollbacks of production, by result",
            ["from_model", "to_model", "result"], registry=registry)
        self.regression = Gauge(
            "ringrift_rollback_elo_regression",
            "Elo lost by a production model since its promotion (positive: worse)",
            ["model_id"], registry=registry)
        self._zero_model(OTHER)
        for result in ROLLBACK_RESULTS:
            self.rollbacks.labels(OTHER, OTHER, result)

    # --- bounded label sets ---------------------------------------------------------------

    def set_members(self, addresses: Sequence[str]) -> None:
        """Current members' addresses: the values `remote_host` may take."""
        for gone in self.hosts.allow(sorted(addresses)):
            for result in SYNC_RESULTS:
                _remove(self.sync_ops, gone, result)
            _remove(self.sync_added, gone)
            _remove(self.sync_conflicts, gone)
        for host in self.hosts.allowed:
            self._zero_host(host)

    def set_production_models(self, model_ids: Sequence[str]) -> None:
        """Models that are or were production in the last promotions, newest first."""
        for gone in self.models.allow(model_ids):
            for triggered in TRIGGERED:
                _remove(self.rollback_checks, gone, triggered)
            _remove(self.regression, gone)
            for labels in list(_series(self.rollbacks)):
                if gone in labels[:2]:
                    _remove(self.rollbacks, *labels)
        for model in self.models.allowed:
            self._zero_model(model)
            self.regression.labels(model)

    def _zero_host(self, host: str) -> None:
        for result in SYNC_RESULTS:
            self.sync_ops.labels(host, result)
        self.sync_added.labels(host)
        self.sync_conflicts.labels(host)

    def _zero_model(self, model: str) -> None:
        for triggered in TRIGGERED:
            self.rollback_checks.labels(model, triggered)

    # --- events -----------------------------------------------------------------------------

    def promotion_decided(self, decision: str, elo_delta: float | None) -> None:
        kind, outcome = DECISION_LABELS[decision]
        self.decisions.labels(kind, outcome).inc()
        if elo_delta is not None:
            self.elo_improvement.labels(kind).observe(elo_delta)

    def promotion_executed(self, promotion_type: str, result: str) -> None:
        if promotion_type not in PROMOTION_TYPES or result not in EXECUTION_RESULTS:
            raise ValueError(f"promotion execution {promotion_type!r}/{result!r}: expected a "
                             f"type in {PROMOTION_TYPES} and a result in {EXECUTION_RESULTS}")
        self.executions.labels(promotion_type, result).inc()

    def elo_synced(self, remote_host: str, ok: bool, added: int, conflicts: int) -> None:
        """One pull of match rows; `conflicts`: match ids met in a version other than ours."""
        host = self.hosts(remote_host)
        self.sync_ops.labels(host, "success" if ok else "failure").inc()
        self.sync_added.labels(host).inc(added)
        self.sync_conflicts.labels(host).inc(conflicts)

    def drift_checked(self, board_type: str, num_players: int, max_diff: float,
                      avg_diff: float, significant: bool) -> None:
        labels = (board_type, str(num_players))
        self.drift_max.labels(*labels).set(max_diff)
        self.drift_avg.labels(*labels).set(avg_diff)
        self.drift_significant.labels(*labels).set(float(significant))

    def rollback_checked(self, model_id: str, triggered: bool, regression_elo: float) -> None:
        model = self.models(model_id)
        self.rollback_checks.labels(model, "true" if triggered else "false").inc()
        if model != OTHER:
            self.regression.labels(model).set(regression_elo)

    def rolled_back(self, from_model: str, to_model: str, ok: bool) -> None:
        self.rollbacks.labels(self.models(from_model), self.models(to_model),
                              "success" if ok else "failure").inc()


def _series(metric: Counter | Gauge) -> Iterable[tuple[str, ...]]:
    return list(metric._metrics)  # prometheus_client keeps no public list of a family's children


def _remove(metric: Counter | Gauge, *labels: str) -> None:
    if labels in metric._metrics:
        metric.remove(*labels)
