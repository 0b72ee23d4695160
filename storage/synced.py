"""The SQLite side of a synced store: digests, the sync calls and the bulk merge path.

A store spans one or more tables (the model registry spans three, told apart by key prefix)
and keeps one set of bucket digests over all of them, in memory: rebuilt from the stored row
hashes at open, updated only after a merge's transaction has committed, so the digests never
describe rows that a rollback took away.

Rows are found by their key's 64-bit hash (`khash`, the one the digests use; schema v2): a
lookup asks for the hashes of the wanted keys and keeps the records whose key is one of them,
so two keys with one hash are still told apart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import operator
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path

import msgpack
import msgspec
import numpy as np

from storage.admission import Admission, KindCheck
from storage.database import Database
from storage.digests import Digests, bucket_ranges, hash_rows, key_hashes, row_hashes
from storage.files import atomic_write_bytes
from storage.hlc import HybridClock
from storage.merge import (
    InvalidRow,
    MergeStats,
    Row,
    Strategy,
    plan_merge,
    validate_batch,
)
from storage.packed import malformed, order_keys, sub_ranges, within_budget
from storage.rows import row_hlc
from storage.sync_limits import check_bucket_list, check_key_list
from storage.tables import Table

_KEY, _VERSION, _DATA = map(operator.itemgetter, range(3))  # a Row's fields

_KHASH_IN = "khash IN (SELECT value FROM json_each(?))"
# The JSON text of a list of ints for json_each: msgspec's encoder, a tenth of json.dumps's cost.
_json = msgspec.json.Encoder().encode
QUARANTINE_DIR = "quarantine"
# What decoding a damaged stored body raises (msgpack's errors are ValueErrors; a body that
# decodes to something other than a map fails as a TypeError or AttributeError).
UNREADABLE = (ValueError, TypeError, AttributeError, msgpack.UnpackException)

log = logging.getLogger("ringrift.storage")
_S56 = np.uint64(56)

Fetch = Callable[[str, Sequence[object]], Awaitable[Sequence[tuple]]]


def _signed_key_hashes(keys: Sequence[str]) -> list[int]:
    """Key hashes as the signed 64-bit ints SQLite stores."""
    return key_hashes(keys).view(np.int64).tolist()


async def _fetch_keys(fetch: Fetch, table: Table, columns: str, keys: Sequence[str],
                      hashes: list[int] | None = None) -> list[tuple]:
    """`SELECT columns` (the first being `key`) of the held rows among `keys`, whose signed
    key hashes the caller may pass when it has them already."""
    records = await fetch(
        f"SELECT {columns} FROM {table.name} WHERE {_KHASH_IN}",
        (_json(_signed_key_hashes(keys) if hashes is None else hashes),),
    )
    if not records:
        return []
    wanted = set(keys)
    return [r for r in records if r[0] in wanted]


def _keep_records(folder: Path, table: str, records: list[tuple]) -> None:
    folder.mkdir(exist_ok=True)
    for record in records:
        name = hashlib.sha256(record[0].encode()).hexdigest()[:32]
        atomic_write_bytes(folder / f"{table}-{name}.msgpack",
                           msgpack.packb(list(record), use_bin_type=True), mode=0o600)


class SyncedStore:
    """Base of the games, matches and model-registry stores."""

    def __init__(
        self, db: Database, tables: Sequence[Table], validate: Callable[[object], Row],
        clock: HybridClock, screen: Callable[[object], Row | None] | None = None,
        screen_all: Callable[[Sequence[object]], list[Row] | None] | None = None,
    ) -> None:
        self._db = db
        self._tables = tuple(tables)
        self._validate = validate
        # The kind's fast paths (merge.validate_batch): row by row, and a whole batch at once.
        self._screen = screen
        self._screen_all = screen_all
        self._clock = clock
        self._digests = Digests()
        self._count = 0
        # The first few validation errors of the last merge, for logs and tests.
        self.last_errors: list[str] = []
        # Stored rows found unreadable and moved out (exported as a counter).
        self.quarantined = 0
        # The receiver's refusals of well-formed rows (`open_stores` sets it); None takes all.
        self.admission: Admission | None = None

    async def load(self) -> None:
        """Rebuild digests and count from the stored (khash, h) of every row."""
        buckets: list[np.ndarray] = []
        hashes: list[np.ndarray] = []
        for table in self._tables:
            records = await self._db.fetchall(f"SELECT khash, h FROM {table.name}")
            if records:
                pairs = np.array(records, dtype=np.int64).view(np.uint64)
                buckets.append((pairs[:, 0] >> _S56).astype(np.intp))
                hashes.append(pairs[:, 1])
        if buckets:
            self._digests = Digests.from_hashes(np.concatenate(buckets), np.concatenate(hashes))
        self._count = sum(len(b) for b in buckets)

    def _table_of(self, key: str) -> Table | None:
        for table in self._tables:
            if key.startswith(table.prefix):
                return table
        return None

    def _by_table(self, keys: Sequence[str]) -> dict[Table, list[str]]:
        if len(self._tables) == 1 and not self._tables[0].prefix:
            return {self._tables[0]: list(keys)} if keys else {}
        groups: dict[Table, list[str]] = {}
        for key in keys:
            table = self._table_of(key)
            if table is not None:
                groups.setdefault(table, []).append(key)
        return groups

    # --- the sync calls the mesh uses ---------------------------------------------------

    async def summary(self) -> tuple[int, str]:
        """(row count, root hash hex): what a manifest carries."""
        return self._count, self._digests.root_hex()

    async def bucket_digests(self) -> list[int]:
        return self._digests.as_list()

    async def bucket_entries(self, buckets: Sequence[int]) -> list[tuple[str, bytes]]:
        """(key, version) of every row in the given buckets."""
        check_bucket_list(buckets)
        ranges = bucket_ranges(buckets)
        if not ranges:
            return []
        # A bucket is the top byte of the key hash: a range scan of the khash index each.
        where = " OR ".join(["khash BETWEEN ? AND ?"] * len(ranges))
        bounds = [bound for pair in ranges for bound in pair]
        entries: list[tuple[str, bytes]] = []
        for table in self._tables:
            entries += await self._db.fetchall(
                f"SELECT key, version FROM {table.name} WHERE {where}", bounds
            )
        return entries

    async def rows(self, keys: Sequence[str]) -> list[dict]:
        """Wire dicts of the held rows among `keys` (unknown keys are left out)."""
        check_key_list(keys)
        out: list[dict] = []
        for table, group in self._by_table(keys).items():
            records = await _fetch_keys(self._db.fetchall, table, table.stored_columns, group)
            out += await self._wire_rows(table, records)
        return out

    async def packed_rows(self, keys: Sequence[str], max_bytes: int) -> tuple[bytes, int, int]:
        """The held rows among `keys` as one stream (`storage.packed`): `(stream, rows in it,
        keys answered)`. The keys answered are a prefix of `keys` whose rows fit `max_bytes`
        (at least one key); a key not held is answered by its absence."""
        check_key_list(keys)
        groups = self._by_table(keys)
        found: dict[str, tuple[Table, tuple]] = {}
        served = len(keys)
        async with self._db.reading() as conn:
            fetch = conn.execute_fetchall
            if any(table.payload_field for table in groups):
                # Rows with a payload can be large: size them before reading any.
                sizes: dict[str, int] = {}
                for table, group in groups.items():
                    sizes.update(await _fetch_keys(fetch, table, f"key, {table.size_sql}", group))
                served = within_budget([sizes.get(k, 0) for k in keys], max_bytes)
                groups = self._by_table(keys[:served])
            for table, group in groups.items():
                for record in await _fetch_keys(fetch, table, table.stored_columns, group):
                    found[record[0]] = (table, record)
        if served == len(keys) and sum(len(r[1]) for _, r in found.values()) > max_bytes:
            # Small rows only (no payload), but many: cut the answer at the budget.
            served = within_budget([len(found[k][1][1]) if k in found else 0 for k in keys],
                                   max_bytes)
        parts = await self._packed([hit for k in keys[:served]
                                    if (hit := found.get(k)) is not None])
        return b"".join(parts), len(parts), served

    async def range_rows(self, first_sub: int, last_sub: int, after: str | None,
                         max_bytes: int, max_rows: int) -> tuple[bytes, int, str | None]:
        """The rows whose key hash lies in sub-buckets `first_sub..last_sub`, after the key
        `after`, in walk order (`storage.packed`), as one stream within `max_bytes` (at least
        one row) and `max_rows`: `(stream, rows in it, resume key)`; the resume key is None
        when the range holds nothing more."""
        intervals = sub_ranges(first_sub, last_sub)
        where = "(" + " OR ".join(["khash BETWEEN ? AND ?"] * len(intervals)) + ")"
        params: list[object] = [bound for pair in intervals for bound in pair]
        if after is not None:
            ((after_hash, _),) = order_keys([after])
            where += " AND (khash > ? OR (khash = ? AND key > ?))"
            params += [after_hash, after_hash, after]
        order = f"ORDER BY khash, key LIMIT {int(max_rows) + 1}"
        listed: list[tuple[int, str, int, Table, tuple | None]] = []
        async with self._db.reading() as conn:
            fetch = conn.execute_fetchall
            for table in self._tables:
                if table.payload_field:  # large rows: sized first, read only if served
                    sql = f"SELECT khash, key, {table.size_sql} FROM {table.name} WHERE {where}"
                    listed += [(h, k, n, table, None) for h, k, n in
                               await fetch(f"{sql} {order}", params)]
                else:
                    sql = (f"SELECT khash, {table.stored_columns} FROM {table.name} "
                           f"WHERE {where}")
                    listed += [(r[0], r[1], len(r[2]), table, r[1:]) for r in
                               await fetch(f"{sql} {order}", params)]
            if len(self._tables) > 1:
                listed.sort(key=lambda item: (item[0], item[1]))
            more = len(listed) > max_rows
            served = listed[:within_budget([item[2] for item in listed[:max_rows]], max_bytes)]
            more = more or len(served) < len(listed)
            unread: dict[Table, list[str]] = {}
            for _, key, _, table, record in served:
                if record is None:
                    unread.setdefault(table, []).append(key)
            records: dict[str, tuple] = {}
            for table, group in unread.items():
                for record in await _fetch_keys(fetch, table, table.stored_columns, group):
                    records[record[0]] = record
        parts = await self._packed([(table, record if record is not None else records[key])
                                    for _, key, _, table, record in served
                                    if record is not None or key in records])
        return b"".join(parts), len(parts), served[-1][1] if more and served else None

    async def _packed(self, found: list[tuple[Table, tuple]]) -> list[bytes]:
        """Stored records as their wire encodings (`Table.packed`: nothing decoded), checked
        to be one msgpack map each; one that is not is quarantined and left out, never served
        (as `_wire_rows` does for decoded reads)."""
        parts = [table.packed(record) for table, record in found]
        bad = malformed(parts)
        if not bad:
            return parts
        by_table: dict[Table, list[tuple]] = {}
        for i in bad:
            by_table.setdefault(found[i][0], []).append(found[i][1])
        for table, records in by_table.items():
            await self._quarantine(table, records)
        skip = set(bad)
        return [part for i, part in enumerate(parts) if i not in skip]

    async def _wire_rows(self, table: Table, records: Sequence[tuple]) -> list[dict]:
        """Stored records (`table.select_sql`'s columns) as wire dicts; a record that cannot be
        read back is quarantined (`_quarantine`) and left out, never served."""
        try:
            return [table.to_wire(r) for r in records]
        except UNREADABLE:
            pass
        out: list[dict] = []
        bad: list[tuple] = []
        for record in records:
            try:
                out.append(table.to_wire(record))
            except UNREADABLE:
                bad.append(record)
        await self._quarantine(table, bad)
        return out

    async def _quarantine(self, table: Table, records: list[tuple]) -> None:
        """Move unreadable rows out of the store: their stored bytes to `quarantine/` beside
        the database (kept for the operator), the rows out of the table and the digests, so
        a good copy is pulled from a peer and sync never trips on them again."""
        keys = [r[0] for r in records]
        self.quarantined += len(keys)
        log.error("store %s: %d stored row(s) unreadable, quarantined: %s", table.name,
                  len(keys), ", ".join(k[:80] for k in keys[:5]))
        folder = self._db.path.parent / QUARANTINE_DIR
        try:
            await asyncio.to_thread(_keep_records, folder, table.name, records)
            async with self._db.transaction() as conn:
                held = await _fetch_keys(conn.execute_fetchall, table, "key, version, rowid",
                                         keys)
                await conn.execute(
                    f"DELETE FROM {table.name} WHERE rowid IN (SELECT value FROM json_each(?))",
                    (json.dumps([r[2] for r in held]),),
                )
        except OSError as exc:
            # Skipped all the same; tried again the next time the rows are read.
            log.error("store %s: quarantined rows not moved out: %s", table.name, exc)
            return
        self._digests.toggle(*hash_rows([r[0] for r in held], [r[1] for r in held]))
        self._count -= len(held)

    async def get(self, key: str) -> dict | None:
        found = await self.rows([key])
        return found[0] if found else None

    async def merge(
        self, rows: Sequence[object], strategy: Strategy = Strategy.LAST_WRITE_WINS,
        *, guard: Callable[[], None] | None = None,
    ) -> MergeStats:
        """Validate and merge a batch in one transaction; invalid rows are counted, skipped.

        `guard`, when given, runs inside the transaction before anything is read: a check that
        must hold at the moment of writing (fencing) raises there and the batch is not written.
        """
        admission = self.admission
        valid, invalid, self.last_errors = validate_batch(
            rows, self._validate, self._screen,
            None if admission is None else admission.invalid, self._screen_all,
        )
        refused = 0
        if valid and admission is not None:
            kept = admission.admit(valid, self._check)
            refused = len(valid) - len(kept)
            valid = kept
        if not valid:
            return MergeStats(invalid=invalid, refused=refused)
        # The write runs to its end even if our caller is cancelled: a commit that happened
        # must reach the in-memory digests, or they would describe rows the database lacks.
        stats = await asyncio.shield(self._write(valid, invalid, strategy, guard))
        return replace(stats, refused=refused) if refused else stats

    async def _write(
        self, valid: list[Row], invalid: int, strategy: Strategy,
        guard: Callable[[], None] | None,
    ) -> MergeStats:
        # Sorted by key hash (stable: a key repeated in the batch keeps its order), the rows'
        # index entries go in one sweep, not all over the index; and what a single-table batch
        # of new rows will insert is made before the lock, while another batch may be writing.
        # It is made in arrival order and only then put in key-hash order: the rows' dicts lie
        # in memory in the order they arrived, and reading them in hash order is a cache miss
        # per field (it tripled the cost of making the parameters of a 10,000-row batch).
        keys = list(map(_KEY, valid))
        hashed = key_hashes(keys)
        signed = hashed.view(np.int64)
        order = np.argsort(signed, kind="stable").tolist()
        ready: tuple[np.ndarray, np.ndarray, list[tuple[str, list]]] | None = None
        if len(self._tables) == 1:
            buckets, hashes = row_hashes(hashed, list(map(_VERSION, valid)))
            ready = (buckets, hashes, self._tables[0].inserts(
                valid, signed.tolist(), hashes.view(np.int64).tolist(), order))
        # The newest stamp the batch carries, read while its rows are still in the cache: the
        # clock takes it when every row is written (else the stamps of those written).
        latest = max(map(row_hlc, map(_DATA, valid)))
        if len(order) > 1:  # itemgetter of one index returns no tuple
            pick = operator.itemgetter(*order)
            valid, keys = list(pick(valid)), list(pick(keys))
        groups = self._by_table(keys)
        # One table: the key hashes in batch order serve its lookup of held rows as they are.
        sorted_hashes = np.sort(signed).tolist() if len(groups) == 1 else None
        async with self._db.transaction() as conn:
            if guard is not None:
                guard()
            held: dict[str, bytes] = {}
            rowids: dict[str, int] = {}
            stored: dict[str, tuple] = {}  # key -> (key, body...): for tie-breaks
            for table, table_keys in groups.items():
                # Content-addressed rows never need their body: an equal version is equal content.
                columns = "key, version, rowid" + (
                    "" if table.content_addressed else ", " + table.stored_columns
                )
                for record in await _fetch_keys(
                    conn.execute_fetchall, table, columns, table_keys, sorted_hashes
                ):
                    key = record[0]
                    held[key] = record[1]
                    rowids[key] = record[2]
                    if not table.content_addressed:
                        stored[key] = record[3:]

            # Content-addressed rows whose version ties with the held one carry its content.
            same = {r[0]: r[2] for r in valid if held.get(r[0]) == r[1]} if held else {}

            def held_row(key: str) -> dict:
                record = stored.get(key)
                if record is None:
                    return same[key]
                table = self._table_of(key)
                assert table is not None
                return table.to_wire(record)

            plan = plan_merge(strategy, valid, held, held_row, invalid)
            if not plan.writes:
                return plan.stats
            writes = list(plan.writes.values())
            parts: dict[Table, tuple[list[Row], list[tuple[str, list]]]] = {}
            if ready is not None and len(writes) == len(valid):
                # Every row written, in batch order: what was made before the lock holds.
                new_buckets, new_hashes, statements = ready
                parts[self._tables[0]] = (writes, statements)
            else:
                hashed = key_hashes(list(plan.writes))
                new_buckets, new_hashes = row_hashes(hashed, [w[1] for w in writes])
                khashes, signed = hashed.view(np.int64).tolist(), new_hashes.view(np.int64).tolist()
                split: dict[Table, tuple[list[Row], list[int], list[int]]] = {}
                for row, khash, h in zip(writes, khashes, signed, strict=True):
                    table = self._table_of(row.key)
                    assert table is not None  # validated keys always carry a known prefix
                    part = split.setdefault(table, ([], [], []))
                    part[0].append(row)
                    part[1].append(khash)
                    part[2].append(h)
                for table, (rows, table_khashes, table_hashes) in split.items():
                    parts[table] = (rows, table.inserts(rows, table_khashes, table_hashes))
            for table, (rows, statements) in parts.items():
                replaced = [rowids[row.key] for row in rows if row.key in plan.replaced] \
                    if plan.replaced else []
                if replaced:
                    await conn.execute(
                        f"DELETE FROM {table.name} WHERE rowid IN (SELECT value FROM json_each(?))",
                        (json.dumps(replaced),),
                    )
                for sql, flat in statements:
                    await conn.execute(sql, flat)
            # Inside the transaction: a guard of a later write then sees what this one holds.
            self._merged(writes)
        old_keys = list(plan.replaced)
        self._digests.toggle(*hash_rows(old_keys, [plan.replaced[k] for k in old_keys]))
        self._digests.toggle(new_buckets, new_hashes)
        self._count += plan.stats.added
        self._clock.update(latest if len(writes) == len(valid)
                           else max(map(row_hlc, map(_DATA, writes))))
        return plan.stats

    # A kind's own refusals of well-formed rows, judged against this node's state (None: none).
    _check: KindCheck | None = None

    def retry_due(self) -> bool:
        """Whether rows refused for this node's clock or term are due to be pulled again."""
        return self.admission is not None and self.admission.retry_due()

    def wanted(self, entries: Sequence[tuple[str, bytes]]) -> list[str]:
        """Keys of listed (key, version) pairs worth pulling: not remembered as refused."""
        if self.admission is None:
            return [key for key, _ in entries]
        return self.admission.wanted(entries)

    def _merged(self, writes: list[Row]) -> None:
        """Called with the rows a merge writes, just before its commit; subclasses learn from
        them (a commit that then fails leaves them having seen rows a peer will offer again)."""

    async def put(self, row: dict, guard: Callable[[], None] | None = None) -> MergeStats:
        """Merge one locally made row; raises InvalidRow if it is bad."""
        stats = await self.merge([row], guard=guard)
        if stats.invalid or stats.refused:
            raise InvalidRow(self.last_errors[0] if self.last_errors else
                             f"row {row!r:.200} was refused by this node's admission rules")
        return stats
