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

from functools import cache
from itertools import compress

from .state import GameState


def _dilate(mask: int, shifts: tuple[int, ...]) -> int:
    grown = mask
    for s in shifts:
        grown |= mask << s if s > 0 else mask >> -s
    return grown


class _Fill:
    """How ``flood`` grows a component inside ``free`` under the steps ``shifts`` (which
    include +1, a territory step on every board).

    A round first carries the component up every run of set bits it touches (adding
    ``free`` carries a bit up its whole run at once), then, for every other step, runs
    ``stages`` doubling stages: stage j moves the component 2**j steps at once into the
    cells whose 2**j - 1 cells back along the step are free too (a Kogge-Stone occluded
    fill), so a straight run fills in a few stages instead of a round per cell. A plain
    step every way closes the round: when it adds nothing, the component is whole.
    """

    __slots__ = ("down", "free", "left", "right", "up")

    def __init__(self, free: int, shifts: tuple[int, ...], stages: int) -> None:
        self.free = free
        self.up, self.down, left_steps, right_steps = _steps(shifts, stages)
        left = []
        for dists in left_steps:
            pro = free
            for d in dists:
                left.append((d, pro))
                pro &= pro << d
        right = []
        for dists in right_steps:
            pro = free
            for d in dists:
                right.append((d, pro))
                pro &= pro >> d
        self.left = left
        self.right = right

    def flood(self, seed: int) -> int:
        """The component of ``free`` holding ``seed`` (a subset of ``free``)."""
        free = self.free
        comp = seed
        while True:
            comp |= ((free + comp) ^ free) & free
            for s, pro in self.left:
                comp |= pro & (comp << s)
            for s, pro in self.right:
                comp |= pro & (comp >> s)
            grown = comp
            for s in self.up:
                grown |= comp << s
            for s in self.down:
                grown |= comp >> s
            grown &= free
            if grown == comp:
                return comp
            comp = grown


@cache
def _steps(shifts: tuple[int, ...], stages: int) -> tuple[
    tuple[int, ...], tuple[int, ...], tuple[tuple[int, ...], ...], tuple[tuple[int, ...], ...]
]:
    """For ``_Fill``: the left and right shift amounts of the steps, then each step's
    doubling stage distances but +1's, left shifts and right shifts apart."""
    if 1 not in shifts:
        raise ValueError(f"steps {shifts}: expected +1 among them")
    up = tuple(s for s in shifts if s > 0)
    down = tuple(-s for s in shifts if s < 0)
    left = tuple(tuple(s << j for j in range(stages)) for s in up if s != 1)
    right = tuple(tuple(s << j for j in range(stages)) for s in down)
    return up, down, left, right


def _stages(size: int) -> int:
    """Doubling stages per step: 2 on the small boards, 3 on the large ones (measured
    on random playouts; more stages cost more than the rounds they save)."""
    return 2 if size < 10 else 3


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
    marker_bits = sum(compress(bits, state.markers))
    outside = marker_bits & ~comp
    border = _dilate(comp, cfg.territory_shifts) & outside
    if border and cfg.border_shifts:
        border = _Fill(outside, cfg.border_shifts, _stages(cfg.size)).flood(border)
    return tuple(cfg.cells_of(border))


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
    marker_bits = [0] * (n + 1)
    control_bits = [0] * (n + 1)
    # Only occupied cells are visited: the bits of distinct cells add up to their union.
    collapsed = state.collapsed
    markers = state.markers
    stacks = state.stacks
    cells = range(cfg.num_cells)
    collapsed_bits = sum(compress(bits, collapsed))
    for c in compress(cells, markers):
        if not collapsed[c]:
            marker_bits[markers[c]] |= bits[c]
    for c in compress(cells, stacks):
        if not (collapsed[c] or markers[c]):
            control_bits[stacks[c][-1]] |= bits[c]
    rings = state.board_rings
    active = 0
    for p in range(1, n + 1):
        if rings[p] > 0:
            active += 1
    controls = [cb for cb in control_bits if cb]
    shifts = cfg.territory_shifts
    stages = _stages(cfg.size)
    open_bits = cfg.all_bits & ~collapsed_bits
    found: list[tuple[int, ...]] = []
    seen: set[int] = set()
    for b in range(n + 1):
        if b and not marker_bits[b]:
            continue
        free = open_bits & ~marker_bits[b] if b else open_bits
        remaining = free
        fill = None
        while remaining:
            if not collapsed_bits and not b:
                comp = free  # the whole board, which is connected
            else:
                fill = fill or _Fill(free, shifts, stages)
                comp = fill.flood(remaining & -remaining)
            remaining &= ~comp
            inside = 0
            for cb in controls:
                if comp & cb:
                    inside += 1
            if inside >= active or (not b and inside != 1) or comp in seen:
                continue
            seen.add(comp)
            found.append(tuple(cfg.cells_of(comp)))
    return found
