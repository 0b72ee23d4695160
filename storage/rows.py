"""Row kinds: the wire form of every stored row, its validation, key and version.

Rows cross the network as plain msgpack-able dicts. Every field of every incoming row is
checked here (type, size, range, enum) before any store looks at it; a bad row raises
InvalidRow naming the field, the value and what was expected. The builders (`new_game`,
`new_match`, ...) make the same dicts for local writes, so local and remote rows take one path.
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
from collections.abc import Sequence

import msgpack

from storage.blobs import MAX_BLOB_BYTES
from storage.hlc import MAX_HLC
from storage.merge import InvalidRow, Row, alias_version, canonical_bytes, match_version

BOARD_TYPES = frozenset({"square8", "square19", "hex8", "hexagonal"})
MIN_PLAYERS, MAX_PLAYERS = 2, 4
MAX_ID_CHARS = 128  # model ids, match ids, node ids
MAX_REASON_CHARS = 1024
MAX_MOVES = 20_000  # far above any real game; bounds what a peer can make us store
MAX_MOVES_BYTES = 1 << 20
MAX_TERM = (1 << 63) - 1
MAX_GAMES_PLAYED = 1 << 31

ALIASES = frozenset({"production", "staging", "candidate", "previous"})
DECISIONS = frozenset({"swap_production", "retain_production", "insufficient_data", "rollback"})

# Model-registry keys are namespaced so one store (and one digest set) holds all three kinds.
MODEL_PREFIX, ALIAS_PREFIX, PROMOTION_PREFIX = "m:", "a:", "p:"

_SHA_HEX = re.compile(r"[0-9a-f]{64}")
_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
# One reusable packer for the bulk path (msgpack.packb builds a Packer per call); it resets
# itself after a failed pack, and packing plain values runs no Python code that could switch
# threads midway.
_pack = msgpack.Packer(use_bin_type=True).pack


# --- field checks -------------------------------------------------------------------------


def _fields(obj: object, kind: str, expected: frozenset[str]) -> dict:
    if type(obj) is not dict:
        raise InvalidRow(f"{kind} row {type(obj).__name__} is not a map")
    if obj.keys() != expected:
        missing = sorted(expected - obj.keys())
        extra = sorted(map(repr, obj.keys() - expected))
        raise InvalidRow(f"{kind} row fields: missing {missing}, unexpected {extra}")
    return obj


def _int(obj: dict, name: str, lo: int, hi: int) -> int:
    value = obj[name]
    if type(value) is not int or not lo <= value <= hi:
        raise InvalidRow(f"{name} {value!r} is not an int in {lo}..{hi}")
    return value


@functools.lru_cache(maxsize=4096)
def _id_text(value: str) -> bool:
    # Ids repeat from row to row (node ids, model ids): a bounded memo skips most regex runs.
    return _ID.fullmatch(value) is not None


def _is_id(value: object) -> bool:
    return type(value) is str and _id_text(value)


def _ident(obj: dict, name: str) -> str:
    value = obj[name]
    if not (type(value) is str and _ID.fullmatch(value)):
        raise InvalidRow(
            f"{name} {value!r:.200} is not an id (1..{MAX_ID_CHARS} of [A-Za-z0-9._:@/+=-])"
        )
    return value


def _sha(obj: dict, name: str, optional: bool = False) -> str | None:
    value = obj[name]
    if value is None and optional:
        return None
    if type(value) is not str or not _SHA_HEX.fullmatch(value):
        raise InvalidRow(f"{name} {value!r} is not a lowercase hex sha256")
    return value


def _choice(obj: dict, name: str, allowed: frozenset[str]) -> str:
    value = obj[name]
    if type(value) is not str or value not in allowed:
        raise InvalidRow(f"{name} {value!r} is not one of {sorted(allowed)}")
    return value


def _config(obj: dict) -> None:
    _choice(obj, "board_type", BOARD_TYPES)
    _int(obj, "num_players", MIN_PLAYERS, MAX_PLAYERS)


def _real(value: object, name: str, lo: float, hi: float) -> float:
    if type(value) not in (float, int) or not math.isfinite(value) or not lo <= value <= hi:
        raise InvalidRow(f"{name} {value!r} is not a finite number in {lo}..{hi}")
    return value


def _scores(obj: dict, name: str, count: int) -> list[float]:
    value = obj[name]
    if type(value) is not list or len(value) != count:
        raise InvalidRow(f"{name} {value!r:.200} is not a list of {count} scores")
    for x in value:
        # NaN fails both comparisons, so this also refuses it.
        if type(x) is not float or not 0.0 <= x <= 1.0:
            raise InvalidRow(f"{name} {value!r}: {x!r} is not a float score in 0..1")
    return value


def row_hlc(data: dict) -> int:
    """The hybrid-clock stamp a validated row carries (every kind has one)."""
    return data["hlc"] if "hlc" in data else data["created_hlc"]


def _hash_hex(values: list) -> str:
    return hashlib.sha256(canonical_bytes(values)).hexdigest()


# The screens below are the bulk path's fast check of a whole row: the same tests as the
# validator, inlined (no helper calls, no error text), returning None for anything they do
# not accept so that the validator then names the problem. Rows are built with tuple.__new__
# because a NamedTuple's own __new__ is a Python-level call per row.
_new_tuple = tuple.__new__


# --- games --------------------------------------------------------------------------------

GAME_FIELDS = frozenset(
    {"game_id", "board_type", "num_players", "model_id", "winner", "outcome", "moves",
     "created_hlc", "origin_node"}
)


def pack_moves(moves: object) -> bytes:
    """The stored form of a game's moves; raises InvalidRow for anything not a bounded list."""
    if type(moves) is not list or len(moves) > MAX_MOVES:
        raise InvalidRow(f"moves is not a list of at most {MAX_MOVES} items")
    try:
        packed = msgpack.packb(moves, use_bin_type=True)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidRow(f"moves are not msgpack-encodable: {exc}") from None
    if len(packed) > MAX_MOVES_BYTES:
        raise InvalidRow(f"moves encode to {len(packed)} bytes, expected <= {MAX_MOVES_BYTES}")
    return packed


