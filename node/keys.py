"""`ringrift-node keys`: rotate the cluster secret without stopping the cluster.

Rotation, run on every node at each step (the running node re-reads its keys on SIGHUP, which
these commands send when a node runs in the data dir):
    1. ringrift-node keys install NEW --data-dir D   (accept tags made with NEW)
    2. ringrift-node keys use NEW --data-dir D       (make tags with NEW; old still accepted)
    3. ringrift-node keys remove OLD --data-dir D    (stop accepting OLD)
`ringrift-node keys generate` prints a fresh secret for step 1.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
from pathlib import Path

from mesh.keyring import Keyring, KeyringError
from node.datadir import (
    SECRET_BYTES,
    ClusterCredentials,
    DataDirError,
    read_cluster,
    running_node,
    write_cluster,
)


def generate_secret() -> str:
    return secrets.token_hex(SECRET_BYTES)


def change_keys(data_dir: Path, action: str, secret_hex: str) -> ClusterCredentials:
    """Apply install/use/remove to the keyring in `data_dir` and save it atomically."""
    try:
        secret = bytes.fromhex(secret_hex)
    except ValueError:
        raise DataDirError(f"secret {secret_hex[:8]}...: expected hex digits") from None
    cluster = read_cluster(data_dir)
    keyring = Keyring(cluster.secrets)
    try:
        getattr(keyring, action)(secret)
    except KeyringError as exc:
        raise DataDirError(f"keys {action}: {exc}") from None
    updated = ClusterCredentials(cluster.cluster_id, keyring.secrets)
    write_cluster(data_dir, updated)
    return updated


def signal_running_node(data_dir: Path) -> int | None:
    """SIGHUP the node running in `data_dir` so it reloads its keys; its pid, or None."""
    pid = running_node(data_dir)
    if pid is None:
        return None
    try:
        os.kill(pid, signal.SIGHUP)
    except OSError:
        return None
    return pid


def fingerprint(secret: bytes) -> str:
    """A short, safe-to-print name for a secret (never print the secret itself)."""
    return hashlib.sha256(b"ringrift-key-fingerprint" + secret).hexdigest()[:12]
