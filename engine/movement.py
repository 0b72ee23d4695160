"""Placement, non-capture movement and overtaking capture: generation and application.

Hot path of every playout. Loops walk the precomputed rays of ``BoardConfig`` and stop
at the first collapsed space or stack, exactly as the path rules (RR-CANON-R091, R101)
stop a moving stack.
"""

from __future__ import annotations

from functools import cache

from .boards import board_config
from .moves import MOVE_STACK, PLACE_RING, Move
from .state import GameState, cap_height


def can_move_from(
    stacks: list, collapsed: list[int], rays: tuple[tuple[int, ...], ...], h: int, ch: int
) -> bool:
    """Whether a stack of height ``h`` and cap ``ch`` at the rays' origin has any move or
    capture (the origin's own content is ignored, so this also tests hypothetical stacks
    for the no-dead-placement rule, RR-CANON-R081/R082)."""
    for ray in rays:
        n = len(ray)
        i = 0
        while i < n:
            c = ray[i]
            if collapsed[c]:
                break
            t = stacks[c]
            if t:
                if cap_height(t) <= ch:
                    k = i + 1
                    while k < n:
                        landing = ray[k]
                        if collapsed[landing] or stacks[landing]:
                            break
                        if k + 1 >= h:
                            return True
                        k += 1
                break
            if i + 1 >= h:
                return True
            i += 1
    return False


@cache
def _slide_table(board: str, player: int) -> tuple[tuple[tuple[Move, ...], ...], ...]:
    """``[cell][d][i]``: the ``move_stack`` from ``cell`` to the ``i``-th cell of its ray
    ``d``, built once per board and player, so generation slices out shared moves."""
    return tuple(
        tuple(tuple(Move(MOVE_STACK, player, cell, c) for c in ray) for ray in per)
        for cell, per in enumerate(board_config(board).rays)
    )


# Builds a Move from all its fields without NamedTuple's Python-level __new__ (a third
# of the cost of a capture segment).
_new_tuple = tuple.__new__


def stack_moves(
    state: GameState, cell: int, player: int, out: list[Move], capture_type: str,
    captures_only: bool = False,
) -> None:
    """Append the moves (``move_stack``) and capture segments (``capture_type``) of the
    stack at ``cell``. Landing beyond markers is free: every legal distance is listed."""
    stacks = state.stacks
    collapsed = state.collapsed
    s = stacks[cell]
    h = len(s)
    ch = cap_height(s)
    slides = None if captures_only else _slide_table(state.board.name, player)[cell]
    for d, ray in enumerate(state.board.rays[cell]):
        i = 0  # ray[:i] is free, ray[i] (if any) the first collapsed space or stack
        for c in ray:
            if collapsed[c] or stacks[c]:
                break
            i += 1
        if slides is not None and i >= h:
            out.extend(slides[d][h - 1:i])
        n = len(ray)
        if i < n:
            target = ray[i]
            t = stacks[target]
            if t and not collapsed[target] and cap_height(t) <= ch:
                k = i + 1
                while k < n:
                    landing = ray[k]
                    if collapsed[landing] or stacks[landing]:
                        break
                    if k + 1 >= h:
                        out.append(_new_tuple(Move, (
                            capture_type, player, cell, landing, target, 0, (), (), 0, "", -1
                        )))
                    k += 1


def has_capture_from(state: GameState, cell: int) -> bool:
    """Whether the stack at ``cell`` has a capture segment."""
    stacks = state.stacks
    collapsed = state.collapsed
    s = stacks[cell]
    h = len(s)
    ch = cap_height(s)
    for ray in state.board.rays[cell]:
        n = len(ray)
        for i, c in enumerate(ray):
            if collapsed[c]:
                break
            t = stacks[c]
            if t:
                if cap_height(t) <= ch:
                    for k in range(i + 1, n):
                        landing = ray[k]
                        if collapsed[landing] or stacks[landing]:
                            break
                        if k + 1 >= h:
                            return True
                break
    return False


def _fresh_stack_counts(
    stacks: list, collapsed: list[int], rays: tuple[tuple[int, ...], ...], most: int
) -> int:
    """Bitmask of the ring counts k in 1..most for which a new k-ring stack on an empty
    cell could act: one walk per ray serves all three counts (a fresh stack's height and
    cap are both k)."""
    full = (1 << (most + 1)) - 2
    ok = 0
    for ray in rays:
        n = len(ray)
        i = 0
        while i < n:
            c = ray[i]
            if collapsed[c]:
                break
            t = stacks[c]
            if t:
                # Capture over t: needs k >= t's cap and a landing at distance >= k.
                k = i + 1
                while k < n and not collapsed[ray[k]] and not stacks[ray[k]]:
                    k += 1
                farthest = k  # distance of the farthest landing cell
                if farthest > i + 1:
                    for count in range(max(cap_height(t), 1), min(most, farthest) + 1):
                        ok |= 1 << count
                break
            i += 1
        # A plain move of up to i cells exists along this ray: counts 1..i can move.
        if i:
            ok |= (1 << (min(i, most) + 1)) - 2
        if ok == full:
            break
    return ok


