"""The turn's phase machine: ``legal_moves`` and ``apply_move`` (RR-CANON-R070-R076).

Every phase visit is an explicit move, bookkeeping included: a phase with nothing to do
offers exactly one ``no_*_action`` move, which a host may fill in. ``apply_move`` trusts
its move (self-play only applies generated moves); hosts applying moves from outside
check them with ``is_legal`` first.
"""

from __future__ import annotations

from . import moves as mt
from .lines import find_lines
from .movement import (
    has_capture_from,
    has_legal_placement,
    has_stack_move,
    move_stack,
    placement_moves,
    stack_moves,
)
from .moves import Move
from .recovery import (
    extract_buried_ring,
    extraction_cells,
    first_extraction_cell,
    recovery_eligible,
    recovery_moves,
)
from .state import (
    ACTIVE,
    CAPTURE,
    CHAIN_CAPTURE,
    FORCED_ELIMINATION,
    LINE_PROCESSING,
    MOVEMENT,
    PENDING_EXTRACTION,
    PENDING_LINE,
    PENDING_NONE,
    PENDING_TERRITORY,
    RING_PLACEMENT,
    TERRITORY_PROCESSING,
    GameState,
    cap_height,
)
from .territory import find_regions, region_border
from .victory import (
    LAST_PLAYER_STANDING,
    RESIGNATION,
    check_victory,
    finish,
    resolve_stalemate,
)

LAST_PLAYER_STANDING_ROUNDS = 3  # R172: sole real actor for three consecutive rounds


class IllegalMove(ValueError):
    """A move that is not among the legal moves of the state it was applied to."""


# Legal moves -------------------------------------------------------------------------


def legal_moves(state: GameState) -> list[Move]:
    """Every legal move of the current player in the current phase (never empty while the
    game is active: a phase with nothing to decide offers its bookkeeping move)."""
    if state.status != ACTIVE:
        return []
    p = state.current
    phase = state.phase
    if phase == RING_PLACEMENT:
        return _placement_phase(state, p)
    if phase == MOVEMENT:
        return _movement_phase(state, p)
    if phase == CAPTURE or phase == CHAIN_CAPTURE:
        return _capture_phase(state, p)
    if phase == LINE_PROCESSING:
        return _line_phase(state, p)
    if phase == TERRITORY_PROCESSING:
        return _territory_phase(state, p)
    if phase == FORCED_ELIMINATION:
        return [Move(mt.FORCED_ELIMINATION, p, -1, c) for c in state.controlled_cells(p)]
    raise ValueError(f"state phase {phase!r}: expected one of the active phases")


def _placement_phase(state: GameState, p: int) -> list[Move]:
    out: list[Move] = []
    placement_moves(state, p, out)
    # With rings in hand, placement is optional only when something else can be done
    # instead (R080): a stack that can move, or a recovery the player may prefer (R110).
    # That holds even when no placement is legal: the skip is the move then.
    if state.in_hand[p] > 0 and (has_stack_move(state, p) or recovery_eligible(state, p)):
        out.append(Move(mt.SKIP_PLACEMENT, p))
    elif not out:
        out.append(Move(mt.NO_PLACEMENT_ACTION, p))
    if state.swap_eligible and p == 2 and state.turn == 2 and state.num_players == 2:
        out.append(Move(mt.SWAP_SIDES, p))
    return out


def _movement_phase(state: GameState, p: int) -> list[Move]:
    out: list[Move] = []
    if state.must_move >= 0:
        stack_moves(state, state.must_move, p, out, mt.OVERTAKING_CAPTURE)
    else:
        controls = False
        for c, s in enumerate(state.stacks):
            if s and s[-1] == p:
                controls = True
                stack_moves(state, c, p, out, mt.OVERTAKING_CAPTURE)
        if not controls and recovery_eligible(state, p):
            out = recovery_moves(state, p)
            if out:
                out.append(Move(mt.SKIP_RECOVERY, p))
    if not out:
        out.append(Move(mt.NO_MOVEMENT_ACTION, p))
    return out


