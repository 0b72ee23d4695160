"""The selfplay allocation: which config each node plays, written by the leader, read by every node.

The allocation is one cluster setting (storage.rows `selfplay_allocation`): a leader-written,
term-fenced row of [board_type, num_players, weight] entries that syncs like any other row.
The manifest carries only the model registry's root, which covers it, so the manifest stays
the same size at any number of configs.

The leader's rule (`allocation_weights`), for the configs its pipeline runs: a config's
shortfall is how many games it still lacks of `training_game_threshold` since its last training
run; its weight is 1 + ceil(WEIGHT_STEPS x shortfall / threshold). A config that has just
trained (no fresh games) weighs 11, one at or past its threshold weighs 1: the configs short of
fresh games get most of the cluster, and no config is ever starved of games entirely. The
weights move in WEIGHT_STEPS steps, so the row is rewritten a handful of times per training
cycle, not with every game stored.

A node's rule (`pick_config`): its id hashes to a point u in [0, 1); the entries, in the row's
order, cover [0, 1) in proportion to their weights, and the node plays the entry covering u.
The cluster's nodes thus split across configs in proportion to the weights, each node's
choice is a pure function of (row, node id), and a small change of weights moves only the
nodes whose point lies near a boundary. No row, or one this node cannot read: the local
default config (`[selfplay] board_type / num_players`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

from storage.merge import InvalidRow
from storage.rows import check_allocation

WEIGHT_STEPS = 10


def allocation_weights(fresh: Sequence[tuple[str, int, int]], threshold: int) -> list[list]:
    """The allocation value for configs given as (board_type, num_players, fresh games since
    the config's last training run), in their order; a config listed twice counts once."""
    threshold = max(threshold, 1)
    value: list[list] = []
    seen: set[tuple[str, int]] = set()
    for board, n, games in fresh:
        if (board, n) in seen:
            continue
        seen.add((board, n))
        shortfall = max(threshold - games, 0)
        value.append([board, n, 1 + math.ceil(WEIGHT_STEPS * shortfall / threshold)])
    return value


def node_point(node_id: str) -> int:
    """Where `node_id` falls in [0, 2**64): the first 8 bytes of its sha256."""
    return int.from_bytes(hashlib.sha256(node_id.encode()).digest()[:8], "big")


def pick_config(value: object, node_id: str) -> tuple[str, int] | None:
    """The config the allocation `value` gives `node_id`; None when the value is malformed."""
    try:
        entries = check_allocation(value)
    except InvalidRow:
        return None
    # Exact integers: the point times the total weight against each boundary times 2**64.
    mark = node_point(node_id) * sum(weight for _, _, weight in entries)
    covered = 0
    for board, n, weight in entries:
        covered += weight
        if mark < covered << 64:
            return board, n
    raise AssertionError("the point lies below the total weight")
