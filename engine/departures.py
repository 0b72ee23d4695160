"""Where this engine follows the canonical TypeScript engine (reference commit 2aa9f89b)
against the written rules in ``RULES_CANONICAL_SPEC.md``.

Parity with that engine is the target: it is the game the models play against people.
Each row names the behaviour, the rule it departs from, and the test that pins it, so
that an upstream fix is one known change here, in the code the row points to, and in
that test. Everything not listed follows the spec.
"""

from __future__ import annotations

from typing import NamedTuple


class Departure(NamedTuple):
    key: str
    behaviour: str
    rule: str  # the spec rule it departs from, and what that rule says instead
    code: str  # where the behaviour lives
    test: str  # "tests/engine/<file>.py::<test>"


DEPARTURES: tuple[Departure, ...] = (
    Departure(
        "region-border-spread",
        "Processing a region also collapses every marker, of any colour, next to the "
        "region (territory adjacency) and, on square boards, every marker reached from "
        "those through Moore-adjacent markers outside the region.",
        "RR-CANON-R145 step 2: collapse only the border colour's markers that lie on a "
        "blocking path around the region.",
        "engine/territory.py::region_border",
        "tests/engine/test_departures.py::"
        "test_region_processing_collapses_markers_of_any_colour_chained_to_the_border",
    ),
    Departure(
        "region-eligibility",
        "A region enclosed only by collapsed spaces and the board edge is processable "
        "only when exactly one player controls stacks inside it: an empty one, or one "
        "holding stacks of two colours (3-4 players), is not.",
        "RR-CANON-R142: any region whose controlling colours are a strict subset of the "
        "colours on the board is disconnected, empty regions included.",
        "engine/territory.py::find_regions",
        "tests/engine/test_departures.py::"
        "test_a_region_walled_by_collapsed_spaces_needs_exactly_one_colour_inside",
    ),
    Departure(
        "no-line-forced-elimination",
        "After no_line_action, a player who changed nothing this turn, controls a stack "
        "and has no region to process goes straight to forced_elimination, without a "
        "territory_processing visit (no no_territory_action).",
        "RR-CANON-R073/R075: line_processing always exits to territory_processing, "
        "which alone leads to forced_elimination.",
        "engine/rules.py::_no_line",
        "tests/engine/test_turns.py::"
        "test_a_blocked_player_without_regions_goes_from_no_line_action_to_forced_elimination",
    ),
    Departure(
        "lps-round-tracking",
        "Last-player-standing rounds are counted at turn starts: a round runs from one "
        "turn start of its opening player to the next, a player counts by whether it "
        "had a real action at its turn start, and after three consecutive rounds "
        "exclusive to one player that player wins at its next turn start if it still "
        "has a real action and no other player with rings has one. The first turn of "
        "the game opens no round.",
        "RR-CANON-R172: the sole real actor must also take a real action in each of the "
        "three full rounds, and wins as the third round completes, before the next "
        "round begins.",
        "engine/rules.py::_last_player_standing",
        "tests/engine/test_turns.py::"
        "test_sole_real_actor_for_three_full_rounds_wins_last_player_standing",
    ),
    Departure(
        "multi-ring-placement-cells",
        "Two or three rings may be placed on an empty cell only where a single ring "
        "could be placed (the canonical host offers 2-3 ring placements only on the "
        "cells the engine lists for one ring).",
        "RR-CANON-R081/R082: 1-3 rings on an empty cell whenever the resulting stack has "
        "a legal move.",
        "engine/movement.py::placement_moves",
        "tests/engine/test_departures.py::"
        "test_two_or_three_rings_go_only_where_one_ring_could",
    ),
    Departure(
        "line-before-reward",
        "While a line's one-ring reward is owed, another line of exactly the required "
        "length may be collapsed first (process_line; not the 3-marker lines of hex8 "
        "with 3-4 players), and a single ring then pays for both.",
        "RR-CANON-R122/R123: each exact line costs one ring, paid by the "
        "eliminate_rings_from_stack that follows it.",
        "engine/rules.py::_line_phase",
        "tests/engine/test_departures.py::"
        "test_a_second_line_may_be_collapsed_before_the_reward_and_one_ring_pays_for_both",
    ),
    Departure(
        "stalemate-ladder",
        "At a global stalemate rings in hand stay in hand; the winner is the single "
        "leader above zero of territory (reason territory), else of eliminated rings "
        "plus rings in hand (ring_elimination), else of markers, else the player whose "
        "move ended the turn (both last_player_standing).",
        "RR-CANON-R173: rings in hand become eliminated rings, and the tiebreak cascade "
        "(territory, eliminated rings, markers, last actor) decides the winner.",
        "engine/victory.py::resolve_stalemate",
        "tests/engine/test_turns.py::"
        "test_global_stalemate_keeps_hands_and_ranks_by_territory_first",
    ),
    Departure(
        "recovery-extraction-stack",
        "A recovery slide's buried ring comes from the first stack, in the order stacks "
        "appeared on the board (a stack that moves appears anew where it lands), that "
        "holds a buried ring of the player; the move does not choose it.",
        "RR-CANON-R113: the player selects any stack holding a buried ring of theirs.",
        "engine/recovery.py::first_extraction_cell",
        "tests/engine/test_turns.py::"
        "test_a_recovery_slide_takes_its_ring_from_the_first_stack_in_stack_order",
    ),
)