def _capture_phase(state: GameState, p: int) -> list[Move]:
    out: list[Move] = []
    chain = state.phase == CHAIN_CAPTURE
    kind = mt.CONTINUE_CAPTURE_SEGMENT if chain else mt.OVERTAKING_CAPTURE
    if state.chain_pos >= 0:
        stack_moves(state, state.chain_pos, p, out, kind, captures_only=True)
    else:  # a state loaded without its capturing stack: any controlled stack may capture
        for c, s in enumerate(state.stacks):
            if s and s[-1] == p:
                stack_moves(state, c, p, out, kind, captures_only=True)
    if not chain:
        out.append(Move(mt.SKIP_CAPTURE, p))  # the capture after a move is optional
    return out


def _line_phase(state: GameState, p: int) -> list[Move]:
    if state.pending == PENDING_LINE:
        targets = state.controlled_cells(p)
        if targets:  # else nothing can pay: the cost is waived (R122)
            out = [Move(mt.ELIMINATE_RINGS_FROM_STACK, p, -1, c) for c in targets]
            # Another exact line may be collapsed before paying, and one ring then pays
            # for both (departure line-before-reward); not the 3-marker lines of hex8
            # with 3-4 players, which the canonical engine offers only as options.
            if not (state.board.name == "hex8" and state.num_players >= 3):
                out.extend(m for m in _line_options(state, p) if m.type == mt.PROCESS_LINE)
            return out
    out = _line_options(state, p)
    if not out:
        out.append(Move(mt.NO_LINE_ACTION, p))
    return out


def _line_options(state: GameState, p: int) -> list[Move]:
    need = state.line_length
    out: list[Move] = []
    for line in find_lines(state, p):
        if len(line) == need:
            out.append(Move(mt.PROCESS_LINE, p, -1, -1, -1, 0, line))
        else:
            out.append(Move(mt.CHOOSE_LINE_OPTION, p, -1, -1, -1, 0, line, (), 1))
            for i in range(len(line) - need + 1):
                out.append(Move(mt.CHOOSE_LINE_OPTION, p, -1, -1, -1, 0, line[i:i + need],
                                line, 2))
    return out


def _territory_phase(state: GameState, p: int) -> list[Move]:
    elim = mt.ELIMINATE_RINGS_FROM_STACK
    targets: list[int] = []
    if state.pending == PENDING_TERRITORY:
        targets = state.controlled_cells(p)
    elif state.pending == PENDING_EXTRACTION:
        targets = extraction_cells(state, p)
    if targets:  # an owed cost with nothing left to pay it is waived
        return [Move(elim, p, -1, c) for c in targets]
    out = _processable_regions(state, p)
    if out:
        out.append(Move(mt.SKIP_TERRITORY_PROCESSING, p))
    else:
        out.append(Move(mt.NO_TERRITORY_ACTION, p))
    return out


def _processable_regions(state: GameState, p: int) -> list[Move]:
    out: list[Move] = []
    recovery = state.recovery_turn
    mine = [] if recovery else state.controlled_cells(p)
    if not recovery and not mine:
        return out  # nothing to pay any region's cost with: no region to look for
    for cells in find_regions(state):
        inside = frozenset(cells)
        # R143: the cost must be payable from outside the region.
        if recovery:
            payable = bool(extraction_cells(state, p, inside))
        else:
            payable = not inside.issuperset(mine)
        if payable:
            out.append(Move(mt.CHOOSE_TERRITORY_OPTION, p, -1, cells[0], -1, 0, cells))
    return out


def is_legal(state: GameState, move: Move) -> bool:
    return move in legal_moves(state)


# Applying moves ----------------------------------------------------------------------


