"""The promotion simulator drives the real controller; its seeded figures land near the goals.

The goals themselves (thousands of trials) are measured by `python -m tools.promotion_sim`;
these runs are small and seeded, so they check the direction, not the third decimal.
"""

import json

from tools.bench.promotion import run
from tools.promotion_sim import main, simulate


def test_equal_candidates_are_rarely_promoted_and_much_stronger_ones_usually_are():
    equal = simulate(0.0, 300, seed=3)
    strong = simulate(50.0, 300, seed=3)
    assert equal["p_promote"] <= 0.08
    assert strong["p_promote"] >= 0.9
    assert 100 <= equal["mean_games"] <= 1200


def test_cli_prints_json(capsys):
    assert main(["--elo-diff", "-25", "--trials", "20", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["trials"] == 20 and figures["p_promote"] == 0.0


def test_quick_promotion_benchmark_reports_every_figure():
    figures = run(quick=True)
    for name in ("evaluate_promotion_us", "rating_tally_s", "rating_fit_s", "drift_check_ms"):
        assert figures[name] > 0
    assert figures["drift_max_elo_missing_1pct"] > 0
