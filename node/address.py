"""The address this node tells its peers to use."""

from __future__ import annotations

import socket

from node.config import Config


def advertise_address(config: Config, bound_port: int) -> str:
    """The host:port peers should use to reach this node."""
    if config.node.advertise_address:
        return config.node.advertise_address
    host = config.node.host
    if host in ("0.0.0.0", "::", ""):
        host = _primary_ip()
    return f"[{host}]:{bound_port}" if ":" in host else f"{host}:{bound_port}"


def _primary_ip() -> str:
    """The address of the interface that routes outward; no packet is sent (UDP connect only)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("10.255.255.255", 1))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1"
