"""`ringrift-node`: the command line.

    ringrift-node init  --data-dir D [--json]
    ringrift-node start --data-dir D [--host H] [--port P] [--config F]
    ringrift-node join  HOST:PORT --token-file F --data-dir D [--port P] [--voter]
                        (or --token T, or the token in RINGRIFT_JOIN_TOKEN)
    ringrift-node status [--peer HOST:PORT] [--json]
    ringrift-node leave --data-dir D
    ringrift-node keys {list,generate,install,use,remove} [SECRET] --data-dir D
    ringrift-node demo [--nodes 3] [--minutes 5] [--seed S] [--keep]
    ringrift-node import FILE... [--data-dir D] [--dry-run] [--json] [--conflicts S]

Exit status: 0 success, 1 runtime failure, 2 bad configuration or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from node.address import advertise_address
from node.config import (
    JOIN_TOKEN_ENV,
    Config,
    ConfigError,
    check_address,
    check_data_dir_writable,
    load_config,
)
from node.datadir import (
    PID_FILE,
    DataDirError,
    NodeFiles,
    init_data_dir,
    is_initialised,
    join_token,
    open_data_dir,
    read_cluster,
)
from node.demo import add_parser as add_demo_parser
from node.demo import cmd_demo
from node.importer import command as import_command
from node import selfplay_command
from node.keys import change_keys, fingerprint, generate_secret, signal_running_node
from node.status_text import format_status

log = logging.getLogger("ringrift.cli")

EXIT_FAILURE = 1
EXIT_USAGE = 2


class CliError(RuntimeError):
    """A failure the operator must see as one line; `code` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringrift-node", description="Peer-to-peer agent of a RingRift AI-training cluster."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="data directory (default: node.data_dir)")
        p.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
        p.add_argument("--host", help="listen address (default: node.host)")
        p.add_argument("--port", type=int, help="listen port (default: node.port)")

    p_init = sub.add_parser("init", help="create a data dir, a node identity and a new cluster")
    common(p_init)
    p_init.add_argument("--json", action="store_true", help="print node_id, cluster_id, token as JSON")

    p_start = sub.add_parser("start", help="run the node (initialising the data dir if missing)")
    common(p_start)

    p_join = sub.add_parser("join", help="join the cluster of a peer and run the node")
    common(p_join)
    p_join.add_argument("peer", help="HOST:PORT of any node of the cluster")
    token = p_join.add_mutually_exclusive_group()
    token.add_argument("--token", help="join token printed by `init` (other local users can "
                       "read a command line while join runs: prefer --token-file or "
                       f"{JOIN_TOKEN_ENV})")
    token.add_argument("--token-file", type=Path, help="file holding the join token")
    p_join.add_argument("--voter", action="store_true", help="ask to become a leader voter")

    p_status = sub.add_parser("status", help="show a node's status")
    p_status.add_argument("--peer", help="HOST:PORT (default: this machine's configured port)")
    p_status.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
    p_status.add_argument("--json", action="store_true", help="print the raw JSON")

    p_keys = sub.add_parser("keys", help="list, generate, install, use or remove cluster keys")
    p_keys.add_argument("action", choices=("list", "generate", "install", "use", "remove"))
    p_keys.add_argument("secret", nargs="?", help="the secret as hex (install, use, remove)")
    p_keys.add_argument("--data-dir", type=Path, help="data directory (default: node.data_dir)")
    p_keys.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")

    import_command.add_parser(sub)
    selfplay_command.add_parser(sub)

    p_leave = sub.add_parser("leave", help="stop the local node gracefully (hands off leadership)")
    p_leave.add_argument("--data-dir", type=Path, help="data directory of the running node")
    p_leave.add_argument("--config", type=Path, help="TOML file overriding the embedded defaults")
    p_leave.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for exit")
    add_demo_parser(sub)
    return parser


def load(args: argparse.Namespace) -> Config:
    """The config with the flags this subcommand has (--data-dir, --host, --port) on top."""
    node: dict[str, Any] = {}
    for flag, key in (("data_dir", "data_dir"), ("host", "host"), ("port", "port")):
        value = getattr(args, flag, None)
        if value is not None:
            node[key] = str(value) if flag == "data_dir" else value
    return load_config(args.config, overrides={"node": node} if node else None)


def cmd_init(args: argparse.Namespace) -> int:
    config = load(args)
    check_data_dir_writable(config.node.data_dir)
    files = init_data_dir(config.node.data_dir)
    token = join_token(files, advertise_address(config, config.node.port))
    if args.json:
        print(json.dumps({
            "node_id": files.node_id, "cluster_id": files.cluster.cluster_id, "token": token,
        }))
    else:
        print(f"initialised node {files.node_id} of new cluster {files.cluster.cluster_id}")
        print(f"data dir: {files.path}")
        print("join other machines with: ringrift-node join <this-host:port> --token <token>")
        print(token)
    return 0


