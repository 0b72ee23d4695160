"""Batched selfplay: many games at once, their network evaluations in one batch per step.

``play`` is one game as a generator of evaluation requests (engine.search's protocol); it
returns a ``PlayedGame`` (plain data: the fields of a stored game row) or None when the game
ran past ``max_moves`` (never stored). ``SelfplayRunner`` keeps ``concurrency`` games going:
each ``step()`` gathers one pending request from every game, evaluates them as one batch and
returns the games that finished. A caller that stops calling ``step()`` simply drops the
unfinished games: nothing half-played ever leaves the runner.

A move with a single legal option (bookkeeping moves, forced replies) is played without
asking the network; its policy target is empty and its value byte 0.

Policy-only games (no search) leave the pick to the runner: it draws every position's move
of a batch at once (``search.policy_picks``, one uniform from each game's own generator),
and the game is sent ``(move index, root value)`` instead of the priors. That is the same
draw as ``search.policy_move`` without a search generator and a Python loop per position.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

import numpy as np

from .moves import Move
from .records import encode_move, encode_policy, encode_value, start_state
from .rules import apply_move_in_place, legal_moves
from .search import Reply, Request, SearchConfig, policy_picks, search
from .state import ACTIVE, GameState

Evaluate = Callable[[list[GameState], list[list[Move]]], tuple[list[np.ndarray], np.ndarray]]


@dataclass(frozen=True, slots=True)
class PlayedGame:
    """A finished game; ``row_fields()`` gives the game row's fields it determines."""

    board_type: str
    num_players: int
    swap_rule: bool
    moves: list[bytes]
    policy: list[bytes] | None
    values: bytes
    rankings: list[int]
    winner: int
    search: dict[str, object]

    def row_fields(self) -> dict[str, object]:
        return {"board_type": self.board_type, "num_players": self.num_players,
                "swap_rule": self.swap_rule, "moves": self.moves, "policy": self.policy,
                "values": self.values, "rankings": self.rankings, "winner": self.winner,
                "search": self.search}


@dataclass(slots=True)
class Counters:
    moves: int = 0
    games: int = 0
    discarded: int = 0  # ran past max_moves
    positions: int = 0  # network evaluations
    batches: int = 0


def _sorted_target(legal: list[Move], weights: np.ndarray) -> bytes:
    """A target over ``legal`` (engine order) re-indexed into the records' sorted order."""
    encoded = [encode_move(m) for m in legal]
    order = sorted(range(len(legal)), key=encoded.__getitem__)
    return encode_policy(weights[order])


def play(
    board_type: str, num_players: int, swap_rule: bool, config: SearchConfig,
    rng: np.random.Generator, max_moves: int, counters: Counters,
) -> Generator[Request, Reply, PlayedGame | None]:
    """One game. Policy-only: each request is answered with ``(move index, root value)``
    (``SelfplayRunner`` picks); otherwise with ``(priors, values)`` (engine.search)."""
    state = start_state(board_type, num_players, swap_rule)
    moves: list[bytes] = []
    policy_only = config.algorithm == "policy"
    policy: list[bytes] | None = None if policy_only else []
    values = bytearray()
    while state.status == ACTIVE:
        if len(moves) >= max_moves:
            counters.discarded += 1
            return None
        legal = legal_moves(state)
        if len(legal) == 1:
            move, target, value = legal[0], b"", 0
        elif policy_only:
            index, root = yield state, legal
            move, target, value = legal[index], b"", encode_value(root)
        else:
            result = yield from search(state, config, rng, len(moves), legal=legal)
            move = legal[result.move]
            target = b"" if result.policy is None else _sorted_target(legal, result.policy)
            value = encode_value(result.value)
        moves.append(encode_move(move))
        if policy is not None:
            policy.append(target)
        values.append(value)
        apply_move_in_place(state, move)
        counters.moves += 1
    assert state.ranks is not None
    counters.games += 1
    return PlayedGame(board_type, num_players, swap_rule, moves, policy, bytes(values),
                      list(state.ranks), state.winner, config.settings())


