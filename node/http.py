"""The node's read-only HTTP routes: status page, health, status JSON and Prometheus metrics.

These need no secret (DESIGN.md, "Identity, admission, wire"): they change nothing. Everything that
changes state lives under /mesh/v1/ (authenticated by the mesh transport) or /api/v1/ops/
(signed by this node's own key, node/ops_api.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from node.status_page import render

StatusSource = Callable[[], Awaitable[dict[str, Any]]]


def add_read_only_routes(
    app: web.Application, status: StatusSource, registry: CollectorRegistry
) -> None:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def api_status(_: web.Request) -> web.Response:
        return web.json_response(await status())

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=render(await status()), content_type="text/html",
                            charset="utf-8")

    async def metrics(_: web.Request) -> web.Response:
        body = generate_latest(registry)
        # aiohttp refuses a charset inside content_type; pass the whole header instead.
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/", page)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/api/v1/status", api_status)
    app.router.add_get("/metrics", metrics)
