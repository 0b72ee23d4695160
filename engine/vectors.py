"""Contract-vector adapter: run the reference engine's test vectors against this engine.

``python -m engine.vectors PATH [PATH...] [--json]``: each PATH is a ``*.vectors.json``
bundle or a directory of them. For every vector the adapter loads the input
SerializedGameState, applies the move as a host would (then fills in the bookkeeping
moves of the decision phases, ``no_line_action`` and ``no_territory_action``, the way the
reference orchestrator's post-move processing does), and checks every assertion.

A vector whose move this engine does not list as legal fails. Vectors marked ``skip``
upstream are reported as skipped with that reason; vectors in
``engine.stale_vectors.STALE_VECTORS`` (contradicted by the canonical engine itself, or
wrong) are run and reported as ``stale`` with their reason, not as failures. Where a
multi-phase vector leaves a choice open (a chain capture with no landing hint), every
choice is played out and the one reaching the expected state counts.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import moves as mt
from .boards import BOARD_TYPES, BoardConfig, board_config
from .lines import run_through
from .moves import Move
from .rules import apply_move_in_place, legal_moves
from .serialization import derive_counts
from .stale_vectors import STALE_VECTORS
from .state import (
    ACTIVE,
    CAPTURE,
    CHAIN_CAPTURE,
    FORCED_ELIMINATION,
    LINE_PROCESSING,
    MAX_PLAYERS,
    PENDING_EXTRACTION,
    PENDING_LINE,
    PENDING_TERRITORY,
    PHASES,
    TERRITORY_PROCESSING,
    GameState,
    empty_state,
)

MAX_BUNDLE_BYTES = 16 * 1024 * 1024  # a bundle is a few KB; refuse anything absurd
MAX_VECTORS = 10_000
MAX_TURN_STEPS = 1_000  # moves a host may apply to finish one vector's turn

_DECISION_PHASES = (CAPTURE, CHAIN_CAPTURE, LINE_PROCESSING, TERRITORY_PROCESSING,
                    FORCED_ELIMINATION)
_AUTO_FILL = frozenset({mt.NO_LINE_ACTION, mt.NO_TERRITORY_ACTION})


class VectorError(ValueError):
    """A vector file or vector that does not have the expected shape."""


class IllegalVectorMove(ValueError):
    """A vector move that this engine does not list as legal."""


# Reading the reference engine's SerializedGameState and Move -------------------------


def _player_no(value: object, what: str, n: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= n:
        raise VectorError(f"{what} = {value!r}: expected a player number 1..{n}")
    return value


def _count(value: object, what: str, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= hi:
        raise VectorError(f"{what} = {value!r}: expected an int in 0..{hi}")
    return value


def load_state(data: object) -> GameState:
    """A GameState from a reference SerializedGameState (stack rings listed top first)."""
    if not isinstance(data, dict):
        raise VectorError(f"state: expected a mapping, got {type(data).__name__}")
    board = data.get("board")
    if not isinstance(board, dict) or board.get("type") not in BOARD_TYPES:
        raise VectorError(f"state.board.type: expected one of {BOARD_TYPES}")
    cfg = board_config(board["type"])
    players = data.get("players")
    if not isinstance(players, list) or not 1 <= len(players) <= MAX_PLAYERS:
        raise VectorError(f"state.players: expected a list of 1..{MAX_PLAYERS} players")
    n = len(players)
    s = empty_state(cfg, n, 0, False)
    most = n * cfg.rings_per_player
    for field_name in ("stacks", "markers", "collapsedSpaces"):
        entries = board.get(field_name, {})
        if not isinstance(entries, dict) or len(entries) > cfg.num_cells:
            raise VectorError(f"board.{field_name}: expected a mapping of at most "
                              f"{cfg.num_cells} cells")
        for key, value in entries.items():
            cell = cfg.cell_of(key)
            if s.stacks[cell] or s.markers[cell] or s.collapsed[cell]:
                raise VectorError(f"board cell {key}: holds more than one of stack, marker, "
                                  "collapsed space")
            if field_name == "stacks":
                rings = value.get("rings") if isinstance(value, dict) else None
                if not isinstance(rings, list) or not 0 < len(rings) <= most:
                    raise VectorError(f"stacks[{key}].rings: expected 1..{most} rings")
                s.put_stack(cell, tuple(
                    _player_no(r, f"stacks[{key}] ring", n) for r in reversed(rings)
                ))
            elif field_name == "markers":
                owner = value.get("player") if isinstance(value, dict) else value
                s.markers[cell] = _player_no(owner, f"markers[{key}]", n)
            else:
                owner = value.get("player") if isinstance(value, dict) else value
                s.collapsed[cell] = _player_no(owner, f"collapsedSpaces[{key}]", n)
    for i, p in enumerate(players, start=1):
        if not isinstance(p, dict):
            raise VectorError(f"players[{i - 1}]: expected a mapping")
        if p.get("playerNumber", i) != i:
            raise VectorError(f"players[{i - 1}].playerNumber = {p.get('playerNumber')!r}: "
                              f"expected {i} (players in seat order)")
        s.in_hand[i] = _count(p.get("ringsInHand", 0), f"players[{i - 1}].ringsInHand",
                              cfg.rings_per_player)
        s.eliminated[i] = _count(p.get("eliminatedRings", 0),
                                 f"players[{i - 1}].eliminatedRings", most)
    derive_counts(s)
    s.current = _player_no(data.get("currentPlayer"), "currentPlayer", n)
    phase = data.get("currentPhase")
    if phase not in PHASES:
        raise VectorError(f"currentPhase = {phase!r}: expected one of {PHASES}")
    s.phase = phase
    status = data.get("gameStatus", "active")
    if status not in ("active", "completed", "finished"):
        raise VectorError(f"gameStatus = {status!r}: expected active or completed")
    s.status = "active" if status == "active" else "completed"
    turn = data.get("turnNumber", 1)
    s.turn = _count(turn, "turnNumber", 1 << 40) or 1
    chain = data.get("chainCapturePosition")
    if chain is not None:
        s.chain_pos = cfg.cell_of(chain)
    # The serialized form does not say whether the player already changed the board this
    # turn; a state past the movement phase is taken to have done so.
    s.turn_changed = phase in _DECISION_PHASES
    if data.get("pendingLineRewardElimination") is True:
        s.pending = PENDING_LINE
    must = data.get("mustMoveFromStackKey")
    if must is not None:
        s.must_move = cfg.cell_of(must)
    s.swap_eligible = n == 2 and s.turn <= 2
    return s


def _cells(cfg: BoardConfig, positions: object, what: str) -> tuple[int, ...]:
    if not isinstance(positions, list) or len(positions) > cfg.num_cells:
        raise VectorError(f"{what}: expected a list of at most {cfg.num_cells} positions")
    return tuple(cfg.cell_of(p) for p in positions)


def _first(items: object, what: str) -> dict[str, Any] | None:
    if items is None:
        return None
    if not isinstance(items, list) or (items and not isinstance(items[0], dict)):
        raise VectorError(f"{what}: expected a list of mappings")
    return items[0] if items else None


def load_move(data: object, state: GameState) -> Move:
    """A Move from a reference Move. Fields a type does not use are ignored, as the
    reference engine ignores them (``to`` on skip_placement, for instance)."""
    if not isinstance(data, dict):
        raise VectorError(f"move: expected a mapping, got {type(data).__name__}")
    cfg = state.board
    mtype = data.get("type")
    if mtype not in mt.MOVE_TYPES:
        raise VectorError(f"move.type = {mtype!r}: expected one of {mt.MOVE_TYPES}")
    player = _player_no(data.get("player"), "move.player", state.num_players)

    def cell(key: str) -> int:
        return cfg.cell_of(data[key]) if data.get(key) is not None else -1

    if mtype == mt.PLACE_RING:
        count = data.get("placementCount", 1)
        return Move(mtype, player, dst=cell("to"), count=_count(count, "placementCount", 3))
    if mtype == mt.MOVE_STACK:
        return Move(mtype, player, cell("from"), cell("to"))
    if mtype in (mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT):
        return Move(mtype, player, cell("from"), cell("to"), cell("captureTarget"))
    if mtype in (mt.ELIMINATE_RINGS_FROM_STACK, mt.FORCED_ELIMINATION):
        target = data.get("targetStack", data.get("to"))
        return Move(mtype, player, dst=-1 if target is None else cfg.cell_of(target))
    if mtype == mt.CHOOSE_TERRITORY_OPTION:
        region = _first(data.get("disconnectedRegions"), "move.disconnectedRegions")
        cells = _cells(cfg, region.get("spaces"), "region.spaces") if region else ()
        return Move(mtype, player, dst=cell("to"), cells=tuple(sorted(cells)))
    if mtype in (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION) and not data.get("formedLines"):
        option = 1 if mtype == mt.CHOOSE_LINE_OPTION else 0
        return Move(mtype, player, dst=cell("to"), option=option)
    if mtype in (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION):
        line = _first(data.get("formedLines"), "move.formedLines")
        cells = _cells(cfg, line.get("positions"), "formedLines.positions") if line else ()
        collapse = data.get("collapsedMarkers")
        option = 1 if mtype == mt.CHOOSE_LINE_OPTION else 0
        if collapse is not None:
            chosen = _cells(cfg, collapse, "move.collapsedMarkers")
            if len(chosen) < len(cells):
                return Move(mtype, player, cells=chosen, border=cells, option=2)
        return Move(mtype, player, cells=cells, option=option)
    if mtype == mt.RECOVERY_SLIDE:
        mode = data.get("recoveryMode", "line")
        if mode not in mt.RECOVERY_MODES:
            raise VectorError(f"recoveryMode = {mode!r}: expected one of {mt.RECOVERY_MODES}")
        option = data.get("recoveryOption", data.get("option", 1 if mode == "line" else 0))
        option = _count(option, "recoveryOption", 2)
        src, dst = cell("from"), cell("to")
        cells: tuple[int, ...] = ()
        if mode == "line":
            if option == 2:
                cells = _cells(cfg, data.get("collapsePositions"), "collapsePositions")
            else:
                half = cfg.num_dirs // 2
                runs = [run_through(state, dst, player, a, src) for a in range(half)]
                cells = max(runs, key=len)
        # extractionStacks is not read: the engine picks the stack that pays.
        return Move(mtype, player, src, dst, cells=cells, option=option, mode=mode)
    return Move(mtype, player)


_LINE_TYPES = (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION)


def _same(a: Move, b: Move) -> bool:
    """Whether a legal move is the one a vector meant (the vector may leave out the
    region's border or list cells in another order, and may collapse a whole exact line
    with choose_line_option, as the canonical host offers it, where this engine lists
    process_line)."""
    if a.type in _LINE_TYPES and b.type in _LINE_TYPES:
        return (a.player == b.player and sorted(a.cells) == sorted(b.cells)
                and (a.option == 2) == (b.option == 2))
    if a.type != b.type or a.player != b.player or a.src != b.src or a.target != b.target:
        return False
    if a.type == mt.CHOOSE_TERRITORY_OPTION:
        return sorted(a.cells) == sorted(b.cells)
    if a.type == mt.RECOVERY_SLIDE:
        return (a.dst, a.mode, a.option, sorted(a.cells)) == (
            b.dst, b.mode, b.option, sorted(b.cells))
    return a.dst == b.dst and a.count == b.count


# Running vectors ---------------------------------------------------------------------

MAX_ENDINGS = 256  # played-out continuations of one vector's open choices
_REASON_TO_TS = {"territory": "territory_control"}


@dataclass
class Outcome:
    vector_id: str
    result: str  # passed | failed | skipped | stale
    detail: str = ""
    notes: list[str] = field(default_factory=list)


def pending_decision_type(state: GameState) -> str | None:
    """The kind of decision the state waits for, or None when nothing is pending."""
    if state.status != ACTIVE:
        return None
    phase = state.phase
    if phase == CHAIN_CAPTURE:
        return "chain_capture_continuation"
    if phase == CAPTURE:
        return "optional_capture"
    if phase == FORCED_ELIMINATION:
        return "select_forced_elimination_target"
    if phase == LINE_PROCESSING:
        if state.pending == PENDING_LINE:
            return "select_line_elimination_target"
        return None if _only_bookkeeping(state) else "select_line_to_process"
    if phase == TERRITORY_PROCESSING:
        if state.pending in (PENDING_TERRITORY, PENDING_EXTRACTION):
            return "select_territory_elimination_target"
        return None if _only_bookkeeping(state) else "select_region_to_process"
    return None


def _only_bookkeeping(state: GameState) -> bool:
    legal = legal_moves(state)
    return len(legal) == 1 and legal[0].type in mt.BOOKKEEPING_TYPES


def _apply_as_host(state: GameState, move: Move) -> None:
    """Apply this engine's legal move that is ``move``; IllegalVectorMove if none is."""
    legal = legal_moves(state)
    for candidate in legal:
        if _same(candidate, move):
            apply_move_in_place(state, candidate)
            return
    if not move.cells and move.dst >= 0 and move.type in (
        mt.CHOOSE_TERRITORY_OPTION, mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION
    ):
        # A decision naming its region or line only by one of its cells.
        named = [m for m in legal if m.type == move.type and move.dst in m.cells
                 and m.option in (0, 1)]
        if named:
            apply_move_in_place(state, named[0])
            return
    raise IllegalVectorMove(f"{move.type} is not a legal move here")


