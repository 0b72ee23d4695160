"""Territory regions (RR-CANON-R140-R142): physically and colour-disconnected regions.

A region is physically disconnected when everything around it is board edge, collapsed
space, or markers of one single player B. So for B = nobody and for each player owning
markers, the regions are the connected components (territory adjacency) of the cells that
are neither collapsed nor B's markers. A component counts when the players controlling
stacks inside it are a strict subset of the players with rings on the board, and, for
B = nobody, exactly one player controls stacks inside (``find_regions``).

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


def region_border(state: GameState, cells: tuple[int, ...]) -> tuple[int, ...]:
    """The markers that collapse with a processed region of ``cells``: every
    marker, of any colour, next to the region (territory adjacency), and every marker
    reached from those through markers outside the region, one ``border_shifts`` step
    at a time (Moore steps on square boards, square-grid steps in (x, y) on hex8, none
    on the large hex board). The canonical engine does this (departure
    ``region-border-spread``); the written rule collapses only the border colour's
    markers on the enclosing path."""
    cfg = state.board
    bits = cfg.bits
    comp = 0
    for c in cells:
        comp |= bits[c]
    marker_bits = 0
    for c, m in enumerate(state.markers):
        if m:
            marker_bits |= bits[c]
    outside = marker_bits & ~comp
    border = _dilate(comp, cfg.territory_shifts) & outside
    if border and cfg.border_shifts:
        border = _flood(border, outside, cfg.border_shifts)
    return _cells(border, cfg.bit_cell)


def find_regions(state: GameState) -> list[tuple[int, ...]]:
    """Disconnected regions, each as its sorted cells, no duplicates.

    Eligibility follows the canonical engine (departure ``region-eligibility``): a
    region enclosed by one colour's markers (with collapsed spaces and edges) counts
    when fewer players control stacks inside it than have rings on the board, an empty
    one included; a region
    enclosed by collapsed spaces and edges alone counts only when exactly one player
    controls stacks inside it. Processing one also collapses its ``region_border``.
    """
    cfg = state.board
    n = state.num_players
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
    active = sum(1 for p in range(1, n + 1) if state.board_rings[p] > 0)
    controllers = [p for p in range(1, n + 1) if control_bits[p]]
    shifts = cfg.territory_shifts
    open_bits = cfg.all_bits & ~collapsed_bits
    found: list[tuple[int, ...]] = []
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
            inside = sum(1 for p in controllers if comp & control_bits[p])
            if inside >= active or (not b and inside != 1):
                continue
            key = _cells(comp, cfg.bit_cell)
            if key in seen:
                continue
            seen.add(key)
            found.append(key)
    return found
