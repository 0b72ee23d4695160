"""Training a candidate from production on a window of recent games.

Input is game rows (plain dicts as storage holds them). Each game is replayed through the rules
engine first; one that does not replay legally to the rankings it claims is skipped and counted
(`TrainingResult.games_rejected`), never trained on. Every position of a kept game gives an
example: the input planes, the legal moves (sorted as the record's policy targets index them),
the policy target (the search's visit weights, or the move played where nothing was searched)
and the value target (the final ranks, seen from the player to move).

Losses: policy cross-entropy over each position's legal moves plus value mean squared error.
Board-symmetry augmentation: each time an example is drawn it is mapped by a random symmetry of
its board (the 8 of the square, the 12 of the hexagon), planes and moves alike; the rules know
no orientation, so the mapped position is as real as the original.

A tenth of the games (at least one) is held out: the candidate's and the parent's value MSE on
it are what the promotion gate `max_value_mse_degradation` compares.

Several GPUs: run under `torchrun` (torch.distributed initialised, one process per device); the
net is wrapped in DistributedDataParallel and each rank draws its own share of the batches. The
default is one device, CPU or one GPU.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from .boards import board_config
from .encoding import grid_cells, move_terms, outcome_values
from .features import state_planes
from .moves import Move
from .net import Model, save_model
from .records import InvalidRecord, positions, rankings
from .state import ACTIVE, MAX_PLAYERS


@dataclass(frozen=True, slots=True)
class TrainingSettings:
    steps: int = 200
    batch_size: int = 128
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    max_positions: int = 200_000  # most recent positions kept in memory
    holdout_fraction: float = 0.1
    augment: bool = True
    seed: int = 0


@dataclass(slots=True)
class Examples:
    board_type: str
    num_players: int
    planes: list[np.ndarray]
    scalars: list[np.ndarray]
    legal: list[list[Move]]
    targets: list[np.ndarray]  # policy over legal, sums to 1
    values: list[np.ndarray]  # (MAX_PLAYERS,) relative to the player to move

    def __len__(self) -> int:
        return len(self.planes)


@dataclass(frozen=True, slots=True)
class TrainingResult:
    model: Model
    blob: bytes
    games_used: int
    games_rejected: int
    positions: int
    steps: int
    policy_loss: float  # mean over the last tenth of the steps
    value_loss: float
    value_mse: float | None  # the candidate's, on held-out games
    parent_value_mse: float | None  # the parent's, on the same positions


def _game_examples(row: Mapping, out: Examples) -> None:
    """Append one game's examples; raises InvalidRecord (nothing appended) if it is bad."""
    board, n, swap = row["board_type"], row["num_players"], row["swap_rule"]
    planes, scalars, legal, targets, relatives = [], [], [], [], []
    final = None
    for pos in positions(board, n, swap, row["moves"], row["policy"]):
        if pos.target is not None and pos.target.sum() > 0:
            target = pos.target / pos.target.sum()
        else:
            target = np.zeros(len(pos.legal), dtype=np.float32)
            target[pos.played] = 1.0
        p, s = state_planes(pos.state)
        planes.append(p)
        scalars.append(s)
        legal.append(list(pos.legal))
        targets.append(target.astype(np.float32))
        relatives.append(pos.state.current)
        final = pos.state
    if final is None or final.status == ACTIVE:
        raise InvalidRecord("the game does not reach its end")
    if list(row["rankings"]) != rankings(final):
        raise InvalidRecord(f"rankings {row['rankings']} differ from the replay's "
                            f"{rankings(final)}")
    absolute = outcome_values(rankings(final))
    for current in relatives:
        view = np.zeros(MAX_PLAYERS, dtype=np.float32)
        for k in range(n):
            view[k] = absolute[(current - 1 + k) % n]
        out.values.append(view)
    out.planes += planes
    out.scalars += scalars
    out.legal += legal
    out.targets += targets


def build_examples(games: Iterable[Mapping], board_type: str, num_players: int
                   ) -> tuple[Examples, int, int]:
    """Examples from game rows of one config; returns (examples, games used, games rejected)."""
    examples = Examples(board_type, num_players, [], [], [], [], [])
    used = rejected = 0
    for row in games:
        try:
            _game_examples(row, examples)
            used += 1
        except (InvalidRecord, KeyError, TypeError, ValueError, IndexError):
            rejected += 1
    return examples, used, rejected


