"""The leader pipeline on real stores: bootstrap, train, evaluate, decide, fence, roll back."""

from __future__ import annotations

import dataclasses
import random
import time

import pytest
from prometheus_client import CollectorRegistry

from engine.evaluation import HEURISTIC as HEURISTIC_ID
from engine.evaluation import RANDOM as RANDOM_ID
from engine.evaluation import WATCH, match_id
from engine.net import initial_model, save_model
from engine.players import RandomPlayer, play_game
from engine.promotion import PromotionCriteria
from engine.ratings import ratings
from engine.records import encode_move
from engine.state import initial_state
from engine.training import TrainingSettings
from node.config import load_config
from node.pipeline import LeaderPipeline, PipelineSettings
from storage.fencing import StaleTermError
from storage.hlc import HybridClock
from storage.rows import new_match
from storage.stores import open_stores

BOARD, N = "square8", 2
# Tiny gates so a test decides within a few trials; the real ones are in config/node.toml.
CRITERIA = PromotionCriteria(min_games_played=2, sprt_min_games=2, sprt_max_games=4,
                             min_elo_improvement=-1000.0, min_win_rate=0.0, random_gate=0.0,
                             heuristic_gate=0.0, max_value_mse_degradation=10.0)


def _settings(threshold: int = 4, watch_games: int = 4) -> PipelineSettings:
    return PipelineSettings(((BOARD, N),), threshold, 100, TrainingSettings(steps=2, batch_size=8),
                            0, 0.05, watch_games, 30, CRITERIA)


