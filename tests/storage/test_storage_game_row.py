"""The game row: one game is one row wherever it was played or imported, and its caps fit the
longest real game with its search targets."""

from __future__ import annotations

import itertools

import msgpack

from storage.memory import MemoryStores
from storage.rows import (
    MAX_GAME_BYTES,
    MAX_POLICY_ENTRIES,
    game_id_for,
    new_game,
    validate_game,
)

MOVES = [b"\x00\x01\x00\x05", b"\x03\x02\x03\x00\x05\x00\x06"]


def test_defaults_follow_the_engine_pie_rule_and_the_rank_one_seat() -> None:
    two = new_game("square8", 2, MOVES, [2, 1], 1, "n")
    four = new_game("hex8", 4, MOVES, [3, 4, 1, 2], 1, "n")
    assert (two["swap_rule"], two["winner"]) == (True, 2)
    assert (four["swap_rule"], four["winner"]) == (False, 3)
    validate_game(two)
    validate_game(four)


def test_the_id_names_config_rules_and_moves_only() -> None:
    a = new_game("square8", 2, MOVES, [1, 2], 1, "n1", model_sha="a" * 64)
    b = new_game("square8", 2, MOVES, [1, 2], 9, "n2", source="import", meta={"file": "x"})
    assert a["game_id"] == b["game_id"] == game_id_for("square8", 2, True, MOVES)
    assert new_game("square8", 2, MOVES, [1, 2], 1, "n", swap_rule=False)["game_id"] != a["game_id"]
    assert new_game("hex8", 2, MOVES, [1, 2], 1, "n")["game_id"] != a["game_id"]
    assert new_game("square8", 2, MOVES[:1], [1, 2], 1, "n")["game_id"] != a["game_id"]


def test_rows_of_one_game_settle_on_the_same_row_in_any_order_targets_first() -> None:
    plain = [new_game("square8", 2, MOVES, [1, 2], hlc, origin, source="import")
             for hlc, origin in [(1, "a"), (2, "b"), (3, "c")]]
    searched = new_game("square8", 2, MOVES, [1, 2], 0, "z", policy=[b"\x00\x00\x01", b""],
                        values=b"\x10\x20", model_sha="b" * 64, search={"simulations": 16})
    kept = set()
    for order in itertools.permutations([*plain, searched]):
        store = MemoryStores().games
        for row in order:
            store.merge([row])
        [held] = store.rows([searched["game_id"]])
        kept.add(msgpack.packb(held))
        assert store.summary()[0] == 1
    assert kept == {msgpack.packb(searched)}
    # Without targets, the choice among the rest is the same everywhere too.
    choices = set()
    for order in itertools.permutations(plain):
        store = MemoryStores().games
        store.merge(list(order))
        choices.add(store.summary())
    assert len(choices) == 1


def test_the_longest_hexagonal_game_with_full_targets_fits_and_travels() -> None:
    from mesh.sync_messages import MAX_ROW_SIZE

    moves = 1500
    # Territory-sized moves now and then, full-width targets on every move.
    row = new_game(
        "hexagonal", 4, [bytes(12) if i % 50 else bytes(400) for i in range(moves)],
        [1, 2, 3, 4], 1, "n", policy=[bytes(3 * MAX_POLICY_ENTRIES)] * moves,
        values=bytes(moves), model_sha="c" * 64,
        search={"algorithm": "gumbel", "simulations": 64, "considered": 16},
    )
    validate_game(row)
    packed = len(msgpack.packb(row))
    assert packed <= MAX_ROW_SIZE
    assert 3 * MAX_POLICY_ENTRIES * moves < MAX_GAME_BYTES
