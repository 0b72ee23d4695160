"""Move search: Gumbel MCTS with sequential halving, PUCT with Dirichlet noise, policy only.

A search is a generator: it yields ``(state, legal_moves)`` whenever it needs a network
evaluation and is sent back ``(priors, values)`` (priors over those moves, values of players
1..n). It never calls the network itself, so a runner can advance many games' searches side
by side and evaluate all their leaves in one batch (engine.selfplay does). Its return value
is a ``SearchResult``.

Values are vectors (one per player), so the same tree serves 2 to 4 players and turns
where one player makes several moves in a row; a node's statistics are kept from the point
of view of its player to move.

Gumbel (Danihelka et al., "Policy improvement by planning with Gumbel", ICLR 2022): at the
root, Gumbel-top-k picks ``considered`` candidate moves and sequential halving spends the
simulations on them, keeping the best half by g + logit + sigma(q) each phase; below the
root, the deterministic rule argmax(pi'(a) - N(a) / (1 + sum N)). The policy target is the
improved policy pi' = softmax(logit + sigma(completed q)). PUCT (AlphaZero): Dirichlet noise
on the root priors, the move drawn from visit counts with a temperature for the first
``temperature_moves`` moves of a game, the most visited one after.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from .encoding import outcome_values
from .moves import Move
from .rules import apply_move, legal_moves
from .state import ACTIVE, GameState

ALGORITHMS = ("gumbel", "puct", "policy")
Request = tuple[GameState, list[Move]]
Reply = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class SearchConfig:
    algorithm: str = "gumbel"
    simulations: int = 16
    considered: int = 16  # Gumbel: candidate moves at the root (m)
    c_visit: float = 50.0  # Gumbel sigma: (c_visit + max N) * c_scale * q, q in [0, 1]
    c_scale: float = 1.0
    c_puct: float = 1.25
    dirichlet_alpha: float = 0.3
    dirichlet_fraction: float = 0.25
    temperature: float = 1.0  # policy only: every move; PUCT: the opening moves
    temperature_moves: int = 30

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm {self.algorithm!r} is not one of {ALGORITHMS}")
        if self.algorithm != "policy" and not 1 <= self.simulations <= 100_000:
            raise ValueError(f"simulations {self.simulations} is not in 1..100000")
        if self.considered < 1:
            raise ValueError(f"considered {self.considered} is not >= 1")

    def settings(self) -> dict[str, object]:
        """What a game row records of the search that played it."""
        if self.algorithm == "policy":
            return {"algorithm": "policy", "temperature": self.temperature}
        if self.algorithm == "gumbel":
            return {"algorithm": "gumbel", "simulations": self.simulations,
                    "considered": self.considered, "c_visit": self.c_visit,
                    "c_scale": self.c_scale}
        return {"algorithm": "puct", "simulations": self.simulations, "c_puct": self.c_puct,
                "dirichlet_alpha": self.dirichlet_alpha,
                "dirichlet_fraction": self.dirichlet_fraction, "temperature": self.temperature,
                "temperature_moves": self.temperature_moves}


@dataclass(frozen=True, slots=True)
class SearchResult:
    move: int  # index into the root's legal moves
    policy: np.ndarray | None  # target over the root's legal moves (None: policy only)
    value: float  # the root player's value estimate
    evaluations: int  # network positions this search asked for


class Node:
    __slots__ = ("children", "legal", "logits", "mover", "prior", "state", "value", "visits",
                 "wsum")

    def __init__(self, state: GameState, value: np.ndarray, legal: list[Move],
                 prior: np.ndarray) -> None:
        self.state = state
        self.mover = state.current - 1  # index into value vectors
        self.value = value
        self.legal = legal
        self.prior = prior
        self.logits = np.log(np.maximum(prior, 1e-12))
        self.visits = np.zeros(len(legal), dtype=np.float64)
        self.wsum = np.zeros(len(legal), dtype=np.float64)  # of values for self.mover
        self.children: list[Node | None] = [None] * len(legal)

    @property
    def terminal(self) -> bool:
        return not self.legal

    def q(self) -> np.ndarray:
        return np.divide(self.wsum, self.visits, out=np.zeros_like(self.wsum),
                         where=self.visits > 0)


def expand(state: GameState, legal: list[Move] | None = None
           ) -> Generator[Request, Reply, Node]:
    """A node for ``state``: terminal states are valued by their rankings, others by one
    network evaluation (``legal``: its legal moves, when the caller has them)."""
    if state.status != ACTIVE:
        assert state.ranks is not None
        return Node(state, outcome_values(state.ranks), [], np.zeros(0))
    if legal is None:
        legal = legal_moves(state)
    priors, values = yield state, legal
    return Node(state, np.asarray(values, dtype=np.float64), legal, priors)


def _sigma(q01: np.ndarray, node: Node, config: SearchConfig) -> np.ndarray:
    return (config.c_visit + node.visits.max(initial=0.0)) * config.c_scale * q01


def improved_policy(node: Node, config: SearchConfig) -> np.ndarray:
    """pi' = softmax(logits + sigma(completed q)); unvisited moves take the mixed value."""
    total = node.visits.sum()
    q = node.q()
    visited = node.visits > 0
    v = node.value[node.mover]
    if total > 0:
        mass = node.prior[visited].sum()
        if mass > 0:
            v = (v + total / mass * float((node.prior * q)[visited].sum())) / (1.0 + total)
    completed = np.where(visited, q, v)
    x = node.logits + _sigma((completed + 1.0) / 2.0, node, config)
    e = np.exp(x - x.max())
    return e / e.sum()


