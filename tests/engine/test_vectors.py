"""The shared contract vectors, run through ``python -m engine.vectors``."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.vectors import load_state, main, run_vector

VECTORS = Path(__file__).resolve().parents[2].parent / "shared" / "contract-vectors"
REPO = Path(__file__).resolve().parents[2]

# This vector contradicts the spec: after the forced two-segment chain every legal
# continuation gives S + 2 (each segment adds one departure marker; a landing marker's
# removal is matched by the ring it costs), never the S + 4 it expects, and the 5-marker
# line its notes describe cannot form (captured cells are left empty). Its numbers (4
# markers, 2 stacks, S + 4) are what a landing on (6,3) gives if the two own markers
# collapsed on the way were still counted as markers: a cell both marker and collapsed,
# which RR-CANON-R021/R031 rule out. The upstream-skipped full_sequence_with_territory
# vectors of the same family expect the same impossible S + 4. The adapter reports it
# as failed; it is not hidden.
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
