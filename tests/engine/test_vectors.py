"""The shared contract vectors, run through ``python -m engine.vectors``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.rules import apply_move, legal_moves
from engine.stale_vectors import STALE_VECTORS
from engine.vectors import load_move, load_state, main, run_vector

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "contract-vectors"
REPO = Path(__file__).resolve().parents[2]

KNOWN_WRONG = "multi_phase.placement_capture_line"

needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")


def _report(capsys):
    code = main([str(VECTORS), "--json"])
    return code, json.loads(capsys.readouterr().out)


@needs_vectors
def test_every_shared_vector_passes_or_is_skipped_or_stale_with_its_reason(capsys):
    code, report = _report(capsys)
    failures = {f["id"]: f["assertion"] for e in report["files"] for f in e["failures"]}
    assert failures == {}
    stale = {s["id"]: s["reason"] for e in report["files"] for s in e["stale"]}
    assert stale == STALE_VECTORS  # every table entry is a shared vector, and only those
    assert report["passed"] == 24 and report["skipped"] == 12 and report["stale"] == 9
    assert code == 0
    skips = [s for e in report["files"] for s in e["skips"]]
    assert all(s["reason"] for s in skips)


@needs_vectors
def test_the_known_wrong_vector_is_stale_and_misses_only_on_its_s_delta():
    bundle = json.loads((VECTORS / "multi_phase_turn.vectors.json").read_text())
    vector = next(v for v in bundle["vectors"] if v["id"] == KNOWN_WRONG)
    outcome = run_vector(vector)
    assert outcome.result == "stale" and outcome.detail == STALE_VECTORS[KNOWN_WRONG]
    assert outcome.notes[0] == "observed: sInvariantDelta: expected 4, got 2"
    vector["id"] = "corrected"
    vector["expectedOutput"]["assertions"]["sInvariantDelta"] = 2
    assert run_vector(vector).result == "passed"


def _completions(state, mover, turn):
    """Every state that ends the mover's turn, over all legal choices."""
    if state.status != "active" or state.current != mover or state.turn != turn:
        return [state]
    return [end for m in legal_moves(state) for end in _completions(apply_move(state, m), mover, turn)]


@needs_vectors
def test_no_legal_completion_of_the_inconsistent_vector_gives_its_s_delta():
    bundle = json.loads((VECTORS / "multi_phase_turn.vectors.json").read_text())
    vector = next(v for v in bundle["vectors"] if v["id"] == KNOWN_WRONG)
    start = load_state(vector["input"]["state"])
    first = load_move(vector["input"]["initialMove"], start)
    [opening] = [m for m in legal_moves(start)
                 if (m.type, m.src, m.dst) == (first.type, first.src, first.dst)]
    ends = _completions(apply_move(start, opening), start.current, start.turn)
    assert len(ends) == 3  # the landings (4,3), (5,3), (6,3) of the forced second segment
    assert {end.progress() - start.progress() for end in ends} == {2}


@needs_vectors
def test_cli_prints_per_file_and_total_counts():
    out = subprocess.run(
        [sys.executable, "-m", "engine.vectors", str(VECTORS / "movement.vectors.json")],
        cwd=REPO, capture_output=True, text=True, check=False,
    )
    assert out.returncode == 0, out.stderr
    assert "movement.vectors.json: passed 4, failed 0, skipped 0, stale 0" in out.stdout
    assert out.stdout.strip().endswith("total: passed 4, failed 0, skipped 0, stale 0")


def _vector(move, assertions):
    state = {
        "board": {"type": "square8", "size": 8, "stacks": {
            "3,3": {"rings": [1], "stackHeight": 1, "capHeight": 1, "controllingPlayer": 1},
            "6,6": {"rings": [2], "stackHeight": 1, "capHeight": 1, "controllingPlayer": 2},
        }, "markers": {}, "collapsedSpaces": {}},
        "players": [{"playerNumber": 1, "ringsInHand": 5, "eliminatedRings": 0},
                    {"playerNumber": 2, "ringsInHand": 5, "eliminatedRings": 0}],
        "currentPlayer": 1, "currentPhase": "movement", "turnNumber": 3,
        "gameStatus": "active",
    }
    return {"id": "t", "input": {"state": state, "move": move},
            "expectedOutput": {"status": "complete", "assertions": assertions}}


def test_a_wrong_assertion_is_reported_with_the_first_difference():
    move = {"type": "move_stack", "player": 1, "from": {"x": 3, "y": 3}, "to": {"x": 3, "y": 4}}
    ok = run_vector(_vector(move, {"markerCount": 1, "currentPlayer": 2}))
    assert ok.result == "passed", ok.detail
    bad = run_vector(_vector(move, {"markerCount": 1, "stackCount": 3}))
    assert (bad.result, bad.detail) == ("failed", "stackCount: expected 3, got 2")
    unknown = run_vector(_vector(move, {"ringColour": "red"}))
    assert unknown.result == "failed" and "unknown assertion" in unknown.detail


