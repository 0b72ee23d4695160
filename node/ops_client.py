"""Asking the local node to act (`/api/v1/ops/<action>`), signed with its identity key.

Whoever can read the data dir's `identity.key` may ask its node to act (see node.ops_api).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.datadir import open_data_dir
from node.ops_api import SIGNATURE_HEADER, signed_body


class OpsClientError(RuntimeError):
    """The node could not be reached or refused: one line for the operator."""


def ask(address: str, data_dir: Path, action: str, args: dict[str, Any],
        timeout_s: float) -> dict[str, Any]:
    """POST a signed operator request to the node at `address`; its JSON answer."""
    identity = open_data_dir(data_dir).identity
    body, sig = signed_body(identity, args, time.time_ns() // 1_000_000)
    request = urllib.request.Request(
        f"http://{address}/api/v1/ops/{action}", data=body, method="POST",
        headers={"Content-Type": "application/json", SIGNATURE_HEADER: sig})
    return _call(address, request, timeout_s)


def get_json(address: str, path: str, timeout_s: float) -> dict[str, Any]:
    """GET one of the node's read-only JSON pages."""
    return _call(address, urllib.request.Request(f"http://{address}{path}"), timeout_s)


def _call(address: str, request: urllib.request.Request, timeout_s: float) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode(errors="replace").strip()
        raise OpsClientError(f"node {address} answered {exc.code}: {detail}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise OpsClientError(f"cannot reach the node at {address} "
                             f"({getattr(exc, 'reason', exc)}); is it running?") from None
