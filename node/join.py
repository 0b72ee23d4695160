"""`ringrift-node join`: check a token against the peer, then set up the data dir to join.

The token is tried before anything is written: an authenticated read-only request to the peer
(its bucket digests of one store) fails at once with the peer's refusal when the secret is wrong,
so a bad paste leaves no half-made node behind.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from prometheus_client import CollectorRegistry

from mesh.identity import Identity
from mesh.keyring import Keyring
from mesh.sync_messages import DigestsReply, DigestsRequest
from mesh.token import TokenError
from mesh.transport import MeshTransport, PeerError
from mesh.wire import Wire
from node.config import Config, check_data_dir_writable
from node.datadir import (
    ClusterCredentials,
    NodeFiles,
    credentials_from_token,
    init_data_dir,
    is_initialised,
    open_data_dir,
)

class JoinError(RuntimeError):
    """The join cannot go ahead; the message is one line for the operator."""


def join_cluster(config: Config, peer: str, token_text: str, *, voter: bool) -> NodeFiles:
    try:
        cluster, _issuer = credentials_from_token(token_text)
    except TokenError as exc:
        raise JoinError(f"bad join token: {exc}") from None
    path = config.node.data_dir
    check_data_dir_writable(path)
    existing = open_data_dir(path) if is_initialised(path) else None
    if existing is not None and existing.cluster.cluster_id != cluster.cluster_id:
        raise JoinError(
            f"data dir {path} belongs to cluster {existing.cluster.cluster_id}, the token to "
            f"{cluster.cluster_id}; use another --data-dir"
        )
    asyncio.run(probe_peer(peer, cluster, config.mesh.clock_window_s))
    if existing is not None:
        return existing
    return init_data_dir(path, cluster=cluster, wants_voter=voter, join_peers=(peer,))


async def probe_peer(peer: str, cluster: ClusterCredentials, clock_window_s: float) -> None:
    """Ask `peer` one authenticated question; raise JoinError if it refuses or is unreachable."""
    # A throwaway identity: the probe runs before the data dir (and its key) exists, and every
    # mesh message must be signed by the key its sender id is derived from.
    wire = Wire(cluster.cluster_id, Identity.generate(), Keyring(cluster.secrets),
                window_ms=int(clock_window_s * 1000))
    transport = MeshTransport(
        web.Application(), wire, on_gossip=_refuse_gossip, on_sync=_refuse_sync,
        blob_path=lambda _sha: None, registry=CollectorRegistry(),
    )
    try:
        reply = await transport.request(peer, DigestsRequest("games"))
    except PeerError as exc:
        raise JoinError(f"cannot join through {peer}: {exc}") from None
    finally:
        await transport.close()
    if not isinstance(reply, DigestsReply):
        raise JoinError(f"cannot join through {peer}: it answered {type(reply).__name__}")


async def _refuse_gossip(_sender: str, _msg: object) -> None:
    raise AssertionError("the join probe serves no routes")


async def _refuse_sync(_sender: str, _msg: object) -> object:
    raise AssertionError("the join probe serves no routes")
