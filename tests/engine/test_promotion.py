"""PromotionController: every criterion at and around its threshold, and the paired SPRT."""

import pytest

from engine.promotion import (
    HEURISTIC,
    RANDOM,
    Decision,
    Evidence,
    HeadToHead,
    PromotionController,
    PromotionCriteria,
    PromotionType,
    head_to_head,
)
from engine.sprt import PairedSprt, SprtParams, Verdict, elo_to_score, score_to_elo

CRITERIA = PromotionCriteria()
GOOD_GATES = {RANDOM: (0.95, 60), HEURISTIC: (0.70, 60)}


def _h2h(score=0.56, games=400, verdict=Verdict.ACCEPT_H1) -> HeadToHead:
    return HeadToHead(games, score, score_to_elo(score), verdict, "test")


def _controller(evidence: Evidence, production="prod") -> PromotionController:
    ctl = PromotionController(lambda *_: evidence)
    if production is not None:
        ctl.observe_alias("production", "square8", 2, production)
    return ctl


def _decide(evidence: Evidence, kind=PromotionType.PRODUCTION, production="prod"):
    return _controller(evidence, production).evaluate_promotion("cand", "square8", 2, kind)


def test_reference_defaults():
    c = CRITERIA
    assert (c.min_elo_improvement, c.min_games_played, c.min_win_rate) == (25.0, 50, 0.52)
    assert (c.max_value_mse_degradation, c.confidence_threshold, c.tier_games_required) == (
        0.05, 0.95, 100)
    assert (c.random_gate, c.heuristic_gate) == (0.85, 0.60)
    assert c.sprt().alpha == pytest.approx(0.05)


def test_a_candidate_passing_everything_is_promoted_with_its_reasons():
    d = _decide(Evidence(_h2h(), GOOD_GATES))
    assert d.should_promote and d.decision is Decision.SWAP_PRODUCTION
    assert d.baseline_model_id == "prod" and d.games_played == 400
    assert all(r.startswith("pass: ") for r in d.reasons) and len(d.reasons) >= 6


@pytest.mark.parametrize("score,ok", [(0.5359, False), (0.5361, True)])  # +25 Elo is 0.53597
def test_min_elo_improvement_at_its_threshold(score, ok):
    d = _decide(Evidence(_h2h(score=score), GOOD_GATES))
    assert d.should_promote is ok
    assert any(("pass: " if ok else "fail: ") + "Elo" in r for r in d.reasons)


@pytest.mark.parametrize("score,ok", [(0.5199, False), (0.5200, True)])
def test_min_win_rate_at_its_threshold(score, ok):
    lenient = PromotionCriteria(min_elo_improvement=0.0)
    ctl = PromotionController(lambda *_: Evidence(_h2h(score=score), GOOD_GATES), lenient)
    ctl.observe_alias("production", "square8", 2, "prod")
    d = ctl.evaluate_promotion("cand", "square8", 2)
    assert d.should_promote is ok
    assert any(r.startswith("pass: win rate" if ok else "fail: win rate") for r in d.reasons)


@pytest.mark.parametrize("games,ok", [(49, False), (50, True)])
def test_min_games_played_at_its_threshold(games, ok):
    d = _decide(Evidence(_h2h(games=games), GOOD_GATES))
    assert d.should_promote is ok
    if not ok:
        assert d.decision is Decision.RETAIN_PRODUCTION


@pytest.mark.parametrize("gate,score,ok", [
    (RANDOM, 0.849, False), (RANDOM, 0.85, True),
    (HEURISTIC, 0.599, False), (HEURISTIC, 0.60, True),
])
def test_baseline_gates_at_their_thresholds(gate, score, ok):
    gates = dict(GOOD_GATES)
    gates[gate] = (score, 60)
    d = _decide(Evidence(_h2h(), gates))
    assert d.should_promote is ok
    assert d.decision is (Decision.SWAP_PRODUCTION if ok else Decision.RETAIN_PRODUCTION)


def test_a_gate_with_too_few_games_is_pending_not_failed():
    gates = dict(GOOD_GATES)
    gates[RANDOM] = (1.0, 49)
    d = _decide(Evidence(_h2h(), gates))
    assert d.decision is Decision.INSUFFICIENT_DATA and not d.final
    assert any(r.startswith("pending: score 1.000 vs random") for r in d.reasons)


@pytest.mark.parametrize("mse,ok", [(0.3501, False), (0.35, True)])
def test_value_mse_degradation_at_its_threshold(mse, ok):
    d = _decide(Evidence(_h2h(), GOOD_GATES, value_mse=mse, baseline_value_mse=0.30))
    assert d.should_promote is ok


def test_a_running_sprt_is_insufficient_data_and_an_h0_verdict_retains():
    running = _decide(Evidence(_h2h(verdict=Verdict.RUNNING, games=80), GOOD_GATES))
    assert running.decision is Decision.INSUFFICIENT_DATA and not running.should_promote
    rejected = _decide(Evidence(_h2h(score=0.6, verdict=Verdict.ACCEPT_H0), GOOD_GATES))
    assert rejected.decision is Decision.RETAIN_PRODUCTION
    truncated = _decide(Evidence(_h2h(verdict=Verdict.TRUNCATED_PASS), GOOD_GATES))
    assert truncated.should_promote


