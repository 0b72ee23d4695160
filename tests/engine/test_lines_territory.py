"""Line rewards (RR-CANON-R120-R123) and territory regions (R140-R145)."""

from engine import moves as mt
from engine.lines import find_lines
from engine.moves import Move
from engine.rules import apply_move, legal_moves
from engine.state import (
    LINE_PROCESSING,
    PENDING_LINE,
    PENDING_TERRITORY,
    TERRITORY_PROCESSING,
)
from engine.territory import find_regions, region_border

from .scenario import cell, make_state, moves_of


def test_lines_are_maximal_runs_of_one_players_markers():
    s = make_state(markers={"0,0": 1, "1,1": 1, "2,2": 1, "3,3": 1, "4,4": 2, "0,5": 1})
    lines = find_lines(s, 1)
    assert [[s.board.keys[c] for c in line] for line in lines] == [["0,0", "1,1", "2,2", "3,3"]]
    assert find_lines(s, 2) == []


def test_three_player_small_board_lines_need_three_markers():
    s = make_state(players=3, markers={"0,0": 1, "1,0": 1, "2,0": 1})
    assert len(find_lines(s, 1)) == 1
    s2 = make_state(players=2, markers={"0,0": 1, "1,0": 1, "2,0": 1})
    assert find_lines(s2, 1) == []


def test_exact_line_collapses_then_costs_one_ring_by_a_separate_move():
    s = make_state(stacks={"7,7": (1, 1), "5,7": (2,)},
                   markers={f"{x},0": 1 for x in range(4)}, phase=LINE_PROCESSING)
    (move,) = legal_moves(s)
    assert move.type == mt.PROCESS_LINE
    after = apply_move(s, move)
    assert after.territory[1] == 4 and after.pending == PENDING_LINE
    assert legal_moves(after) == [Move(mt.ELIMINATE_RINGS_FROM_STACK, 1, -1, cell(s, "7,7"))]
    paid = apply_move(after, legal_moves(after)[0])
    assert paid.stacks[cell(s, "7,7")] == (1,) and paid.eliminated[1] == 1
    assert legal_moves(paid) == [Move(mt.NO_LINE_ACTION, 1)]


def test_overlength_line_offers_collapse_all_or_any_exact_segment_for_free():
    s = make_state(stacks={"7,7": (1,), "5,7": (2,)},
                   markers={f"{x},0": 1 for x in range(6)}, phase=LINE_PROCESSING)
    moves = legal_moves(s)
    assert {m.option for m in moves} == {1, 2}
    assert len([m for m in moves if m.option == 2]) == 3  # 6 - 4 + 1 segments
    free = apply_move(s, next(m for m in moves if m.option == 2))
    assert free.territory[1] == 4 and free.pending == 0 and free.eliminated[1] == 0


def test_line_cost_is_waived_without_a_controlled_stack():
    s = make_state(stacks={"7,7": (1, 2)}, markers={f"{x},0": 1 for x in range(4)},
                   phase=LINE_PROCESSING)
    after = apply_move(s, legal_moves(s)[0])
    assert after.pending == 0 and after.territory[1] == 4


def _enclosure():
    # Player 1 markers wall off the corner cell (0,0), which holds a player 2 stack.
    return make_state(
        stacks={"0,0": (2,), "5,5": (1, 1), "6,6": (2,)},
        markers={"1,0": 1, "0,1": 1},
        phase=TERRITORY_PROCESSING,
    )


def test_region_walled_by_one_colour_and_missing_an_active_colour_is_disconnected():
    s = _enclosure()
    assert (cell(s, "0,0"),) in find_regions(s)
    assert set(region_border(s, (cell(s, "0,0"),))) == {cell(s, "1,0"), cell(s, "0,1")}
    moves = legal_moves(s)
    assert moves_of(moves, mt.CHOOSE_TERRITORY_OPTION)
    assert moves_of(moves, mt.SKIP_TERRITORY_PROCESSING)


def test_processing_a_region_collapses_it_and_its_border_then_costs_a_whole_cap():
    s = _enclosure()
    choice = next(m for m in legal_moves(s) if m.cells == (cell(s, "0,0"),))
    after = apply_move(s, choice)
    assert after.collapsed[cell(s, "0,0")] == 1 and after.collapsed[cell(s, "1,0")] == 1
    assert after.territory[1] == 3 and after.eliminated[1] == 1  # the region's ring
    assert after.pending == PENDING_TERRITORY
    (pay,) = legal_moves(after)
    assert pay.dst == cell(s, "5,5")
    paid = apply_move(after, pay)
    assert paid.stacks[cell(s, "5,5")] is None and paid.eliminated[1] == 3
    assert paid.progress() > s.progress()


def test_region_holding_every_active_colour_is_never_disconnected():
    walls = {"2,0": 1, "0,1": 1, "1,1": 1}
    s = make_state(stacks={"0,0": (2,), "1,0": (1,), "7,7": (1,), "6,6": (2,)},
                   markers=walls, phase=TERRITORY_PROCESSING)
    corner = (cell(s, "0,0"), cell(s, "1,0"))
    assert corner not in find_regions(s)
    s.stacks[cell(s, "1,0")] = (1, 2)  # now player 2 controls both: player 1 is missing
    assert corner in find_regions(s)


def test_region_cannot_be_processed_without_a_stack_outside_to_pay_with():
    # Player 1's only stack is inside the walled-off corner: nothing outside can pay.
    s = make_state(stacks={"0,0": (2, 1), "6,6": (2,)}, markers={"1,0": 1, "0,1": 1},
                   phase=TERRITORY_PROCESSING)
    assert (cell(s, "0,0"),) in find_regions(s)
    claimable = [m.cells for m in moves_of(legal_moves(s), mt.CHOOSE_TERRITORY_OPTION)]
    assert (cell(s, "0,0"),) not in claimable
