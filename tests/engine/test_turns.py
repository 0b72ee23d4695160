"""Turn structure: bookkeeping moves, forced elimination, recovery, the pie rule, and
how games end (RR-CANON-R070-R076, R100, R110-R115, R170-R180)."""

import pytest

from engine import moves as mt
from engine.moves import Move
from engine.rules import IllegalMove, apply_move, legal_moves
from engine.state import (
    FORCED_ELIMINATION,
    GAME_OVER,
    LINE_PROCESSING,
    MOVEMENT,
    RING_PLACEMENT,
    TERRITORY_PROCESSING,
    initial_state,
)

from .scenario import cell, make_state, moves_of


def _only(state, kind):
    (move,) = legal_moves(state)
    assert move.type == kind, legal_moves(state)
    return apply_move(state, move)


def test_a_blocked_player_without_regions_goes_from_no_line_action_to_forced_elimination():
    # Departure no-line-forced-elimination: no territory phase visit in between.
    wall = (2, 2, 2)  # caps of 3: too high to capture, and they block every ray
    s = make_state(
        stacks={"0,0": (1, 2, 1, 1), "1,0": wall, "0,1": wall, "1,1": wall},
        in_hand=[0, 3], phase=RING_PLACEMENT,
    )
    s = _only(s, mt.NO_PLACEMENT_ACTION)
    assert s.phase == MOVEMENT
    s = _only(s, mt.NO_MOVEMENT_ACTION)
    assert s.phase == LINE_PROCESSING
    s = _only(s, mt.NO_LINE_ACTION)
    assert s.phase == FORCED_ELIMINATION
    s = _only(s, mt.FORCED_ELIMINATION)
    assert s.stacks[cell(s, "0,0")] == (1, 2)  # the whole cap of two went
    assert s.eliminated[1] == 2
    assert s.current == 2 and s.phase == RING_PLACEMENT


def test_a_turn_that_changed_the_board_ends_without_forced_elimination():
    s = make_state(stacks={"3,3": (1,), "6,6": (2,)}, in_hand=[0, 3])
    s = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "3,3"), cell(s, "3,4")))
    s = _only(s, mt.NO_LINE_ACTION)
    s = _only(s, mt.NO_TERRITORY_ACTION)
    assert s.current == 2 and s.phase == RING_PLACEMENT


def _recovery_state(**extra):
    return make_state(
        stacks={"6,6": (1, 1, 2), "7,0": (2,)},
        markers={"0,0": 1, "1,0": 1, "2,0": 1, "3,1": 1, **extra},
        in_hand=[0, 5],
    )


def test_recovery_slide_that_completes_a_line_pays_with_a_buried_ring():
    s = _recovery_state()
    moves = legal_moves(s)
    slides = moves_of(moves, mt.RECOVERY_SLIDE)
    assert moves_of(moves, mt.SKIP_RECOVERY)
    assert slides and all(m.mode == "line" for m in slides)  # a line excludes fallback
    slide = next(m for m in slides if m.src == cell(s, "3,1") and m.dst == cell(s, "3,0"))
    after = apply_move(s, slide)
    assert all(after.collapsed[cell(s, f"{x},0")] == 1 for x in range(4))
    assert after.stacks[cell(s, "6,6")] == (1, 2)  # the bottommost buried ring went
    assert after.eliminated[1] == 1 and after.markers[cell(s, "3,1")] == 0
    assert after.phase == LINE_PROCESSING


def test_without_a_line_recovery_falls_back_to_repositioning_or_striking_a_stack():
    s = make_state(stacks={"6,6": (1, 1, 2), "1,1": (2,)}, markers={"0,0": 1}, in_hand=[0, 5])
    slides = moves_of(legal_moves(s), mt.RECOVERY_SLIDE)
    assert {m.mode for m in slides} == {"fallback", "stack_strike"}
    strike = next(m for m in slides if m.mode == "stack_strike")
    after = apply_move(s, strike)
    assert after.stacks[cell(s, "1,1")] is None and after.markers[cell(s, "0,0")] == 0
    assert after.eliminated[1] == 2  # the struck ring and the extracted one


