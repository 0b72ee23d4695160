"""The node's configuration: one typed object, loaded from three layers.

The defaults, each with the reason for it, live in the embedded `config/node.toml`; this module only
says what type every key has and checks the values. Layers, later wins: embedded defaults, the
user's `--config` file, `RINGRIFT_<SECTION>_<KEY>` environment variables. Any bad value stops
start-up with a `ConfigError` naming the key, the value and what was expected.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesh.defaults import default_toml
from engine.boards import BOARD_TYPES
from engine.promotion import PromotionCriteria
from mesh.manifest import is_address
from mesh.manifest import MAX_VOTERS
from mesh.sync import SyncConfig

ENV_PREFIX = "RINGRIFT_"
PROFILES = ("lan", "wan")
LOG_LEVELS = ("debug", "info", "warning", "error")
# RINGRIFT_ names that are not configuration keys: the join token (a secret, read by `join`
# and never written into the config or the running agent's arguments).
JOIN_TOKEN_ENV = "RINGRIFT_JOIN_TOKEN"
NOT_CONFIG_ENV = frozenset({JOIN_TOKEN_ENV})


class ConfigError(ValueError):
    """A configuration value is unusable; the message is one line for the operator."""


@dataclass(frozen=True, slots=True)
class NodeSection:
    host: str
    port: int
    data_dir: Path
    advertise_address: str
    log_level: str
    max_connections: int
    idle_timeout_s: float


@dataclass(frozen=True, slots=True)
class MeshSection:
    profile: str
    seeds: tuple[str, ...]
    zeroconf: bool
    sync_interval_s: float
    clock_window_s: float
    lease_announce_s: float
    remembered_peers: int
    stores_refresh_s: float
    body_timeout_s: float
    bodies_in_flight_mib: int


@dataclass(frozen=True, slots=True)
class ReplaySection:
    """How the replay checker runs (node.replay_check)."""

    batch: int
    idle_s: float
    nice: int
    restart_s: float
    restart_max_s: float


@dataclass(frozen=True, slots=True)
class ElectionSection:
    voters: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeaderSection:
    duty_retry_s: float
    duty_retry_max_s: float


@dataclass(frozen=True, slots=True)
class StorageSection:
    max_clock_offset_ms: int
    max_model_mib: int
    max_db_mib: int
    disk_retry_s: float


@dataclass(frozen=True, slots=True)
class MonitoringSection:
    drift_check_interval_s: float
    drift_max_elo: float
    drift_avg_elo: float
    drift_history: int
    max_remote_hosts: int
    model_history: int


@dataclass(frozen=True, slots=True)
class PipelineSection:
    configs: tuple[str, ...]
    training_game_threshold: int
    training_window_games: int
    training_steps: int
    training_batch_size: int
    training_processes: int
    interval_s: float
    watch_games: int
    max_game_moves: int
    seed: int
    assignment_timeout_s: float


@dataclass(frozen=True, slots=True)
class PromotionSection:
    min_elo_improvement: float
    min_games_played: int
    min_win_rate: float
    max_value_mse_degradation: float
    confidence_threshold: float
    tier_games_required: int
    random_gate: float
    heuristic_gate: float
    sprt_elo0: float
    sprt_elo1: float
    sprt_beta: float
    sprt_min_games: int
    sprt_max_games: int


@dataclass(frozen=True, slots=True)
class SelfplaySection:
    enabled: bool
    board_type: str
    num_players: int
    algorithm: str
    simulations: int
    considered: int
    concurrency: int
    torch_threads: int
    model_check_s: float
    guard_interval_s: float
    restart_backoff_s: float
    restart_backoff_max_s: float


@dataclass(frozen=True, slots=True)
class ResourcesSection:
    disk_warn: float
    disk_stop: float
    ram_warn: float
    ram_stop: float
    gpu_warn: float
    gpu_stop: float


@dataclass(frozen=True, slots=True)
class Config:
    node: NodeSection
    mesh: MeshSection
    # The sync core's own config object: its fields are the [sync] keys, its bounds its own.
    sync: SyncConfig
    replay: ReplaySection
    election: ElectionSection
    leader: LeaderSection
    storage: StorageSection
    monitoring: MonitoringSection
    pipeline: PipelineSection
    promotion: PromotionSection
    selfplay: SelfplaySection
    resources: ResourcesSection


_SECTIONS: dict[str, type] = {
    "node": NodeSection,
    "mesh": MeshSection,
    "sync": SyncConfig,
    "replay": ReplaySection,
    "election": ElectionSection,
    "leader": LeaderSection,
    "storage": StorageSection,
    "monitoring": MonitoringSection,
    "pipeline": PipelineSection,
    "promotion": PromotionSection,
    "selfplay": SelfplaySection,
    "resources": ResourcesSection,
}


def load_config(
    user_file: Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Config:
    """Merge defaults, the user file, the environment and CLI `overrides`, then validate.

    `overrides` (from command-line flags like --port) win over everything else.
    """
    merged: dict[str, dict[str, Any]] = {k: dict(v) for k, v in tomllib.loads(default_toml()).items()}
    if user_file is not None:
        _merge_layer(merged, _read_user_file(user_file), source=str(user_file))
    _merge_layer(merged, _env_layer(merged, os.environ if env is None else env), source="environment")
    if overrides:
        _merge_layer(merged, overrides, source="command line")
    return _build(merged)


def _read_user_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"config file {path}: cannot read it ({exc.strerror})") from exc
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: not valid TOML ({exc})") from exc


def _merge_layer(
    merged: dict[str, dict[str, Any]], layer: Mapping[str, Any], source: str
) -> None:
    for section, values in layer.items():
        if section not in merged:
            raise ConfigError(
                f"{source}: unknown section [{section}]; expected one of {sorted(merged)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: {section} = {values!r}: expected a table of keys")
        for key, value in values.items():
            if key not in merged[section]:
                raise ConfigError(
                    f"{source}: unknown key {section}.{key}; "
                    f"expected one of {sorted(merged[section])}"
                )
            merged[section][key] = value


def _env_layer(defaults: Mapping[str, Mapping[str, Any]], env: Mapping[str, str]) -> dict:
    """Turn RINGRIFT_SECTION_KEY=text into typed values, judged by the default's type."""
    layer: dict[str, dict[str, Any]] = {}
    for name, text in env.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX):].lower()
        section = next((s for s in defaults if rest.startswith(s + "_")), None)
        if section is None:
            raise ConfigError(
                f"environment: {name}: unknown section; expected RINGRIFT_<SECTION>_<KEY> "
                f"with SECTION one of {sorted(s.upper() for s in defaults)}"
            )
        key = rest[len(section) + 1:]
        if key not in defaults[section]:
            raise ConfigError(
                f"environment: {name}: unknown key {section}.{key}; "
                f"expected one of {sorted(defaults[section])}"
            )
        layer.setdefault(section, {})[key] = _parse_env_value(
            name, text, defaults[section][key]
        )
    return layer


