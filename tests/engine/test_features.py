"""Network input planes: shapes per board and the mover's point of view."""

import numpy as np
import pytest

from engine import BOARD_TYPES, board_config, initial_state
from engine.features import NUM_PLANES, NUM_SCALARS, PLANES_PER_PLAYER, state_planes

from .scenario import make_state


@pytest.mark.parametrize("board", BOARD_TYPES)
def test_planes_cover_exactly_the_board_cells(board):
    planes, scalars = state_planes(initial_state(board, 3))
    size = board_config(board).size
    assert planes.shape == (NUM_PLANES, size, size) and planes.dtype == np.float32
    assert scalars.shape == (NUM_SCALARS,)
    on_board = planes[PLANES_PER_PLAYER * 4]
    assert on_board.sum() == board_config(board).num_cells


def test_the_player_to_move_always_sees_their_pieces_in_the_first_block():
    one = make_state("hex8", 3, stacks={"0,0,0": (1,), "1,-1,0": (2, 2)}, current=1)
    two = make_state("hex8", 3, stacks={"0,0,0": (1,), "1,-1,0": (2, 2)}, current=2)
    p1, _ = state_planes(one)
    p2, _ = state_planes(two)
    assert p1[0].sum() == pytest.approx(1 / 8) and p2[0].sum() == pytest.approx(2 / 8)
    # Player 1 sits two seats after player 2 in a 3-player game.
    assert np.array_equal(p2[2 * PLANES_PER_PLAYER], p1[0])
