"""The node's reading of engine/ratings.py: a rating per participant, and the leaderboard rows
the status page and the drift reports use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from engine.ratings import ratings


def rating_map(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Elo per participant of one config's match rows."""
    return ratings(rows).as_dict()


def leaderboard(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One config's participants, strongest first, with 95% intervals."""
    return [{"participant": r.participant, "elo": round(r.elo, 1), "ci_low": round(r.ci_low, 1),
             "ci_high": round(r.ci_high, 1), "games": round(r.games, 2)}
            for r in ratings(rows).ranked()]
