"""The resource guard: may this node spend disk, memory and GPU memory on selfplay now?

Each resource is measured as the fraction in use (disk of the data dir's file system, RAM from
/proc/meminfo's MemAvailable, GPU memory of the device selfplay uses). Above `warn` a warning
is logged once per crossing; at or above `stop` selfplay must stop (the reference system's
70% / 80%). `check` is a pure function of the readings, so the scheduler's tests feed it any
numbers; `read_usage` takes the readings from this machine.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("ringrift.resources")

RESOURCES = ("disk", "ram", "gpu")


@dataclass(frozen=True, slots=True)
class Limits:
    warn: float = 0.70
    stop: float = 0.80

    def __post_init__(self) -> None:
        if not 0.0 < self.warn <= self.stop <= 1.0:
            raise ValueError(f"resource limits warn {self.warn} / stop {self.stop}: expected "
                             "0 < warn <= stop <= 1")


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool  # selfplay may run
    warnings: tuple[str, ...]  # resources over their warning level
    reason: str  # why not, when not ok


def check(usage: dict[str, float | None], limits: dict[str, Limits]) -> Verdict:
    """The verdict for fractions in use (None: not measured here, e.g. no GPU)."""
    warnings = []
    stops = []
    for name in RESOURCES:
        used = usage.get(name)
        if used is None:
            continue
        if used >= limits[name].stop:
            stops.append(f"{name} {used:.0%} >= stop {limits[name].stop:.0%}")
        elif used >= limits[name].warn:
            warnings.append(f"{name} {used:.0%} >= warn {limits[name].warn:.0%}")
    return Verdict(not stops, tuple(warnings), "; ".join(stops))


def _ram_fraction(meminfo: Path = Path("/proc/meminfo")) -> float | None:
    try:
        fields = dict(line.split(":", 1) for line in meminfo.read_text().splitlines()
                      if ":" in line)
        total = int(fields["MemTotal"].split()[0])
        available = int(fields["MemAvailable"].split()[0])
    except (OSError, KeyError, ValueError, IndexError):
        return None
    return 1.0 - available / total if total > 0 else None


def _gpu_fraction() -> float | None:
    import torch

    if not torch.cuda.is_available():
        return None
    free, total = torch.cuda.mem_get_info()
    return 1.0 - free / total if total else None


def read_usage(data_dir: Path, device: str) -> dict[str, float | None]:
    """This machine's readings: disk of `data_dir`, RAM, and GPU memory when on CUDA."""
    disk = shutil.disk_usage(data_dir)
    return {"disk": disk.used / disk.total if disk.total else None, "ram": _ram_fraction(),
            "gpu": _gpu_fraction() if device == "cuda" else None}


class Guard:
    """Holds the limits and the reader; logs each resource's warning once per crossing."""

    def __init__(self, limits: dict[str, Limits],
                 read: Callable[[], dict[str, float | None]]) -> None:
        self.limits = limits
        self._read = read
        self._warned: set[str] = set()
        self.last = Verdict(True, (), "")

    def verdict(self) -> Verdict:
        self.last = check(self._read(), self.limits)
        warned = {w.split()[0] for w in self.last.warnings}
        for name in warned - self._warned:
            log.warning("resource guard: %s", next(w for w in self.last.warnings
                                                    if w.startswith(name)))
        self._warned = warned
        return self.last
