"""The storage benchmark runs end to end and reports every figure it promises (not speeds)."""

from __future__ import annotations

from tools.bench.storage import run

FIGURES = {
    "match_import_rows_per_s", "game_import_games_per_s", "digest_update_ns_per_row",
    "digest_1m_rows_s", "match_reimport_rows_per_s", "match_import_rows_per_s_batch64",
    "game_reimport_games_per_s", "open_s_with_match_db", "digest_1m_rows_from_stored_hashes_s",
}


def test_quick_benchmark_reports_every_figure() -> None:
    figures = run(quick=True)
    assert FIGURES <= figures.keys()
    assert all(isinstance(figures[name], (int, float)) and figures[name] > 0 for name in FIGURES)
