"""Operator requests to the local node: drift checks, Elo syncs and reconciles on demand.

`tools/elo_drift.py` runs beside a node and acts as that node. A request that makes the node
talk to peers or take rows in changes state, so it must be authorised; the one who may ask is
whoever holds this node's identity key (`D/identity.key`, mode 0600): the body is JSON
`{ts, nonce, args}` and `X-Ringrift-Signature` carries its Ed25519 signature by that key.
The node checks the signature against its own public key, the timestamp against the mesh's
clock window and the nonce against replays. The mesh requests the node then sends to peers
are signed by it like all its mesh messages.

Reads (`GET /api/v1/drift`: the last report per config and the history) need no key, like the
other read-only pages.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter

from mesh.identity import Identity, verify_signature
from mesh.manifest import is_address
from mesh.wire import ReplayCache
from node.drift import Thresholds
from node.drift_watch import DriftError, DriftWatch
from storage.merge import Strategy
from storage.rows import BOARD_TYPES, MAX_PLAYERS, MIN_PLAYERS

log = logging.getLogger("ringrift.ops")

SIGNATURE_HEADER = "X-Ringrift-Signature"
OPS_PATH = "/api/v1/ops/{action}"
DRIFT_PATH = "/api/v1/drift"
MAX_BODY_BYTES = 16 * 1024
NONCE_BYTES = 16
# Every status a refusal answers with (the counter's label values).
REFUSAL_STATUSES = (400, 401, 404, 409, 413, 502)
# reconcile-all with no hosts named syncs from every alive member; a list is bounded by this.
MAX_HOSTS = 256

Peers = Callable[[], Sequence[tuple[str, str]]]


class OpsError(ValueError):
    """A request the node refuses; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def signed_body(identity: Identity, args: dict[str, Any], now_ms: int) -> tuple[bytes, str]:
    """The body of an operator request and its signature (hex) by `identity`."""
    body = json.dumps({"ts": now_ms, "nonce": os.urandom(NONCE_BYTES).hex(), "args": args},
                      sort_keys=True).encode()
    return body, identity.sign(body).hex()