def open_or_init(config: Config) -> NodeFiles:
    check_data_dir_writable(config.node.data_dir)
    if not is_initialised(config.node.data_dir):
        files = init_data_dir(config.node.data_dir)
        log.info("initialised new node %s in %s", files.node_id, files.path)
        return files
    return open_data_dir(config.node.data_dir)


def run_agent(config: Config, files: NodeFiles) -> int:
    from node.agent import Agent

    agent = Agent(config, files)
    asyncio.run(agent.run())
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    config = load(args)
    _setup_logging(config)
    return run_agent(config, open_or_init(config))


def cmd_join(args: argparse.Namespace) -> int:
    config = load(args)
    _setup_logging(config)
    check_address(args.peer, key="peer")
    from node.join import JoinError, join_cluster

    try:
        join_cluster(config, args.peer, join_token_text(args), voter=args.voter)
    except JoinError as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None
    # The running agent must not keep the token (it holds the cluster secret) in its command
    # line or environment, which other users or tools read from /proc: the same process goes
    # on as `start` on the data dir join just set up.
    argv = [sys.executable, "-m", "node.cli", "start", "--data-dir", str(config.node.data_dir)]
    for flag, value in (("--config", args.config), ("--host", args.host), ("--port", args.port)):
        if value is not None:
            argv += [flag, str(value)]
    env = {k: v for k, v in os.environ.items() if k != JOIN_TOKEN_ENV}
    logging.shutdown()
    os.execve(sys.executable, argv, env)


def join_token_text(args: argparse.Namespace) -> str:
    """The join token from --token, --token-file or RINGRIFT_JOIN_TOKEN (in that order)."""
    if args.token:
        return args.token
    if args.token_file is not None:
        try:
            return args.token_file.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise CliError(f"--token-file {args.token_file}: cannot read it ({exc})",
                           code=EXIT_USAGE) from None
    token = os.environ.get(JOIN_TOKEN_ENV, "").strip()
    if not token:
        raise CliError(f"join needs a token: --token-file FILE, {JOIN_TOKEN_ENV}, or --token",
                       code=EXIT_USAGE)
    return token


def cmd_status(args: argparse.Namespace) -> int:
    if args.peer:
        peer = check_address(args.peer, key="--peer")
    else:
        peer = f"127.0.0.1:{load_config(args.config).node.port}"
    url = f"http://{peer}/api/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise CliError(f"cannot read {url}: {getattr(exc, 'reason', exc)}") from exc
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=True))
    else:
        print(format_status(status))
    return 0


def cmd_leave(args: argparse.Namespace) -> int:
    """SIGTERM the local agent: its shutdown hands off leadership and announces leave."""
    config = load(args)
    pid_file = config.node.data_dir / PID_FILE
    try:
        pid = int(pid_file.read_text(encoding="ascii").strip())
    except (OSError, ValueError) as exc:
        raise CliError(f"no running node found in {config.node.data_dir} ({pid_file}: {exc})") from exc
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        raise CliError(f"node process {pid} from {pid_file} is not running") from None
    deadline = time.monotonic() + args.timeout
    # The agent removes its pid file as the last step of an orderly shutdown.
    while time.monotonic() < deadline:
        if not pid_file.exists():
            print(f"node {pid} left")
            return 0
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            raise CliError(f"node {pid} exited without an orderly shutdown") from None
        time.sleep(0.1)
    raise CliError(f"node {pid} still running after {args.timeout} s")


def cmd_import(args: argparse.Namespace) -> int:
    try:
        return import_command.run(args, load(args))
    except import_command.ImportRefused as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None


def cmd_selfplay(args: argparse.Namespace) -> int:
    try:
        return selfplay_command.run(args, load(args))
    except selfplay_command.SelfplayRefused as exc:
        raise CliError(str(exc), code=EXIT_USAGE) from None


def cmd_keys(args: argparse.Namespace) -> int:
    if args.action == "generate":
        print(generate_secret())
        return 0
    data_dir = load(args).node.data_dir
    if args.action == "list":
        cluster = read_cluster(data_dir)
    else:
        if not args.secret:
            raise CliError(f"keys {args.action} needs the secret (hex)", code=EXIT_USAGE)
        cluster = change_keys(data_dir, args.action, args.secret)
        pid = signal_running_node(data_dir)
        print(f"{args.action}: done" + (f"; node {pid} reloads its keys" if pid else ""))
    for i, secret in enumerate(cluster.secrets):
        print(f"{fingerprint(secret)}  {'primary' if i == 0 else 'accepted'}")
    return 0


COMMANDS = {
    "init": cmd_init, "start": cmd_start, "join": cmd_join, "status": cmd_status,
    "leave": cmd_leave, "keys": cmd_keys, "demo": cmd_demo, "import": cmd_import,
    "selfplay": cmd_selfplay,
}


def _setup_logging(config: Config) -> None:
    logging.basicConfig(
        level=config.node.log_level.upper(),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"ringrift-node: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except DataDirError as exc:
        print(f"ringrift-node: data dir error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CliError as exc:
        print(f"ringrift-node: {exc}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
