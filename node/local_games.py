"""Games played by `ringrift-node selfplay` beside a running node, stored through that node.

The running agent owns its data dir's database; a second process must not write it. So the
command posts its finished games to `POST /api/v1/local/games`, authorised the way operator
requests are (node.ops_api): the body is msgpack `{ts, nonce, games}` and the
`X-Ringrift-Signature` header carries its Ed25519 signature by the node's own identity key,
which only someone who can read the data dir holds. `games` are `GameStore.add_games`
mappings (game row fields less stamp and origin); the node stamps and stores them, so they
replicate like its own.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import msgpack
from aiohttp import web

from mesh.identity import Identity, verify_signature
from mesh.wire import ReplayCache
from node.ops_api import SIGNATURE_HEADER
from storage.database import DiskFullError
from storage.games import GameStore
from storage.merge import InvalidRow

log = logging.getLogger("ringrift.local_games")

PATH = "/api/v1/local/games"
MAX_BODY_BYTES = 32 * 1024 * 1024  # a few dozen long games with their targets
MAX_GAMES = 256
NONCE_BYTES = 16
ROW_FIELDS = frozenset({"board_type", "num_players", "swap_rule", "moves", "policy", "values",
                        "rankings", "winner", "search", "model_sha"})


class LocalGamesError(RuntimeError):
    """The node could not be reached or refused the games: one line for the operator."""


def add_route(app: web.Application, identity: Identity, games: GameStore, window_ms: int,
              wall_ms: Callable[[], int]) -> None:
    replays = ReplayCache(window_ms)

    async def handle(request: web.Request) -> web.Response:
        body = await request.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            return web.Response(status=413, text=f"body over {MAX_BODY_BYTES} bytes\n")
        try:
            sig = bytes.fromhex(request.headers.get(SIGNATURE_HEADER, ""))
        except ValueError:
            sig = b""
        if not verify_signature(identity.public_key, sig, body):
            return web.Response(status=401, text="not signed by this node's identity key\n")
        try:
            fields = msgpack.unpackb(body, raw=False)
            ts, nonce, rows = fields["ts"], fields["nonce"], fields["games"]
        except (ValueError, KeyError, TypeError, msgpack.ExtraData, msgpack.FormatError,
                msgpack.StackError):
            return web.Response(status=400, text="body is not msgpack {ts, nonce, games}\n")
        if (type(ts) is not int or type(nonce) is not bytes or len(nonce) != NONCE_BYTES
                or type(rows) is not list or not 0 < len(rows) <= MAX_GAMES
                or not all(type(r) is dict and r.keys() <= ROW_FIELDS for r in rows)):
            return web.Response(status=400, text=f"games must be 1..{MAX_GAMES} maps of "
                                                 f"{sorted(ROW_FIELDS)}\n")
        now = wall_ms()
        if abs(now - ts) > window_ms:
            return web.Response(status=401, text=f"request stamped {ts - now} ms off\n")
        refusal = replays.check_and_add(nonce, ts, now)
        if refusal is not None:
            return web.Response(status=409, text=f"request refused as {refusal}\n")
        try:
            ids = await games.add_games([{**r, "source": "selfplay"} for r in rows])
        except (InvalidRow, TypeError) as exc:
            return web.Response(status=400, text=f"a game is malformed: {exc}\n")
        except DiskFullError as exc:
            return web.Response(status=507, text=f"the node's disk is full: {exc}\n")
        log.info("stored %d games played by `ringrift-node selfplay`", len(ids))
        return web.json_response({"stored": len(ids), "game_ids": ids})

    app.router.add_post(PATH, handle)


def signed_games(identity: Identity, rows: list[dict[str, Any]], now_ms: int
                 ) -> tuple[bytes, str]:
    """The body of a games request and its signature (hex) by `identity`."""
    body = msgpack.packb({"ts": now_ms, "nonce": os.urandom(NONCE_BYTES), "games": rows},
                         use_bin_type=True)
    return body, identity.sign(body).hex()


def post_games(address: str, identity: Identity, rows: list[dict[str, Any]],
               timeout_s: float = 60.0) -> int:
    """Send `rows` to the node at `address`; how many it stored."""
    stored = 0
    for i in range(0, len(rows), MAX_GAMES):
        body, sig = signed_games(identity, rows[i:i + MAX_GAMES], time.time_ns() // 1_000_000)
        request = urllib.request.Request(
            f"http://{address}{PATH}", data=body, method="POST",
            headers={"Content-Type": "application/msgpack", SIGNATURE_HEADER: sig})
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                stored += int(json.loads(response.read())["stored"])
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise LocalGamesError(f"node {address} refused the games ({exc.code}): "
                                  f"{detail}") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise LocalGamesError(f"cannot reach the node at {address} "
                                  f"({getattr(exc, 'reason', exc)})") from None
    return stored
