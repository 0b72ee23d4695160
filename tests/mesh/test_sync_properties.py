"""Laws of anti-entropy: any order, interleaving or interruption of pulls converges to the union."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.sync import LocalQuery, PullPlan, SyncConfig, answer, pull_session
from storage.memory import MemoryStores
from storage.rows import new_game, new_match

NODES = 3
ORIGINS = ("a", "b", "c")

# A write: (node, is_game, id, hlc). Match ids come from a small pool so nodes overwrite each
# other's rows; hlcs are distinct per (id, origin) so versions never tie with other content.
writes = st.lists(
    st.tuples(st.integers(0, NODES - 1), st.booleans(), st.integers(0, 7), st.integers(1, 50)),
    max_size=40,
)
# A schedule step: (session slot, puller, peer, give up after this many requests or never).
schedule = st.lists(
    st.tuples(st.integers(0, 2), st.integers(0, NODES - 1), st.integers(0, NODES - 1),
              st.none() | st.integers(0, 6)),
    max_size=60,
)


def _row(node: int, is_game: bool, ident: int, hlc: int) -> dict:
    origin = ORIGINS[node]
    if is_game:
        # One game (ident, hlc) may come from several origins: rows of one game_id that
        # differ in the rest, which every node must settle on alike.
        return new_game("square8", 2, [bytes((ident, hlc))], [1, 2] if ident % 2 == 0
                        else [2, 1], hlc, origin)
    return new_match(f"m{ident}", ["p", "q"], "hex8", 2, [1.0, 0.0], hlc, origin)


def _plan(peer_index: int, peer: MemoryStores) -> PullPlan:
    names = tuple(sorted(peer.by_name()))
    summary = {n: peer.by_name()[n].summary() for n in names}
    return PullPlan(str(peer_index), names, tuple(summary[n][1] for n in names),
                    tuple(summary[n][0] for n in names))


class _Session:
    """One pull in progress, advanced one step at a time so sessions interleave."""

    def __init__(self, puller: MemoryStores, peer: MemoryStores, peer_index: int,
                 fail_after: int | None, config: SyncConfig | None = None) -> None:
        self.puller = puller
        self.peer = peer
        self.steps = pull_session(_plan(peer_index, peer), config)
        self.fail_after = fail_after
        self.asked = 0
        self.result: Any = None
        self.done = False
        self.skipped = 0

    def step(self) -> None:
        try:
            step = self.steps.send(self.result)
        except StopIteration as stop:
            self.done = True
            self.skipped = stop.value.merged.skipped
            return
        if isinstance(step, LocalQuery):
            self.result = step.call(self.puller.by_name())
            return
        self.asked += 1
        if self.fail_after is not None and self.asked > self.fail_after:
            self.result = None  # the peer went silent: the session ends with what it has
        else:
            self.result = answer(step.request, self.peer.by_name())


def _roots(stores: MemoryStores) -> dict[str, tuple[int, str]]:
    return {name: s.summary() for name, s in stores.by_name().items()}


# Sub-bucket comparison on (0: every store is "large") or off (the default for small stores).
configs = st.sampled_from([SyncConfig(), SyncConfig(subdivide_above=0)])


@settings(deadline=None, max_examples=60)
@given(writes, schedule, configs)
def test_any_interleaving_of_pulls_then_one_sweep_gives_every_node_the_union(
        written: list, steps: list, config: SyncConfig) -> None:
    nodes = [MemoryStores() for _ in range(NODES)]
    union = MemoryStores()
    for node, is_game, ident, hlc in written:
        row = _row(node, is_game, ident, hlc)
        (nodes[node].games if is_game else nodes[node].matches).merge([row])
        (union.games if is_game else union.matches).merge([row])
    slots: list[_Session | None] = [None, None, None]
    for slot, puller, peer, fail_after in steps:
        session = slots[slot]
        if session is None or session.done:
            if puller != peer:
                slots[slot] = _Session(nodes[puller], nodes[peer], peer, fail_after, config)
            continue
        session.step()
    # Whatever was cut short, one uninterrupted sweep (each node pulls from each other) heals.
    for i, puller in enumerate(nodes):
        for j, peer in enumerate(nodes):
            if i != j:
                sweep = _Session(puller, peer, j, None, config)
                while not sweep.done:
                    sweep.step()
    for node in nodes:
        assert _roots(node) == _roots(union)


@settings(deadline=None, max_examples=40)
@given(writes, st.lists(st.tuples(st.integers(0, NODES - 1), st.integers(0, NODES - 1),
                                  st.none() | st.integers(0, 6)), max_size=30), configs)
def test_sequential_pulls_never_fetch_a_row_the_puller_already_holds(
        written: list, pulls: list, config: SyncConfig) -> None:
    nodes = [MemoryStores() for _ in range(NODES)]
    for node, is_game, ident, hlc in written:
        row = _row(node, is_game, ident, hlc)
        (nodes[node].games if is_game else nodes[node].matches).merge([row])
    for puller, peer, fail_after in pulls:
        if puller == peer:
            continue
        session = _Session(nodes[puller], nodes[peer], peer, fail_after, config)
        while not session.done:
            session.step()
        assert session.skipped == 0
