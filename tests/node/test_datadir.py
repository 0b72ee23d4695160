"""The data dir: identity and credentials survive restarts; newer formats are refused."""

from __future__ import annotations

import json

import pytest

from node.datadir import (
    FORMAT_VERSION,
    ClusterCredentials,
    DataDirError,
    credentials_from_token,
    init_data_dir,
    join_token,
    open_data_dir,
)


def test_init_then_open_gives_the_same_identity_and_cluster(tmp_path):
    made = init_data_dir(tmp_path / "d")
    opened = open_data_dir(tmp_path / "d")
    assert opened.node_id == made.node_id
    assert opened.cluster == made.cluster
    assert opened.founder is True
    assert opened.wants_voter is True


def test_join_token_round_trips_the_cluster_credentials(tmp_path):
    files = init_data_dir(tmp_path / "d")
    creds, address = credentials_from_token(join_token(files, "10.1.2.3:7420"))
    assert creds.cluster_id == files.cluster.cluster_id
    assert creds.secrets[0] == files.cluster.secrets[0]
    assert address == "10.1.2.3:7420"


def test_init_with_given_cluster_joins_that_cluster_with_a_new_identity(tmp_path):
    first = init_data_dir(tmp_path / "a")
    second = init_data_dir(tmp_path / "b", cluster=first.cluster, join_peers=("h:1",))
    assert second.cluster.cluster_id == first.cluster.cluster_id
    assert second.node_id != first.node_id
    reopened = open_data_dir(tmp_path / "b")
    assert (reopened.founder, reopened.wants_voter, reopened.join_peers) == (False, False, ("h:1",))


def test_a_data_dir_from_a_newer_format_is_refused(tmp_path):
    init_data_dir(tmp_path / "d")
    meta_path = tmp_path / "d" / "node.json"
    meta = json.loads(meta_path.read_text())
    meta["format"] = FORMAT_VERSION + 1
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataDirError, match="newer than this ringrift-node supports"):
        open_data_dir(tmp_path / "d")


def test_a_node_json_that_does_not_match_the_key_is_refused(tmp_path):
    init_data_dir(tmp_path / "d")
    meta_path = tmp_path / "d" / "node.json"
    meta = json.loads(meta_path.read_text())
    meta["node_id"] = "0" * 32
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(DataDirError, match="does not match the key"):
        open_data_dir(tmp_path / "d")


def test_missing_or_corrupt_credentials_are_reported(tmp_path):
    init_data_dir(tmp_path / "d")
    (tmp_path / "d" / "cluster.key").write_text("{not json")
    with pytest.raises(DataDirError, match="cluster.key: unreadable"):
        open_data_dir(tmp_path / "d")
    (tmp_path / "d" / "cluster.key").unlink()
    with pytest.raises(DataDirError, match="missing"):
        open_data_dir(tmp_path / "d")


def test_credentials_compare_by_value():
    assert ClusterCredentials("c", (b"k",)) == ClusterCredentials("c", (b"k",))
