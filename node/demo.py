"""`ringrift-node demo --nodes 3 --minutes 5 [--seed S]`: the whole loop on one machine.

Starts N real node processes on loopback (the first `init`s a cluster, the others `join` it as
voters), each with the demo settings below, and prints the loop as it runs: games played, the
leader's training runs, evaluations with their running SPRT, promotion decisions with their
reasons, and which production model every node holds. After `--minutes` it prints a summary,
stops every process and removes its files (unless --keep).

Demo settings (a config file handed to every node): a tiny network trained for a couple of
hundred steps on a few hundred games cannot reach the full gates (85% against random, 60%
against heuristic, +25 Elo over 100+ games of a sequential test), so the demo lowers them:
training every `DEMO["pipeline"]["training_game_threshold"]` new games, a short SPRT and gates a
fresh net can pass. `retain_production` is an honest outcome of a demo run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

DEMO: dict[str, dict[str, Any]] = {
    "mesh": {"sync_interval_s": 1.0},
    # A few search simulations (policy-only play gives training no better target), small
    # batches so games reach the store every few seconds, and a quick switch to a new model.
    "selfplay": {"simulations": 4, "considered": 4, "concurrency": 8, "model_check_s": 5.0},
    "pipeline": {
        "training_game_threshold": 24, "training_window_games": 300, "training_steps": 100,
        "training_batch_size": 32, "interval_s": 1.0, "watch_games": 8, "max_game_moves": 300,
        "assignment_timeout_s": 60.0,
    },
    "promotion": {
        "min_games_played": 6, "sprt_min_games": 6, "sprt_max_games": 16,
        "sprt_elo0": 0.0, "sprt_elo1": 100.0, "min_win_rate": 0.5, "min_elo_improvement": 0.0,
        "random_gate": 0.5, "heuristic_gate": 0.0, "max_value_mse_degradation": 0.5,
    },
}
STATUS_EVERY_S = 10.0
# A node's start-up imports torch: seconds on an idle box, a minute or more on a loaded one.
START_TIMEOUT_S = 300.0
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _toml(sections: dict[str, dict[str, Any]]) -> str:
    lines = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Node:
    def __init__(self, name: str, root: Path, config: Path, args: list[str],
                 env: dict[str, str]) -> None:
        self.name = name
        self.data_dir = root / name
        self.port = _free_port()
        self.log_path = root / f"{name}.log"
        self._log = self.log_path.open("ab")
        self._read = 0
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "node.cli", *args, "--data-dir", str(self.data_dir),
             "--port", str(self.port), "--host", "127.0.0.1", "--config", str(config)],
            stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def status(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://{self.address}/api/v1/status",
                                        timeout=5) as response:
                return json.loads(response.read())
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def new_log_lines(self) -> list[str]:
        self._log.flush()
        with self.log_path.open("rb") as f:
            f.seek(self._read)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self._read += end
        return data[:end].decode(errors="replace").splitlines()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def _wait(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise RuntimeError(f"demo: timed out after {timeout:.0f} s waiting for {what}")


def _production(status: dict[str, Any] | None) -> dict[str, str]:
    if not status:
        return {}
    return {f"{c['board_type']} {c['num_players']}p": c["production"]
            for c in status.get("configs", []) if c.get("production")}


def run(nodes: int, minutes: float, seed: int, keep: bool, out: Any = sys.stdout) -> int:
    def say(line: str) -> None:
        print(line, file=out, flush=True)

    root = Path(tempfile.mkdtemp(prefix="ringrift-demo-"))
    config = root / "demo.toml"
    sections = {name: dict(values) for name, values in DEMO.items()}
    sections["pipeline"]["seed"] = seed
    config.write_text(_toml(sections), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGRIFT_")}
    env["PYTHONUNBUFFERED"] = "1"
    # N nodes share this machine's cores: one math thread each. Thread pools sized for the
    # whole machine, N times over, spin against each other (a training step ran 10x slower).
    env.update({name: "1" for name in THREAD_VARIABLES})
    procs: list[_Node] = []
    started = time.monotonic()
    say(f"demo: {nodes} nodes on loopback for {minutes:g} min, seed {seed}, files in {root}")
    try:
        init = subprocess.run(
            [sys.executable, "-m", "node.cli", "init", "--data-dir", str(root / "n0"),
             "--host", "127.0.0.1", "--config", str(config), "--json"],
            capture_output=True, text=True, env=env, check=False, timeout=60)
        if init.returncode != 0:
            say(f"demo: init failed: {init.stderr.strip()}")
            return 1
        token = json.loads(init.stdout)["token"]
        procs.append(_Node("n0", root, config, ["start"], env))
        _wait(procs[0].status, START_TIMEOUT_S, "the first node")
        for i in range(1, nodes):
            procs.append(_Node(f"n{i}", root, config,
                               ["join", procs[0].address, "--token", token, "--voter"], env))
        for node in procs:
            _wait(node.status, START_TIMEOUT_S, f"node {node.name}")
        say(f"demo: {nodes} nodes up: " + ", ".join(n.address for n in procs))
        deadline = time.monotonic() + minutes * 60  # the loop's time, start-up aside
        last_status = 0.0
        while time.monotonic() < deadline:
            for node in procs:
                if node.proc.poll() is not None:
                    raise RuntimeError(f"node {node.name} exited with {node.proc.returncode}")
                for line in node.new_log_lines():
                    if "ringrift.pipeline" in line:
                        say(f"  {node.name} | {line.split('ringrift.pipeline: ', 1)[-1]}")
            if time.monotonic() - last_status >= STATUS_EVERY_S:
                last_status = time.monotonic()
                statuses = [n.status() for n in procs]
                games = [s["stores"]["games"]["count"] if s else "?" for s in statuses]
                leader = next((s.get("leader") for s in statuses if s and s.get("leader")), None)
                prods = {n.name: _production(s) for n, s in zip(procs, statuses, strict=True)}
                say(f"[{time.monotonic() - started:5.0f} s] games per node {games}; leader "
                    f"{(leader or 'none')[:12]}; production "
                    + "; ".join(f"{k}: " + ",".join(sorted({v[:12] for v in p.values()}))
                                for k, p in prods.items()))
            time.sleep(0.5)
        return _summary(procs, say)
    finally:
        for node in procs:
            node.stop()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _summary(procs: list[_Node], say: Any) -> int:
    statuses = [n.status() or {} for n in procs]
    say("demo summary")
    events = max((s.get("promotions", []) for s in statuses), key=len, default=[])
    for e in reversed(events):
        say(f"  promotion event: {e['board_type']} {e['num_players']}p {e['decision']} "
            f"candidate {e['candidate'][:12]} over {str(e['incumbent'])[:12]} after "
            f"{e['games_played']} games: {e['reason']}")
    if not events:
        say("  no promotion decision within the demo's time")
    for node, status in zip(procs, statuses, strict=True):
        prods = _production(status)
        held = {k: (node.data_dir / "blobs" / v).exists() for k, v in prods.items()}
        announced = {m["node_id"]: m["manifest"]["production_model"]
                     for m in status.get("members", []) if m.get("manifest")}
        mine = announced.get(status.get("node_id"))
        say(f"  {node.name}: games {status.get('stores', {}).get('games', {}).get('count')}, "
            f"production " + (", ".join(f"{k} {v[:12]} (blob {'held' if held[k] else 'missing'})"
                                        for k, v in prods.items()) or "none yet")
            + f", manifest announces {mine[:12] if mine else 'none'}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="run N nodes on loopback through the whole training loop")
    p.add_argument("--nodes", type=int, default=3, help="node processes to start (default 3)")
    p.add_argument("--minutes", type=float, default=5.0, help="how long to run (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the leader's training runs")
    p.add_argument("--keep", action="store_true", help="keep the data dirs and logs")


def cmd_demo(args: argparse.Namespace) -> int:
    if not 1 <= args.nodes <= 9 or not 0 < args.minutes <= 120:
        print("ringrift-node: demo: --nodes 1..9 and --minutes in (0, 120]", file=sys.stderr)
        return 2
    try:
        return run(args.nodes, args.minutes, args.seed, args.keep)
    except RuntimeError as exc:
        print(f"ringrift-node: {exc}", file=sys.stderr)
        return 1
