"""Selfplay whenever idle: the worker that plays and stores games, and the idle scheduler.

`SelfplayWorker.run(stop)` plays one config's games with its production model (the registry's
`production` alias; the seeded initial model until there is one), `concurrency` games at a
time in batches on the device (engine.selfplay), and stores each finished game through the
games store, so it replicates like every other game row. It returns soon after `stop` is set
(one batch, well under a second), storing what finished and dropping what did not: a game
cut off by a stop is never stored. On CUDA it checks once that the device's policy matches
float32 on the CPU within `PARITY_TOLERANCE`, and plays on the CPU if it does not. Given its
node's id, the worker plays the config the leader's selfplay allocation gives the node
(node.allocation), looked at again every `model_check_s` with the production alias; without
one, the local default `[selfplay] board_type / num_players`.

`IdleScheduler.run()` runs the worker while the node holds no other assignment and the
resource guard allows it; an assignment (`assign("evaluating")`, `working("training")`) or a
limit reached stops it within a second, and it resumes once both clear; `holding(state)` also
waits for the running batch to stop, so the work has the device to itself. A crash is logged
and the worker restarted after a backoff that doubles up to a cap; it never takes the node
down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import torch
from prometheus_client import CollectorRegistry, Counter

from engine.net import Evaluator, Model, ModelBlobError, initial_model, load_model, save_model
from engine.moves import Move
from engine.rules import apply_move_in_place, legal_moves
from engine.search import SearchConfig
from engine.selfplay import PlayedGame, SelfplayRunner
from engine.state import GameState, initial_state
from node.allocation import pick_config
from node.config import SelfplaySection
from node.resources import Guard
from storage.blobs import BlobCorruptError, BlobMissingError
from storage.database import DiskFullError
from storage.merge import InvalidRow
from storage.rows import MAX_MOVES, SELFPLAY_ALLOCATION
from storage.stores import Stores

log = logging.getLogger("ringrift.selfplay")

STATES = ("idle", "selfplay", "training", "evaluating")
PARITY_TOLERANCE = 0.02  # priors and values, float16 autocast against float32
STORE_EVERY_S = 1.0  # finished games wait at most this long for their transaction
# A stop takes one batch step (well under a second); past this the held work starts anyway
# rather than wait on a worker that is stuck.
STOP_WAIT_S = 10.0


def search_config(settings: SelfplaySection) -> SearchConfig:
    return SearchConfig(settings.algorithm, settings.simulations, considered=settings.considered)


class SelfplayMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.games = Counter("ringrift_selfplay_games_total", "Selfplay games stored",
                             ["board_type", "num_players"], registry=registry)
        self.moves = Counter("ringrift_selfplay_moves_total",
                             "Moves of stored selfplay games", registry=registry)
        self.positions = Counter("ringrift_selfplay_positions_evaluated_total",
                                 "Positions the selfplay network evaluated", registry=registry)
        self.discarded = Counter("ringrift_selfplay_games_discarded_total",
                                 "Selfplay games not stored (cut off by a stop, over the move "
                                 "cap, or refused by the store)", registry=registry)
        self.restarts = Counter("ringrift_selfplay_restarts_total",
                                "Selfplay worker crashes (each restarted after a backoff)",
                                registry=registry)


async def production_alias(stores: Stores, board: str, n: int) -> str | None:
    alias = await stores.models.get_alias("production", board, n)
    return None if alias is None else alias["sha256"]


async def production_model(stores: Stores, board: str, n: int, sha: str | None,
                           current: tuple[Model, str] | None) -> tuple[Model, str]:
    """The model `sha` (the production alias of the config) and its sha. A blob that is
    missing, corrupt or not a model of this config is refused (logged) and `current` kept;
    with no usable model at all, the seeded initial model (registered, so the games'
    model_sha names a held blob)."""
    if sha is not None:
        if current is not None and current[1] == sha:
            return current
        try:
            blob = await stores.models.get_blob(sha)
            return await asyncio.to_thread(load_model, blob, board, n), sha
        except (BlobMissingError, BlobCorruptError, ModelBlobError) as exc:
            log.warning("production model %s of %s %dp not usable (%s); keeping %s", sha[:12],
                        board, n, exc, "the previous model" if current else "the seeded one")
    if current is not None:
        return current
    model = initial_model(board, n)
    sha = await stores.models.put_blob(save_model(model))
    await stores.models.register_model(sha, board, n)
    return model, sha


def parity_batch(board: str, n: int, size: int = 16) -> tuple[list[GameState], list[list[Move]]]:
    """A fixed batch of positions (a seeded random game's) for the device parity check."""
    rng = random.Random(0)
    state = initial_state(board, n)
    states = []
    while len(states) < size:
        if state.status != "active":
            state = initial_state(board, n)
        states.append(state.copy())
        apply_move_in_place(state, rng.choice(legal_moves(state)))
    return states, [legal_moves(s) for s in states]


def choose_device(model: Model, device: str) -> Evaluator:
    """An evaluator on `device`; on CUDA only if its policy passes the parity check."""
    evaluator = Evaluator(model, device)
    if device == "cpu":
        return evaluator
    error = evaluator.parity_error(*parity_batch(model.info.board_type, model.info.num_players))
    if error > PARITY_TOLERANCE:
        log.error("%s policy differs from the CPU's by %.4f (> %.2f): selfplay on the cpu",
                  device, error, PARITY_TOLERANCE)
        return Evaluator(model, "cpu")
    log.info("%s policy matches the cpu within %.4f", device, error)
    return evaluator


class SelfplayWorker:
    def __init__(self, stores: Stores, settings: SelfplaySection, device: str,
                 metrics: SelfplayMetrics, node_id: str | None = None) -> None:
        self.stores = stores
        self.settings = settings
        self.device = device
        self.metrics = metrics
        self.node_id = node_id  # None: the local default config, whatever the allocation says
        self.config = (settings.board_type, settings.num_players)
        self.allocated = False  # the config comes from the leader's allocation
        self.model: tuple[Model, str] | None = None
        self.games_stored = 0
        self._evaluator: Evaluator | None = None
        self._alias: str | None = None  # the production alias as last looked up

    @property
    def production_sha(self) -> str | None:
        return self.model[1] if self.model else None

    async def assigned_config(self) -> tuple[tuple[str, int], bool]:
        """The config this node should play and whether the leader's allocation named it."""
        s = self.settings
        if self.node_id is not None:
            row = await self.stores.models.setting(SELFPLAY_ALLOCATION)
            picked = None if row is None else pick_config(row["value"], self.node_id)
            if picked is not None:
                return picked, True
        return (s.board_type, s.num_players), False

    async def run(self, stop: asyncio.Event) -> None:
        """Play and store games until `stop` is set. The allocation and the production model
        are looked up again every `model_check_s`; a new config or model replaces the old
        (the old one's unfinished games are dropped)."""
        s = self.settings
        if s.torch_threads > 0:
            torch.set_num_threads(s.torch_threads)
        while not stop.is_set():
            config, self.allocated = await self.assigned_config()
            previous = self.model
            if config != self.config:
                log.info("selfplay switches from %s %dp to %s %dp (%s)", *self.config, *config,
                         "the leader's allocation" if self.allocated else "the local default")
                previous = None  # another config's model is no fallback
            board, n = config
            alias = await production_alias(self.stores, board, n)
            model = await production_model(self.stores, board, n, alias, previous)
            # The config and its model change together: nothing (the status page, a test)
            # sees the new config with no model while the model loads.
            self.config, self._alias, self.model = config, alias, model
            if self._evaluator is None or previous is None or previous[1] != self.model[1]:
                self._evaluator = await asyncio.to_thread(choose_device, self.model[0],
                                                          self.device)
                log.info("selfplay %s %dp on %s with model %s (%s)", board, n,
                         self._evaluator.device, self.model[1][:12],
                         search_config(s).settings())
            await self._play(stop)

    async def _play(self, stop: asyncio.Event) -> None:
        """Play with the current model until `stop`, a new production model or a new config."""
        assert self._evaluator is not None and self.model is not None
        s = self.settings
        board, n = self.config
        runner = SelfplayRunner(self._evaluator.evaluate, board, n,
                                search_config(s), concurrency=s.concurrency,
                                seed=random.getrandbits(63), max_moves=MAX_MOVES)
        pending: list[PlayedGame] = []
        flushed = checked = time.monotonic()
        positions = 0
        try:
            while not stop.is_set():
                pending += await asyncio.to_thread(runner.step)
                self.metrics.positions.inc(runner.counters.positions - positions)
                positions = runner.counters.positions
                now = time.monotonic()
                if pending and now - flushed >= STORE_EVERY_S:
                    await self._store(pending)
                    pending = []
                    flushed = now
                if now - checked >= s.model_check_s:
                    checked = now
                    # A new alias, even one whose blob turns out unusable, is looked at once.
                    if (await production_alias(self.stores, board, n) != self._alias
                            or (await self.assigned_config())[0] != self.config):
                        return
        finally:
            # Finished games are stored even when the stop came; cut-off ones never are.
            if pending:
                await self._store(pending)
            self.metrics.discarded.inc(runner.unfinished + runner.counters.discarded)

    async def _store(self, games: list[PlayedGame]) -> None:
        assert self.model is not None
        rows = [{**g.row_fields(), "model_sha": self.model[1]} for g in games]
        try:
            await self.stores.games.add_games(rows)
        except (InvalidRow, DiskFullError) as exc:
            log.warning("%d selfplay games not stored: %s", len(games), exc)
            self.metrics.discarded.inc(len(games))
            return
        self.games_stored += len(games)
        board, n = self.config
        self.metrics.games.labels(board, str(n)).inc(len(games))
        self.metrics.moves.inc(sum(len(g.moves) for g in games))


class IdleScheduler:
    """Runs the selfplay worker whenever the node is idle and the guard allows it."""

    def __init__(self, worker: SelfplayWorker, guard: Guard, settings: SelfplaySection,
                 metrics: SelfplayMetrics, announce: Callable[[str], None]) -> None:
        self.worker = worker
        self.guard = guard
        self.settings = settings
        self.metrics = metrics
        self._announce = announce
        self._assignment: str | None = None
        self._holds: list[str] = []  # working() blocks under way, newest last
        self._changed = asyncio.Event()
        self._stopped = asyncio.Event()  # set while the worker is not running
        self._stopped.set()
        self.state = "idle"
        self.restarts = 0

    def _set_state(self, state: str) -> None:
        # The announced state is also ringrift_node_state (node.metrics_reference).
        self.state = state
        self._announce(state)

    def assign(self, state: str) -> None:
        """Other work for this node (training, evaluating): selfplay stops within a second."""
        if state not in STATES or state in ("idle", "selfplay"):
            raise ValueError(f"assignment {state!r} is not training or evaluating")
        self._assignment = state
        self._changed.set()

    def release(self) -> None:
        self._assignment = None
        self._changed.set()

    @contextlib.contextmanager
    def working(self, state: str) -> Iterator[None]:
        """`with scheduler.working("training"):` holds selfplay off for the block. Blocks
        nest and overlap assignments: selfplay resumes once none is left."""
        if state not in STATES or state in ("idle", "selfplay"):
            raise ValueError(f"work {state!r} is not training or evaluating")
        self._holds.append(state)
        self._changed.set()
        try:
            yield
        finally:
            self._holds.remove(state)
            self._changed.set()

    @contextlib.asynccontextmanager
    async def holding(self, state: str) -> AsyncIterator[None]:
        """`working(state)` whose block starts once the running batch has stopped."""
        with self.working(state):
            try:
                await asyncio.wait_for(self._stopped.wait(), STOP_WAIT_S)
            except TimeoutError:
                log.warning("selfplay still running %.0f s after %s began", STOP_WAIT_S, state)
            yield

    def _work(self) -> str | None:
        """The work holding selfplay off: the assignment, else the newest working() block."""
        return self._assignment or (self._holds[-1] if self._holds else None)

    async def _wait_change(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)
        self._changed.clear()

    def _may_play(self) -> bool:
        if self._work() is not None:
            return False
        if self.worker.stores.db.full:
            return False  # a full disk pauses selfplay until space is back (node/disk.py)
        verdict = self.guard.verdict()
        if not verdict.ok:
            log.info("selfplay held off by the resource guard: %s", verdict.reason)
        return verdict.ok

    async def run(self) -> None:
        s = self.settings
        backoff = s.restart_backoff_s
        while True:
            if not self._may_play():
                self._set_state(self._work() or "idle")
                await self._wait_change(s.guard_interval_s)
                continue
            self._set_state("selfplay")
            try:
                await self._play_while_allowed()
                backoff = s.restart_backoff_s
            except Exception:  # a crash must not take the node down: log, back off, retry
                self.restarts += 1
                self.metrics.restarts.inc()
                log.exception("selfplay crashed; restarting in %.1f s", backoff)
                self._set_state(self._work() or "idle")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, s.restart_backoff_max_s)

    async def _play_while_allowed(self) -> None:
        stop = asyncio.Event()

        async def watch() -> None:
            while not stop.is_set():
                await self._wait_change(self.settings.guard_interval_s)
                if not self._may_play():
                    stop.set()

        watcher = asyncio.create_task(watch())
        self._stopped.clear()
        try:
            await self.worker.run(stop)
        finally:
            stop.set()
            watcher.cancel()
            try:
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            finally:
                # Last, with no await until run() announces the work: a holder woken by it
                # finds the work's state already announced.
                self._stopped.set()

    def view(self) -> dict[str, Any]:
        s = self.settings
        board, n = self.worker.config
        return {"state": self.state, "board_type": board, "num_players": n,
                "allocated": self.worker.allocated, "search": search_config(s).settings(),
                "production_model": self.worker.production_sha,
                "games_stored": self.worker.games_stored, "restarts": self.restarts}
