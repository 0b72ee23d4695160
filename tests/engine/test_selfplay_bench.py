"""The selfplay benchmark prints every figure the issue asks for (figures, not asserts)."""

import pytest

from tools.bench.selfplay import run


@pytest.mark.benchmark
def test_quick_selfplay_benchmark_reports_its_figures():
    figures = run(quick=True)
    print(figures)
    for name in ("policy_only_games_per_s", "random_playout_games_per_s",
                 "policy_only_overhead", "gumbel16_games_per_s", "policy_only_positions_per_s",
                 "policy_only_avg_batch", "net_cpu_default_positions_per_s",
                 "net_gpu_default_positions_per_s"):
        assert isinstance(figures[name], (int, float)) and figures[name] > 0
