"""Evaluation games as work any node does: playing trials and storing them as match rows.

The leader hands out trials by assignment rows (storage: one per node, leader-written and
fenced by term, synced like any other row). Every node runs an `EvaluationWorker` that plays
the trials of its assignment not yet found in the match store and records each game as an Elo
match row; the rows sync back to the leader, whose pipeline rebuilds the test from them. A
node that vanishes leaves its trials incomplete, and the leader assigns them again elsewhere;
games played twice are one match row each (same id), and a trial counts once.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor

from engine.evaluation import (
    HEURISTIC,
    RANDOM,
    GameResult,
    PolicyPlayer,
    baseline_player,
    match_id,
    play_trial,
    trial_scores,
)
from engine.net import Model, load_model
from engine.players import Player
from storage.stores import Stores

log = logging.getLogger("ringrift.evaluation")


class ModelCache:
    """Models loaded from the blobs this node holds, by sha256."""

    def __init__(self, stores: Stores) -> None:
        self._stores = stores
        self._models: dict[str, Model] = {}

    def put(self, sha: str, model: Model) -> None:
        self._models[sha] = model

    async def get(self, sha: str, board: str, n: int) -> Model | None:
        """The model, or None while its blob has not been pulled to this node yet."""
        if sha not in self._models:
            if not self._stores.models.has_blob(sha):
                return None
            blob = await self._stores.models.get_blob(sha)
            self._models[sha] = await asyncio.to_thread(load_model, blob, board, n)
        return self._models[sha]


def play_from_blobs(blobs: dict[str, bytes], board: str, n: int, candidate: str,
                    opponent: str, seed: int, max_moves: int, device: str) -> list[GameResult]:
    """One trial with the models given as blobs: what a worker process runs."""
    players: dict[str, Player] = {}
    for participant in {candidate, opponent, HEURISTIC, RANDOM}:
        if participant in (RANDOM, HEURISTIC):
            players[participant] = baseline_player(participant)
        else:
            players[participant] = PolicyPlayer(load_model(blobs[participant], board, n), device)
    return play_trial(players, candidate, opponent, board, n, seed, max_moves)


async def play_and_record(
    stores: Stores, models: ModelCache, device: str, board: str, n: int, candidate: str,
    opponent: str, trial: int, kind: str, max_moves: int, pool: Executor | None = None,
) -> int:
    """Play one trial and store its games as match rows; returns the games played (0 when a
    model's blob is not here yet).

    With a `pool` (a process pool: the agent's), the games run in another process, so the
    interpreter lock stays with the mesh; without one, in a thread of this process.
    """
    # Seeded by what the trial is, so a reassigned trial plays the same games.
    seed = int.from_bytes(hashlib.sha256(
        f"{kind}:{candidate}:{opponent}:{trial}".encode()).digest()[:8], "little")
    shas = [p for p in {candidate, opponent} if p not in (RANDOM, HEURISTIC)]
    if pool is not None:
        if not all(stores.models.has_blob(sha) for sha in shas):
            return 0
        blobs = {sha: await stores.models.get_blob(sha) for sha in shas}
        games = await asyncio.get_running_loop().run_in_executor(
            pool, play_from_blobs, blobs, board, n, candidate, opponent, seed, max_moves, device)
    else:
        players: dict[str, Player] = {p: baseline_player(p) for p in (RANDOM, HEURISTIC)}
        for sha in shas:
            model = await models.get(sha, board, n)
            if model is None:
                return 0
            players[sha] = PolicyPlayer(model, device)
        games = await asyncio.to_thread(play_trial, players, candidate, opponent, board, n, seed,
                                        max_moves)
    for index, game in enumerate(games):
        await stores.matches.record_match(match_id(candidate, opponent, trial, index, kind),
                                          list(game.participants), board, n, list(game.result))
    return len(games)


class EvaluationWorker:
    """Plays this node's assigned trials; runs on every node, the leader included."""

    def __init__(self, stores: Stores, node_id: str, device: str, max_moves: int,
                 set_state: Callable[[str], None], pool: Executor | None = None) -> None:
        self._stores = stores
        self._pool = pool
        self._node_id = node_id
        self._device = device
        self._max_moves = max_moves
        self._set_state = set_state
        self.models = ModelCache(stores)
        self.games_played = 0

    async def run(self, interval_s: float) -> None:
        while True:
            try:
                played = await self.step()
            except Exception:  # a bad blob or a failed game must not take the node down
                log.exception("evaluation trial failed; retrying in %.1f s", interval_s)
                self._set_state("idle")
                played = False
            if not played:
                await asyncio.sleep(interval_s)

    async def step(self) -> bool:
        """Play the next unplayed trial of this node's assignment; False when there is none."""
        job = await self._stores.models.assignment(self._node_id)
        if job is None or job["term"] < self._stores.models.newest_term:
            return False  # nothing assigned, or assigned by a leader since deposed
        board, n = job["board_type"], job["num_players"]
        rows = await self._stores.matches.all_matches(board, n)
        done = trial_scores(rows, job["candidate"], job["opponent"], n, job["match_kind"])
        todo = [t for t in range(job["first_trial"], job["first_trial"] + job["trials"])
                if t not in done]
        if not todo:
            return False
        self._set_state("evaluating")
        try:
            played = await play_and_record(
                self._stores, self.models, self._device, board, n, job["candidate"],
                job["opponent"], todo[0], job["match_kind"], self._max_moves, self._pool)
        finally:
            self._set_state("idle")
        self.games_played += played
        return played > 0
