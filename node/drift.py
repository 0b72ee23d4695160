"""Elo drift: how far two nodes' ratings differ, which match rows explain it, and its history.

Ratings are a pure function of the match rows (DESIGN.md), so two nodes can only drift by
holding different rows: rows one side lacks, or one match id held in two versions. A report
names both: the per-participant rating differences and the match ids behind them. This
module is plain data in, plain data out; fetching rows and keeping history is the shell's
(node/drift_watch.py).

Significance (the reference's rule, thresholds in [monitoring] of config/node.toml): the
largest absolute difference over participants rated on both sides exceeds `max_elo`, or their
mean absolute difference exceeds `avg_elo`. Unlike the reference, the mean is taken over
every participant rated on both sides, not only over those differing by more than 1 Elo, so
one outlier among many agreeing ratings reads as a small mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from storage.merge import match_version

# Participant differences below this are fitting noise; they are left out of rating_diffs
# (they still count towards the mean).
NOISE_ELO = 1.0
# Match ids listed per kind of difference; the counts are always complete.
MAX_LISTED_IDS = 100
# Snapshot history: the trend compares the older and newer half of the last TREND_WINDOW
# checks; drift is persistent when the last PERSISTENT_CHECKS were all significant.
TREND_WINDOW = 5
TREND_MIN_SNAPSHOTS = 3
PERSISTENT_CHECKS = 3
HOUR_S = 3600.0

Ratings = Callable[[Sequence[Mapping[str, Any]]], Mapping[str, float]]
Config = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Thresholds:
    max_elo: float
    avg_elo: float

    def significant(self, max_diff: float, avg_diff: float) -> bool:
        return max_diff > self.max_elo or avg_diff > self.avg_elo


@dataclass(frozen=True, slots=True)
class MatchDiff:
    """Match ids held by one side only, and ids held by both in different versions."""

    only_source: tuple[str, ...] = ()
    only_target: tuple[str, ...] = ()
    differing: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.only_source or self.only_target or self.differing)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("only_source", "only_target", "differing"):
            ids = getattr(self, name)
            out[name] = {"count": len(ids), "ids": list(ids[:MAX_LISTED_IDS])}
        return out


@dataclass(frozen=True, slots=True)
class DriftReport:
    source: str
    target: str
    checked_at: float  # unix seconds
    board_type: str | None
    num_players: int | None
    participants_in_source: int
    participants_in_target: int
    participants_in_both: int
    max_rating_diff: float
    avg_rating_diff: float
    is_significant: bool
    rating_diffs: dict[str, float] = field(default_factory=dict)  # source minus target
    matches: MatchDiff = MatchDiff()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["matches"] = self.matches.to_dict()
        return out


def diff_versions(source: Mapping[str, bytes], target: Mapping[str, bytes]) -> MatchDiff:
    """Compare two `{match_id: version}` maps."""
    return MatchDiff(
        only_source=tuple(sorted(source.keys() - target.keys())),
        only_target=tuple(sorted(target.keys() - source.keys())),
        differing=tuple(sorted(k for k in source.keys() & target.keys()
                               if source[k] != target[k])),
    )


def configs_of(rows: Iterable[Mapping[str, Any]]) -> list[Config]:
    return sorted({(r["board_type"], r["num_players"]) for r in rows})


def compare(
    source_rows: Sequence[Mapping[str, Any]], target_rows: Sequence[Mapping[str, Any]],
    *, source: str, target: str, config: Config | None, thresholds: Thresholds,
    ratings: Ratings, checked_at: float,
) -> DriftReport:
    """The drift between two sets of match rows, restricted to one config when given.

    Ratings are fitted per config (a rating only means something within one board and
    player count); with `config` None every config is fitted and a participant's key is
    prefixed with its config.
    """
    def pick(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
        if config is None:
            return list(rows)
        return [r for r in rows if (r["board_type"], r["num_players"]) == config]

    mine, theirs = pick(source_rows), pick(target_rows)
    configs = [config] if config is not None else configs_of([*mine, *theirs])
    left: dict[str, float] = {}
    right: dict[str, float] = {}
    for cfg in configs:
        prefix = "" if config is not None else f"{cfg[0]}/{cfg[1]}p:"
        for side, rows in ((left, mine), (right, theirs)):
            chosen = [r for r in rows if (r["board_type"], r["num_players"]) == cfg]
            if chosen:
                side.update({prefix + p: e for p, e in ratings(chosen).items()})
    both = sorted(left.keys() & right.keys())
    diffs = {p: left[p] - right[p] for p in both}
    max_diff = max((abs(d) for d in diffs.values()), default=0.0)
    avg_diff = sum(abs(d) for d in diffs.values()) / len(diffs) if diffs else 0.0
    return DriftReport(
        source=source, target=target, checked_at=checked_at,
        board_type=config[0] if config else None, num_players=config[1] if config else None,
        participants_in_source=len(left), participants_in_target=len(right),
        participants_in_both=len(both),
        max_rating_diff=round(max_diff, 3), avg_rating_diff=round(avg_diff, 3),
        is_significant=thresholds.significant(max_diff, avg_diff),
        rating_diffs={p: round(d, 3) for p, d in diffs.items() if abs(d) > NOISE_ELO},
        matches=diff_versions({r["match_id"]: _version(r) for r in mine},
                              {r["match_id"]: _version(r) for r in theirs}),
    )


def _version(row: Mapping[str, Any]) -> bytes:
    return match_version(row["hlc"], row["origin_node"])


# --- history --------------------------------------------------------------------------------


def config_key(board_type: str | None, num_players: int | None) -> str:
    return f"{board_type or 'all'}_{num_players or 'all'}"


def snapshot(report: DriftReport) -> dict[str, Any]:
    return {
        "checked_at": report.checked_at, "target": report.target,
        "max_rating_diff": report.max_rating_diff, "avg_rating_diff": report.avg_rating_diff,
        "is_significant": report.is_significant, "participants": report.participants_in_both,
    }


def trend(snapshots: Sequence[Mapping[str, Any]]) -> str:
    """improving / stable / worsening by the older and newer half of the last checks'
    largest differences (20% either way), unknown with fewer than three checks."""
    if len(snapshots) < TREND_MIN_SNAPSHOTS:
        return "unknown"
    diffs = [float(s["max_rating_diff"]) for s in snapshots[-TREND_WINDOW:]]
    half = len(diffs) // 2
    older = sum(diffs[:half]) / half
    newer = sum(diffs[half:]) / (len(diffs) - half)
    if newer < older * 0.8:
        return "improving"
    if newer > older * 1.2:
        return "worsening"
    return "stable"


def persistent(snapshots: Sequence[Mapping[str, Any]]) -> bool:
    recent = snapshots[-PERSISTENT_CHECKS:]
    return len(recent) == PERSISTENT_CHECKS and all(s["is_significant"] for s in recent)


def avg_last_hour(snapshots: Sequence[Mapping[str, Any]], now: float) -> float:
    """Mean largest difference of the checks made in the last hour (0 when none)."""
    recent = [float(s["max_rating_diff"]) for s in snapshots if s["checked_at"] >= now - HOUR_S]
    return round(sum(recent) / len(recent), 3) if recent else 0.0


def summarise(history: Mapping[str, Sequence[Mapping[str, Any]]], now: float) -> dict[str, Any]:
    """Per config key: trend, persistent drift, average over the last hour, recent checks."""
    return {
        key: {
            "config_key": key, "trend": trend(snaps), "persistent_drift": persistent(snaps),
            "avg_drift_last_hour": avg_last_hour(snaps, now), "snapshot_count": len(snaps),
            "recent_snapshots": list(snaps[-TREND_WINDOW:]),
        }
        for key, snaps in sorted(history.items())
    }


def add_snapshot(history: dict[str, list[dict[str, Any]]], report: DriftReport,
                 keep: int) -> None:
    snaps = history.setdefault(config_key(report.board_type, report.num_players), [])
    snaps.append(snapshot(report))
    del snaps[:-keep]


def check_history(raw: object) -> dict[str, list[dict[str, Any]]]:
    """History as stored; anything malformed (a hand-edited or older state) starts afresh."""
    if not isinstance(raw, dict):
        return {}
    out: dict[str, list[dict[str, Any]]] = {}
    for key, snaps in raw.items():
        if isinstance(key, str) and isinstance(snaps, list):
            good = [s for s in snaps if isinstance(s, dict) and _is_snapshot(s)]
            if good:
                out[key] = good
    return out


def _is_snapshot(s: dict[str, Any]) -> bool:
    return (isinstance(s.get("checked_at"), (int, float))
            and isinstance(s.get("max_rating_diff"), (int, float))
            and isinstance(s.get("avg_rating_diff"), (int, float))
            and isinstance(s.get("is_significant"), bool))
