"""Hypothesis strategies for storage rows, shared by the storage tests.

Pools are small on purpose (few keys, few clock values, few nodes) so generated batches
collide: same key with other versions, and equal versions with other content.
"""

from __future__ import annotations

from hypothesis import strategies as st

from storage.rows import new_alias, new_game, new_match, new_model, new_promotion

NODES = ["node-a", "node-b", "node-c"]
SHAS = [f"{i:064x}" for i in range(1, 5)]
scores2 = st.sampled_from([[1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])

# Few move lists, so one game often arrives as rows that differ outside its id (targets,
# model, stamp, origin): every store must settle on the same row.
games = st.builds(
    new_game,
    board_type=st.sampled_from(["square8", "hex8"]),
    num_players=st.just(2),
    moves=st.lists(st.sampled_from([b"\x00\x01", b"\x03\x02\x03\x00"]), max_size=2),
    rankings=st.sampled_from([[1, 2], [2, 1]]),
    created_hlc=st.integers(0, 3),
    origin_node=st.sampled_from(NODES),
    model_sha=st.sampled_from([None, *SHAS[:2]]),
    search=st.sampled_from([{}, {"simulations": 16}]),
)

matches = st.builds(
    new_match,
    match_id=st.sampled_from(["x1", "x2", "x3", "x4"]),
    participants=st.just(["m1", "m2"]),
    board_type=st.just("square8"),
    num_players=st.just(2),
    result=scores2,
    hlc=st.integers(0, 2),
    origin_node=st.sampled_from(NODES[:2]),
)

models = st.builds(
    new_model,
    sha256=st.sampled_from(SHAS),
    board_type=st.just("square8"),
    num_players=st.just(2),
    created_hlc=st.integers(0, 2),
    origin_node=st.sampled_from(NODES),
    size=st.integers(1, 3),
    parent=st.sampled_from([None, *SHAS[:1]]),
)
aliases = st.builds(
    new_alias,
    name=st.sampled_from(["production", "candidate"]),
    board_type=st.just("square8"),
    num_players=st.just(2),
    sha256=st.sampled_from(SHAS),
    term=st.integers(0, 2),
    hlc=st.integers(0, 2),
    origin_node=st.sampled_from(NODES),
)
promotions = st.builds(
    new_promotion,
    board_type=st.just("square8"),
    num_players=st.just(2),
    candidate=st.sampled_from(SHAS),
    incumbent=st.sampled_from([None, SHAS[0]]),
    decision=st.sampled_from(["swap_production", "retain_production", "rollback"]),
    reorder_applied=st.booleans(),
    games_played=st.integers(0, 200),
    win_rate=st.sampled_from([None, 0.55]),
    elo_delta=st.sampled_from([None, 31.5]),
    term=st.integers(0, 2),
    hlc=st.integers(0, 2),
    origin_node=st.sampled_from(NODES),
)
registry = st.one_of(models, aliases, promotions)

ROWS_BY_STORE = {"games": games, "matches": matches, "models": registry}
