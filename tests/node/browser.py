"""Headless Chromium driven over the DevTools protocol (aiohttp's websocket client): load a
page, collect every console message, exception and failed load, read the text, screenshot."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageLoad:
    text: str
    errors: list[str] = field(default_factory=list)
    overflow_px: int = 0  # how far the page is wider than the viewport (0 fits a phone)


class _Cdp:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            msg = json.loads((await self._ws.receive(timeout=30)).data)
            if msg.get("id") == call_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            self.events.append(msg)

    async def wait_event(self, method: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(e.get("method") == method for e in self.events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} within {timeout} s")
            self.events.append(json.loads((await self._ws.receive(timeout=remaining)).data))


def _errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for e in events:
        method, params = e.get("method"), e.get("params", {})
        if method == "Runtime.exceptionThrown":
            out.append(f"exception: {params['exceptionDetails'].get('text')}")
        elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(f"console.{params['type']}: {params.get('args')}")
        elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
            out.append(f"log: {params['entry'].get('text')} {params['entry'].get('url', '')}")
        elif method == "Network.loadingFailed":
            out.append(f"load failed: {params.get('errorText')}")
    return out


async def _load(url: str, screenshot: Path, width: int, height: int) -> PageLoad:
    assert CHROMIUM is not None
    with tempfile.TemporaryDirectory(prefix="ringrift-chromium-") as profile:
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
            "--disable-extensions", "--disable-background-networking",
            f"--user-data-dir={profile}", "--remote-debugging-port=0", "about:blank",
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or proc.returncode is not None:
                    raise RuntimeError(f"chromium did not start (exit {proc.returncode})")
                await asyncio.sleep(0.05)
            port = int(port_file.read_text().split()[0])
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    target = next(t for t in await response.json() if t["type"] == "page")
                async with session.ws_connect(target["webSocketDebuggerUrl"],
                                              max_msg_size=64 << 20) as ws:
                    cdp = _Cdp(ws)
                    for domain in ("Page", "Runtime", "Log", "Network"):
                        await cdp.call(f"{domain}.enable")
                    await cdp.call("Emulation.setDeviceMetricsOverride", width=width,
                                   height=height, deviceScaleFactor=2, mobile=True)
                    await cdp.call("Page.navigate", url=url)
                    await cdp.wait_event("Page.loadEventFired", timeout=30)
                    text = (await cdp.call("Runtime.evaluate",
                                           expression="document.body.innerText"))["result"]
                    overflow = (await cdp.call(
                        "Runtime.evaluate",
                        expression="document.documentElement.scrollWidth - window.innerWidth"))
                    shot = await cdp.call("Page.captureScreenshot", format="png",
                                          captureBeyondViewport=True)
                    screenshot.write_bytes(base64.b64decode(shot["data"]))
                    return PageLoad(text["value"], _errors(cdp.events),
                                    int(overflow["result"]["value"]))
        finally:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), timeout=10)
            except TimeoutError:
                proc.kill()
                await proc.wait()


def load_page(url: str, screenshot: Path, width: int = 390, height: int = 844) -> PageLoad:
    """Load `url` at a phone's viewport (390 x 844 CSS px by default)."""
    return asyncio.run(_load(url, screenshot, width, height))
