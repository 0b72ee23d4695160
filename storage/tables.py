"""How each row kind maps onto its SQLite table: columns, and the encoding of each field.

Every synced table starts with (key, bucket, version, h), then one column per wire field in
`fields` order. Lists are stored msgpack-encoded, bools as 0/1; a game's moves are stored as
the packed bytes validation already produced (`Row.payload`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import msgpack

from storage.merge import Row
from storage.rows import (
    ALIAS_PREFIX,
    MODEL_PREFIX,
    PROMOTION_PREFIX,
    unpack_moves,
)


def _unpack(blob: bytes) -> object:
    return msgpack.unpackb(blob, raw=False)


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    fields: tuple[str, ...]
    packed: frozenset[str] = frozenset()  # list fields, stored msgpack-encoded
    bools: frozenset[str] = frozenset()
    payload_field: str | None = None  # stored from Row.payload, decoded with unpack_moves
    kind: str | None = None  # registry rows carry their kind on the wire, not in a column
    prefix: str = ""  # key prefix in a namespaced store
    key_field: str | None = None  # the wire field that is the key itself (not a column)
    # Versions are content hashes: an equal version means equal content, no need to compare.
    content_addressed: bool = False
    insert_sql: str = field(init=False)
    select_sql: str = field(init=False)

    def __post_init__(self) -> None:
        columns = ("key", "bucket", "version", "h", *self.fields)
        marks = ", ".join("?" * len(columns))
        object.__setattr__(
            self, "insert_sql",
            f"INSERT OR REPLACE INTO {self.name} ({', '.join(columns)}) VALUES ({marks})",
        )
        object.__setattr__(
            self, "select_sql", f"SELECT {', '.join(('key', *self.fields))} FROM {self.name}"
        )

    def params(self, row: Row, bucket: int, h: int) -> tuple:
        data = row.data
        values: list[object] = [row.key, bucket, row.version, h]
        for name in self.fields:
            value = data[name]
            if name == self.payload_field:
                value = row.payload
            elif name in self.packed:
                value = msgpack.packb(value, use_bin_type=True)
            elif name in self.bools:
                value = int(value)
            values.append(value)
        return tuple(values)

    def to_wire(self, record: tuple) -> dict:
        """A stored record (columns of `select_sql`) back to its wire dict."""
        data: dict[str, object] = {} if self.kind is None else {"kind": self.kind}
        if self.key_field is not None:
            data[self.key_field] = record[0][len(self.prefix):]
        for name, value in zip(self.fields, record[1:], strict=True):
            if name == self.payload_field:
                value = unpack_moves(value)
            elif name in self.packed:
                value = _unpack(value)
            elif name in self.bools:
                value = bool(value)
            data[name] = value
        return data


GAMES = Table(
    "games",
    ("board_type", "num_players", "model_id", "winner", "outcome", "moves",
     "created_hlc", "origin_node"),
    packed=frozenset({"outcome"}), payload_field="moves", content_addressed=True,
    key_field="game_id",
)
MATCHES = Table(
    "matches",
    ("participants", "board_type", "num_players", "result", "hlc", "origin_node"),
    packed=frozenset({"participants", "result"}), key_field="match_id",
)
MODELS = Table(
    "models",
    ("sha256", "board_type", "num_players", "created_hlc", "origin_node", "size", "parent"),
    kind="model", prefix=MODEL_PREFIX, content_addressed=True,
)
ALIASES = Table(
    "aliases",
    ("name", "board_type", "num_players", "sha256", "term", "hlc", "origin_node"),
    kind="alias", prefix=ALIAS_PREFIX,
)
PROMOTIONS = Table(
    "promotion_events",
    ("event_id", "board_type", "num_players", "candidate", "incumbent", "decision",
     "reorder_applied", "games_played", "win_rate", "elo_delta", "term", "hlc", "origin_node",
     "reason"),
    bools=frozenset({"reorder_applied"}), kind="promotion", prefix=PROMOTION_PREFIX,
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
