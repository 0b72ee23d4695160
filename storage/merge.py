"""The merge rules, in one place: versions, strategies, conflict resolution and statistics.

A row is a (key, version, wire dict). Versions are `bytes` that compare lexicographically in
the order the rules need:

- match rows: 8-byte big-endian hlc + node id bytes (`match_version`),
- aliases: 8-byte big-endian term + 8-byte hlc (`alias_version`),
- immutable rows (games, model metadata, promotion events): their content hash.

`plan_merge` applies a batch to a view of the held versions and says what to write; the
in-memory and the SQLite stores both call it, so they cannot disagree on an outcome.

Counting: every incoming row lands in exactly one of `added` (key was new), `resolved` (it
replaced the held row), `skipped` (it did not), `invalid` (failed validation: not a row of its
kind, or one whose content does not match its id) and `refused` (well-formed, but the
receiver's admission said no: `storage.admission`). `conflicts`
counts, in addition, rows whose version equals the held one while the content differs: the
case the rules make impossible, resolved by content hash when seen.
"""

from __future__ import annotations

import enum
import hashlib
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import msgpack


_KEY = operator.itemgetter(0)  # a Row's key


class Strategy(enum.Enum):
    """What to do when an incoming row meets a held row with the same key."""

    SKIP = "skip"  # keep what is held
    LAST_WRITE_WINS = "last_write_wins"  # keep the higher version (the mesh uses this)
    FIRST_WRITE_WINS = "first_write_wins"  # keep the lower version
    RAISE = "raise"  # refuse the batch when held and incoming differ


