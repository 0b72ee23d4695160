"""How each row kind maps onto its SQLite table.

A synced table holds (key, khash, version, h), the row's wire dict msgpack-encoded in `body`,
and copies of the few fields that queries filter or sort on. Keeping the whole row in one blob
makes the bulk path one encode per row and reading a row one C-level decode. A game's moves
are kept apart, as the packed bytes validation already produced (`Row.payload`), so they are
not encoded twice and queries over games never decode them.
"""

from __future__ import annotations

import functools
import operator
import sqlite3
from dataclasses import dataclass, field

import msgpack
import msgspec

from storage.merge import Row
from storage.packed import with_field
from storage.rows import (
    ALIAS_PREFIX,
    ASSIGNMENT_PREFIX,
    MODEL_PREFIX,
    PROMOTION_PREFIX,
    SETTING_PREFIX,
    unpack_moves,
)

# msgspec's encoder writes the same bytes as msgpack's Packer(use_bin_type=True) for the
# values rows hold (str, int, float, bool, None, bytes, lists and str-keyed maps) at a third
# of the cost per row; reused, as building one per call is a large share of a small row's cost.
_pack = msgspec.msgpack.Encoder().encode


_KEY, _VERSION, _DATA, _PAYLOAD = map(operator.itemgetter, range(4))  # a Row's fields


def _unpack(blob: bytes) -> dict:
    return msgpack.unpackb(blob, raw=False)


