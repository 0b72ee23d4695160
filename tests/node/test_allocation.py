"""The selfplay allocation: the leader's rule, each node's pick, the worker following it between
batches, and the leader's training and own games holding selfplay off."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
import time
from collections import Counter

import pytest
import torch
from prometheus_client import CollectorRegistry

from engine.net import Arch, initial_model, save_model
from engine.players import RandomPlayer, play_game
from engine.promotion import PromotionCriteria
from engine.records import encode_move
from engine.state import initial_state
from engine.training import TrainingSettings
from node.allocation import allocation_weights, pick_config
from node.config import load_config
from node.pipeline import LeaderPipeline, PipelineSettings
from node.resources import Guard, Limits
from node.selfplay import IdleScheduler, SelfplayMetrics, SelfplayWorker
from storage.hlc import HybridClock
from storage.rows import SELFPLAY_ALLOCATION
from storage.stores import open_stores

TINY = Arch(channels=4, blocks=1, value_hidden=4)
CRITERIA = PromotionCriteria(min_games_played=2, sprt_min_games=2, sprt_max_games=4,
                             min_elo_improvement=-1000.0, min_win_rate=0.0, random_gate=0.0,
                             heuristic_gate=0.0, max_value_mse_degradation=10.0)


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.fixture
async def stores(tmp_path):
    s = await open_stores(tmp_path, HybridClock(lambda: time.time_ns() // 1_000_000, 60_000),
                          "node-a")
    yield s
    await s.close()


def _pipeline_settings(configs, threshold: int = 4) -> PipelineSettings:
    # Training in a thread (0 processes): the tests look at the holds, not at the process.
    return PipelineSettings(tuple(configs), threshold, 4,
                            TrainingSettings(steps=2, batch_size=8), 0, 0.05, 4, 30, CRITERIA)


def _selfplay(**changes):
    return dataclasses.replace(load_config().selfplay, board_type="square8", num_players=2,
                               algorithm="policy", concurrency=1, model_check_s=0.05,
                               guard_interval_s=0.05, **changes)


def _random_game(board: str, n: int, seed: int) -> dict:
    final, history = play_game(initial_state(board, n), [RandomPlayer()] * n,
                               random.Random(seed))
    return {"board_type": board, "num_players": n, "moves": [encode_move(m) for m in history],
            "rankings": list(final.ranks)}


async def _production(stores, board: str, players: int) -> str:
    sha = await stores.models.put_blob(save_model(initial_model(board, players, TINY)))
    await stores.models.register_model(sha, board, players)
    await stores.models.set_alias("production", sha, term=1)
    return sha


async def until(predicate, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def test_configs_short_of_fresh_games_weigh_most_and_none_is_starved():
    value = allocation_weights([("square8", 2, 0), ("hex8", 2, 500), ("square19", 2, 999),
                                ("hex8", 3, 5000), ("square8", 2, 7)], threshold=1000)
    assert value == [["square8", 2, 11], ["hex8", 2, 6], ["square19", 2, 2], ["hex8", 3, 1]]
    # Weights move in ten steps of the threshold, not with every game.
    assert allocation_weights([("hex8", 2, 401)], 1000) == allocation_weights(
        [("hex8", 2, 499)], 1000) == [["hex8", 2, 7]]
    assert allocation_weights([], 1000) == []


def test_nodes_split_across_configs_in_proportion_to_the_weights():
    value = [["square8", 2, 3], ["hex8", 2, 1]]
    picks = Counter(pick_config(value, f"node-{i}") for i in range(4000))
    assert set(picks) == {("square8", 2), ("hex8", 2)}
    assert 0.70 < picks[("square8", 2)] / 4000 < 0.80
    # A node's pick is a function of the row and its id alone.
    assert all(pick_config(value, f"node-{i}") == pick_config(value, f"node-{i}")
               for i in range(50))
    # Moving a little weight moves only the nodes near the boundary.
    moved = [["square8", 2, 31], ["hex8", 2, 10]]
    changed = sum(pick_config(value, f"node-{i}") != pick_config(moved, f"node-{i}")
                  for i in range(4000))
    assert 0 < changed < 4000 * 0.05
    assert pick_config([["hex8", 4, 1]], "anyone") == ("hex8", 4)
    for malformed in (None, [], [["hex8", 4, 0]], "square8:2"):
        assert pick_config(malformed, "node-1") is None


async def test_the_leader_writes_the_allocation_when_it_changes_and_in_each_new_term(stores):
    pipe = LeaderPipeline(stores, _pipeline_settings([("square8", 2), ("hex8", 2)], 10),
                          "leader", CollectorRegistry(), progress=lambda line: None)
    assert await pipe.allocate(term=1) == [["square8", 2, 11], ["hex8", 2, 11]]
    first = await stores.models.setting(SELFPLAY_ALLOCATION)
    assert await pipe.allocate(term=1) == first["value"]
    assert await stores.models.setting(SELFPLAY_ALLOCATION) == first  # unchanged: no write
    await stores.games.add_games([_random_game("hex8", 2, seed) for seed in range(5)])
    assert await pipe.allocate(term=1) == [["square8", 2, 11], ["hex8", 2, 6]]
    assert (await stores.models.setting(SELFPLAY_ALLOCATION))["hlc"] > first["hlc"]
    await pipe.allocate(term=2)
    assert (await stores.models.setting(SELFPLAY_ALLOCATION))["term"] == 2


async def test_the_worker_follows_the_allocation_between_batches(stores):
    shas = {config: await _production(stores, *config) for config in (("square8", 2),
                                                                       ("hex8", 2))}
    metrics = SelfplayMetrics(CollectorRegistry())
    worker = SelfplayWorker(stores, _selfplay(), "cpu", metrics, node_id="node-a")
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    try:
        await until(lambda: worker.games_stored >= 1, "games of the local default")
        assert worker.config == ("square8", 2) and not worker.allocated
        await stores.models.set_setting(SELFPLAY_ALLOCATION, [["hex8", 2, 1]], term=1)
        await until(lambda: worker.config == ("hex8", 2), "the allocated config")
        assert worker.allocated and worker.production_sha == shas[("hex8", 2)]
        switched = worker.games_stored
        await until(lambda: worker.games_stored > switched, "games of the allocated config")
    finally:
        stop.set()
        await task
    for config, sha in shas.items():
        games = await stores.games.games_for(*config)
        assert games and {g["model_sha"] for g in games} == {sha}
    assert metrics.games.labels("hex8", "2")._value.get() >= 1
    # Without a node id (the one-off CLI batch) the local default is played, whatever the
    # allocation says.
    pinned = SelfplayWorker(stores, _selfplay(), "cpu", metrics)
    assert await pinned.assigned_config() == (("square8", 2), False)


async def test_training_and_the_leaders_own_games_hold_selfplay_off(stores):
    await _production(stores, "square8", 2)
    metrics = SelfplayMetrics(CollectorRegistry())
    sp = _selfplay()
    worker = SelfplayWorker(stores, sp, "cpu", metrics, node_id="node-a")
    guard = Guard({name: Limits() for name in ("disk", "ram", "gpu")},
                  lambda: {"disk": 0.5, "ram": 0.5, "gpu": None})
    announced: list[str] = []
    sched = IdleScheduler(worker, guard, sp, metrics, announced.append)
    held: list[tuple[str, str, int, int]] = []  # work, state, games before, games after

    @contextlib.asynccontextmanager
    async def hold(work: str):
        async with sched.holding(work):
            state, before = sched.state, await stores.games.count_games()
            yield
            held.append((work, state, before, await stores.games.count_games()))

    pipe = LeaderPipeline(stores, _pipeline_settings([("square8", 2)]), "node-a",
                          CollectorRegistry(), progress=lambda line: None, hold=hold)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: worker.games_stored >= 4, "the training threshold's games")
        # Training runs in the background of the rounds: round until both holds were seen.
        deadline = time.monotonic() + 120
        while not {"training", "evaluating"} <= {h[0] for h in held}:
            assert time.monotonic() < deadline, f"holds seen: {held}"
            await pipe.round("square8", 2, term=1)
        await until(lambda: sched.state == "selfplay", "selfplay resumed")
    finally:
        await _cancel(task)
    assert await stores.models.get_alias("candidate", "square8", 2) is not None
    assert {h[0] for h in held} == {"training", "evaluating"}
    for work, state, before, after in held:
        # Selfplay had stopped and announced the work before it began, and stored nothing
        # while it ran.
        assert state == work and before == after
    assert {"training", "evaluating"} <= set(announced)


async def test_holds_nest_with_assignments_and_selfplay_resumes_when_all_end(stores):
    await _production(stores, "square8", 2)
    metrics = SelfplayMetrics(CollectorRegistry())
    sp = _selfplay()
    guard = Guard({name: Limits() for name in ("disk", "ram", "gpu")},
                  lambda: {"disk": 0.5, "ram": 0.5, "gpu": None})
    sched = IdleScheduler(SelfplayWorker(stores, sp, "cpu", metrics), guard, sp, metrics,
                          lambda state: None)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: sched.state == "selfplay", "selfplay")
        async with sched.holding("training"):
            assert sched.state == "training"
            sched.assign("evaluating")  # an evaluation trial arrives meanwhile
            await until(lambda: sched.state == "evaluating", "the assignment's state")
            sched.release()
            await until(lambda: sched.state == "training", "training still held")
        await until(lambda: sched.state == "selfplay", "selfplay once both ended")
    finally:
        await _cancel(task)
