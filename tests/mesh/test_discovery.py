"""Zeroconf discovery finds the other nodes of the same cluster, and only those."""

from __future__ import annotations

import asyncio

import pytest

from mesh.discovery import ZeroconfDiscovery

A, B, C = "a" * 32, "b" * 32, "c" * 32
# Multicast stays on the loopback interface: tests send traffic nowhere else.
LOOPBACK = ["127.0.0.1"]


async def test_nodes_of_one_cluster_find_each_other_and_ignore_other_clusters():
    found: dict[str, list[tuple[str, str]]] = {A: [], B: [], C: []}

    def recorder(me: str):
        async def on_peer(node_id: str, address: str) -> None:
            found[me].append((node_id, address))
        return on_peer

    nodes = [
        ZeroconfDiscovery(A, "cluster-1", "127.0.0.1", 7001, recorder(A), interfaces=LOOPBACK),
        ZeroconfDiscovery(B, "cluster-1", "127.0.0.1", 7002, recorder(B), interfaces=LOOPBACK),
        ZeroconfDiscovery(C, "cluster-2", "127.0.0.1", 7003, recorder(C), interfaces=LOOPBACK),
    ]
    try:
        try:
            for node in nodes:
                await node.start()
        except OSError as exc:
            pytest.skip(f"no multicast-capable interface here: {exc}")
        for _ in range(100):
            if found[A] and found[B]:
                break
            await asyncio.sleep(0.1)
        assert found[A] == [(B, "127.0.0.1:7002")]
        assert found[B] == [(A, "127.0.0.1:7001")]
        assert found[C] == []
    finally:
        for node in nodes:
            await node.close()