def _parse_env_value(name: str, text: str, default: Any) -> Any:
    if isinstance(default, bool):
        lowered = text.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"environment: {name} = {text!r}: expected true or false")
    if isinstance(default, int):
        try:
            return int(text)
        except ValueError:
            raise ConfigError(f"environment: {name} = {text!r}: expected an integer") from None
    if isinstance(default, float):
        try:
            return float(text)
        except ValueError:
            raise ConfigError(f"environment: {name} = {text!r}: expected a number") from None
    if isinstance(default, list):
        return [item.strip() for item in text.split(",") if item.strip()]
    return text


def _build(merged: Mapping[str, Mapping[str, Any]]) -> Config:
    sections = {}
    for name, cls in _SECTIONS.items():
        values = merged[name]
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if set(values) != set(fields):  # node.toml and the section's fields name the same keys
            raise AssertionError(f"[{name}] keys {sorted(set(values) ^ set(fields))} are in one "
                                 "of config/node.toml and its section class, not both")
        kwargs = {key: _typed(f"{name}.{key}", values[key], fields[key].type) for key in fields}
        try:
            sections[name] = cls(**kwargs)
        except ValueError as exc:  # a section that checks its own bounds (SyncConfig)
            raise ConfigError(f"{name}.{exc}") from None
    config = Config(**sections)
    _validate(config)
    return config


def _typed(key: str, value: Any, annotation: str) -> Any:
    """Check `value` against the field annotation (a string: `from __future__ import annotations`)."""
    if annotation == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{key} = {value!r}: expected true or false")
        return value
    if annotation == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key} = {value!r}: expected an integer")
        return value
    if annotation == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} = {value!r}: expected a number")
        return float(value)
    if annotation == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{key} = {value!r}: expected a string")
        return value
    if annotation == "Path":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key} = {value!r}: expected a directory path")
        return Path(value).expanduser()
    if annotation == "tuple[str, ...]":
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"{key} = {value!r}: expected a list of strings")
        return tuple(value)
    raise AssertionError(f"no checker for annotation {annotation!r} of {key}")


