"""Canonical state serialization (records, hashing) and the compact binary encoding.

``serialize_state`` gives plain data with one spelling per state (sorted keys, rings
bottom first), so ``state_hash`` is stable across processes and machines.
``encode_state``/``decode_state`` carry the same state in a few hundred bytes.
Everything read back is untrusted: sizes, types and ranges are checked.
"""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

from .boards import BOARD_TYPES, board_config
from .state import MAX_PLAYERS, PHASES, GameState, empty_state

_STATUSES = ("active", "completed")
_REASONS = ("", "ring_elimination", "territory", "last_player_standing", "stalemate",
            "resignation")
FORMAT_VERSION = 2  # 2: last-player-standing rounds as the canonical engine counts them


def serialize_state(state: GameState) -> dict[str, Any]:
    """Plain data (JSON/msgpack safe) holding the whole state."""
    keys = state.board.keys
    n = state.num_players
    return {
        "version": FORMAT_VERSION,
        "board": state.board.name,
        "numPlayers": n,
        # In stack order (see GameState.stack_seq), which a mapping keeps.
        "stacks": {keys[c]: list(state.stacks[c]) for c in state.stack_cells_in_order()},
        "markers": {keys[c]: m for c, m in enumerate(state.markers) if m},
        "collapsed": {keys[c]: m for c, m in enumerate(state.collapsed) if m},
        "ringsInHand": state.in_hand[1:],
        "eliminatedRings": state.eliminated[1:],
        "currentPlayer": state.current,
        "phase": state.phase,
        "status": state.status,
        "winner": state.winner,
        "victoryReason": state.victory_reason,
        "ranks": list(state.ranks) if state.ranks else None,
        "turn": state.turn,
        "moveNumber": state.move_number,
        "mustMove": keys[state.must_move] if state.must_move >= 0 else None,
        "chainPosition": keys[state.chain_pos] if state.chain_pos >= 0 else None,
        "pending": state.pending,
        "recoveryTurn": state.recovery_turn,
        "turnChanged": state.turn_changed,
        "lpsFirst": state.lps_first,
        "roundReal": state.round_real,
        "roundSeen": state.round_seen,
        "lpsPlayer": state.lps_player,
        "lpsRounds": state.lps_rounds,
        "swapEligible": state.swap_eligible,
        "swapped": state.swapped,
        "elimTurn": state.elim_turn[1:],
        "out": state.out,
    }


def state_hash(state: GameState) -> str:
    """sha256 hex of the canonical serialization."""
    blob = json.dumps(serialize_state(state), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


def _need(cond: bool, what: str, value: object, expected: str) -> None:
    if not cond:
        raise ValueError(f"state field {what} = {value!r}: expected {expected}")


def _int(data: dict[str, Any], key: str, lo: int, hi: int) -> int:
    v = data.get(key)
    _need(isinstance(v, int) and not isinstance(v, bool) and lo <= v <= hi, key, v,
          f"an int in {lo}..{hi}")
    return v


def _bool(data: dict[str, Any], key: str) -> bool:
    v = data.get(key)
    _need(isinstance(v, bool), key, v, "a bool")
    return v


def _int_list(data: dict[str, Any], key: str, length: int, hi: int) -> list[int]:
    v = data.get(key)
    _need(isinstance(v, list) and len(v) == length
          and all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= hi for x in v),
          key, v, f"a list of {length} ints in 0..{hi}")
    return list(v)


