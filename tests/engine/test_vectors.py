"""The shared contract vectors, run through ``python -m engine.vectors``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.rules import apply_move, legal_moves
from engine.vectors import load_move, load_state, main, run_vector

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "contract-vectors"
REPO = Path(__file__).resolve().parents[2]

# This vector contradicts the spec, and no reference runner checks the number it gets
# wrong. From its start (S = 3) the chain has three legal completions, landing on the
# own markers at (4,3), (5,3) or (6,3); each gives S + 2 (one departure marker per
# segment; a jumped own marker turns into a collapsed space, M + C unchanged; a landing
# marker's removal is matched by the cap ring it costs, RR-CANON-R092/R102), and no line
# or region forms. Its stackCount 2 and markerCount 4 pin the landing it names, (4,3):
# M 4, C 0, E 1, so S + 4 needs E = 3, which is what counting the two captured rings as
# eliminated would give; but a captured ring goes to the bottom of the capturing stack
# and stays in play (RR-CANON-R102; COMPLETE_RULES 9.1 and FAQ Q6), and E counts only
# eliminated rings (RR-CANON-R191). Upstream, the generic runners skip it (TS: uses
# initialMove; Python: tagged multi_phase) and the multi-phase runner's
# validateAgainstAssertions never reads sInvariantDelta. The upstream-skipped
# full_sequence_with_territory vectors of the same family expect the same impossible
# S + 4. The adapter reports it as failed; it is not hidden.
INCONSISTENT = {"multi_phase.placement_capture_line": "sInvariantDelta: expected 4, got 2"}

needs_vectors = pytest.mark.skipif(not VECTORS.is_dir(), reason=f"no vectors at {VECTORS}")


def _report(capsys):
    code = main([str(VECTORS), "--json"])
    return code, json.loads(capsys.readouterr().out)


@needs_vectors
def test_every_shared_vector_passes_or_is_skipped_with_its_upstream_reason(capsys):
    code, report = _report(capsys)
    failures = {f["id"]: f["assertion"] for e in report["files"] for f in e["failures"]}
    assert failures == INCONSISTENT
    assert report["passed"] == 32 and report["skipped"] == 12
    assert code == 1  # any failure makes the exit status non-zero
    skips = [s for e in report["files"] for s in e["skips"]]
    assert all(s["reason"] for s in skips)


@needs_vectors
def test_inconsistent_vector_fails_only_on_its_s_delta():
    bundle = json.loads((VECTORS / "multi_phase_turn.vectors.json").read_text())
    vector = next(v for v in bundle["vectors"] if v["id"] in INCONSISTENT)
    outcome = run_vector(vector)
    assert (outcome.result, outcome.detail) == ("failed", INCONSISTENT[vector["id"]])
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
    vector = next(v for v in bundle["vectors"] if v["id"] in INCONSISTENT)
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
    assert "movement.vectors.json: passed 4, failed 0, skipped 0" in out.stdout
    assert out.stdout.strip().endswith("total: passed 4, failed 0, skipped 0")


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
    assert outcome.notes == []  # it matched a legal move: nothing applied unchecked
