"""The policy/value network, its seeded start, and model blobs.

API (what selfplay, training and evaluation use):

- ``Arch(channels, blocks)``; presets ``CPU_DEFAULT`` (small: selfplay on a CPU within a few
  times the bare rules engine's speed) and ``GPU_DEFAULT``.
- ``initial_model(board_type, num_players, arch, seed)``: the same weights on every machine
  (drawn from numpy's PCG64 stream, not torch's), so a new mesh agrees on its first model.
- ``Model``: a ``PolicyValueNet`` plus its ``ModelInfo`` (config, architecture, parent sha,
  training metadata). ``save_model(model) -> bytes`` makes the blob whose sha256 names it in
  the registry; ``load_model(blob, board_type, num_players)`` checks every part of it and
  raises ``ModelBlobError`` naming what is wrong (corrupt, truncated, another config, another
  architecture, non-finite weights). Training updates ``model.net`` and saves a new blob with
  ``parent`` set to the sha it started from.
- ``Evaluator(model, device)``: ``evaluate(states, legal) -> (priors, values)`` scores a batch
  of positions in one forward pass (mixed precision on CUDA); ``parity_error`` measures the
  device path against float32 CPU on a fixed batch. It runs ``_Inference``, the module's
  forward pass with batch norm folded and only the live input planes (same outputs up to
  float rounding; tests/engine/test_net.py holds it to the module on all 12 configs).

Network: a residual tower (3x3 convolutions, batch norm) over the input planes, the scalar
features added as a per-channel bias after the stem; heads as ``engine.encoding`` describes.
"""

from __future__ import annotations

import copy
import ctypes
import hashlib
import io
import struct
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import msgpack
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .boards import BOARD_TYPES, board_config
from .encoding import NUM_MOVE_TYPES, POLICY_CHANNELS, policy_logits, seat_values
from .features import (
    NUM_PLANES,
    NUM_SCALARS,
    ON_BOARD,
    batch_planes,
    live_planes,
    on_board_plane,
)
from .moves import Move
from .state import MAX_PLAYERS, GameState

MAGIC = b"RRNET\x00\x01\n"
FORMAT = 1
MAX_HEADER_BYTES = 1 << 20
MAX_CHANNELS, MAX_BLOCKS = 512, 64
MAX_TRAINING_ENTRIES = 32
_DTYPES = {"f4": (torch.float32, np.dtype("<f4")), "i8": (torch.int64, np.dtype("<i8"))}


class ModelBlobError(ValueError):
    """A model blob that is corrupt or not what was asked for; the message says which."""


@dataclass(frozen=True, slots=True)
class Arch:
    channels: int
    blocks: int
    value_hidden: int = 32

    def check(self) -> None:
        for name, value, lo, hi in (("channels", self.channels, 1, MAX_CHANNELS),
                                    ("blocks", self.blocks, 0, MAX_BLOCKS),
                                    ("value_hidden", self.value_hidden, 1, MAX_CHANNELS)):
            if type(value) is not int or not lo <= value <= hi:
                raise ModelBlobError(f"arch {name} {value!r} is not an int in {lo}..{hi}")


# 16 channels x 1 block: ~0.85 MFLOP a square8 2p position as the evaluator runs it, ~11 us
# on one core in batches of 128 (tools.bench selfplay: net_cpu_default_positions_per_s),
# which keeps policy-only selfplay within 3x of bare random playouts. Narrower towers gain
# little on this path (8 and 12 channels: ~8 and ~9 us a position, measured alike).
# 128 x 10: the usual small AlphaZero-style tower, for GPUs.
CPU_DEFAULT = Arch(channels=16, blocks=1)
GPU_DEFAULT = Arch(channels=128, blocks=10, value_hidden=128)


@dataclass(slots=True)
class ModelInfo:
    board_type: str
    num_players: int
    arch: Arch
    parent: str | None = None  # sha256 of the model this one was trained from
    training: dict[str, Any] = field(default_factory=dict)  # steps, games, loss, ...


class _Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(y)))


