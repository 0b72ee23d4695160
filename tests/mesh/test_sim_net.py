"""The simulated network: determinism, delay, loss, partitions, crashes, effects, bytes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from mesh.core import Send
from mesh.sim.net import ENVELOPE_OVERHEAD_BYTES, HTTP_OVERHEAD_BYTES, SimNet, wire_size


@dataclass(frozen=True, slots=True)
class Note:
    text: str


class Echo:
    """Sends a note to every peer each tick and records what it hears and when."""

    def __init__(self, peers: list[str], interval: float = 0.1) -> None:
        self.peers = peers
        self.tick_interval = interval
        self.heard: list[tuple[float, str, str]] = []
        self.ticks = 0

    def handle(self, src: str, msg: object, now: float) -> list[object]:
        assert isinstance(msg, Note)
        self.heard.append((now, src, msg.text))
        return [("heard", src)]

    def tick(self, now: float) -> list[object]:
        self.ticks += 1
        return [Send(p, Note(f"t{self.ticks}")) for p in self.peers]


def build(seed: int, loss: float = 0.0, n: int = 4) -> tuple[SimNet, dict[str, Echo]]:
    net = SimNet(seed, loss=loss)
    ids = [f"n{i}" for i in range(n)]
    nodes = {i: Echo([p for p in ids if p != i]) for i in ids}
    for i, node in nodes.items():
        net.add(i, node)
    return net, nodes


def test_same_seed_replays_the_same_run() -> None:
    runs = []
    for _ in range(2):
        net, nodes = build(seed=7, loss=0.2)
        net.run_until(3.0)
        runs.append({i: list(n.heard) for i, n in nodes.items()})
    assert runs[0] == runs[1]


def test_different_seeds_give_different_runs() -> None:
    heard = []
    for seed in (1, 2):
        net, nodes = build(seed=seed, loss=0.2)
        net.run_until(3.0)
        heard.append(nodes["n0"].heard)
    assert heard[0] != heard[1]


def test_messages_arrive_within_the_delay_bounds() -> None:
    net = SimNet(3, delay=(0.01, 0.02))
    a, b = Echo(["b"]), Echo([])
    net.add("a", a)
    net.add("b", b)
    sent_at: list[float] = []
    original_tick = a.tick

    def tick(now: float) -> list[object]:
        sent_at.append(now)
        return original_tick(now)

    a.tick = tick  # type: ignore[method-assign]
    net.run_until(2.0)
    assert len(b.heard) >= 10
    for (arrived, src, text) in b.heard:
        sent = sent_at[int(text[1:]) - 1]
        assert src == "a"
        assert 0.01 <= arrived - sent <= 0.02


def test_loss_drops_about_the_configured_fraction() -> None:
    net, _ = build(seed=11, loss=0.3)
    net.run_until(20.0)
    sent = sum(t.msgs_sent for t in net.traffic.values())
    received = sum(t.msgs_received for t in net.traffic.values())
    assert 0.25 < 1 - received / sent < 0.35


def test_partition_blocks_crossing_messages_until_healed() -> None:
    net, nodes = build(seed=5)
    net.partition([{"n0", "n1"}])  # n2, n3 form the other side
    net.run_until(2.0)
    assert {src for _, src, _ in nodes["n0"].heard} == {"n1"}
    assert {src for _, src, _ in nodes["n3"].heard} == {"n2"}
    net.heal()
    net.run_until(4.0)
    assert {src for t, src, _ in nodes["n0"].heard if t > 2.1} == {"n1", "n2", "n3"}


def test_crashed_node_neither_ticks_nor_receives_and_restart_replaces_it() -> None:
    net, nodes = build(seed=9)
    net.run_until(1.0)
    net.crash("n1")
    ticks, heard = nodes["n1"].ticks, len(nodes["n1"].heard)
    net.run_until(3.0)
    assert (nodes["n1"].ticks, len(nodes["n1"].heard)) == (ticks, heard)
    assert not net.is_up("n1")
    fresh = Echo(["n0"])
    net.restart("n1", fresh)
    net.run_until(4.0)
    assert fresh.ticks > 0 and fresh.heard
    assert nodes["n1"].ticks == ticks  # the old instance stays stopped


def test_send_to_an_address_reaches_the_node_behind_it() -> None:
    net = SimNet(1)
    a = Echo([])
    b = Echo([])
    net.add("a", a, address="10.0.0.1:7000")
    net.add("b", b, address="10.0.0.2:7000")
    a.tick = lambda now: [Send("", Note("hello"), address="10.0.0.2:7000")]  # type: ignore
    net.run_until(0.5)
    assert b.heard and b.heard[0][1:] == ("a", "hello")


def test_non_send_outputs_go_to_the_effect_hook() -> None:
    net, _ = build(seed=4, n=2)
    seen: list[object] = []
    net.set_effect("n1", seen.append)
    net.run_until(1.0)
    assert seen and all(e == ("heard", "n0") for e in seen)


def test_schedule_runs_functions_in_time_order() -> None:
    net = SimNet(0)
    order: list[tuple[float, str]] = []
    net.schedule(2.0, lambda: order.append((net.now, "late")))
    net.schedule(1.0, lambda: order.append((net.now, "early")))
    net.schedule(1.0, lambda: order.append((net.now, "early-second")))
    net.run_until(5.0)
    assert order == [(1.0, "early"), (1.0, "early-second"), (2.0, "late")]
    assert net.now == 5.0


def test_byte_counters_use_wire_size_with_envelope_and_http_overhead() -> None:
    net, nodes = build(seed=2, n=2)
    net.run_until(1.0)
    size = wire_size(Note("t1"))
    assert size > ENVELOPE_OVERHEAD_BYTES + HTTP_OVERHEAD_BYTES
    t0, t1 = net.traffic["n0"], net.traffic["n1"]
    assert t0.bytes_sent >= t0.msgs_sent * size  # "t10" and up are longer
    assert t1.bytes_received == sum(
        wire_size(Note(text)) for _, _, text in nodes["n1"].heard
    )


def test_bad_parameters_are_refused_with_the_value() -> None:
    with pytest.raises(ValueError, match="1.5"):
        SimNet(0, loss=1.5)
    with pytest.raises(ValueError, match="delay"):
        SimNet(0, delay=(0.5, 0.1))
    net = SimNet(0)
    net.add("a", Echo([]))
    with pytest.raises(ValueError, match="'a'"):
        net.add("a", Echo([]))


def test_wire_size_matches_a_really_sealed_envelope_plus_http_framing() -> None:
    from mesh.keyring import Keyring
    from mesh.membership_messages import Ack, Gossip, Ping, Update
    from mesh.wire import Wire
    from tests.mesh.keys import identity

    wire = Wire("c" * 32, identity("sim"), Keyring([b"k" * 32]))
    for msg in (Ping(5), Ack(123456), Gossip([Update("a" * 32, "dead", 7)])):
        sealed = wire.seal(msg, 1_800_000_000_000, to="1" * 32)
        assert wire_size(msg) == len(sealed) + HTTP_OVERHEAD_BYTES