def deserialize_state(data: object) -> GameState:
    """Rebuild and validate a state from ``serialize_state`` output."""
    _need(isinstance(data, dict), "state", type(data).__name__, "a mapping")
    assert isinstance(data, dict)
    _need(data.get("version") == FORMAT_VERSION, "version", data.get("version"),
          str(FORMAT_VERSION))
    _need(data.get("board") in BOARD_TYPES, "board", data.get("board"), f"one of {BOARD_TYPES}")
    cfg = board_config(data["board"])
    n = _int(data, "numPlayers", 1, MAX_PLAYERS)
    big = 1 << 40
    s = empty_state(cfg, n, 0, False)
    for field, table in (("stacks", None), ("markers", s.markers), ("collapsed", s.collapsed)):
        entries = data.get(field)
        _need(isinstance(entries, dict) and len(entries) <= cfg.num_cells, field,
              type(entries).__name__, f"a mapping of at most {cfg.num_cells} cells")
        for key, value in entries.items():
            cell = cfg.cell_of(key)
            if table is None:
                _need(isinstance(value, list) and 0 < len(value) <= n * cfg.rings_per_player
                      and all(isinstance(r, int) and 1 <= r <= n for r in value),
                      f"stacks[{key}]", value, f"a non-empty list of players 1..{n}")
                s.put_stack(cell, tuple(value))
            else:
                _need(isinstance(value, int) and 1 <= value <= n, f"{field}[{key}]", value,
                      f"a player 1..{n}")
                table[cell] = value
    for c in range(cfg.num_cells):
        occupied = (s.stacks[c] is not None) + bool(s.markers[c]) + bool(s.collapsed[c])
        _need(occupied <= 1, "cell", cfg.keys[c], "at most one of stack, marker, collapsed")
    s.in_hand = [0, *_int_list(data, "ringsInHand", n, cfg.rings_per_player)]
    s.eliminated = [0, *_int_list(data, "eliminatedRings", n, n * cfg.rings_per_player)]
    derive_counts(s)
    _check_supply(s)
    s.current = _int(data, "currentPlayer", 1, n)
    _need(data.get("phase") in PHASES, "phase", data.get("phase"), f"one of {PHASES}")
    s.phase = data["phase"]
    _need(data.get("status") in _STATUSES, "status", data.get("status"), f"one of {_STATUSES}")
    s.status = data["status"]
    s.winner = _int(data, "winner", 0, n)
    _need(data.get("victoryReason") in _REASONS, "victoryReason", data.get("victoryReason"),
          f"one of {_REASONS}")
    s.victory_reason = data["victoryReason"]
    ranks = data.get("ranks")
    if ranks is not None:
        s.ranks = tuple(_int_list(data, "ranks", n, n))
    s.turn = _int(data, "turn", 0, big)
    s.move_number = _int(data, "moveNumber", 0, big)
    s.must_move = -1 if data.get("mustMove") is None else cfg.cell_of(data["mustMove"])
    chain = data.get("chainPosition")
    s.chain_pos = -1 if chain is None else cfg.cell_of(chain)
    s.pending = _int(data, "pending", 0, 3)
    s.recovery_turn = _bool(data, "recoveryTurn")
    s.turn_changed = _bool(data, "turnChanged")
    mask = (1 << (n + 1)) - 1
    s.lps_first = _int(data, "lpsFirst", 0, n)
    s.round_real = _int(data, "roundReal", 0, mask)
    s.round_seen = _int(data, "roundSeen", 0, mask)
    s.lps_player = _int(data, "lpsPlayer", 0, n)
    s.lps_rounds = _int(data, "lpsRounds", 0, big)
    s.swap_eligible = _bool(data, "swapEligible")
    s.swapped = _bool(data, "swapped")
    s.elim_turn = [0, *_int_list(data, "elimTurn", n, big)]
    s.out = _int(data, "out", 0, mask)
    return s


def _check_supply(s: GameState) -> None:
    """No player may have more rings of their colour in hand and on the board than the
    board's supply (RR-CANON-R020)."""
    cap = s.board.rings_per_player
    for p in range(1, s.num_players + 1):
        held = s.in_hand[p] + s.board_rings[p]
        if held > cap:
            raise ValueError(f"player {p} holds {held} rings in hand and on the board: "
                             f"expected at most {cap} on {s.board.name}")


def derive_counts(s: GameState) -> None:
    """Recompute the cached per-player counts from the board."""
    n = s.num_players
    s.territory = [0] * (n + 1)
    for owner in s.collapsed:
        if owner:
            s.territory[owner] += 1
    s.board_rings = [0] * (n + 1)
    for st in s.stacks:
        if st:
            for r in st:
                s.board_rings[r] += 1


# Compact binary encoding --------------------------------------------------------------

_HEADER = struct.Struct("<BBBBBBBBBBBBIIIIHHII")
_CELL_EMPTY, _CELL_MARKER, _CELL_COLLAPSED, _CELL_STACK = 0, 1, 2, 3


def encode_state(state: GameState) -> bytes:
    """The whole state in a compact byte string: a fixed header, per-player counters,
    then one byte per cell (kind << 4 | owner, or the height of a stack followed by its
    rings bottom first, two players per byte), then the stacks' cells in stack order
    (two bytes each)."""
    n = state.num_players
    flags = (
        state.recovery_turn | state.turn_changed << 1
        | state.swap_eligible << 3 | state.swapped << 4 | (state.ranks is not None) << 5
    )
    head = _HEADER.pack(
        FORMAT_VERSION, BOARD_TYPES.index(state.board.name), n, state.current,
        PHASES.index(state.phase), _STATUSES.index(state.status), state.winner,
        _REASONS.index(state.victory_reason), state.pending, flags, state.lps_player,
        state.out, state.turn, state.move_number, state.must_move + 1, state.chain_pos + 1,
        state.round_real, state.round_seen, state.lps_rounds, state.lps_first,
    )
    per_player = struct.pack(
        f"<{3 * n}I", *state.in_hand[1:], *state.eliminated[1:],
        *state.elim_turn[1:],
    )
    ranks = bytes(state.ranks) if state.ranks is not None else b""
    cells = bytearray()
    for c in range(state.board.num_cells):
        s = state.stacks[c]
        if s:
            h = len(s)
            cells += struct.pack("<BH", _CELL_STACK << 4, h)
            for i in range(0, h, 2):
                cells.append(s[i] | ((s[i + 1] << 4) if i + 1 < h else 0))
        elif state.markers[c]:
            cells.append(_CELL_MARKER << 4 | state.markers[c])
        elif state.collapsed[c]:
            cells.append(_CELL_COLLAPSED << 4 | state.collapsed[c])
        else:
            cells.append(0)
    order = state.stack_cells_in_order()
    return head + per_player + ranks + bytes(cells) + struct.pack(f"<{len(order)}H", *order)


