"""Game records: the compact move encoding, search targets and replay.

This is the engine's side of the stored game row (storage.rows documents the row). A record
is plain data: board type, player count, whether the pie rule was on, the moves as bytes, and
optionally one policy target and one root value per move.

Move encoding (2..2048 bytes, little-endian):

    byte 0    move type: index into moves.MOVE_TYPES
    byte 1    player (bits 0-2) | option << 3 (bits 3-4) | placement count << 5 (bits 5-6)
    byte 2    present only when a field below is: src, dst, target, extract, cells, border
              present (bits 0-5), recovery mode index + 1 (bits 6-7; 0: none)
    then      u16 cell for each present one of src, dst, target, extract, in that order;
              u16 count + u16 cells for cells, then for border

One spelling per move, so a game's bytes (and its game_id) are the same on every node.

Policy targets: a position's legal moves are put in one order that does not depend on the
order the rules engine happens to generate them in: sorted by their encoding (`sorted_legal`).
A target is 3-byte entries (u16 index into that order, u8 weight); weights are relative.
Root values are one signed byte per move: the search's value for the player to move, x127.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from .moves import MOVE_TYPES, RECOVERY_MODES, Move
from .rules import IllegalMove, apply_move_in_place, legal_moves
from .state import ACTIVE, GameState, initial_state

MAX_MOVE_BYTES = 2048
POLICY_ENTRY_BYTES = 3
MAX_POLICY_ENTRIES = 255
_TYPE_INDEX = {t: i for i, t in enumerate(MOVE_TYPES)}
_MODE_INDEX = {m: i + 1 for i, m in enumerate(RECOVERY_MODES)}
_SRC, _DST, _TARGET, _EXTRACT, _CELLS, _BORDER = (1 << i for i in range(6))
_U16 = struct.Struct("<H")


class InvalidRecord(ValueError):
    """A record that does not decode or does not replay legally; the message says where."""


@lru_cache(maxsize=1 << 16)  # moves recur across positions and games; encoding is the cost
def encode_move(move: Move) -> bytes:
    """The compact encoding of ``move`` (see the module docstring)."""
    head = bytearray((_TYPE_INDEX[move.type], move.player | move.option << 3 | move.count << 5))
    present = ((move.src >= 0) * _SRC | (move.dst >= 0) * _DST | (move.target >= 0) * _TARGET
               | (move.extract >= 0) * _EXTRACT | bool(move.cells) * _CELLS
               | bool(move.border) * _BORDER)
    mode = _MODE_INDEX[move.mode] if move.mode else 0
    if not present and not mode:
        return bytes(head)
    head.append(present | mode << 6)
    cells = [c for c, bit in ((move.src, _SRC), (move.dst, _DST), (move.target, _TARGET),
                              (move.extract, _EXTRACT)) if present & bit]
    for group in (move.cells, move.border):
        if group:
            cells.append(len(group))
            cells.extend(group)
    return bytes(head) + struct.pack(f"<{len(cells)}H", *cells)


def decode_move(data: bytes, num_cells: int) -> Move:
    """The Move encoded in ``data``; raises InvalidRecord for anything malformed."""
    if type(data) is not bytes or not 2 <= len(data) <= MAX_MOVE_BYTES:
        raise InvalidRecord(f"move {data!r:.60} is not 2..{MAX_MOVE_BYTES} bytes")
    t, b1 = data[0], data[1]
    if t >= len(MOVE_TYPES):
        raise InvalidRecord(f"move type index {t} is not below {len(MOVE_TYPES)}")
    player, option, count = b1 & 7, b1 >> 3 & 3, b1 >> 5 & 3
    if not 1 <= player <= 4 or b1 >> 7:
        raise InvalidRecord(f"move byte 1 {b1:#x}: player {player} is not 1..4")
    if len(data) == 2:
        return Move(MOVE_TYPES[t], player, count=count, option=option)
    present, mode = data[2] & 63, data[2] >> 6
    if (len(data) - 3) % 2:
        raise InvalidRecord(f"move {data.hex()}: cell fields are not whole u16s")
    words = struct.unpack(f"<{(len(data) - 3) // 2}H", data[3:])
    pos = 0
    fields: list[int] = []
    for bit in (_SRC, _DST, _TARGET, _EXTRACT):
        if present & bit:
            if pos >= len(words):
                raise InvalidRecord(f"move {data.hex()} ends before its cell fields")
            fields.append(words[pos])
            pos += 1
        else:
            fields.append(-1)
    groups: list[tuple[int, ...]] = []
    for bit in (_CELLS, _BORDER):
        if present & bit:
            if pos >= len(words) or not 0 < words[pos] <= len(words) - pos - 1:
                raise InvalidRecord(f"move {data.hex()}: a cell list overruns the move")
            groups.append(tuple(words[pos + 1:pos + 1 + words[pos]]))
            pos += 1 + words[pos]
        else:
            groups.append(())
    if pos != len(words):
        raise InvalidRecord(f"move {data.hex()}: {len(words) - pos} trailing cells")
    if any(c >= num_cells for c in fields) or any(c >= num_cells for g in groups for c in g):
        raise InvalidRecord(f"move {data.hex()}: a cell is not below {num_cells}")
    src, dst, target, extract = fields
    return Move(MOVE_TYPES[t], player, src, dst, target, count, groups[0], groups[1], option,
                RECOVERY_MODES[mode - 1] if mode else "", extract)


def sorted_legal(state: GameState) -> tuple[list[Move], list[bytes]]:
    """The legal moves of ``state`` and their encodings, in the order policy targets index."""
    pairs = sorted((encode_move(m), m) for m in legal_moves(state))
    return [m for _, m in pairs], [e for e, _ in pairs]


def encode_policy(weights: np.ndarray) -> bytes:
    """A policy target over the sorted legal moves (``weights`` sums to ~1): the heaviest
    MAX_POLICY_ENTRIES entries, weights scaled to 255 and rounded; empty for a single move."""
    if len(weights) <= 1:
        return b""
    top = np.argsort(-weights, kind="stable")[:MAX_POLICY_ENTRIES]
    scale = 255.0 / max(float(weights[top[0]]), 1e-12)
    out = bytearray()
    for i in sorted(top.tolist()):
        w = int(round(float(weights[i]) * scale))
        if w > 0:
            out += _U16.pack(i) + bytes((w,))
    return bytes(out)


def decode_policy(target: bytes, num_legal: int) -> np.ndarray:
    """The target as float32 probabilities over ``num_legal`` sorted legal moves (all zero
    when the target is empty); raises InvalidRecord for an index out of range."""
    if len(target) % POLICY_ENTRY_BYTES:
        raise InvalidRecord(f"policy target of {len(target)} bytes is not whole entries")
    probs = np.zeros(num_legal, dtype=np.float32)
    for k in range(0, len(target), POLICY_ENTRY_BYTES):
        (i,) = _U16.unpack_from(target, k)
        if i >= num_legal:
            raise InvalidRecord(f"policy index {i} is not below {num_legal} legal moves")
        probs[i] += target[k + 2]
    total = probs.sum()
    return probs / total if total > 0 else probs


def encode_value(value: float) -> int:
    """A root value in [-1, 1] as the unsigned byte of its int8 form (x127)."""
    return int(round(max(-1.0, min(1.0, value)) * 127)) & 0xFF


def decode_values(values: bytes) -> np.ndarray:
    return np.frombuffer(values, dtype=np.int8).astype(np.float32) / 127.0


def start_state(board_type: str, num_players: int, swap_rule: bool) -> GameState:
    """The starting position of a record: the engine's, with the pie rule as recorded."""
    state = initial_state(board_type, num_players)
    if swap_rule and num_players != 2:
        raise InvalidRecord("the pie rule (swap_rule) exists only for 2 players")
    state.swap_eligible = swap_rule
    return state