class PolicyValueNet(nn.Module):
    """``forward(planes, scalars) -> (maps, type_logits, values)``: policy maps
    ``(B, POLICY_CHANNELS, S, S)``, one logit per move type ``(B, NUM_MOVE_TYPES)`` and seat
    values ``(B, MAX_PLAYERS)`` in [-1, 1]."""

    def __init__(self, arch: Arch, size: int) -> None:
        super().__init__()
        c = arch.channels
        self.size = size
        self.stem = nn.Conv2d(NUM_PLANES, c, 3, padding=1, bias=False)
        self.stem_bn = nn.BatchNorm2d(c)
        self.scalars = nn.Linear(NUM_SCALARS, c)
        self.tower = nn.Sequential(*[_Block(c) for _ in range(arch.blocks)])
        self.policy_maps = nn.Conv2d(c, POLICY_CHANNELS, 1)
        self.policy_types = nn.Linear(c + NUM_SCALARS, NUM_MOVE_TYPES)
        self.value_hidden = nn.Linear(c + NUM_SCALARS, arch.value_hidden)
        self.value_out = nn.Linear(arch.value_hidden, MAX_PLAYERS)

    def forward(
        self, planes: torch.Tensor, scalars: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = self.stem_bn(self.stem(planes)) + self.scalars(scalars)[:, :, None, None]
        x = self.tower(torch.relu(x))
        # Pool over the board's own cells only (on_board marks them): hex corners stay out.
        on_board = planes[:, ON_BOARD:ON_BOARD + 1]
        pooled = (x * on_board).sum((2, 3)) / on_board.sum((2, 3)).clamp(min=1.0)
        summary = torch.cat([pooled, scalars], 1)
        values = torch.tanh(self.value_out(torch.relu(self.value_hidden(summary))))
        return self.policy_maps(x), self.policy_types(summary), values


@dataclass(slots=True)
class Model:
    net: PolicyValueNet
    info: ModelInfo


def _check_config(board_type: object, num_players: object) -> None:
    if board_type not in BOARD_TYPES:
        raise ModelBlobError(f"board_type {board_type!r} is not one of {BOARD_TYPES}")
    if type(num_players) is not int or not 2 <= num_players <= MAX_PLAYERS:
        raise ModelBlobError(f"num_players {num_players!r} is not an int in 2..{MAX_PLAYERS}")


def build_model(info: ModelInfo) -> Model:
    _check_config(info.board_type, info.num_players)
    info.arch.check()
    net = PolicyValueNet(info.arch, board_config(info.board_type).size)
    net.eval()
    return Model(net, info)


def initial_model(board_type: str, num_players: int, arch: Arch = CPU_DEFAULT,
                  seed: int = 0) -> Model:
    """The seeded starting model of a config: identical bytes on every machine."""
    model = build_model(ModelInfo(board_type, num_players, arch, None, {"seed": seed}))
    key = hashlib.sha256(f"{seed}:{board_type}:{num_players}".encode()).digest()
    rng = np.random.Generator(np.random.PCG64(int.from_bytes(key[:8], "little")))
    with torch.no_grad():
        for name, p in model.net.named_parameters():
            if name.endswith(".weight") and p.dim() > 1:
                bound = 1.0 / np.sqrt(p[0].numel())  # the default init's fan-in bound
                draw = (rng.random(p.numel()) * 2.0 - 1.0) * bound
                p.copy_(torch.from_numpy(draw.astype(np.float32).reshape(p.shape)))
            elif name.endswith(".weight"):  # batch-norm scales
                p.fill_(1.0)
            else:
                p.zero_()
    return model


def save_model(model: Model) -> bytes:
    """The model's blob: magic, header length, msgpack header, raw little-endian tensors."""
    info = model.info
    tensors = []
    body = io.BytesIO()
    for name, t in model.net.state_dict().items():
        code = "i8" if t.dtype == torch.int64 else "f4"
        data = t.detach().to("cpu", _DTYPES[code][0]).contiguous().numpy().astype(
            _DTYPES[code][1], copy=False)
        tensors.append([name, code, list(t.shape)])
        body.write(data.tobytes())
    header = msgpack.packb({
        "format": FORMAT, "board_type": info.board_type, "num_players": info.num_players,
        "arch": {"channels": info.arch.channels, "blocks": info.arch.blocks,
                 "value_hidden": info.arch.value_hidden},
        "parent": info.parent, "training": info.training, "tensors": tensors,
    }, use_bin_type=True)
    return MAGIC + struct.pack("<I", len(header)) + header + body.getvalue()


def _training_map(value: object) -> dict[str, Any]:
    if type(value) is not dict or len(value) > MAX_TRAINING_ENTRIES or not all(
        type(k) is str and len(k) <= 64
        and (v is None or type(v) in (bool, int, float) or (type(v) is str and len(v) <= 256))
        for k, v in value.items()
    ):
        raise ModelBlobError(f"training metadata {value!r:.120} is not a small map of scalars")
    return value


def load_model(blob: bytes, board_type: str, num_players: int) -> Model:
    """The model in ``blob``, which must be a model of ``board_type`` x ``num_players``."""
    if not blob.startswith(MAGIC) or len(blob) < len(MAGIC) + 4:
        raise ModelBlobError("not a ringrift model blob (bad magic)")
    (size,) = struct.unpack_from("<I", blob, len(MAGIC))
    start = len(MAGIC) + 4
    if size > MAX_HEADER_BYTES or start + size > len(blob):
        raise ModelBlobError(f"header of {size} bytes overruns the {len(blob)}-byte blob")
    try:
        header = msgpack.unpackb(blob[start:start + size], raw=False)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
        raise ModelBlobError(f"header does not decode: {exc}") from None
    if type(header) is not dict or header.get("format") != FORMAT:
        found = header.get("format") if type(header) is dict else header
        raise ModelBlobError(f"blob format {found!r:.40} is not {FORMAT}")
    _check_config(header.get("board_type"), header.get("num_players"))
    if (header["board_type"], header["num_players"]) != (board_type, num_players):
        raise ModelBlobError(f"blob is a {header['board_type']} {header['num_players']}p model, "
                             f"not {board_type} {num_players}p")
    arch_fields = header.get("arch")
    if type(arch_fields) is not dict or set(arch_fields) != {"channels", "blocks",
                                                              "value_hidden"}:
        raise ModelBlobError(f"arch {arch_fields!r:.120} is not channels/blocks/value_hidden")
    arch = Arch(**arch_fields)
    arch.check()
    parent = header.get("parent")
    if parent is not None and (type(parent) is not str or len(parent) != 64):
        raise ModelBlobError(f"parent {parent!r:.80} is not None or a sha256 hex")
    info = ModelInfo(board_type, num_players, arch, parent, _training_map(header.get("training")))
    model = build_model(info)
    expected = model.net.state_dict()
    listed = header.get("tensors")
    if type(listed) is not list or [t[0] if type(t) is list and t else None
                                    for t in listed] != list(expected):
        raise ModelBlobError("tensor list does not match the architecture")
    state = {}
    pos = start + size
    for entry, (name, want) in zip(listed, expected.items(), strict=True):
        code = "i8" if want.dtype == torch.int64 else "f4"
        if entry[1:] != [code, list(want.shape)]:
            raise ModelBlobError(f"tensor {name} is {entry[1:]!r:.80}, expected "
                                 f"{[code, list(want.shape)]}")
        nbytes = want.numel() * _DTYPES[code][1].itemsize
        if pos + nbytes > len(blob):
            raise ModelBlobError(f"blob truncated in tensor {name}")
        array = np.frombuffer(blob, dtype=_DTYPES[code][1], count=want.numel(), offset=pos)
        if code == "f4" and not np.isfinite(array).all():
            raise ModelBlobError(f"tensor {name} holds non-finite weights")
        state[name] = torch.from_numpy(array.reshape(want.shape).copy())
        pos += nbytes
    if pos != len(blob):
        raise ModelBlobError(f"{len(blob) - pos} trailing bytes after the tensors")
    model.net.load_state_dict(state)
    return model


class _Inference:
    """``PolicyValueNet.forward`` as the evaluator runs it: batch norm folded into the
    convolutions, and the stem reading only the planes a player count can make non-zero
    (``features.live_planes``). The other planes are zero, or ``on_board``, a constant of
    the board whose convolution is folded into the stem's bias map, so the outputs equal
    the module's in eval mode up to float rounding. A snapshot of the weights it is built
    from (an evaluator serves one model; training works on a copy)."""

    def __init__(self, net: PolicyValueNet, board_type: str, num_players: int,
                 device: torch.device) -> None:
        with torch.no_grad():
            stem_w, stem_b = _fold(net.stem, net.stem_bn)
            on_board = torch.from_numpy(on_board_plane(board_type))[None, None]
            bias_map = F.conv2d(on_board, stem_w[:, ON_BOARD:ON_BOARD + 1], padding=1)[0]
            self.stem_w = stem_w[:, torch.from_numpy(live_planes(num_players))].contiguous()
            self.stem_bias = (bias_map + (stem_b + net.scalars.bias)[:, None, None])[None]
            self.scalar_w = net.scalars.weight.detach().t().contiguous()
            self.blocks = [(*_fold(b.conv1, b.bn1), *_fold(b.conv2, b.bn2)) for b in net.tower]
            mask = on_board.flatten()
            self.pool = (mask / mask.sum().clamp(min=1.0))[:, None]  # (area, 1): a mean
            self.linear = {name: (m.weight.detach().flatten(1).clone(), m.bias.detach().clone())
                           for name, m in (("maps", net.policy_maps), ("types", net.policy_types),
                                           ("hidden", net.value_hidden),
                                           ("value", net.value_out))}
        for name in ("stem_w", "stem_bias", "scalar_w", "pool"):
            setattr(self, name, getattr(self, name).to(device))
        self.blocks = [tuple(t.to(device) for t in b) for b in self.blocks]
        self.linear = {k: (w.to(device), b.to(device)) for k, (w, b) in self.linear.items()}

    def __call__(self, planes: torch.Tensor, scalars: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = F.conv2d(planes, self.stem_w, padding=1)
        x += self.stem_bias
        x += (scalars @ self.scalar_w.to(x.dtype))[:, :, None, None]
        x = torch.relu_(x)
        for w1, b1, w2, b2 in self.blocks:
            y = torch.relu_(F.conv2d(x, w1, b1, padding=1))
            x = torch.relu_(F.conv2d(y, w2, b2, padding=1).add_(x))
        pooled = (x.flatten(2) @ self.pool.to(x.dtype))[:, :, 0]
        summary = torch.cat([pooled, scalars.to(x.dtype)], 1)
        lin = self.linear
        hidden = torch.relu_(F.linear(summary, *lin["hidden"]))
        values = torch.tanh(F.linear(hidden, *lin["value"]))
        # The 1x1 policy convolution as one batched product (half oneDNN's time here).
        w, b = (t.to(x.dtype) for t in lin["maps"])
        batch, _, height, width = x.shape
        maps = torch.baddbmm(b[None, :, None].expand(batch, -1, height * width),
                             w.expand(batch, -1, -1), x.flatten(2))
        return (maps.view(batch, len(w), height, width), F.linear(summary, *lin["types"]),
                values)


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """The weight and bias of ``bn(conv(x))`` (eval mode) as one convolution."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    weight = conv.weight * scale[:, None, None, None]
    return weight.detach().contiguous(), (bn.bias - bn.running_mean * scale).detach()


@cache
def retain_freed_memory() -> bool:
    """Keep freed buffers of up to 32 MiB in the process heap, trimming it past 64 MiB.

    glibc's defaults return a freed block of the size of a batch's activations (0.5 MiB at
    128 square8 positions x 16 channels) to the kernel, so every forward pass faults its
    pages back in: a tenth of policy-only selfplay's CPU time went to page faults (system
    time, tools.bench selfplay). Process-wide, once; the cost is up to 64 MiB of freed
    memory kept per malloc arena. Returns whether the C library took the settings (False
    off glibc)."""
    try:
        mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    except (OSError, TypeError):  # no C library to load by that name (Windows)
        return False
    if mallopt is None:
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, 32 << 20)) and bool(mallopt(_M_TRIM_THRESHOLD,
                                                                          64 << 20))


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's malloc.h


def padded_batch(batch: int) -> int:
    """The batch size a forward pass of ``batch`` positions runs at: exact up to 8, then
    rounded up to a multiple of 8 (to 64), 16 (to 256) or 64: at most 1/8 more work."""
    step = 1 if batch <= 8 else 8 if batch <= 64 else 16 if batch <= 256 else 64
    return -(-batch // step) * step


class Evaluator:
    """Scores batches of positions with one model on one device (``retain_freed_memory``
    is applied to the process when the first one is built)."""

    def __init__(self, model: Model, device: str = "cpu") -> None:
        retain_freed_memory()
        self.model = model
        self.device = torch.device(device)
        self.net = model.net.to(self.device).eval()
        self.cfg = board_config(model.info.board_type)
        self._inference = _Inference(self.net, model.info.board_type, model.info.num_players,
                                     self.device)
        self.positions_evaluated = 0

    def forward(self, planes: np.ndarray, scalars: np.ndarray, autocast: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The network's outputs (policy maps, type logits, seat values) as float32 arrays
        for ``features.batch_planes(states, live_only=True)``.

        The batch is padded with empty positions to ``padded_batch`` size: oneDNN compiles
        a kernel per input shape (milliseconds each), and selfplay's batch shrinks one game
        at a time as a run ends; padding bounds the shapes it ever sees."""
        batch = len(planes)
        size = padded_batch(batch)
        if size > batch:
            planes = np.concatenate([planes, np.zeros((size - batch, *planes.shape[1:]),
                                                      dtype=planes.dtype)])
            scalars = np.concatenate([scalars, np.zeros((size - batch, *scalars.shape[1:]),
                                                        dtype=scalars.dtype)])
        p = torch.from_numpy(planes).to(self.device, non_blocking=True)
        s = torch.from_numpy(scalars).to(self.device, non_blocking=True)
        with torch.inference_mode():
            if autocast:
                with torch.autocast(self.device.type, dtype=torch.float16
                                    if self.device.type == "cuda" else torch.bfloat16):
                    out = self._inference(p, s)
            else:
                out = self._inference(p, s)
            return tuple(t[:batch].float().cpu().numpy() for t in out)  # type: ignore[return-value]

    def evaluate(
        self, states: list[GameState], legal: list[list[Move]], *, autocast: bool | None = None,
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Priors over each position's legal moves (in the order given) and the values of
        players 1..n for each position, ``(B, num_players)``. Mixed precision on CUDA."""
        if not states:
            return [], np.zeros((0, self.model.info.num_players), dtype=np.float32)
        planes, scalars = batch_planes(states, live_only=True)
        maps, type_logits, values = self.forward(
            planes, scalars, self.device.type == "cuda" if autocast is None else autocast)
        logits, offsets = policy_logits(maps, type_logits, legal, self.cfg)
        counts = np.diff(offsets)
        if not counts.all():
            raise ValueError(f"position {int(np.argmin(counts))} has no legal moves to score")
        # Softmax within each position's moves, as segment reductions over the flat logits.
        starts = offsets[:-1]
        e = np.exp(logits - np.repeat(np.maximum.reduceat(logits, starts), counts))
        flat = e / np.repeat(np.add.reduceat(e, starts), counts)
        bounds = offsets.tolist()
        priors = [flat[a:b] for a, b in zip(bounds, bounds[1:])]
        current = np.fromiter((s.current for s in states), dtype=np.int64, count=len(states))
        absolute = seat_values(values, current, self.model.info.num_players)
        self.positions_evaluated += len(states)
        return priors, absolute

    def parity_error(self, states: list[GameState], legal: list[list[Move]],
                     autocast: bool | None = None) -> float:
        """Largest difference between this evaluator's priors and values (mixed precision on
        CUDA by default) and float32 on the CPU over a batch: the check a CUDA worker runs
        once before it plays."""
        reference = Evaluator(Model(copy.deepcopy(self.net).cpu(), self.model.info), "cpu")
        p_ref, v_ref = reference.evaluate(states, legal, autocast=False)
        p_dev, v_dev = self.evaluate(states, legal, autocast=autocast)
        gap = max(float(np.abs(a - b).max()) for a, b in zip(p_ref, p_dev, strict=True))
        return max(gap, float(np.abs(v_ref - v_dev).max()))