class InvalidRow(ValueError):
    """A row failed validation; the message names the field, the value and what was expected.

    `reason` is the refusal's label in the counters ("malformed": not a row of its kind;
    "inconsistent": its fields contradict each other; "too_large"). `key` and `version` are
    set when the row got far enough to have them, so the refusal can be remembered.
    """

    def __init__(self, message: str, reason: str = "malformed", key: str | None = None,
                 version: bytes | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.key = key
        self.version = version


class MergeConflictError(Exception):
    """Strategy.RAISE met an incoming row that differs from the held one."""

    def __init__(self, key: str, held: bytes, incoming: bytes) -> None:
        super().__init__(
            f"row {key!r}: held version {held.hex()} differs from incoming {incoming.hex()}"
        )
        self.key = key
        self.held = held
        self.incoming = incoming


@dataclass(frozen=True, slots=True)
class MergeStats:
    added: int = 0
    skipped: int = 0
    conflicts: int = 0
    resolved: int = 0
    invalid: int = 0
    refused: int = 0

    def __add__(self, other: MergeStats) -> MergeStats:
        return MergeStats(
            self.added + other.added,
            self.skipped + other.skipped,
            self.conflicts + other.conflicts,
            self.resolved + other.resolved,
            self.invalid + other.invalid,
            self.refused + other.refused,
        )

    @property
    def changed(self) -> int:
        """Rows that changed the store (new or replacing)."""
        return self.added + self.resolved


class Row(NamedTuple):
    """A validated row: its store key, its version and its wire dict.

    `payload` is the stored encoding of a kind's bulky content when validation had to compute
    it anyway (a game's packed moves), so the SQLite store does not encode it a second time.
    A NamedTuple rather than a frozen dataclass: the bulk path builds one per incoming row and
    a frozen dataclass's __init__ costs several times more.
    """

    key: str
    version: bytes
    data: dict
    payload: bytes = b""


def match_version(hlc: int, node_id: str) -> bytes:
    return hlc.to_bytes(8, "big") + node_id.encode()


def alias_version(term: int, hlc: int) -> bytes:
    return term.to_bytes(8, "big") + hlc.to_bytes(8, "big")


def canonical_bytes(values: list | tuple) -> bytes:
    """The canonical encoding content hashes are taken over (msgpack of a positional list)."""
    return msgpack.packb(list(values), use_bin_type=True)


def content_hash(data: Mapping) -> bytes:
    """A hash of a wire dict's content, independent of key order (the tie-breaker)."""
    return hashlib.sha256(canonical_bytes(sorted(data.items()))).digest()


def validate_batch(
    rows: Sequence[object], validate: Callable[[object], Row],
    screen: Callable[[object], Row | None] | None = None,
    on_invalid: Callable[[object, InvalidRow], None] | None = None,
    screen_all: Callable[[Sequence[object]], list[Row] | None] | None = None,
) -> tuple[list[Row], int, list[str]]:
    """Validate each row; returns (valid rows, invalid count, the first few error messages).

    `screen`, when given, is a kind's fast path: it returns the same Row `validate` would for
    a row it can vouch for, and None for anything else, which then takes the detailed path
    (so a batch of good rows never pays for building error messages, and a bad row still gets
    one). A screen must never accept a row that `validate` refuses. `on_invalid(row, error)`
    is told of each row refused. `screen_all`, a kind's fast path for a whole batch, returns
    the Rows `screen` would make of a batch it accepts whole, and None otherwise.
    """
    if not isinstance(rows, (list, tuple)):
        raise TypeError(f"a merge batch must be a list of rows, got {type(rows).__name__}")
    if screen_all is not None and (whole := screen_all(rows)) is not None:
        return whole, 0, []
    if screen is not None:
        screened = list(map(screen, rows))
        if None not in screened:
            return screened, 0, []  # type: ignore[return-value]  # no None left
    else:
        screened = [None] * len(rows)
    valid: list[Row] = []
    invalid = 0
    errors: list[str] = []
    for obj, row in zip(rows, screened, strict=True):
        if row is not None:
            valid.append(row)
            continue
        try:
            valid.append(validate(obj))
        except InvalidRow as exc:
            invalid += 1
            if on_invalid is not None:
                on_invalid(obj, exc)
            if len(errors) < 5:
                errors.append(str(exc))
    return valid, invalid, errors


@dataclass(slots=True)
class MergePlan:
    """What a batch does to a store: rows to write and the versions they replace."""

    writes: dict[str, Row] = field(default_factory=dict)
    replaced: dict[str, bytes] = field(default_factory=dict)  # key -> version held before
    stats: MergeStats = MergeStats()


def _tie_winner(held: dict, incoming: dict) -> bool:
    """Equal versions, different content: the higher content hash wins, on every node alike."""
    return content_hash(incoming) > content_hash(held)


def plan_merge(
    strategy: Strategy,
    batch: list[Row],
    held_versions: Mapping[str, bytes],
    held_row: Callable[[str], dict],
    invalid: int = 0,
) -> MergePlan:
    """Apply `batch` in order to the held versions; nothing is written here.

    `held_versions` needs only the keys of the batch; `held_row(key)` is asked for a held
    row's wire dict only when its version ties with an incoming one. Raises
    MergeConflictError under Strategy.RAISE before anything is written.
    """
    plan = MergePlan()
    if not held_versions:
        # Nothing held (an import into new keys): every row is added unless a key repeats
        # within the batch, which the general loop below then orders.
        writes = dict(zip(map(_KEY, batch), batch))
        if len(writes) == len(batch):
            plan.writes = writes
            plan.stats = MergeStats(added=len(batch), invalid=invalid)
            return plan
    added = skipped = conflicts = resolved = 0
    writes = plan.writes
    for row in batch:
        key = row.key
        pending = writes.get(key)
        if pending is not None:
            held_version: bytes | None = pending.version
        else:
            held_version = held_versions.get(key)
        if held_version is None:
            writes[key] = row
            added += 1
            continue
        new_version = row.version
        if new_version == held_version:
            held_data = pending.data if pending is not None else held_row(key)
            if held_data == row.data:
                skipped += 1
                continue
            if strategy is Strategy.RAISE:
                raise MergeConflictError(key, held_version, new_version)
            conflicts += 1
            take = strategy is not Strategy.SKIP and _tie_winner(held_data, row.data)
        elif strategy is Strategy.LAST_WRITE_WINS:
            take = new_version > held_version
        elif strategy is Strategy.FIRST_WRITE_WINS:
            take = new_version < held_version
        elif strategy is Strategy.SKIP:
            take = False
        else:
            raise MergeConflictError(key, held_version, new_version)
        if not take:
            skipped += 1
            continue
        if pending is None:
            plan.replaced[key] = held_version
        resolved += 1
        writes[key] = row
    plan.stats = MergeStats(added, skipped, conflicts, resolved, invalid)
    return plan
