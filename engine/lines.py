"""Line detection (RR-CANON-R120): maximal runs of one player's markers along an axis."""

from __future__ import annotations

from itertools import compress

from .state import GameState


def _has_run(state: GameState, player: int, need: int) -> bool:
    """Whether ``player`` has ``need`` markers in a row on some axis: one bitboard AND
    per step, so the usual position without a line costs no walk over the board."""
    mine = sum(compress(state.board.bits, map(player.__eq__, state.markers)))
    board = state.board
    for s in board.step_shifts[:board.num_dirs // 2]:
        run = mine  # cells whose next k cells along the axis are the player's too
        for k in range(1, need):
            run &= mine >> (k * s) if s > 0 else mine << (-k * s)
        if run:
            return True
    return False


def find_lines(state: GameState, player: int) -> list[tuple[int, ...]]:
    """Every maximal run of ``player``'s markers at least ``line_length`` long, each from
    its first cell along one of the board's line axes. A marker cell never holds a stack
    or a collapsed space, so a run of markers is uninterrupted by construction."""
    need = state.line_length
    if not _has_run(state, player, need):
        return []
    markers = state.markers
    rays = state.board.rays
    half = state.board.num_dirs // 2
    lines = []
    for c, m in enumerate(markers):
        if m != player:
            continue
        per = rays[c]
        for d in range(half):
            back = per[d + half]
            if back and markers[back[0]] == player:
                continue  # not the first cell of its run
            run = [c]
            for x in per[d]:
                if markers[x] != player:
                    break
                run.append(x)
            if len(run) >= need:
                lines.append(tuple(run))
    return lines


def run_through(
    state: GameState, cell: int, player: int, axis: int, vacated: int
) -> tuple[int, ...]:
    """The run of ``player`` markers along ``axis`` through ``cell``, as if ``cell`` held
    one of them and ``vacated`` did not (a recovery slide's source and destination)."""
    markers = state.markers
    per = state.board.rays[cell]
    half = state.board.num_dirs // 2
    before = []
    for x in per[axis + half]:
        if x == vacated or markers[x] != player:
            break
        before.append(x)
    after = []
    for x in per[axis]:
        if x == vacated or markers[x] != player:
            break
        after.append(x)
    before.reverse()
    return tuple(before) + (cell,) + tuple(after)
