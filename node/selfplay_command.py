"""`ringrift-node selfplay`: play a one-off batch of games with a progress bar.

    ringrift-node selfplay --games N --board square8 --players 2 [--sims K]
                           [--algorithm gumbel|puct|policy] [--device cpu|cuda]
                           [--data-dir D] [--json]

Without --data-dir the games are played and measured only. With it, they are stored through
the running node that holds D (node.local_games: the node owns its database), with the model
that node plays (its production model) when it has one; no running node there is refused
before anything is played.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

from node.config import SELFPLAY_ALGORITHMS, SELFPLAY_BOARDS, Config
from node.datadir import open_data_dir
from node.importer.command import running_node
from node.local_games import LocalGamesError, post_games
from storage.blobs import BlobStore
from storage.rows import MAX_MOVES
from storage.stores import BLOB_DIR

if TYPE_CHECKING:
    from engine.net import Model

# torch and the engine's net are imported by `run` only: `node.cli` imports this module for
# its parser, and every command (and every child process the agent spawns, which imports the
# main module again) would otherwise pay a second of torch import.


class SelfplayRefused(RuntimeError):
    """The command cannot run as asked: one line for the operator."""


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser("selfplay", help="play a batch of selfplay games (stored through the "
                                        "running node with --data-dir)")
    p.add_argument("--games", type=int, required=True, help="how many games to play")
    p.add_argument("--board", choices=SELFPLAY_BOARDS, default="square8")
    p.add_argument("--players", type=int, choices=(2, 3, 4), default=2)
    p.add_argument("--sims", type=int, help="simulations per move (default: selfplay.simulations)")
    p.add_argument("--algorithm", choices=SELFPLAY_ALGORITHMS,
                   help="search (default: selfplay.algorithm)")
    p.add_argument("--concurrency", type=int, help="games at once (default: selfplay.concurrency)")
    p.add_argument("--device", choices=("cpu", "cuda"),
                   help="network device (default: cuda when torch sees one)")
    p.add_argument("--seed", type=int, default=0, help="seed of the games' randomness")
    p.add_argument("--data-dir", type=Path, help="store the games through the node holding it")
    p.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
    p.add_argument("--port", type=int, help="the running node's port (default: node.port)")
    p.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    return p


def _node_model(address: str, data_dir: Path, board: str, n: int) -> tuple[Model, str] | None:
    """The model the running node plays, when it plays this config."""
    try:
        with urllib.request.urlopen(f"http://{address}/api/v1/status", timeout=10) as r:
            status = json.loads(r.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise SelfplayRefused(f"cannot reach the node holding {data_dir} at {address} "
                              f"({getattr(exc, 'reason', exc)}); is --port right?") from None
    selfplay = status.get("selfplay") or {}
    sha = selfplay.get("production_model")
    if not sha or (selfplay.get("board_type"), selfplay.get("num_players")) != (board, n):
        return None
    from engine.net import load_model

    blob = asyncio.run(BlobStore(data_dir / BLOB_DIR).get(sha))
    return load_model(blob, board, n), sha


def run(args: argparse.Namespace, config: Config) -> int:
    import torch
    from tqdm import tqdm

    from engine.net import initial_model, save_model
    from engine.search import SearchConfig
    from engine.selfplay import SelfplayRunner
    from node.selfplay import choose_device

    if args.games < 1:
        raise SelfplayRefused(f"--games {args.games}: expected at least 1")
    sp = config.selfplay
    search = SearchConfig(args.algorithm or sp.algorithm, args.sims or sp.simulations,
                          considered=sp.considered)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise SelfplayRefused("--device cuda: torch sees no CUDA device here")
    if sp.torch_threads > 0:
        torch.set_num_threads(sp.torch_threads)
    address = None
    model: tuple[Model, str] | None = None
    if args.data_dir is not None:
        data_dir = config.node.data_dir
        if running_node(data_dir) is None:
            raise SelfplayRefused(
                f"no running node holds {data_dir}: games are stored only through the node "
                f"that owns the data dir; start it (ringrift-node start --data-dir {data_dir}) "
                "or leave out --data-dir to play without storing")
        address = f"127.0.0.1:{config.node.port}"
        model = _node_model(address, data_dir, args.board, args.players)
    if model is None:
        seeded = initial_model(args.board, args.players)
        model = (seeded, hashlib.sha256(save_model(seeded)).hexdigest())
    evaluator = choose_device(model[0], device)
    runner = SelfplayRunner(evaluator.evaluate, args.board, args.players, search,
                            concurrency=args.concurrency or sp.concurrency, seed=args.seed,
                            max_moves=MAX_MOVES, games=args.games)
    played = []
    start = time.perf_counter()
    with tqdm(total=args.games, unit="game", file=sys.stderr, disable=args.json) as bar:
        while not runner.done:
            finished = runner.step()
            played += finished
            bar.update(len(finished))
            elapsed = time.perf_counter() - start
            bar.set_postfix_str(f"{runner.counters.moves / elapsed:,.0f} moves/s",
                                refresh=False)
    elapsed = time.perf_counter() - start
    figures: dict[str, Any] = {
        "games": len(played), "discarded": runner.counters.discarded,
        "seconds": round(elapsed, 3), "games_per_s": round(len(played) / elapsed, 3),
        "moves_per_s": round(runner.counters.moves / elapsed, 1),
        "positions_per_s": round(runner.counters.positions / elapsed, 1),
        "avg_batch": round(runner.counters.positions / max(runner.counters.batches, 1), 1),
        "board_type": args.board, "num_players": args.players, "device": str(evaluator.device),
        "search": search.settings(), "stored": 0,
    }
    if address is not None and played:
        identity = open_data_dir(config.node.data_dir).identity
        rows = [{**g.row_fields(), "model_sha": model[1]} for g in played]
        try:
            figures["stored"] = post_games(address, identity, rows)
        except LocalGamesError as exc:
            raise SelfplayRefused(str(exc)) from None
    if args.json:
        print(json.dumps(figures, sort_keys=True))
    else:
        print(f"{figures['games']} games in {figures['seconds']} s: {figures['games_per_s']} "
              f"games/s, {figures['moves_per_s']} moves/s, {figures['positions_per_s']} "
              f"positions/s (batch {figures['avg_batch']}) on {figures['device']}"
              + (f"; {figures['stored']} stored" if address else ""))
    return 0