def unpack_moves(packed: bytes) -> list:
    return msgpack.unpackb(packed, raw=False, strict_map_key=False)


def _game_id(
    board_type: str, num_players: int, model_id: str, winner: int | None,
    outcome: list[float], packed_moves: bytes, created_hlc: int, origin_node: str,
) -> str:
    return _hash_hex(
        [board_type, num_players, model_id, winner, outcome, packed_moves, created_hlc, origin_node]
    )


def game_id_for(
    board_type: str, num_players: int, model_id: str, winner: int | None,
    outcome: Sequence[float], moves: Sequence, created_hlc: int, origin_node: str,
) -> str:
    """The content hash (sha256 hex of the canonical encoding) that names a game."""
    outcome = [float(x) for x in outcome]
    return _game_id(
        board_type, num_players, model_id, winner, outcome, pack_moves(list(moves)), created_hlc,
        origin_node,
    )


def new_game(
    board_type: str, num_players: int, model_id: str, winner: int | None,
    outcome: Sequence[float], moves: Sequence, created_hlc: int, origin_node: str,
) -> dict:
    """A game's wire dict, with its game_id computed from the content."""
    outcome = [float(x) for x in outcome]
    moves = list(moves)
    return {
        "game_id": game_id_for(board_type, num_players, model_id, winner, outcome, moves,
                               created_hlc, origin_node),
        "board_type": board_type, "num_players": num_players, "model_id": model_id,
        "winner": winner, "outcome": outcome, "moves": moves,
        "created_hlc": created_hlc, "origin_node": origin_node,
    }


def validate_game(obj: object) -> Row:
    """A validated game row; its payload is the packed moves (the form SQLite stores)."""
    row = _fields(obj, "game", GAME_FIELDS)
    game_id = _sha(row, "game_id")
    _config(row)
    n = row["num_players"]
    _ident(row, "model_id")
    winner = row["winner"]
    if winner is not None and (type(winner) is not int or not 0 <= winner < n):
        raise InvalidRow(f"winner {winner!r} is not None or a seat in 0..{n - 1}")
    _scores(row, "outcome", n)
    packed = pack_moves(row["moves"])
    _int(row, "created_hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    expected = _game_id(
        row["board_type"], n, row["model_id"], winner, row["outcome"], packed,
        row["created_hlc"], row["origin_node"],
    )
    if expected != game_id:
        raise InvalidRow(f"game_id {game_id} does not match its content (expected {expected})")
    return Row(game_id, bytes.fromhex(game_id), row, packed)



