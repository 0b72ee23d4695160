"""Placement, movement, marker interaction and overtaking capture (RR-CANON-R080-R103)."""

from engine import moves as mt
from engine.moves import Move
from engine.rules import apply_move, legal_moves
from engine.state import CAPTURE, CHAIN_CAPTURE, LINE_PROCESSING, MOVEMENT, initial_state

from .scenario import cell, make_state, moves_of


def test_opening_offers_one_to_three_rings_on_every_cell_and_no_skip():
    s = initial_state("square8", 2)
    moves = legal_moves(s)
    placements = moves_of(moves, mt.PLACE_RING)
    assert len(placements) == 64 * 3
    assert not moves_of(moves, mt.SKIP_PLACEMENT)  # no stacks: placement is mandatory


def test_placement_that_could_never_move_is_illegal():
    # (0,0) hemmed in by collapsed spaces: a ring placed there could never move.
    s = make_state(collapsed={"1,0": 2, "0,1": 2, "1,1": 2}, in_hand=5,
                   phase="ring_placement")
    targets = {m.dst for m in moves_of(legal_moves(s), mt.PLACE_RING)}
    assert cell(s, "0,0") not in targets
    # A 3-ring stack next to the edge needs 3 free cells in some direction.
    s = make_state(collapsed={"3,0": 2, "0,3": 2, "3,3": 2}, in_hand=5, phase="ring_placement")
    counts = {m.count for m in moves_of(legal_moves(s), mt.PLACE_RING)
              if m.dst == cell(s, "0,0")}
    assert counts == {1, 2}


def test_placement_on_a_stack_adds_exactly_one_ring_and_fixes_the_stack_that_moves():
    s = make_state(stacks={"3,3": (2,), "6,6": (1,)}, in_hand=5, phase="ring_placement")
    on_stack = [m for m in moves_of(legal_moves(s), mt.PLACE_RING) if m.dst == cell(s, "3,3")]
    assert [m.count for m in on_stack] == [1]
    after = apply_move(s, on_stack[0])
    assert after.stacks[cell(s, "3,3")] == (2, 1)
    assert after.in_hand[1] == 4 and after.phase == MOVEMENT
    assert {m.src for m in legal_moves(after)} == {cell(s, "3,3")}


def test_skip_placement_is_offered_only_when_a_controlled_stack_can_move():
    s = make_state(stacks={"3,3": (1,)}, in_hand=5, phase="ring_placement")
    assert moves_of(legal_moves(s), mt.SKIP_PLACEMENT)
    blocked = make_state(
        stacks={"0,0": (1,)}, collapsed={"1,0": 2, "0,1": 2, "1,1": 2}, in_hand=5,
        phase="ring_placement",
    )
    assert not moves_of(legal_moves(blocked), mt.SKIP_PLACEMENT)


def test_no_rings_in_hand_records_no_placement_action():
    s = make_state(stacks={"3,3": (1,)}, in_hand=0, phase="ring_placement")
    assert legal_moves(s) == [Move(mt.NO_PLACEMENT_ACTION, 1)]


def test_stack_moves_at_least_its_height_and_stops_at_stacks_and_collapsed_spaces():
    s = make_state(stacks={"0,0": (1, 1), "0,5": (2,)}, collapsed={"4,0": 1})
    dests = {s.board.keys[m.dst] for m in moves_of(legal_moves(s), mt.MOVE_STACK)}
    assert "0,1" not in dests and "1,1" not in dests  # closer than height 2
    assert {"0,2", "0,3", "0,4"} <= dests and "0,6" not in dests  # blocked by the stack
    assert {"2,0", "3,0"} <= dests and "5,0" not in dests  # blocked by collapse
    assert {"2,2", "7,7"} <= dests


def test_movement_leaves_a_marker_flips_opponents_and_collapses_own_markers():
    s = make_state(stacks={"0,0": (1,)}, markers={"1,0": 2, "2,0": 1}, in_hand=0)
    after = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "4,0")))
    assert after.markers[cell(s, "0,0")] == 1  # departure marker
    assert after.markers[cell(s, "1,0")] == 1  # flipped
    assert after.collapsed[cell(s, "2,0")] == 1 and after.territory[1] == 1
    assert after.stacks[cell(s, "4,0")] == (1,)
    assert after.progress() == s.progress() + 1


def test_landing_on_a_marker_removes_it_and_eliminates_the_top_ring():
    s = make_state(stacks={"0,0": (2, 1, 1)}, markers={"0,3": 2}, in_hand=0)
    after = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "0,3")))
    assert after.markers[cell(s, "0,3")] == 0
    assert after.stacks[cell(s, "0,3")] == (2, 1)
    assert after.eliminated[1] == 1 and after.board_rings[1] == 1
    assert after.progress() == s.progress() + 1


def test_capture_needs_cap_at_least_the_targets_and_takes_its_top_ring_to_the_bottom():
    s = make_state(stacks={"0,0": (1, 1), "0,2": (2, 2, 2), "3,0": (2, 2)})
    captures = moves_of(legal_moves(s), mt.OVERTAKING_CAPTURE)
    targets = {s.board.keys[m.target] for m in captures}
    assert targets == {"3,0"}  # cap 2 cannot take a cap of 3
    landing = next(m for m in captures if m.dst == cell(s, "5,0"))
    after = apply_move(s, landing)
    assert after.stacks[cell(s, "5,0")] == (2, 1, 1)
    assert after.stacks[cell(s, "3,0")] == (2,)
    assert after.stacks[cell(s, "0,0")] is None and after.markers[cell(s, "0,0")] == 1


def test_capture_after_a_move_is_optional_and_only_from_the_landing_cell():
    s = make_state(stacks={"0,0": (1,), "2,1": (2,), "5,5": (1,), "5,6": (2,)}, in_hand=0)
    move = Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "1,1"))
    after = apply_move(s, move)
    assert after.phase == CAPTURE
    moves = legal_moves(after)
    assert moves_of(moves, mt.SKIP_CAPTURE)
    assert {m.src for m in moves_of(moves, mt.OVERTAKING_CAPTURE)} == {cell(s, "1,1")}
    skipped = apply_move(after, Move(mt.SKIP_CAPTURE, 1))
    assert skipped.phase == LINE_PROCESSING


def test_chain_capture_must_continue_while_a_segment_exists():
    s = make_state("square19", stacks={"3,3": (1, 1), "7,3": (2, 2)}, in_hand=0)
    first = Move(mt.OVERTAKING_CAPTURE, 1, cell(s, "3,3"), cell(s, "11,3"), cell(s, "7,3"))
    after = apply_move(s, first)
    assert after.phase == CHAIN_CAPTURE
    moves = legal_moves(after)
    assert moves and all(m.type == mt.CONTINUE_CAPTURE_SEGMENT for m in moves)
    back = next(m for m in moves if m.dst == cell(s, "3,3"))  # reverse over the same stack
    done = apply_move(after, back)
    assert done.stacks[cell(s, "7,3")] is None
    assert done.phase != CHAIN_CAPTURE


def test_hex_stack_moves_along_six_axes_only():
    s = make_state("hex8", stacks={"0,0,0": (1,)}, in_hand=0)
    dests = {s.board.keys[m.dst] for m in legal_moves(s)}
    assert len(dests) == 24  # 6 rays of 4 cells from the centre
    assert "1,1,-2" not in dests  # not on a cube axis