@cache
def _place_table(board: str, player: int) -> tuple[tuple[tuple[Move, ...], ...], ...]:
    """``[most][cell]``: the ``place_ring`` moves of 1..``most`` rings on ``cell``, built
    once per board and player: generation hands out these shared immutable moves instead
    of building a few hundred per position."""
    cells = range(board_config(board).num_cells)
    each = [tuple(Move(PLACE_RING, player, -1, c, -1, k) for k in (1, 2, 3)) for c in cells]
    return tuple(tuple(m[:most] for m in each) for most in range(4))


@cache
def _ray_heads(board: str, length: int) -> tuple[tuple[tuple[int, ...], ...], ...]:
    """``[cell]``: the first ``length`` cells of each ray from ``cell`` that long."""
    return tuple(
        tuple(ray[:length] for ray in per if len(ray) >= length)
        for per in board_config(board).rays
    )


def placement_moves(state: GameState, player: int, out: list[Move]) -> None:
    """Append every legal ``place_ring``: 1-3 rings on an empty cell, or one ring on any
    stack, each only if the resulting stack could then move (no dead placement), and
    2-3 rings only on a cell where one ring could go, as the canonical host offers them."""
    most = min(3, state.in_hand[player])
    if most <= 0:
        return
    stacks = state.stacks
    markers = state.markers
    collapsed = state.collapsed
    board = state.board
    rays = board.rays
    table = _place_table(board.name, player)
    single = table[1]
    every = table[3]
    upto = table[most]
    heads = _ray_heads(board.name, most)
    for cell in range(board.num_cells):
        if collapsed[cell]:
            continue
        s = stacks[cell]
        if s:
            ch = cap_height(s) + 1 if s[-1] == player else 1
            if can_move_from(stacks, collapsed, rays[cell], len(s) + 1, ch):
                out.append(single[cell][0])
        elif not markers[cell]:
            # Common case first: some ray with `most` free cells lets every count move.
            for head in heads[cell]:
                for c in head:
                    if collapsed[c] or stacks[c]:
                        break
                else:
                    out.extend(upto[cell])
                    break
            else:
                ok = _fresh_stack_counts(stacks, collapsed, rays[cell], most)
                # Two or three rings only where one could go (departure
                # multi-ring-placement-cells).
                if ok & 2:
                    out.extend(m for k, m in enumerate(every[cell][:most], 1) if ok >> k & 1)


def has_legal_placement(state: GameState, player: int) -> bool:
    if state.in_hand[player] <= 0:
        return False
    stacks = state.stacks
    markers = state.markers
    collapsed = state.collapsed
    rays = state.board.rays
    for cell in range(state.board.num_cells):
        if collapsed[cell]:
            continue
        s = stacks[cell]
        if s:
            ch = cap_height(s) + 1 if s[-1] == player else 1
            if can_move_from(stacks, collapsed, rays[cell], len(s) + 1, ch):
                return True
        elif not markers[cell] and can_move_from(stacks, collapsed, rays[cell], 1, 1):
            return True
    return False


def has_stack_move(state: GameState, player: int) -> bool:
    """Whether any stack the player controls has a move or capture."""
    stacks = state.stacks
    collapsed = state.collapsed
    rays = state.board.rays
    for cell, s in enumerate(stacks):
        if s and s[-1] == player and can_move_from(
            stacks, collapsed, rays[cell], len(s), cap_height(s)
        ):
            return True
    return False


def move_stack(state: GameState, player: int, src: int, dst: int, target: int) -> None:
    """Move (``target`` < 0) or capture along the ray ``src -> dst`` (RR-CANON-R092, R102):
    departure marker, flip opponent markers and collapse own ones on the way, take the
    target's top ring to the bottom, and pay one ring for landing on a marker."""
    stacks = state.stacks
    markers = state.markers
    s = stacks[src]
    stacks[src] = None
    markers[src] = player
    for c in state.board.path(src, dst):
        m = markers[c]
        if m:
            if m == player:
                markers[c] = 0
                state.collapsed[c] = player
                state.territory[player] += 1
            else:
                markers[c] = player
    if target >= 0:
        t = stacks[target]
        stacks[target] = t[:-1] or None
        s = (t[-1],) + s
    if markers[dst]:
        markers[dst] = 0
        top = s[-1]
        s = s[:-1]
        state.eliminated[player] += 1
        state.board_rings[top] -= 1
    if s:
        state.put_stack(dst, s)