def _validate(config: Config) -> None:
    node, mesh = config.node, config.mesh
    if not 1 <= node.port <= 65535:
        raise ConfigError(f"node.port = {node.port}: expected an integer in 1..65535")
    if node.log_level not in LOG_LEVELS:
        raise ConfigError(f"node.log_level = {node.log_level!r}: expected one of {LOG_LEVELS}")
    if node.advertise_address:
        check_address(node.advertise_address, key="node.advertise_address")
    if mesh.profile not in PROFILES:
        raise ConfigError(f"mesh.profile = {mesh.profile!r}: expected one of {PROFILES}")
    for seed in mesh.seeds:
        check_address(seed, key="mesh.seeds")
    if not 0.1 <= mesh.sync_interval_s <= 3600:
        raise ConfigError(
            f"mesh.sync_interval_s = {mesh.sync_interval_s}: expected seconds in 0.1..3600"
        )
    if not 1 <= mesh.clock_window_s <= 3600:
        raise ConfigError(
            f"mesh.clock_window_s = {mesh.clock_window_s}: expected seconds in 1..3600"
        )
    for key in ("lease_announce_s", "stores_refresh_s"):
        value = getattr(mesh, key)
        if not 0.1 <= value <= 3600:
            raise ConfigError(f"mesh.{key} = {value}: expected seconds in 0.1..3600")
    if not 0 <= mesh.remembered_peers <= 1024:
        raise ConfigError(
            f"mesh.remembered_peers = {mesh.remembered_peers}: expected an integer in 0..1024"
        )
    if not 0 < config.storage.max_clock_offset_ms <= 86_400_000:
        raise ConfigError(
            f"storage.max_clock_offset_ms = {config.storage.max_clock_offset_ms}: "
            "expected milliseconds in 1..86400000"
        )
    _check_limits(config)
    _validate_replay(config.replay)
    _validate_monitoring(config.monitoring)
    _validate_pipeline(config.pipeline, config.promotion)
    _validate_selfplay(config.selfplay, config.resources)
    leader = config.leader
    if not 0.01 <= leader.duty_retry_s <= leader.duty_retry_max_s <= 3600:
        raise ConfigError(
            f"leader.duty_retry_s = {leader.duty_retry_s}, leader.duty_retry_max_s = "
            f"{leader.duty_retry_max_s}: expected 0.01 <= duty_retry_s <= duty_retry_max_s "
            "<= 3600 seconds"
        )
    if len(config.election.voters) > MAX_VOTERS:
        raise ConfigError(
            f"election.voters = {list(config.election.voters)}: expected at most {MAX_VOTERS} "
            "node ids"
        )


def _check_limits(config: Config) -> None:
    node, mesh, storage = config.node, config.mesh, config.storage
    for key, value, lo, hi in (
        ("node.max_connections", node.max_connections, 8, 1_000_000),
        ("node.idle_timeout_s", node.idle_timeout_s, 1, 3600),
        ("mesh.body_timeout_s", mesh.body_timeout_s, 1, 3600),
        ("mesh.bodies_in_flight_mib", mesh.bodies_in_flight_mib, 8, 65536),
        ("storage.max_model_mib", storage.max_model_mib, 1, 4096),
        ("storage.max_db_mib", storage.max_db_mib, 0, 1 << 30),
        ("storage.disk_retry_s", storage.disk_retry_s, 0.1, 3600),
    ):
        if not lo <= value <= hi:
            raise ConfigError(f"{key} = {value}: expected a number in {lo}..{hi}")


def _validate_replay(replay: ReplaySection) -> None:
    for key, lo, hi in (("batch", 1, 1024), ("idle_s", 0.05, 3600), ("nice", 0, 19),
                        ("restart_s", 0.01, 3600)):
        if not lo <= getattr(replay, key) <= hi:
            raise ConfigError(f"replay.{key} = {getattr(replay, key)}: expected {lo}..{hi}")
    if not replay.restart_s <= replay.restart_max_s <= 86_400:
        raise ConfigError(f"replay.restart_max_s = {replay.restart_max_s}: expected seconds "
                          "from restart_s up to 86400")


SELFPLAY_BOARDS = ("square8", "square19", "hex8", "hexagonal")
SELFPLAY_ALGORITHMS = ("gumbel", "puct", "policy")


