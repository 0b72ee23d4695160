"""After an import: this node's ratings against the ratings the source files hold.

They are expected to differ. The reference rated incrementally in arrival order with pinned
baselines (`random` at 400); this node fits all matches at once around a pool mean of 1500. So
the comparison first shifts our table by the mean difference over the participants both hold,
then reports what is left, and how often the two agree on who is stronger. Only files with
ratings are read: `elo_reconciliation.db`'s participants table holds 1500.0 for everyone
(seed-data README, trap 8), not ratings.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engine.ratings import RatingTable

from node.importer.sources import SourceError, SourceKind, detect, open_read_only

_RATED = (SourceKind.ELO_SERVICE, SourceKind.ELO_DATABASE)
SourceTable = tuple[str, tuple[str, int], dict[str, float]]


def source_ratings(paths: list[Path]) -> list[SourceTable]:
    """(file name, config, participant -> rating) for every config of every rated file."""
    out: list[SourceTable] = []
    for path in paths:
        try:
            conn = open_read_only(path)
        except SourceError:
            continue  # the import itself reports the file
        try:
            if detect(conn, path) not in _RATED:
                continue
            tables: dict[tuple[str, int], dict[str, float]] = {}
            for pid, board, n, rating in conn.execute(
                "SELECT participant_id, board_type, num_players, rating FROM elo_ratings"
            ):
                if isinstance(pid, str) and isinstance(board, str) and type(n) is int and \
                        type(rating) in (int, float):
                    tables.setdefault((board, n), {})[pid] = float(rating)
            out.extend((path.name, config, table) for config, table in sorted(tables.items()))
        except (SourceError, sqlite3.DatabaseError):
            continue
        finally:
            conn.close()
    return out


def compare_ratings(
    ours: dict[tuple[str, int], RatingTable], sources: list[SourceTable]
) -> list[dict[str, Any]]:
    out = []
    for name, config, theirs in sources:
        table = ours.get(config)
        mine = table.as_dict() if table is not None else {}
        common = sorted(set(mine) & set(theirs))
        if not common:
            continue
        shift = sum(theirs[p] - mine[p] for p in common) / len(common)
        diffs = {p: mine[p] + shift - theirs[p] for p in common}
        worst = max(common, key=lambda p: (abs(diffs[p]), p))
        pairs = agree = 0
        for i, a in enumerate(common):
            for b in common[i + 1:]:
                pairs += 1
                agree += (mine[a] > mine[b]) == (theirs[a] > theirs[b])
        out.append({
            "source": name, "board_type": config[0], "num_players": config[1],
            "compared": len(common), "shift": round(shift, 3),
            "max_abs_diff": round(abs(diffs[worst]), 3), "worst": worst,
            "mean_abs_diff": round(sum(abs(d) for d in diffs.values()) / len(common), 3),
            "order_agreement": agree / pairs if pairs else 1.0,
            "only_in_source": sorted(set(theirs) - set(mine)),
            "differences": {p: round(diffs[p], 3) for p in common},
        })
    return out