def _fill_bookkeeping(state: GameState, mover: int, turn: int, phases: list[str]) -> None:
    """Apply the no-line / no-territory moves that close the mover's turn, noting each
    phase the turn passes through."""
    for _ in range(MAX_TURN_STEPS):
        if state.status != ACTIVE or state.current != mover or state.turn != turn:
            return
        legal = legal_moves(state)
        if len(legal) != 1 or legal[0].type not in _AUTO_FILL:
            return
        apply_move_in_place(state, legal[0])
        _note_phase(state, mover, turn, phases)


def _note_phase(state: GameState, mover: int, turn: int, phases: list[str]) -> None:
    if state.current == mover and state.turn == turn and phases[-1] != state.phase:
        phases.append(state.phase)


def _chain_hint(state: GameState, entry: object) -> list[Move]:
    """The legal capture segments an ``expectedChainSequence`` entry names."""
    if not isinstance(entry, dict):
        raise VectorError("expectedChainSequence: expected a list of moves")
    cfg = state.board
    out = []
    for m in legal_moves(state):
        if m.type not in (mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT):
            continue
        if all(entry.get(key) is None or cfg.cell_of(entry[key]) == cell
               for key, cell in (("from", m.src), ("to", m.dst), ("captureTarget", m.target))):
            out.append(m)
    return out