def _validate_selfplay(sp: SelfplaySection, res: ResourcesSection) -> None:
    if sp.board_type not in SELFPLAY_BOARDS:
        raise ConfigError(f"selfplay.board_type = {sp.board_type!r}: expected one of "
                          f"{SELFPLAY_BOARDS}")
    if not 2 <= sp.num_players <= 4:
        raise ConfigError(f"selfplay.num_players = {sp.num_players}: expected 2..4")
    if sp.algorithm not in SELFPLAY_ALGORITHMS:
        raise ConfigError(f"selfplay.algorithm = {sp.algorithm!r}: expected one of "
                          f"{SELFPLAY_ALGORITHMS}")
    for key, lo, hi in (("simulations", 1, 100_000), ("considered", 1, 1024),
                        ("concurrency", 1, 4096), ("torch_threads", 0, 1024)):
        if not lo <= getattr(sp, key) <= hi:
            raise ConfigError(f"selfplay.{key} = {getattr(sp, key)}: expected {lo}..{hi}")
    for key in ("model_check_s", "guard_interval_s", "restart_backoff_s"):
        if not 0.01 <= getattr(sp, key) <= 3600:
            raise ConfigError(f"selfplay.{key} = {getattr(sp, key)}: expected seconds in "
                              "0.01..3600")
    if not sp.restart_backoff_s <= sp.restart_backoff_max_s <= 86_400:
        raise ConfigError(f"selfplay.restart_backoff_max_s = {sp.restart_backoff_max_s}: "
                          "expected seconds from restart_backoff_s up to 86400")
    for name in ("disk", "ram", "gpu"):
        warn, stop = getattr(res, f"{name}_warn"), getattr(res, f"{name}_stop")
        if not 0 < warn <= stop <= 1:
            raise ConfigError(f"resources.{name}_warn = {warn} / {name}_stop = {stop}: "
                              "expected fractions with 0 < warn <= stop <= 1")


def _validate_monitoring(mon: MonitoringSection) -> None:
    if not 1 <= mon.drift_check_interval_s <= 86_400:
        raise ConfigError(f"monitoring.drift_check_interval_s = {mon.drift_check_interval_s}: "
                          "expected seconds in 1..86400")
    for key in ("drift_max_elo", "drift_avg_elo"):
        if not 0 < getattr(mon, key) <= 10_000:
            raise ConfigError(f"monitoring.{key} = {getattr(mon, key)}: expected Elo in (0, 10000]")
    for key, most in (("drift_history", 10_000), ("max_remote_hosts", 1000),
                      ("model_history", 100)):
        if not 1 <= getattr(mon, key) <= most:
            raise ConfigError(f"monitoring.{key} = {getattr(mon, key)}: expected 1..{most}")


def _validate_pipeline(pipe: PipelineSection, promotion: PromotionSection) -> None:
    for text in pipe.configs:
        board, _, players = text.partition(":")
        if board not in BOARD_TYPES or players not in ("2", "3", "4"):
            raise ConfigError(f"pipeline.configs: {text!r}: expected board:players with board "
                              f"one of {sorted(BOARD_TYPES)} and players 2..4")
    for key, most in (("training_game_threshold", 10_000_000), ("training_window_games",
                      10_000_000), ("training_steps", 10_000_000), ("training_batch_size", 65_536),
                      ("watch_games", 1_000_000), ("max_game_moves", 100_000)):
        if not 1 <= getattr(pipe, key) <= most:
            raise ConfigError(f"pipeline.{key} = {getattr(pipe, key)}: expected 1..{most}")
    if not 1 <= pipe.assignment_timeout_s <= 86_400:
        raise ConfigError(f"pipeline.assignment_timeout_s = {pipe.assignment_timeout_s}: "
                          "expected seconds in 1..86400")
    if not 0 <= pipe.training_processes <= 64:
        raise ConfigError(f"pipeline.training_processes = {pipe.training_processes}: "
                          "expected 0..64")
    if not 0 <= pipe.seed < 2**31:
        raise ConfigError(f"pipeline.seed = {pipe.seed}: expected 0..{2**31 - 1}")
    if not 0.05 <= pipe.interval_s <= 3600:
        raise ConfigError(f"pipeline.interval_s = {pipe.interval_s}: expected seconds in "
                          "0.05..3600")
    try:
        PromotionCriteria(**dataclasses.asdict(promotion))
    except ValueError as exc:
        raise ConfigError(f"promotion: {exc}") from None


def check_address(text: str, key: str = "address") -> str:
    """`text` if it is a peer address by the mesh's one rule (`mesh.manifest.is_address`), so a
    seed the config accepts is one the transport will dial; else a ConfigError naming `key`."""
    if not is_address(text):
        raise ConfigError(
            f"{key} = {text!r}: expected host:port (IPv6 as [addr]:port) with a port in 1..65535"
        )
    return text


def check_data_dir_writable(path: Path) -> None:
    """Create `path` if needed and prove we can write there, or raise ConfigError."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = path / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"node.data_dir = {str(path)!r}: expected a writable directory ({exc.strerror})"
        ) from exc
