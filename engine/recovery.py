"""The recovery action (RR-CANON-R110-R115): a player with no stacks, a marker and a
buried ring slides a marker to an adjacent cell, paying with a buried ring."""

from __future__ import annotations

from .lines import run_through
from .moves import RECOVERY_SLIDE, Move
from .state import GameState


def recovery_eligible(state: GameState, player: int) -> bool:
    """No controlled stack, at least one marker, at least one buried ring. With no stack
    controlled, every ring of the player on the board is buried."""
    if state.board_rings[player] <= 0 or player not in state.markers:
        return False
    return not state.controls_any(player)


def extraction_cells(state: GameState, player: int, outside: frozenset[int] = frozenset()
                     ) -> list[int]:
    """Stacks (not in ``outside``) holding a buried ring of ``player``."""
    return [
        c for c, s in enumerate(state.stacks)
        if s and c not in outside and player in s[:-1]
    ]


def first_extraction_cell(state: GameState, player: int) -> int:
    """The stack a recovery slide takes its buried ring from: the first, in stack order,
    holding a buried ring of ``player`` (the canonical engine picks it; the move does not
    name it). -1 when there is none."""
    for c in state.stack_cells_in_order():
        if player in state.stacks[c][:-1]:
            return c
    return -1


def extract_buried_ring(state: GameState, player: int, cell: int) -> None:
    """Remove the player's bottommost ring from the stack at ``cell`` (R113), credited to
    the player. A stack without such a ring is left alone."""
    s = state.stacks[cell]
    if not s or player not in s:
        return
    i = s.index(player)
    s = s[:i] + s[i + 1:]
    state.stacks[cell] = s or None
    state.eliminated[player] += 1
    state.board_rings[player] -= 1


def recovery_moves(state: GameState, player: int) -> list[Move]:
    """All recovery slides. Line-forming slides exclude the fallback class (R112): slides
    to an empty cell and stack strikes are legal only when no slide anywhere forms a line.
    The buried ring paid is not part of the move (``first_extraction_cell``)."""
    stacks = state.stacks
    markers = state.markers
    collapsed = state.collapsed
    rays = state.board.rays
    half = state.board.num_dirs // 2
    need = state.line_length
    if first_extraction_cell(state, player) < 0:
        return []
    forming: list[tuple[int, int, tuple[int, ...]]] = []
    fallback: list[tuple[str, int, int]] = []
    for m, owner in enumerate(markers):
        if owner != player:
            continue
        for ray in rays[m]:
            if not ray:
                continue
            t = ray[0]
            if collapsed[t] or markers[t]:
                continue
            if stacks[t]:
                fallback.append(("stack_strike", m, t))
                continue
            formed = False
            for axis in range(half):
                run = run_through(state, t, player, axis, m)
                if len(run) >= need:
                    formed = True
                    forming.append((m, t, run))
            if not formed:
                fallback.append(("fallback", m, t))
    moves: list[Move] = []
    if forming:
        for m, t, run in forming:
            moves.append(Move(RECOVERY_SLIDE, player, m, t, -1, 0, run, (), 1, "line"))
            if len(run) > need:
                for i in range(len(run) - need + 1):
                    moves.append(Move(RECOVERY_SLIDE, player, m, t, -1, 0, run[i:i + need], (),
                                      2, "line"))
    else:
        for mode, m, t in fallback:
            moves.append(Move(RECOVERY_SLIDE, player, m, t, -1, 0, (), (), 0, mode))
    return moves
