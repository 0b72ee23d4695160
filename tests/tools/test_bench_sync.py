"""The sync benchmark runs end to end on two real nodes and reports every figure it promises."""

from __future__ import annotations

from tools.bench.sync import run

FIGURES = {
    "sync_game_rows_per_s", "sync_match_rows_per_s", "local_merge_game_rows_per_s",
    "local_merge_match_rows_per_s", "game_ratio_to_local_merge", "match_ratio_to_local_merge",
}


def test_quick_sync_benchmark_catches_up_and_reports_its_rates() -> None:
    figures = run(quick=True)
    assert FIGURES <= figures.keys()
    assert all(isinstance(figures[name], (int, float)) and figures[name] > 0 for name in FIGURES)
    assert figures["games"] == 100 and figures["match_rows"] == 2_000
