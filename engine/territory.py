"""Territory regions (RR-CANON-R140-R142): physically and colour-disconnected regions.

A region is physically disconnected when everything around it is board edge, collapsed
space, or markers of one single player B. So for B = nobody and for each player owning
markers, the regions are the connected components (territory adjacency) of the cells that
are neither collapsed nor B's markers. A component counts when the players controlling
stacks inside it are a strict subset of the players with rings on the board.

Components are flood-filled on bitboards (Python ints): one fill step shifts the whole
frontier at once, so a fill costs a few big-int operations per step of the region's
depth instead of a visit per cell.
"""

from __future__ import annotations

from .state import GameState


def _dilate(mask: int, shifts: tuple[int, ...]) -> int:
    grown = mask
    for s in shifts:
        grown |= mask << s if s > 0 else mask >> -s
    return grown


def _flood(seed: int, free: int, shifts: tuple[int, ...]) -> int:
    comp = seed
    while True:
        grown = _dilate(comp, shifts) & free
        if grown == comp:
            return comp
        comp = grown


def _cells(mask: int, bit_cell: dict[int, int]) -> tuple[int, ...]:
    out = []
    while mask:
        low = mask & -mask
        out.append(bit_cell[low.bit_length() - 1])
        mask ^= low
    out.sort()
    return tuple(out)


def find_regions(state: GameState) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Disconnected regions as ``(cells, border_markers)``, cells sorted, no duplicates.

    Only regions leaving at least one stack outside are listed: the cost of processing
    a region is always paid from a stack outside it (R143, R114), so one holding every
    stack can never be processed. ``border_markers`` are the border colour's markers
    adjacent to the region: the ones on its enclosing path, which collapse with it
    (RR-CANON-R145 step 2).
    """
    cfg = state.board
    n = state.num_players
    active = 0
    for p in range(1, n + 1):
        if state.board_rings[p] > 0:
            active |= 1 << p
    if not active:
        return []
    bits = cfg.bits
    collapsed_bits = 0
    marker_bits = [0] * (n + 1)
    control_bits = [0] * (n + 1)
    for c, (col, mark, stack) in enumerate(zip(state.collapsed, state.markers, state.stacks)):
        if col:
            collapsed_bits |= bits[c]
        elif mark:
            marker_bits[mark] |= bits[c]
        elif stack:
            control_bits[stack[-1]] |= bits[c]
    stack_bits = 0
    for m in control_bits:
        stack_bits |= m
    shifts = cfg.territory_shifts
    open_bits = cfg.all_bits & ~collapsed_bits
    found: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    seen: set[tuple[int, ...]] = set()
    for b in range(n + 1):
        if b and not marker_bits[b]:
            continue
        free = open_bits & ~marker_bits[b] if b else open_bits
        remaining = free
        while remaining:
            seed = remaining & -remaining
            comp = _flood(seed, free, shifts)
            remaining &= ~comp
            if comp & stack_bits == stack_bits:
                continue  # nothing outside could pay for it
            inside = 0
            for p in range(1, n + 1):
                if comp & control_bits[p]:
                    inside |= 1 << p
            if inside == active or inside & ~active:
                continue  # every active colour is represented: never disconnected
            key = _cells(comp, cfg.bit_cell)
            if key in seen:
                continue
            seen.add(key)
            border: tuple[int, ...] = ()
            if b:
                border = _cells(_dilate(comp, shifts) & marker_bits[b], cfg.bit_cell)
            found.append((key, border))
    return found
