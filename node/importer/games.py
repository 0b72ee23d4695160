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

from node.importer.report import FileReport
from node.importer.replay import Replay, replay_reference

FINISHED = frozenset({"completed", "finished"})
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


async def import_games_file(*_: object) -> None:  # replaced once the game row lands
    raise NotImplementedError


def count_unfinished(report: FileReport) -> None:
    report.games.reject("unfinished game (not imported)")