def _choices(state: GameState, hints: list[dict[str, Any]], chain: list[Any]) -> list[Move]:
    """The decisions a host may make here in a multi-phase vector: the one its hints
    name, else every non-bookkeeping legal move (one when only which stack pays an owed
    elimination is open, as that changes no count a vector asserts)."""
    legal = [m for m in legal_moves(state) if m.type not in mt.BOOKKEEPING_TYPES]
    cfg = state.board
    if chain and state.phase in (CAPTURE, CHAIN_CAPTURE):
        named = _chain_hint(state, chain[0])
        if named:
            return named[:1]
    for hint in hints:
        if "expectedLandingPosition" in hint and state.phase in (CAPTURE, CHAIN_CAPTURE):
            want = cfg.cell_of(hint["expectedLandingPosition"])
            chosen = [m for m in legal if m.dst == want]
            if chosen:
                return chosen[:1]
        if "linePositions" in hint and state.phase == LINE_PROCESSING:
            want_cells = sorted(_cells(cfg, hint["linePositions"], "linePositions"))
            chosen = [m for m in legal if sorted(m.cells) == want_cells and m.option != 2]
            if chosen:
                return chosen[:1]
    if state.pending in (PENDING_LINE, PENDING_TERRITORY, PENDING_EXTRACTION) and legal:
        return legal[:1]
    return legal


