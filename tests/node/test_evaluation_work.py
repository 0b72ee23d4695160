"""Evaluation farmed out by assignment rows: nodes play their trials, lost ones move on."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from prometheus_client import CollectorRegistry

from node.evaluation_work import EvaluationWorker
from node.pipeline import LeaderPipeline
from storage.fencing import StaleTermError
from storage.merge import InvalidRow
from storage.rows import new_assignment, validate_registry
from storage.stores import open_stores
from tests.node.test_pipeline import BOARD, N, _clock, _game_args, _settings

SHA = "ab" * 32


@pytest.fixture
async def stores(tmp_path):
    s = await open_stores(tmp_path, _clock(), "leader-node")
    yield s
    await s.close()


def test_assignment_rows_are_validated():
    row = new_assignment("node-b", BOARD, N, SHA, "random", "e", 0, 1, 3, 1000, "leader-node")
    assert validate_registry(row).key == "j:node-b"
    for field, bad in (("trials", 0), ("trials", 65), ("match_kind", "x"), ("candidate", "zz"),
                       ("first_trial", -1)):
        with pytest.raises(InvalidRow):
            validate_registry({**row, field: bad})


async def test_a_deposed_leaders_assignment_is_refused_and_a_node_ignores_an_old_one(stores):
    await stores.models.assign("node-b", BOARD, N, SHA, "random", "e", 0, 1, term=3)
    stores.models.observe_term(4)
    with pytest.raises(StaleTermError):
        await stores.models.assign("node-b", BOARD, N, SHA, "random", "e", 1, 1, term=3)
    worker = EvaluationWorker(stores, "node-b", "cpu", 30, lambda _: None)
    assert not await worker.step()  # its assignment is from term 3, a newer leader exists


async def _pipeline_with_candidate(stores, alive: list[str], lines: list[str] | None = None
                                   ) -> LeaderPipeline:
    pipe = LeaderPipeline(stores, _settings(), "leader-node", CollectorRegistry(),
                          progress=(lines if lines is not None else []).append,
                          nodes=lambda: list(alive))
    await pipe.round(BOARD, N, term=1)
    await stores.games.add_games([_game_args(i) for i in range(4)])
    for _ in range(600):  # training runs in the background: rounds wait on it briefly
        await pipe.round(BOARD, N, term=1)
        if await stores.models.get_alias("candidate", BOARD, N) is not None:
            break
    assert await stores.models.get_alias("candidate", BOARD, N) is not None
    return pipe


async def test_nodes_play_their_assigned_trials_and_the_leader_decides(stores):
    alive = ["leader-node", "node-b", "node-c"]
    pipe = await _pipeline_with_candidate(stores, alive)
    workers = [EvaluationWorker(stores, node, "cpu", 30, lambda _: None) for node in alive]
    for _ in range(60):
        await pipe.round(BOARD, N, term=1)
        if await stores.models.promotion_events(BOARD, N):
            break
        for worker in workers:
            await worker.step()
    events = await stores.models.promotion_events(BOARD, N)
    assert len(events) == 1 and events[0]["decision"] in ("swap_production",
                                                          "retain_production")
    assert all(w.games_played > 0 for w in workers)  # the work was spread over every node


async def test_a_trial_on_a_node_that_vanished_is_assigned_again(stores):
    alive = ["node-b", "node-c"]
    lines: list[str] = []
    pipe = await _pipeline_with_candidate(stores, alive, lines)
    await pipe.round(BOARD, N, term=1)
    first = await stores.models.assignment("node-b")
    assert first is not None
    alive.remove("node-b")  # node-b is gone before playing anything
    c = EvaluationWorker(stores, "node-c", "cpu", 30, lambda _: None)
    await c.step()  # node-c plays what it was given
    await pipe.round(BOARD, N, term=1)
    again = await stores.models.assignment("node-c")
    assert (again["opponent"], again["first_trial"]) == (first["opponent"], first["first_trial"])
    assert any("lost on node-b" in line for line in lines)


async def test_a_failing_trial_is_logged_and_retried_without_ending_the_worker(stores, caplog):
    states: list[str] = []
    worker = EvaluationWorker(stores, "node-a", "cpu", 100, states.append)
    calls = 0
    done = asyncio.Event()

    async def step() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ValueError("model blob is not a model")  # what a corrupt production blob does
        done.set()
        return False

    worker.step = step  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(0.01))
    await asyncio.wait_for(done.wait(), 10)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert calls >= 2 and states[0] == "idle"
    assert "evaluation trial failed" in caplog.text
