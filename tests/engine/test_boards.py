"""Board version parameters and geometry tables, each board checked on its own."""

import pytest

from engine.boards import BOARD_TYPES, board_config

CELLS = {"square8": 64, "square19": 361, "hex8": 61, "hexagonal": 469}
RINGS = {"square8": 18, "square19": 72, "hex8": 18, "hexagonal": 96}
ELIMINATION = {
    "square8": (18, 24, 30), "hex8": (18, 24, 30),
    "square19": (72, 96, 120), "hexagonal": (96, 128, 160),
}
TERRITORY = {
    "square8": (33, 22, 17), "hex8": (31, 21, 16),
    "square19": (181, 121, 91), "hexagonal": (235, 157, 118),
}


@pytest.mark.parametrize("name", BOARD_TYPES)
def test_board_has_the_spec_cell_count_and_ring_supply(name):
    cfg = board_config(name)
    assert cfg.num_cells == CELLS[name] == len(set(cfg.keys))
    assert cfg.rings_per_player == RINGS[name]


@pytest.mark.parametrize("name", BOARD_TYPES)
def test_victory_thresholds_follow_the_rounded_formula(name):
    cfg = board_config(name)
    assert tuple(cfg.victory_threshold(n) for n in (2, 3, 4)) == ELIMINATION[name]
    assert tuple(cfg.territory_minimum(n) for n in (2, 3, 4)) == TERRITORY[name]


def test_line_length_is_three_only_on_small_boards_with_three_or_more_players():
    for name in BOARD_TYPES:
        cfg = board_config(name)
        small = name in ("square8", "hex8")
        assert cfg.line_length(2) == 4
        assert cfg.line_length(3) == cfg.line_length(4) == (3 if small else 4)


@pytest.mark.parametrize("name", ["square8", "square19"])
def test_square_boards_move_in_eight_directions_and_connect_territory_in_four(name):
    cfg = board_config(name)
    inner = cfg.index["3,3"]
    assert cfg.num_dirs == 8
    assert len(cfg.neighbours[inner]) == 8
    assert len(cfg.territory_neighbours[inner]) == 4
    corner = cfg.index["0,0"]
    assert sorted(cfg.keys[c] for c in cfg.neighbours[corner]) == ["0,1", "1,0", "1,1"]
    assert sorted(cfg.keys[c] for c in cfg.territory_neighbours[corner]) == ["0,1", "1,0"]


@pytest.mark.parametrize("name,radius", [("hex8", 4), ("hexagonal", 12)])
def test_hex_boards_use_six_cube_directions_for_everything(name, radius):
    cfg = board_config(name)
    centre = cfg.index["0,0,0"]
    assert cfg.num_dirs == 6
    assert len(cfg.neighbours[centre]) == 6 == len(cfg.territory_neighbours[centre])
    assert all(sum(c) == 0 and max(map(abs, c)) <= radius for c in cfg.coords)
    # A ray from the centre reaches the edge after `radius` cells in every direction.
    assert [len(ray) for ray in cfg.rays[centre]] == [radius] * 6
    corner = cfg.index[f"{radius},{-radius},0"]
    assert len(cfg.neighbours[corner]) == 3


def test_positions_accept_keys_and_coordinate_mappings_and_refuse_off_board_cells():
    cfg = board_config("hex8")
    assert cfg.cell_of({"x": 1, "y": -1, "z": 0}) == cfg.cell_of("1,-1,0")
    assert cfg.cell_of({"x": 1, "y": -1}) == cfg.cell_of("1,-1,0")
    with pytest.raises(ValueError, match="not on board"):
        cfg.cell_of("5,0,-5")
    with pytest.raises(ValueError, match="sum to 0"):
        cfg.cell_of({"x": 1, "y": 1, "z": 1})
    with pytest.raises(ValueError, match="unknown board type"):
        board_config("square9")


@pytest.mark.parametrize("name", BOARD_TYPES)
def test_a_step_along_a_ray_shifts_the_cell_bit_by_the_step_shift_and_never_wraps(name):
    cfg = board_config(name)
    for cell, per in enumerate(cfg.rays):
        for d, ray in enumerate(per):
            s = cfg.step_shifts[d]
            moved = cfg.bits[cell] << s if s > 0 else cfg.bits[cell] >> -s
            # Off the board the step lands on padding, outside every cell's bit.
            assert moved == (cfg.bits[ray[0]] if ray else moved & ~cfg.all_bits)


@pytest.mark.parametrize("name", BOARD_TYPES)
def test_cells_of_a_mask_are_its_cells_in_increasing_order(name):
    cfg = board_config(name)
    everything = list(range(cfg.num_cells))
    for cells in ([], [5], [0, 3, 9, 40], everything[::3], everything):
        mask = sum(cfg.bits[c] for c in cells)
        assert cfg.cells_of(mask) == cells
