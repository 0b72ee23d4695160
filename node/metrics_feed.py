"""Feeds the reference metrics from what the node holds: members, promotion events, pulls.

Promotion decisions and rollbacks are counted from the promotion events this node itself
wrote (it was the leader that decided), as they appear; events already stored when the node
starts are not counted again, so a restart does not replay old decisions into the counters.
Match-row pulls of the mesh's anti-entropy are the Elo sync operations of the reference.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from mesh.sync import PullOutcome, PullPlan
from node.metrics_reference import ReferenceMetrics
from storage.merge import MergeStats

if TYPE_CHECKING:
    from storage.stores import Stores

log = logging.getLogger("ringrift.metrics")

MATCH_STORE = "matches"


class MetricsFeed:
    def __init__(self, metrics: ReferenceMetrics, stores: Stores, node_id: str,
                 model_history: int) -> None:
        self.metrics = metrics
        self._stores = stores
        self._node_id = node_id
        self._model_history = model_history
        self._seen_hlc: int | None = None
        self._pulls: dict[str, dict[str, Any]] = {}  # peer address -> its last pull
        self._pulls_total = {True: 0, False: 0}

    def sync_health(self, now: float) -> dict[str, Any]:
        """Pulls since start and each current peer's last pull, for the status page."""
        return {
            "pulls_ok": self._pulls_total[True], "pulls_failed": self._pulls_total[False],
            "peers": {a: {**p, "seconds_ago": round(now - p["at"], 1)}
                      for a, p in sorted(self._pulls.items())},
        }

    def pulled(self, address: str, plan: PullPlan, outcome: PullOutcome) -> None:
        """Called after every anti-entropy pull; counts the ones that covered match rows."""
        self._pulls[address] = {"at": time.time(), "ok": outcome.ok, "error": outcome.error,
                                "stores": list(plan.stores), "rows": outcome.rows_pulled}
        self._pulls_total[outcome.ok] += 1
        if MATCH_STORE not in plan.stores:
            return
        merged = dict(outcome.merged_by_store).get(MATCH_STORE, MergeStats())
        # A pulled row that replaced ours, or tied with it in content, met a different version.
        self.metrics.elo_synced(address, MATCH_STORE in outcome.completed, merged.added,
                                merged.resolved + merged.conflicts)

    def members(self, members: list[dict[str, Any]]) -> None:
        current = [m["address"] for m in members
                   if m["node_id"] != self._node_id and m["state"] in ("alive", "suspect")]
        self.metrics.set_members(current)
        for gone in self._pulls.keys() - set(current):
            del self._pulls[gone]  # bounded by the membership, like the metric labels

    async def refresh(self) -> None:
        events = await self._stores.models.promotion_events()
        production = [a["sha256"] for a in await self._stores.models.aliases()
                      if a["name"] == "production"]
        moved = [e for e in events if e["decision"] in ("swap_production", "rollback")]
        recent: list[str] = []
        for event in reversed(moved[-self._model_history:]):
            recent += [event["candidate"], event["incumbent"]]
        # Before counting: a rollback just made names its models, not "other".
        self.metrics.set_production_models([m for m in production + recent if m])
        newest = max((e["hlc"] for e in events), default=0)
        if self._seen_hlc is not None:
            for event in events:
                if event["hlc"] > self._seen_hlc and event["origin_node"] == self._node_id:
                    self._count(event)
        self._seen_hlc = max(newest, self._seen_hlc or 0)

    def _count(self, event: dict[str, Any]) -> None:
        self.metrics.promotion_decided(event["decision"], event["elo_delta"])
        if event["decision"] == "rollback" and event["incumbent"]:
            self.metrics.rolled_back(event["incumbent"], event["candidate"], ok=True)

    async def run(self, interval_s: float, members: Any) -> None:
        while True:
            self.members(members())
            try:
                await self.refresh()
            except (OSError, sqlite3.Error) as exc:
                log.warning("metrics refresh failed: %s", exc)  # the next round tries again
            await asyncio.sleep(interval_s)