def screen_game(obj: object) -> Row | None:
    """validate_game's Row for a game it accepts, else None (then validate_game says why)."""
    if type(obj) is not dict or len(obj) != len(GAME_FIELDS):
        return None
    try:
        # Nine distinct names all present in a nine-entry dict: exactly GAME_FIELDS.
        game_id = obj["game_id"]
        board_type = obj["board_type"]
        n = obj["num_players"]
        model_id = obj["model_id"]
        winner = obj["winner"]
        outcome = obj["outcome"]
        moves = obj["moves"]
        created_hlc = obj["created_hlc"]
        origin = obj["origin_node"]
    except KeyError:
        return None
    if (
        type(game_id) is not str or _SHA_HEX.fullmatch(game_id) is None
        or type(board_type) is not str or board_type not in BOARD_TYPES
        or type(n) is not int or not MIN_PLAYERS <= n <= MAX_PLAYERS
        or type(model_id) is not str or not _id_text(model_id)
        or (winner is not None and (type(winner) is not int or not 0 <= winner < n))
        or type(outcome) is not list or len(outcome) != n
        or type(moves) is not list or len(moves) > MAX_MOVES
        or type(created_hlc) is not int or not 0 <= created_hlc <= MAX_HLC
        or type(origin) is not str or not _id_text(origin)
    ):
        return None
    for x in outcome:
        if type(x) is not float or not 0.0 <= x <= 1.0:
            return None
    try:
        packed = _pack(moves)
    except (TypeError, ValueError, OverflowError):
        return None
    if len(packed) > MAX_MOVES_BYTES:
        return None
    digest = hashlib.sha256(_pack(
        [board_type, n, model_id, winner, outcome, packed, created_hlc, origin]
    )).hexdigest()
    if digest != game_id:
        return None
    return _new_tuple(Row, (game_id, bytes.fromhex(game_id), obj, packed))


# --- Elo match rows -----------------------------------------------------------------------

MATCH_FIELDS = frozenset(
    {"match_id", "participants", "board_type", "num_players", "result", "hlc", "origin_node"}
)


# A match's scores are pairwise points: each pair of players shares one (win 1 + 0, draw
# 0.5 + 0.5), so n players share n/2; a result that does not add up was not a game.
_SCORE_SUM_TOLERANCE = 1e-6


def new_match(
    match_id: str, participants: list[str], board_type: str, num_players: int,
    result: list[float], hlc: int, origin_node: str,
) -> dict:
    """A match row's wire dict: `result[i]` is participant i's score in [0, 1]."""
    return {
        "match_id": match_id, "participants": list(participants), "board_type": board_type,
        "num_players": num_players, "result": [float(x) for x in result], "hlc": hlc,
        "origin_node": origin_node,
    }


def validate_match(obj: object) -> Row:
    """A match row whose participants, player count and scores agree: each participant once,
    as many as the config's players (a whole game) or two (one pairwise result of an N-player
    game, as the reference records 3-4 player results), the pairwise points adding up."""
    row = _fields(obj, "match", MATCH_FIELDS)
    match_id = _ident(row, "match_id")  # unique per row: no use memoising it
    participants = row["participants"]
    if (
        type(participants) is not list
        or not MIN_PLAYERS <= len(participants) <= MAX_PLAYERS
        or not all(map(_is_id, participants))
    ):
        raise InvalidRow(
            f"participants {participants!r} is not a list of {MIN_PLAYERS}..{MAX_PLAYERS} ids"
        )
    _config(row)
    result = _scores(row, "result", len(participants))
    hlc = _int(row, "hlc", 0, MAX_HLC)
    origin = row["origin_node"]
    if not _is_id(origin):
        raise InvalidRow(f"origin_node {origin!r:.200} is not an id")
    version = match_version(hlc, origin)
    n = row["num_players"]
    k = len(participants)
    if k not in (2, n) or len(set(participants)) != k:
        raise InvalidRow(f"participants {participants!r} are not {n} (or 2) distinct players",
                         "inconsistent", match_id, version)
    if abs(math.fsum(result) - k / 2) > _SCORE_SUM_TOLERANCE:
        raise InvalidRow(f"result {result!r} shares {math.fsum(result)} points among {k} "
                         f"players, expected {k / 2}", "inconsistent", match_id, version)
    return Row(match_id, version, row)




