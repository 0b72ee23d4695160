"""The canonical engine's recorded games, replayed through this engine (``engine.traces``).

The default run replays the first game of each square8 and hex8 config (about a second);
``-m slow`` replays every game of every config.
"""

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine import moves as mt
from engine.rules import apply_move_in_place, legal_moves
from engine.traces import from_ts, main, move_key, replay_game, start_state, to_ts

REPO = Path(__file__).resolve().parents[2]
TRACES = REPO.parent / "shared" / "rules-traces"

needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason=f"no traces at {TRACES}")


def _first_games(board: str) -> list[dict]:
    """The first recorded game of each player count on ``board``."""
    wanted = {f'{{"id":"rt-{board}-{n}p-' for n in (2, 3, 4)}
    games = []
    with gzip.open(TRACES / f"{board}.jsonl.gz", "rt", encoding="utf-8") as fh:
        for line in fh:
            head = next((w for w in wanted if line.startswith(w)), None)
            if head:
                wanted.discard(head)
                games.append(json.loads(line))
                if not wanted:
                    break
    return games


@pytest.fixture(scope="module")
def sample() -> list[dict]:
    return _first_games("square8") + _first_games("hex8")


@needs_traces
def test_a_sample_of_recorded_games_agrees_at_every_step(sample):
    assert len(sample) == 6
    for game in sample:
        outcome = replay_game(game)
        assert outcome.disagreement is None, outcome.disagreement
        assert outcome.agreed_steps == len(game["steps"])


@needs_traces
def test_every_legal_move_translates_to_the_reference_format_and_back(sample):
    game = sample[0]
    state = start_state(game)
    for step in game["steps"][:40]:
        legal = legal_moves(state)
        keys = {move_key(to_ts(m, state), state.board, state.line_length) for m in legal}
        assert len(keys) == len(legal)  # no two of our moves read as one of theirs
        for move in legal[::9]:
            assert from_ts(to_ts(move, state), state) == move
        apply_move_in_place(state, from_ts(step["move"], state))


@needs_traces
def test_a_tampered_record_is_a_disagreement_with_its_step_and_kind(sample):
    game = copy.deepcopy(sample[0])
    step = game["steps"][5]
    step["legal_moves"] = step["legal_moves"][1:] + [{"type": "skip_capture", "player": 1}]
    step["chosen"] = 0
    step["move"] = step["legal_moves"][0]
    d = replay_game(game).disagreement
    assert (d.step, d.what) == (5, "legal_moves")
    assert "only ours (1)" in d.detail and "only ref (1)" in d.detail
    game = copy.deepcopy(sample[0])
    game["steps"][7]["hash_after"] = "0" * 16
    d = replay_game(game).disagreement
    assert (d.step, d.what, d.detail.endswith("digest differs")) == (7, "state", True)
    game = copy.deepcopy(sample[0])
    game["result"]["victory_reason"] = "territory_control"
    d = replay_game(game).disagreement
    assert d.what == "result" and d.step == len(game["steps"]) - 1


def test_process_line_and_a_whole_line_option_are_one_move():
    from engine.boards import board_config

    cfg = board_config("square8")
    line = [{"x": x, "y": 0} for x in range(4)]
    exact = {"type": mt.PROCESS_LINE, "player": 1, "formedLines": [{"positions": line}]}
    whole = {"type": mt.CHOOSE_LINE_OPTION, "player": 1, "formedLines": [{"positions": line}],
             "collapsedMarkers": line}
    part = dict(whole, collapsedMarkers=line[:3])
    assert move_key(exact, cfg, 4) == move_key(whole, cfg, 4)
    assert move_key(part, cfg, 3) != move_key(whole, cfg, 3)
    assert move_key(exact, cfg, 3) is None  # a no-op on an over-long line


@needs_traces
def test_cli_json_ends_with_the_totals(tmp_path, sample):
    path = tmp_path / "one.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps(sample[0]) + "\n")
    out = subprocess.run([sys.executable, "-m", "engine.traces", str(path), "--json"],
                         cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    last = json.loads(out.stdout.strip().splitlines()[-1])
    steps = len(sample[0]["steps"])
    assert {k: last[k] for k in ("games", "steps", "agreed_games", "agreed_steps",
                                 "disagreements")} == {
        "games": 1, "steps": steps, "agreed_games": 1, "agreed_steps": steps,
        "disagreements": 0}
    assert "square8 2p: games 1/1 agree" in out.stdout


@needs_traces
@pytest.mark.slow
def test_every_recorded_game_of_every_config_agrees_at_every_step(capsys):
    code = main([str(TRACES), "--json"])
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(report["configs"]) == 12
    assert report["disagreements"] == 0 and code == 0
    assert report["agreed_steps"] == report["steps"] and report["agreed_games"] == report["games"]
