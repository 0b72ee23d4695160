"""Board configurations and their precomputed geometry tables.

Every board is a flat array of cells (``0 .. num_cells-1``). The rules code never looks
at coordinates: it walks precomputed rays (one tuple of cell indices per cell and
direction) and neighbour tuples, so square and hex boards share one implementation and
each board keeps its own direction set (the reference GPU engine used square directions on
hex boards; per-board tables make that mistake impossible).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from itertools import compress

SQUARE_DIRECTIONS: tuple[tuple[int, int], ...] = (
    (1, 0), (1, 1), (0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1),
)
HEX_DIRECTIONS: tuple[tuple[int, int, int], ...] = (
    (1, -1, 0), (1, 0, -1), (0, 1, -1), (-1, 1, 0), (-1, 0, 1), (0, -1, 1),
)
# Von Neumann directions for territory on square boards, as indices into SQUARE_DIRECTIONS.
_SQUARE_TERRITORY_DIRS = (0, 2, 4, 6)


@dataclass(frozen=True, slots=True)
class BoardConfig:
    """One board type: its version parameters and geometry tables.

    ``rays[c][d]`` lists the cells met walking from ``c`` in direction ``d`` (``c`` itself
    excluded) up to the edge. Directions ``d`` and ``d + len(dirs)//2`` are opposite, so
    the first half of the directions are the line axes.
    """

    name: str
    hex: bool
    size: int  # bounding-box width: 8, 19, 9 or 25
    num_cells: int
    rings_per_player: int
    keys: tuple[str, ...]  # cell -> "x,y" or "x,y,z"
    coords: tuple[tuple[int, ...], ...]
    index: dict[str, int]  # key -> cell
    rays: tuple[tuple[tuple[int, ...], ...], ...]
    neighbours: tuple[tuple[int, ...], ...]  # movement/line adjacency (Moore or hex)
    territory_neighbours: tuple[tuple[int, ...], ...]  # Von Neumann on square, hex on hex
    num_dirs: int
    between: dict[int, tuple[int, int]]  # src * num_cells + dst -> (direction, distance)
    # Bitboard form for flood fills: cell c is bit ``bits[c]`` of a padded grid whose
    # padding bits are never set, so shifting by ``territory_shifts`` (positive: left,
    # negative: right) moves every cell to its territory neighbours without masks.
    bits: tuple[int, ...]
    bit_cell: dict[int, int]  # bit position -> cell
    all_bits: int
    territory_shifts: tuple[int, ...]
    # Steps along which a processed region's border spreads through markers (see
    # ``territory.region_border``); empty where it does not spread.
    border_shifts: tuple[int, ...]
    step_shifts: tuple[int, ...]  # per ray direction: the shift of one step (as above)
    position_cells: tuple[int | None, ...]  # bit position -> cell (None: padding)

    def line_length(self, num_players: int) -> int:
        """Markers needed for a line: 3 on the small boards with 3-4 players, else 4."""
        if self.name in ("square8", "hex8") and num_players >= 3:
            return 3
        return 4

    def victory_threshold(self, num_players: int) -> int:
        """Rings a player must have eliminated to win (RR-CANON-R061; round, not floor)."""
        return round(self.rings_per_player * (2 / 3 + (num_players - 1) / 3))

    def territory_minimum(self, num_players: int) -> int:
        """Collapsed spaces needed (with dominance) for a territory win (RR-CANON-R062)."""
        return self.num_cells // num_players + 1

    def path(self, src: int, dst: int) -> tuple[int, ...]:
        """Cells strictly between ``src`` and ``dst`` on their common ray."""
        d, dist = self.between[src * self.num_cells + dst]
        return self.rays[src][d][: dist - 1]

    def cells_of(self, mask: int) -> list[int]:
        """The cells whose bits are set in ``mask``, in increasing order."""
        if mask.bit_count() > 8:
            # One pass in C over the binary digits, lowest first, beats a loop per bit.
            digits = bin(mask)[:1:-1].encode("ascii").translate(_BINARY_DIGITS)
            return sorted(compress(self.position_cells, digits))
        bit_cell = self.bit_cell
        out = []
        while mask:
            low = mask & -mask
            out.append(bit_cell[low.bit_length() - 1])
            mask ^= low
        out.sort()
        return out

    def position(self, cell: int) -> dict[str, int]:
        """The vector/record form of a cell: ``{"x":..,"y":..}`` (plus ``"z"`` on hex)."""
        c = self.coords[cell]
        if self.hex:
            return {"x": c[0], "y": c[1], "z": c[2]}
        return {"x": c[0], "y": c[1]}

    def cell_of(self, pos: object) -> int:
        """Cell index of a position given as a key string or an ``{x, y[, z]}`` mapping."""
        if isinstance(pos, str):
            key = pos
        elif isinstance(pos, dict):
            try:
                x, y = int(pos["x"]), int(pos["y"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"position {pos!r}: expected integer x and y") from exc
            key = f"{x},{y},{-x - y}" if self.hex else f"{x},{y}"
            if self.hex and "z" in pos and pos["z"] is not None and int(pos["z"]) != -x - y:
                raise ValueError(f"position {pos!r}: hex cube coordinates must sum to 0")
        else:
            raise TypeError(f"position {pos!r}: expected a key string or an x/y mapping")
        try:
            return self.index[key]
        except KeyError:
            raise ValueError(f"position {key!r} is not on board {self.name}") from None


_BINARY_DIGITS = bytes.maketrans(b"01", b"\x00\x01")

BOARD_TYPES = ("square8", "square19", "hex8", "hexagonal")
_PARAMS = {  # name: (hex, size or radius, rings per player)
    "square8": (False, 8, 18),
    "square19": (False, 19, 72),
    "hex8": (True, 4, 18),
    "hexagonal": (True, 12, 96),
}


def _build(name: str) -> BoardConfig:
    is_hex, extent, rings = _PARAMS[name]
    if is_hex:
        coords = [
            (x, y, -x - y)
            for x in range(-extent, extent + 1)
            for y in range(-extent, extent + 1)
            if abs(x + y) <= extent
        ]
        keys = [f"{x},{y},{z}" for x, y, z in coords]
        dirs: tuple[tuple[int, ...], ...] = HEX_DIRECTIONS
        size = 2 * extent + 1
    else:
        coords = [(x, y) for y in range(extent) for x in range(extent)]
        keys = [f"{x},{y}" for x, y in coords]
        dirs = SQUARE_DIRECTIONS
        size = extent
    index = {k: i for i, k in enumerate(keys)}
    coord_index = {c: i for i, c in enumerate(coords)}
    rays = []
    for c in coords:
        per_dir = []
        for d in dirs:
            ray = []
            cur = tuple(a + b for a, b in zip(c, d))
            while cur in coord_index:
                ray.append(coord_index[cur])
                cur = tuple(a + b for a, b in zip(cur, d))
            per_dir.append(tuple(ray))
        rays.append(tuple(per_dir))
    neighbours = tuple(tuple(r[0] for r in per if r) for per in rays)
    if is_hex:
        territory = neighbours
    else:
        territory = tuple(
            tuple(per[d][0] for d in _SQUARE_TERRITORY_DIRS if per[d]) for per in rays
        )
    n = len(coords)
    if is_hex:
        width = 2 * extent + 2  # one padding column
        positions = [(y + extent) * width + (x + extent) for x, y, _ in coords]
        shifts: tuple[int, ...] = tuple(dy * width + dx for dx, dy, _ in HEX_DIRECTIONS)
        # The canonical engine spreads a region's border with square-grid steps in
        # (x, y) on hex8 (its six neighbours plus (1,1,-2) and (-1,-1,2)) and not at all
        # on the large hex board.
        border_shifts: tuple[int, ...] = (
            tuple(dy * width + dx for dx, dy in SQUARE_DIRECTIONS) if name == "hex8" else ()
        )
    else:
        width = extent + 1
        positions = [y * width + x for x, y in coords]
        shifts = (1, -1, width, -width)
        border_shifts = tuple(dy * width + dx for dx, dy in SQUARE_DIRECTIONS)
    cell_at = {pos: c for c, pos in enumerate(positions)}
    between: dict[int, tuple[int, int]] = {}
    for src, per in enumerate(rays):
        for d, ray in enumerate(per):
            for dist, dst in enumerate(ray, start=1):
                between[src * n + dst] = (d, dist)
    return BoardConfig(
        name=name,
        hex=is_hex,
        size=size,
        num_cells=n,
        rings_per_player=rings,
        keys=tuple(keys),
        coords=tuple(coords),
        index=index,
        rays=tuple(rays),
        neighbours=neighbours,
        territory_neighbours=territory,
        num_dirs=len(dirs),
        between=between,
        bits=tuple(1 << pos for pos in positions),
        bit_cell=cell_at,
        all_bits=sum(1 << pos for pos in positions),
        territory_shifts=shifts,
        border_shifts=border_shifts,
        step_shifts=tuple(d[1] * width + d[0] for d in dirs),
        position_cells=tuple(cell_at.get(pos) for pos in range(max(positions) + 1)),
    )


@cache
def board_config(name: str) -> BoardConfig:
    """The configuration of board ``name`` (one of ``BOARD_TYPES``), built once."""
    if name not in _PARAMS:
        raise ValueError(f"unknown board type {name!r}; expected one of {BOARD_TYPES}")
    return _build(name)