def _simulate(
    root: Node, first: int, config: SearchConfig, puct: bool
) -> Generator[Request, Reply, None]:
    """One simulation starting with root move ``first``: descend, expand a leaf, back up."""
    path = [(root, first)]
    node = root
    action = first
    while True:
        child = node.children[action]
        if child is None:
            child = yield from expand(apply_move(node.state, node.legal[action]))
            node.children[action] = child
            value = child.value
            break
        if child.terminal:
            value = child.value
            break
        node = child
        action = _select_puct(node, config) if puct else _select_gumbel(node, config)
        path.append((node, action))
    for n, a in path:
        n.visits[a] += 1.0
        n.wsum[a] += value[n.mover]


def _select_gumbel(node: Node, config: SearchConfig) -> int:
    pi = improved_policy(node, config)
    return int(np.argmax(pi - node.visits / (1.0 + node.visits.sum())))


def _select_puct(node: Node, config: SearchConfig) -> int:
    total = node.visits.sum()
    q = np.where(node.visits > 0, node.q(), node.value[node.mover])
    u = config.c_puct * node.prior * math.sqrt(max(total, 1.0)) / (1.0 + node.visits)
    return int(np.argmax(q + u))


def _root_value(root: Node) -> float:
    return float((root.value[root.mover] + root.wsum.sum()) / (1.0 + root.visits.sum()))


