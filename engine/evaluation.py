"""Evaluation play: colour-swapped pairs and seat-rotating rounds, and their scores.

A candidate is measured against one opponent (production, or a baseline player) in *trials*:
with 2 players, a pair of games with the seats swapped; with 3 or 4, a round of n games that
rotates the candidate through every seat, the other seats held by the opponent and, mixed in,
the baseline players. A trial's score for the SPRT is the candidate's mean pairwise score
against the opponent's seats over the trial (win 1, tie 1/2, loss 0 by final rank), so it lies
in [0, 1] and a pair's score is pentanomial.

Every game becomes an Elo match row (participants by seat, each one's score from its rank);
the row's match_id names the candidate, the opponent, the trial and the game, so the leader can
rebuild a test from the rows alone (`trial_scores`), whichever node played them and in
whatever order they arrived.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .moves import Move
from .net import Evaluator, Model
from .players import HeuristicPlayer, Player, RandomPlayer, play_game
from .rules import legal_moves
from .state import ACTIVE, GameState, initial_state

RANDOM, HEURISTIC = "random", "heuristic"
BASELINES = (HEURISTIC, RANDOM)  # seat fillers of 3-4 player rounds, in this order
ID_CHARS = 16  # model shas are shortened to this many hex digits in match ids


@dataclass(frozen=True, slots=True)
class GameResult:
    participants: tuple[str, ...]  # by seat, seat 1 first
    result: tuple[float, ...]  # each seat's score in [0, 1]: (n - rank) / (n - 1)
    moves: int


def baseline_player(name: str) -> Player:
    """The built-in opponent a participant id names; KeyError for any other id."""
    return {RANDOM: RandomPlayer, HEURISTIC: HeuristicPlayer}[name]()


class PolicyPlayer:
    """A network's policy: sampled for the first `opening_moves` moves of a game, so the
    trials of a test are not one game replayed, then its most likely move."""

    def __init__(self, model: Model, device: str = "cpu", opening_moves: int = 8) -> None:
        self.evaluator = Evaluator(model, device)
        self.opening_moves = opening_moves

    def choose(self, state: GameState, rng: random.Random) -> Move:
        moves = legal_moves(state)
        if not moves:
            raise ValueError("choose: the game is over, there is no move to make")
        if len(moves) == 1:
            return moves[0]
        priors, _ = self.evaluator.evaluate([state], [moves])
        p = np.asarray(priors[0], dtype=np.float64)
        if state.move_number < self.opening_moves:
            return moves[_sample(p, rng.random())]
        return moves[int(np.argmax(p))]


def _sample(p: np.ndarray, u: float) -> int:
    cumulative = np.cumsum(p)
    return min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), len(p) - 1)


def rank_scores(ranks: Sequence[int]) -> tuple[float, ...]:
    n = len(ranks)
    return tuple((n - r) / (n - 1) for r in ranks)


def trial_seats(candidate: str, opponent: str, num_players: int) -> list[tuple[str, ...]]:
    """Seatings of one trial's games: the candidate in every seat once."""
    others = [opponent, *BASELINES][: num_players - 1]
    games = []
    for seat in range(num_players):
        rotated = others[seat:] + others[:seat]
        games.append(tuple(rotated[:seat] + [candidate] + rotated[seat:]))
    return games


def short_id(participant: str) -> str:
    return participant[:ID_CHARS]


EVALUATION, WATCH = "e", "w"  # match id prefixes: a candidate's test, a promoted model's watch


def match_id(candidate: str, opponent: str, trial: int, game: int, kind: str = EVALUATION
             ) -> str:
    return f"{kind}:{short_id(candidate)}:{short_id(opponent)}:{trial}:{game}"


def parse_match_id(value: str, kind: str = EVALUATION) -> tuple[str, str, int, int] | None:
    """(candidate, opponent, trial, game) of an evaluation (or watch) match id, else None."""
    parts = value.split(":")
    if len(parts) != 5 or parts[0] != kind or not (parts[3].isdigit() and parts[4].isdigit()):
        return None
    return parts[1], parts[2], int(parts[3]), int(parts[4])


def pairwise_score(game: GameResult, candidate: str, opponent: str) -> float:
    """The candidate's mean score against the opponent's seats in one game."""
    mine = game.result[game.participants.index(candidate)]
    theirs = [r for p, r in zip(game.participants, game.result, strict=True) if p == opponent]
    return sum(1.0 if mine > r else 0.5 if mine == r else 0.0 for r in theirs) / len(theirs)


def play_trial(
    players: Mapping[str, Player], candidate: str, opponent: str, board_type: str,
    num_players: int, seed: int, max_moves: int = 2000,
) -> list[GameResult]:
    """Play one trial; `players` maps every participant id of its seatings to a Player.

    A game still running after `max_moves` scores as a draw for everyone (no rank to read).
    """
    rng = random.Random(seed)
    results = []
    for seats in trial_seats(candidate, opponent, num_players):
        final, history = play_game(initial_state(board_type, num_players),
                                   [players[p] for p in seats], rng, max_moves)
        if final.status == ACTIVE or final.ranks is None:
            result = tuple(0.5 for _ in seats)
        else:
            ranks = list(final.ranks)
            if final.swapped:  # after swap_sides the first two players traded seats
                ranks[0], ranks[1] = ranks[1], ranks[0]
            result = rank_scores(ranks)
        results.append(GameResult(seats, result, len(history)))
    return results


def trial_score(games: Sequence[GameResult], candidate: str, opponent: str) -> float:
    return sum(pairwise_score(g, candidate, opponent) for g in games) / len(games)


def trial_scores(rows: Iterable[Mapping], candidate: str, opponent: str, num_players: int,
                 kind: str = EVALUATION) -> dict[int, float]:
    """Scores of the complete trials among match rows, by trial index: the SPRT's input
    rebuilt from the store (a trial with a game missing is not complete yet)."""
    short_c, short_o = short_id(candidate), short_id(opponent)
    games: dict[int, dict[int, GameResult]] = {}
    for row in rows:
        parsed = parse_match_id(row["match_id"], kind)
        if parsed is None or parsed[:2] != (short_c, short_o):
            continue
        participants = tuple(short_id(p) for p in row["participants"])
        if short_c not in participants or short_o not in participants:
            continue
        games.setdefault(parsed[2], {})[parsed[3]] = GameResult(
            participants, tuple(row["result"]), 0)
    return {trial: trial_score(list(g.values()), short_c, short_o)
            for trial, g in games.items() if len(g) == num_players}
