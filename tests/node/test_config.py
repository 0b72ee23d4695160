"""The config loads in three layers and stops start-up with one clear line on any bad value."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node.config import ConfigError, check_data_dir_writable, load_config


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "user.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_embedded_defaults_load_and_are_typed():
    config = load_config(env={})
    assert config.node.port == 7420
    assert config.mesh.profile == "lan"
    assert config.mesh.seeds == ()
    assert isinstance(config.mesh.sync_interval_s, float)
    assert config.node.data_dir.is_absolute()


def test_user_file_overrides_defaults_and_env_overrides_user_file(tmp_path):
    user = write(tmp_path, '[node]\nport = 8000\nlog_level = "debug"\n[mesh]\nseeds = ["a:1"]\n')
    config = load_config(user, env={"RINGRIFT_NODE_PORT": "9000"})
    assert config.node.port == 9000
    assert config.node.log_level == "debug"
    assert config.mesh.seeds == ("a:1",)


def test_env_values_are_parsed_by_the_default_type():
    config = load_config(env={
        "RINGRIFT_MESH_SEEDS": "10.0.0.1:7420, 10.0.0.2:7420",
        "RINGRIFT_MESH_ZEROCONF": "true",
        "RINGRIFT_MESH_SYNC_INTERVAL_S": "5",
    })
    assert config.mesh.seeds == ("10.0.0.1:7420", "10.0.0.2:7420")
    assert config.mesh.zeroconf is True
    assert config.mesh.sync_interval_s == 5.0


def test_ipv6_seeds_in_brackets_are_accepted():
    assert load_config(env={"RINGRIFT_MESH_SEEDS": "[::1]:7420"}).mesh.seeds == ("[::1]:7420",)


def test_command_line_overrides_win_over_environment():
    config = load_config(env={"RINGRIFT_NODE_PORT": "9000"}, overrides={"node": {"port": 9100}})
    assert config.node.port == 9100


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[node]\nprot = 1\n", "unknown key node.prot"),
        ("[nodes]\nport = 1\n", "unknown section [nodes]"),
        ('[node]\nport = "80"\n', "node.port = '80': expected an integer"),
        ("[node]\nport = 70000\n", "node.port = 70000: expected an integer in 1..65535"),
        ("[node]\nport = 0\n", "node.port = 0: expected an integer in 1..65535"),
        ("[node]\nport = true\n", "node.port = True: expected an integer"),
        ('[node]\nlog_level = "loud"\n', "node.log_level = 'loud': expected one of"),
        ('[node]\ndata_dir = ""\n', "node.data_dir = '': expected a directory path"),
        ('[node]\nadvertise_address = "nohost"\n', "node.advertise_address = 'nohost'"),
        ('[mesh]\nprofile = "moon"\n', "mesh.profile = 'moon'"),
        ('[mesh]\nseeds = "a:1"\n', "mesh.seeds = 'a:1': expected a list of strings"),
        ('[mesh]\nseeds = ["a:99999"]\n', "mesh.seeds = 'a:99999'"),
        ('[mesh]\nseeds = ["http://a:80"]\n', "mesh.seeds = 'http://a:80'"),
        ("[mesh]\nzeroconf = 1\n", "mesh.zeroconf = 1: expected true or false"),
        ('[mesh]\nsync_interval_s = "x"\n', "mesh.sync_interval_s = 'x': expected a number"),
        ("[mesh]\nsync_interval_s = 0\n", "mesh.sync_interval_s = 0.0: expected seconds"),
        ("[mesh]\nclock_window_s = 0.5\n", "mesh.clock_window_s = 0.5"),
        ("[election]\nvoters = [1]\n", "election.voters = [1]: expected a list of strings"),
        ('[election]\nvoters = ["a", "b", "c", "d", "e", "f"]\n', "expected at most 5 node ids"),
        ("[leader]\nduty_retry_s = 60\n", "leader.duty_retry_s = 60.0"),
        ("[mesh]\nremembered_peers = -1\n", "mesh.remembered_peers = -1"),
        ("[storage]\nmax_clock_offset_ms = -1\n", "storage.max_clock_offset_ms = -1"),
        ("[node\n", "not valid TOML"),
    ],
)
def test_bad_config_values_are_refused_with_key_value_and_expectation(tmp_path, text, expected):
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), env={})
    assert expected in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"RINGRIFT_NODE_PORT": "http"}, "RINGRIFT_NODE_PORT = 'http': expected an integer"),
        ({"RINGRIFT_NODE_PORTS": "1"}, "unknown key node.ports"),
        ({"RINGRIFT_BOGUS_X": "1"}, "RINGRIFT_BOGUS_X: unknown section"),
        ({"RINGRIFT_MESH_ZEROCONF": "maybe"}, "expected true or false"),
    ],
)
def test_bad_environment_values_are_refused(env, expected):
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert expected in str(info.value)


def test_missing_user_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read it"):
        load_config(tmp_path / "absent.toml", env={})


def test_unwritable_data_dir_is_refused(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    with pytest.raises(ConfigError, match="node.data_dir = .*expected a writable directory"):
        check_data_dir_writable(blocker / "data")


def test_a_sync_knob_in_the_config_file_reaches_the_sync_config_the_mesh_runs_with(tmp_path):
    from node.agent import runtime_config

    config = load_config(write(tmp_path, "[sync]\nwindow = 5\nbehind_defer_s = 7.5\n"), env={})
    runtime = runtime_config(config, join_peers=("10.0.0.9:7420",), wants_voter=False)
    # The pulls (MeshRuntime._pull) and the scheduler in the node core (NodeConfig.sync).
    assert runtime.sync.window == 5 and runtime.sync.behind_defer_s == 7.5
    assert runtime.node_config().sync == runtime.sync
    assert load_config(env={"RINGRIFT_SYNC_MERGES_IN_FLIGHT": "3"}).sync.merges_in_flight == 3


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[sync]\nwindow = 0\n", "sync.window = 0: expected a number in 1..32"),
        ("[sync]\nwindow = 1000\n", "sync.window = 1000: expected a number in 1..32"),
        ('[sync]\nwindow = "3"\n', "sync.window = '3': expected an integer"),
        ("[sync]\nbuffer_mib = 0\n", "sync.buffer_mib = 0"),
        ("[sync]\nrequest_timeout_s = 0\n", "sync.request_timeout_s = 0.0"),
        ("[sync]\nbackoff_base_s = 90\n", "sync.backoff_base_s = 90.0: expected at most"),
        ("[sync]\nwidnow = 3\n", "unknown key sync.widnow"),
        ("[replay]\nnice = 20\n", "replay.nice = 20: expected 0..19"),
        ("[replay]\nbatch = 0\n", "replay.batch = 0"),
        ("[replay]\nrestart_max_s = 0.5\n", "replay.restart_max_s = 0.5"),
    ],
)
def test_bad_sync_and_replay_values_stop_start_up_naming_the_key(tmp_path, text, expected):
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(write(tmp_path, text), env={})


def test_the_sync_core_built_without_arguments_runs_with_node_toml_defaults():
    from mesh.sync import SyncConfig

    assert SyncConfig() == load_config(env={}).sync