def screen_match(obj: object) -> Row | None:
    """validate_match's Row for a row it accepts, else None (then validate_match says why)."""
    if type(obj) is not dict or len(obj) != len(MATCH_FIELDS):
        return None
    try:
        # Seven distinct names all present in a seven-entry dict: exactly MATCH_FIELDS.
        match_id = obj["match_id"]
        participants = obj["participants"]
        board_type = obj["board_type"]
        num_players = obj["num_players"]
        result = obj["result"]
        hlc = obj["hlc"]
        origin = obj["origin_node"]
    except KeyError:
        return None
    if (
        type(match_id) is not str or _ID.fullmatch(match_id) is None
        or type(participants) is not list or not MIN_PLAYERS <= len(participants) <= MAX_PLAYERS
        or type(board_type) is not str or board_type not in BOARD_TYPES
        or type(num_players) is not int or not MIN_PLAYERS <= num_players <= MAX_PLAYERS
        or type(result) is not list or len(result) != len(participants)
        or type(hlc) is not int or not 0 <= hlc <= MAX_HLC
        or type(origin) is not str or not _id_text(origin)
    ):
        return None
    for p in participants:
        if type(p) is not str or not _id_text(p):
            return None
    k = len(participants)
    if (k != 2 and k != num_players) or len(set(participants)) != k:
        return None
    for x in result:
        if type(x) is not float or not 0.0 <= x <= 1.0:
            return None
    if abs(math.fsum(result) - k / 2) > _SCORE_SUM_TOLERANCE:
        return None
    return _new_tuple(Row, (match_id, hlc.to_bytes(8, "big") + origin.encode(), obj, b""))


# --- model registry: metadata, aliases, promotion events ----------------------------------

MODEL_FIELDS = frozenset(
    {"kind", "sha256", "board_type", "num_players", "created_hlc", "origin_node", "size", "parent"}
)
ALIAS_FIELDS = frozenset(
    {"kind", "name", "board_type", "num_players", "sha256", "term", "hlc", "origin_node"}
)
PROMOTION_FIELDS = frozenset(
    {"kind", "event_id", "board_type", "num_players", "candidate", "incumbent", "decision",
     "reorder_applied", "games_played", "win_rate", "elo_delta", "term", "hlc", "origin_node",
     "reason"}
)
_MODEL_ORDER = sorted(MODEL_FIELDS)
_PROMOTION_CONTENT = sorted(PROMOTION_FIELDS - {"event_id"})


def model_key(sha: str) -> str:
    return MODEL_PREFIX + sha


def alias_key(board_type: str, num_players: int, name: str) -> str:
    """Aliases are per config: production for square8 2p is not production for hex8 3p."""
    return f"{ALIAS_PREFIX}{board_type}:{num_players}:{name}"


def promotion_key(event_id: str) -> str:
    return PROMOTION_PREFIX + event_id


def new_model(
    sha256: str, board_type: str, num_players: int, created_hlc: int, origin_node: str,
    size: int, parent: str | None = None,
) -> dict:
    return {
        "kind": "model", "sha256": sha256, "board_type": board_type,
        "num_players": num_players, "created_hlc": created_hlc, "origin_node": origin_node,
        "size": size, "parent": parent,
    }


def new_alias(
    name: str, board_type: str, num_players: int, sha256: str, term: int, hlc: int,
    origin_node: str,
) -> dict:
    return {
        "kind": "alias", "name": name, "board_type": board_type, "num_players": num_players,
        "sha256": sha256, "term": term, "hlc": hlc, "origin_node": origin_node,
    }


