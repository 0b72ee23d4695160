"""Game end: victory conditions (RR-CANON-R170-R173) and final rankings (R175-R178)."""

from __future__ import annotations

from .movement import has_legal_placement
from .state import COMPLETED, GAME_OVER, GameState

RING_ELIMINATION = "ring_elimination"
TERRITORY = "territory"
LAST_PLAYER_STANDING = "last_player_standing"
RESIGNATION = "resignation"


def _score(state: GameState, p: int) -> tuple[int, int, int, float]:
    """The ranking cascade of R177: territory, eliminated rings, own markers on the
    board, and the turn of permanent elimination (never = infinitely late)."""
    turn = state.elim_turn[p]
    return (
        state.territory[p],
        state.eliminated[p],
        state.markers.count(p),
        float("inf") if turn == 0 else float(turn),
    )


def _rank(state: GameState, winner: int) -> tuple[int, ...]:
    """Winner first, the others by the cascade with shared (1224) ranks; players who
    resigned or timed out come last, the earliest to leave last of all."""
    ranks = [0] * (state.num_players + 1)
    ranks[winner] = 1
    rest = [p for p in range(1, state.num_players + 1) if p != winner]
    scores = {p: (not (state.out >> p) & 1, _score(state, p)) for p in rest}
    rest.sort(key=lambda p: scores[p], reverse=True)
    for i, p in enumerate(rest):
        if i and scores[p] == scores[rest[i - 1]]:
            ranks[p] = ranks[rest[i - 1]]
        else:
            ranks[p] = i + 2
    return tuple(ranks[1:])


def finish(state: GameState, winner: int, reason: str) -> None:
    state.status = COMPLETED
    state.phase = GAME_OVER
    state.winner = winner
    state.victory_reason = reason
    state.ranks = _rank(state, winner)


def record_permanent_eliminations(state: GameState) -> list[int]:
    """Stamp the turn of newly permanently eliminated players; return who is still in
    the turn rotation (not permanently eliminated, not resigned)."""
    alive = []
    for p in range(1, state.num_players + 1):
        if state.in_hand[p] == 0 and state.board_rings[p] == 0:
            if state.elim_turn[p] == 0:
                state.elim_turn[p] = state.turn
        elif not (state.out >> p) & 1:
            alive.append(p)
    return alive


def check_victory(state: GameState) -> None:
    """Checked when a turn ends, in the canonical engine's order: ring elimination,
    territory, then a last player standing who alone controls stacks while no one else
    has a ring anywhere (in hand or on the board), then, on a bare board
    where nobody can place, the stalemate resolution."""
    n = state.num_players
    threshold = state.victory_threshold
    for p in range(1, n + 1):
        if state.eliminated[p] >= threshold:
            finish(state, p, RING_ELIMINATION)
            return
    total = sum(state.territory)
    minimum = state.territory_minimum
    for p in range(1, n + 1):
        t = state.territory[p]
        if t >= minimum and 2 * t > total:
            finish(state, p, TERRITORY)
            return
    record_permanent_eliminations(state)
    if n < 2:
        return  # a one-seat fixture has no opponent to win against
    controllers = 0
    for s in state.stacks:
        if s:
            controllers |= 1 << s[-1]
    if controllers and controllers & (controllers - 1) == 0:
        owner = controllers.bit_length() - 1
        if not any(state.in_hand[q] or state.board_rings[q] for q in range(1, n + 1)
                   if q != owner):
            finish(state, owner, LAST_PLAYER_STANDING)
            return
    if not controllers and is_global_stalemate(state):
        resolve_stalemate(state)


def is_global_stalemate(state: GameState) -> bool:
    """No stacks anywhere (else someone could move or must force-eliminate) and nobody
    can place a ring (RR-CANON-R173)."""
    if any(state.stacks):
        return False
    return not any(
        has_legal_placement(state, p)
        for p in range(1, state.num_players + 1)
        if not (state.out >> p) & 1
    )


def resolve_stalemate(state: GameState) -> None:
    """Global stalemate, resolved as the canonical engine does (departure
    ``stalemate-ladder``): the first of these with a single leader above zero wins:
    territory (a territory win), eliminated rings counting rings in hand (a ring
    elimination win), markers on the board, and finally the player whose move ended
    the turn (both last player standing). Rings in hand stay in hand."""
    record_permanent_eliminations(state)
    players = [p for p in range(1, state.num_players + 1) if not (state.out >> p) & 1]
    players = players or list(range(1, state.num_players + 1))
    ladder = (
        (TERRITORY, lambda p: state.territory[p]),
        (RING_ELIMINATION, lambda p: state.eliminated[p] + state.in_hand[p]),
        (LAST_PLAYER_STANDING, state.markers.count),
    )
    for reason, score in ladder:
        best = max(score(p) for p in players)
        leaders = [p for p in players if score(p) == best]
        if best > 0 and len(leaders) == 1:
            finish(state, leaders[0], reason)
            return
    finish(state, state.current, LAST_PLAYER_STANDING)
