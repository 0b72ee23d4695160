"""The rules benchmark reports every figure for all 12 configs (figures, not asserts)."""

from engine.boards import BOARD_TYPES
from tools.bench.rules import run


def test_quick_rules_benchmark_reports_all_figures_for_every_config():
    figures = run(quick=True)
    for board in BOARD_TYPES:
        for players in (2, 3, 4):
            prefix = f"{board}_{players}p_"
            for name in ("games_per_s", "moves_per_s", "legal_moves_per_s", "avg_moves"):
                value = figures[prefix + name]
                assert isinstance(value, (int, float)) and value > 0
