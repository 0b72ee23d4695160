"""Row kinds: the wire form of every stored row, its validation, key and version.

Rows cross the network as plain msgpack-able dicts. Every field of every incoming row is
checked here (type, size, range, enum) before any store looks at it; a bad row raises
InvalidRow naming the field, the value and what was expected. The builders (`new_game`,
`new_match`, ...) make the same dicts for local writes, so local and remote rows take one path.

The game row (what selfplay stores, import brings in and training reads):

    game_id      sha256 hex of [board_type, num_players, swap_rule, packed moves]: the same
                 game played or imported on two nodes is one row
    board_type   square8 | square19 | hex8 | hexagonal
    num_players  2..4
    swap_rule    the pie rule (R180) was on; only ever true with 2 players
    moves        list of bytes, one per move, bookkeeping moves included: the engine's compact
                 move encoding (engine.records), 2..MAX_MOVE_BYTES each, at most MAX_MOVES
    policy       None (imported games) or one bytes per move: the search's policy target as
                 3-byte entries (u16 little-endian index into the position's legal moves
                 sorted by their encoding, u8 weight, relative); empty where nothing was
                 searched (a single legal move)
    values       None or bytes, one int8 per move: the search's root value for the player
                 to move, times 127
    rankings     final rank of players 1..n (index 0 is player 1), standard competition
                 ranking (1224): our ranking rule "R177 cascade" (RR-CANON-R177/R178, as
                 engine.victory ranks: winner first, the rest by territory, eliminated rings,
                 markers, later permanent elimination), computed by our engine for every
                 player count since the canonical engine computes none
    winner       the player (1..n) ranked 1
    model_sha    the model blob that played (None for imports)
    search       small map of search settings (algorithm, simulations, ...); {} for imports
    source       "selfplay" | "import"
    meta         small map of source metadata (import: file, original id, ...)
    created_hlc  hybrid-clock stamp of the node that made or imported it
    origin_node  that node's id

Small maps hold at most MAX_MAP_ENTRIES keys of [a-z0-9_] with None, bool, int64, finite float
or short string values. Moves, policy and values of one game take at most MAX_GAME_BYTES.
Storage checks the shape of each field; that the moves replay legally is checked by whoever
can run the engine (storage imports none of it). Rows of one game_id may differ in the fields
the id leaves out; the version (`_game_version`) makes every node keep the same one.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import math
import operator
import re
from collections.abc import Sequence

import msgpack
import numpy as np

from storage.blobs import MAX_BLOB_BYTES
from storage.hlc import MAX_HLC
from storage.merge import InvalidRow, Row, alias_version, canonical_bytes, match_version

BOARD_TYPES = frozenset({"square8", "square19", "hex8", "hexagonal"})
MIN_PLAYERS, MAX_PLAYERS = 2, 4
MAX_ID_CHARS = 128  # model ids, match ids, node ids
MAX_REASON_CHARS = 1024
MAX_TERM = (1 << 63) - 1
MAX_GAMES_PLAYED = 1 << 31

ALIASES = frozenset({"production", "staging", "candidate", "previous"})
DECISIONS = frozenset({"swap_production", "retain_production", "insufficient_data", "rollback"})

# Model-registry keys are namespaced so one store (and one digest set) holds all three kinds.
MODEL_PREFIX, ALIAS_PREFIX, PROMOTION_PREFIX = "m:", "a:", "p:"
ASSIGNMENT_PREFIX = "j:"
MATCH_KINDS = frozenset({"e", "w"})  # engine.evaluation: a candidate's test, a model's watch
MAX_ASSIGNED_TRIALS = 64
MAX_TRIAL = (1 << 31) - 1

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


# --- games ---------------------------------------------------------------------------------

GAME_FIELDS = frozenset(
    {"game_id", "board_type", "num_players", "swap_rule", "moves", "policy", "values",
     "rankings", "winner", "model_sha", "search", "source", "meta", "created_hlc",
     "origin_node"}
)
SOURCES = frozenset({"selfplay", "import"})
# Random play on the hexagonal board ends within ~1,500 moves (4 players, the longest case
# measured); a cap four times that still bounds what a peer can make us store.
MAX_MOVES = 6000
MAX_MOVE_BYTES = 2048  # a region move lists at most every cell of a 469-cell board, twice
POLICY_ENTRY_BYTES = 3  # u16 little-endian legal-move index, u8 weight
MAX_POLICY_ENTRIES = 255  # per move; the encoder keeps the heaviest
MAX_POLICY_BYTES = MAX_POLICY_ENTRIES * POLICY_ENTRY_BYTES
# Packed moves + policy + values of one game. A hexagonal game of 1,500 moves with full
# targets is at most ~1.2 MB; what a selfplay game stores is far less (tens of entries a move).
MAX_GAME_BYTES = 2 << 20
MAX_MAP_ENTRIES = 16  # search settings and source metadata
MAX_MAP_TEXT = 256
_MAP_KEY = re.compile(r"[a-z0-9_]{1,32}")


def _small_map(obj: dict, name: str) -> dict:
    value = obj[name]
    if not _is_small_map(value):
        raise InvalidRow(
            f"{name} {value!r:.200} is not a map of at most {MAX_MAP_ENTRIES} entries with keys "
            f"of 1..32 [a-z0-9_] and values None, bool, int64, finite float or a string of at "
            f"most {MAX_MAP_TEXT} characters"
        )
    return value


def _is_small_map(value: object) -> bool:
    if type(value) is not dict or len(value) > MAX_MAP_ENTRIES:
        return False
    for k, v in value.items():
        if type(k) is not str or _MAP_KEY.fullmatch(k) is None:
            return False
        t = type(v)
        if not (
            v is None or t is bool or (t is int and -(1 << 63) <= v < 1 << 63)
            or (t is float and math.isfinite(v)) or (t is str and len(v) <= MAX_MAP_TEXT)
        ):
            return False
    return True


def _is_rankings(value: object, n: int) -> bool:
    """n ranks of standard competition ranking (1224): each rank is 1 + the number of seats
    ranked strictly better, which also makes every rank an int in 1..n."""
    if type(value) is not list or len(value) != n:
        return False
    for r in value:
        if type(r) is not int or r != 1 + sum(1 for x in value if type(x) is int and x < r):
            return False
    return True


def pack_moves(moves: object) -> bytes:
    """The stored form of a game's moves; raises InvalidRow unless a bounded list of moves."""
    if type(moves) is not list or len(moves) > MAX_MOVES:
        raise InvalidRow(f"moves is not a list of at most {MAX_MOVES} moves")
    for i, m in enumerate(moves):
        if type(m) is not bytes or not 2 <= len(m) <= MAX_MOVE_BYTES:
            raise InvalidRow(f"move {i} {m!r:.80} is not 2..{MAX_MOVE_BYTES} bytes "
                             "(the engine's compact move encoding)")
    return _pack(moves)


