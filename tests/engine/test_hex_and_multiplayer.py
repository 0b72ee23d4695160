"""Hex boards and 3-4 player games, which the shared vectors barely cover."""

from engine import moves as mt
from engine.lines import find_lines
from engine.moves import Move
from engine.rules import apply_move, legal_moves
from engine.state import LINE_PROCESSING, RING_PLACEMENT, TERRITORY_PROCESSING
from engine.territory import find_regions
from engine.victory import finish

from .scenario import cell, make_state, moves_of


def test_hex8_lines_run_along_the_three_cube_axes_and_need_three_with_three_players():
    s = make_state("hex8", 3, markers={"0,0,0": 2, "1,-1,0": 2, "2,-2,0": 2})
    assert len(find_lines(s, 2)) == 1
    bent = make_state("hex8", 3, markers={"0,0,0": 2, "1,-1,0": 2, "1,0,-1": 2})
    assert find_lines(bent, 2) == []  # three touching markers, but not on one axis
    two = make_state("hex8", 2, markers={"0,0,0": 2, "1,-1,0": 2, "2,-2,0": 2})
    assert find_lines(two, 2) == []


def test_hex_corner_is_walled_off_by_three_markers_of_one_colour():
    corner = "4,-4,0"
    walls = {"3,-4,1": 1, "3,-3,0": 1, "4,-3,-1": 1}
    s = make_state("hex8", 2, stacks={corner: (2,), "0,0,0": (1,), "-2,2,0": (2,)},
                   markers=walls, phase=TERRITORY_PROCESSING)
    s_cells = set(find_regions(s))
    assert (cell(s, corner),) in s_cells
    two_colours = make_state("hex8", 2, stacks={corner: (2,), "0,0,0": (1,), "-2,2,0": (2,)},
                             markers={**walls, "4,-3,-1": 2}, phase=TERRITORY_PROCESSING)
    assert (cell(s, corner),) not in set(find_regions(two_colours))


def test_square_diagonal_gaps_do_not_connect_territory():
    # Von Neumann adjacency: (0,0) touches only (1,0) and (0,1), so two markers wall it.
    s = make_state("square8", 3, stacks={"0,0": (3,), "4,4": (1,), "5,5": (2,), "6,6": (3,)},
                   markers={"1,0": 1, "0,1": 1}, phase=TERRITORY_PROCESSING)
    assert (cell(s, "0,0"),) in set(find_regions(s))


def test_four_player_rotation_skips_permanently_eliminated_seats_only():
    # Player 2 has nothing anywhere; player 3 has only a buried ring and stays in turn.
    s = make_state("square8", 4, stacks={"3,3": (1,), "5,5": (3, 4), "7,0": (1,)},
                   in_hand=[0, 0, 0, 2], phase=LINE_PROCESSING)
    s.turn_changed = True  # player 1 has moved this turn
    s = apply_move(s, Move(mt.NO_LINE_ACTION, 1))
    s = apply_move(s, Move(mt.NO_TERRITORY_ACTION, 1))
    assert s.current == 3 and s.phase == RING_PLACEMENT
    assert s.elim_turn[2] > 0 and s.elim_turn[3] == 0
    assert legal_moves(s) == [Move(mt.NO_PLACEMENT_ACTION, 3)]


def test_three_player_line_reward_is_an_explicit_choice_of_stack():
    s = make_state("square8", 3, stacks={"7,7": (1,), "7,5": (2, 1), "0,7": (2,), "3,7": (3,)},
                   markers={"0,0": 1, "1,0": 1, "2,0": 1}, phase=LINE_PROCESSING)
    (line,) = legal_moves(s)
    after = apply_move(s, line)
    targets = {m.dst for m in moves_of(legal_moves(after), mt.ELIMINATE_RINGS_FROM_STACK)}
    assert targets == {cell(s, "7,7"), cell(s, "7,5")}
    paid = apply_move(after, Move(mt.ELIMINATE_RINGS_FROM_STACK, 1, -1, cell(s, "7,5")))
    assert paid.stacks[cell(s, "7,5")] == (2,)  # one ring, exposing player 2's


def test_players_equal_on_every_criterion_share_a_rank_and_the_next_rank_is_skipped():
    s = make_state("square8", 4, stacks={"0,0": (1,), "1,1": (2,), "2,2": (3,), "3,3": (4,)},
                   collapsed={"7,7": 4})
    s.territory[4] = 1
    finish(s, 1, "test")
    assert s.ranks == (1, 3, 3, 2)