def apply_move(state: GameState, move: Move, *, check: bool = False) -> GameState:
    """A new state with ``move`` applied; ``state`` is left unchanged. With ``check``,
    raise ``IllegalMove`` unless the move is legal."""
    if check and not is_legal(state, move):
        raise IllegalMove(f"{move} is not legal in phase {state.phase} for {state.current}")
    new = state.copy()
    apply_move_in_place(new, move)
    return new


def apply_move_in_place(state: GameState, move: Move) -> None:
    """Apply ``move`` to ``state`` itself (the playout fast path). Victory is checked
    when a turn ends (``end_turn``), as the canonical engine does."""
    if state.status != ACTIVE:
        raise IllegalMove(f"{move.type}: the game is over")
    handler = _HANDLERS.get(move.type)
    if handler is None:
        raise IllegalMove(f"move type {move.type!r}: expected one of {mt.MOVE_TYPES}")
    state.move_number += 1
    handler(state, move)


def _acted(state: GameState, p: int) -> None:
    state.turn_changed = True


def _place(state: GameState, m: Move) -> None:
    p = m.player
    s = state.stacks[m.dst]
    count = m.count or 1
    if s:
        state.stacks[m.dst] = s + (p,) * count
    else:
        state.put_stack(m.dst, (p,) * count)
    state.in_hand[p] -= count
    state.board_rings[p] += count
    state.must_move = m.dst
    state.phase = MOVEMENT
    _acted(state, p)


def _to_movement(state: GameState, m: Move) -> None:
    state.phase = MOVEMENT


def _swap(state: GameState, m: Move) -> None:
    # Seats keep their pieces; the agents behind seats 1 and 2 trade places, which the
    # host reads from ``swapped``. It stays player 2's turn.
    state.swap_eligible = False
    state.swapped = not state.swapped


def _enter_lines(state: GameState) -> None:
    state.phase = LINE_PROCESSING
    state.must_move = -1
    state.chain_pos = -1


def _move(state: GameState, m: Move) -> None:
    p = m.player
    move_stack(state, p, m.src, m.dst, -1)
    _acted(state, p)
    s = state.stacks[m.dst]
    if s and s[-1] == p and has_capture_from(state, m.dst):
        state.phase = CAPTURE  # R093: an optional capture, from the landing cell only
        state.chain_pos = m.dst
        state.must_move = -1
    else:
        _enter_lines(state)


def _capture(state: GameState, m: Move) -> None:
    p = m.player
    move_stack(state, p, m.src, m.dst, m.target)
    _acted(state, p)
    s = state.stacks[m.dst]
    if s and s[-1] == p and has_capture_from(state, m.dst):
        state.phase = CHAIN_CAPTURE  # R103: once started, the chain must go on
        state.chain_pos = m.dst
        state.must_move = -1
    else:
        _enter_lines(state)


def _skip_to_lines(state: GameState, m: Move) -> None:
    _enter_lines(state)


def _collapse_markers(state: GameState, p: int, cells: tuple[int, ...]) -> None:
    markers = state.markers
    collapsed = state.collapsed
    for c in cells:
        if markers[c] and not collapsed[c]:
            markers[c] = 0
            collapsed[c] = p
            state.territory[p] += 1


def _line(state: GameState, m: Move) -> None:
    p = m.player
    state.pending = PENDING_NONE
    _collapse_markers(state, p, m.cells)
    _acted(state, p)
    # Exact lines and option 1 cost one ring, waived without a controlled stack (R122).
    if m.option != 2 and state.controls_any(p):
        state.pending = PENDING_LINE
    elif not _line_options(state, p):
        state.phase = TERRITORY_PROCESSING  # nothing owed, no line left (R073)


def _eliminate_top(state: GameState, p: int, cell: int, rings: int) -> None:
    s = state.stacks[cell]
    if not s:
        return
    for _ in range(rings):
        state.board_rings[s[-1]] -= 1
        state.eliminated[p] += 1
        s = s[:-1]
    state.stacks[cell] = s or None


