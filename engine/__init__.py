"""RingRift rules and the players, networks and training built on them (plain data, no I/O)."""

from .boards import BOARD_TYPES, BoardConfig, board_config
from .features import state_planes
from .moves import MOVE_TYPES, Move, deserialize_move, serialize_move
from .players import HeuristicPlayer, RandomPlayer, play_game
from .rules import IllegalMove, apply_move, apply_move_in_place, is_legal, legal_moves
from .serialization import (
    decode_state,
    deserialize_state,
    encode_state,
    serialize_state,
    state_hash,
)
from .state import GameState, initial_state


def is_terminal(state: GameState) -> bool:
    """Whether the game is over (won, or resolved by stalemate)."""
    return state.status != "active"


def rankings(state: GameState) -> tuple[int, ...] | None:
    """Final rank of players 1..n (1 = winner, ties share a rank), None while active."""
    return state.ranks


__all__ = [
    "BOARD_TYPES", "MOVE_TYPES", "BoardConfig", "GameState", "HeuristicPlayer", "IllegalMove",
    "Move", "RandomPlayer", "apply_move", "apply_move_in_place", "board_config",
    "decode_state", "deserialize_move", "deserialize_state", "encode_state", "initial_state",
    "is_legal", "is_terminal", "legal_moves", "play_game", "rankings", "serialize_move",
    "serialize_state", "state_hash", "state_planes",
]
