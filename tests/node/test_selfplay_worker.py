"""Selfplay on a node: stored games replay legally on every config, the scheduler stops for
work and for the resource guard and resumes, a crash restarts, a bad model is refused."""

from __future__ import annotations

import asyncio
import types
import contextlib
import dataclasses
import time
from collections.abc import Callable

import pytest
import torch
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from engine.boards import BOARD_TYPES
from engine.net import Arch, initial_model, save_model
from engine.records import check_finished
from mesh.identity import Identity
from node.config import load_config
from node.local_games import PATH, add_route, signed_games
from node.ops_api import SIGNATURE_HEADER
from node.resources import Guard, Limits, check
from node.selfplay import IdleScheduler, SelfplayMetrics, SelfplayWorker, production_model
from storage.hlc import HybridClock
from storage.stores import open_stores

TINY = Arch(channels=4, blocks=1, value_hidden=4)


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


def settings(board: str = "square8", players: int = 2, **changes):
    base = dataclasses.replace(load_config().selfplay, board_type=board, num_players=players,
                               concurrency=1, guard_interval_s=0.05, restart_backoff_s=0.01)
    return dataclasses.replace(base, **changes)


async def _production(stores, board: str, players: int) -> str:
    sha = await stores.models.put_blob(save_model(initial_model(board, players, TINY)))
    await stores.models.register_model(sha, board, players)
    await stores.models.set_alias("production", sha, term=1)
    return sha


async def until(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.mark.parametrize("board", BOARD_TYPES)
@pytest.mark.parametrize("players", [2, 3, 4])
async def test_stored_selfplay_games_replay_legally_on_every_config(stores, board, players):
    small = board in ("square8", "hex8")
    sha = await _production(stores, board, players)
    search = ({"algorithm": "gumbel", "simulations": 2, "considered": 2} if small
              else {"algorithm": "policy"})
    worker = SelfplayWorker(stores, settings(board, players, **search), "cpu",
                            SelfplayMetrics(CollectorRegistry()))
    stop = asyncio.Event()
    task = asyncio.create_task(worker.run(stop))
    await until(lambda: worker.games_stored >= 1 or task.done(), "a stored game")
    stop.set()
    await task
    games = await stores.games.games_for(board, players)
    assert len(games) == worker.games_stored >= 1
    for game in games:
        assert game["model_sha"] == sha and game["source"] == "selfplay"
        assert game["search"]["algorithm"] == search["algorithm"]
        check_finished(board, players, game["swap_rule"], game["moves"], game["policy"],
                       game["rankings"], game["winner"])


async def _cancel(task: asyncio.Task) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


class Readings:
    def __init__(self) -> None:
        self.usage: dict[str, float | None] = {"disk": 0.5, "ram": 0.5, "gpu": None}

    def __call__(self) -> dict[str, float | None]:
        return dict(self.usage)


def scheduler(stores, worker=None, readings: Readings | None = None, **changes):
    metrics = SelfplayMetrics(CollectorRegistry())
    sp = settings(algorithm="policy", **changes)
    worker = worker or SelfplayWorker(stores, sp, "cpu", metrics)
    guard = Guard({name: Limits() for name in ("disk", "ram", "gpu")}, readings or Readings())
    announced: list[str] = []
    return IdleScheduler(worker, guard, sp, metrics, announced.append), announced


async def test_work_stops_selfplay_and_it_resumes_after(stores):
    await _production(stores, "square8", 2)
    sched, announced = scheduler(stores)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: sched.worker.games_stored >= 1, "games")
        sched.assign("training")
        await until(lambda: sched.state == "training", "the training state")
        stored = sched.worker.games_stored
        assert (await stores.games.count_games()) == stored  # nothing half-played stored
        sched.release()
        await until(lambda: sched.worker.games_stored > stored, "games after release")
        assert announced[:1] == ["selfplay"] and "training" in announced
        with sched.working("evaluating"):
            await until(lambda: sched.state == "evaluating", "the evaluating state")
        await until(lambda: sched.state == "selfplay", "selfplay again")
    finally:
        await _cancel(task)
    for game in await stores.games.games_for("square8", 2):
        check_finished("square8", 2, True, game["moves"], None, game["rankings"],
                       game["winner"])


async def test_the_resource_guard_stops_selfplay_at_its_limit_and_resumes_below(stores):
    await _production(stores, "square8", 2)
    readings = Readings()
    sched, announced = scheduler(stores, readings=readings)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: sched.state == "selfplay", "selfplay")
        readings.usage["disk"] = 0.85
        await until(lambda: sched.state == "idle", "the guard's stop")
        assert not sched.guard.last.ok and "disk 85%" in sched.guard.last.reason
        readings.usage["disk"] = 0.75  # above the warning, below the stop
        await until(lambda: sched.state == "selfplay", "selfplay resumed")
        assert sched.guard.last.warnings == ("disk 75% >= warn 70%",)
    finally:
        await _cancel(task)


