"""Moves: the 21 canonical move types and their canonical plain-data form.

A ``Move`` names cells by index on its board; ``serialize_move`` turns it into plain data
(position keys such as ``"3,4"`` or ``"1,-1,0"``) that game records store and hash, and
``deserialize_move`` validates such data on the way back in.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .boards import BoardConfig

PLACE_RING = "place_ring"
SKIP_PLACEMENT = "skip_placement"
NO_PLACEMENT_ACTION = "no_placement_action"
MOVE_STACK = "move_stack"
NO_MOVEMENT_ACTION = "no_movement_action"
OVERTAKING_CAPTURE = "overtaking_capture"
CONTINUE_CAPTURE_SEGMENT = "continue_capture_segment"
SKIP_CAPTURE = "skip_capture"
SWAP_SIDES = "swap_sides"
PROCESS_LINE = "process_line"
CHOOSE_LINE_OPTION = "choose_line_option"
NO_LINE_ACTION = "no_line_action"
CHOOSE_TERRITORY_OPTION = "choose_territory_option"
SKIP_TERRITORY_PROCESSING = "skip_territory_processing"
NO_TERRITORY_ACTION = "no_territory_action"
ELIMINATE_RINGS_FROM_STACK = "eliminate_rings_from_stack"
FORCED_ELIMINATION = "forced_elimination"
RECOVERY_SLIDE = "recovery_slide"
SKIP_RECOVERY = "skip_recovery"
RESIGN = "resign"
TIMEOUT = "timeout"

MOVE_TYPES = (
    PLACE_RING, SKIP_PLACEMENT, NO_PLACEMENT_ACTION, MOVE_STACK, NO_MOVEMENT_ACTION,
    OVERTAKING_CAPTURE, CONTINUE_CAPTURE_SEGMENT, SKIP_CAPTURE, SWAP_SIDES, PROCESS_LINE,
    CHOOSE_LINE_OPTION, NO_LINE_ACTION, CHOOSE_TERRITORY_OPTION, SKIP_TERRITORY_PROCESSING,
    NO_TERRITORY_ACTION, ELIMINATE_RINGS_FROM_STACK, FORCED_ELIMINATION, RECOVERY_SLIDE,
    SKIP_RECOVERY, RESIGN, TIMEOUT,
)
# Moves a host fills in when they are the only legal move: nothing to decide (R075/R076).
BOOKKEEPING_TYPES = frozenset(
    {NO_PLACEMENT_ACTION, NO_MOVEMENT_ACTION, NO_LINE_ACTION, NO_TERRITORY_ACTION}
)
RECOVERY_MODES = ("line", "fallback", "stack_strike")


class Move(NamedTuple):
    """One move. Fields a move type does not use keep their defaults.

    A NamedTuple rather than a dataclass: legal-move generation builds hundreds of these
    per position, and tuple construction is several times cheaper; it is just as
    immutable, hashable and plain.
    """

    type: str
    player: int
    src: int = -1  # from: moving stack, capturing stack, sliding marker
    dst: int = -1  # to: landing, placement cell, stack to eliminate from
    target: int = -1  # the stack overtaken by a capture
    count: int = 0  # rings placed
    cells: tuple[int, ...] = ()  # line collapsed / region processed
    border: tuple[int, ...] = ()  # option-2 line: the whole line the segment is from
    option: int = 0  # line or recovery reward option (1: collapse all, 2: exact segment)
    mode: str = ""  # recovery_slide: line | fallback | stack_strike
    extract: int = -1  # recovery: stack whose bottommost buried ring pays the cost


def serialize_move(move: Move, board: BoardConfig) -> dict[str, Any]:
    """The canonical plain-data form of ``move`` (JSON and msgpack safe, stable keys)."""
    keys = board.keys
    out: dict[str, Any] = {"type": move.type, "player": move.player}
    if move.src >= 0:
        out["from"] = keys[move.src]
    if move.dst >= 0:
        out["to"] = keys[move.dst]
    if move.target >= 0:
        out["captureTarget"] = keys[move.target]
    if move.count:
        out["placementCount"] = move.count
    if move.cells:
        out["cells"] = [keys[c] for c in move.cells]
    if move.border:
        out["border"] = [keys[c] for c in move.border]
    if move.option:
        out["option"] = move.option
    if move.mode:
        out["recoveryMode"] = move.mode
    if move.extract >= 0:
        out["extractionStack"] = keys[move.extract]
    return out


_ALLOWED_KEYS = frozenset(
    {"type", "player", "from", "to", "captureTarget", "placementCount", "cells", "border",
     "option", "recoveryMode", "extractionStack"}
)


def _int_field(data: dict[str, Any], key: str, lo: int, hi: int) -> int:
    value = data[key]
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"move field {key!r} = {value!r}: expected an int in {lo}..{hi}")
    return value


def _cell_list(data: dict[str, Any], key: str, board: BoardConfig) -> tuple[int, ...]:
    value = data[key]
    if not isinstance(value, list) or len(value) > board.num_cells:
        raise ValueError(
            f"move field {key!r}: expected a list of at most {board.num_cells} positions"
        )
    return tuple(board.cell_of(v) for v in value)


def deserialize_move(data: object, board: BoardConfig) -> Move:
    """Validate plain data from ``serialize_move`` (e.g. from a game record) into a Move."""
    if not isinstance(data, dict):
        raise TypeError(f"move {data!r}: expected a mapping")
    unknown = set(data) - _ALLOWED_KEYS
    if unknown:
        raise ValueError(f"move has unknown fields {sorted(map(str, unknown))}")
    mtype = data.get("type")
    if mtype not in MOVE_TYPES:
        raise ValueError(f"move type {mtype!r}: expected one of {MOVE_TYPES}")
    if "player" not in data:
        raise ValueError("move without 'player'")
    player = _int_field(data, "player", 1, 4)
    kwargs: dict[str, Any] = {}
    for key, field in (("from", "src"), ("to", "dst"), ("captureTarget", "target"),
                       ("extractionStack", "extract")):
        if key in data:
            if not isinstance(data[key], str):
                raise ValueError(f"move field {key!r} = {data[key]!r}: expected a position key")
            kwargs[field] = board.cell_of(data[key])
    if "placementCount" in data:
        kwargs["count"] = _int_field(data, "placementCount", 1, 3)
    if "option" in data:
        kwargs["option"] = _int_field(data, "option", 1, 2)
    if "cells" in data:
        kwargs["cells"] = _cell_list(data, "cells", board)
    if "border" in data:
        kwargs["border"] = _cell_list(data, "border", board)
    if "recoveryMode" in data:
        if data["recoveryMode"] not in RECOVERY_MODES:
            raise ValueError(
                f"recoveryMode {data['recoveryMode']!r}: expected one of {RECOVERY_MODES}"
            )
        kwargs["mode"] = data["recoveryMode"]
    return Move(mtype, player, **kwargs)