def new_promotion(
    board_type: str, num_players: int, candidate: str, incumbent: str | None, decision: str,
    reorder_applied: bool, games_played: int, win_rate: float | None, elo_delta: float | None,
    term: int, hlc: int, origin_node: str, reason: str = "",
) -> dict:
    """A promotion event; its event_id is the hash of its content (events are append-only)."""
    row = {
        "kind": "promotion", "board_type": board_type, "num_players": num_players,
        "candidate": candidate, "incumbent": incumbent, "decision": decision,
        "reorder_applied": reorder_applied, "games_played": games_played,
        "win_rate": None if win_rate is None else float(win_rate),
        "elo_delta": None if elo_delta is None else float(elo_delta),
        "term": term, "hlc": hlc, "origin_node": origin_node, "reason": reason,
    }
    row["event_id"] = _hash_hex([row[f] for f in _PROMOTION_CONTENT])
    return row


def _validate_model(row: dict) -> Row:
    _fields(row, "model", MODEL_FIELDS)
    sha = _sha(row, "sha256")
    _config(row)
    _int(row, "created_hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    size = _int(row, "size", 0, MAX_TERM)
    _sha(row, "parent", optional=True)
    version = hashlib.sha256(canonical_bytes([row[f] for f in _MODEL_ORDER])).digest()
    if size > MAX_BLOB_BYTES:
        raise InvalidRow(f"size {size} is more than a blob may hold ({MAX_BLOB_BYTES})",
                         "too_large", model_key(sha), version)
    return Row(model_key(sha), version, row)


def _validate_alias(row: dict) -> Row:
    _fields(row, "alias", ALIAS_FIELDS)
    name = _choice(row, "name", ALIASES)
    _config(row)
    _sha(row, "sha256")
    term = _int(row, "term", 0, MAX_TERM)
    hlc = _int(row, "hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    return Row(alias_key(row["board_type"], row["num_players"], name), alias_version(term, hlc), row)


def _validate_promotion(row: dict) -> Row:
    _fields(row, "promotion", PROMOTION_FIELDS)
    event_id = _sha(row, "event_id")
    _config(row)
    _sha(row, "candidate")
    _sha(row, "incumbent", optional=True)
    _choice(row, "decision", DECISIONS)
    if type(row["reorder_applied"]) is not bool:
        raise InvalidRow(f"reorder_applied {row['reorder_applied']!r} is not a bool")
    _int(row, "games_played", 0, MAX_GAMES_PLAYED)
    if row["win_rate"] is not None:
        _real(row["win_rate"], "win_rate", 0.0, 1.0)
    if row["elo_delta"] is not None:
        _real(row["elo_delta"], "elo_delta", -1e6, 1e6)
    for name in ("win_rate", "elo_delta"):
        if row[name] is not None and type(row[name]) is not float:
            raise InvalidRow(f"{name} {row[name]!r} is not a float or None")
    _int(row, "term", 0, MAX_TERM)
    _int(row, "hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    reason = row["reason"]
    if type(reason) is not str or len(reason) > MAX_REASON_CHARS:
        raise InvalidRow(f"reason is not a string of at most {MAX_REASON_CHARS} characters")
    expected = _hash_hex([row[f] for f in _PROMOTION_CONTENT])
    if expected != event_id:
        raise InvalidRow(f"event_id {event_id} does not match its content (expected {expected})")
    return Row(promotion_key(event_id), bytes.fromhex(event_id), row)


_REGISTRY_KINDS = {"model": _validate_model, "alias": _validate_alias,
                   "promotion": _validate_promotion}


def validate_registry(obj: object) -> Row:
    """A model-registry row: its `kind` field says model, alias or promotion."""
    if type(obj) is not dict:
        raise InvalidRow(f"registry row {type(obj).__name__} is not a map")
    kind = obj.get("kind")
    validate = _REGISTRY_KINDS.get(kind) if type(kind) is str else None
    if validate is None:
        raise InvalidRow(f"registry row kind {kind!r} is not one of {sorted(_REGISTRY_KINDS)}")
    return validate(obj)
