"""Prometheus view of what the node refused, quarantined and paused for (read at scrape time)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from storage.stores import Stores


class RefusalCollector(Collector):
    """`ringrift_refused_total{scope,reason}`: rows (scope = store), connections and bodies
    refused; `ringrift_rows_quarantined_total{store}`: stored rows found unreadable;
    `ringrift_disk_full`: 1 while writes are paused for lack of space."""

    def __init__(self, stores: Stores, disk_pauses: Callable[[], int]) -> None:
        self._stores = stores
        self._disk_pauses = disk_pauses

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        refused = CounterMetricFamily("ringrift_refused", "Untrusted input refused, by scope "
                                      "(store, connection, body) and reason",
                                      labels=["scope", "reason"])
        for (scope, reason), n in sorted(self._stores.refusals.counts.items()):
            refused.add_metric([scope, reason], n)
        yield refused
        quarantined = CounterMetricFamily("ringrift_rows_quarantined", "Stored rows found "
                                          "unreadable and moved out of their store",
                                          labels=["store"])
        for name, store in self._stores.by_name().items():
            quarantined.add_metric([name], store.quarantined)
        yield quarantined
        yield GaugeMetricFamily("ringrift_disk_full", "1 while writes are paused for lack of "
                                "space", value=float(self._stores.db.full))
        yield CounterMetricFamily("ringrift_disk_full_pauses", "Times writes were paused for "
                                  "lack of space", value=self._disk_pauses())