def test_player_two_may_swap_sides_once_right_after_player_ones_first_turn():
    s = initial_state("square8", 2)
    assert not moves_of(legal_moves(s), mt.SWAP_SIDES)
    s = apply_move(s, Move(mt.PLACE_RING, 1, -1, cell(s, "3,3"), -1, 1))
    s = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "3,3"), cell(s, "3,4")))
    s = _only(s, mt.NO_LINE_ACTION)
    s = _only(s, mt.NO_TERRITORY_ACTION)
    swap = moves_of(legal_moves(s), mt.SWAP_SIDES)
    assert swap and s.current == 2
    after = apply_move(s, swap[0])
    assert after.swapped and after.current == 2 and after.phase == RING_PLACEMENT
    assert not moves_of(legal_moves(after), mt.SWAP_SIDES)
    assert not moves_of(legal_moves(initial_state("square8", 3)), mt.SWAP_SIDES)


def test_reaching_the_elimination_threshold_ends_the_game_when_the_turn_ends():
    s = make_state(stacks={"0,0": (1, 1), "7,7": (2,)}, markers={"0,2": 2}, in_hand=[0, 3])
    s.eliminated[1] = s.victory_threshold - 1
    s = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "0,2")))
    assert s.eliminated[1] == s.victory_threshold and s.phase == LINE_PROCESSING
    s = _only(s, mt.NO_LINE_ACTION)
    after = _only(s, mt.NO_TERRITORY_ACTION)
    assert after.phase == GAME_OVER and after.winner == 1
    assert after.victory_reason == "ring_elimination" and after.ranks == (1, 2)
    assert legal_moves(after) == []


def test_sole_real_actor_for_three_full_rounds_wins_last_player_standing():
    # Player 2 has no stack, no ring in hand and no marker, but a buried ring: still
    # in the rotation, with nothing but bookkeeping moves. Rounds are counted from
    # the first turn start after the position (player 2's), as the canonical hosts do.
    s = make_state("square19", stacks={"9,9": (2, 1)}, in_hand=[0, 0],
                   phase=RING_PLACEMENT)
    rounds = 0
    while s.phase != GAME_OVER:
        moves = legal_moves(s)
        real = [m for m in moves if m.type == mt.MOVE_STACK]
        s = apply_move(s, real[0] if real else moves[0])
        if s.current == 1 and s.phase == RING_PLACEMENT:
            rounds += 1
            assert s.phase != GAME_OVER
    assert rounds == 3  # the win comes at player 1's turn start after three rounds
    assert s.winner == 1 and s.victory_reason == "last_player_standing"
    assert s.ranks == (1, 2)


def test_global_stalemate_keeps_hands_and_ranks_by_territory_first():
    cells = [f"{x},{y}" for y in range(8) for x in range(8)]
    free = {"0,0", "7,7"}
    collapsed = {}
    for i, key in enumerate(k for k in cells if k not in free):
        collapsed[key] = 1 if i < 32 else 2
    s = make_state(stacks={"0,0": (1, 1)}, collapsed=collapsed, in_hand=[0, 2],
                   phase=FORCED_ELIMINATION)
    after = apply_move(s, Move(mt.FORCED_ELIMINATION, 1, -1, cell(s, "0,0")))
    # Departure stalemate-ladder: the territory leader wins by territory; hands stay.
    assert after.phase == GAME_OVER and after.victory_reason == "territory"
    assert after.winner == 1 and after.ranks == (1, 2)
    assert after.in_hand[2] == 2 and after.eliminated[2] == 0


def test_resignation_leaves_the_other_player_the_winner():
    s = initial_state("hex8", 2)
    after = apply_move(s, Move(mt.RESIGN, 1))
    assert after.winner == 2 and after.ranks == (2, 1)


def test_after_a_recovery_each_region_is_paid_for_with_a_buried_ring_outside_it():
    s = make_state(
        stacks={"0,0": (2,), "6,6": (1, 1, 2), "4,4": (2,)},
        markers={"1,0": 1, "0,1": 1}, in_hand=[0, 5], phase=TERRITORY_PROCESSING,
    )
    s.recovery_turn = True
    s.turn_changed = True
    choice = next(m for m in legal_moves(s) if m.cells == (cell(s, "0,0"),))
    after = apply_move(s, choice)
    (pay,) = legal_moves(after)
    assert pay.type == mt.ELIMINATE_RINGS_FROM_STACK and pay.dst == cell(s, "6,6")
    paid = apply_move(after, pay)
    assert paid.stacks[cell(s, "6,6")] == (1, 2)  # one buried ring, not a cap
    assert paid.eliminated[1] == 2  # the region's ring and the extracted one