# --- symmetry ---------------------------------------------------------------------------


@cache
def symmetries(board_type: str) -> tuple[np.ndarray, ...]:
    """Cell permutations (perm[c] = image of cell c) of the board's symmetry group."""
    cfg = board_config(board_type)
    index = {c: i for i, c in enumerate(cfg.coords)}
    if cfg.hex:
        def rotate(c: tuple[int, ...]) -> tuple[int, ...]:
            return (-c[2], -c[0], -c[1])

        maps = []
        for mirror in (False, True):
            for turns in range(6):
                def f(c: tuple[int, ...], turns: int = turns, mirror: bool = mirror
                      ) -> tuple[int, ...]:
                    if mirror:
                        c = (c[0], c[2], c[1])
                    for _ in range(turns):
                        c = rotate(c)
                    return c
                maps.append(f)
    else:
        m = cfg.size - 1
        maps = [lambda c: (c[0], c[1]), lambda c: (m - c[1], c[0]),
                lambda c: (m - c[0], m - c[1]), lambda c: (c[1], m - c[0]),
                lambda c: (m - c[0], c[1]), lambda c: (c[0], m - c[1]),
                lambda c: (c[1], c[0]), lambda c: (m - c[1], m - c[0])]
    perms = []
    for f in maps:
        images = [index.get(tuple(f(c))) for c in cfg.coords]
        if None not in images and len(set(images)) == len(images):
            perms.append(np.array(images, dtype=np.int64))
    return tuple(perms)


def _map_move(move: Move, perm: np.ndarray) -> Move:
    p = perm
    return move._replace(
        src=int(p[move.src]) if move.src >= 0 else -1,
        dst=int(p[move.dst]) if move.dst >= 0 else -1,
        target=int(p[move.target]) if move.target >= 0 else -1,
        extract=int(p[move.extract]) if move.extract >= 0 else -1,
        cells=tuple(int(p[c]) for c in move.cells),
        border=tuple(int(p[c]) for c in move.border),
    )


def _map_planes(planes: np.ndarray, perm: np.ndarray, grid: np.ndarray) -> np.ndarray:
    flat = planes.reshape(planes.shape[0], -1)
    out = np.zeros_like(flat)
    out[:, grid[perm]] = flat[:, grid]
    return out.reshape(planes.shape)


# --- the losses -------------------------------------------------------------------------


def _losses(net: nn.Module, ex: Examples, idx: Sequence[int], rng: random.Random | None,
            device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = board_config(ex.board_type)
    perms = symmetries(ex.board_type) if rng is not None else ()
    grid = grid_cells(cfg)
    planes, legal = [], []
    for i in idx:
        if perms:
            perm = perms[rng.randrange(len(perms))]
            planes.append(_map_planes(ex.planes[i], perm, grid))
            legal.append([_map_move(m, perm) for m in ex.legal[i]])
        else:
            planes.append(ex.planes[i])
            legal.append(ex.legal[i])
    p = torch.from_numpy(np.stack(planes)).to(device)
    s = torch.from_numpy(np.stack([ex.scalars[i] for i in idx])).to(device)
    maps, type_logits, values = net(p, s)
    types, t_move, t_index, t_weight, offsets = move_terms(legal, cfg)
    counts = np.diff(offsets)
    batch_of_move = torch.from_numpy(np.repeat(np.arange(len(idx)), counts)).to(device)
    logits = type_logits[batch_of_move, torch.from_numpy(types).to(device)]
    logits = logits.index_add(0, torch.from_numpy(t_move).to(device),
                              maps.flatten()[torch.from_numpy(t_index).to(device)]
                              * torch.from_numpy(t_weight).to(device))
    peak = torch.full((len(idx),), -torch.inf, device=device).scatter_reduce(
        0, batch_of_move, logits.detach(), "amax")
    shifted = logits - peak[batch_of_move]
    log_total = torch.log(torch.zeros(len(idx), device=device).index_add(
        0, batch_of_move, torch.exp(shifted)))
    log_p = shifted - log_total[batch_of_move]
    target = torch.from_numpy(np.concatenate([ex.targets[i] for i in idx])).to(device)
    policy_loss = -(target * log_p).sum() / len(idx)
    n = ex.num_players
    want = torch.from_numpy(np.stack([ex.values[i] for i in idx])).to(device)
    value_loss = ((values[:, :n] - want[:, :n]) ** 2).mean()
    return policy_loss, value_loss


def value_mse(model: Model, ex: Examples, device: str = "cpu") -> float | None:
    """Mean squared error of the model's values on the examples (None when there are none)."""
    if not len(ex):
        return None
    net = model.net.to(device).eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(ex), 256):
            idx = list(range(start, min(len(ex), start + 256)))
            _, v = _losses(net, ex, idx, None, torch.device(device))
            total += float(v) * len(idx)
            count += len(idx)
    return total / count


