"""Importing the reference's three match_history shapes: every trap of the seed-data README."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from node.importer.elo import IMPORT_ORIGIN, parse_time_ms
from node.importer.run import import_files
from node.importer.sources import SourceError, SourceKind, detect, open_read_only
from storage.hlc import HybridClock, unpack
from storage.merge import Strategy
from storage.stores import open_stores

from tests.node.importer.sources import (
    ELO_DATABASE_SQL,
    ELO_SERVICE_SQL,
    RECONCILIATION_SQL,
    copy_seed,
    database_row,
    make_db,
    reconciliation_row,
    service_row,
)

NODE = "0123456789abcdef"


async def stores_at(path: Path):
    clock = HybridClock(lambda: time.time_ns() // 1_000_000, 500)
    return await open_stores(path, clock, NODE)


async def imported(tmp_path: Path, files: list[Path], name: str = "node", **kw):
    stores = await stores_at(tmp_path / name)
    try:
        report = await import_files(files, stores, **kw)
        rows = {r["match_id"]: r for r in await stores.matches.all_matches()}
        summary = await stores.matches.summary()
    finally:
        await stores.close()
    return report, rows, summary


def balanced(report) -> None:
    for f in report.files:
        for kind in ("games", "matches"):
            c = getattr(f, kind)
            assert c.read == c.imported + c.present + c.rejected, (f.path, kind, c)


def test_timestamps_in_every_reference_spelling_become_utc_milliseconds():
    assert parse_time_ms("2026-02-09T13:24:35.993374+00:00") == 1770643475993
    assert parse_time_ms("2026-02-09T13:24:35.993374") == 1770643475993  # naive is UTC
    assert parse_time_ms("2026-02-09T14:24:35.993374+01:00") == 1770643475993
    assert parse_time_ms(1770643475.993374) == 1770643475993
    with pytest.raises(ValueError):
        parse_time_ms("yesterday")


def test_kind_is_read_from_the_schema_not_the_name(tmp_path):
    files = {
        SourceKind.ELO_SERVICE: make_db(tmp_path / "games.db", ELO_SERVICE_SQL, []),
        SourceKind.ELO_DATABASE: make_db(tmp_path / "a.db", ELO_DATABASE_SQL, []),
        SourceKind.ELO_RECONCILIATION: make_db(tmp_path / "unified_elo.db", RECONCILIATION_SQL,
                                               []),
    }
    for kind, path in files.items():
        assert detect(open_read_only(path), path) is kind


def test_unknown_and_newer_schemas_are_refused_with_one_line_naming_the_file(tmp_path):
    other = make_db(tmp_path / "x.db", "CREATE TABLE match_history (foo TEXT);", [])
    with pytest.raises(SourceError, match=r"x\.db: match_history with unknown columns"):
        detect(open_read_only(other), other)
    newer = make_db(tmp_path / "g.db", """CREATE TABLE games (game_id TEXT);
        CREATE TABLE game_moves (game_id TEXT); CREATE TABLE game_initial_state (game_id TEXT);
        CREATE TABLE schema_metadata (key TEXT PRIMARY KEY, value TEXT NOT NULL);""",
                    [("INSERT INTO schema_metadata VALUES ('schema_version', '19')", ())])
    with pytest.raises(SourceError, match=r"g\.db: games database schema version 19"):
        detect(open_read_only(newer), newer)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    with pytest.raises(SourceError, match="junk.db: cannot be read as SQLite"):
        open_read_only(junk)


async def test_each_shape_becomes_match_rows_keyed_by_the_shared_uuid(tmp_path):
    service = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("m1", "a", "b", "b", "2026-02-09T13:00:00+00:00"),
        service_row("m2", "a", "b", None, "2026-02-09T13:01:00+00:00"),  # NULL winner: draw
    ])
    database = make_db(tmp_path / "d.db", ELO_DATABASE_SQL, [
        # A draw recorded as rankings [0, 0]: `winner` names the first seat, a trap.
        database_row("m3", ["a", "b"], [0, 0], 1770642000.5),
        database_row("m4", ["a", "b", "c"], [2, 0, 1], 1770642100.25),
        # EloService's own rows in this file: ISO text in the REAL column, winner in winner_id.
        database_row("m5", ["c", "a"], None, "2026-02-09T13:05:00+00:00", winner_id="a"),
    ])
    recon = make_db(tmp_path / "r.db", RECONCILIATION_SQL, [
        reconciliation_row("m6", "b", "c", "c", "2026-02-09T13:06:00+00:00"),
    ])
    report, rows, _ = await imported(tmp_path, [service, database, recon])
    balanced(report)
    assert {k: (r["participants"], r["result"]) for k, r in rows.items()} == {
        "m1": (["b", "a"], [1.0, 0.0]), "m2": (["a", "b"], [0.5, 0.5]),
        "m3": (["a", "b"], [0.5, 0.5]), "m4": (["b", "c", "a"], [1.0, 0.5, 0.0]),
        "m5": (["a", "c"], [1.0, 0.0]), "m6": (["c", "b"], [1.0, 0.0]),
    }
    assert unpack(rows["m3"]["hlc"])[0] == 1770642000500
    assert unpack(rows["m5"]["hlc"])[0] == parse_time_ms("2026-02-09T13:05:00+00:00")
    assert {r["origin_node"] for r in rows.values()} == {IMPORT_ORIGIN}


async def test_bad_rows_are_rejected_one_by_one_with_a_reason(tmp_path):
    service = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("ok", "a", "b", "a", "2026-02-09T13:00:00+00:00"),
        service_row("w", "a", "b", "zed", "2026-02-09T13:00:00+00:00"),
        service_row("t", "a", "b", "a", "last tuesday"),
        service_row("c", "a", "b", "a", "2026-02-09T13:00:00+00:00", board="go19"),
        service_row("s", "a", "a", "a", "2026-02-09T13:00:00+00:00"),
    ])
    report, rows, _ = await imported(tmp_path, [service])
    balanced(report)
    counts = report.files[0].matches
    assert (counts.read, counts.imported, counts.rejected) == (5, 1, 4)
    assert set(rows) == {"ok"}
    assert any("not one of the participants" in r for r in counts.reasons)
    assert any("ISO-8601" in r for r in counts.reasons)


async def test_pairwise_rows_of_one_multiplayer_game_fold_into_one_match(tmp_path):
    ts = "2026-02-09T13:24:35.{:06d}+00:00"
    t = "tournament_square8_3p_20260209_132335"
    service = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("p1", "v4", "v3", "v4", ts.format(1000), n=3, tournament=t, length=137),
        service_row("p2", "v4", "random", "v4", ts.format(2000), n=3, tournament=t, length=137),
        service_row("p3", "v3", "random", "v3", ts.format(3000), n=3, tournament=t, length=137),
        # A gauntlet tally (no tournament, no length): a pairwise result, never folded.
        service_row("g1", "v4", "random", "v4", ts.format(4000), n=3, length=0, duration=0.0),
    ])
    # The reconciliation file holds only one row of the game, under the same uuid, without
    # tournament id or duration: it is the same match, present once folded.
    recon = make_db(tmp_path / "r.db", RECONCILIATION_SQL, [
        reconciliation_row("p1", "v4", "v3", "v4", ts.format(1000), n=3, length=137),
    ])
    report, rows, _ = await imported(tmp_path, [recon, service])
    balanced(report)
    folded = [r for r in rows.values() if r["match_id"].startswith("fold-")]
    assert len(folded) == 1 and len(rows) == 2
    assert folded[0]["participants"] == ["v4", "v3", "random"]
    assert folded[0]["result"] == [1.0, 0.5, 0.0]
    assert rows["g1"]["participants"] == ["v4", "random"] and rows["g1"]["num_players"] == 3
    total = report.totals("matches")
    assert (total.read, total.imported, total.present) == (5, 2, 3)
    # The same game from the other file alone folds to the same row id.
    _, alone, _ = await imported(tmp_path, [service], name="other")
    assert folded[0]["match_id"] in alone


async def test_conflicting_duplicates_resolve_the_same_way_in_any_file_order(tmp_path):
    early = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("m", "a", "b", "a", "2026-02-09T13:00:00+00:00"),
        service_row("same", "a", "b", "b", "2026-02-09T13:00:00+00:00"),
    ])
    late = make_db(tmp_path / "r.db", RECONCILIATION_SQL, [
        reconciliation_row("m", "a", "b", "b", "2026-02-09T14:00:00+00:00"),
        reconciliation_row("same", "b", "a", "b", "2026-02-09T13:00:00+00:00"),
    ])
    one, rows1, sum1 = await imported(tmp_path, [early, late], name="n1")
    two, rows2, sum2 = await imported(tmp_path, [late, early], name="n2")
    assert sum1 == sum2 and rows1 == rows2
    assert rows1["m"]["participants"] == ["b", "a"]  # the later version wins
    assert one.totals("matches").conflicts == two.totals("matches").conflicts == 1
    _, first_wins, _ = await imported(tmp_path, [early, late], name="n3",
                                      strategy=Strategy.FIRST_WRITE_WINS)
    assert first_wins["m"]["participants"] == ["a", "b"]
    raised, raised_rows, _ = await imported(tmp_path, [early, late], name="n4",
                                            strategy=Strategy.RAISE)
    balanced(raised)
    assert raised.totals("matches").rejected == 1 and raised_rows["m"]["participants"] == ["a", "b"]


async def test_a_second_import_adds_nothing_and_a_dry_run_writes_nothing(tmp_path):
    service = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row(f"m{i}", "a", "b", "a", f"2026-02-09T13:00:{i:02d}+00:00") for i in range(20)
    ])
    dry, rows, _ = await imported(tmp_path, [service], dry_run=True)
    assert rows == {} and dry.totals("matches").imported == 20
    first, _, summary = await imported(tmp_path, [service])
    again, _, summary_again = await imported(tmp_path, [service])
    assert first.totals("matches").imported == 20
    assert (again.totals("matches").imported, again.totals("matches").present) == (0, 20)
    assert summary == summary_again


async def test_an_interrupted_import_completes_when_run_again(tmp_path, monkeypatch):
    import node.importer.run as run

    service = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row(f"m{i}", "a", "b", "a", f"2026-02-09T13:{i // 60:02d}:{i % 60:02d}+00:00")
        for i in range(300)
    ])
    _, _, clean = await imported(tmp_path, [service], name="clean")
    monkeypatch.setattr(run, "MERGE_BATCH", 100)
    stores = await stores_at(tmp_path / "node")
    merge = stores.matches.merge
    calls = 0

    async def dies_after_one_batch(rows, strategy=Strategy.LAST_WRITE_WINS, **kw):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise KeyboardInterrupt  # the process dies between two committed batches
        return await merge(rows, strategy, **kw)

    stores.matches.merge = dies_after_one_batch
    with pytest.raises(KeyboardInterrupt):
        await import_files([service], stores)
    assert (await stores.matches.summary())[0] == 100
    await stores.close()
    _, _, resumed = await imported(tmp_path, [service])
    assert resumed == clean


async def test_a_corrupt_or_missing_file_fails_alone(tmp_path):
    good = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("m", "a", "b", "a", "2026-02-09T13:00:00+00:00")])
    bad = tmp_path / "bad.db"
    bad.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    report, rows, _ = await imported(tmp_path, [bad, tmp_path / "none.db", good])
    assert [f.error is not None for f in report.files] == [True, True, False]
    assert "none.db: no such file" in report.files[1].error
    assert set(rows) == {"m"}


async def test_a_wal_file_in_a_read_only_folder_is_read_without_being_changed(tmp_path):
    folder = tmp_path / "ro"
    path = copy_seed("unified_elo_tournament.db", folder / "unified_elo.db")
    before = path.read_bytes()
    folder.chmod(0o555)
    try:
        report, rows, _ = await imported(tmp_path, [path])
    finally:
        folder.chmod(0o755)
    assert report.files[0].error is None and len(rows) == 2041
    assert path.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == ["unified_elo.db"]


async def test_seed_elo_files_account_for_every_row_and_nodes_converge(tmp_path):
    names = ["elo_service.db", "unified_elo_tournament.db", "elo_reconciliation.db"]
    files = [copy_seed(n, tmp_path / "src" / n) for n in names]
    report, rows, summary = await imported(tmp_path, files, name="all")
    balanced(report)
    total = report.totals("matches")
    assert total.read == 2007 + 2041 + 2065 and total.rejected == 0
    assert total.conflicts == 16  # README section 5: 6 + 10 conflicting duplicates
    # Two nodes import different files; merging each other's rows (what sync does) gives the
    # store one node importing all files has.
    a = await stores_at(tmp_path / "a")
    b = await stores_at(tmp_path / "b")
    try:
        await import_files(files[:1], a)
        await import_files(files[1:], b)
        rows_a = await a.matches.all_matches()
        rows_b = await b.matches.all_matches()
        await a.matches.merge(rows_b)
        await b.matches.merge(rows_a)
        assert await a.matches.summary() == await b.matches.summary()
    finally:
        await a.close()
        await b.close()


def test_source_files_are_opened_read_only(tmp_path):
    path = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [])
    conn = open_read_only(path)
    with pytest.raises(sqlite3.OperationalError):
        conn.execute("DELETE FROM match_history")


def test_only_files_that_hold_ratings_are_compared_with_ours(tmp_path):
    from node.importer.ratings_check import compare_ratings, source_ratings
    from engine.ratings import ratings_by_config

    recon = copy_seed("elo_reconciliation.db", tmp_path / "r.db")  # every rating reads 1500.0
    service = copy_seed("elo_service.db", tmp_path / "s.db")
    tables = source_ratings([recon, service])
    assert {name for name, _, _ in tables} == {"s.db"}
    rows = [{"participants": ["a", "b"], "result": [1.0, 0.0], "board_type": "square8",
             "num_players": 2}] * 3
    ours = ratings_by_config(rows)
    report = compare_ratings(ours, [("x.db", ("square8", 2), {"a": 1600.0, "b": 1400.0})])
    assert report[0]["compared"] == 2 and report[0]["order_agreement"] == 1.0
    assert abs(report[0]["differences"]["a"] + report[0]["differences"]["b"]) < 1e-6


async def test_a_locked_file_fails_alone_with_one_line(tmp_path):
    locked = make_db(tmp_path / "locked.db", ELO_SERVICE_SQL, [
        service_row("x", "a", "b", "a", "2026-02-09T13:00:00+00:00")])
    good = make_db(tmp_path / "s.db", ELO_SERVICE_SQL, [
        service_row("m", "a", "b", "a", "2026-02-09T13:00:00+00:00")])
    holder = sqlite3.connect(locked, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process writing the file right now
    try:
        report, rows, _ = await imported(tmp_path, [locked, good])
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked.db" in report.files[0].error and "locked" in report.files[0].error
    assert report.files[1].error is None and set(rows) == {"m"}