# Rows per INSERT statement in a bulk write: one statement of many VALUES rows is bound and
# stepped once, where executemany binds and steps each row and gives the interpreter lock up
# and back for every one; SQLite compiles each size once (the statement cache). 500 rows
# measured best here (100 and 3,000 both slower); the parameter limit caps it on an SQLite
# older than 3.32, whose default limit is 999 parameters.
ROWS_PER_INSERT = 500
MAX_PARAMETERS = 32_766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[str, ...]  # wire fields copied into columns of their own, for queries
    payload_field: str | None = None  # kept out of the body, stored from Row.payload
    prefix: str = ""  # key prefix in a namespaced store
    # Versions are content hashes: an equal version means equal content, no need to compare.
    content_addressed: bool = False
    insert_sql: str = field(init=False)
    select_sql: str = field(init=False)
    stored_columns: str = field(init=False)  # what select_sql selects: key and stored blobs
    size_sql: str = field(init=False)  # SQL for the stored bytes of a row (its wire size)
    _getters: tuple[operator.itemgetter, ...] = field(init=False, repr=False, compare=False)
    _field_name: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        stored = ("body",) if self.payload_field is None else ("body", self.payload_field)
        columns = ("key", "khash", "version", "h", *stored, *self.columns)
        marks = ", ".join("?" * len(columns))
        object.__setattr__(
            self, "insert_sql",
            f"INSERT INTO {self.name} ({', '.join(columns)}) VALUES ({marks})",
        )
        object.__setattr__(self, "stored_columns", ", ".join(("key", *stored)))
        object.__setattr__(self, "select_sql", f"SELECT {self.stored_columns} FROM {self.name}")
        field_name = _pack(self.payload_field or "")
        object.__setattr__(self, "_field_name", field_name)
        # What `packed` makes of a row: body, payload and the payload's field name.
        size = " + ".join(f"length({c})" for c in stored)
        if self.payload_field is not None:
            size += f" + {len(field_name)}"
        object.__setattr__(self, "size_sql", size)
        object.__setattr__(self, "_getters", tuple(map(operator.itemgetter, self.columns)))

    def inserts(self, rows: list[Row], khashes: list[int], hashes: list[int],
                order: list[int] | None = None) -> list[tuple[str, list]]:
        """Multi-row INSERT statements, each with its flat parameter list, storing `rows`
        with their key hashes and row hashes (signed ints); in the order `order` gives (row
        indexes), else as they come. The bulk path, column by column: each column is one
        C-level pass (and is put in order as a whole), then dealt into the parameter lists
        by slice assignment, so no tuple is made per row."""
        data = list(map(_DATA, rows))
        if self.payload_field is None:
            bodies = list(map(_pack, data))
            stored = [bodies]
        else:
            leave_out = self.payload_field
            bodies = []
            for body in data:
                body = body.copy()  # a C-level copy, then one delete: cheaper than a comprehension
                del body[leave_out]
                bodies.append(_pack(body))
            stored = [bodies, list(map(_PAYLOAD, rows))]
        columns: list[list] = [list(map(_KEY, rows)), khashes, list(map(_VERSION, rows)), hashes,
                               *stored, *(list(map(getter, data)) for getter in self._getters)]
        if order is not None and len(order) > 1:  # itemgetter of one index returns no tuple
            pick = operator.itemgetter(*order)
            columns = [pick(column) for column in columns]
        width, n = len(columns), len(rows)
        per = max(1, min(ROWS_PER_INSERT, MAX_PARAMETERS // width))
        statements = []
        for first in range(0, n, per):
            count = min(per, n - first)
            flat: list = [None] * (count * width)
            for j, column in enumerate(columns):
                flat[j::width] = column[first:first + count]
            statements.append((self._insert_rows_sql(count), flat))
        return statements

    def _insert_rows_sql(self, rows: int) -> str:
        return _insert_rows_sql(self.insert_sql, rows)

    def packed(self, record: tuple) -> bytes:
        """A stored record (the columns of `select_sql`) as the msgpack of its wire dict,
        without decoding it: the body is that encoding, less the payload field, which is
        stored encoded on its own and goes back in by byte surgery."""
        if self.payload_field is None:
            return record[1]
        return with_field(record[1], self._field_name, record[2])

    def to_wire(self, record: tuple) -> dict:
        """A stored record (the columns of `select_sql`) back to its wire dict."""
        data = _unpack(record[1])
        if self.payload_field is not None:
            data[self.payload_field] = unpack_moves(record[2])
        return data


@functools.lru_cache(maxsize=64)
def _insert_rows_sql(insert_sql: str, rows: int) -> str:
    """`insert_sql` (one VALUES row) made into an insert of `rows` rows."""
    head, marks = insert_sql.split(" VALUES ")
    return f"{head} VALUES {', '.join([marks] * rows)}"


GAMES = Table(
    "games", ("board_type", "num_players", "created_hlc"), payload_field="moves",
    content_addressed=True,
)
MATCHES = Table("matches", ("board_type", "num_players", "hlc"))
MODELS = Table(
    "models", ("sha256", "board_type", "num_players", "created_hlc"), prefix=MODEL_PREFIX,
    content_addressed=True,
)
ALIASES = Table(
    "aliases", ("name", "board_type", "num_players", "sha256", "term"), prefix=ALIAS_PREFIX,
)
ASSIGNMENTS = Table(
    "assignments", ("node_id", "board_type", "num_players", "term"), prefix=ASSIGNMENT_PREFIX,
)
SETTINGS = Table("settings", ("name", "term"), prefix=SETTING_PREFIX)
PROMOTIONS = Table(
    "promotion_events", ("board_type", "num_players", "term", "hlc"), prefix=PROMOTION_PREFIX,
    content_addressed=True,
)


def config_filter(
    board_type: str | None, num_players: int | None, since_hlc: int | None = None
) -> tuple[str, list[object]]:
    """A WHERE clause (or "") and its parameters selecting one config's rows."""
    clauses: list[str] = []
    params: list[object] = []
    if since_hlc is not None:
        clauses.append("created_hlc >= ?")
        params.append(since_hlc)
    if board_type is not None:
        clauses.append("board_type = ?")
        params.append(board_type)
    if num_players is not None:
        clauses.append("num_players = ?")
        params.append(num_players)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params
