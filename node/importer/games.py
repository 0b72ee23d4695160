"""Games from a reference GameReplayDB (schema v18) into the games store.

Each finished game is read with its moves (`game_moves.move_json`, in `move_number` order),
replayed through our engine (`node.importer.replay`) and stored as a game row of source
`import` with its parity status in `meta`: `replayed` (our engine plays it to the recorded
winner) or `diverged` with the first move index that does not replay and why. Moves our engine
could not replay are kept as recorded, so the row is the whole game. Its id derives from its
content (config, pie rule, moves), so the same game under two reference ids, or imported on two
nodes, is one row. An unfinished game (`game_status` not completed/finished) is reported and
not imported.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import moves as mt
from engine.boards import BoardConfig
from engine.moves import Move
from engine.records import encode_move
from storage.hlc import pack
from storage.merge import InvalidRow
from storage.rows import BOARD_TYPES, new_game
from storage.stores import Stores

from node.importer.elo import IMPORT_ORIGIN, parse_time_ms
from node.importer.progress import Progress
from node.importer.replay import Replay, replay_reference
from node.importer.report import FileReport

FINISHED = frozenset({"completed", "finished"})
GAME_BATCH = 500  # games a transaction (a long game is ~1,000 moves)
REASON_CHARS = 200  # a parity reason in a row's meta (storage caps its strings at 256)


@dataclass(frozen=True, slots=True)
class ReferenceGame:
    game_id: str
    board_type: str
    num_players: int
    swap_rule: bool
    status: str
    winner: int | None
    termination: str | None
    source: str | None
    created_at: str | None
    completed_at: str | None
    moves: list[dict[str, Any]]


class GameSourceError(ValueError):
    pass


def read_games(conn: sqlite3.Connection) -> Iterator[tuple[str, ReferenceGame | str]]:
    """(reference game id, the game or the reason it cannot be read) for every games row."""
    cursor = conn.execute(
        "SELECT g.game_id, g.board_type, g.num_players, g.game_status, g.winner, "
        "g.termination_reason, g.source, g.created_at, g.completed_at, i.initial_state_json, "
        "i.compressed FROM games g LEFT JOIN game_initial_state i USING (game_id) "
        "ORDER BY g.created_at, g.game_id"
    )
    for (gid, board, n, status, winner, termination, source, created, completed, initial,
         compressed) in cursor.fetchall():
        try:
            swap = _swap_rule(initial, compressed)
            moves = [_move(text, gid, i) for i, (text,) in enumerate(conn.execute(
                "SELECT move_json FROM game_moves WHERE game_id = ? ORDER BY move_number",
                (gid,),
            ))]
        except GameSourceError as exc:
            yield str(gid), str(exc)
            continue
        yield str(gid), ReferenceGame(
            str(gid), board, n, swap, str(status), winner if type(winner) is int else None,
            termination, source, created, completed, moves,
        )


def _swap_rule(initial: object, compressed: object) -> bool:
    if initial is None:
        raise GameSourceError("no initial state")
    if compressed:
        raise GameSourceError("compressed initial state (not written by schema v18 writers)")
    try:
        state = json.loads(initial)
    except ValueError:
        raise GameSourceError("initial state is not JSON") from None
    options = state.get("rulesOptions") if isinstance(state, dict) else None
    return bool(options.get("swapRuleEnabled")) if isinstance(options, dict) else False


def _move(text: object, gid: object, index: int) -> dict[str, Any]:
    try:
        data = json.loads(text) if isinstance(text, str) else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise GameSourceError(f"move {index} is not a Move JSON object")
    return data


def parity_meta(game: ReferenceGame, path: Path, replay: Replay) -> dict[str, Any]:
    """The small metadata map a game row carries: where it came from and how it replays."""
    meta: dict[str, Any] = {
        "file": path.name[:REASON_CHARS], "original_id": game.game_id[:REASON_CHARS],
        "origin": (game.source or "unknown")[:64],
        "created_at": (game.created_at or "")[:64],
        "completed_at": (game.completed_at or "")[:64],
        "termination": (game.termination or "")[:64],
        "recorded_winner": game.winner,
        "parity": "replayed" if replay.replays else "diverged",
    }
    if not replay.replays:
        meta["parity_move"] = replay.diverged_at
        meta["parity_reason"] = replay.reason[:REASON_CHARS]
    return meta


def raw_move(data: dict[str, Any], cfg: BoardConfig) -> Move:
    """A recorded move as our Move without asking whether it is legal: how the part of a game
    after its divergence is kept. ValueError/TypeError for a move that names no cells we know."""
    t, player = data.get("type"), data.get("player")
    if t not in mt.MOVE_TYPES or type(player) is not int or not 1 <= player <= 4:
        raise ValueError(f"move type {t!r} of player {player!r} is not a RingRift move")

    def cell(key: str) -> int:
        return cfg.cell_of(data[key]) if data.get(key) is not None else -1

    def cells(positions: object) -> tuple[int, ...]:
        if not isinstance(positions, list):
            return ()
        return tuple(sorted(cfg.cell_of(p) for p in positions))

    fields: dict[str, Any] = {}
    if t in (mt.MOVE_STACK, mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT,
             mt.RECOVERY_SLIDE):
        fields["src"] = cell("from")
    if t not in mt.BOOKKEEPING_TYPES and t not in (
        mt.SKIP_PLACEMENT, mt.SKIP_CAPTURE, mt.SKIP_TERRITORY_PROCESSING, mt.SKIP_RECOVERY,
        mt.SWAP_SIDES, mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION, mt.CHOOSE_TERRITORY_OPTION,
        mt.RESIGN, mt.TIMEOUT,
    ):
        fields["dst"] = cell("to")
    if t in (mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT):
        fields["target"] = cell("captureTarget")
    if t == mt.PLACE_RING:
        fields["count"] = data.get("placementCount") or 1
    if t == mt.CHOOSE_TERRITORY_OPTION:
        regions = data.get("disconnectedRegions") or [{}]
        fields["cells"] = cells(regions[0].get("spaces"))
    if t in (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION):
        lines = data.get("formedLines") or [{}]
        line = cells(lines[0].get("positions"))
        chosen = cells(data.get("collapsedMarkers")) or line
        fields["cells"] = chosen
        fields["option"] = 1 if chosen == line else 2
    if t == mt.RECOVERY_SLIDE:
        fields["mode"] = data.get("recoveryMode") or ""
        extraction = data.get("extractionStacks") or []
        if extraction:
            fields["extract"] = cfg.cell_of(extraction[0])
    return Move(t, player, **fields)


def game_row(game: ReferenceGame, path: Path, replay: Replay) -> dict:
    """The game row of a reference game: replayed moves, then any recorded rest as is."""
    cfg = replay.state.board
    moves = [encode_move(m) for m in replay.moves]
    if replay.diverged_at is not None:
        moves.extend(encode_move(raw_move(d, cfg)) for d in game.moves[replay.diverged_at:])
    n = game.num_players
    if replay.replays and replay.state.ranks is not None:
        rankings = list(replay.state.ranks)
        winner = replay.state.winner
    else:
        # Not replayed: the record's winner first, every other seat tied behind it.
        winner = game.winner if game.winner and 1 <= game.winner <= n else None
        rankings = [1 if p == winner else 2 for p in range(1, n + 1)] if winner else [1] * n
    created = parse_time_ms(game.created_at) if game.created_at else 0
    return new_game(
        game.board_type, n, moves, rankings, pack(created, 0), IMPORT_ORIGIN,
        swap_rule=game.swap_rule and n == 2, winner=winner, source="import",
        meta=parity_meta(game, path, replay),
    )


def prepare_games(
    conn: sqlite3.Connection, path: Path, report: FileReport, progress: Progress | None = None
) -> dict[str, tuple[dict, bool]]:
    """Read and replay every game of one GameReplayDB file (blocking: run it off the event
    loop); the rows to merge by game_id with whether each replays, every game counted."""
    counts = report.games
    pending: dict[str, tuple[dict, bool]] = {}  # game_id -> (row, replays)
    for gid, item in read_games(conn):
        counts.read += 1
        if progress:
            progress("games read", 1)
        if isinstance(item, str):
            counts.reject(f"unreadable game: {item}")
            continue
        if item.status not in FINISHED:
            counts.reject("unfinished game (not imported)")
            report.notes.append(f"game {gid} is unfinished ({item.status}, "
                                f"{len(item.moves)} moves recorded): not imported")
            continue
        if item.board_type not in BOARD_TYPES or item.num_players not in (2, 3, 4):
            counts.reject(f"unknown config {item.board_type!r} {item.num_players!r}")
            continue
        replay = replay_reference(item.board_type, item.num_players, item.swap_rule,
                                  item.moves, item.winner)
        try:
            row = game_row(item, path, replay)
        except (ValueError, TypeError, KeyError, InvalidRow) as exc:
            counts.reject(f"moves cannot be stored: {str(exc)[:120]}")
            continue
        if row["game_id"] in pending:
            counts.present += 1  # the same game under another reference id
            first = pending[row["game_id"]][0]["meta"]["original_id"]
            report.notes.append(f"game {gid} is game {first} under another id (same moves): "
                                "one row")
            continue
        pending[row["game_id"]] = (row, replay.replays)
    return pending


async def merge_games(
    pending: dict[str, tuple[dict, bool]], stores: Stores, report: FileReport, dry_run: bool,
    progress: Progress | None = None,
) -> None:
    """Count each prepared game as imported or already present, and merge the new ones."""
    counts = report.games
    held = {r["game_id"] for r in await stores.games.rows(list(pending))}
    new_rows = []
    for game_id, (row, replays) in pending.items():
        if game_id in held:
            counts.present += 1
            continue
        counts.imported += 1
        counts.parity_failed += not replays
        new_rows.append(row)
    if dry_run:
        return
    for start in range(0, len(new_rows), GAME_BATCH):
        chunk = new_rows[start:start + GAME_BATCH]
        stats = await stores.games.merge(chunk)
        if stats.invalid:
            raise RuntimeError(f"{stats.invalid} imported games refused by the store: "
                               f"{stores.games.last_errors[:3]}")
        if progress:
            progress("games merged", len(chunk))
