"""The departures from the written rules that parity with the canonical engine takes
(``engine.departures``): each pinned on a small constructed position."""

import ast
from pathlib import Path

from engine import moves as mt
from engine.departures import DEPARTURES
from engine.movement import _fresh_stack_counts
from engine.rules import apply_move, legal_moves
from engine.state import LINE_PROCESSING, RING_PLACEMENT, TERRITORY_PROCESSING
from engine.territory import find_regions, region_border

from .scenario import cell, make_state, moves_of

REPO = Path(__file__).resolve().parents[2]


def test_every_departure_names_a_test_and_code_that_exist():
    for row in DEPARTURES:
        path, name = row.test.split("::")
        tree = ast.parse((REPO / path).read_text())
        names = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        assert name in names, row.key
        code_path, code_name = row.code.split("::")
        assert f"def {code_name}(" in (REPO / code_path).read_text(), row.key
    assert len({row.key for row in DEPARTURES}) == len(DEPARTURES)


def test_region_processing_collapses_markers_of_any_colour_chained_to_the_border():
    # Player 1's markers at 1,0 and 0,1 wall off the corner 0,0 (player 2's stack).
    # 2,0 (player 2) touches 1,0 and 3,1 (player 1) touches 2,0 diagonally: both go
    # with the region. 5,5 touches none of them and stays.
    s = make_state(
        stacks={"0,0": (2,), "7,7": (1, 1), "6,0": (2,)},
        markers={"1,0": 1, "0,1": 1, "2,0": 2, "3,1": 1, "5,5": 2},
        phase=TERRITORY_PROCESSING,
    )
    s.turn_changed = True
    [region] = [m for m in moves_of(legal_moves(s), mt.CHOOSE_TERRITORY_OPTION)
                if m.cells == (cell(s, "0,0"),)]
    after = apply_move(s, region)
    gone = {"0,0", "1,0", "0,1", "2,0", "3,1"}
    assert {k for k in gone if after.collapsed[cell(s, k)] == 1} == gone
    assert after.markers[cell(s, "5,5")] == 2
    assert after.territory[1] == 5 and after.eliminated[1] == 1


def test_border_spread_follows_the_board_hex8_by_grid_steps_hexagonal_not_at_all():
    # A cell walled by player 1's markers, with one more marker two hex steps away
    # along (1,1,-2) from a wall marker: hex8 spreads to it, the large board does not.
    ring = ["1,0,-1", "1,-1,0", "0,-1,1", "-1,0,1", "-1,1,0", "0,1,-1"]
    for board, spreads in (("hex8", True), ("hexagonal", False)):
        s = make_state(board, stacks={"0,0,0": (2,), "-3,0,3": (1, 1), "3,-3,0": (2,)},
                       markers={**{k: 1 for k in ring}, "2,1,-3": 2},
                       phase=TERRITORY_PROCESSING)
        assert (cell(s, "0,0,0"),) in find_regions(s)
        border = region_border(s, (cell(s, "0,0,0"),))
        far = cell(s, "2,1,-3")  # (1,0,-1) + (1,1,-2)
        assert set(border) == {cell(s, k) for k in ring} | ({far} if spreads else set())


def test_a_region_walled_by_collapsed_spaces_needs_exactly_one_colour_inside():
    walls = {"2,0": 1, "2,1": 1, "0,2": 1, "1,2": 1, "2,2": 1}
    outside = {"7,7": (1, 1), "6,6": (2,), "5,5": (3,)}
    for inside, eligible in (
        ({}, False),  # empty
        ({"0,0": (2,), "1,1": (3,)}, False),  # two colours
        ({"0,0": (2,), "1,1": (2,)}, True),  # one colour
    ):
        s = make_state(players=3, stacks={**outside, **inside}, collapsed=walls,
                       phase=TERRITORY_PROCESSING)
        corner = tuple(sorted(cell(s, k) for k in ("0,0", "1,0", "0,1", "1,1")))
        assert (corner in set(find_regions(s))) == eligible, inside


def test_two_or_three_rings_go_only_where_one_ring_could():
    # At the corner 0,0 a single ring is stuck (0,1 and 1,1 have caps of 2 it cannot
    # take; 1,0 is collapsed), while two or three rings could take 1,1 (landing on 2,2 or 3,3).
    s = make_state(stacks={"0,1": (2, 2), "1,1": (2, 2), "7,7": (2,)},
                   collapsed={"1,0": 2}, in_hand=[5, 5], phase=RING_PLACEMENT)
    at_corner = [m for m in moves_of(legal_moves(s), mt.PLACE_RING)
                 if m.dst == cell(s, "0,0")]
    assert at_corner == []
    rays = s.board.rays[cell(s, "0,0")]
    assert _fresh_stack_counts(s.stacks, s.collapsed, rays, 3) & 0b1110 == 0b1100  # 2 and 3 rings could act


def test_a_second_line_may_be_collapsed_before_the_reward_and_one_ring_pays_for_both():
    s = make_state(players=3, stacks={"7,7": (1, 1), "7,0": (2,), "0,7": (3,)},
                   markers={"0,0": 1, "1,0": 1, "2,0": 1, "0,4": 1, "1,4": 1, "2,4": 1},
                   phase=LINE_PROCESSING)
    first, second = moves_of(legal_moves(s), mt.PROCESS_LINE)
    s = apply_move(s, first)
    owed = legal_moves(s)
    assert moves_of(owed, mt.PROCESS_LINE) == [second]
    assert [m.dst for m in moves_of(owed, mt.ELIMINATE_RINGS_FROM_STACK)] == [cell(s, "7,7")]
    s = apply_move(s, second)
    [pay] = legal_moves(s)
    assert pay.type == mt.ELIMINATE_RINGS_FROM_STACK
    s = apply_move(s, pay)
    assert [m.type for m in legal_moves(s)] == [mt.NO_LINE_ACTION]
    assert s.eliminated[1] == 1 and s.territory[1] == 6
