"""Replay the canonical TypeScript engine's recorded games through this engine.

``python -m engine.traces PATH [PATH...] [--json]``: each PATH is a ``*.jsonl.gz`` trace
file (format ``rr-ts-trace-v1``, one game a line) or a directory of them. Every game is
replayed from its initial state with the recorded moves; at every step the phase, the
player to move and the set of legal moves are compared before the move, and the state
after it (board with ring order, per-player counts, phase, player, status, the pending
line reward and the engine digest ``hash_after``); at the end the winner and the victory
reason. A game stops at its first disagreement. The report gives per config the games and
steps compared and agreeing and the first disagreements with their positions; the exit
status is 1 on any disagreement. The last line of ``--json`` output is one JSON object.

Moves are translated both ways between this engine's ``Move`` and the reference engine's
``Move`` JSON (``to_ts``, ``from_ts``); legal-move lists are compared as sets of semantic
keys (``move_key``), so listing order and the reference's duplicate spellings of one
move do not count (see ``move_key``).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import moves as mt
from .boards import BOARD_TYPES, BoardConfig
from .moves import Move
from .rules import apply_move_in_place, legal_moves
from .state import (
    ACTIVE,
    GAME_OVER,
    MAX_PLAYERS,
    PENDING_EXTRACTION,
    PENDING_LINE,
    PENDING_TERRITORY,
    GameState,
    initial_state,
)
from .victory import TERRITORY

TRACE_FORMAT = "rr-ts-trace-v1"
MAX_GAME_LINE_BYTES = 64 * 1024 * 1024  # the longest recorded game is a few MB
MAX_STEPS = 20_000  # the generator's own cap
# The reference engine calls a territory win by another name.
_REASON_TO_TS = {TERRITORY: "territory_control"}
_SENTINEL = {"x": 0, "y": 0}
_ELIMINATION_CONTEXT = {PENDING_LINE: "line", PENDING_TERRITORY: "territory",
                        PENDING_EXTRACTION: "recovery"}


class TraceError(ValueError):
    """A trace file or game that does not have the expected shape."""


# Moves: ours <-> the reference engine's Move JSON ------------------------------------


def _positions(cfg: BoardConfig, cells: tuple[int, ...]) -> list[dict[str, int]]:
    return [cfg.position(c) for c in cells]


def to_ts(move: Move, state: GameState) -> dict[str, Any]:
    """The reference engine's Move JSON for ``move`` played in ``state`` (without its
    ``id``, ``timestamp``, ``thinkTime`` and ``moveNumber``)."""
    cfg = state.board
    t = move.type
    out: dict[str, Any] = {"type": t, "player": move.player}
    if t == mt.PLACE_RING:
        out["to"] = cfg.position(move.dst)
        if move.count > 1:
            out["placementCount"] = move.count
    elif t == mt.MOVE_STACK:
        out["from"] = cfg.position(move.src)
        out["to"] = cfg.position(move.dst)
    elif t in (mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT):
        out["from"] = cfg.position(move.src)
        out["captureTarget"] = cfg.position(move.target)
        out["to"] = cfg.position(move.dst)
    elif t in (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION):
        line = move.border if move.option == 2 else move.cells
        out["to"] = cfg.position(line[0])
        out["formedLines"] = [{"positions": _positions(cfg, line), "player": move.player,
                               "length": len(line)}]
        if t == mt.CHOOSE_LINE_OPTION:
            out["collapsedMarkers"] = _positions(cfg, move.cells)
    elif t in (mt.ELIMINATE_RINGS_FROM_STACK, mt.FORCED_ELIMINATION):
        out["to"] = cfg.position(move.dst)
        if t == mt.ELIMINATE_RINGS_FROM_STACK:
            out["eliminationContext"] = _ELIMINATION_CONTEXT.get(state.pending, "territory")
    elif t == mt.CHOOSE_TERRITORY_OPTION:
        out["to"] = cfg.position(move.cells[0])
        out["disconnectedRegions"] = [{"spaces": _positions(cfg, move.cells),
                                       "controllingPlayer": move.player,
                                       "isDisconnected": True}]
    elif t == mt.RECOVERY_SLIDE:
        out["from"] = cfg.position(move.src)
        out["to"] = cfg.position(move.dst)
        out["recoveryMode"] = move.mode
        if move.mode == "line":
            out["option"] = move.option or 1
            if move.option == 2:
                out["collapsePositions"] = _positions(cfg, move.cells)
        out["extractionStacks"] = []  # the engine picks the paying stack itself
    else:
        out["to"] = dict(_SENTINEL)
    return out


def _cell(cfg: BoardConfig, data: dict[str, Any], key: str) -> int:
    pos = data.get(key)
    if pos is None:
        raise TraceError(f"{data.get('type')} move without {key!r}")
    return cfg.cell_of(pos)


def _cell_set(cfg: BoardConfig, positions: object, what: str) -> frozenset[int]:
    if not isinstance(positions, list):
        raise TraceError(f"{what}: expected a list of positions")
    return frozenset(cfg.cell_of(p) for p in positions)


def move_key(data: dict[str, Any], cfg: BoardConfig, line_length: int) -> tuple | None:
    """The semantic identity of a reference-format move, or None for a listed move that
    is a no-op (``process_line`` on a line longer than required, which the reference
    accepts and ignores; its collapse is chosen with ``choose_line_option``).

    ``process_line`` on an exact line and ``choose_line_option`` collapsing a whole line
    are one move (the reference lists both spellings); a line is named by its cells.
    """
    t = data.get("type")
    p = data.get("player")
    if t == mt.PLACE_RING:
        return (t, p, _cell(cfg, data, "to"), data.get("placementCount") or 1)
    if t == mt.MOVE_STACK:
        return (t, p, _cell(cfg, data, "from"), _cell(cfg, data, "to"))
    if t in (mt.OVERTAKING_CAPTURE, mt.CONTINUE_CAPTURE_SEGMENT):
        return (t, p, _cell(cfg, data, "from"), _cell(cfg, data, "captureTarget"),
                _cell(cfg, data, "to"))
    if t in (mt.PROCESS_LINE, mt.CHOOSE_LINE_OPTION):
        lines = data.get("formedLines")
        if not isinstance(lines, list) or not lines or not isinstance(lines[0], dict):
            raise TraceError(f"{t} without formedLines")
        line = _cell_set(cfg, lines[0].get("positions"), "formedLines[0].positions")
        if t == mt.PROCESS_LINE:
            return None if len(line) > line_length else ("collapse_line", p, line)
        chosen = _cell_set(cfg, data.get("collapsedMarkers"), "collapsedMarkers")
        if chosen == line:
            return ("collapse_line", p, line)
        return ("collapse_segment", p, line, chosen)
    if t == mt.ELIMINATE_RINGS_FROM_STACK:
        return (t, p, _cell(cfg, data, "to"), data.get("eliminationContext"))
    if t == mt.FORCED_ELIMINATION:
        return (t, p, _cell(cfg, data, "to"))
    if t == mt.CHOOSE_TERRITORY_OPTION:
        regions = data.get("disconnectedRegions")
        if not isinstance(regions, list) or not regions or not isinstance(regions[0], dict):
            raise TraceError(f"{t} without disconnectedRegions")
        return (t, p, _cell_set(cfg, regions[0].get("spaces"), "region spaces"))
    if t == mt.RECOVERY_SLIDE:
        mode = data.get("recoveryMode")
        collapse = data.get("collapsePositions")
        cells = _cell_set(cfg, collapse, "collapsePositions") if collapse else frozenset()
        option = data.get("option", data.get("recoveryOption")) if mode == "line" else None
        return (t, p, _cell(cfg, data, "from"), _cell(cfg, data, "to"), mode, option, cells)
    if t in mt.MOVE_TYPES:
        return (t, p)
    raise TraceError(f"move type {t!r}: expected one of {mt.MOVE_TYPES}")


def from_ts(data: dict[str, Any], state: GameState) -> Move:
    """This engine's legal move that is the reference move ``data``; TraceError when no
    legal move is."""
    cfg = state.board
    want = move_key(data, cfg, state.line_length)
    for m in legal_moves(state):
        if move_key(to_ts(m, state), cfg, state.line_length) == want:
            return m
    raise TraceError(f"{_brief(data)} is not a legal move here")


# States: ours in the reference engine's serialized terms ------------------------------


def ts_view(state: GameState) -> dict[str, Any]:
    """The fields of the reference engine's serialized state this engine models: stacks
    (rings top first), markers, collapsed spaces, per-player counts, whose turn and which
    phase, and whether a line reward elimination is pending."""
    keys = state.board.keys
    done = state.status != ACTIVE
    return {
        "stacks": {keys[c]: list(reversed(s)) for c, s in enumerate(state.stacks) if s},
        "markers": {keys[c]: m for c, m in enumerate(state.markers) if m},
        "collapsed": {keys[c]: m for c, m in enumerate(state.collapsed) if m},
        "players": [
            [p, state.in_hand[p], state.eliminated[p], state.territory[p]]
            for p in range(1, state.num_players + 1)
        ],
        "currentPlayer": 0 if done else state.current,
        "currentPhase": GAME_OVER if done else state.phase,
        "gameStatus": "completed" if done else "active",
        "pendingLineReward": state.pending == PENDING_LINE and not done,
    }


def recorded_view(data: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, Any]:
    """The same fields from a recorded ``state_after`` / ``extra_after``."""
    board = data["board"]
    done = data["gameStatus"] != "active"
    return {
        "stacks": {k: list(v["rings"]) for k, v in board["stacks"].items()},
        "markers": {k: v["player"] for k, v in board["markers"].items()},
        "collapsed": dict(board["collapsedSpaces"]),
        "players": [
            [p["playerNumber"], p["ringsInHand"], p["eliminatedRings"], p["territorySpaces"]]
            for p in data["players"]
        ],
        "currentPlayer": 0 if done else data["currentPlayer"],
        "currentPhase": GAME_OVER if done else data["currentPhase"],
        "gameStatus": "completed" if done else "active",
        "pendingLineReward": bool((extra or {}).get("pendingLineRewardElimination"))
        and not done,
    }


def _imul(a: int, b: int) -> int:
    return (a * b) & 0xFFFFFFFF


def simple_hash(text: str) -> str:
    """The reference engine's 64-bit ``simpleHash`` (two 32-bit multiply-xor lanes)."""
    h1, h2 = 0xDEADBEEF, 0x41C6CE57
    for ch in text:
        c = ord(ch)
        h1 = _imul(h1 ^ c, 2654435761)
        h2 = _imul(h2 ^ c, 1597334677)
    h1 = _imul(h1 ^ (h1 >> 16), 2246822507) ^ _imul(h2 ^ (h2 >> 13), 3266489909)
    h2 = _imul(h2 ^ (h2 >> 16), 2246822507) ^ _imul(h1 ^ (h1 >> 13), 3266489909)
    return f"{h2:08x}{h1:08x}"