def _clock() -> HybridClock:
    return HybridClock(lambda: time.time_ns() // 1_000_000, 60_000)


def _game_args(seed: int) -> dict:
    final, history = play_game(initial_state(BOARD, N), [RandomPlayer()] * N, random.Random(seed))
    return {"board_type": BOARD, "num_players": N, "moves": [encode_move(m) for m in history],
            "rankings": list(final.ranks)}


@pytest.fixture
async def stores(tmp_path):
    s = await open_stores(tmp_path, _clock(), "leader-node")
    yield s
    await s.close()


def test_node_toml_promotion_defaults_are_the_controllers():
    promo = load_config().promotion
    assert PromotionCriteria(**dataclasses.asdict(promo)) == PromotionCriteria()


async def test_the_loop_trains_evaluates_and_records_a_decision_with_its_reasons(stores):
    lines: list[str] = []
    pipe = LeaderPipeline(stores, _settings(), "leader-node", CollectorRegistry(),
                          progress=lines.append)
    assert await pipe.round(BOARD, N, term=1)  # bootstraps production
    production = (await stores.models.get_alias("production", BOARD, N))["sha256"]
    await stores.games.add_games([_game_args(i) for i in range(4)])
    for _ in range(600):  # training runs in the background: rounds wait on it briefly
        await pipe.round(BOARD, N, term=1)
        if await stores.models.promotion_events(BOARD, N):
            break
    events = await stores.models.promotion_events(BOARD, N)
    assert len(events) == 1
    event = events[0]
    assert event["decision"] in ("swap_production", "retain_production")
    assert event["reason"] and event["term"] == 1 and event["reorder_applied"] is False
    candidate = (await stores.models.get_alias("candidate", BOARD, N))["sha256"]
    model_row = await stores.models.get_model(candidate)
    assert model_row["parent"] == production
    now = (await stores.models.get_alias("production", BOARD, N))["sha256"]
    assert now == (candidate if event["decision"] == "swap_production" else production)
    matches = await stores.matches.all_matches(BOARD, N)
    assert {m["match_id"].split(":")[0] for m in matches} == {"e"}
    assert any("training" in line for line in lines)
    assert any("SPRT" in line for line in lines)


async def test_a_stale_term_leaders_promotion_is_refused_by_storage(stores):
    pipe = LeaderPipeline(stores, _settings(), "leader-node", CollectorRegistry(),
                          progress=lambda _: None)
    await pipe.round(BOARD, N, term=1)
    await stores.games.add_games([_game_args(i) for i in range(4)])
    await pipe.round(BOARD, N, term=1)  # starts training, in term 1
    stores.models.observe_term(2)  # a newer leader exists
    with pytest.raises(StaleTermError):
        for _ in range(600):
            await pipe.round(BOARD, N, term=1)
    assert await stores.models.promotion_events(BOARD, N) == []


async def _watched_promotion(stores, evaluation_wins: int = 0) -> tuple[LeaderPipeline, str, str]:
    """A pipeline whose production was just swapped from the seeded model (`old`) to `new`,
    after `new` beat `old` in `evaluation_wins` evaluation games; the watch comes next."""
    pipe = LeaderPipeline(stores, _settings(threshold=10_000, watch_games=100), "leader-node",
                          CollectorRegistry(), progress=lambda _: None)
    await pipe.round(BOARD, N, term=1)
    old = (await stores.models.get_alias("production", BOARD, N))["sha256"]
    new = await stores.models.put_blob(save_model(initial_model(BOARD, N, seed=1)))
    await stores.models.register_model(new, BOARD, N, parent=old)
    for i in range(evaluation_wins):
        await stores.matches.record_match(f"eval-{i}", [new, old], BOARD, N, [1.0, 0.0])
    await stores.models.append_promotion_event(BOARD, N, new, old, "swap_production", False,
                                               100, 0.6, 40.0, 1, "test")
    await stores.models.set_alias("previous", old, 1)
    await stores.models.set_alias("production", new, 1)
    return pipe, old, new


async def test_a_promoted_model_that_loses_every_watch_game_is_rolled_back(stores):
    pipe, old, new = await _watched_promotion(stores)
    # After the promotion the new model loses every game to its predecessor.
    for trial in range(15):
        for game, seats in enumerate(((new, old), (old, new))):
            result = [0.0, 1.0] if seats[0] == new else [1.0, 0.0]
            await stores.matches.record_match(match_id(new, old, 100 + trial, game, WATCH),
                                              list(seats), BOARD, N, result)
    for _ in range(5):
        await pipe.round(BOARD, N, term=1)
        if (await stores.models.get_alias("production", BOARD, N))["sha256"] == old:
            break
    assert (await stores.models.get_alias("production", BOARD, N))["sha256"] == old
    rollback = [e for e in await stores.models.promotion_events(BOARD, N)
                if e["decision"] == "rollback"]
    assert len(rollback) == 1
    assert rollback[0]["candidate"] == old and rollback[0]["incumbent"] == new
    assert "win rate" in rollback[0]["reason"] or "Elo change" in rollback[0]["reason"]


async def test_two_stores_fed_the_same_match_rows_in_different_orders_rate_identically(tmp_path):
    rnd = random.Random(4)
    rows = []
    for i in range(300):
        n = rnd.choice([2, 2, 3, 4])
        who = rnd.sample(["m1", "m2", "m3", "m4", RANDOM_ID, HEURISTIC_ID], n)
        rows.append(new_match(f"x{i}", who, BOARD, n, [rnd.choice([0.0, 0.5, 1.0])
                                                         for _ in range(n)], 1000 + i, "peer"))
    a = await open_stores(tmp_path / "a", _clock(), "node-a")
    b = await open_stores(tmp_path / "b", _clock(), "node-b")
    try:
        await a.matches.merge(rows)
        shuffled = rows[:]
        rnd.shuffle(shuffled)
        for i in range(0, len(shuffled), 7):
            await b.matches.merge(shuffled[i:i + 7])
        ra = ratings(await a.matches.all_matches())
        rb = ratings(await b.matches.all_matches())
        assert ra.participants == rb.participants
        assert ra.elo.tobytes() == rb.elo.tobytes()
    finally:
        await a.close()
        await b.close()


@pytest.mark.slow
async def test_training_across_two_processes_with_torchrun_makes_the_candidate(stores):
    settings = dataclasses.replace(_settings(), training_processes=2)
    pipe = LeaderPipeline(stores, settings, "leader-node", CollectorRegistry(),
                          progress=lambda _: None)
    await pipe.round(BOARD, N, term=1)
    production = (await stores.models.get_alias("production", BOARD, N))["sha256"]
    await stores.games.add_games([_game_args(i) for i in range(4)])
    assert await pipe.round(BOARD, N, term=1)
    candidate = await stores.models.get_alias("candidate", BOARD, N)
    assert candidate is not None
    assert (await stores.models.get_model(candidate["sha256"]))["parent"] == production




async def test_a_promoted_model_is_judged_against_the_model_it_replaced_not_the_whole_pool(stores):
    pipe, old, new = await _watched_promotion(stores, evaluation_wins=10)
    for trial in range(15):  # the promoted model wins every watch game against its predecessor
        for game, seats in enumerate(((new, old), (old, new))):
            result = [1.0, 0.0] if seats[0] == new else [0.0, 1.0]
            await stores.matches.record_match(match_id(new, old, 100 + trial, game, WATCH),
                                              list(seats), BOARD, N, result)
    # Meanwhile a stronger next candidate beats it (its own evaluation): that moves the promoted
    # model's place in the pool, not its standing against the model it replaced.
    for i in range(60):
        await stores.matches.record_match(f"next-{i}", ["next-candidate", new], BOARD, N,
                                          [1.0, 0.0])
    for _ in range(5):
        await pipe.round(BOARD, N, term=1)
    assert (await stores.models.get_alias("production", BOARD, N))["sha256"] == new
    assert not [e for e in await stores.models.promotion_events(BOARD, N)
                if e["decision"] == "rollback"]
