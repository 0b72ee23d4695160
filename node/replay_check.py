"""Replays every game row this node holds through the rules engine, off the sync path.

A key holder can sync rows that are well-formed and say nothing true: moves that are not
RingRift moves, rankings the moves do not lead to. The merge cannot afford a replay (a
1,500-move hexagonal game takes the engine a good fraction of a second), so this loop does it
afterwards and records each verdict (`storage.game_checks`). A game that fails is quarantined
here: it stays in the replicated set, so honest nodes keep equal roots, but training reads only
games that passed (`GameChecks.trainable`); each is counted (`ringrift_refused_total{scope=
"games", reason="replay_illegal"}`) and status names the nodes it came from.

The replays run in a child process of lower priority, never in the agent: a catch-up brings
games faster than one core replays them, and a replay thread in the agent held the interpreter
lock the sync path (serving, decoding, merging) needs. The child is spawned, not forked (a fork
of a process running asyncio and SQLite threads can deadlock), started with the first batch, and
restarted after a backoff when it dies. A batch that killed it is judged again one game at a
time; a game that alone kills it twice is quarantined (an engine that crashes on a record has
not seen it replay legally), so one poisoned row cannot stop the checker for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from engine.records import check_finished
from node.config import ReplaySection
from node.disk import DiskWatch
from storage.database import DiskFullError
from storage.game_checks import GameChecks, Verdict
from storage.refusals import RefusalLedger
from storage.tables import GAMES

log = logging.getLogger("ringrift.replay")


# A record to judge as it crosses to the worker: (row version, stored record).
Pending = tuple[bytes, tuple]
# A verdict as it comes back: (key, version, ok, origin, reason). Plain tuples, so the worker's
# answers are rebuilt into Verdicts here rather than trusted as pickled objects.
Judged = tuple[str, bytes, bool, str, str]
# A game whose replay alone killed the worker this many times is quarantined.
CRASHES_TO_QUARANTINE = 2
CRASH_REASON = "replay crashed the checker process"


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


def judge_batch(batch: list[Pending]) -> list[Judged]:
    """What the worker process runs: the verdict on each game of a batch."""
    out = []
    for version, record in batch:
        v = judge(record[0], version, record)
        out.append((v.key, v.version, v.ok, v.origin, v.reason))
    return out


def _lower_priority(nice: int, pid: int = 0) -> None:
    """Give process `pid` (0: this one) niceness `nice`: it yields the CPU to the agent (and
    selfplay) whenever they want it."""
    os.setpriority(os.PRIO_PROCESS, pid, nice)


def _processes(pool: ProcessPoolExecutor) -> list[multiprocessing.process.BaseProcess]:
    # The executor does not expose its processes; they are needed to lower their priority
    # before they import anything and to stop one mid-call.
    return list((getattr(pool, "_processes", None) or {}).values())


class ReplayChecker:
    """Owns the worker process; `run` checks games until cancelled and then ends the worker.

    `judge` is the function the worker runs on a batch (module-level, so the spawned process
    can import it); tests give one that crashes.
    """

    def __init__(self, checks: GameChecks, disk: DiskWatch, ledger: RefusalLedger,
                 settings: ReplaySection,
                 judge: Callable[[list[Pending]], list[Judged]] = judge_batch) -> None:
        self._checks = checks
        self._disk = disk
        self._ledger = ledger
        self._settings = settings
        self._judge = judge
        self._pool: ProcessPoolExecutor | None = None
        self._crashes_in_a_row = 0
        # Games of a batch that killed the worker, judged again one at a time.
        self._suspects: deque[tuple[int, bytes, tuple]] = deque()
        self._crashes_of: dict[tuple[str, bytes], int] = {}
        self.checked = 0
        self.worker_crashes = 0

    async def run(self) -> None:
        """Check games as they arrive, until cancelled; the worker ends with it."""
        try:
            while True:
                await self._disk.wait_for_space()
                if not await self.check_pending():
                    await asyncio.sleep(self._settings.idle_s)
        finally:
            self.close()

    async def check_pending(self) -> int:
        """Judge every game that has no verdict on its current row, in rowid order, until none
        is left (or the disk is full); returns the number of verdicts recorded."""
        after = recorded = 0
        while True:
            if self._suspects:
                batch = [self._suspects.popleft()]
            else:
                batch = await self._checks.unchecked(after, self._settings.batch)
                if not batch:
                    return recorded
                after = batch[-1][0]
            verdicts = await self._judged(batch)
            if verdicts is None:
                continue
            try:
                await self._checks.record(verdicts)
            except DiskFullError:
                return recorded  # checked again once there is space
            recorded += len(verdicts)
            self.checked += len(verdicts)
            for v in verdicts:
                if not v.ok:
                    self._ledger.refuse("games", "replay_illegal",
                                        f"game {v.key} from {v.origin or '?'} quarantined: "
                                        f"{v.reason}")

    async def _judged(self, batch: list[tuple[int, bytes, tuple]]) -> list[Verdict] | None:
        """The worker's verdicts on `batch`; None, after a backoff, when the worker died on it
        (the batch is then queued one game at a time) or could not be started."""
        pending = [(version, record) for _, version, record in batch]
        fresh = self._pool is None
        pool = self._worker()
        try:
            judged_later = asyncio.get_running_loop().run_in_executor(pool, self._judge, pending)
            if fresh:
                # The worker exists once a call was submitted. Lowered from here, at once: its
                # initializer runs only after the worker imported the agent's main module and
                # the engine, a second of CPU that would otherwise compete at full priority with
                # the catch-up that brought the games.
                for process in _processes(pool):
                    if process.pid is not None:
                        with contextlib.suppress(OSError):  # it may have died already
                            _lower_priority(self._settings.nice, process.pid)
            judged = await judged_later
        except BrokenProcessPool:
            return await self._worker_died(batch)
        except OSError as exc:
            # The worker could not be started (no memory, no process slots): not the games'
            # doing; they stay unchecked and are taken again on the next pass.
            log.warning("replay worker not started: %s", exc)
            await self._restart_later()
            return None
        self._crashes_in_a_row = 0
        return [Verdict(key, version, bool(ok), origin, reason)
                for key, version, ok, origin, reason in judged]

    async def _worker_died(self, batch: list[tuple[int, bytes, tuple]]
                           ) -> list[Verdict] | None:
        self.worker_crashes += 1
        log.warning("replay worker died judging %d game(s); restarting it", len(batch))
        await self._restart_later()
        if len(batch) > 1:
            self._suspects.extend(batch)
            return None
        _, version, record = batch[0]
        crashes = self._crashes_of.get((record[0], version), 0) + 1
        if crashes < CRASHES_TO_QUARANTINE:
            self._crashes_of[(record[0], version)] = crashes
            self._suspects.appendleft(batch[0])
            return None
        self._crashes_of.pop((record[0], version), None)
        try:
            origin = str(GAMES.to_wire(record).get("origin_node", ""))
        except Exception:  # noqa: BLE001 - a record that does not even decode has no origin
            origin = ""
        return [Verdict(record[0], version, False, origin, CRASH_REASON)]

    async def _restart_later(self) -> None:
        """Drop the worker and wait before the next is started: the backoff doubles with each
        failure in a row, so a worker that cannot live does not spin the node."""
        self.close()
        self._crashes_in_a_row += 1
        s = self._settings
        await asyncio.sleep(min(s.restart_max_s,
                                s.restart_s * 2 ** min(self._crashes_in_a_row - 1, 30)))

    def _worker(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                initializer=_lower_priority, initargs=(self._settings.nice,))
        return self._pool

    def close(self) -> None:
        """End the worker now; a batch it is judging is dropped (its games stay unchecked, and
        are judged after the next start)."""
        pool, self._pool = self._pool, None
        if pool is None:
            return
        # Without terminating it, the agent's exit would wait for the batch in hand (seconds of
        # long games) before it could end.
        workers = _processes(pool)
        pool.shutdown(wait=False, cancel_futures=True)
        for process in workers:
            process.terminate()
