"""tools.elo_drift check-drift --db against a reference system's Elo file (offline)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from node.datadir import init_data_dir
from node.importer.run import import_files
from storage.hlc import HybridClock
from storage.stores import open_stores
from tools import elo_drift

SEED = Path(__file__).resolve().parents[2].parent / "shared" / "seed-data"
ELO_SERVICE = SEED / "elo_service.db"


@pytest.mark.skipif(not ELO_SERVICE.is_file(), reason=f"shared seed data missing: {ELO_SERVICE}")
def test_check_drift_against_a_reference_elo_file_names_the_planted_match(tmp_path, capsys):
    data_dir = tmp_path / "node"
    files = init_data_dir(data_dir)

    async def plant() -> tuple[str, str]:
        stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                         60_000), files.node_id)
        try:
            await import_files([ELO_SERVICE], stores)
            rows = await stores.matches.all_matches("square8", 2)
            a, b = rows[0]["participants"]
            await stores.matches.record_match("planted", [a, b], "square8", 2, [1.0, 0.0])
            return a, b
        finally:
            await stores.close()

    a, b = asyncio.run(plant())
    code = elo_drift.main(["check-drift", "--db", str(ELO_SERVICE), "--data-dir", str(data_dir),
                           "--board-type", "square8", "--num-players", "2", "--json"])
    (report,) = json.loads(capsys.readouterr().out)["reports"]
    assert report["matches"]["only_source"]["ids"] == ["planted"]
    assert report["matches"]["only_target"]["count"] == 0
    assert report["matches"]["differing"]["count"] == 0
    assert report["participants_in_source"] == report["participants_in_both"]
    assert {a, b} <= set(report["rating_diffs"]) and report["max_rating_diff"] > 0
    assert code == (1 if report["is_significant"] else 0)

    assert elo_drift.main(["check-drift", "--db", str(tmp_path / "missing.db"),
                           "--data-dir", str(data_dir)]) == 2
    assert "no such database file" in capsys.readouterr().err
