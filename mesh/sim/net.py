"""A deterministic discrete-event network for running sans-IO cores in virtual time.

Nodes are anything with `handle(src, msg, now) -> list`, `tick(now) -> list` and a
`tick_interval` (seconds). The network delivers their `Send` outputs after a random
delay, drops them by loss, partitions and crashes, and hands every other output to a
per-node effect hook. All randomness comes from one `random.Random(seed)`, and events at
the same virtual time run in the order they were scheduled, so a seed replays a run
exactly.

Message sizes are what the real transport would put on the wire: the msgpack encoding of
the message body (via `mesh.codec`), plus the envelope around it, plus the HTTP request
and response headers (`HTTP_OVERHEAD_BYTES`, measured from a real aiohttp exchange).
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from collections.abc import Callable
from typing import Any, Protocol

import msgpack

from mesh import codec
from mesh.core import Send

# Bytes of HTTP framing around one gossip message, measured once through a counting TCP
# proxy between a real aiohttp 3.x ClientSession and web.Application on loopback:
# `POST /mesh/v1/gossip` request line and headers (Host, Content-Type: application/msgpack,
# Accept, Accept-Encoding, User-Agent, Content-Length) = 197 bytes, plus the
# `204 No Content` response (status line, Date, Server) = 100 bytes. Keep-alive is
# assumed (aiohttp pools connections), so no per-message TCP handshake; IP/TCP headers
# are below the layer we count.
HTTP_OVERHEAD_BYTES = 297

# Bytes the wire envelope (mesh.wire) adds around a body, not counting the kind string:
# the msgpack map {v, cluster, from, key, ts, nonce, kind, body} with a 32-hex-char cluster
# id (what `init` creates), a 32-hex-char node id, its 32-byte public key, a millisecond
# timestamp and a 16-byte nonce, then the 64-byte Ed25519 signature and the 32-byte
# HMAC-SHA256 tag appended. Computed from a template so it follows
# the field layout (tests check it against Wire.seal); the empty kind and the nil body
# placeholders (1 byte each) are taken out again.
_ENVELOPE_TEMPLATE = {
    "v": 1,
    "cluster": "c" * 32,
    "from": "0" * 32,
    "key": b"\0" * 32,
    "ts": 1_800_000_000_000,
    "nonce": b"\0" * 16,
    "kind": "",
    "body": None,
}
_TRAILER_BYTES = 64 + 32
ENVELOPE_OVERHEAD_BYTES = len(msgpack.packb(_ENVELOPE_TEMPLATE)) - 2 + _TRAILER_BYTES


class SimNode(Protocol):
    tick_interval: float

    def handle(self, src: str, msg: Any, now: float) -> list[Any]: ...

    def tick(self, now: float) -> list[Any]: ...


def kind_name(msg: Any) -> str:
    """The registered kind of a message, or its class name for an unregistered test double."""
    try:
        return codec.kind_of(msg)
    except codec.EncodeError:
        return type(msg).__name__


def _framing(kind: str) -> int:
    return len(msgpack.packb(kind)) + ENVELOPE_OVERHEAD_BYTES + HTTP_OVERHEAD_BYTES


def strict_wire_size(msg: Any) -> int:
    """`wire_size` computed through `codec.to_body`, which also validates every field.

    Slower; use it (`SimNet(sizer=strict_wire_size)`) to prove a core only sends
    messages the real wire would accept. Registered messages only.
    """
    body = codec.to_body(msg)
    return len(msgpack.packb(body, use_bin_type=True)) + _framing(codec.kind_of(msg))


# Encoded sizes of hashable message parts (a manifest-carrying update is sized once, not
# once per gossip message it rides in). Bounded: cleared when it grows past this.
_SIZE_CACHE: dict[Any, int] = {}
_SIZE_CACHE_MAX = 200_000


def _header(n: int, small: int) -> int:
    """Bytes of a msgpack array/map header holding n items (`small`: fixarray/fixmap limit)."""
    return 1 if n < small else 3 if n < 65536 else 5


def _packed_len(value: Any) -> int:
    """len(msgpack.packb(codec-style body of value)) without building the body."""
    kind = type(value)
    if value is None or kind is bool:
        return 1
    if kind is bytes:
        n = len(value)
        return n + (2 if n < 256 else 3 if n < 65536 else 5)
    if kind is str and value.isascii():
        n = len(value)
        return n + (1 if n < 32 else 2 if n < 256 else 3 if n < 65536 else 5)
    if kind in (int, float, str):
        return len(msgpack.packb(value, use_bin_type=True))
    if kind in (list, tuple):
        return _header(len(value), 16) + sum(_packed_len(v) for v in value)
    if kind is dict:
        return _header(len(value), 16) + sum(
            _packed_len(k) + _packed_len(v) for k, v in value.items())
    if dataclasses.is_dataclass(value):
        try:
            return _SIZE_CACHE[value]
        except KeyError:
            cacheable = True
        except TypeError:  # holds a list: not hashable, size it afresh
            cacheable = False
        fields = [f for f in dataclasses.fields(value) if f.init]
        size = _header(len(fields), 16) + sum(
            len(msgpack.packb(f.name)) + _packed_len(getattr(value, f.name)) for f in fields)
        if cacheable:
            if len(_SIZE_CACHE) >= _SIZE_CACHE_MAX:
                _SIZE_CACHE.clear()
            _SIZE_CACHE[value] = size
        return size
    return len(msgpack.packb(value, use_bin_type=True))


def wire_size(msg: Any) -> int:
    """Bytes one one-way message costs on the wire: body + envelope + HTTP framing.

    The body is sized as `codec.to_body` would encode it (dataclasses as maps of their
    fields), without the validation pass, so a 500-node run is not spent re-checking
    manifests; tests hold it equal to `strict_wire_size` and to a really sealed envelope.
    """
    return _packed_len(msg) + _framing(kind_name(msg))


@dataclasses.dataclass(slots=True)
class Traffic:
    """Counters of one node's traffic (sizes from `wire_size`)."""

    msgs_sent: int = 0
    bytes_sent: int = 0
    msgs_received: int = 0
    bytes_received: int = 0
    msgs_dropped: int = 0