@dataclass
class _Ending:
    state: GameState
    phases: list[str]
    path: list[Move]


def _play_turn(state: GameState, phases: list[str], hints: list[dict[str, Any]],
               chain: list[Any], path: list[Move], out: list[_Ending]) -> None:
    """Finish the mover's turn every way the vector leaves open, collecting endings."""
    mover, turn = state.current, state.turn
    for _ in range(MAX_TURN_STEPS):
        _note_phase(state, mover, turn, phases)
        _fill_bookkeeping(state, mover, turn, phases)
        if state.status != ACTIVE or state.current != mover or state.turn != turn:
            out.append(_Ending(state, phases, path))
            return
        options = _choices(state, hints, chain)
        if not options:
            raise VectorError(f"no decision to make in {state.phase}")
        captured = state.phase in (CAPTURE, CHAIN_CAPTURE)
        for move in options[1:]:
            if len(out) >= MAX_ENDINGS:
                break
            branch = state.copy()
            apply_move_in_place(branch, move)
            _play_turn(branch, list(phases), hints, chain[1:] if captured else chain,
                       [*path, move], out)
        apply_move_in_place(state, options[0])
        path = [*path, options[0]]
        if captured:
            chain = chain[1:]
    raise VectorError(f"the turn did not end within {MAX_TURN_STEPS} moves")


