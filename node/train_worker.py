"""A training run out of the agent's process: alone, or one rank of a multi-device run started
by `torchrun` (torch.distributed.run).

    python -m torch.distributed.run --nproc_per_node K -m node.train_worker \\
        --games GAMES.msgpack --parent PARENT.blob --board square8 --players 2 \\
        --steps S --batch-size B --seed X --out OUT

Every rank loads the same games and parent, joins the process group (NCCL on GPUs, gloo on
CPUs), and trains through engine.training.train, which wraps the net in DistributedDataParallel
and gives each rank its own batches. Rank 0 writes the candidate blob to OUT and its figures to
OUT.json, each atomically (temp file, fsync, rename). The leader (node.pipeline) starts this
(`pipeline.training_processes`: 1 starts this module alone, more start it under torchrun).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import msgpack
import torch

from engine.net import load_model
from engine.training import TrainingSettings, train


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.train_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--games", type=Path, required=True, help="msgpack list of game rows")
    parser.add_argument("--parent", type=Path, required=True, help="the parent model blob")
    parser.add_argument("--parent-sha", default=None, help="the parent's sha256")
    parser.add_argument("--board", required=True)
    parser.add_argument("--players", type=int, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True, help="where rank 0 writes the blob")
    parser.add_argument("--device", default="cpu", help="device of a single-process run")
    args = parser.parse_args(argv)
    distributed = "WORLD_SIZE" in os.environ  # started by torchrun
    cuda = torch.cuda.is_available() and args.device != "cpu"
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = f"cuda:{local_rank}" if cuda and distributed else args.device
    if cuda:
        torch.cuda.set_device(torch.device(device))
    if distributed:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    try:
        games = msgpack.unpackb(args.games.read_bytes(), raw=False)
        parent = load_model(args.parent.read_bytes(), args.board, args.players)
        settings = TrainingSettings(steps=args.steps, batch_size=args.batch_size, seed=args.seed)
        result = train(parent, args.parent_sha, games, settings, device)
        if not distributed or torch.distributed.get_rank() == 0:
            _write_atomic(args.out, result.blob)
            figures = {"games_used": result.games_used, "games_rejected": result.games_rejected,
                       "positions": result.positions, "policy_loss": result.policy_loss,
                       "value_loss": result.value_loss, "value_mse": result.value_mse,
                       "parent_value_mse": result.parent_value_mse,
                       "world_size": torch.distributed.get_world_size() if distributed
                       else 1}
            _write_atomic(args.out.with_name(args.out.name + ".json"),
                          json.dumps(figures).encode())
    finally:
        if distributed:
            torch.distributed.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
