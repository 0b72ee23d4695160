"""LAN discovery over multicast DNS: `_ringrift._tcp.local.`, one instance per node.

Discovery only bootstraps: it hands addresses of nodes of our cluster to membership, which
joins through them and alone decides who is alive. The instance name is the node id, and a TXT
property names the cluster so two clusters on one LAN ignore each other (the cluster id is no
secret: every envelope carries it in clear; admission still needs the cluster key).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from collections.abc import Awaitable, Callable

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from mesh.identity import is_node_id

log = logging.getLogger("ringrift.discovery")

SERVICE_TYPE = "_ringrift._tcp.local."
# How long to wait for a discovered instance to answer with its address and port.
RESOLVE_TIMEOUT_MS = 3000

PeerFound = Callable[[str, str], Awaitable[None]]  # (node_id, "host:port")


def instance_name(node_id: str) -> str:
    return f"{node_id}.{SERVICE_TYPE}"


class ZeroconfDiscovery:
    """Announce this node and report the other nodes of its cluster found on the LAN."""

    def __init__(self, node_id: str, cluster_id: str, host: str, port: int,
                 on_peer: PeerFound, interfaces: list[str] | None = None) -> None:
        self.node_id = node_id
        self.cluster_id = cluster_id
        self._host = host
        self._port = port
        self._on_peer = on_peer
        self._interfaces = interfaces
        self._zc: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._resolving: set[asyncio.Task[None]] = set()
        self.found: dict[str, str] = {}

    async def start(self) -> None:
        if self._interfaces is None:
            self._zc = AsyncZeroconf(ip_version=IPVersion.V4Only)
        else:
            self._zc = AsyncZeroconf(interfaces=self._interfaces, ip_version=IPVersion.V4Only)
        self._info = AsyncServiceInfo(
            SERVICE_TYPE, instance_name(self.node_id),
            addresses=[ipaddress.ip_address(self._host).packed], port=self._port,
            properties={"node_id": self.node_id, "cluster": self.cluster_id},
        )
        await self._zc.async_register_service(self._info)
        self._browser = AsyncServiceBrowser(self._zc.zeroconf, [SERVICE_TYPE],
                                            handlers=[self._on_change])
        log.info("zeroconf: announcing %s on %s:%d", self.node_id, self._host, self._port)

    def _on_change(self, zeroconf: Zeroconf, service_type: str, name: str,
                   state_change: ServiceStateChange) -> None:
        if state_change is not ServiceStateChange.Added or name == instance_name(self.node_id):
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, service_type, name))
        self._resolving.add(task)
        task.add_done_callback(self._resolving.discard)

    async def _resolve(self, zeroconf: Zeroconf, service_type: str, name: str) -> None:
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
            return
        props = {k.decode(errors="replace"): (v or b"").decode(errors="replace")
                 for k, v in (info.properties or {}).items()}
        node_id = props.get("node_id", "")
        addresses = info.parsed_addresses(IPVersion.V4Only)
        if (props.get("cluster") != self.cluster_id or not is_node_id(node_id)
                or not addresses or not info.port):
            return
        address = f"{addresses[0]}:{info.port}"
        if self.found.get(node_id) == address:
            return
        self.found[node_id] = address
        log.info("zeroconf: found %s at %s", node_id, address)
        await self._on_peer(node_id, address)

    async def close(self) -> None:
        for task in list(self._resolving):
            task.cancel()
        if self._browser is not None:
            await self._browser.async_cancel()
        if self._zc is not None:
            if self._info is not None:
                await self._zc.async_unregister_service(self._info)
            await self._zc.async_close()