def _eliminate(state: GameState, m: Move) -> None:
    p = m.player
    s = state.stacks[m.dst]
    pending = state.pending
    state.pending = PENDING_NONE
    if pending == PENDING_EXTRACTION:
        extract_buried_ring(state, p, m.dst)
    elif s:
        # One ring for a line reward; a whole cap for territory, and for an elimination
        # a host applies outside any pending decision (the cap, as in R100).
        _eliminate_top(state, p, m.dst, 1 if pending == PENDING_LINE else cap_height(s))
    _acted(state, p)
    if state.phase == TERRITORY_PROCESSING and not _processable_regions(state, p):
        end_turn(state)  # the last region paid for ends the turn (R075)


def _region(state: GameState, m: Move) -> None:
    p = m.player
    state.pending = PENDING_NONE
    border = region_border(state, m.cells)
    stacks = state.stacks
    markers = state.markers
    collapsed = state.collapsed
    for c in m.cells:
        s = stacks[c]
        if s:
            for ring in s:
                state.board_rings[ring] -= 1
            state.eliminated[p] += len(s)
            stacks[c] = None
        markers[c] = 0
        if not collapsed[c]:
            collapsed[c] = p
            state.territory[p] += 1
    _collapse_markers(state, p, border)
    _acted(state, p)
    # Then the self-elimination (R145 step 4), or a buried ring after a recovery (R114);
    # nothing to pay with means nothing is owed.
    if state.recovery_turn:
        if extraction_cells(state, p):
            state.pending = PENDING_EXTRACTION
    elif state.controls_any(p):
        state.pending = PENDING_TERRITORY


def _end_territory(state: GameState, m: Move) -> None:
    p = state.current
    state.pending = PENDING_NONE
    # R073: a turn without any board change by a player who still controls a stack ends
    # in forced elimination.
    if not state.turn_changed and state.controls_any(p):
        state.phase = FORCED_ELIMINATION
    else:
        end_turn(state)


def _no_line(state: GameState, m: Move) -> None:
    state.pending = PENDING_NONE
    # A player who changed nothing this turn, controls a stack and has no region to
    # process goes straight to forced elimination, without a territory phase visit
    # (departure ``no-line-forced-elimination``).
    p = state.current
    if not state.turn_changed and state.controls_any(p) and not _processable_regions(state, p):
        state.phase = FORCED_ELIMINATION
    else:
        state.phase = TERRITORY_PROCESSING


def _forced(state: GameState, m: Move) -> None:
    p = m.player
    s = state.stacks[m.dst]
    if s:
        _eliminate_top(state, p, m.dst, cap_height(s))
    end_turn(state)


def _recovery(state: GameState, m: Move) -> None:
    p = m.player
    state.markers[m.src] = 0
    if m.mode == "stack_strike":
        _eliminate_top(state, p, m.dst, 1)  # the marker is spent on the struck ring
    else:
        state.markers[m.dst] = p
        if m.mode == "line":
            _collapse_markers(state, p, m.cells)
    if m.option != 2:
        source = first_extraction_cell(state, p)
        if source >= 0:
            extract_buried_ring(state, p, source)
    state.recovery_turn = True
    _acted(state, p)
    _enter_lines(state)


def _resign(state: GameState, m: Move) -> None:
    state.out |= 1 << m.player
    alive = [q for q in range(1, state.num_players + 1) if not (state.out >> q) & 1]
    if len(alive) == 1:
        finish(state, alive[0], RESIGNATION)
    elif m.player == state.current:
        end_turn(state)


