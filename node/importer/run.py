"""`import_files`: reference databases into this node's stores, through the mesh's merge path.

The rows an import makes are ordinary rows (match rows versioned by their source time, games
named by their content), merged with `SyncedStore.merge` like rows pulled from a peer, so they
replicate to every node. Matches of all files are pooled before folding (a file may hold only
part of a multiplayer game); duplicates across files are resolved with the chosen conflict
strategy, then once more against what the store already holds.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from storage.hlc import pack
from storage.merge import Strategy
from storage.stores import Stores

from node.importer.elo import MatchImport, Rejected, SourceMatch, fold, read_matches
from node.importer.games import merge_games, prepare_games
from node.importer.progress import Progress
from node.importer.report import Counts, FileReport, ImportReport
from node.importer.sources import SourceError, SourceKind, detect, open_read_only

MERGE_BATCH = 10_000  # rows a transaction: the storage benchmark's sweet spot



@dataclass(slots=True)
class _Pooled:
    match: SourceMatch
    first_ts_ms: int  # the earliest time any version of this match carries: its game's time
    file: int


def _content(m: SourceMatch) -> tuple:
    return (m.board_type, m.num_players, tuple(sorted(zip(m.participants, m.places))))


def _row_content(row: dict) -> tuple:
    return (row["board_type"], row["num_players"],
            tuple(sorted(zip(row["participants"], row["result"]))))


def _takes(strategy: Strategy, incoming_ts: int, held_ts: int) -> bool:
    if strategy is Strategy.LAST_WRITE_WINS:
        return incoming_ts > held_ts
    if strategy is Strategy.FIRST_WRITE_WINS:
        return incoming_ts < held_ts
    return False  # SKIP keeps what is held; RAISE refuses the incoming row


def _resolution(strategy: Strategy, taken: bool) -> str:
    if strategy is Strategy.RAISE:
        return "refused"
    return "took_incoming" if taken else "kept_held"


class _MatchPool:
    """Source matches of all files by id, duplicates resolved with the strategy."""

    def __init__(self, strategy: Strategy) -> None:
        self.strategy = strategy
        self.by_id: dict[str, _Pooled] = {}

    def add(self, m: SourceMatch, file: int, counts: list[Counts]) -> None:
        """Pool `m` from file number `file`; every row ends up counted exactly once per file."""
        pooled = self.by_id.get(m.match_id)
        if pooled is None:
            self.by_id[m.match_id] = _Pooled(m, m.ts_ms, file)
            return
        pooled.first_ts_ms = min(pooled.first_ts_ms, m.ts_ms)
        if _content(m) == _content(pooled.match):
            # The same match recorded twice (on two nodes, or one node's sync of it): the later
            # time is its version, as on every node that sees both.
            counts[file].present += 1
            if m.ts_ms > pooled.match.ts_ms:
                pooled.match = m
            return
        counts[file].conflicts += 1
        if self.strategy is Strategy.RAISE:
            counts[file].resolutions["refused"] += 1
            counts[file].reject("conflicting duplicate refused (--conflicts raise)")
            return
        taken = _takes(self.strategy, m.ts_ms, pooled.match.ts_ms)
        counts[file].resolutions[_resolution(self.strategy, taken)] += 1
        # The version not kept is accounted as present in its own file; the kept one is
        # counted when it meets the store.
        if taken:
            counts[pooled.file].present += 1
            pooled.match, pooled.file = m, file
        else:
            counts[file].present += 1

    def matches(self) -> list[SourceMatch]:
        # Grouping reads each match at its game's time, not at a later correction's.
        return [p.match if p.match.ts_ms == p.first_ts_ms else _at(p.match, p.first_ts_ms)
                for p in self.by_id.values()]


def _at(m: SourceMatch, ts_ms: int) -> SourceMatch:
    return m._replace(ts_ms=ts_ms)


def _read_source(
    path: Path, report: FileReport, progress: Progress | None
) -> tuple[SourceKind, list[SourceMatch | Rejected] | dict[str, tuple[dict, bool]]]:
    """Open, detect and read one file whole (blocking: the caller runs it in a thread);
    SourceError or sqlite3.DatabaseError when the file cannot be read."""
    conn = open_read_only(path)
    try:
        kind = detect(conn, path)
        if kind is SourceKind.GAMES:
            return kind, prepare_games(conn, path, report, progress)
        return kind, list(read_matches(conn, kind, path.name))
    finally:
        conn.close()


async def import_files(
    paths: Sequence[Path], stores: Stores, strategy: Strategy = Strategy.LAST_WRITE_WINS,
    dry_run: bool = False, progress: Progress | None = None,
) -> ImportReport:
    """Import `paths` into `stores`; reading, replaying and folding run in a worker thread so
    a running node keeps answering its peers meanwhile."""
    report = ImportReport([FileReport(str(p)) for p in paths], dry_run, strategy.value)
    pool = _MatchPool(strategy)
    match_counts = [f.matches for f in report.files]
    for index, path in enumerate(paths):
        file = report.files[index]
        try:
            kind, items = await asyncio.to_thread(_read_source, path, file, progress)
        except (SourceError, sqlite3.DatabaseError) as exc:
            # A corrupt or locked file fails alone, with one line; nothing of it is used.
            file.error = str(exc) if isinstance(exc, SourceError) else f"{path}: {exc}"
            file.games = Counts()
            file.notes.clear()
            continue
        file.kind = kind.value
        if isinstance(items, dict):
            await merge_games(items, stores, file, dry_run, progress)
            continue
        for item in items:
            file.matches.read += 1
            if isinstance(item, Rejected):
                file.matches.reject(item.reason)
            else:
                pool.add(item, index, match_counts)
        if progress:
            progress("matches read", len(items))
    folded = await asyncio.to_thread(fold, pool.matches())
    await _merge_matches(folded, pool, stores, report, progress)
    return report


async def _merge_matches(
    imports: list[MatchImport], pool: _MatchPool, stores: Stores,
    report: ImportReport, progress: Progress | None,
) -> None:
    strategy = pool.strategy
    rows: list[dict] = []
    for start in range(0, len(imports), MERGE_BATCH):
        batch = imports[start:start + MERGE_BATCH]
        batch = [_with_version(mi, pool) for mi in batch]
        held = {r["match_id"]: r for r in await stores.matches.rows(
            [mi.row["match_id"] for mi in batch])}
        for mi in batch:
            first, rest = mi.sources[0], mi.sources[1:]
            counts = report.files[pool.by_id[first.match_id].file].matches
            for other in rest:  # pairwise rows folded into their game's match
                report.files[pool.by_id[other.match_id].file].matches.present += 1
            old = held.get(mi.row["match_id"])
            if old is None:
                counts.imported += 1
                rows.append(mi.row)
                continue
            if _row_content(old) == _row_content(mi.row):
                counts.present += 1
                rows.append(mi.row)  # the later of two equal versions is the one kept everywhere
                continue
            counts.conflicts += 1
            if strategy is Strategy.RAISE:
                counts.resolutions["refused"] += 1
                counts.reject("conflicts with a stored row (--conflicts raise)")
                continue
            taken = _takes(strategy, mi.row["hlc"], old["hlc"])
            counts.resolutions[_resolution(strategy, taken)] += 1
            if taken:
                counts.imported += 1
                rows.append(mi.row)
            else:
                counts.present += 1
    if report.dry_run:
        return
    merge_strategy = Strategy.LAST_WRITE_WINS if strategy is Strategy.RAISE else strategy
    for start in range(0, len(rows), MERGE_BATCH):
        chunk = rows[start:start + MERGE_BATCH]
        stats = await stores.matches.merge(chunk, merge_strategy)
        if stats.invalid:
            raise RuntimeError(
                f"{stats.invalid} imported match rows refused by the store: "
                f"{stores.matches.last_errors[:3]}"
            )
        if progress:
            progress("matches merged", len(chunk))


def _with_version(mi: MatchImport, pool: _MatchPool) -> MatchImport:
    """A row's version is the time of the version of its source rows that resolution kept
    (the latest of them for a folded game), not the game time grouping used."""
    latest = pack(max(pool.by_id[s.match_id].match.ts_ms for s in mi.sources), 0)
    return mi if latest == mi.row["hlc"] else MatchImport({**mi.row, "hlc": latest}, mi.sources)