def _judge(before: GameState, ending: _Ending, expected: dict[str, Any],
           want_phases: object) -> str:
    """The first expectation the ending misses, as text; empty when all hold."""
    if want_phases is not None and ending.phases != want_phases:
        return f"phase sequence: expected {want_phases}, got {ending.phases}"
    status = expected.get("status")
    if status is not None:
        got = "awaiting_decision" if pending_decision_type(ending.state) else "complete"
        if got != status:
            return f"status: expected {status!r}, got {got!r}"
    return check_assertions(before, ending.state, expected.get("assertions", {}))


def check_assertions(before: GameState, after: GameState, assertions: dict[str, Any]) -> str:
    """The first assertion that differs, as text; empty when all hold."""
    for key, want in assertions.items():
        got: Any
        if key == "currentPlayer":
            got = after.current
        elif key == "currentPhase":
            got = after.phase
        elif key == "gameStatus":
            got = "active" if after.status == ACTIVE else "completed"
            if want == "finished":
                want = "completed"
        elif key == "stackCount":
            got = sum(1 for s in after.stacks if s)
        elif key == "markerCount":
            got = sum(1 for m in after.markers if m)
        elif key == "collapsedCount":
            got = sum(1 for c in after.collapsed if c)
        elif key == "sInvariantDelta":
            got = after.progress() - before.progress()
        elif key == "totalRingsEliminated":
            got = sum(after.eliminated)
        elif key == "victoryWinner":
            got = after.winner if after.status != ACTIVE and after.winner else None
        elif key == "victoryReason":
            reason = after.victory_reason if after.status != ACTIVE else ""
            got = _REASON_TO_TS.get(reason, reason) or None
        elif key == "pendingDecisionType":
            got = pending_decision_type(after)
        elif key.startswith("player") and key[6:7].isdigit():
            p = int(key[6])
            field_name = key[7:]
            if not 1 <= p <= after.num_players:
                return f"{key}: player {p} is not in this game"
            table = {"RingsInHand": after.in_hand, "EliminatedRings": after.eliminated,
                     "TerritorySpaces": after.territory}.get(field_name)
            if table is None:
                return f"{key}: unknown assertion"
            got = table[p]
        else:
            return f"{key}: unknown assertion"
        if got != want:
            return f"{key}: expected {want!r}, got {got!r}"
    return ""


