"""Importing a reference GameReplayDB: every game accounted, replayed with a parity status."""

from __future__ import annotations

import json
import sqlite3

from engine.boards import board_config
from engine.records import check_finished
from node.importer.games import raw_move
from node.importer.replay import replay_reference
from node.importer.run import import_files

from tests.node.importer.sources import copy_seed
from tests.node.importer.test_import_matches import stores_at


async def test_seed_games_import_once_each_with_their_parity_status(tmp_path):
    path = copy_seed("games.db", tmp_path / "src" / "replay.db")
    a = await stores_at(tmp_path / "a")
    b = await stores_at(tmp_path / "b")
    try:
        report = await import_files([path], a)
        games = report.files[0].games
        # 53 rows: one unfinished placeholder (not imported), one game twice under two ids.
        assert (games.read, games.imported, games.present, games.rejected) == (53, 51, 1, 1)
        assert games.reasons == {"unfinished game (not imported)": 1}
        assert any("67474bfe" in n and "unfinished" in n for n in report.files[0].notes)
        assert any("e08e3428" in n and "19018b15" in n for n in report.files[0].notes)
        rows = await a.games.rows([r[0] for r in await a.games.bucket_entries(range(256))])
        assert len(rows) == 51
        diverged = [r for r in rows if r["meta"]["parity"] == "diverged"]
        assert games.parity_failed == len(diverged) > 0
        for row in rows:
            assert row["source"] == "import" and row["model_sha"] is None
            assert row["meta"]["file"] == "replay.db"
            if row["meta"]["parity"] == "replayed":
                # What is stored as replaying does replay through the engine, to its winner.
                check_finished(row["board_type"], row["num_players"], row["swap_rule"],
                               row["moves"], None, row["rankings"], row["winner"])
                assert row["winner"] == row["meta"]["recorded_winner"]
            else:
                assert row["meta"]["parity_reason"] and "parity_move" in row["meta"]
        # Ids and versions come from content and source time, not the importing node or clock.
        await import_files([path], b)
        assert await a.games.summary() == await b.games.summary()
        again = await import_files([path], a)
        assert (again.totals("games").imported, again.totals("games").present) == (0, 52)
    finally:
        await a.close()
        await b.close()


def test_bookkeeping_moves_are_dropped_or_inserted_where_the_turn_models_differ(tmp_path):
    path = copy_seed("games.db", tmp_path / "g.db")
    conn = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    gid, board, n, winner = conn.execute(
        "SELECT game_id, board_type, num_players, winner FROM games WHERE source='gauntlet' "
        "AND board_type='square8'").fetchone()
    moves = [json.loads(m) for (m,) in conn.execute(
        "SELECT move_json FROM game_moves WHERE game_id=? ORDER BY move_number", (gid,))]
    full = replay_reference(board, n, False, moves, winner)
    bookkeeping = {"no_line_action", "no_territory_action", "no_placement_action",
                   "no_movement_action"}
    without = [m for m in moves if m["type"] not in bookkeeping]
    stripped = replay_reference(board, n, False, without, winner)
    # The decisions are what the game is: with or without the recorded bookkeeping moves the
    # replay reaches the same place and the same move list.
    assert stripped.moves == full.moves
    if full.diverged_at is not None:
        assert without[stripped.diverged_at] == moves[full.diverged_at]
    assert stripped.inserted >= len(moves) - len(without) - full.dropped


def test_a_move_after_the_divergence_is_kept_as_recorded():
    cfg = board_config("square8")
    move = raw_move({"type": "move_stack", "player": 2, "from": {"x": 1, "y": 2, "z": None},
                     "to": {"x": 1, "y": 5, "z": None}}, cfg)
    assert (move.type, move.player, move.src, move.dst) == (
        "move_stack", 2, cfg.cell_of("1,2"), cfg.cell_of("1,5"))