def digest(view: dict[str, Any]) -> str:
    """``hash_after`` (the reference's ``hashGameStateSHA256``) of a ``ts_view``."""
    done = view["gameStatus"] != "active"
    meta = (f"{0 if done else view['currentPlayer']}:{view['currentPhase']}:"
            f"{view['gameStatus']}:{1 if view['pendingLineReward'] else 0}")
    players = sorted(f"{p}:{h}:{e}:{t}" for p, h, e, t in view["players"])
    stacks = sorted(f"{k}:{r[0]}:{len(r)}:{_cap(r)}" for k, r in view["stacks"].items())
    markers = sorted(f"{k}:{v}" for k, v in view["markers"].items())
    collapsed = sorted(f"{k}:{v}" for k, v in view["collapsed"].items())
    return simple_hash("#".join([meta, "|".join(players), "|".join(stacks),
                                 "|".join(markers), "|".join(collapsed)]))


def _cap(rings_top_first: list[int]) -> int:
    k = 1
    while k < len(rings_top_first) and rings_top_first[k] == rings_top_first[0]:
        k += 1
    return k


def view_diff(ours: dict[str, Any], theirs: dict[str, Any]) -> list[str]:
    """What differs between two views, one short line per field (cells listed)."""
    out = []
    for name in ours:
        a, b = ours[name], theirs[name]
        if a == b:
            continue
        if isinstance(a, dict):
            cells = sorted(set(a) | set(b))
            diffs = [f"{k}: ours {a.get(k)} ref {b.get(k)}" for k in cells if a.get(k) != b.get(k)]
            out.append(f"{name}: " + "; ".join(diffs[:8]) + (" ..." if len(diffs) > 8 else ""))
        else:
            out.append(f"{name}: ours {a} ref {b}")
    return out


