"""A private LAN of Linux network namespaces on one bridge, for real-process partition tests.

Each host is a namespace with `lo` up and one veth whose other end sits on a bridge in the root
namespace; the root namespace has the bridge's address, so a test reaches every host directly.
Taking a host's bridge-side veth down cuts that host off from everyone (its own address still
answers inside its namespace), and bringing it up heals the partition.

Every name carries the test process's pid, so concurrent runs never touch each other's
interfaces; `close` removes whatever `open` managed to create, even after a failure half-way.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

# Linux interface names hold at most 15 bytes (IFNAMSIZ - 1).
IFNAMSIZ_MAX = 15
# Private 10.77.<x>.0/24 subnets; the pid picks the first one tried, a free one is used.
SUBNET_PREFIX = "10.77"
MAX_HOSTS = 200


class NetnsUnavailable(RuntimeError):
    """This machine or user cannot create namespaces or bridges (not root, no iproute2, ...)."""


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    netns: str
    ip: str
    bridge_veth: str  # in the root namespace, on the bridge: down = host cut off
    host_veth: str  # inside the namespace, carries `ip`

    def argv(self, *command: str) -> list[str]:
        """`command` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.netns, *command]


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30,
                            check=False)
    if check and result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)} failed ({result.returncode}): "
                           f"{result.stderr.strip()}")
    return result


def _ifname(name: str) -> str:
    if len(name) > IFNAMSIZ_MAX:
        raise ValueError(f"interface name {name!r}: {len(name)} chars, expected at most "
                         f"{IFNAMSIZ_MAX}")
    return name


class Lan:
    """One host per name, on one bridge. `close` after `open`, whether `open` succeeded or not."""

    def __init__(self, names: list[str], tag: str | None = None) -> None:
        if not 1 <= len(names) <= MAX_HOSTS or len(set(names)) != len(names):
            raise ValueError(f"host names {names!r}: expected 1..{MAX_HOSTS} distinct names")
        self.names = names
        self.tag = tag or str(os.getpid())
        self.bridge = _ifname(f"rrb{self.tag}")
        self.gateway = ""
        self.hosts: dict[str, Host] = {}
        self._netns: list[str] = []
        self._links: list[str] = []

    def open(self) -> None:
        if os.geteuid() != 0:
            raise NetnsUnavailable(f"network namespaces need root (running as uid {os.geteuid()})")
        if shutil.which("ip") is None:
            raise NetnsUnavailable("the `ip` command (iproute2) is not installed")
        subnet = _free_subnet(int(self.tag) if self.tag.isdigit() else 0)
        self.gateway = f"{subnet}.1"
        first = f"ringrift-{self.tag}-{self.names[0]}"
        added = ip("netns", "add", first, check=False)
        if added.returncode != 0:
            raise NetnsUnavailable(f"`ip netns add` failed: {added.stderr.strip()}")
        self._netns.append(first)
        made = ip("link", "add", self.bridge, "type", "bridge", check=False)
        if made.returncode != 0:
            raise NetnsUnavailable(f"cannot create a bridge: {made.stderr.strip()}")
        self._links.append(self.bridge)
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for i, name in enumerate(self.names):
            netns = f"ringrift-{self.tag}-{name}"
            if netns not in self._netns:
                ip("netns", "add", netns)
                self._netns.append(netns)
            host = Host(name=name, netns=netns, ip=f"{subnet}.{10 + i}",
                        bridge_veth=_ifname(f"rrh{self.tag}-{i}"),
                        host_veth=_ifname(f"rrn{self.tag}-{i}"))
            ip("link", "add", host.bridge_veth, "type", "veth", "peer", "name", host.host_veth)
            self._links.append(host.bridge_veth)
            ip("link", "set", host.host_veth, "netns", netns)
            ip("link", "set", host.bridge_veth, "master", self.bridge, "up")
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "addr", "add", f"{host.ip}/24", "dev", host.host_veth)
            ip("-n", netns, "link", "set", host.host_veth, "up")
            self.hosts[name] = host

    def isolate(self, host: Host) -> None:
        """Cut `host` off from the bridge: no packet in or out until `heal`."""
        ip("link", "set", host.bridge_veth, "down")

    def heal(self, host: Host) -> None:
        ip("link", "set", host.bridge_veth, "up")

    def close(self) -> None:
        """Delete the veths (each takes its peer along), the bridge, then the namespaces.

        Errors are collected, not raised one by one, so one stuck item does not leave the rest.
        Processes inside the namespaces must be gone first: a namespace lives on while any
        process is in it (`ip netns del` only removes its name).
        """
        errors = []
        for link in reversed(self._links):
            result = ip("link", "del", link, check=False)
            if result.returncode != 0 and "Cannot find device" not in result.stderr:
                errors.append(f"link {link}: {result.stderr.strip()}")
        self._links.clear()
        for netns in reversed(self._netns):
            result = ip("netns", "del", netns, check=False)
            if result.returncode != 0:
                errors.append(f"netns {netns}: {result.stderr.strip()}")
        self._netns.clear()
        if errors:
            raise RuntimeError("network teardown incomplete: " + "; ".join(errors))


def _free_subnet(seed: int) -> str:
    """A 10.77.<x> /24 that no interface of the root namespace uses yet."""
    used = ip("-4", "-o", "addr", "show").stdout + ip("-4", "route", "show").stdout
    for step in range(254):
        x = 1 + (seed + step) % 254
        prefix = f"{SUBNET_PREFIX}.{x}"
        if not re.search(rf"(^|\s){re.escape(prefix)}\.", used, re.MULTILINE):
            return prefix
    raise NetnsUnavailable(f"no free {SUBNET_PREFIX}.<x>.0/24 subnet left in the root namespace")