@dataclasses.dataclass(slots=True)
class _Slot:
    node: SimNode
    address: str
    generation: int
    effect: Callable[[Any], None] | None
    crashed: bool = False


class SimNet:
    """Virtual-time network of sans-IO nodes; see the module docstring."""

    def __init__(
        self,
        seed: int,
        loss: float = 0.0,
        delay: tuple[float, float] = (0.001, 0.005),
        sizer: Callable[[Any], int] = wire_size,
    ) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError(f"loss must be in [0, 1), got {loss!r}")
        if not 0.0 <= delay[0] <= delay[1]:
            raise ValueError(f"delay must be (low, high) with 0 <= low <= high, got {delay!r}")
        self.seed = seed
        self.rng = random.Random(seed)
        self.loss = loss
        self.delay = delay
        self.now = 0.0
        self.traffic: dict[str, Traffic] = {}
        # Messages and bytes sent, by message kind, over all nodes.
        self.kind_msgs: dict[str, int] = {}
        self.kind_bytes: dict[str, int] = {}
        # Called as on_send(src, dst, msg, size) for every message sent, lost or not.
        self.on_send: Callable[[str, str, Any, int], None] | None = None
        self._sizer = sizer
        self._slots: dict[str, _Slot] = {}
        self._by_address: dict[str, str] = {}
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = 0
        self._groups: list[set[str]] | None = None

    # -- topology ------------------------------------------------------------------

    def add(
        self,
        node_id: str,
        node: SimNode,
        address: str | None = None,
        effect: Callable[[Any], None] | None = None,
    ) -> None:
        """Add a node; it first ticks at a random offset within its interval (no lockstep)."""
        if node_id in self._slots:
            raise ValueError(f"node {node_id!r} is already in the network")
        address = address if address is not None else node_id
        self._slots[node_id] = _Slot(node, address, 0, effect)
        self._by_address[address] = node_id
        self.traffic[node_id] = Traffic()
        self._start_ticking(node_id)

    def nodes(self) -> dict[str, SimNode]:
        """The running (not crashed) nodes by id."""
        return {nid: s.node for nid, s in self._slots.items() if not s.crashed}

    def node(self, node_id: str) -> SimNode:
        return self._slots[node_id].node

    def address_of(self, node_id: str) -> str:
        return self._slots[node_id].address

    def is_up(self, node_id: str) -> bool:
        return node_id in self._slots and not self._slots[node_id].crashed

    def set_effect(self, node_id: str, effect: Callable[[Any], None] | None) -> None:
        self._slots[node_id].effect = effect

    def crash(self, node_id: str) -> None:
        """Stop a node: it neither ticks nor receives; messages in flight to it are lost."""
        slot = self._slots[node_id]
        slot.crashed = True
        slot.generation += 1

    def restart(self, node_id: str, node: SimNode) -> None:
        """Bring a crashed (or running) node back as a fresh instance at the same address."""
        slot = self._slots[node_id]
        slot.node = node
        slot.crashed = False
        slot.generation += 1
        self._start_ticking(node_id)

    def partition(self, groups: list[set[str]]) -> None:
        """Split the network: messages cross no group boundary.

        Nodes named in no group form one more group together.
        """
        named = set().union(*groups) if groups else set()
        rest = set(self._slots) - named
        self._groups = [set(g) for g in groups] + ([rest] if rest else [])

    def heal(self) -> None:
        self._groups = None

    def connected(self, a: str, b: str) -> bool:
        if self._groups is None:
            return True
        return any(a in g and b in g for g in self._groups)

    # -- events --------------------------------------------------------------------

    def schedule(self, at: float, fn: Callable[[], None]) -> None:
        """Run `fn()` at virtual time `at` (not before now)."""
        self._seq += 1
        heapq.heappush(self._events, (max(at, self.now), self._seq, fn))

    def run_until(self, t: float) -> None:
        """Process every event up to and including time `t`, then set the clock to `t`."""
        events = self._events
        while events and events[0][0] <= t:
            at, _, fn = heapq.heappop(events)
            self.now = at
            fn()
        self.now = max(self.now, t)

    def send(self, src: str, dst: str, msg: Any, address: str | None = None) -> None:
        """Send `msg` from `src`; `dst` may be "" when `address` names the peer."""
        traffic = self.traffic[src]
        size = self._sizer(msg)
        traffic.msgs_sent += 1
        traffic.bytes_sent += size
        kind = kind_name(msg)
        self.kind_msgs[kind] = self.kind_msgs.get(kind, 0) + 1
        self.kind_bytes[kind] = self.kind_bytes.get(kind, 0) + size
        if self.on_send is not None:
            self.on_send(src, dst, msg, size)
        if not dst:
            dst = self._by_address.get(address or "", "")
        if dst not in self._slots:
            traffic.msgs_dropped += 1
            return
        if self.loss and self.rng.random() < self.loss:
            traffic.msgs_dropped += 1
            return
        if not self.connected(src, dst):
            traffic.msgs_dropped += 1
            return
        at = self.now + self.rng.uniform(*self.delay)
        generation = self._slots[dst].generation
        self.schedule(at, lambda: self._deliver(src, dst, generation, msg, size))

    def emit(self, node_id: str, outputs: list[Any]) -> None:
        """Carry out outputs a node produced outside handle/tick (a join, a leave)."""
        self._dispatch(node_id, outputs)

    # -- internals -----------------------------------------------------------------

    def _deliver(self, src: str, dst: str, generation: int, msg: Any, size: int) -> None:
        slot = self._slots[dst]
        if slot.crashed or slot.generation != generation or not self.connected(src, dst):
            self.traffic[src].msgs_dropped += 1
            return
        traffic = self.traffic[dst]
        traffic.msgs_received += 1
        traffic.bytes_received += size
        self._dispatch(dst, slot.node.handle(src, msg, self.now))

    def _dispatch(self, node_id: str, outputs: list[Any]) -> None:
        slot = self._slots[node_id]
        for out in outputs:
            if isinstance(out, Send):
                self.send(node_id, out.to, out.msg, out.address)
            elif slot.effect is not None:
                slot.effect(out)

    def _start_ticking(self, node_id: str) -> None:
        slot = self._slots[node_id]
        generation = slot.generation
        first = self.now + self.rng.uniform(0.0, slot.node.tick_interval)

        def tick() -> None:
            if slot.crashed or slot.generation != generation:
                return
            self._dispatch(node_id, slot.node.tick(self.now))
            self.schedule(self.now + slot.node.tick_interval, tick)

        self.schedule(first, tick)