@dataclass(frozen=True, slots=True)
class Position:
    """One position of a replayed record: the state before the move, the sorted legal
    moves, the index of the move played among them, and its policy target (or None)."""

    state: GameState
    legal: list[Move]
    played: int
    target: np.ndarray | None


def positions(
    board_type: str, num_players: int, swap_rule: bool, moves: Sequence[bytes],
    policy: Sequence[bytes] | None = None,
) -> Iterator[Position]:
    """Replay a record move by move, checking each against the legal moves; the state
    yielded is the engine's own (copy it to keep it). Raises InvalidRecord at the first
    move that is malformed or illegal, or when moves remain after the game ended."""
    state = start_state(board_type, num_players, swap_rule)
    cells = state.board.num_cells
    if policy is not None and len(policy) != len(moves):
        raise InvalidRecord(f"{len(policy)} policy targets for {len(moves)} moves")
    for i, data in enumerate(moves):
        if state.status != ACTIVE:
            raise InvalidRecord(f"move {i}: the game ended after {i} moves")
        move = decode_move(data, cells)
        legal, encoded = sorted_legal(state)
        try:
            played = encoded.index(data)
        except ValueError:
            raise InvalidRecord(f"move {i} {move} is not legal in phase {state.phase}") from None
        target = None
        if policy is not None:
            target = decode_policy(policy[i], len(legal))
        yield Position(state, legal, played, target)
        try:
            apply_move_in_place(state, move)
        except IllegalMove as exc:
            raise InvalidRecord(f"move {i}: {exc}") from None


def replay(
    board_type: str, num_players: int, swap_rule: bool, moves: Sequence[bytes],
    policy: Sequence[bytes] | None = None,
) -> GameState:
    """The final state of a record after checking every move (and target) on the way."""
    state = None
    for position in positions(board_type, num_players, swap_rule, moves, policy):
        state = position.state  # the one state, moved on in place after each yield
    return state if state is not None else start_state(board_type, num_players, swap_rule)


def rankings(state: GameState) -> list[int]:
    """Final ranks of players 1..n by our "R177 cascade" rule (engine.victory: winner first,
    then territory, eliminated rings, markers, later permanent elimination; 1224 ranks)."""
    if state.ranks is None:
        raise InvalidRecord("the game has not ended: no rankings")
    return list(state.ranks)


def check_finished(board_type: str, num_players: int, swap_rule: bool, moves: Sequence[bytes],
                   policy: Sequence[bytes] | None, ranks: Sequence[int], winner: int) -> None:
    """Raise InvalidRecord unless the record replays legally to its end and its rankings and
    winner are the ones the engine gives (what a stored game row must satisfy)."""
    final = replay(board_type, num_players, swap_rule, moves, policy)
    if final.status == ACTIVE:
        raise InvalidRecord(f"the game has not ended after {len(moves)} moves")
    if list(ranks) != rankings(final) or winner != final.winner:
        raise InvalidRecord(f"rankings {list(ranks)} / winner {winner} differ from the "
                            f"replay's {rankings(final)} / {final.winner}")