def _evaluate(vector: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(passed | failed, detail, notes) of running one vector."""
    inp = vector["input"]
    expected = vector["expectedOutput"]
    if not isinstance(expected.get("assertions", {}), dict):
        raise VectorError("expectedOutput.assertions: expected a mapping")
    before = load_state(inp["state"])
    state = before.copy()
    mover, turn = state.current, state.turn
    phases = [state.phase]
    endings: list[_Ending] = []
    want_phases = None
    if "move" in inp:
        move = load_move(inp["move"], state)
        _apply_as_host(state, move)
        _fill_bookkeeping(state, mover, turn, phases)
        endings.append(_Ending(state, phases, [move]))
    elif "initialMove" in inp:
        hints = inp.get("phaseTransitions") or []
        chain = inp.get("expectedChainSequence") or []
        if not isinstance(hints, list) or not isinstance(chain, list):
            raise VectorError("phaseTransitions / expectedChainSequence: expected lists")
        move = load_move(inp["initialMove"], state)
        _apply_as_host(state, move)
        _play_turn(state, phases, hints, chain, [move], endings)
        want_phases = inp.get("expectedPhaseSequence")
    else:
        raise VectorError("input: expected 'move' or 'initialMove'")
    misses = [_judge(before, e, expected, want_phases) for e in endings]
    for e, miss in zip(endings, misses):
        if not miss:
            notes = []
            if len(endings) > 1:
                notes.append(f"{len(endings)} ways to finish the turn; the expected one "
                             f"ends with {e.path[-1].type} at {_key(state, e.path[-1].dst)}")
            return "passed", "", notes
    notes = [f"{len(endings)} ways to finish the turn, none as expected"] if len(endings) > 1 else []
    return "failed", misses[0], notes


def _key(state: GameState, cell: int) -> str:
    return state.board.keys[cell] if cell >= 0 else "-"


def run_vector(vector: dict[str, Any]) -> Outcome:
    vid = str(vector.get("id", "?"))
    if vector.get("skip"):
        return Outcome(vid, "skipped", str(vector["skip"]))
    try:
        result, detail, notes = _evaluate(vector)
    except IllegalVectorMove as exc:
        result, detail, notes = "failed", f"illegal move: {exc}", []
    except (KeyError, ValueError, TypeError) as exc:
        result, detail, notes = "failed", f"could not run: {exc!r}", []
    if vid in STALE_VECTORS:
        observed = f"observed: {detail}" if detail else "observed: passes"
        return Outcome(vid, "stale", STALE_VECTORS[vid], [observed, *notes])
    return Outcome(vid, result, detail, notes)


def vector_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.vectors.json")))
        elif path.is_file():
            files.append(path)
        else:
            raise VectorError(f"{raw}: no such file or directory")
    return files


def run_file(path: Path) -> list[Outcome]:
    if path.stat().st_size > MAX_BUNDLE_BYTES:
        raise VectorError(f"{path}: larger than {MAX_BUNDLE_BYTES} bytes")
    bundle = json.loads(path.read_text(encoding="utf-8"))
    vectors = bundle.get("vectors") if isinstance(bundle, dict) else bundle
    if not isinstance(vectors, list) or len(vectors) > MAX_VECTORS:
        raise VectorError(f"{path}: expected a 'vectors' list of at most {MAX_VECTORS}")
    return [
        run_vector(v) if isinstance(v, dict) else Outcome("?", "failed", "not a mapping")
        for v in vectors
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.vectors", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a *.vectors.json file or a directory of them")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        files = vector_files(args.paths)
    except VectorError as exc:
        parser.error(str(exc))
    totals = {"passed": 0, "failed": 0, "skipped": 0, "stale": 0}
    report = []
    for path in files:
        try:
            outcomes = run_file(path)
        except (OSError, ValueError) as exc:
            outcomes = [Outcome(path.name, "failed", f"could not read: {exc}")]
        counts = {k: sum(1 for o in outcomes if o.result == k) for k in totals}
        stale = counts.pop("stale")
        totals["stale"] += stale
        for k in counts:
            totals[k] += counts[k]
        report.append({
            "file": str(path),
            **counts,
            "failures": [{"id": o.vector_id, "assertion": o.detail, "notes": o.notes}
                         for o in outcomes if o.result == "failed"],
            "skips": [{"id": o.vector_id, "reason": o.detail}
                      for o in outcomes if o.result == "skipped"],
            "stale": [{"id": o.vector_id, "reason": o.detail, "notes": o.notes}
                      for o in outcomes if o.result == "stale"],
            "notes": [{"id": o.vector_id, "notes": o.notes}
                      for o in outcomes if o.notes and o.result == "passed"],
        })
    if args.json:
        print(json.dumps({**totals, "files": report}, sort_keys=True))
    else:
        for entry in report:
            print(f"{entry['file']}: passed {entry['passed']}, failed {entry['failed']}, "
                  f"skipped {entry['skipped']}, stale {len(entry['stale'])}")
            for f in entry["failures"]:
                print(f"  FAILED {f['id']}: {f['assertion']}")
                for note in f["notes"]:
                    print(f"    note: {note}")
            for sk in entry["skips"]:
                print(f"  skipped {sk['id']}: {sk['reason']}")
            for st in entry["stale"]:
                print(f"  stale {st['id']}: {st['reason']} ({'; '.join(st['notes'])})")
            for nt in entry["notes"]:
                for note in nt["notes"]:
                    print(f"  note {nt['id']}: {note}")
        print(f"total: passed {totals['passed']}, failed {totals['failed']}, "
              f"skipped {totals['skipped']}, stale {totals['stale']}")
    return 0 if totals["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