def test_malformed_vector_states_fail_with_a_clear_reason():
    vector = _vector({"type": "skip_capture", "player": 1}, {})
    vector["input"]["state"]["board"]["stacks"]["9,9"] = {"rings": [1]}
    outcome = run_vector(vector)
    assert outcome.result == "failed" and "not on board" in outcome.detail
    with pytest.raises(ValueError, match="currentPhase"):
        bad = _vector({}, {})["input"]["state"]
        bad["currentPhase"] = "dancing"
        load_state(bad)


def test_a_region_named_only_by_one_of_its_cells_is_the_legal_region_holding_it():
    vector = _vector({"type": "choose_territory_option", "player": 1, "to": {"x": 0, "y": 0}},
                     {"collapsedCount": 3, "player1EliminatedRings": 1})
    state = vector["input"]["state"]
    state["currentPhase"] = "territory_processing"
    state["board"]["stacks"]["0,0"] = {"rings": [2]}
    state["board"]["markers"] = {"1,0": {"player": 1}, "0,1": {"player": 1}}
    vector["expectedOutput"]["status"] = "awaiting_decision"  # the cap it now owes
    outcome = run_vector(vector)
    assert outcome.result == "passed", outcome.detail


def test_a_vector_whose_move_is_not_legal_fails():
    move = {"type": "move_stack", "player": 1, "from": {"x": 3, "y": 3}, "to": {"x": 5, "y": 4}}
    outcome = run_vector(_vector(move, {"markerCount": 1}))
    assert outcome.result == "failed"
    assert outcome.detail == "illegal move: move_stack is not a legal move here"


def test_victory_reason_assertions_are_checked():
    # Player 1 lands on a marker: the ring it costs is the 18th, and the game ends with
    # the turn.
    move = {"type": "move_stack", "player": 1, "from": {"x": 3, "y": 3}, "to": {"x": 3, "y": 4}}
    vector = _vector(move, {"gameStatus": "completed", "victoryReason": "ring_elimination",
                            "victoryWinner": 1})
    state = vector["input"]["state"]
    state["board"]["markers"] = {"3,4": {"player": 2}}
    state["players"][0]["eliminatedRings"] = 17
    assert run_vector(vector).result == "passed"
    vector["expectedOutput"]["assertions"]["victoryReason"] = "territory_control"
    outcome = run_vector(vector)
    assert outcome.detail == "victoryReason: expected 'territory_control', got 'ring_elimination'"


def test_an_open_chain_capture_choice_plays_the_continuation_the_vector_expects():
    # After 0,0 x 0,1 -> 0,3 the chain must go on, east over 1,3 (to 2,3 or 3,3) or
    # north over 0,4 (to 0,5 or 0,6); no hint names one. Only the landing at 0,6 leaves
    # the stacks of the expected assertions.
    stacks = {"0,0": [1, 1], "0,1": [2], "1,3": [2], "0,4": [2], "7,7": [2]}
    vector = _vector({}, {"currentPlayer": 2, "stackCount": 3})
    state = vector["input"]["state"]
    state["board"]["stacks"] = {k: {"rings": r} for k, r in stacks.items()}
    vector["input"] = {"state": state, "initialMove": {
        "type": "overtaking_capture", "player": 1, "from": {"x": 0, "y": 0},
        "captureTarget": {"x": 0, "y": 1}, "to": {"x": 0, "y": 3}}}
    outcome = run_vector(vector)
    assert outcome.result == "passed", outcome.detail
    assert "ways to finish the turn" in outcome.notes[0]
    vector["expectedOutput"]["assertions"]["stackCount"] = 9
    assert run_vector(vector).result == "failed"


def test_a_whole_exact_line_may_be_collapsed_with_choose_line_option():
    line = [{"x": x, "y": 2} for x in range(4)]
    vector = _vector({"type": "choose_line_option", "player": 1,
                      "formedLines": [{"positions": line}], "collapsedMarkers": line},
                     {"collapsedCount": 4, "markerCount": 0})
    state = vector["input"]["state"]
    state["currentPhase"] = "line_processing"
    state["board"]["markers"] = {f"{x},2": {"player": 1} for x in range(4)}
    vector["expectedOutput"]["status"] = "awaiting_decision"  # the ring it now owes
    outcome = run_vector(vector)
    assert outcome.result == "passed", outcome.detail