# Replaying games -----------------------------------------------------------------------


@dataclass
class Disagreement:
    game: str
    step: int
    what: str  # phase | player | legal_moves | move | state | result
    detail: str
    position: dict[str, Any]  # the reference state before the step (board, players, turn)


@dataclass
class GameOutcome:
    game: str
    config: str
    steps: int
    agreed_steps: int
    disagreement: Disagreement | None = None


def _brief(data: dict[str, Any]) -> str:
    skip = {"id", "timestamp", "thinkTime", "moveNumber", "eliminationFromStack",
            "eliminatedRings"}
    return json.dumps({k: v for k, v in data.items() if k not in skip}, separators=(",", ":"))


def _position(before: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    board = before["board"]
    return {
        "phase": step["phase"],
        "player": step["current_player"],
        "stacks": {k: v["rings"] for k, v in board["stacks"].items()},
        "markers": {k: v["player"] for k, v in board["markers"].items()},
        "collapsed": board["collapsedSpaces"],
        "players": [[p["playerNumber"], p["ringsInHand"], p["eliminatedRings"],
                     p["territorySpaces"]] for p in before["players"]],
    }


def start_state(game: dict[str, Any]) -> GameState:
    """This engine's initial state for a recorded game (board, players, pie rule)."""
    board, players = game.get("board"), game.get("players")
    if board not in BOARD_TYPES:
        raise TraceError(f"game board {board!r}: expected one of {BOARD_TYPES}")
    if isinstance(players, bool) or not isinstance(players, int) or not 2 <= players <= MAX_PLAYERS:
        raise TraceError(f"game players {players!r}: expected 2..{MAX_PLAYERS}")
    state = initial_state(board, players)
    options = game.get("rules_options") or {}
    state.swap_eligible = players == 2 and bool(options.get("swapRuleEnabled"))
    return state


def _legal_diff(state: GameState, step: dict[str, Any]) -> str:
    cfg = state.board
    need = state.line_length
    ours = {move_key(to_ts(m, state), cfg, need): m for m in legal_moves(state)}
    theirs: dict[tuple, dict[str, Any]] = {}
    for data in step["legal_moves"]:
        key = move_key(data, cfg, need)
        if key is not None:
            theirs[key] = data
    if ours.keys() == theirs.keys():
        return ""
    only_ours = [_brief(to_ts(ours[k], state)) for k in ours.keys() - theirs.keys()]
    only_theirs = [_brief(theirs[k]) for k in theirs.keys() - ours.keys()]
    parts = []
    if only_ours:
        parts.append(f"only ours ({len(only_ours)}): " + ", ".join(sorted(only_ours)[:4]))
    if only_theirs:
        parts.append(f"only ref ({len(only_theirs)}): " + ", ".join(sorted(only_theirs)[:4]))
    return "; ".join(parts)


def replay_game(game: dict[str, Any]) -> GameOutcome:
    """Replay one recorded game; stop at its first disagreement."""
    if game.get("format") != TRACE_FORMAT:
        raise TraceError(f"game format {game.get('format')!r}: expected {TRACE_FORMAT}")
    gid = str(game.get("id"))
    steps = game.get("steps")
    if not isinstance(steps, list) or len(steps) > MAX_STEPS:
        raise TraceError(f"game {gid}: expected a list of at most {MAX_STEPS} steps")
    config = f"{game['board']} {game['players']}p"
    outcome = GameOutcome(gid, config, len(steps), 0)
    state = start_state(game)
    before = game["initial_state"]

    def disagree(i: int, what: str, detail: str) -> GameOutcome:
        outcome.disagreement = Disagreement(gid, i, what, detail, _position(before, steps[i]))
        return outcome

    for i, step in enumerate(steps):
        if state.status != ACTIVE:
            return disagree(i, "result", f"ours is over ({state.winner}, "
                                         f"{state.victory_reason}), ref plays on")
        if state.phase != step["phase"]:
            return disagree(i, "phase", f"ours {state.phase} ref {step['phase']}")
        if state.current != step["current_player"]:
            return disagree(i, "player", f"ours {state.current} ref {step['current_player']}")
        diff = _legal_diff(state, step)
        if diff:
            return disagree(i, "legal_moves", diff)
        try:
            move = from_ts(step["move"], state)
        except (TraceError, ValueError) as exc:
            return disagree(i, "move", str(exc))
        apply_move_in_place(state, move)
        ours = ts_view(state)
        theirs = recorded_view(step["state_after"], step.get("extra_after"))
        if ours != theirs or digest(ours) != step["hash_after"]:
            return disagree(i, "state", f"after {_brief(step['move'])}: "
                            + " | ".join(view_diff(ours, theirs) or ["digest differs"]))
        outcome.agreed_steps += 1
        before = step["state_after"]
    result = game.get("result") or {}
    if state.status == ACTIVE:
        return disagree(len(steps) - 1, "result", "ours is still active after the last step")
    reason = _REASON_TO_TS.get(state.victory_reason, state.victory_reason)
    if (state.winner, reason) != (result.get("winner"), result.get("victory_reason")):
        return disagree(len(steps) - 1, "result",
                        f"ours winner {state.winner} by {reason}, ref winner "
                        f"{result.get('winner')} by {result.get('victory_reason')}")
    return outcome


def trace_files(paths: list[str]) -> list[Path]:
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files.extend(sorted(path.glob("*.jsonl.gz")))
        elif path.is_file():
            files.append(path)
        else:
            raise TraceError(f"{raw}: no such file or directory")
    return files


def read_games(path: Path) -> Iterator[dict[str, Any]]:
    """The games of one trace file, one JSON object a line."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, start=1):
            if len(line) > MAX_GAME_LINE_BYTES:
                raise TraceError(f"{path}:{n}: a game line longer than {MAX_GAME_LINE_BYTES}")
            game = json.loads(line)
            if not isinstance(game, dict):
                raise TraceError(f"{path}:{n}: expected a game object")
            yield game


@dataclass
class Totals:
    games: int = 0
    steps: int = 0
    agreed_games: int = 0
    agreed_steps: int = 0

    def add(self, o: GameOutcome) -> None:
        self.games += 1
        self.steps += o.steps
        self.agreed_steps += o.agreed_steps
        self.agreed_games += o.disagreement is None


@dataclass
class Report:
    configs: dict[str, Totals] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)

    def add(self, o: GameOutcome) -> None:
        self.configs.setdefault(o.config, Totals()).add(o)
        if o.disagreement:
            self.disagreements.append(o.disagreement)


def replay(paths: list[Path], players: int | None = None, limit: int | None = None) -> Report:
    """Replay every game of the files (only ``players``-player games if given; at most
    ``limit`` games a config if given)."""
    report = Report()
    for path in paths:
        for game in read_games(path):
            if players is not None and game.get("players") != players:
                continue
            config = f"{game.get('board')} {game.get('players')}p"
            if limit is not None and config in report.configs and \
                    report.configs[config].games >= limit:
                continue
            report.add(replay_game(game))
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.traces", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a *.jsonl.gz trace file or a directory of them")
    parser.add_argument("--json", action="store_true", help="end with one JSON object")
    parser.add_argument("--players", type=int, choices=(2, 3, 4),
                        help="only games with this many players")
    parser.add_argument("--limit", type=int, metavar="N", help="at most N games a config")
    parser.add_argument("--show", type=int, default=5, metavar="N",
                        help="disagreements to print in full (default 5)")
    args = parser.parse_args(argv)
    try:
        files = trace_files(args.paths)
    except TraceError as exc:
        parser.error(str(exc))
    start = time.process_time()
    report = replay(files, args.players, args.limit)
    elapsed = time.process_time() - start
    total = Totals()
    for t in report.configs.values():
        total.games += t.games
        total.steps += t.steps
        total.agreed_games += t.agreed_games
        total.agreed_steps += t.agreed_steps
    for config, t in report.configs.items():
        print(f"{config}: games {t.agreed_games}/{t.games} agree, "
              f"steps {t.agreed_steps}/{t.steps} agree")
    for d in report.disagreements[:args.show]:
        print(f"DISAGREE {d.game} step {d.step} ({d.what}): {d.detail}")
        if not args.json:
            print(f"  position: {json.dumps(d.position, separators=(',', ':'))}")
    for d in report.disagreements[args.show:]:
        print(f"disagree {d.game} step {d.step} ({d.what}): {d.detail[:160]}")
    print(f"total: games {total.agreed_games}/{total.games}, steps "
          f"{total.agreed_steps}/{total.steps} agree; {len(report.disagreements)} "
          f"disagreements ({elapsed:.1f} s CPU)")
    if args.json:
        print(json.dumps({
            "games": total.games,
            "steps": total.steps,
            "agreed_games": total.agreed_games,
            "agreed_steps": total.agreed_steps,
            "disagreements": len(report.disagreements),
            "configs": {c: vars(t) for c, t in report.configs.items()},
            "first_disagreements": [vars(d) for d in report.disagreements[:args.show]],
        }, sort_keys=True))
    return 1 if report.disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