async def test_a_full_disk_pauses_selfplay_and_space_coming_back_resumes_it(stores):
    await _production(stores, "square8", 2)
    sched, _announced = scheduler(stores)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: sched.state == "selfplay", "selfplay")
        stores.db.full = True  # what a write that found no space leaves (storage.database)
        await until(lambda: sched.state == "idle", "selfplay paused by the full disk")
        stored = await stores.games.count_games()
        stores.db.full = False  # what DiskWatch's check of space clears
        await until(lambda: sched.state == "selfplay", "selfplay resumed")
        await until(lambda: sched.worker.games_stored > stored, "games after the pause")
    finally:
        await _cancel(task)


def test_guard_verdicts_name_the_resource_and_limits_are_checked():
    limits = {name: Limits(0.7, 0.8) for name in ("disk", "ram", "gpu")}
    assert check({"disk": 0.1, "ram": 0.79, "gpu": None}, limits).warnings == (
        "ram 79% >= warn 70%",)
    verdict = check({"disk": 0.8, "ram": 0.9, "gpu": 0.95}, limits)
    assert not verdict.ok and verdict.reason.count(">= stop") == 3
    with pytest.raises(ValueError, match="warn 0.9"):
        Limits(0.9, 0.8)


class Crashing:
    """A worker that crashes its first two runs, then plays until stopped."""

    production_sha = None
    games_stored = 0
    # The scheduler asks the worker's stores whether the disk is full (it is not here).
    stores = types.SimpleNamespace(db=types.SimpleNamespace(full=False))

    def __init__(self) -> None:
        self.runs = 0

    async def run(self, stop: asyncio.Event) -> None:
        self.runs += 1
        if self.runs <= 2:
            raise RuntimeError("boom")
        await stop.wait()


async def test_a_crash_is_logged_and_the_worker_restarted_with_backoff(stores, caplog):
    worker = Crashing()
    sched, announced = scheduler(stores, worker=worker)
    task = asyncio.create_task(sched.run())
    try:
        await until(lambda: worker.runs == 3 and sched.state == "selfplay", "the third run")
        assert sched.restarts == 2
        assert caplog.text.count("selfplay crashed") == 2
        assert not task.done()
    finally:
        await _cancel(task)


async def test_a_corrupt_or_mismatched_production_blob_is_refused_for_the_previous_model(
        stores, caplog):
    wrong = save_model(initial_model("hex8", 2, TINY))  # a model of another config
    sha = await stores.models.put_blob(wrong)
    await stores.models.register_model(sha, "square8", 2)
    await stores.models.set_alias("production", sha, term=1)
    model, used = await production_model(stores, "square8", 2, sha, None)
    assert used != sha and model.info.board_type == "square8"  # the seeded model
    assert "not hex8 2p" not in caplog.text and "not square8 2p" in caplog.text
    previous = (initial_model("square8", 2, TINY), "f" * 64)
    assert await production_model(stores, "square8", 2, sha, previous) is previous
    stores.models.blob_path(sha).write_bytes(b"garbage")  # corrupt on disk
    assert await production_model(stores, "square8", 2, sha, previous) is previous


async def test_local_games_are_stored_only_when_signed_by_the_node_key(stores):
    identity = Identity.generate()
    app = web.Application()
    add_route(app, identity, stores.games, 30_000, lambda: time.time_ns() // 1_000_000)
    game = {"board_type": "square8", "num_players": 2, "moves": [b"\x00\x01\x00"],
            "rankings": [2, 1], "model_sha": None}
    async with TestClient(TestServer(app)) as client:
        body, sig = signed_games(identity, [game], time.time_ns() // 1_000_000)
        stranger = Identity.generate().sign(body).hex()
        assert (await client.post(PATH, data=body, headers={SIGNATURE_HEADER: stranger})
                ).status == 401
        ok = await client.post(PATH, data=body, headers={SIGNATURE_HEADER: sig})
        assert ok.status == 200 and (await ok.json())["stored"] == 1
        again = await client.post(PATH, data=body, headers={SIGNATURE_HEADER: sig})
        assert again.status == 409  # a replayed request
        bad, bad_sig = signed_games(identity, [{**game, "rankings": [3, 1]}],
                                    time.time_ns() // 1_000_000)
        assert (await client.post(PATH, data=bad, headers={SIGNATURE_HEADER: bad_sig})
                ).status == 400
    assert await stores.games.count_games("square8", 2) == 1



def test_the_device_parity_batch_is_fixed_and_reduced_precision_passes_the_tolerance():
    from engine.net import Evaluator
    from node.selfplay import PARITY_TOLERANCE, parity_batch

    states, legal = parity_batch("hex8", 3)
    again, _ = parity_batch("hex8", 3)
    assert [s.move_number for s in states] == [s.move_number for s in again]
    evaluator = Evaluator(initial_model("hex8", 3))
    # bfloat16 on the CPU stands in for float16 on CUDA: the check measures, and passes.
    assert 0.0 < evaluator.parity_error(states, legal, autocast=True) < PARITY_TOLERANCE