def decode_state(blob: bytes) -> GameState:
    """Inverse of ``encode_state``; raises ValueError on anything malformed."""
    if not isinstance(blob, (bytes, bytearray)) or len(blob) < _HEADER.size:
        raise ValueError(f"encoded state: expected at least {_HEADER.size} bytes")
    (version, board_i, n, current, phase_i, status_i, winner, reason_i, pending, flags,
     lps_player, out, turn, move_number, must, chain, round_real, round_seen, lps_rounds,
     lps_first) = _HEADER.unpack_from(blob)
    if version != FORMAT_VERSION:
        raise ValueError(f"encoded state version {version}: expected {FORMAT_VERSION}")
    if board_i >= len(BOARD_TYPES) or not 1 <= n <= MAX_PLAYERS:
        raise ValueError(f"encoded state board {board_i} / players {n}: out of range")
    if phase_i >= len(PHASES) or status_i >= len(_STATUSES) or reason_i >= len(_REASONS):
        raise ValueError("encoded state phase/status/reason out of range")
    cfg = board_config(BOARD_TYPES[board_i])
    if must > cfg.num_cells or chain > cfg.num_cells or not 1 <= current <= n:
        raise ValueError("encoded state cell or player out of range")
    s = empty_state(cfg, n, 0, False)
    s.current, s.phase, s.status = current, PHASES[phase_i], _STATUSES[status_i]
    s.winner, s.victory_reason, s.pending = winner, _REASONS[reason_i], pending
    s.recovery_turn, s.turn_changed = bool(flags & 1), bool(flags & 2)
    s.swap_eligible, s.swapped = bool(flags & 8), bool(flags & 16)
    s.lps_player, s.out, s.turn, s.move_number = lps_player, out, turn, move_number
    s.must_move, s.chain_pos = must - 1, chain - 1
    s.round_real, s.round_seen, s.lps_rounds = round_real, round_seen, lps_rounds
    if lps_first > n:
        raise ValueError(f"encoded state: last-player-standing round opener {lps_first} > {n}")
    s.lps_first = lps_first
    pos = _HEADER.size
    size = 12 * n
    if len(blob) < pos + size:
        raise ValueError("encoded state truncated in the player counters")
    vals = struct.unpack_from(f"<{3 * n}I", blob, pos)
    pos += size
    s.in_hand = [0, *vals[:n]]
    s.eliminated = [0, *vals[n:2 * n]]
    s.elim_turn = [0, *vals[2 * n:]]
    if flags & 32:
        if len(blob) < pos + n:
            raise ValueError("encoded state truncated in the ranks")
        s.ranks = tuple(blob[pos:pos + n])
        pos += n
    for c in range(cfg.num_cells):
        if pos >= len(blob):
            raise ValueError(f"encoded state truncated at cell {c}")
        b = blob[pos]
        kind, owner = b >> 4, b & 15
        if kind == _CELL_STACK:
            if pos + 3 > len(blob):
                raise ValueError(f"encoded state truncated at cell {c}")
            (h,) = struct.unpack_from("<H", blob, pos + 1)
            pos += 3
            nbytes = (h + 1) // 2
            if h == 0 or pos + nbytes > len(blob):
                raise ValueError(f"encoded state: bad stack at cell {c}")
            rings = []
            for i in range(h):
                byte = blob[pos + i // 2]
                rings.append(byte & 15 if i % 2 == 0 else byte >> 4)
            if not all(1 <= r <= n for r in rings):
                raise ValueError(f"encoded state: ring owner out of range at cell {c}")
            s.stacks[c] = tuple(rings)
            pos += nbytes
            continue
        if owner > n or (kind != _CELL_EMPTY and owner == 0) or kind > _CELL_STACK:
            raise ValueError(f"encoded state: bad cell byte {b} at cell {c}")
        if kind == _CELL_MARKER:
            s.markers[c] = owner
        elif kind == _CELL_COLLAPSED:
            s.collapsed[c] = owner
        pos += 1
    cells_with_stacks = [c for c, st in enumerate(s.stacks) if st]
    if len(blob) - pos != 2 * len(cells_with_stacks):
        raise ValueError(f"encoded state: {len(blob) - pos} bytes after the cells: expected "
                         f"the order of {len(cells_with_stacks)} stacks")
    order = struct.unpack_from(f"<{len(cells_with_stacks)}H", blob, pos)
    if sorted(order) != cells_with_stacks:
        raise ValueError("encoded state: the stack order does not list each stack once")
    for c in order:
        s.put_stack(c, s.stacks[c])
    derive_counts(s)
    _check_supply(s)
    return s
