"""What an import did, per file and in total: every source row read is imported, already
present, or rejected with a reason (`read = imported + present + rejected`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Counts:
    read: int = 0
    imported: int = 0
    present: int = 0
    rejected: int = 0
    conflicts: int = 0  # matches: same id, other content (a row also counted above)
    parity_failed: int = 0  # games: imported, but do not replay through our engine
    reasons: Counter = field(default_factory=Counter)  # rejected, by reason
    resolutions: Counter = field(default_factory=Counter)  # conflicts, by outcome

    def reject(self, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1

    def add(self, other: Counts) -> None:
        for name in ("read", "imported", "present", "rejected", "conflicts", "parity_failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.reasons.update(other.reasons)
        self.resolutions.update(other.resolutions)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        counts = cls(*(int(data.get(k, 0)) for k in ("read", "imported", "present", "rejected",
                                                       "conflicts", "parity_failed")))
        counts.reasons.update(data.get("rejected_by_reason") or {})
        counts.resolutions.update(data.get("conflict_resolutions") or {})
        return counts

    def as_json(self, kind: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "read": self.read, "imported": self.imported, "present": self.present,
            "rejected": self.rejected, "rejected_by_reason": dict(sorted(self.reasons.items())),
        }
        if kind == "games":
            out["parity_failed"] = self.parity_failed
        else:
            out["conflicts"] = self.conflicts
            out["conflict_resolutions"] = dict(sorted(self.resolutions.items()))
        return out


@dataclass(slots=True)
class FileReport:
    path: str
    kind: str | None = None
    error: str | None = None
    games: Counts = field(default_factory=Counts)
    matches: Counts = field(default_factory=Counts)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileReport:
        return cls(data["path"], data.get("kind"), data.get("error"),
                   Counts.from_json(data.get("games") or {}),
                   Counts.from_json(data.get("matches") or {}), list(data.get("notes") or []))

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "kind": self.kind, "error": self.error,
            "games": self.games.as_json("games"), "matches": self.matches.as_json("matches"),
            "notes": self.notes,
        }


@dataclass(slots=True)
class ImportReport:
    files: list[FileReport]
    dry_run: bool
    strategy: str
    ratings: list[dict[str, Any]] = field(default_factory=list)

    def totals(self, kind: str) -> Counts:
        total = Counts()
        for f in self.files:
            total.add(getattr(f, kind))
        return total

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ImportReport:
        """A report a running node sent back (its own `as_json`)."""
        return cls([FileReport.from_json(f) for f in data["files"]], bool(data["dry_run"]),
                   str(data["conflicts"]), list(data.get("ratings") or []))

    @property
    def refused_conflicts(self) -> bool:
        """Conflicting rows refused under --conflicts raise: the import is not complete."""
        return self.totals("matches").resolutions.get("refused", 0) > 0

    @property
    def failed_files(self) -> list[FileReport]:
        return [f for f in self.files if f.error]

    def as_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run, "conflicts": self.strategy,
            "games": self.totals("games").as_json("games"),
            "matches": self.totals("matches").as_json("matches"),
            "files": [f.as_json() for f in self.files],
            "ratings": self.ratings,
        }

    def lines(self) -> list[str]:
        out = []
        for f in self.files:
            if f.error:
                out.append(f"{f.path}: FAILED: {f.error}")
                continue
            out.append(f"{f.path} ({f.kind}):")
            for kind in ("games", "matches"):
                c: Counts = getattr(f, kind)
                if c.read:
                    out.append("  " + _line(kind, c))
            out.extend(f"  note: {n}" for n in f.notes)
        out.append(("dry run, nothing written: " if self.dry_run else "total: ")
                    + "; ".join(_line(k, self.totals(k)) for k in ("games", "matches")))
        return out


def _line(kind: str, c: Counts) -> str:
    text = f"{kind} read {c.read}, imported {c.imported}, present {c.present}, rejected {c.rejected}"
    if kind == "games":
        text += f", parity failed {c.parity_failed}"
    else:
        text += f", conflicts {c.conflicts}"
        if c.resolutions:
            text += " (" + ", ".join(f"{k} {v}" for k, v in sorted(c.resolutions.items())) + ")"
    if c.reasons:
        text += "; rejected: " + ", ".join(f"{k} {v}" for k, v in c.reasons.most_common())
    return text
