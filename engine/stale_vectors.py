"""Contract vectors that the canonical engine itself contradicts, or that are wrong.

``python -m engine.vectors`` reports these as ``stale`` with their reason instead of as
failures. A vector belongs here only when the canonical TypeScript engine (reference
commit 2aa9f89b) does otherwise, as its recorded games in ``../shared/rules-traces/``
or a row of ``engine.departures`` show, or when its expectation is unreachable in every
engine. Everything else a vector expects, this engine must do.
"""

from __future__ import annotations

# In all 11,877 territory_processing steps of the recorded games, the canonical engine
# lists eliminate_rings_from_stack only right after a choose_territory_option (1,236
# steps): never as a bare elimination outside a region's cost.
_BARE_TERRITORY_ELIMINATION = (
    "eliminate_rings_from_stack in territory_processing with no region processed: the "
    "canonical engine lists that move only as the cost right after choose_territory_option "
    "(every territory_processing step of the recorded games), so it is not a legal move here"
)

STALE_VECTORS: dict[str, str] = {
    "multi_phase.placement_capture_line": (
        "known wrong: its sInvariantDelta of 4 is unreachable in every engine (each legal "
        "completion of the chain gives +2: a captured ring goes to the bottom of the "
        "capturing stack and stays in play, RR-CANON-R102/R191), and no upstream runner "
        "checks that key"
    ),
    "forced_elimination.monotone_chain.step1.square8": _BARE_TERRITORY_ELIMINATION,
    "forced_elimination.monotone_chain.step2.square8": (
        "the canonical engine at HEAD refuses it as a non-canonical record "
        "(eliminate_rings_from_stack in ring_placement)"
    ),
    "forced_elimination.monotone_chain.final.square8": (
        "the canonical engine at HEAD refuses it as a non-canonical record "
        "(eliminate_rings_from_stack in ring_placement)"
    ),
    "forced_elimination.territory_explicit.square8": _BARE_TERRITORY_ELIMINATION,
    "forced_elimination.anm_guard.hexagonal": _BARE_TERRITORY_ELIMINATION,
    "forced_elimination.territory_no_host_fe.square8": (
        "choose_territory_option on a board with no stacks and no disconnected region: the "
        "canonical engine lists a region only when it is disconnected (departure "
        "region-eligibility), so the move is not legal here"
    ),
    "territory_processing.mizw0rb1.wpbd": (
        "choose_territory_option on two open cells that no marker or collapsed space "
        "encloses, with one player on the board: not a disconnected region for the "
        "canonical engine (nor RR-CANON-R141/R142), so the move is not legal here"
    ),
    "meta.swap_sides.after_p1_first_move.square8": (
        "the canonical engine at HEAD refuses swap_sides in the movement phase; it offers "
        "it only at the start of player 2's first turn, in ring_placement"
    ),
}