@dataclass(slots=True)
class _Game:
    gen: Generator[Request, Reply, PlayedGame | None]
    request: Request
    uniforms: Iterator[float]  # policy-only picks' draws from the game's generator


def _uniforms(rng: np.random.Generator) -> Iterator[float]:
    """``rng.random()`` draws, taken from it 64 at a time (the same stream: a call per
    draw costs more than the pick it serves)."""
    while True:
        yield from rng.random(64).tolist()


@dataclass(slots=True)
class SelfplayRunner:
    """Plays games of one config with one evaluator, ``concurrency`` at a time.

    ``games``: how many to start in all (None: keep starting). Seeds make runs repeatable:
    game i draws from ``np.random.default_rng([seed, i])``.
    """

    evaluate: Evaluate
    board_type: str
    num_players: int
    config: SearchConfig
    concurrency: int = 64
    seed: int = 0
    max_moves: int = 6000
    games: int | None = None
    swap_rule: bool | None = None  # None: the engine's default (on for 2 players)
    counters: Counters = field(default_factory=Counters)
    _active: list[_Game] = field(default_factory=list)
    _started: int = 0

    def _fill(self) -> list[PlayedGame]:
        """Start games up to the concurrency; returns any that ended without an evaluation
        (every move forced: possible in principle, never seen)."""
        ended: list[PlayedGame] = []
        swap = self.num_players == 2 if self.swap_rule is None else self.swap_rule
        while len(self._active) < self.concurrency and (
                self.games is None or self._started < self.games):
            rng = np.random.default_rng([self.seed, self._started])
            self._started += 1
            gen = play(self.board_type, self.num_players, swap, self.config, rng,
                       self.max_moves, self.counters)
            try:
                self._active.append(_Game(gen, next(gen), _uniforms(rng)))
            except StopIteration as stop:
                if stop.value is not None:
                    ended.append(stop.value)
        return ended

    @property
    def unfinished(self) -> int:
        """Games started and not yet ended (dropped if the caller stops here)."""
        return len(self._active)

    @property
    def done(self) -> bool:
        return not self._active and self.games is not None and self._started >= self.games

    def step(self) -> list[PlayedGame]:
        """Evaluate one request of every active game as one batch; the games it finished."""
        finished = self._fill()
        if not self._active:
            return finished
        states = [g.request[0] for g in self._active]
        priors, values = self.evaluate(states, [g.request[1] for g in self._active])
        self.counters.positions += len(self._active)
        self.counters.batches += 1
        replies = (self._policy_picks(states, priors, values)
                   if self.config.algorithm == "policy" else zip(priors, values, strict=True))
        still: list[_Game] = []
        for game, reply in zip(self._active, replies, strict=True):
            try:
                game.request = game.gen.send(reply)
                still.append(game)
            except StopIteration as stop:
                if stop.value is not None:
                    finished.append(stop.value)
        self._active = still
        return finished

    def _policy_picks(self, states: list[GameState], priors: list[np.ndarray],
                      values: np.ndarray) -> list[tuple[int, float]]:
        """Each active game's policy-only move and root value (its mover's value)."""
        offsets = np.zeros(len(priors) + 1, dtype=np.int64)
        np.cumsum([len(p) for p in priors], out=offsets[1:])
        uniforms = np.fromiter((next(g.uniforms) for g in self._active), dtype=np.float64,
                               count=len(self._active))
        picks = policy_picks(np.concatenate(priors), offsets, uniforms, self.config.temperature)
        current = np.fromiter((s.current for s in states), dtype=np.int64, count=len(states))
        roots = values[np.arange(len(states)), current - 1]
        return list(zip(picks.tolist(), roots.tolist()))

    def run(self) -> list[PlayedGame]:
        """Play every game to its end (needs ``games``)."""
        if self.games is None:
            raise ValueError("run() needs a number of games; call step() to play without end")
        out: list[PlayedGame] = []
        while not self.done:
            out += self.step()
        return out
