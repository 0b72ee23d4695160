"""The game state: plain arrays indexed by cell, plus the turn's bookkeeping.

Stacks are tuples of player numbers **bottom first** (``s[-1]`` is the top ring and the
controller). Per-player arrays are indexed by player number (index 0 unused) so rules code
reads ``in_hand[p]`` without offsets.
"""

from __future__ import annotations

from itertools import compress

from .boards import BoardConfig, board_config

# Phases (RR-CANON-R051). GAME_OVER is terminal only.
RING_PLACEMENT = "ring_placement"
MOVEMENT = "movement"
CAPTURE = "capture"
CHAIN_CAPTURE = "chain_capture"
LINE_PROCESSING = "line_processing"
TERRITORY_PROCESSING = "territory_processing"
FORCED_ELIMINATION = "forced_elimination"
GAME_OVER = "game_over"
PHASES = (
    RING_PLACEMENT, MOVEMENT, CAPTURE, CHAIN_CAPTURE, LINE_PROCESSING,
    TERRITORY_PROCESSING, FORCED_ELIMINATION, GAME_OVER,
)

ACTIVE = "active"
COMPLETED = "completed"

# What elimination the current player owes before the phase can go on.
PENDING_NONE = 0
PENDING_LINE = 1  # one ring from a controlled stack (line reward cost, RR-CANON-R123)
PENDING_TERRITORY = 2  # an entire cap from a controlled stack outside the region (R145)
PENDING_EXTRACTION = 3  # one buried ring, when a recovery turn processes a region (R114)

MAX_PLAYERS = 4


def cap_height(stack: tuple[int, ...]) -> int:
    """Consecutive rings from the top that belong to the controller."""
    top = stack[-1]
    n = len(stack)
    k = 1
    while k < n and stack[-1 - k] == top:
        k += 1
    return k


class GameState:
    """A mutable game state. ``copy()`` is cheap (a handful of list copies)."""

    __slots__ = (
        "board",
        "board_rings",
        "chain_pos",
        "collapsed",
        "current",
        "elim_turn",
        "eliminated",
        "in_hand",
        "lps_first",
        "lps_player",
        "lps_rounds",
        "markers",
        "move_number",
        "must_move",
        "num_players",
        "out",
        "pending",
        "placed_seq",
        "phase",
        "ranks",
        "recovery_turn",
        "round_real",
        "round_seen",
        "stack_seq",
        "stacks",
        "status",
        "swap_eligible",
        "swapped",
        "territory",
        "turn",
        "turn_changed",
        "victory_reason",
        "winner",
    )

    board: BoardConfig
    num_players: int
    stacks: list[tuple[int, ...] | None]
    # When each cell's stack appeared (a stack that moves appears anew where it lands):
    # the canonical engine keeps stacks in that order, and a recovery slide takes its
    # buried ring from the first such stack (see ``recovery.first_extraction_cell``).
    stack_seq: list[int]
    placed_seq: int  # the next stack_seq number
    markers: list[int]
    collapsed: list[int]
    in_hand: list[int]
    eliminated: list[int]  # rings credited to each player as eliminated
    territory: list[int]  # collapsed spaces owned by each player
    board_rings: list[int]  # rings of each colour on the board (any position)
    current: int
    phase: str
    status: str
    winner: int  # 0 while active or when a stalemate has no single winner
    victory_reason: str
    ranks: tuple[int, ...] | None  # rank of player 1..n, set at game end
    turn: int  # 1-based count of turns started
    move_number: int  # moves applied
    must_move: int  # the cell placed on this turn (-1: none), which alone may move
    chain_pos: int  # the capturing stack during capture/chain_capture (-1: none)
    pending: int  # PENDING_*
    recovery_turn: bool  # this turn's action was a recovery slide (R114 costs)
    turn_changed: bool  # the board changed this turn (R073: no forced elimination)
    # Last-player-standing rounds (R172), tracked at each turn start as the canonical
    # engine's hosts do (departure ``lps-round-tracking``).
    lps_first: int  # the player whose turn start opened the current round (0: none)
    round_seen: int  # bitmask of players whose turn start this round was recorded
    round_real: int  # ... of those, the ones who had a real action then
    lps_player: int  # the sole real actor of the last consecutive rounds (0: none)
    lps_rounds: int  # how many consecutive rounds lps_player was the sole real actor
    swap_eligible: bool  # player 2 may still play swap_sides (pie rule, R180)
    swapped: bool
    elim_turn: list[int]  # turn a player was permanently eliminated (0: never)
    out: int  # bitmask of players who resigned or timed out

    def copy(self) -> GameState:
        new = GameState.__new__(GameState)
        new.board = self.board
        new.num_players = self.num_players
        new.stacks = self.stacks.copy()
        new.stack_seq = self.stack_seq.copy()
        new.placed_seq = self.placed_seq
        new.markers = self.markers.copy()
        new.collapsed = self.collapsed.copy()
        new.in_hand = self.in_hand.copy()
        new.eliminated = self.eliminated.copy()
        new.territory = self.territory.copy()
        new.board_rings = self.board_rings.copy()
        new.current = self.current
        new.phase = self.phase
        new.status = self.status
        new.winner = self.winner
        new.victory_reason = self.victory_reason
        new.ranks = self.ranks
        new.turn = self.turn
        new.move_number = self.move_number
        new.must_move = self.must_move
        new.chain_pos = self.chain_pos
        new.pending = self.pending
        new.recovery_turn = self.recovery_turn
        new.turn_changed = self.turn_changed
        new.lps_first = self.lps_first
        new.round_real = self.round_real
        new.round_seen = self.round_seen
        new.lps_player = self.lps_player
        new.lps_rounds = self.lps_rounds
        new.swap_eligible = self.swap_eligible
        new.swapped = self.swapped
        new.elim_turn = self.elim_turn.copy()
        new.out = self.out
        return new

    # Derived quantities -------------------------------------------------------------

    @property
    def line_length(self) -> int:
        return self.board.line_length(self.num_players)

    @property
    def victory_threshold(self) -> int:
        return self.board.victory_threshold(self.num_players)

    @property
    def territory_minimum(self) -> int:
        return self.board.territory_minimum(self.num_players)

    def progress(self) -> int:
        """S = markers + collapsed spaces + eliminated rings (RR-CANON-R191)."""
        m = sum(1 for x in self.markers if x)
        c = sum(1 for x in self.collapsed if x)
        return m + c + sum(self.eliminated)

    def put_stack(self, cell: int, stack: tuple[int, ...]) -> None:
        """A new stack on an empty cell, last in stack order."""
        self.stacks[cell] = stack
        self.stack_seq[cell] = self.placed_seq
        self.placed_seq += 1

    def stack_cells_in_order(self) -> list[int]:
        """Cells holding stacks, in the order the stacks appeared."""
        seq = self.stack_seq
        return sorted((c for c, s in enumerate(self.stacks) if s), key=seq.__getitem__)

    def controlled_cells(self, player: int) -> list[int]:
        stacks = self.stacks
        return [c for c in compress(range(len(stacks)), stacks) if stacks[c][-1] == player]

    def controls_any(self, player: int) -> bool:
        for s in self.stacks:
            if s and s[-1] == player:
                return True
        return False

    def is_permanently_eliminated(self, player: int) -> bool:
        """No rings in hand and none of the player's rings anywhere on the board (R175)."""
        return self.in_hand[player] == 0 and self.board_rings[player] == 0

    def in_rotation(self, player: int) -> bool:
        return not self.is_permanently_eliminated(player) and not (self.out >> player) & 1


