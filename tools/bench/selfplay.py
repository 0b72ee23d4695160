"""Selfplay speed: policy-only and 16-simulation Gumbel selfplay beside bare random playouts.

One config (square8 2p), one core: torch uses one thread and every rate is per second of
this process's CPU time, so other load on a shared machine does not deflate it. Figures:

- ``random_playout_*``: the bare rules engine, uniform random moves (the same run: half the
  games just before the policy-only selfplay and half just after, so that both sides of the
  ratio see the same background load on average, however it drifts during the run);
- ``policy_only_*`` and ``gumbel16_*``: batched selfplay with the CPU default net (games,
  moves, network positions per second, average batch);
- ``policy_only_overhead``: random playout games/s divided by policy-only games/s (goal <= 3);
- ``net_<arch>_positions_per_s``: the network alone as the evaluator runs it (batch norm
  folded, the live planes), forward passes of 256 square8 positions, for the CPU and the GPU
  default nets (on the device used: the CPU here unless CUDA is seen).
"""

from __future__ import annotations

import random
import time

import torch

from engine.features import batch_planes
from engine.net import (
    CPU_DEFAULT,
    GPU_DEFAULT,
    Arch,
    Evaluator,
    initial_model,
    retain_freed_memory,
)
from engine.rules import apply_move_in_place, legal_moves
from engine.search import SearchConfig
from engine.selfplay import SelfplayRunner
from engine.state import ACTIVE, initial_state

BOARD, PLAYERS = "square8", 2
CONCURRENCY = 128


def _random_playouts(games: int, rng: random.Random) -> tuple[int, float]:
    """Moves played and CPU seconds spent on ``games`` uniformly random games."""
    moves = 0
    start = time.process_time()
    for _ in range(games):
        state = initial_state(BOARD, PLAYERS)
        while state.status == ACTIVE:
            apply_move_in_place(state, rng.choice(legal_moves(state)))
            moves += 1
    return moves, time.process_time() - start


def _selfplay(config: SearchConfig, games: int, device: str) -> dict[str, float]:
    evaluator = Evaluator(initial_model(BOARD, PLAYERS, CPU_DEFAULT), device)
    runner = SelfplayRunner(evaluator.evaluate, BOARD, PLAYERS, config,
                            concurrency=min(CONCURRENCY, games), seed=1, games=games)
    start = time.process_time()
    played = runner.run()
    elapsed = time.process_time() - start
    c = runner.counters
    return {"games_per_s": round(len(played) / elapsed, 3),
            "moves_per_s": round(c.moves / elapsed, 1),
            "positions_per_s": round(c.positions / elapsed, 1),
            "avg_batch": round(c.positions / max(c.batches, 1), 1),
            "avg_moves": round(c.moves / max(len(played), 1), 1)}


def _net_rate(arch: Arch, device: str, rounds: int) -> float:
    evaluator = Evaluator(initial_model(BOARD, PLAYERS, arch), device)
    rng = random.Random(2)
    states = []
    state = initial_state(BOARD, PLAYERS)
    while len(states) < 256:
        if state.status != ACTIVE:
            state = initial_state(BOARD, PLAYERS)
        states.append(state.copy())
        apply_move_in_place(state, rng.choice(legal_moves(state)))
    planes, scalars = batch_planes(states, live_only=True)
    evaluator.forward(planes, scalars, device == "cuda")  # warm-up
    clock = time.perf_counter if device == "cuda" else time.process_time
    start = clock()
    for _ in range(rounds):
        evaluator.forward(planes, scalars, device == "cuda")
    if device == "cuda":
        torch.cuda.synchronize()
    return len(states) * rounds / (clock() - start)


def run(quick: bool) -> dict[str, float | int | str]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    # The evaluators set the allocator up for the process; do it first so the random
    # playouts run under the same settings as the selfplay they are compared with.
    retain_freed_memory()
    try:
        device = "cuda" if torch.cuda.is_available() else "cpu"
        games = 32 if quick else 256
        rng = random.Random(0)
        moves_before, seconds_before = _random_playouts(games // 2, rng)
        policy = _selfplay(SearchConfig("policy"), games, device)
        moves_after, seconds_after = _random_playouts(games - games // 2, rng)
        seconds = seconds_before + seconds_after
        random_games, random_moves = games / seconds, (moves_before + moves_after) / seconds
        gumbel = _selfplay(SearchConfig("gumbel", 16, considered=16),
                           8 if quick else 64, device)
        figures: dict[str, float | int | str] = {
            "config": f"{BOARD}_{PLAYERS}p", "device": device, "cores": 1,
            "cpu_default_net": f"{CPU_DEFAULT.channels}x{CPU_DEFAULT.blocks}",
            "gpu_default_net": f"{GPU_DEFAULT.channels}x{GPU_DEFAULT.blocks}",
            "random_playout_games_per_s": round(random_games, 3),
            "random_playout_moves_per_s": round(random_moves, 1),
        }
        figures.update({f"policy_only_{k}": v for k, v in policy.items()})
        figures.update({f"gumbel16_{k}": v for k, v in gumbel.items()})
        figures["policy_only_overhead"] = round(
            random_games / policy["games_per_s"], 2)
        for name, arch in (("cpu_default", CPU_DEFAULT), ("gpu_default", GPU_DEFAULT)):
            figures[f"net_{name}_positions_per_s"] = round(
                _net_rate(arch, device, 2 if quick else 10), 1)
        figures["policy_only_overhead_goal"] = 3.0
        figures["note"] = ("no GPU seen: CPU figures only" if device == "cpu" else
                           "GPU figures on one process (the goal's several engine processes "
                           "feeding one network are not measured here)")
        return figures
    finally:
        torch.set_num_threads(threads)

