"""In-memory stores with the SQLite stores' merge rules, digests and sync calls, synchronous.

The deterministic mesh simulator runs hundreds of nodes in one process; each gets a
`MemoryStores`. Validation (storage.rows), merge decisions (storage.merge) and digests
(storage.digests) are the very code the SQLite stores use, so a simulated node converges
exactly as a real one would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgpack

from storage.digests import NUM_BUCKETS, SUBS_PER_BUCKET, Digests, hash_rows
from storage.hlc import HybridClock
from storage.merge import (
    InvalidRow,
    MergeStats,
    Row,
    Strategy,
    plan_merge,
    validate_batch,
)
from storage.packed import order_keys, sub_ranges, within_budget
from storage.rows import (
    row_hlc,
    screen_game,
    screen_match,
    screen_matches,
    validate_game,
    validate_match,
    validate_registry,
)
from storage.sync_limits import (
    check_bucket_list,
    check_key_list,
    check_state_key,
    decode_state,
    encode_state,
)

# One reusable packer: the simulator serves many rows (msgpack.packb builds one per call).
_pack = msgpack.Packer(use_bin_type=True).pack


class MemoryStore:
    """One store (games, matches or the model registry) held in dicts."""

    def __init__(
        self, validate: Callable[[object], Row], clock: HybridClock | None = None,
        screen: Callable[[object], Row | None] | None = None,
        screen_all: Callable[[Sequence[object]], list[Row] | None] | None = None,
    ):
        self._validate = validate
        self._screen = screen
        self._screen_all = screen_all
        self._clock = clock
        self._rows: dict[str, Row] = {}
        self._buckets: list[dict[str, bytes]] = [{} for _ in range(NUM_BUCKETS)]
        self._digests = Digests()
        # The first few validation errors of the last merge, for logs and tests.
        self.last_errors: list[str] = []

    # --- the sync calls the mesh uses ---------------------------------------------------

    def summary(self) -> tuple[int, str]:
        """(row count, root hash hex): what a manifest carries."""
        return len(self._rows), self._digests.root_hex()

    def bucket_digests(self) -> list[int]:
        return self._digests.as_list()

    def bucket_entries(self, buckets: Sequence[int]) -> list[tuple[str, bytes]]:
        """(key, version) of every row in the given buckets."""
        check_bucket_list(buckets)
        return [item for b in sorted(set(buckets)) for item in self._buckets[b].items()]

    def rows(self, keys: Sequence[str]) -> list[dict]:
        """Wire dicts of the held rows among `keys` (unknown keys are left out)."""
        check_key_list(keys)
        held = self._rows
        return [dict(held[k].data) for k in keys if k in held]

    def packed_rows(self, keys: Sequence[str], max_bytes: int) -> tuple[bytes, int, int]:
        """`SyncedStore.packed_rows`: the held rows among `keys` as one stream, within budget."""
        check_key_list(keys)
        held = self._rows
        packed = [_pack(held[k].data) if k in held else b"" for k in keys]
        served = within_budget(list(map(len, packed)), max_bytes)
        parts = [p for p in packed[:served] if p]
        return b"".join(parts), len(parts), served

    def range_rows(self, first_sub: int, last_sub: int, after: str | None, max_bytes: int,
                   max_rows: int) -> tuple[bytes, int, str | None]:
        """`SyncedStore.range_rows`: rows of sub-buckets `first_sub..last_sub` after `after`,
        in walk order, as one stream within budget; with the key to resume after, if any."""
        bounds = sub_ranges(first_sub, last_sub)
        keys = [k for b in range(first_sub // SUBS_PER_BUCKET, last_sub // SUBS_PER_BUCKET + 1)
                for k in self._buckets[b]]
        start = order_keys([after])[0] if after is not None else None
        ordered = sorted(o for o in order_keys(keys)
                         if any(lo <= o[0] <= hi for lo, hi in bounds)
                         and (start is None or o > start))
        listed = ordered[:max_rows]
        packed = [_pack(self._rows[k].data) for _, k in listed]
        served = within_budget(list(map(len, packed)), max_bytes)
        more = served < len(ordered)
        return b"".join(packed[:served]), served, listed[served - 1][1] if more else None

    def merge(self, rows: Sequence[object], strategy: Strategy = Strategy.LAST_WRITE_WINS) -> MergeStats:
        """Validate and merge a batch; invalid rows are counted and skipped."""
        valid, invalid, self.last_errors = validate_batch(rows, self._validate, self._screen,
                                                          screen_all=self._screen_all)
        held = self._rows
        versions = {r.key: held[r.key].version for r in valid if r.key in held}
        plan = plan_merge(strategy, valid, versions, lambda k: held[k].data, invalid)
        if plan.writes:
            self._apply(list(plan.writes.values()), plan.replaced)
        return plan.stats

    def wanted(self, entries: Sequence[tuple[str, bytes]]) -> list[str]:
        """Keys of listed (key, version) pairs worth pulling: all of them (the simulator's
        nodes refuse only malformed rows, which no simulated peer holds)."""
        return [key for key, _ in entries]

    # --- local helpers ------------------------------------------------------------------

    def put(self, row: dict) -> MergeStats:
        """Merge one locally made row (a builder's dict); raises InvalidRow if it is bad."""
        stats = self.merge([row])
        if stats.invalid:
            raise InvalidRow(self.last_errors[0])
        return stats

    def get(self, key: str) -> dict | None:
        row = self._rows.get(key)
        return None if row is None else dict(row.data)

    def keys(self) -> list[str]:
        return list(self._rows)

    def __len__(self) -> int:
        return len(self._rows)

    def _apply(self, writes: list[Row], replaced: dict[str, bytes]) -> None:
        old_keys = list(replaced)
        old_buckets, old_hashes = hash_rows(old_keys, [replaced[k] for k in old_keys])
        new_buckets, new_hashes = hash_rows([w.key for w in writes], [w.version for w in writes])
        self._digests.toggle(old_buckets, old_hashes)
        self._digests.toggle(new_buckets, new_hashes)
        for row, bucket in zip(writes, new_buckets.tolist(), strict=True):
            self._rows[row.key] = row
            self._buckets[bucket][row.key] = row.version
        if self._clock is not None:
            self._clock.update(max(row_hlc(w.data) for w in writes))


class MemoryState:
    """The node-state key-value table, in memory (the simulator persists nothing)."""

    def __init__(self) -> None:
        self._values: dict[str, object] = {}

    def get_state(self, key: str, default: object = None) -> object:
        return self._values.get(key, default)

    def set_state(self, key: str, value: object) -> None:
        # Round-trip through the stored encoding so the simulator sees what SQLite would return.
        self._values[check_state_key(key)] = decode_state(encode_state(value))


class MemoryStores:
    """One simulated node's stores: games, matches, models (registry) and state."""

    def __init__(self, clock: HybridClock | None = None) -> None:
        self.games = MemoryStore(validate_game, clock, screen_game)
        self.matches = MemoryStore(validate_match, clock, screen_match, screen_matches)
        self.models = MemoryStore(validate_registry, clock)
        self.state = MemoryState()

    def by_name(self) -> dict[str, MemoryStore]:
        """The synced stores by the names manifests use."""
        return {"games": self.games, "matches": self.matches, "models": self.models}