_HANDLERS = {
    mt.PLACE_RING: _place,
    mt.SKIP_PLACEMENT: _to_movement,
    mt.NO_PLACEMENT_ACTION: _to_movement,
    mt.SWAP_SIDES: _swap,
    mt.MOVE_STACK: _move,
    mt.OVERTAKING_CAPTURE: _capture,
    mt.CONTINUE_CAPTURE_SEGMENT: _capture,
    mt.SKIP_CAPTURE: _skip_to_lines,
    mt.NO_MOVEMENT_ACTION: _skip_to_lines,
    mt.SKIP_RECOVERY: _skip_to_lines,
    mt.RECOVERY_SLIDE: _recovery,
    mt.PROCESS_LINE: _line,
    mt.CHOOSE_LINE_OPTION: _line,
    mt.NO_LINE_ACTION: _no_line,
    mt.ELIMINATE_RINGS_FROM_STACK: _eliminate,
    mt.CHOOSE_TERRITORY_OPTION: _region,
    mt.SKIP_TERRITORY_PROCESSING: _end_territory,
    mt.NO_TERRITORY_ACTION: _end_territory,
    mt.FORCED_ELIMINATION: _forced,
    mt.RESIGN: _resign,
    mt.TIMEOUT: _resign,
}


# Turn rotation -----------------------------------------------------------------------


def has_real_action(state: GameState, p: int) -> bool:
    """A placement, move or capture is available (R172; recovery and forced elimination
    do not count)."""
    return has_legal_placement(state, p) or has_stack_move(state, p)


def end_turn(state: GameState) -> None:
    """Close the current turn: check victory (R170-R173, only here, as the canonical
    engine does), hand the turn to the next player still in the rotation (R201), then
    count last-player-standing rounds at the new turn's start."""
    check_victory(state)
    if state.status != ACTIVE:
        return
    p = state.current
    n = state.num_players
    if state.turn >= 2:
        state.swap_eligible = False
    nxt = 0
    for k in range(1, n + 1):
        q = (p - 1 + k) % n + 1
        if state.in_rotation(q):
            nxt = q
            break
    if nxt == 0:
        resolve_stalemate(state)
        return
    state.current = nxt
    state.phase = RING_PLACEMENT
    state.turn += 1
    state.must_move = -1
    state.chain_pos = -1
    state.pending = PENDING_NONE
    state.recovery_turn = False
    state.turn_changed = False
    _last_player_standing(state, nxt)


def _has_material(state: GameState, p: int) -> bool:
    return state.in_hand[p] > 0 or state.board_rings[p] > 0


def _last_player_standing(state: GameState, p: int) -> None:
    """R172 as the canonical engine's hosts apply it at every turn start (departure
    ``lps-round-tracking``): a round runs from one turn start of its opening player to
    the next; a round in which exactly one player with material had a real action at
    its turn start is exclusive to that player; after three consecutive exclusive
    rounds of one player, that player wins at its own turn start if it still has a
    real action and no other player with material has one."""
    if (state.out >> p) & 1 or not _has_material(state, p):
        return
    bit = 1 << p
    first = state.lps_first
    if first == 0 or not _has_material(state, first):
        state.lps_first = p
        state.round_seen = 0
        state.round_real = 0
        excl = state.lps_player
        if excl == 0 or not _has_material(state, excl):
            state.lps_player = 0
            state.lps_rounds = 0
    elif p == first and state.round_seen:
        real = 0
        for q in range(1, state.num_players + 1):
            if _has_material(state, q):
                real |= state.round_real & (1 << q)
        if real and real & (real - 1) == 0:
            sole = real.bit_length() - 1
            if sole == state.lps_player:
                state.lps_rounds += 1
            else:
                state.lps_player = sole
                state.lps_rounds = 1
        else:
            state.lps_player = 0
            state.lps_rounds = 0
        state.round_seen = 0
        state.round_real = 0
    real_now = has_real_action(state, p)
    state.round_seen |= bit
    if real_now:
        state.round_real |= bit
    else:
        state.round_real &= ~bit
    if state.lps_rounds >= LAST_PLAYER_STANDING_ROUNDS and state.lps_player == p and real_now:
        for q in range(1, state.num_players + 1):
            if q != p and _has_material(state, q) and has_real_action(state, q):
                return
        finish(state, p, LAST_PLAYER_STANDING)


__all__ = [
    "IllegalMove", "apply_move", "apply_move_in_place", "end_turn",
    "has_real_action", "is_legal", "legal_moves",
]
