"""Replays every game row this node holds through the rules engine, off the sync path.

A key holder can sync rows that are well-formed and say nothing true: moves that are not
RingRift moves, rankings the moves do not lead to. The merge cannot afford a replay (a
1,500-move hexagonal game takes the engine a good fraction of a second), so this loop does it
afterwards, a batch at a time in a worker thread, and records each verdict
(`storage.game_checks`). A game that fails is quarantined here: it stays in the replicated
set, so honest nodes keep equal roots, but training reads only games that passed
(`GameChecks.trainable`); each is counted (`ringrift_refused_total{scope="games",
reason="replay_illegal"}`) and status names the nodes it came from.
"""

from __future__ import annotations

import asyncio
import logging

from engine.records import check_finished
from node.disk import DiskWatch
from storage.database import DiskFullError
from storage.game_checks import GameChecks, Verdict
from storage.refusals import RefusalLedger
from storage.tables import GAMES

log = logging.getLogger("ringrift.replay")

# Games per worker-thread hop: small enough that a batch of long games ends within seconds.
BATCH = 16
# Seconds between looks for new games once all are checked.
IDLE_S = 2.0


def judge(key: str, version: bytes, record: tuple) -> Verdict:
    """The verdict on one stored game row: does it replay legally to its recorded result?"""
    origin = ""
    try:
        row = GAMES.to_wire(record)
        origin = str(row.get("origin_node", ""))
        check_finished(row["board_type"], row["num_players"], row["swap_rule"], row["moves"],
                       row["policy"], row["rankings"], row["winner"])
    except Exception as exc:  # noqa: BLE001 - untrusted moves may trip the engine anywhere;
        # whatever it raises, the record does not replay, and the checker must go on.
        return Verdict(key, version, False, origin, f"{type(exc).__name__}: {exc}")
    return Verdict(key, version, True, origin)


class ReplayChecker:
    def __init__(self, checks: GameChecks, disk: DiskWatch, ledger: RefusalLedger) -> None:
        self._checks = checks
        self._disk = disk
        self._ledger = ledger
        self.checked = 0

    async def run(self) -> None:
        """Check games as they arrive, until cancelled."""
        after = 0
        while True:
            await self._disk.wait_for_space()
            batch = await self._checks.unchecked(after, BATCH)
            if not batch:
                after = 0  # a replaced row may reuse a rowid below the cursor: look again
                await asyncio.sleep(IDLE_S)
                continue
            after = batch[-1][0]
            verdicts = await asyncio.to_thread(
                lambda: [judge(record[0], version, record) for _, version, record in batch])
            try:
                await self._checks.record(verdicts)
            except DiskFullError:
                continue  # checked again once there is space
            self.checked += len(verdicts)
            for v in verdicts:
                if not v.ok:
                    self._ledger.refuse("games", "replay_illegal",
                                        f"game {v.key} from {v.origin or '?'} quarantined: "
                                        f"{v.reason}")
