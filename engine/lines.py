"""Line detection (RR-CANON-R120): maximal runs of one player's markers along an axis."""

from __future__ import annotations

from .state import GameState


def find_lines(state: GameState, player: int) -> list[tuple[int, ...]]:
    """Every maximal run of ``player``'s markers at least ``line_length`` long, each from
    its first cell along one of the board's line axes. A marker cell never holds a stack
    or a collapsed space, so a run of markers is uninterrupted by construction."""
    markers = state.markers
    rays = state.board.rays
    half = state.board.num_dirs // 2
    need = state.line_length
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