class OpsApi:
    def __init__(self, app: web.Application, *, identity: Identity, watch: DriftWatch,
                 peers: Peers, window_ms: int, wall_ms: Callable[[], int],
                 registry: CollectorRegistry) -> None:
        self._public_key = identity.public_key
        self._watch = watch
        self._peers = peers
        self._window_ms = window_ms
        self._wall_ms = wall_ms
        self._replays = ReplayCache(window_ms)
        self._refused = Counter("ringrift_ops_refused_total",
                                "Operator requests refused, by HTTP status", ["status"],
                                registry=registry)
        for status in REFUSAL_STATUSES:
            self._refused.labels(str(status))
        self._actions: dict[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]] = {
            "drift": self._drift, "sync": self._sync, "reconcile": self._reconcile,
        }
        app.router.add_post(OPS_PATH, self._handle)
        app.router.add_get(DRIFT_PATH, self._history)

    def add_action(self, name: str,
                   action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]) -> None:
        """Serve another operator action (its handler validates its own args; OpsError for a
        refusal)."""
        self._actions[name] = action

    async def _history(self, _: web.Request) -> web.Response:
        return web.json_response({"thresholds": _thresholds(self._watch.thresholds),
                                  "last": self._watch.last, "history": self._watch.history()})

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            action = self._actions.get(request.match_info["action"])
            if action is None:
                raise OpsError(404, f"no operator action {request.match_info['action']!r}; "
                                    f"expected one of {sorted(self._actions)}")
            args = await self._admit(request)
            return web.json_response(await action(args))
        except OpsError as exc:
            self._refused.labels(str(exc.status)).inc()
            log.info("operator request %s refused: %s", request.path, exc)
            return web.Response(status=exc.status, text=f"{exc}\n")

    async def _admit(self, request: web.Request) -> dict[str, Any]:
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise OpsError(413, f"body of {request.content_length} bytes; at most "
                                f"{MAX_BODY_BYTES}")
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise OpsError(413, f"body over {MAX_BODY_BYTES} bytes")
        try:
            sig = bytes.fromhex(request.headers.get(SIGNATURE_HEADER, ""))
        except ValueError:
            sig = b""
        if not verify_signature(self._public_key, sig, body):
            raise OpsError(401, "not signed by this node's identity key (run the tool with "
                                "this node's --data-dir)")
        try:
            fields = json.loads(body)
            ts, nonce, args = fields["ts"], bytes.fromhex(fields["nonce"]), fields["args"]
        except (ValueError, KeyError, TypeError):
            raise OpsError(400, "body is not JSON {ts, nonce, args}") from None
        if type(ts) is not int or len(nonce) != NONCE_BYTES or not isinstance(args, dict):
            raise OpsError(400, "ts must be an integer, nonce 16 bytes hex, args an object")
        now = self._wall_ms()
        if abs(now - ts) > self._window_ms:
            raise OpsError(401, f"request stamped {ts - now} ms from this node's clock; the "
                                f"window is {self._window_ms} ms")
        refusal = self._replays.check_and_add(nonce, ts, now)
        if refusal is not None:
            raise OpsError(409, f"request refused as {refusal}")
        return args

    # --- actions ----------------------------------------------------------------------------

    async def _drift(self, args: dict[str, Any]) -> dict[str, Any]:
        config = _config(args)
        peer = args.get("peer")
        if peer is None:
            peers = list(self._peers())
            if not peers:
                raise OpsError(409, "no alive peer to compare with; name one with --peer")
            to, address = random.choice(peers)
        else:
            address = _address(peer)
            to = self._node_id_of(address)
        try:
            reports = await self._watch.check(address, to, config)
        except DriftError as exc:
            raise OpsError(502, f"drift check against {address} failed: {exc}") from None
        return {"reports": [r.to_dict() for r in reports]}

    async def _sync(self, args: dict[str, Any]) -> dict[str, Any]:
        address = _address(args.get("host"))
        result = await self._watch.sync(address, _strategy(args), self._node_id_of(address))
        return result.to_dict()

    async def _reconcile(self, args: dict[str, Any]) -> dict[str, Any]:
        hosts = args.get("hosts")
        if hosts is None:
            addresses = [a for _, a in self._peers()]
        elif isinstance(hosts, list) and len(hosts) <= MAX_HOSTS:
            addresses = [_address(h) for h in hosts]
        else:
            raise OpsError(400, f"hosts must be a list of at most {MAX_HOSTS} host:port")
        strategy = _strategy(args)
        started = time.time()
        results = [await self._watch.sync(a, strategy, self._node_id_of(a)) for a in addresses]
        synced = [r.remote_host for r in results if r.error is None]
        max_drift, significant = 0.0, False
        for address in synced:
            try:
                reports = await self._watch.check(address, self._node_id_of(address))
            except DriftError:
                continue
            for report in reports:
                max_drift = max(max_drift, report.max_rating_diff)
                significant = significant or report.is_significant
        return {
            "started_at": started, "completed_at": time.time(), "strategy": strategy.name,
            "nodes_synced": synced,
            "nodes_failed": [r.remote_host for r in results if r.error is not None],
            "total_matches_added": sum(r.matches_added for r in results),
            "total_matches_skipped": sum(r.matches_skipped for r in results),
            "total_conflicts": sum(r.matches_conflict for r in results),
            "total_resolved": sum(r.matches_resolved for r in results),
            "drift_detected": significant, "max_drift": max_drift,
            "sync_results": [r.to_dict() for r in results],
        }

    def _node_id_of(self, address: str) -> str | None:
        return next((n for n, a in self._peers() if a == address), None)


def _address(value: object) -> str:
    if not is_address(value):
        raise OpsError(400, f"peer {value!r:.80}: expected host:port")
    assert isinstance(value, str)
    return value


def _strategy(args: dict[str, Any]) -> Strategy:
    name = args.get("strategy", Strategy.LAST_WRITE_WINS.name)
    if not isinstance(name, str) or name not in Strategy.__members__:
        raise OpsError(400, f"strategy {name!r:.40}: expected one of "
                            f"{list(Strategy.__members__)}")
    return Strategy[name]


def _config(args: dict[str, Any]) -> tuple[str, int] | None:
    board, players = args.get("board_type"), args.get("num_players")
    if board is None and players is None:
        return None
    if board not in BOARD_TYPES or type(players) is not int \
            or not MIN_PLAYERS <= players <= MAX_PLAYERS:
        raise OpsError(400, f"board_type {board!r:.40} / num_players {players!r:.10}: expected "
                            f"both, one of {sorted(BOARD_TYPES)} and {MIN_PLAYERS}..{MAX_PLAYERS}")
    return board, players


def _thresholds(t: Thresholds) -> dict[str, float]:
    return {"max_elo": t.max_elo, "avg_elo": t.avg_elo}
