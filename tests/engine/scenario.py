"""Build game states for rules tests from a readable description."""

from __future__ import annotations

from engine.boards import board_config
from engine.serialization import derive_counts
from engine.state import GameState, empty_state


def make_state(
    board: str = "square8",
    players: int = 2,
    *,
    stacks: dict[str, tuple[int, ...]] | None = None,
    markers: dict[str, int] | None = None,
    collapsed: dict[str, int] | None = None,
    in_hand: int | list[int] = 0,
    current: int = 1,
    phase: str = "movement",
    turn: int = 10,
) -> GameState:
    """Stacks are given bottom ring first; ``in_hand`` is one count for all or a list."""
    cfg = board_config(board)
    s = empty_state(cfg, players, 0, False)
    for key, rings in (stacks or {}).items():
        s.put_stack(cfg.index[key], tuple(rings))
    for key, owner in (markers or {}).items():
        s.markers[cfg.index[key]] = owner
    for key, owner in (collapsed or {}).items():
        s.collapsed[cfg.index[key]] = owner
    hands = in_hand if isinstance(in_hand, list) else [in_hand] * players
    s.in_hand = [0, *hands]
    derive_counts(s)
    s.current = current
    s.phase = phase
    s.turn = turn
    return s


def cell(state: GameState, key: str) -> int:
    return state.board.index[key]


def moves_of(moves: list, kind: str) -> list:
    return [m for m in moves if m.type == kind]
