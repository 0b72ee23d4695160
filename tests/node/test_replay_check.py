"""The replay checker judges games in a child process and survives that process dying.

The judges below run in the spawned worker, so they are module-level (the worker imports them
from here). One kills the worker on a "poison" game every time, the other kills it once (as an
OOM kill would) whichever games it holds; either way every other game gets the verdict the
engine gives it, and the checker goes on.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from node.config import ReplaySection
from node.disk import DiskWatch
from node.replay_check import CRASH_REASON, Judged, Pending, ReplayChecker, judge_batch
from storage.game_checks import GameChecks
from storage.refusals import RefusalLedger
from storage.rows import new_game
from storage.tables import GAMES
from tests.storage.test_storage_admission import NOW_MS, open_node, random_game, stamp

POISON = "poison"
# Where the crash-once judge leaves its mark (inherited by the spawned worker).
MARK_ENV = "REPLAY_TEST_CRASHED_MARK"


def judge_dying_on_poison(batch: list[Pending]) -> list[Judged]:
    if any(GAMES.to_wire(record).get("origin_node") == POISON for _, record in batch):
        os._exit(3)
    return judge_batch(batch)


def judge_dying_once(batch: list[Pending]) -> list[Judged]:
    mark = Path(os.environ[MARK_ENV])
    if not mark.exists():
        mark.touch()
        os._exit(3)
    return judge_batch(batch)


SETTINGS = ReplaySection(batch=4, idle_s=0.1, nice=0, restart_s=0.01, restart_max_s=0.05)


async def _stored_games(stores) -> dict[str, str]:  # noqa: ANN001 - a Stores
    """Merge legal, lying and garbage games and one poison game; game_id -> origin."""
    rows = []
    for seed in range(5):
        moves, ranks = random_game(seed)
        rows.append(new_game("square8", 2, moves, ranks, stamp(NOW_MS), f"good{seed}"))
    moves, ranks = random_game(9)
    rows.append(new_game("square8", 2, moves, ranks[::-1], stamp(NOW_MS), "liar"))
    rows.append(new_game("square8", 2, [b"\x00\x01\x02" * 300], [1, 2], stamp(NOW_MS), "evil"))
    moves, ranks = random_game(11)
    rows.append(new_game("square8", 2, moves, ranks, stamp(NOW_MS), POISON))
    await stores.games.merge(rows)
    return {r["game_id"]: r["origin_node"] for r in rows}


async def _verdicts(stores) -> dict[str, tuple[bool, str]]:  # noqa: ANN001
    rows = await stores.db.fetchall("SELECT key, ok, reason FROM game_checks")
    return {key: (bool(ok), reason) for key, ok, reason in rows}


async def test_a_game_that_kills_the_replay_worker_is_quarantined_and_the_rest_judged_as_usual(
        tmp_path: Path) -> None:
    stores = await open_node(tmp_path)
    origins = await _stored_games(stores)
    ledger = RefusalLedger(logging.getLogger("test"))
    checker = ReplayChecker(GameChecks(stores.db), DiskWatch(stores.db, 1.0), ledger, SETTINGS,
                            judge=judge_dying_on_poison)
    try:
        assert await checker.check_pending() == len(origins)
    finally:
        checker.close()
    verdicts = await _verdicts(stores)
    assert set(verdicts) == set(origins)
    for key, origin in origins.items():
        ok, reason = verdicts[key]
        if origin == POISON:
            assert (ok, reason) == (False, CRASH_REASON)
        else:
            assert ok == origin.startswith("good"), (origin, reason)
    # Its batch died with it, then the poison game alone, twice: three deaths, three restarts.
    assert checker.worker_crashes == 3
    assert ledger.total("games", "replay_illegal") == 3
    assert await GameChecks(stores.db).quarantined() == (3, {"evil": 1, "liar": 1, POISON: 1})
    await stores.close()


async def test_a_worker_killed_once_is_restarted_and_every_verdict_is_the_engines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MARK_ENV, str(tmp_path / "crashed"))
    stores = await open_node(tmp_path / "db")
    origins = await _stored_games(stores)
    checker = ReplayChecker(GameChecks(stores.db), DiskWatch(stores.db, 1.0),
                            RefusalLedger(logging.getLogger("test")), SETTINGS,
                            judge=judge_dying_once)
    try:
        assert await checker.check_pending() == len(origins)
        assert await checker.check_pending() == 0  # nothing judged twice
    finally:
        checker.close()
    assert checker.worker_crashes == 1
    verdicts = await _verdicts(stores)
    assert {key: ok for key, (ok, _) in verdicts.items()} == {
        key: origin.startswith("good") or origin == POISON for key, origin in origins.items()}
    await stores.close()