def initial_state(board: str | BoardConfig, num_players: int) -> GameState:
    """The canonical empty starting position: every ring in hand, player 1 to place."""
    cfg = board if isinstance(board, BoardConfig) else board_config(board)
    if isinstance(num_players, bool) or not isinstance(num_players, int):
        raise TypeError(f"num_players {num_players!r}: expected an int in 2..{MAX_PLAYERS}")
    if not 2 <= num_players <= MAX_PLAYERS:
        raise ValueError(f"num_players {num_players}: expected 2..{MAX_PLAYERS}")
    s = empty_state(cfg, num_players, in_hand=cfg.rings_per_player, swap=num_players == 2)
    return s


def empty_state(cfg: BoardConfig, num_players: int, in_hand: int, swap: bool) -> GameState:
    """A state with an empty board; deserializers fill it in."""
    s = GameState.__new__(GameState)
    n = cfg.num_cells
    s.board = cfg
    s.num_players = num_players
    s.stacks = [None] * n
    s.stack_seq = [0] * n
    s.placed_seq = 0
    s.markers = [0] * n
    s.collapsed = [0] * n
    s.in_hand = [0] + [in_hand] * num_players
    s.eliminated = [0] * (num_players + 1)
    s.territory = [0] * (num_players + 1)
    s.board_rings = [0] * (num_players + 1)
    s.current = 1
    s.phase = RING_PLACEMENT
    s.status = ACTIVE
    s.winner = 0
    s.victory_reason = ""
    s.ranks = None
    s.turn = 1
    s.move_number = 0
    s.must_move = -1
    s.chain_pos = -1
    s.pending = PENDING_NONE
    s.recovery_turn = False
    s.turn_changed = False
    s.lps_first = 0
    s.round_real = 0
    s.round_seen = 0
    s.lps_player = 0
    s.lps_rounds = 0
    s.swap_eligible = swap
    s.swapped = False
    s.elim_turn = [0] * (num_players + 1)
    s.out = 0
    return s
