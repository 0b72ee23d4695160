"""The cluster view behind the status page, `/api/v1/status` and `ringrift-node status`.

The agent's own status (identity, stores, leader, members) is extended here with what
operators read on the leader's page: each member's role and games per hour, per-config
production model, candidates and the Elo leaderboard, drift, recent promotion and rollback
events, sync health, and two series for the chart (games per hour from the store, so they
survive restarts; the leaderboard's top rating as sampled by this node since it started).

The leaderboard is recomputed only when the match store's root changes (ratings are a pure
function of the match rows, so an unchanged root means unchanged ratings), at most every
LEADERBOARD_TTL_S, in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from storage.hlc import COUNTER_BITS

if TYPE_CHECKING:
    from node.drift_watch import DriftWatch
    from node.metrics_feed import MetricsFeed
    from storage.stores import Stores

# What the page lists: the leaderboard's top entries per config, the latest events.
LEADERBOARD_ROWS = 10
RECENT_EVENTS = 20
CHART_HOURS = 24
# The Elo series keeps one sample a minute for a day.
ELO_SAMPLE_S = 60.0
ELO_SAMPLES = 24 * 60
CANDIDATE_ALIASES = ("candidate", "staging")
# Games per hour change slowly; counting them again at every poll of the page would not.
GAME_COUNTS_TTL_S = 15.0
# While the leader records evaluation results the match rows change many times a second; the
# page refits its leaderboards at most this often (100k matches of 60 participants: ~0.3 s).
LEADERBOARD_TTL_S = 10.0

Leaderboard = Callable[[Sequence[Mapping[str, Any]]], list[dict[str, Any]]]


def hlc_seconds(hlc: int) -> float:
    return (hlc >> COUNTER_BITS) / 1000


class StatusView:
    def __init__(self, *, stores: Stores, leaderboard: Leaderboard,
                 watch: DriftWatch | None, feed: MetricsFeed | None) -> None:
        self._stores = stores
        self._leaderboard = leaderboard
        self._watch = watch
        self._feed = feed
        self._boards: tuple[str, float, dict[tuple[str, int], list[dict[str, Any]]]] = (
            "", -LEADERBOARD_TTL_S, {})
        self._games: tuple[float, dict[int, int], dict[str, int]] = (-GAME_COUNTS_TTL_S, {}, {})
        self._elo: deque[tuple[float, str, float]] = deque(maxlen=ELO_SAMPLES)

    async def extend(self, status: dict[str, Any]) -> None:
        now = time.time()
        boards = await self._leaderboards()
        self._sample_elo(now, boards)
        aliases = await self._stores.models.aliases()
        configs = sorted(set(boards) | {(a["board_type"], a["num_players"]) for a in aliases})
        status["configs"] = [self._config(cfg, boards.get(cfg, []), aliases) for cfg in configs]
        events = await self._stores.models.promotion_events()
        status["promotions"] = [_event(e) for e in reversed(events[-RECENT_EVENTS:])]
        status["drift"] = self._drift()
        status["sync"] = self._feed.sync_health(now) if self._feed else {}
        hour = int(now // 3600)
        hourly, last_hour = await self._game_counts(now)
        status["series"] = {
            "games_per_hour": [[h * 3600, hourly.get(h, 0)]
                               for h in range(hour - CHART_HOURS + 1, hour + 1)],
            "top_elo": [[round(t, 1), key, elo] for t, key, elo in self._elo],
        }
        leader, voters = status.get("leader"), set(status.get("voters") or [])
        for member in status.get("members", []):
            node = member["node_id"]
            member["role"] = ("leader" if node == leader else
                              "voter" if node in voters else "member")
            member["games_per_hour"] = last_hour.get(node, 0)

    async def _game_counts(self, now: float) -> tuple[dict[int, int], dict[str, int]]:
        """Games per hour of the chart, and per maker in the last hour (cached: reading the
        last hour's games costs ~10 us a game, and the page and the CLI poll)."""
        if now - self._games[0] >= GAME_COUNTS_TTL_S:
            hour = int(now // 3600)
            since = int((hour - CHART_HOURS + 1) * 3600 * 1000) << COUNTER_BITS
            hourly = await self._stores.games.hourly_counts(since)
            last_hour = await self._stores.games.origins_since(int((now - 3600) * 1000)
                                                               << COUNTER_BITS)
            self._games = (now, hourly, last_hour)
        return self._games[1], self._games[2]

    async def _leaderboards(self) -> dict[tuple[str, int], list[dict[str, Any]]]:
        """Per-config leaderboards, refitted when the match rows changed and the last fit is
        LEADERBOARD_TTL_S old; the fit runs in a worker thread, off the node's event loop."""
        _, root = await self._stores.matches.summary()
        fitted_root, fitted_at, boards = self._boards
        if root != fitted_root and time.monotonic() - fitted_at >= LEADERBOARD_TTL_S:
            rows = await self._stores.matches.all_matches()
            boards = await asyncio.to_thread(self._fit, rows)
            self._boards = (root, time.monotonic(), boards)
        return boards

    def _fit(self, rows: list[dict[str, Any]]) -> dict[tuple[str, int], list[dict[str, Any]]]:
        by_config: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in rows:
            by_config.setdefault((row["board_type"], row["num_players"]), []).append(row)
        return {cfg: self._leaderboard(r) for cfg, r in by_config.items()}

    def _sample_elo(self, now: float, boards: Mapping[tuple[str, int], list[dict]]) -> None:
        if self._elo and now - self._elo[-1][0] < ELO_SAMPLE_S:
            return
        for (board, players), entries in sorted(boards.items()):
            if entries:
                self._elo.append((now, f"{board}/{players}p", round(entries[0]["elo"], 1)))

    def _config(self, cfg: tuple[str, int], board: list[dict[str, Any]],
                aliases: list[dict[str, Any]]) -> dict[str, Any]:
        mine = {a["name"]: a["sha256"] for a in aliases
                if (a["board_type"], a["num_players"]) == cfg}
        return {
            "board_type": cfg[0], "num_players": cfg[1],
            "production": mine.get("production"), "previous": mine.get("previous"),
            "candidates": [{"alias": n, "model": mine[n]} for n in CANDIDATE_ALIASES if n in mine],
            "leaderboard": board[:LEADERBOARD_ROWS], "participants": len(board),
        }

    def _drift(self) -> dict[str, Any]:
        if self._watch is None:
            return {}
        t = self._watch.thresholds
        return {"thresholds": {"max_elo": t.max_elo, "avg_elo": t.avg_elo},
                "last": self._watch.last, "history": self._watch.history()}


def _event(e: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "at": hlc_seconds(e["hlc"]), "board_type": e["board_type"],
        "num_players": e["num_players"], "decision": e["decision"],
        "candidate": e["candidate"], "incumbent": e["incumbent"],
        "games_played": e["games_played"], "win_rate": e["win_rate"],
        "elo_delta": e["elo_delta"], "reorder_applied": e["reorder_applied"],
        "reason": e["reason"], "term": e["term"], "by": e["origin_node"],
    }