def _split(games: list[Mapping], fraction: float, seed: int) -> tuple[list, list]:
    if len(games) < 2 or fraction <= 0:
        return games, []
    order = sorted(range(len(games)), key=lambda i: random.Random(seed * 7919 + i).random())
    held = max(1, int(len(games) * fraction))
    hold = set(order[:held])
    return ([g for i, g in enumerate(games) if i not in hold],
            [g for i, g in enumerate(games) if i in hold])


def train(parent: Model, parent_sha: str | None, games: Sequence[Mapping],
          settings: TrainingSettings | None = None, device: str = "cpu") -> TrainingResult:
    """A candidate trained from `parent` on `games` (rows of the parent's config)."""
    settings = settings or TrainingSettings()
    info = parent.info
    rows = [g for g in games
            if g.get("board_type") == info.board_type and g.get("num_players") == info.num_players]
    train_rows, held_rows = _split(rows, settings.holdout_fraction, settings.seed)
    examples, used, rejected = build_examples(train_rows, info.board_type, info.num_players)
    held, held_used, held_rejected = build_examples(held_rows, info.board_type, info.num_players)
    if len(examples) > settings.max_positions:
        for name in ("planes", "scalars", "legal", "targets", "values"):
            setattr(examples, name, getattr(examples, name)[-settings.max_positions:])
    if not len(examples):
        raise ValueError(f"no legal games to train on ({rejected + held_rejected} rejected)")
    dev = torch.device(device)
    model = Model(copy.deepcopy(parent.net), copy.deepcopy(info))
    net: nn.Module = model.net.to(dev).train()
    distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
    rank = torch.distributed.get_rank() if distributed else 0
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            net, device_ids=[dev.index] if dev.type == "cuda" else None)
    optimiser = torch.optim.AdamW(net.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    rng = random.Random(settings.seed * 1_000_003 + rank)
    torch.manual_seed(settings.seed + rank)
    tail = max(1, settings.steps // 10)
    p_sum = v_sum = 0.0
    for step in range(settings.steps):
        idx = [rng.randrange(len(examples)) for _ in range(min(settings.batch_size,
                                                               len(examples)))]
        policy_loss, value_loss = _losses(net, examples, idx,
                                          rng if settings.augment else None, dev)
        optimiser.zero_grad(set_to_none=True)
        (policy_loss + value_loss).backward()
        optimiser.step()
        if step >= settings.steps - tail:
            p_sum += policy_loss.item()
            v_sum += value_loss.item()
    model.net.eval()
    model.net.to("cpu")
    candidate_mse = value_mse(model, held)
    parent_mse = value_mse(parent, held)
    model.info.parent = parent_sha
    model.info.training = {
        "games": used + held_used, "rejected": rejected + held_rejected,
        "positions": len(examples), "steps": settings.steps,
        "policy_loss": round(p_sum / tail, 6), "value_loss": round(v_sum / tail, 6),
        "first_game_hlc": min((int(g["created_hlc"]) for g in rows), default=0),
        "last_game_hlc": max((int(g["created_hlc"]) for g in rows), default=0),
    }
    return TrainingResult(model, save_model(model), used + held_used, rejected + held_rejected,
                          len(examples), settings.steps, p_sum / tail, v_sum / tail,
                          candidate_mse, parent_mse)
