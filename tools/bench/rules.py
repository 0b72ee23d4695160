"""Rules-engine speed: uniform-random playouts on one core, per board and player count.

Figures per config (``<board>_<n>p_``): ``games_per_s`` and ``moves_per_s`` of whole
random playouts (legal-move generation, the random choice and applying the move; every
move counts, bookkeeping moves included), ``legal_moves_per_s`` (``legal_moves`` calls a
second over positions met in those games) and ``avg_moves`` (moves per game).
Rates are per second of this process's CPU time (one core), so other load on a shared
machine does not deflate them.
"""

from __future__ import annotations

import random
import time

from engine.boards import BOARD_TYPES
from engine.rules import apply_move_in_place, legal_moves
from engine.state import ACTIVE, GameState, initial_state

PLAYER_COUNTS = (2, 3, 4)


def _playout(board: str, players: int, rng: random.Random, keep: list[GameState],
             keep_every: int) -> int:
    state = initial_state(board, players)
    moves = 0
    while state.status == ACTIVE:
        if moves % keep_every == 0:
            keep.append(state.copy())
        apply_move_in_place(state, rng.choice(legal_moves(state)))
        moves += 1
    return moves


def bench_config(board: str, players: int, min_games: int, min_seconds: float,
                 seed: int = 0) -> dict[str, float]:
    rng = random.Random(seed)
    positions: list[GameState] = []
    games = moves = 0
    start = time.process_time()
    while games < min_games or time.process_time() - start < min_seconds:
        moves += _playout(board, players, rng, positions, keep_every=7)
        games += 1
    elapsed = time.process_time() - start
    calls = 0
    t0 = time.process_time()
    while calls < len(positions) or time.process_time() - t0 < min_seconds / 4:
        legal_moves(positions[calls % len(positions)])
        calls += 1
    legal_elapsed = time.process_time() - t0
    return {
        "games_per_s": round(games / elapsed, 3),
        "moves_per_s": round(moves / elapsed, 1),
        "legal_moves_per_s": round(calls / legal_elapsed, 1),
        "avg_moves": round(moves / games, 1),
        "games": games,
    }


def run(quick: bool) -> dict[str, float | int | str]:
    """All 12 configs; ``quick`` plays one game each (a few seconds in all)."""
    figures: dict[str, float | int | str] = {}
    for board in BOARD_TYPES:
        for players in PLAYER_COUNTS:
            if quick:
                result = bench_config(board, players, min_games=1, min_seconds=0.0)
            else:
                result = bench_config(board, players, min_games=5, min_seconds=5.0)
            for key, value in result.items():
                figures[f"{board}_{players}p_{key}"] = value
    return figures
