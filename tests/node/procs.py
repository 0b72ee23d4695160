"""Run real `ringrift-node` processes on loopback, as a user would, and always stop them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cli(*args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "node.cli", *args],
        check=False, capture_output=True, text=True, timeout=timeout, env=node_env(),
    )
    if check and result.returncode != 0:
        raise AssertionError(f"ringrift-node {' '.join(args)} failed: {result.stderr}")
    return result


def node_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGRIFT_")}
    env["RINGRIFT_NODE_HOST"] = "127.0.0.1"
    # Selfplay would add games of its own to every node under test (and share two cores with
    # it); the tests of selfplay turn it back on (env={"RINGRIFT_SELFPLAY_ENABLED": "true"}).
    env["RINGRIFT_SELFPLAY_ENABLED"] = "false"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class NodeProcess:
    """One `ringrift-node` process; its stderr goes to a log file read on failure."""

    def __init__(self, data_dir: Path, *args: str, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self._log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *args,
             "--data-dir", str(data_dir), "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT, env={**node_env(), **(env or {})},
        )

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def status(self) -> dict[str, Any]:
        code, body = self.get("/api/v1/status")
        assert code == 200, body
        return json.loads(body)

    def wait_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"node exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if self.get("/healthz", timeout=1)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"node not healthy after {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def wait_until(predicate, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")


def write_rows(data_dir: Path, *, tag: str, games: int, matches: list[tuple[str, float]],
               blob: bytes | None = None) -> None:
    """Write games, match rows and (optionally) a model into a stopped node's stores."""
    import asyncio

    from node.datadir import open_data_dir
    from storage.hlc import HybridClock
    from storage.stores import open_stores

    files = open_data_dir(data_dir)

    async def write() -> None:
        stores = await open_stores(data_dir, HybridClock(lambda: time.time_ns() // 1_000_000,
                                                         60_000), files.node_id)
        try:
            await stores.games.add_games([
                {"board_type": "square8", "num_players": 2,
                 "rankings": [1, 2] if i % 2 == 0 else [2, 1],
                 "moves": [tag.encode() + i.to_bytes(4, "big") + bytes([m])
                           for m in range(60)]}
                for i in range(games)
            ])
            for match_id, score in matches:
                await stores.matches.record_match(match_id, [f"a-{tag}", f"b-{tag}"],
                                                  "square8", 2, [score, 1.0 - score])
            if blob is not None:
                sha = await stores.models.put_blob(blob)
                await stores.models.register_model(sha, "square8", 2)
        finally:
            await stores.close()

    asyncio.run(write())