def gumbel_search(
    state: GameState, config: SearchConfig, rng: np.random.Generator, noise: bool = True,
    legal: list[Move] | None = None,
) -> Generator[Request, Reply, SearchResult]:
    """Sequential halving over Gumbel-top-k root candidates (``noise=False``: no Gumbel
    noise, the strongest-move setting for evaluation games)."""
    root = yield from expand(state, legal)
    k = len(root.legal)
    g = rng.gumbel(size=k) if noise else np.zeros(k)
    m = min(config.considered, k, config.simulations)
    remaining = list(np.argsort(-(g + root.logits), kind="stable")[:m])
    phases = max(1, math.ceil(math.log2(m))) if m > 1 else 1
    budget = config.simulations
    evaluations = 1
    for phase in range(phases):
        if len(remaining) == 1 or budget <= 0:
            break
        per_move = max(1, budget // ((phases - phase) * len(remaining)))
        for a in remaining:
            for _ in range(per_move):
                if budget <= 0:
                    break
                evaluations += yield from _counting(_simulate(root, int(a), config, False))
                budget -= 1
        q01 = (root.q() + 1.0) / 2.0
        score = g + root.logits + _sigma(q01, root, config)
        remaining.sort(key=lambda a: -score[a])
        remaining = remaining[:max(1, math.ceil(len(remaining) / 2))]
    q01 = (root.q() + 1.0) / 2.0
    score = g + root.logits + _sigma(q01, root, config)
    best = max(remaining, key=lambda a: score[a])
    return SearchResult(int(best), improved_policy(root, config), _root_value(root), evaluations)


def puct_search(
    state: GameState, config: SearchConfig, rng: np.random.Generator, move_number: int,
    noise: bool = True, legal: list[Move] | None = None,
) -> Generator[Request, Reply, SearchResult]:
    root = yield from expand(state, legal)
    if noise and len(root.legal) > 1:
        eta = rng.dirichlet([config.dirichlet_alpha] * len(root.legal))
        root.prior = (1 - config.dirichlet_fraction) * root.prior + config.dirichlet_fraction * eta
    evaluations = 1
    for _ in range(config.simulations):
        evaluations += yield from _counting(
            _simulate(root, _select_puct(root, config), config, True))
    visits = root.visits
    policy = visits / visits.sum()
    if move_number < config.temperature_moves and noise:
        move = _draw(visits ** (1.0 / config.temperature), rng)
    else:
        move = int(np.argmax(visits))
    return SearchResult(move, policy, _root_value(root), evaluations)


def policy_move(
    state: GameState, config: SearchConfig, rng: np.random.Generator,
    noise: bool = True, legal: list[Move] | None = None,
) -> Generator[Request, Reply, SearchResult]:
    """No search: one evaluation, the move drawn from the priors with the temperature all
    game long (a game of argmax moves from an untrained net is one long rut), or the most
    likely move with ``noise=False``. (Selfplay picks a batch's policy moves at once with
    ``policy_picks``, which this is the one-position case of.)"""
    if legal is None:
        legal = legal_moves(state)
    priors, values = yield state, legal
    if noise:
        move = int(policy_picks(priors, np.array([0, len(priors)]), np.array([rng.random()]),
                                config.temperature)[0])
    else:
        move = int(np.argmax(priors))
    return SearchResult(move, None, float(values[state.current - 1]), 1)


def policy_picks(priors: np.ndarray, offsets: np.ndarray, uniforms: np.ndarray,
                 temperature: float) -> np.ndarray:
    """Policy-only moves of a batch: position b (priors ``priors[offsets[b]:offsets[b + 1]]``)
    gets the index drawn in proportion to its priors ** (1 / temperature), by inverse CDF
    from ``uniforms[b]`` in [0, 1) (one draw from the game's own generator, so a game's moves
    do not depend on the batch it was evaluated in)."""
    weights = priors.astype(np.float64)
    if temperature != 1.0:
        weights **= 1.0 / temperature
    return _draw_segments(weights, offsets, uniforms)


def _draw_segments(weights: np.ndarray, offsets: np.ndarray, uniforms: np.ndarray
                   ) -> np.ndarray:
    """Per segment ``offsets[b]:offsets[b + 1]`` of ``weights`` (non-negative), the index
    whose cumulative weight first exceeds ``uniforms[b]`` times the segment's total: one
    cumulative sum over the whole batch and one binary search for every segment."""
    cumulative = np.cumsum(weights)
    ends = cumulative[offsets[1:] - 1]
    starts = np.zeros_like(ends)
    starts[1:] = ends[:-1]
    found = np.searchsorted(cumulative, starts + uniforms * (ends - starts), side="right")
    return np.minimum(found - offsets[:-1], np.diff(offsets) - 1)


def _draw(weights: np.ndarray, rng: np.random.Generator) -> int:
    """An index drawn in proportion to ``weights``."""
    return int(_draw_segments(weights, np.array([0, len(weights)]),
                              np.array([rng.random()]))[0])


def _counting(gen: Generator[Request, Reply, None]) -> Generator[Request, Reply, int]:
    """Run ``gen``, returning how many evaluations it asked for."""
    count = 0
    try:
        request = next(gen)
        while True:
            count += 1
            request = gen.send((yield request))
    except StopIteration:
        return count


def search(
    state: GameState, config: SearchConfig, rng: np.random.Generator, move_number: int = 0,
    noise: bool = True, legal: list[Move] | None = None,
) -> Generator[Request, Reply, SearchResult]:
    """The search ``config`` names, from ``state`` (which it does not modify); ``legal``:
    the state's legal moves when the caller has them (results index into them)."""
    if config.algorithm == "gumbel":
        return (yield from gumbel_search(state, config, rng, noise, legal))
    if config.algorithm == "puct":
        return (yield from puct_search(state, config, rng, move_number, noise, legal))
    return (yield from policy_move(state, config, rng, noise, legal))


def run_one(gen: Generator[Request, Reply, SearchResult], evaluate) -> SearchResult:
    """Drive one search to its end, evaluating each request alone (tests, analysis)."""
    try:
        state, legal = next(gen)
        while True:
            priors, values = evaluate([state], [legal])
            state, legal = gen.send((priors[0], values[0]))
    except StopIteration as stop:
        return stop.value