def unpack_moves(packed: bytes) -> list:
    return msgpack.unpackb(packed, raw=False)


def _game_id(board_type: str, num_players: int, swap_rule: bool, packed_moves: bytes) -> str:
    return hashlib.sha256(_pack([board_type, num_players, swap_rule, packed_moves])).hexdigest()


def game_id_for(board_type: str, num_players: int, swap_rule: bool, moves: Sequence[bytes]) -> str:
    """The name of a game: sha256 hex of its config, rules options and moves, so one game
    played or imported anywhere is one row."""
    return _game_id(board_type, num_players, swap_rule, pack_moves(list(moves)))


def _game_version(row: dict) -> bytes:
    """Rows of one game may differ in everything the id leaves out (targets, model, stamp,
    origin); every node keeps the same one: a row with search targets over one without,
    then the higher hash of the whole content."""
    policy = row["policy"]
    digest = hashlib.sha256(_pack([
        row["game_id"], policy, row["values"], row["rankings"], row["winner"],
        row["model_sha"], sorted(row["search"].items()), row["source"],
        sorted(row["meta"].items()), row["created_hlc"], row["origin_node"],
    ])).digest()
    return (b"\x01" if policy is not None else b"\x00") + digest


def new_game(
    board_type: str, num_players: int, moves: Sequence[bytes], rankings: Sequence[int],
    created_hlc: int, origin_node: str, *, swap_rule: bool | None = None,
    winner: int | None = None, policy: Sequence[bytes] | None = None,
    values: bytes | None = None, model_sha: str | None = None, search: dict | None = None,
    source: str = "selfplay", meta: dict | None = None,
) -> dict:
    """A game's wire dict (see the module docstring); game_id is computed from the content.

    `swap_rule` defaults to the engine's: on for 2 players, off otherwise; `winner` to the
    seat ranked 1.
    """
    moves = list(moves)
    rankings = [int(r) for r in rankings]
    if swap_rule is None:
        swap_rule = num_players == 2
    if winner is None and 1 in rankings:
        winner = rankings.index(1) + 1
    return {
        "game_id": game_id_for(board_type, num_players, swap_rule, moves),
        "board_type": board_type, "num_players": num_players, "swap_rule": swap_rule,
        "moves": moves, "policy": None if policy is None else list(policy),
        "values": None if values is None else bytes(values),
        "rankings": rankings, "winner": winner, "model_sha": model_sha,
        "search": dict(search or {}), "source": source, "meta": dict(meta or {}),
        "created_hlc": created_hlc, "origin_node": origin_node,
    }


