"""The reference's three `match_history` shapes, read into one form and folded into match rows.

Every source row becomes a `SourceMatch`: participants with their finishing places (0 = first,
equal places = draw), the configuration, and the time of the match in UTC milliseconds. Rows
are refused one by one with a reason (`Rejected`), never by failing a file.

Identity. The id of a match is the same UUID in every file (`elo_service.id` =
`unified.game_id` = `reconciliation.match_id`, seed-data README section 5), so an imported row
keeps it as its `match_id`: the same match imported from two files or on two nodes is one row.
Its version is derived from the source timestamp (hlc = UTC ms, counter 0; origin `import`),
so the same source row gets the same version everywhere and a later conflicting duplicate
(README: same id, different winner, 15-240 minutes later) wins everywhere under
last-write-wins.

Folding. 3- and 4-player games reach the Elo files as pairwise rows (README sections 2 and 4:
"a 3p game gives 3 rows, a 4p game 6 rows, sharing tournament_id, game_length, duration_sec,
with timestamps milliseconds apart"). Folding runs over the rows of all files of one import,
after duplicates are resolved, because a file may hold only some rows of a game (the
reconciliation file holds what was synced, and no tournament id or duration). Rows are folded
into one match when they share configuration and game length, agree on tournament id and
duration where both rows have one, follow each other within `FOLD_GAP_MS`, number exactly
N(N-1)/2 for N = num_players distinct participants covering every pair once, and their outcomes
agree with one finishing order. The folded match's id is derived from the sorted ids of its
pairwise rows (themselves the same in every file), so the same game folds to the same row from
any file. Pairwise rows with no game behind them (gauntlet tallies: no tournament id,
game_length 0) stay two-participant results of their N-player config.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple
from datetime import UTC, datetime

from storage.hlc import MAX_MS, pack
from storage.rows import BOARD_TYPES, MAX_PLAYERS, MIN_PLAYERS, new_match

from node.importer.sources import SourceKind

IMPORT_ORIGIN = "import"
# Pairwise rows of one game are written milliseconds apart (README); a second is ample and
# far below the time between two games of a tournament (tens of seconds).
FOLD_GAP_MS = 1000
_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


class SourceMatch(NamedTuple):
    # A NamedTuple: imports build one per source row, and a tuple is built several times
    # faster than a dataclass instance.
    match_id: str
    participants: tuple[str, ...]
    places: tuple[int, ...]  # finishing place per participant, 0 = first
    board_type: str
    num_players: int
    ts_ms: int
    tournament_id: str | None
    game_length: int
    duration_s: float
    where: str  # file and row, for reports


@dataclass(frozen=True, slots=True)
class Rejected:
    where: str
    reason: str


@dataclass(frozen=True, slots=True)
class MatchImport:
    """One match row to merge and the source rows behind it (1, or N(N-1)/2 when folded)."""

    row: dict
    sources: tuple[SourceMatch, ...]


class BadRow(ValueError):
    pass


def parse_time_ms(value: object) -> int:
    """UTC milliseconds from epoch seconds (REAL) or ISO-8601 text (naive text is UTC)."""
    if type(value) in (int, float):
        if not math.isfinite(value):
            raise BadRow(f"timestamp {value!r} is not finite")
        ms = round(value * 1000)
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            raise BadRow(f"timestamp {value!r:.60} is not ISO-8601 text or epoch seconds") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = round(dt.timestamp() * 1000)
    else:
        raise BadRow(f"timestamp {value!r:.60} is neither epoch seconds nor ISO-8601 text")
    if not 0 <= ms <= MAX_MS:
        raise BadRow(f"timestamp {value!r:.60} is out of range")
    return ms


def _ident(value: object, name: str) -> str:
    if not (isinstance(value, str) and _ID.fullmatch(value)):
        raise BadRow(f"{name} {value!r:.60} is not an id")
    return value


def _config(board_type: object, num_players: object) -> tuple[str, int]:
    if board_type not in BOARD_TYPES:
        raise BadRow(f"board_type {board_type!r:.40} is not one of {sorted(BOARD_TYPES)}")
    if type(num_players) is not int or not MIN_PLAYERS <= num_players <= MAX_PLAYERS:
        raise BadRow(f"num_players {num_players!r} is not {MIN_PLAYERS}..{MAX_PLAYERS}")
    return board_type, num_players


def _json_list(text: object, name: str) -> list:
    try:
        value = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        value = None
    if type(value) is not list:
        raise BadRow(f"{name} {text!r:.60} is not a JSON array")
    return value


def _length(value: object) -> int:
    return value if type(value) is int and value > 0 else 0  # 0 or NULL: not recorded


def _duration(value: object) -> float:
    return float(value) if type(value) in (int, float) and math.isfinite(value) else 0.0


def _pair(
    match_id: object, a: object, b: object, winner: object
) -> tuple[str, tuple[str, str], tuple[int, int]]:
    mid = _ident(match_id, "match id")
    pa, pb = _ident(a, "participant"), _ident(b, "participant")
    if pa == pb:
        raise BadRow(f"participant {pa!r} plays itself")
    if winner is None:
        places = (0, 0)
    elif winner == pa:
        places = (0, 1)
    elif winner == pb:
        places = (1, 0)
    else:
        raise BadRow(f"winner {winner!r:.60} is not one of the participants {[pa, pb]}")
    return mid, (pa, pb), places


def _check_count(participants: tuple[str, ...], num_players: int) -> None:
    # An N-player config holds whole games (N seats) or pairwise results of them (2).
    if len(participants) not in (2, num_players):
        raise BadRow(
            f"{len(participants)} participants in a {num_players}-player match "
            f"(expected 2 or {num_players})"
        )


def read_matches(
    conn: sqlite3.Connection, kind: SourceKind, name: str
) -> Iterator[SourceMatch | Rejected]:
    """Every match_history row of a file of `kind`, as a SourceMatch or a Rejected."""
    readers = {
        SourceKind.ELO_SERVICE: _elo_service,
        SourceKind.ELO_DATABASE: _elo_database,
        SourceKind.ELO_RECONCILIATION: _reconciliation,
    }
    yield from readers[kind](conn, name)


# The two ids of a pairwise row, read by SQLite's JSON functions (C speed, and no Python list
# per row); NULL for text that is not a JSON array of two strings, which is then refused.
_PAIR_SQL = (
    "CASE WHEN json_valid({col}) AND json_array_length({col}) = 2 THEN json_extract({col}, '$[0]')"
    " END, CASE WHEN json_valid({col}) AND json_array_length({col}) = 2 THEN "
    "json_extract({col}, '$[1]') END"
)


def _elo_service(conn: sqlite3.Connection, name: str) -> Iterator[SourceMatch | Rejected]:
    cursor = conn.execute(
        "SELECT rowid, id, " + _PAIR_SQL.format(col="participant_ids") + ", winner_id, "
        "board_type, num_players, timestamp, tournament_id, game_length, duration_sec "
        "FROM match_history ORDER BY rowid"
    )
    for rowid, mid, a, b, winner, board, n, ts, tour, length, duration in cursor:
        try:
            if a is None or b is None:
                raise BadRow("participant_ids is not a JSON array of 2 ids")
            match_id, parts, places = _pair(mid, a, b, winner)
            board_type, num_players = _config(board, n)
            yield SourceMatch(match_id, parts, places, board_type, num_players,
                              parse_time_ms(ts), tour if isinstance(tour, str) else None,
                              _length(length), _duration(duration),
                              f"{name} match_history rowid {rowid}")
        except BadRow as exc:
            yield Rejected(f"{name} match_history rowid {rowid}", str(exc))


def _elo_database(conn: sqlite3.Connection, name: str) -> Iterator[SourceMatch | Rejected]:
    cursor = conn.execute(
        "SELECT id, game_id, participant_ids, rankings, winner_id, board_type, num_players, "
        "timestamp, tournament_id, game_length, duration_sec FROM match_history ORDER BY id"
    )
    for rowid, game_id, pids, rankings, winner, board, n, ts, tour, length, duration in cursor:
        where = f"{name} match_history id {rowid}"
        try:
            board_type, num_players = _config(board, n)
            ids = _json_list(pids, "participant_ids")
            if rankings is None:
                # EloService's pairwise rows in this file: the winner is in winner_id.
                if len(ids) != 2:
                    raise BadRow(f"participant_ids holds {len(ids)} ids, expected 2")
                match_id, parts, places = _pair(game_id, ids[0], ids[1], winner)
            else:
                # EloDatabase's own rows: rankings give every seat's place; `winner` names the
                # first seat on a draw, so it is not read.
                match_id = _ident(game_id, "game_id")
                parts = tuple(_ident(p, "participant") for p in ids)
                ranks = _json_list(rankings, "rankings")
                if len(ranks) != len(parts) or not all(
                    type(r) is int and 0 <= r < len(parts) for r in ranks
                ):
                    raise BadRow(f"rankings {rankings!r:.60} do not give a place to each seat")
                if len(set(parts)) != len(parts):
                    raise BadRow(f"participants {list(parts)} repeat")
                places = tuple(ranks)
            _check_count(parts, num_players)
            yield SourceMatch(match_id, parts, places, board_type, num_players,
                              parse_time_ms(ts), tour if isinstance(tour, str) else None,
                              _length(length), _duration(duration), where)
        except BadRow as exc:
            yield Rejected(where, str(exc))


def _reconciliation(conn: sqlite3.Connection, name: str) -> Iterator[SourceMatch | Rejected]:
    cursor = conn.execute(
        "SELECT rowid, match_id, player1_id, player2_id, winner_id, board_type, num_players, "
        "timestamp, game_length FROM match_history ORDER BY rowid"
    )
    for rowid, mid, p1, p2, winner, board, n, ts, length in cursor:
        where = f"{name} match_history rowid {rowid}"
        try:
            match_id, parts, places = _pair(mid, p1, p2, winner)
            board_type, num_players = _config(board, n)
            yield SourceMatch(match_id, parts, places, board_type, num_players,
                              parse_time_ms(ts), None, _length(length), 0.0, where)
        except BadRow as exc:
            yield Rejected(where, str(exc))


# --- folding ------------------------------------------------------------------------------


def fold(matches: list[SourceMatch]) -> list[MatchImport]:
    """The match rows of distinct matches (one per id): pairwise rows of a game folded."""
    out: list[MatchImport] = []
    candidates: dict[tuple, list[SourceMatch]] = {}
    for m in matches:
        if m.num_players > 2 and len(m.participants) == 2 and m.game_length > 0:
            candidates.setdefault((m.board_type, m.num_players, m.game_length), []).append(m)
        else:
            out.append(MatchImport(_row(m), (m,)))
    for (_, n, _), rows in candidates.items():
        rows.sort(key=lambda m: (m.ts_ms, m.match_id))
        run: list[SourceMatch] = []
        for m in rows:
            if run and not (m.ts_ms - run[-1].ts_ms <= FOLD_GAP_MS and _same_game(run[0], m)):
                out.extend(_fold_run(run, n))
                run = []
            run.append(m)
        out.extend(_fold_run(run, n))
    return out


def _same_game(a: SourceMatch, b: SourceMatch) -> bool:
    # The reconciliation file has no tournament id or duration: only known values must agree.
    if a.tournament_id and b.tournament_id and a.tournament_id != b.tournament_id:
        return False
    return not (a.duration_s and b.duration_s and a.duration_s != b.duration_s)


def _fold_run(run: list[SourceMatch], n: int) -> Iterator[MatchImport]:
    for group in _split_run(run, n):
        folded = _fold_game(group, n)
        if folded is None:
            yield from (MatchImport(_row(m), (m,)) for m in group)
        else:
            yield folded


def _split_run(run: list[SourceMatch], n: int) -> Iterator[list[SourceMatch]]:
    # Back-to-back games of the same length and duration are rare but possible: take whole
    # games of N(N-1)/2 rows in time order, leaving any remainder unfolded.
    size = n * (n - 1) // 2
    for start in range(0, len(run), size):
        yield run[start:start + size]


def _fold_game(group: list[SourceMatch], n: int) -> MatchImport | None:
    if len(group) != n * (n - 1) // 2:
        return None
    players = sorted({p for m in group for p in m.participants})
    pairs = {tuple(sorted(m.participants)) for m in group}
    if len(players) != n or len(pairs) != len(group):
        return None
    wins = dict.fromkeys(players, 0.0)
    for m in group:
        a, b = m.participants
        wins[a] += 1.0 if m.places[0] < m.places[1] else 0.5 if m.places[0] == m.places[1] else 0.0
        wins[b] += 1.0 if m.places[1] < m.places[0] else 0.5 if m.places[0] == m.places[1] else 0.0
    # Consistent with one finishing order: every pair's outcome follows the win counts.
    for m in group:
        a, b = m.participants
        expected = (wins[a] > wins[b]) - (wins[a] < wins[b])
        got = (m.places[0] < m.places[1]) - (m.places[0] > m.places[1])
        if expected != got:
            return None
    order = sorted(players, key=lambda p: (-wins[p], p))
    member_ids = sorted(m.match_id for m in group)
    match_id = "fold-" + hashlib.sha256(",".join(member_ids).encode()).hexdigest()[:40]
    first = group[0]
    result = [wins[p] / (n - 1) for p in order]
    row = new_match(match_id, order, first.board_type, n, result,
                    pack(max(m.ts_ms for m in group), 0), IMPORT_ORIGIN)
    return MatchImport(row, tuple(group))


def _row(m: SourceMatch) -> dict:
    """A single source match's row: scores are the mean pairwise score of each seat.

    Participants are listed best first (ties by id): files list the two sides of one match in
    either order, and the row must be the same whichever file it came from."""
    k = len(m.participants)
    if k == 2:  # the common case, without the sort and the score loops
        (a, b), (pa, pb) = m.participants, m.places
        if pa > pb or (pa == pb and b < a):
            a, b, pa, pb = b, a, pb, pa
        return new_match(m.match_id, [a, b], m.board_type, m.num_players,
                         [0.5, 0.5] if pa == pb else [1.0, 0.0], pack(m.ts_ms, 0), IMPORT_ORIGIN)
    order = sorted(range(k), key=lambda i: (m.places[i], m.participants[i]))
    result = [
        sum(1.0 if m.places[i] < q else 0.5 if m.places[i] == q else 0.0
            for j, q in enumerate(m.places) if j != i) / (k - 1)
        for i in order
    ]
    return new_match(m.match_id, [m.participants[i] for i in order], m.board_type,
                     m.num_players, result, pack(m.ts_ms, 0), IMPORT_ORIGIN)
