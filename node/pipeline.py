"""The leader's loop: TRAINING -> EVALUATION -> PROMOTION, then the regression watch and ROLLBACK.

One duty (`LeaderPipeline.duty(term)`) runs while this node leads. Each round, per config:

1. No production model yet: the seeded initial model (identical on every node) becomes it.
2. A candidate under evaluation: play one trial against each opponent that still needs games
   (production for the SPRT, the random and heuristic players for the gates), store every game
   as an Elo match row, and ask the PromotionController. A final decision is recorded as a
   promotion event and its alias moves are written, all with this term as the fencing token.
3. Otherwise, with at least `training_game_threshold` new games since the last run: train a
   candidate from production on the newest `training_window_games` games (in a worker thread)
   and register it with its parent; the `candidate` alias names it.
4. Otherwise, a model promoted by this pipeline is watched: it plays its predecessor, its pooled
   rating is compared with the one it had when promoted, and RegressionDetector and
   RollbackMonitor decide; a rollback moves production back and pauses training of the config
   until new games arrive.

Everything the loop knows is rebuilt from the stores when a node becomes leader: the SPRT from
the match rows (their ids name candidate, opponent, trial and game; trials count in index
order, the order they were dispatched), decisions from promotion events, the training mark
from the newest model's metadata. So a new leader picks up a half-played evaluation where the
old one left it, and the match rows of games played anywhere count.

Distribution needs nothing here: the production alias is a leader-written, term-fenced row that
syncs like any other, and every node's anti-entropy pulls the blobs the registry names.

Every `interval_s` the duty also writes the selfplay allocation (node.allocation: configs short
of fresh games weigh most), a term-fenced setting row, when its value or the term changed.
Training and the games this node plays itself run inside `hold("training")` /
`hold("evaluating")`, which the agent points at its idle scheduler: selfplay stops for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import msgpack
from prometheus_client import CollectorRegistry, Counter

from engine.evaluation import (
    EVALUATION,
    HEURISTIC,
    RANDOM,
    WATCH,
    parse_match_id,
    trial_scores,
)
from engine.net import Model, initial_model, load_model, save_model
from engine.promotion import (
    Decision,
    Evidence,
    PromotionController,
    PromotionCriteria,
    PromotionDecision,
    PromotionType,
    head_to_head,
)
from engine.ratings import ratings
from engine.regression import RegressionDetector, RollbackMonitor
from engine.sprt import PairedSprt, Verdict
from engine.training import TrainingResult, TrainingSettings, train
from node.allocation import allocation_weights
from node.evaluation_work import ModelCache, play_and_record
from storage.fencing import StaleTermError
from storage.rows import SELFPLAY_ALLOCATION
from storage.stores import Stores

log = logging.getLogger("ringrift.pipeline")

Progress = Callable[[str], None]
# Work this node does for the pipeline ("training", "evaluating") runs inside hold(work).
Hold = Callable[[str], AbstractAsyncContextManager[None]]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    configs: tuple[tuple[str, int], ...]
    training_game_threshold: int
    training_window_games: int
    training: TrainingSettings
    training_processes: int  # 0: a thread here, 1: a child process, more: DDP via torchrun
    interval_s: float
    watch_games: int
    max_game_moves: int
    criteria: PromotionCriteria
    assignment_timeout_s: float = 120.0


@dataclass(slots=True)
class _Test:
    """What the match rows say about one candidate: its SPRT and its gate scores."""

    sprt: PairedSprt | None
    gates: dict[str, tuple[float, int]] = field(default_factory=dict)
    next_trial: dict[str, int] = field(default_factory=dict)
    done: dict[str, set[int]] = field(default_factory=dict)  # complete trials by opponent


class LeaderPipeline:
    def __init__(self, stores: Stores, settings: PipelineSettings, node_id: str,
                 registry: CollectorRegistry, device: str = "cpu",
                 progress: Progress | None = None, metrics: Any = None,
                 nodes: Callable[[], list[str]] | None = None,
                 pool: Executor | None = None, hold: Hold | None = None) -> None:
        self._stores = stores
        self._hold = hold or (lambda work: contextlib.nullcontext())
        self._allocated_at = -math.inf  # monotonic time of the last allocation look
        self.settings = settings
        self._node_id = node_id
        self._device = device
        self._progress = progress or (lambda line: log.info("%s", line))
        self._metrics = metrics  # node.metrics_reference.ReferenceMetrics, when monitoring runs
        self._models = ModelCache(stores)
        self._nodes = nodes
        self._last_line = ""
        # config: (training task, parent sha, when it started); see _maybe_train
        self._training: dict[tuple[str, int], tuple[asyncio.Task[TrainingResult], str,
                                                    float]] = {}
        self._pool = pool  # where watch games run: a process pool keeps them off the mesh
        # node: (candidate, opponent, trial, when assigned)
        self._assigned: dict[str, tuple[str, str, int, float]] = {}
        self._tests: dict[str, _Test] = {}
        self._evidence: dict[tuple[str, str | None], Evidence] = {}
        self.controller = PromotionController(self._evidence_for, settings.criteria)
        self.detector = RegressionDetector()
        self.monitor = RollbackMonitor()
        self._marks: dict[tuple[str, int], int] = {}  # newest game hlc trained on, per config
        self._m_rejected = Counter("ringrift_training_games_rejected_total",
                                   "Games skipped by training because they do not replay legally",
                                   registry=registry)
        self._m_runs = Counter("ringrift_training_runs_total", "Training runs finished",
                               registry=registry)
        self._m_games = Counter("ringrift_evaluation_games_total",
                                "Evaluation and watch games played by this leader",
                                registry=registry)

    # --- the duty -----------------------------------------------------------------------

    async def duty(self, term: int) -> None:
        """Run rounds until cancelled (leadership lost); every write carries `term`."""
        while True:
            busy = False
            for board, n in self.settings.configs:
                try:
                    busy |= await self.round(board, n, term)
                except StaleTermError:
                    raise  # a newer leader exists: this term's duties are over
                except Exception:  # one failed round must not end the pipeline for the term
                    log.exception("pipeline round of %s %dp failed; retrying", board, n)
            if time.monotonic() - self._allocated_at >= self.settings.interval_s:
                self._allocated_at = time.monotonic()
                await self.allocate(term)
            if not busy:
                await asyncio.sleep(self.settings.interval_s)

    async def round(self, board: str, n: int, term: int) -> bool:
        """One step of one config; True when it did work (so the next step follows at once)."""
        models = self._stores.models
        production = await models.get_alias("production", board, n)
        if production is None:
            await self._bootstrap(board, n, term)
            return True
        self.controller.observe_alias("production", board, n, production["sha256"])
        previous = await models.get_alias("previous", board, n)
        if previous is not None:
            self.controller.observe_alias("previous", board, n, previous["sha256"])
        candidate = await models.get_alias("candidate", board, n)
        events = await models.promotion_events(board, n)
        decided = {e["candidate"] for e in events if e["decision"] != "insufficient_data"}
        if candidate is not None and candidate["sha256"] not in decided:
            return await self._evaluate(board, n, candidate["sha256"], production["sha256"],
                                        term)
        if await self._maybe_train(board, n, production["sha256"], term):
            return True
        return await self._watch(board, n, production["sha256"], events, term)

    # --- selfplay allocation ---------------------------------------------------------------

    async def allocate(self, term: int) -> list[list] | None:
        """Write the selfplay allocation of the pipeline's configs when its value changed or
        it was written in an older term; returns the value (None: no configs)."""
        fresh = []
        for board, n in self.settings.configs:
            mark = await self._mark(board, n)
            fresh.append((board, n, await self._stores.games.count_games(board, n,
                                                                         since_hlc=mark + 1)))
        value = allocation_weights(fresh, self.settings.training_game_threshold)
        if not value:
            return None
        row = await self._stores.models.setting(SELFPLAY_ALLOCATION)
        if row is None or row["value"] != value or row["term"] != term:
            await self._stores.models.set_setting(SELFPLAY_ALLOCATION, value, term)
            self._progress("selfplay allocation: " + ", ".join(
                f"{board} {n}p x{weight}" for board, n, weight in value))
        return value

    # --- production's first model ---------------------------------------------------------

    async def _bootstrap(self, board: str, n: int, term: int) -> None:
        blob = save_model(initial_model(board, n))
        sha = await self._stores.models.put_blob(blob)
        await self._stores.models.register_model(sha, board, n)
        await self._stores.models.set_alias("production", sha, term)
        self._progress(f"[{board} {n}p] production starts as the seeded initial model "
                       f"{sha[:12]}")

    # --- training -----------------------------------------------------------------------

    async def _mark(self, board: str, n: int) -> int:
        """The newest game hlc the config's newest model was trained on (0: none yet)."""
        if (board, n) not in self._marks:
            mark = 0
            for row in await self._stores.models.models(board, n):
                model = await self._model(row["sha256"], board, n)
                if model is not None:
                    mark = max(mark, int(model.info.training.get("last_game_hlc", 0)))
            self._marks[(board, n)] = mark
        return self._marks[(board, n)]

    async def _maybe_train(self, board: str, n: int, production: str, term: int) -> bool:
        run = self._training.get((board, n))
        if run is None:
            mark = await self._mark(board, n)
            new = await self._stores.games.count_games(board, n, since_hlc=mark + 1)
            if new < self.settings.training_game_threshold:
                return False
            parent = await self._model(production, board, n)
            if parent is None:
                return False  # the blob is still being pulled
            games = await self._stores.games.recent_games(board, n,
                                                          self.settings.training_window_games)
            self._progress(f"[{board} {n}p] training: {new} new games, window of "
                           f"{len(games)}, from production {production[:12]}")
            # The run belongs to the pipeline, not to this term's duty: a lease that lapses
            # for a moment restarts the duties, and must not throw minutes of training away.
            # The next round of any term awaits it (and its exception, if it failed).
            task = asyncio.get_running_loop().create_task(
                self._holding("training", self._train(parent, production, games)))
            run = self._training[(board, n)] = (task, production, time.monotonic())
        task, parent_sha, started = run
        if not task.done():
            await asyncio.wait({task}, timeout=self.settings.interval_s)
            if not task.done():
                return False
        del self._training[(board, n)]
        result = task.result()
        self._m_runs.inc()
        self._m_rejected.inc(result.games_rejected)
        self._marks[(board, n)] = int(result.model.info.training["last_game_hlc"])
        sha = await self._stores.models.put_blob(result.blob)
        await self._stores.models.register_model(sha, board, n, parent=parent_sha)
        self._models.put(sha, result.model)
        await self._stores.models.set_alias("candidate", sha, term)
        self._evidence[(sha, parent_sha)] = Evidence(
            value_mse=result.value_mse, baseline_value_mse=result.parent_value_mse)
        self._progress(
            f"[{board} {n}p] trained candidate {sha[:12]} in {time.monotonic() - started:.1f} s: "
            f"{result.games_used} games ({result.games_rejected} rejected), "
            f"{result.positions} positions, policy loss {result.policy_loss:.3f}, "
            f"value loss {result.value_loss:.3f}")
        return True

    async def _holding(self, state: str, work: Awaitable[T]) -> T:
        """`work` awaited while this node holds its selfplay off for `state`."""
        async with self._hold(state):
            return await work

    async def _train(self, parent: Model, parent_sha: str, games: list[dict]) -> TrainingResult:
        if self.settings.training_processes > 0:
            return await self._train_subprocess(parent, parent_sha, games)
        return await asyncio.to_thread(train, parent, parent_sha, games, self.settings.training,
                                       self._device)

    async def _train_subprocess(self, parent: Model, parent_sha: str, games: list[dict]
                                ) -> TrainingResult:
        """Train in node.train_worker processes: one on this node's device, or
        `training_processes` ranks started by torchrun (DDP). Out of this process, training
        never holds the interpreter lock the mesh's heartbeats need."""
        info = parent.info
        t = self.settings.training
        with tempfile.TemporaryDirectory(prefix="ringrift-train-") as tmp:
            root = Path(tmp)
            (root / "games.msgpack").write_bytes(msgpack.packb(games, use_bin_type=True))
            (root / "parent.blob").write_bytes(save_model(parent))
            out = root / "candidate.blob"
            ranks = self.settings.training_processes
            launcher = ["-m", "torch.distributed.run", "--standalone",
                        f"--nproc_per_node={ranks}"] if ranks > 1 else []
            proc = await asyncio.create_subprocess_exec(
                sys.executable, *launcher, "-m", "node.train_worker",
                "--device", self._device, "--games", str(root / "games.msgpack"),
                "--parent", str(root / "parent.blob"), "--parent-sha", parent_sha,
                "--board", info.board_type, "--players", str(info.num_players),
                "--steps", str(t.steps), "--batch-size", str(t.batch_size),
                "--seed", str(t.seed), "--out", str(out),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
            try:
                _, err = await proc.communicate()
            except asyncio.CancelledError:
                proc.kill()
                await proc.wait()
                raise
            if proc.returncode != 0:
                raise RuntimeError(f"distributed training exited with {proc.returncode}: "
                                   f"{err.decode(errors='replace')[-2000:]}")
            blob = out.read_bytes()
            figures = json.loads((root / "candidate.blob.json").read_text())
        model = load_model(blob, info.board_type, info.num_players)
        return TrainingResult(model, blob, figures["games_used"], figures["games_rejected"],
                              figures["positions"], t.steps, figures["policy_loss"],
                              figures["value_loss"], figures["value_mse"],
                              figures["parent_value_mse"])

    # --- evaluation ---------------------------------------------------------------------

    def _evidence_for(self, model_id: str, baseline: str | None, board: str, n: int
                      ) -> Evidence:
        return self._evidence.get((model_id, baseline), Evidence())

    async def _rebuild_test(self, board: str, n: int, candidate: str, production: str) -> _Test:
        rows = await self._stores.matches.all_matches(board, n)
        c = self.settings.criteria
        test = _Test(PairedSprt(c.sprt(), games_per_trial=n) if candidate != production
                     else None)
        opponents = [RANDOM, HEURISTIC] + ([production] if test.sprt is not None else [])
        for opponent in opponents:
            scores = trial_scores(rows, candidate, opponent, n, EVALUATION)
            test.done[opponent] = set(scores)
            played = [parse_match_id(r["match_id"]) for r in rows]
            test.next_trial[opponent] = 1 + max(
                (p[2] for p in played if p is not None and p[0] == candidate[:16]
                 and p[1] == opponent[:16]), default=-1)
            if opponent == production and test.sprt is not None:
                for trial in sorted(scores):
                    test.sprt.add(trial, scores[trial])
            elif scores:
                test.gates[opponent] = (sum(scores.values()) / len(scores), len(scores) * n)
        return test

    async def _evaluate(self, board: str, n: int, candidate: str, production: str,
                        term: int) -> bool:
        test = await self._rebuild_test(board, n, candidate, production)
        c = self.settings.criteria
        # Trials still wanted per opponent: the gates' games, and the SPRT's until it decides.
        wanted: dict[str, int | None] = {}
        for gate in (RANDOM, HEURISTIC):
            need = -(-c.min_games_played // n)  # trials, rounded up
            if len(test.done[gate]) < need:
                wanted[gate] = need
        if test.sprt is not None and test.sprt.verdict is Verdict.RUNNING:
            wanted[production] = None  # no bound: the test stops itself
        if self._nodes is None:
            for opponent in wanted:
                await self._play(board, n, candidate, opponent, test.next_trial[opponent],
                                 EVALUATION)
        else:
            await self._dispatch(board, n, candidate, wanted, test, term)
        test = await self._rebuild_test(board, n, candidate, production)
        known = self._evidence.get((candidate, production), Evidence())
        self._evidence[(candidate, production)] = Evidence(
            head_to_head(test.sprt) if test.sprt is not None else None, test.gates,
            known.value_mse, known.baseline_value_mse)
        baseline = production if test.sprt is not None else None
        decision = self.controller.evaluate_promotion(candidate, board, n,
                                                      PromotionType.PRODUCTION, baseline)
        gates = ", ".join(f"{k} {s:.2f} ({g})" for k, (s, g) in sorted(test.gates.items()))
        sprt = test.sprt.summary() if test.sprt is not None else "no incumbent"
        line = f"[{board} {n}p] evaluating {candidate[:12]}: {sprt}; gates {gates}"
        if line != self._last_line:  # a line per change, not per round
            self._last_line = line
            self._progress(line)
        if decision.final:
            await self._execute(decision, term)
        # Farmed out, the games arrive by sync: the next look is worth a pause.
        return self._nodes is None

    async def _dispatch(self, board: str, n: int, candidate: str,
                        wanted: dict[str, int | None], test: _Test, term: int) -> None:
        """Hand free nodes the next trials; a trial left incomplete by a node that vanished
        or went quiet for `assignment_timeout_s` goes to another node."""
        assert self._nodes is not None
        now = time.monotonic()
        alive = set(self._nodes())
        busy: set[str] = set()
        orphans: list[tuple[str, int]] = []
        for node, (assigned_to, opponent, trial, since) in list(self._assigned.items()):
            if assigned_to != candidate or trial in test.done.get(opponent, ()) \
                    or opponent not in wanted:
                del self._assigned[node]  # done, or no longer needed
            elif node not in alive or now - since > self.settings.assignment_timeout_s:
                del self._assigned[node]
                orphans.append((opponent, trial))
                self._progress(f"[{board} {n}p] trial {trial} vs {opponent[:12]} lost on "
                               f"{node[:12]}: assigning it again")
            else:
                busy.add(node)
        in_flight = {(o, t) for _, o, t, _ in self._assigned.values()}
        for node in sorted(alive - busy):
            job = orphans.pop(0) if orphans else self._next_trial(wanted, test, in_flight)
            if job is None:
                break
            opponent, trial = job
            await self._stores.models.assign(node, board, n, candidate, opponent, EVALUATION,
                                             trial, 1, term)
            self._assigned[node] = (candidate, opponent, trial, now)
            in_flight.add((opponent, trial))

    def _next_trial(self, wanted: dict[str, int | None], test: _Test,
                    in_flight: set[tuple[str, int]]) -> tuple[str, int] | None:
        """The lowest unplayed, unassigned trial of the first opponent that still needs one."""
        for opponent, limit in wanted.items():
            pending = len(test.done[opponent]) + sum(1 for o, _ in in_flight if o == opponent)
            if limit is not None and pending >= limit:
                continue
            trial = 0
            while trial in test.done[opponent] or (opponent, trial) in in_flight:
                trial += 1
            return opponent, trial
        return None

    async def _play(self, board: str, n: int, candidate: str, opponent: str, trial: int,
                    kind: str) -> None:
        """Play a trial here (no other nodes to farm it to, or a watch game)."""
        async with self._hold("evaluating"):
            played = await play_and_record(self._stores, self._models, self._device, board, n,
                                           candidate, opponent, trial, kind,
                                           self.settings.max_game_moves, self._pool)
        self._m_games.inc(played)

    async def _execute(self, decision: PromotionDecision, term: int) -> None:
        execution = self.controller.execute_promotion(decision)
        models = self._stores.models
        if decision.decision is Decision.ROLLBACK:
            restored, removed = decision.baseline_model_id, decision.model_id
        else:
            restored, removed = decision.model_id, decision.baseline_model_id
        reason = "; ".join(decision.reasons)[:1024]
        await models.append_promotion_event(
            decision.board_type, decision.num_players, restored, removed,
            decision.decision.value, decision.reorder_applied, decision.games_played,
            decision.win_rate, decision.elo_improvement, term, reason)
        kind = "rollback" if decision.decision is Decision.ROLLBACK else "production"
        try:
            for move in execution.alias_moves:
                await models.set_alias(move.name, move.model_id, term)
        except Exception:
            # A fenced-off or failed alias move is a failed execution (the
            # PromotionExecutionFailures alert watches this); the duty then ends as before.
            if self._metrics is not None and execution.alias_moves:
                self._metrics.promotion_executed(kind, "failure")
            raise
        # Only an execution that moved aliases is one; a retained production moves none.
        if self._metrics is not None and execution.alias_moves:
            self._metrics.promotion_executed(kind, "success")
        self._progress(f"[{decision.board_type} {decision.num_players}p] decision "
                       f"{decision.decision.value} for {decision.model_id[:12]}: {reason}")

    # --- regression watch and rollback --------------------------------------------------

    async def _watch(self, board: str, n: int, production: str, events: list[dict],
                     term: int) -> bool:
        promoted = [e for e in events if e["decision"] == "swap_production"
                    and e["candidate"] == production and e["incumbent"]]
        if not promoted:
            return False
        event = promoted[-1]
        previous = event["incumbent"]
        rows = await self._stores.matches.all_matches(board, n)
        scores = trial_scores(rows, production, previous, n, WATCH)
        games = len(scores) * n
        if games >= self.settings.watch_games:
            return False
        played = [parse_match_id(r["match_id"], WATCH) for r in rows]
        trial = 1 + max((p[2] for p in played if p is not None and p[0] == production[:16]),
                        default=-1)
        await self._play(board, n, production, previous, trial, WATCH)
        rows = await self._stores.matches.all_matches(board, n)
        scores = trial_scores(rows, production, previous, n, WATCH)
        games = len(scores) * n
        win_rate = sum(scores.values()) / len(scores) if scores else None
        # The fall is measured where production met the model it replaced (its evaluation, then
        # the watch games): over the whole pool, other participants joining or playing (the next
        # candidate's evaluation) move its offset from the pool mean although it plays as well.
        met = [r for r in rows if production in r["participants"]
               and previous in r["participants"]]
        now_table = ratings(met)
        then_table = ratings([r for r in met if r["hlc"] <= event["hlc"]])
        # A model without games before its promotion has no rating to fall from: its watch
        # then judges by the win rate alone.
        change = 0.0
        if production in then_table.participants and production in now_table.participants:
            change = now_table.get(production).elo - then_table.get(production).elo
        now = time.monotonic()
        regression = self.detector.check(production, change, games, now)
        verdict = self.monitor.check(production, change, win_rate, games, now, regression)
        if self._metrics is not None:
            self._metrics.rollback_checked(production, verdict.should_rollback, -change)
        self._progress(f"[{board} {n}p] watching {production[:12]}: Elo change {change:+.1f} "
                       f"over {games} games vs {previous[:12]}, win rate "
                       f"{'n/a' if win_rate is None else f'{win_rate:.2f}'}")
        if verdict.should_rollback:
            decision = self.controller.evaluate_promotion(production, board, n,
                                                          PromotionType.ROLLBACK, previous)
            if decision.should_promote:
                decision = PromotionDecision(
                    decision.model_id, board, n, PromotionType.ROLLBACK, previous, True,
                    Decision.ROLLBACK, decision.reasons + verdict.reasons, games, win_rate,
                    change)
                await self._execute(decision, term)
                self.detector.forget(production)
                # Training resumes only once games newer than the rollback arrive.
                newest = await self._stores.games.recent_games(board, n, 1)
                if newest:
                    self._marks[(board, n)] = int(newest[0]["created_hlc"])
        return True

    # --- models -------------------------------------------------------------------------

    async def _model(self, sha: str, board: str, n: int) -> Model | None:
        return await self._models.get(sha, board, n)


def settings_from_config(config: Any) -> PipelineSettings:
    """The pipeline's settings from the node's config (sections [pipeline] and [promotion])."""
    pipe, promo = config.pipeline, config.promotion
    configs = tuple((text.partition(":")[0], int(text.partition(":")[2]))
                    for text in pipe.configs)
    criteria = PromotionCriteria(**{f: getattr(promo, f) for f in promo.__slots__})
    return PipelineSettings(
        configs, pipe.training_game_threshold, pipe.training_window_games,
        TrainingSettings(steps=pipe.training_steps, batch_size=pipe.training_batch_size,
                         seed=pipe.seed),
        pipe.training_processes, pipe.interval_s, pipe.watch_games, pipe.max_game_moves, criteria,
        pipe.assignment_timeout_s)