def validate_game(obj: object) -> Row:
    """A validated game row; its payload is the packed moves (the form SQLite stores)."""
    row = _fields(obj, "game", GAME_FIELDS)
    game_id = _sha(row, "game_id")
    _config(row)
    n = row["num_players"]
    swap_rule = row["swap_rule"]
    if type(swap_rule) is not bool or (swap_rule and n != 2):
        raise InvalidRow(f"swap_rule {swap_rule!r} is not a bool (true only with 2 players)")
    packed = pack_moves(row["moves"])
    count = len(row["moves"])
    size = len(packed)
    policy = row["policy"]
    if policy is not None:
        if type(policy) is not list or len(policy) != count:
            raise InvalidRow(f"policy is not None or a list of {count} targets, one per move")
        for i, p in enumerate(policy):
            if (type(p) is not bytes or len(p) > MAX_POLICY_BYTES
                    or len(p) % POLICY_ENTRY_BYTES):
                raise InvalidRow(f"policy {i} {p!r:.80} is not a multiple of "
                                 f"{POLICY_ENTRY_BYTES} bytes up to {MAX_POLICY_BYTES}")
            size += len(p)
    values = row["values"]
    if values is not None:
        if type(values) is not bytes or len(values) != count:
            raise InvalidRow(f"values {values!r:.80} is not None or {count} bytes, one per move")
        size += len(values)
    if size > MAX_GAME_BYTES:
        raise InvalidRow(f"moves, policy and values take {size} bytes, expected <= "
                         f"{MAX_GAME_BYTES}")
    if not _is_rankings(row["rankings"], n):
        raise InvalidRow(f"rankings {row['rankings']!r:.200} are not {n} competition ranks "
                         "(1224: each 1 + the number of seats ranked better)")
    winner = row["winner"]
    if type(winner) is not int or not 1 <= winner <= n or row["rankings"][winner - 1] != 1:
        raise InvalidRow(f"winner {winner!r} is not a player 1..{n} ranked 1")
    _sha(row, "model_sha", optional=True)
    _small_map(row, "search")
    _choice(row, "source", SOURCES)
    _small_map(row, "meta")
    _int(row, "created_hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    expected = _game_id(row["board_type"], n, swap_rule, packed)
    if expected != game_id:
        raise InvalidRow(f"game_id {game_id} does not match its content (expected {expected})")
    return Row(game_id, _game_version(row), row, packed)


def screen_game(obj: object) -> Row | None:
    """validate_game's Row for a game it accepts, else None (then validate_game says why)."""
    if type(obj) is not dict or len(obj) != len(GAME_FIELDS):
        return None
    try:
        # Fifteen distinct names all present in a fifteen-entry dict: exactly GAME_FIELDS.
        game_id = obj["game_id"]
        board_type = obj["board_type"]
        n = obj["num_players"]
        swap_rule = obj["swap_rule"]
        moves = obj["moves"]
        policy = obj["policy"]
        values = obj["values"]
        rankings = obj["rankings"]
        winner = obj["winner"]
        model_sha = obj["model_sha"]
        search = obj["search"]
        source = obj["source"]
        meta = obj["meta"]
        created_hlc = obj["created_hlc"]
        origin = obj["origin_node"]
    except KeyError:
        return None
    if (
        type(game_id) is not str or _SHA_HEX.fullmatch(game_id) is None
        or type(board_type) is not str or board_type not in BOARD_TYPES
        or type(n) is not int or not MIN_PLAYERS <= n <= MAX_PLAYERS
        or type(swap_rule) is not bool or (swap_rule and n != 2)
        or type(moves) is not list or len(moves) > MAX_MOVES
        or type(winner) is not int or not 1 <= winner <= n
        or not _is_rankings(rankings, n) or rankings[winner - 1] != 1
        or (model_sha is not None
            and (type(model_sha) is not str or _SHA_HEX.fullmatch(model_sha) is None))
        or type(source) is not str or source not in SOURCES
        or not _is_small_map(search) or not _is_small_map(meta)
        or type(created_hlc) is not int or not 0 <= created_hlc <= MAX_HLC
        or type(origin) is not str or not _id_text(origin)
    ):
        return None
    for m in moves:
        if type(m) is not bytes or not 2 <= len(m) <= MAX_MOVE_BYTES:
            return None
    packed = _pack(moves)
    size = len(packed)
    if policy is not None:
        if type(policy) is not list or len(policy) != len(moves):
            return None
        for p in policy:
            if type(p) is not bytes or len(p) > MAX_POLICY_BYTES or len(p) % POLICY_ENTRY_BYTES:
                return None
            size += len(p)
    if values is not None:
        if type(values) is not bytes or len(values) != len(moves):
            return None
        size += len(values)
    if size > MAX_GAME_BYTES:
        return None
    if hashlib.sha256(_pack([board_type, n, swap_rule, packed])).hexdigest() != game_id:
        return None
    return _new_tuple(Row, (game_id, _game_version(obj), obj, packed))


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



_MATCH_COLUMNS = tuple(map(operator.itemgetter, (
    "match_id", "participants", "board_type", "num_players", "result", "hlc", "origin_node")))
# Ids joined by a character no id holds: one regex run checks a whole column of them.
_ID_LINES = re.compile(r"(?:[A-Za-z0-9._:@/+=-]{1,128}\n)*")


def _ids_column(ids: tuple) -> bool:
    """Whether every item of a column is an id (`_ID`), checked column-wise: the distinct
    values one by one when they repeat (node and model ids), else all joined in one run."""
    if set(map(type, ids)) != {str}:
        return False
    distinct = set(ids)
    if len(distinct) * 4 < len(ids):
        return all(_ID.fullmatch(x) is not None for x in distinct)
    text = "\n".join(ids) + "\n"
    # The count rules out an id holding the separator, which would pass as two ids.
    return text.count("\n") == len(ids) and _ID_LINES.fullmatch(text) is not None


def screen_matches(rows: Sequence[object]) -> list[Row] | None:
    """screen_match over a whole batch, a column at a time: the Rows it would make when it
    accepts every row, else None (then each row takes screen_match or validate_match).

    The bulk path of a pull or an import: each check runs over a column in one C-level pass
    (type sets, min and max, joined ids, numpy for the scores), a third of screen_match's
    cost per row. It accepts exactly the batches whose every row screen_match accepts.
    """
    if not rows or set(map(type, rows)) != {dict} or set(map(len, rows)) != {len(MATCH_FIELDS)}:
        return None
    try:
        # Seven distinct names found in seven-entry dicts: exactly MATCH_FIELDS each.
        match_ids, participants, boards, players, results, hlcs, origins = (
            tuple(map(column, rows)) for column in _MATCH_COLUMNS)
    except KeyError:
        return None
    if (
        set(map(type, participants)) != {list} or set(map(type, results)) != {list}
        or set(map(type, boards)) != {str} or not set(boards) <= BOARD_TYPES
        or set(map(type, players)) != {int}
        or not MIN_PLAYERS <= min(players) <= max(players) <= MAX_PLAYERS
        or set(map(type, hlcs)) != {int} or not 0 <= min(hlcs) <= max(hlcs) <= MAX_HLC
    ):
        return None
    counts = list(map(len, participants))
    if (
        not MIN_PLAYERS <= min(counts) <= max(counts) <= MAX_PLAYERS
        or list(map(len, results)) != counts
        or not _ids_column(match_ids) or not _ids_column(origins)
        or not _ids_column(tuple(itertools.chain.from_iterable(participants)))
        # After the ids check: a participant that is not a str may not be hashable.
        or list(map(len, map(set, participants))) != counts  # each participant once
        or not all(k == 2 or k == n for k, n in zip(counts, players))
    ):
        return None
    scores = tuple(itertools.chain.from_iterable(results))
    if set(map(type, scores)) != {float}:
        return None
    values = np.array(scores, dtype=np.float64)
    # Written so that NaN fails: every comparison with it is false.
    if not bool(np.all((values >= 0.0) & (values <= 1.0))):
        return None
    sums = np.fromiter(map(math.fsum, results), dtype=np.float64, count=len(results))
    if not bool(np.all(np.abs(sums - np.array(counts) / 2) <= _SCORE_SUM_TOLERANCE)):
        return None
    node_ids = {origin: origin.encode() for origin in set(origins)}
    versions = list(map(bytes.__add__, map(int.to_bytes, hlcs, itertools.repeat(8)),
                        map(node_ids.__getitem__, origins)))
    return list(map(_new_tuple, itertools.repeat(Row),
                    zip(match_ids, versions, rows, itertools.repeat(b""))))

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


# --- evaluation assignments ---------------------------------------------------------------

ASSIGNMENT_FIELDS = frozenset(
    {"kind", "node_id", "board_type", "num_players", "candidate", "opponent", "match_kind",
     "first_trial", "trials", "term", "hlc", "origin_node"}
)


def assignment_key(node_id: str) -> str:
    """One assignment per node: the leader's newest for it replaces the last (LWW)."""
    return ASSIGNMENT_PREFIX + node_id


def new_assignment(
    node_id: str, board_type: str, num_players: int, candidate: str, opponent: str,
    match_kind: str, first_trial: int, trials: int, term: int, hlc: int, origin_node: str,
) -> dict:
    """Evaluation work the leader hands a node: trials first_trial.. of candidate v opponent."""
    return {
        "kind": "assignment", "node_id": node_id, "board_type": board_type,
        "num_players": num_players, "candidate": candidate, "opponent": opponent,
        "match_kind": match_kind, "first_trial": first_trial, "trials": trials, "term": term,
        "hlc": hlc, "origin_node": origin_node,
    }


def _validate_assignment(row: dict) -> Row:
    _fields(row, "assignment", ASSIGNMENT_FIELDS)
    node_id = _ident(row, "node_id")
    _config(row)
    _sha(row, "candidate")
    _ident(row, "opponent")
    _choice(row, "match_kind", MATCH_KINDS)
    _int(row, "first_trial", 0, MAX_TRIAL)
    _int(row, "trials", 1, MAX_ASSIGNED_TRIALS)
    term = _int(row, "term", 0, MAX_TERM)
    hlc = _int(row, "hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    return Row(assignment_key(node_id), alias_version(term, hlc), row)


# --- cluster settings ---------------------------------------------------------------------

# A setting is a leader-written, cluster-wide value, one row per name, versioned (term, hlc)
# like an alias. Each name has its own value check; an unknown name or a bad value is refused.
SETTING_PREFIX = "s:"
SETTING_FIELDS = frozenset({"kind", "name", "value", "term", "hlc", "origin_node"})
SELFPLAY_ALLOCATION = "selfplay_allocation"
# An allocation names each config at most once: 4 boards x 3 player counts.
MAX_ALLOCATION_ENTRIES = len(BOARD_TYPES) * (MAX_PLAYERS - MIN_PLAYERS + 1)
MAX_ALLOCATION_WEIGHT = 1000


def setting_key(name: str) -> str:
    return SETTING_PREFIX + name


def new_setting(name: str, value: object, term: int, hlc: int, origin_node: str) -> dict:
    return {"kind": "setting", "name": name, "value": value, "term": term, "hlc": hlc,
            "origin_node": origin_node}


def check_allocation(value: object) -> list[tuple[str, int, int]]:
    """A selfplay allocation's value: a list of [board_type, num_players, weight], each config
    at most once, weights 1..MAX_ALLOCATION_WEIGHT; returned as tuples, in its order."""
    if type(value) is not list or not 1 <= len(value) <= MAX_ALLOCATION_ENTRIES:
        raise InvalidRow(f"allocation {value!r:.200} is not a list of 1.."
                         f"{MAX_ALLOCATION_ENTRIES} [board_type, num_players, weight]")
    entries: list[tuple[str, int, int]] = []
    for entry in value:
        if (type(entry) is not list or len(entry) != 3
                or type(entry[0]) is not str or entry[0] not in BOARD_TYPES
                or type(entry[1]) is not int or not MIN_PLAYERS <= entry[1] <= MAX_PLAYERS
                or type(entry[2]) is not int or not 1 <= entry[2] <= MAX_ALLOCATION_WEIGHT):
            raise InvalidRow(f"allocation entry {entry!r:.200} is not [board_type, "
                             f"{MIN_PLAYERS}..{MAX_PLAYERS}, 1..{MAX_ALLOCATION_WEIGHT}]")
        entries.append((entry[0], entry[1], entry[2]))
    if len({e[:2] for e in entries}) != len(entries):
        raise InvalidRow(f"allocation {value!r:.200} names a config more than once")
    return entries


_SETTING_VALUES = {SELFPLAY_ALLOCATION: check_allocation}


def _validate_setting(row: dict) -> Row:
    _fields(row, "setting", SETTING_FIELDS)
    name = row["name"]
    check = _SETTING_VALUES.get(name) if type(name) is str else None
    if check is None:
        raise InvalidRow(f"setting name {name!r:.200} is not one of {sorted(_SETTING_VALUES)}")
    check(row["value"])
    term = _int(row, "term", 0, MAX_TERM)
    hlc = _int(row, "hlc", 0, MAX_HLC)
    _ident(row, "origin_node")
    return Row(setting_key(name), alias_version(term, hlc), row)


_REGISTRY_KINDS = {"model": _validate_model, "alias": _validate_alias,
                   "promotion": _validate_promotion, "assignment": _validate_assignment,
                   "setting": _validate_setting}


def validate_registry(obj: object) -> Row:
    """A model-registry row: its `kind` field says model, alias, promotion, assignment or
    setting."""
    if type(obj) is not dict:
        raise InvalidRow(f"registry row {type(obj).__name__} is not a map")
    kind = obj.get("kind")
    validate = _REGISTRY_KINDS.get(kind) if type(kind) is str else None
    if validate is None:
        raise InvalidRow(f"registry row kind {kind!r} is not one of {sorted(_REGISTRY_KINDS)}")
    return validate(obj)
