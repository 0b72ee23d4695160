"""A fuzzer against the mesh endpoints of a real aiohttp server, as an attacker would send:
random bytes, mutations of a sealed message, and well-sealed envelopes (the cluster key and a
node key in hand) carrying random bodies. No input may get a 5xx or pass uncounted, and memory
stays bounded. 10,000 inputs by default, 100,000 under -m slow."""

from __future__ import annotations

import random
import resource
from collections import Counter

import aiohttp
import msgpack
import pytest

from mesh.keyring import PURPOSE_ENVELOPE
from mesh.wire import SIG_DOMAIN
from tests.mesh.test_transport import CLIENT_ID, SERVER_ID, Node, Note, cluster  # noqa: F401

SUCCESS = {200, 204}
REFUSED = {400, 401, 403, 408, 409, 413}
MAX_RSS_GROWTH_KIB = 64 * 1024


def _value(rng: random.Random, depth: int = 0) -> object:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return rng.randrange(-(1 << 63), 1 << 64)
    if kind == 1:
        return rng.random() * 10 ** rng.randrange(-5, 300)
    if kind == 2:
        return "".join(chr(rng.randrange(32, 0x2FF)) for _ in range(rng.randrange(40)))
    if kind == 3:
        return rng.randbytes(rng.randrange(64))
    if kind == 4:
        return rng.choice((None, True, False))
    if kind == 5:
        return rng.choice(("test.transport.note", "swim.ping", "raft.vote", "sync.rows", ""))
    if kind == 6:
        return [_value(rng, depth + 1) for _ in range(rng.randrange(6))]
    return {str(_value(rng, depth + 1))[:20]: _value(rng, depth + 1) for _ in range(rng.randrange(6))}


def _sealed(node: Node, rng: random.Random) -> bytes:
    """An envelope a key holder can make: valid tag and signature, fields at the fuzzer's will."""
    wire = node.transport.wire
    fields: dict[str, object] = {
        "v": rng.choice((1, 1, 1, 2, 0, "1")), "cluster": wire.cluster_id, "from": wire.node_id,
        "key": wire.identity.public_key, "ts": node.transport._clock_ms(),
        "nonce": rng.randbytes(16),
        "kind": rng.choice(("test.transport.note", "test.transport.ask", "swim.ping", "x")),
        "body": _value(rng) if rng.random() < 0.5 else {"text": _value(rng)},
    }
    for name in rng.sample(sorted(fields), rng.randrange(3)):
        if rng.random() < 0.5:
            del fields[name]
        else:
            fields[name] = _value(rng)
    envelope = msgpack.packb(fields, use_bin_type=True)
    binding = b"\x01\x00" + envelope
    sig = wire.identity.sign(SIG_DOMAIN + binding)
    return envelope + sig + wire.keyring.tag(PURPOSE_ENVELOPE, binding + sig)


def _input(rng: random.Random, client: Node) -> bytes:
    shape = rng.randrange(3)
    if shape == 0:
        return rng.randbytes(rng.choice((0, 1, 7, 64, 600, 3000, 70_000)))
    if shape == 1:
        data = bytearray(client.transport.wire.seal(
            Note("x" * rng.randrange(50)),
            client.transport._clock_ms()))
        for _ in range(rng.randrange(1, 4)):
            op = rng.randrange(3)
            if op == 0 and data:
                data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
            elif op == 1 and data:
                del data[rng.randrange(len(data)):]
            else:
                data += rng.randbytes(rng.randrange(1, 40))
        return bytes(data)
    return _sealed(client, rng)


async def _fuzz(cluster, inputs: int, seed: int) -> None:  # noqa: F811
    server, client = await cluster(SERVER_ID), await cluster(CLIENT_ID)
    rng = random.Random(seed)
    statuses: Counter[int] = Counter()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    async with aiohttp.ClientSession() as session:
        for i in range(inputs):
            path = "/mesh/v1/gossip" if i % 2 else "/mesh/v1/sync"
            data = _input(rng, client)
            async with session.post(f"http://{server.address}{path}", data=data) as resp:
                await resp.read()
                statuses[resp.status] += 1
                assert resp.status in SUCCESS | REFUSED, (seed, i, resp.status, data[:80])
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    refused = sum(n for s, n in statuses.items() if s in REFUSED)
    # Every refusal is counted once, by reason; every success was a message the node took.
    assert sum(server.transport.refusals.values()) == refused, (statuses, server.transport.refusals)
    assert refused > inputs * 0.9
    assert grown < MAX_RSS_GROWTH_KIB, f"RSS grew {grown} KiB over {inputs} inputs"
    # The node still serves honest traffic.
    assert await client.transport.send(server.address, Note("after"))


async def test_ten_thousand_fuzzed_inputs_get_no_5xx_and_every_refusal_is_counted(cluster):  # noqa: F811
    await _fuzz(cluster, 10_000, seed=1)


@pytest.mark.slow
async def test_a_hundred_thousand_fuzzed_inputs(cluster):  # noqa: F811
    await _fuzz(cluster, 100_000, seed=2)
