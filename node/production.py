"""Every node's side of distribution: which production model it holds, for its manifest.

The production alias of each config is a leader-written, term-fenced row that syncs like any
other, and anti-entropy pulls every blob the registry names. What is left to each node is to
say which production model it holds: the first configured config's (`pipeline.configs[0]`),
announced in its manifest (one sha256, inside the manifest's byte budget) once its blob is on
disk, so the status page shows every node switching.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from storage.stores import Stores


async def held_production(stores: Stores, board_type: str, num_players: int) -> str | None:
    """The config's production model if this node holds its blob, else None."""
    alias = await stores.models.get_alias("production", board_type, num_players)
    if alias is None or not stores.models.has_blob(alias["sha256"]):
        return None
    return alias["sha256"]


async def announce_production(stores: Stores, configs: Sequence[tuple[str, int]],
                              announce: Callable[[str | None], None], interval_s: float) -> None:
    """Keep announcing the first config's held production model (runs until cancelled)."""
    board_type, num_players = configs[0]
    while True:
        announce(await held_production(stores, board_type, num_players))
        await asyncio.sleep(interval_s)