def test_a_stack_may_overtake_its_owners_own_stack():
    s = make_state(stacks={"0,0": (1, 1), "0,2": (1,), "7,7": (2,)})
    own = [m for m in moves_of(legal_moves(s), mt.OVERTAKING_CAPTURE)
           if m.target == cell(s, "0,2")]
    assert own
    after = apply_move(s, own[0])
    assert after.stacks[own[0].dst] == (1, 1, 1) and after.eliminated == s.eliminated


def test_checked_apply_refuses_a_move_that_is_not_legal_and_leaves_the_state_alone():
    s = initial_state("square8", 2)
    before = s.copy()
    with pytest.raises(IllegalMove, match="not legal"):
        apply_move(s, Move(mt.MOVE_STACK, 1, 0, 1), check=True)
    assert s.stacks == before.stacks and s.phase == before.phase


def test_the_last_regions_payment_ends_the_turn_without_a_bookkeeping_move():
    s = make_state(stacks={"0,0": (2,), "5,5": (1, 1), "4,4": (1,), "6,6": (2,)},
                   markers={"1,0": 1, "0,1": 1}, phase=TERRITORY_PROCESSING)
    s.turn_changed = True
    s = apply_move(s, next(m for m in legal_moves(s) if m.cells == (cell(s, "0,0"),)))
    s = apply_move(s, moves_of(legal_moves(s), mt.ELIMINATE_RINGS_FROM_STACK)[0])
    assert s.current == 2 and s.phase == RING_PLACEMENT


def test_a_segment_collapse_with_no_line_left_goes_straight_to_territory():
    s = make_state(stacks={"7,7": (1,), "6,6": (2,)},
                   markers={f"{x},2": 1 for x in range(5)}, phase=LINE_PROCESSING)
    segment = next(m for m in moves_of(legal_moves(s), mt.CHOOSE_LINE_OPTION) if m.option == 2)
    s = apply_move(s, segment)
    assert s.phase == TERRITORY_PROCESSING and s.territory[1] == 4


def test_the_elimination_threshold_wins_before_a_last_player_standing_at_the_same_turn_end():
    # Player 2 has no ring anywhere: the engine's own last-player-standing check would
    # fire at this turn's end too, but ring elimination is checked first.
    s = make_state(stacks={"0,0": (1, 1)}, markers={"0,2": 2}, in_hand=[0, 0])
    s.eliminated[1] = s.victory_threshold - 1
    s = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "0,2")))
    s = _only(s, mt.NO_LINE_ACTION)
    s = _only(s, mt.NO_TERRITORY_ACTION)
    assert (s.winner, s.victory_reason) == (1, "ring_elimination")


def test_a_sole_stack_owner_wins_at_once_only_when_no_one_else_has_a_ring_anywhere():
    def after_turn(stack):
        s = make_state(stacks={"0,0": stack}, in_hand=[0, 0])
        s = apply_move(s, Move(mt.MOVE_STACK, 1, cell(s, "0,0"), cell(s, "0,3")))
        s = _only(s, mt.NO_LINE_ACTION)
        return _only(s, mt.NO_TERRITORY_ACTION)

    won = after_turn((1, 1, 1))
    assert (won.winner, won.victory_reason) == (1, "last_player_standing")
    buried = after_turn((2, 1, 1))  # player 2's buried ring keeps the game going
    assert buried.phase == RING_PLACEMENT and buried.current == 2


def test_with_rings_in_hand_and_a_movable_stack_skip_placement_is_the_move_even_with_no_placement():
    keep = {"0,0", "1,0", "7,7"}
    walls = {f"{x},{y}": 2 for x in range(8) for y in range(8) if f"{x},{y}" not in keep}
    s = make_state(stacks={"0,0": (1,), "7,7": (2,)}, collapsed=walls, in_hand=[3, 3],
                   phase=RING_PLACEMENT)
    assert [m.type for m in legal_moves(s)] == [mt.SKIP_PLACEMENT]


def test_a_recovery_slide_takes_its_ring_from_the_first_stack_in_stack_order():
    # Player 1 controls no stack; it has a marker and a buried ring in each of two
    # stacks. The stack that appeared first pays, whichever cell it is on.
    for first, second in (("6,6", "0,7"), ("0,7", "6,6")):
        s = make_state(stacks={first: (1, 2), second: (1, 2), "3,3": (2,)},
                       markers={"0,0": 1}, in_hand=[0, 5])
        slide = next(m for m in moves_of(legal_moves(s), mt.RECOVERY_SLIDE)
                     if m.dst == cell(s, "1,0"))
        after = apply_move(s, slide)
        assert after.stacks[cell(s, first)] == (2,) and after.stacks[cell(s, second)] == (1, 2)
