"""Replaying a reference game (recorded by the reference's Python port) through our engine.

The Python port's `Move` JSON has the canonical engine's shape, so a recorded move is matched to
our engine's legal move with `engine.traces.from_ts`. The two turn models differ only in
bookkeeping moves (`no_*_action`), which carry no decision: like a host, the replay drops a
recorded bookkeeping move our engine does not offer, and inserts ours where it is the only legal
move and the record moves on. Anything else that is not legal stops the replay: the game is then
a parity failure at that move, with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import moves as mt
from engine.moves import Move
from engine.rules import apply_move_in_place, legal_moves
from engine.state import ACTIVE, GameState
from engine.traces import TraceError, from_ts, start_state


@dataclass(frozen=True, slots=True)
class Replay:
    moves: list[Move]  # our engine's moves, bookkeeping included, up to the divergence
    state: GameState  # where the replay stopped
    diverged_at: int | None  # index of the first recorded move that did not replay
    reason: str  # why it diverged, or why the result differs; "" when it replays
    inserted: int  # bookkeeping moves our engine needed that the record lacks
    dropped: int  # recorded bookkeeping moves our engine does not have

    @property
    def replays(self) -> bool:
        return not self.reason


def _only_bookkeeping(legal: list[Move]) -> Move | None:
    return legal[0] if len(legal) == 1 and legal[0].type in mt.BOOKKEEPING_TYPES else None


def replay_reference(
    board: str, players: int, swap_rule: bool, recorded: list[dict[str, Any]],
    winner: int | None,
) -> Replay:
    """Replay `recorded` (Move JSON dicts) from the initial position; compare the winner."""
    state = start_state({"board": board, "players": players,
                         "rules_options": {"swapRuleEnabled": swap_rule}})
    moves: list[Move] = []
    inserted = dropped = 0

    def stop(i: int | None, reason: str) -> Replay:
        return Replay(moves, state, i, reason, inserted, dropped)

    for i, data in enumerate(recorded):
        while True:
            if state.status != ACTIVE:
                return stop(i, f"our game ended ({state.victory_reason}, winner "
                               f"{state.winner}) before recorded move {i}")
            legal = legal_moves(state)
            if data.get("type") in mt.BOOKKEEPING_TYPES and all(
                m.type != data["type"] for m in legal
            ):
                dropped += 1
                break
            try:
                move = from_ts(_position_fields(data), state)
            except (TraceError, ValueError, TypeError) as exc:
                filler = _only_bookkeeping(legal)
                if filler is None:
                    return stop(i, f"recorded move {i} ({data.get('type')}) is not legal "
                                   f"here: {exc}")
                move = filler
                inserted += 1
                moves.append(move)
                apply_move_in_place(state, move)
                continue
            moves.append(move)
            apply_move_in_place(state, move)
            break
    # Bookkeeping the record stops short of (the game may end on our engine's no_*_action).
    while state.status == ACTIVE:
        filler = _only_bookkeeping(legal_moves(state))
        if filler is None:
            break
        moves.append(filler)
        apply_move_in_place(state, filler)
        inserted += 1
    if state.status == ACTIVE:
        return stop(None, "our game is still in progress after the last recorded move")
    if winner is not None and state.winner != winner:
        return stop(None, f"our engine's winner is player {state.winner} "
                          f"({state.victory_reason}), the record's is player {winner}")
    return stop(None, "")


def _position_fields(data: dict[str, Any]) -> dict[str, Any]:
    # The Python port spells every key, unused ones null; the canonical form omits them.
    return {k: v for k, v in data.items() if v is not None}
