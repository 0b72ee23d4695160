"""Territory regions (RR-CANON-R140-R142): physically and colour-disconnected regions.

A region is physically disconnected when everything around it is board edge, collapsed
space, or markers of one single player B. So for B = nobody and for each player owning
markers, the regions are the connected components (territory adjacency) of the cells that
are neither collapsed nor B's markers. A component counts when the players controlling
stacks inside it are a strict subset of the players with rings on the board.
"""

from __future__ import annotations

from .state import GameState


def find_regions(state: GameState) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Disconnected regions as ``(cells, border_markers)``, cells sorted, no duplicates.

    ``border_markers`` are the border colour's markers adjacent to the region: the ones
    on its enclosing path, which collapse with it (RR-CANON-R145 step 2).
    """
    stacks = state.stacks
    markers = state.markers
    collapsed = state.collapsed
    nbrs = state.board.territory_neighbours
    n = state.board.num_cells
    active = 0
    for p in range(1, state.num_players + 1):
        if state.board_rings[p] > 0:
            active |= 1 << p
    if not active:
        return []
    colours = sorted({m for m in markers if m})
    found: list[tuple[tuple[int, ...], tuple[int, ...]]] = []
    seen: set[tuple[int, ...]] = set()
    for b in [0, *colours]:
        visited = bytearray(n)
        for start in range(n):
            if visited[start] or collapsed[start] or (b and markers[start] == b):
                continue
            visited[start] = 1
            comp = [start]
            i = 0
            while i < len(comp):
                for nb in nbrs[comp[i]]:
                    if not visited[nb] and not collapsed[nb] and not (b and markers[nb] == b):
                        visited[nb] = 1
                        comp.append(nb)
                i += 1
            inside = 0
            for c in comp:
                s = stacks[c]
                if s:
                    inside |= 1 << s[-1]
            if inside == active or inside & ~active:
                continue  # every active colour is represented: never disconnected
            comp.sort()
            key = tuple(comp)
            if key in seen:
                continue
            seen.add(key)
            border: tuple[int, ...] = ()
            if b:
                border = tuple(sorted({nb for c in comp for nb in nbrs[c] if markers[nb] == b}))
            found.append((key, border))
    return found