def test_first_model_of_a_config_only_needs_the_baseline_gates():
    d = _decide(Evidence(None, GOOD_GATES), production=None)
    assert d.should_promote and d.baseline_model_id is None


def test_tier_needs_tier_games_required_and_the_win_rate():
    few = _decide(Evidence(_h2h(games=99)), PromotionType.TIER)
    assert few.decision is Decision.INSUFFICIENT_DATA
    enough = _decide(Evidence(_h2h(games=100, score=0.52)), PromotionType.TIER)
    assert enough.should_promote
    weak = _decide(Evidence(_h2h(games=100, score=0.51)), PromotionType.TIER)
    assert weak.decision is Decision.RETAIN_PRODUCTION


def test_staging_needs_only_the_baseline_gates_and_moves_the_staging_alias():
    ctl = _controller(Evidence(None, GOOD_GATES))
    d = ctl.evaluate_promotion("cand", "square8", 2, PromotionType.STAGING)
    assert d.should_promote
    assert [m.name for m in ctl.execute_promotion(d).alias_moves] == ["staging"]


def test_execute_moves_production_and_previous_and_dry_run_changes_nothing():
    ctl = _controller(Evidence(_h2h(), GOOD_GATES))
    d = ctl.evaluate_promotion("cand", "square8", 2)
    dry = ctl.execute_promotion(d, dry_run=True)
    assert dry.dry_run and [(m.name, m.model_id) for m in dry.alias_moves] == [
        ("previous", "prod"), ("production", "cand")]
    assert ctl.alias("production", "square8", 2) == "prod"
    ctl.execute_promotion(d)
    assert ctl.alias("production", "square8", 2) == "cand"
    assert ctl.alias("previous", "square8", 2) == "prod"


def test_rollback_moves_production_back_to_previous_and_needs_one():
    ctl = _controller(Evidence())
    assert not ctl.evaluate_promotion("prod", "square8", 2, PromotionType.ROLLBACK).should_promote
    ctl.observe_alias("previous", "square8", 2, "old")
    d = ctl.evaluate_promotion("prod", "square8", 2, PromotionType.ROLLBACK)
    assert d.decision is Decision.ROLLBACK and d.baseline_model_id == "old"
    moves = ctl.execute_promotion(d).alias_moves
    assert [(m.name, m.model_id) for m in moves] == [("production", "old")]


def test_reordering_is_its_own_flag_and_never_changes_the_decision():
    d = _decide(Evidence(_h2h(), GOOD_GATES, reorder_applied=True))
    assert d.reorder_applied and d.decision is Decision.SWAP_PRODUCTION


# --- the paired SPRT -------------------------------------------------------------------------

PARAMS = CRITERIA.sprt()


def test_sprt_counts_trials_in_dispatch_order_not_arrival_order():
    sprt = PairedSprt(PARAMS)
    sprt.add(1, 1.0)  # trial 1 came back first: it waits for trial 0
    assert sprt.trials == 0
    sprt.add(0, 0.0)
    assert sprt.trials == 2 and sprt.mean == 0.5
    sprt.add(1, 1.0)  # a retried assignment's duplicate does not count twice
    assert sprt.trials == 2


def test_sprt_decides_nothing_before_min_games_then_accepts_h1_for_a_winning_streak():
    sprt = PairedSprt(PARAMS)
    for i in range(PARAMS.min_games // 2 - 1):
        assert sprt.add(i, 1.0) is Verdict.RUNNING
    assert sprt.add(PARAMS.min_games // 2 - 1, 1.0) is Verdict.ACCEPT_H1
    assert sprt.pentanomial == [0, 0, 0, 0, PARAMS.min_games // 2]
    assert "accept_h1" in head_to_head(sprt).summary


def test_sprt_accepts_h0_for_a_losing_streak_and_freezes_its_verdict():
    sprt = PairedSprt(PARAMS)
    for i in range(PARAMS.min_games // 2):
        sprt.add(i, 0.0)
    assert sprt.verdict is Verdict.ACCEPT_H0
    games = sprt.games
    sprt.add(PARAMS.min_games // 2, 1.0)
    assert sprt.games == games and sprt.verdict is Verdict.ACCEPT_H0


def test_sprt_truncates_at_max_games_on_the_lower_bound():
    params = SprtParams(0.0, 35.0, 0.05, 0.05, 4, 8)
    for scores, verdict in (([0.5, 0.75, 0.5, 0.5], Verdict.TRUNCATED_FAIL),):
        sprt = PairedSprt(params)
        for i, s in enumerate(scores):
            sprt.add(i, s)
        assert sprt.verdict is verdict and sprt.games == 8


def test_sprt_rejects_bad_scores_and_parameters():
    with pytest.raises(ValueError):
        PairedSprt(PARAMS).add(0, 1.5)
    with pytest.raises(ValueError):
        SprtParams(35.0, 0.0, 0.05, 0.05, 100, 1200)
    with pytest.raises(ValueError):
        PromotionCriteria(confidence_threshold=1.0)


def test_elo_score_round_trip():
    for elo in (-300.0, -25.0, 0.0, 35.0, 400.0):
        assert score_to_elo(elo_to_score(elo)) == pytest.approx(elo)
