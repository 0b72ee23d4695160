"""Baseline players for self-play and evaluation: uniform random and one-ply greedy.

A player is anything with ``choose(state, rng) -> Move``; ``rng`` is a ``random.Random``
owned by the caller, so a game replays exactly from its seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Protocol

from .movement import can_move_from
from .moves import BOOKKEEPING_TYPES, SWAP_SIDES, Move
from .rules import apply_move, apply_move_in_place, legal_moves
from .state import ACTIVE, GameState, cap_height


class Player(Protocol):
    def choose(self, state: GameState, rng: random.Random) -> Move: ...


class RandomPlayer:
    """Picks uniformly among the legal moves."""

    name = "random"

    def choose(self, state: GameState, rng: random.Random) -> Move:
        moves = legal_moves(state)
        if not moves:
            raise ValueError("choose: the game is over, there is no move to make")
        return rng.choice(moves)


@dataclass(frozen=True, slots=True)
class HeuristicWeights:
    """Weights of the greedy evaluation. Eliminated rings and territory are the two
    roads to victory, so each is scored against its own victory threshold; material
    (rings still in play) and mobility (stacks that can act) keep options open."""

    eliminated: float = 1.0  # per fraction of the elimination threshold
    territory: float = 1.0  # per fraction of the territory minimum
    rings: float = 0.15  # per fraction of the ring supply still in hand or controlled
    mobility: float = 0.02  # per controlled stack that can move or capture
    cap: float = 0.01  # per ring of controlled caps (capturing power)
    markers: float = 0.005  # per own marker (line and territory potential)


class HeuristicPlayer:
    """One-ply greedy: applies each legal move and keeps the one whose resulting
    position scores best for the mover (own score minus the best opponent's), a won
    game beating everything. Ties are broken at random."""

    name = "heuristic"

    def __init__(self, weights: HeuristicWeights | None = None) -> None:
        self.weights = weights or HeuristicWeights()

    def choose(self, state: GameState, rng: random.Random) -> Move:
        moves = legal_moves(state)
        if not moves:
            raise ValueError("choose: the game is over, there is no move to make")
        if len(moves) == 1 or moves[0].type in BOOKKEEPING_TYPES:
            return moves[0]
        me = state.current
        best: list[Move] = []
        best_score = float("-inf")
        for move in moves:
            score = self.evaluate(apply_move(state, move), me)
            if score > best_score + 1e-12:
                best_score = score
                best = [move]
            elif abs(score - best_score) <= 1e-12:
                best.append(move)
        return rng.choice(best)

    def evaluate(self, state: GameState, me: int) -> float:
        """Position value for ``me``: large when won or lost, else the margin over the
        strongest opponent."""
        if state.status != ACTIVE:
            if state.winner == me:
                return 1e9
            if state.ranks is not None:
                return -1e6 * state.ranks[me - 1]
            return -1e9
        scores = self._scores(state)
        rival = max(scores[p] for p in range(1, state.num_players + 1) if p != me)
        return scores[me] - rival

    def _scores(self, state: GameState) -> list[float]:
        w = self.weights
        n = state.num_players
        threshold = state.victory_threshold
        minimum = state.territory_minimum
        supply = state.board.rings_per_player
        mobile = [0] * (n + 1)
        caps = [0] * (n + 1)
        material = state.in_hand.copy()
        stacks = state.stacks
        collapsed = state.collapsed
        rays = state.board.rays
        for c, s in enumerate(stacks):
            if s:
                top = s[-1]
                ch = cap_height(s)
                caps[top] += ch
                material[top] += len(s)
                if can_move_from(stacks, collapsed, rays[c], len(s), ch):
                    mobile[top] += 1
        markers = [0] * (n + 1)
        for m in state.markers:
            markers[m] += 1
        return [0.0] + [
            w.eliminated * state.eliminated[p] / threshold
            + w.territory * state.territory[p] / minimum
            + w.rings * material[p] / supply
            + w.mobility * mobile[p]
            + w.cap * caps[p]
            + w.markers * markers[p]
            for p in range(1, n + 1)
        ]


def play_game(
    state: GameState, players: list[Player] | tuple[Player, ...], rng: random.Random,
    max_moves: int = 1_000_000,
) -> tuple[GameState, list[Move]]:
    """Play from ``state`` (not modified) to the end; ``players[i]`` starts in seat
    ``i+1`` (after ``swap_sides`` the first two trade seats, and ``state.swapped`` says
    so). Returns the final state and every move applied, bookkeeping included."""
    if len(players) != state.num_players:
        raise ValueError(f"{len(players)} players for a {state.num_players}-player game")
    seats = list(players)
    s = state.copy()
    history: list[Move] = []
    while s.status == ACTIVE and len(history) < max_moves:
        move = seats[s.current - 1].choose(s, rng)
        apply_move_in_place(s, move)
        history.append(move)
        if move.type == SWAP_SIDES:
            seats[0], seats[1] = seats[1], seats[0]
    return s, history
