"""The node's data directory: identity, cluster membership credentials, and its format version.

Layout of a data dir D:
    D/node.json       format version, node id, cluster id, founder / wants-voter flags, join peers
    D/identity.key    Ed25519 private key (mode 0600)
    D/cluster.key     cluster id and keyring secrets (mode 0600): whoever reads it can join
    D/node.db         the stores (storage/), with their own schema version
    D/blobs/          content-addressed model blobs
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mesh.identity import Identity
from mesh.token import make_token, parse_token
from storage.files import atomic_write_bytes

# Version 1 is the first layout. A newer node may add files; an older node must refuse a dir it
# does not understand rather than half-read it.
FORMAT_VERSION = 1
SECRET_BYTES = 32
PID_FILE = "node.pid"  # written by a running agent, removed as it stops


class DataDirError(RuntimeError):
    """The data dir cannot be used; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class ClusterCredentials:
    cluster_id: str
    # Newest first: the first secret signs, all of them verify (rotation in progress).
    secrets: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class NodeFiles:
    path: Path
    identity: Identity
    cluster: ClusterCredentials
    # Founder: made by `init`, the first voter of a new cluster. wants_voter: `join --voter`.
    founder: bool
    wants_voter: bool
    # Peers named by `join`: contacted at every start, so a restart needs no token.
    join_peers: tuple[str, ...] = ()

    @property
    def node_id(self) -> str:
        return self.identity.node_id


def is_initialised(path: Path) -> bool:
    return (path / "node.json").exists()


def running_node(path: Path) -> int | None:
    """The pid of a live agent holding data dir `path` (from its pid file), or None."""
    try:
        pid = int((path / PID_FILE).read_text(encoding="ascii").strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def init_data_dir(
    path: Path,
    *,
    cluster: ClusterCredentials | None = None,
    wants_voter: bool = False,
    join_peers: tuple[str, ...] = (),
) -> NodeFiles:
    """Create identity and credentials in `path`: a new cluster (this node its founder) unless
    `cluster` is given, as by `join`.

    Refuses a dir that already holds a node: overwriting a key or a secret would lose the node's
    identity or lock it out of its cluster.
    """
    if is_initialised(path):
        raise DataDirError(f"data dir {path} already holds a node; refusing to overwrite it")
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    (path / "blobs").mkdir(exist_ok=True)
    identity = Identity.generate()
    founder = cluster is None
    if cluster is None:
        cluster = ClusterCredentials(secrets.token_hex(16), (secrets.token_bytes(SECRET_BYTES),))
    identity.save(path / "identity.key")
    write_cluster(path, cluster)
    # node.json last: its presence means the dir is complete (a crash before it leaves no half node).
    _write_json(path / "node.json", {
        "format": FORMAT_VERSION,
        "node_id": identity.node_id,
        "cluster_id": cluster.cluster_id,
        "founder": founder,
        "wants_voter": wants_voter or founder,
        "join_peers": list(join_peers),
    }, mode=0o644)
    return NodeFiles(path, identity, cluster, founder, wants_voter or founder, join_peers)


def open_data_dir(path: Path) -> NodeFiles:
    """Load an initialised data dir, refusing one written by a newer format."""
    meta = _read_json(path / "node.json")
    fmt = meta.get("format")
    if not isinstance(fmt, int):
        raise DataDirError(f"{path / 'node.json'}: format = {fmt!r}: expected an integer")
    if fmt > FORMAT_VERSION:
        raise DataDirError(
            f"data dir {path} has format {fmt}, newer than this ringrift-node supports "
            f"({FORMAT_VERSION}); upgrade ringrift-node"
        )
    try:
        identity = Identity.load(path / "identity.key")
    except (OSError, ValueError) as exc:
        raise DataDirError(f"{path / 'identity.key'}: cannot load the node key ({exc})") from exc
    if meta.get("node_id") != identity.node_id:
        raise DataDirError(
            f"{path / 'node.json'}: node_id {meta.get('node_id')!r} does not match the key in "
            f"identity.key ({identity.node_id})"
        )
    cluster = read_cluster(path)
    peers = meta.get("join_peers", [])
    if not isinstance(peers, list) or not all(isinstance(p, str) for p in peers):
        raise DataDirError(f"{path / 'node.json'}: join_peers = {peers!r}: expected a list of "
                           "host:port strings")
    return NodeFiles(path, identity, cluster, bool(meta.get("founder", False)),
                     bool(meta.get("wants_voter", False)), tuple(peers))


def read_cluster(path: Path) -> ClusterCredentials:
    data = _read_json(path / "cluster.key")
    cluster_id, raw = data.get("cluster_id"), data.get("secrets")
    if not isinstance(cluster_id, str) or not isinstance(raw, list) or not raw:
        raise DataDirError(f"{path / 'cluster.key'}: expected cluster_id and a list of secrets")
    try:
        keys = tuple(bytes.fromhex(s) for s in raw)
    except (TypeError, ValueError) as exc:
        raise DataDirError(f"{path / 'cluster.key'}: secrets must be hex strings") from exc
    return ClusterCredentials(cluster_id, keys)


def write_cluster(path: Path, cluster: ClusterCredentials) -> None:
    _write_json(path / "cluster.key", {
        "cluster_id": cluster.cluster_id,
        "secrets": [s.hex() for s in cluster.secrets],
    }, mode=0o600)


def join_token(files: NodeFiles, address: str) -> str:
    return make_token(files.cluster.cluster_id, files.cluster.secrets[0], address)


def credentials_from_token(text: str) -> tuple[ClusterCredentials, str]:
    """The cluster a token admits to, and the address of the node that issued it."""
    token = parse_token(text)
    return ClusterCredentials(token.cluster_id, (token.secret,)), token.address


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataDirError(f"{path} is missing; run `ringrift-node init`") from None
    except (OSError, ValueError) as exc:
        raise DataDirError(f"{path}: unreadable ({exc})") from exc
    if not isinstance(data, dict):
        raise DataDirError(f"{path}: expected a JSON object")
    return data


def _write_json(path: Path, data: dict, mode: int) -> None:
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True).encode() + b"\n", mode=mode)
