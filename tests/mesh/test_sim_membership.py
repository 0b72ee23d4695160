"""The membership core at scale in the simulator: convergence, detection, loss, partitions.

Runs are seeded; a failing assertion shows the figures including the seed, and
`python -m tools.mesh_sim --nodes N --seed S --loss P` replays the run.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mesh.sim import membership as scenario
from mesh.sim.membership import Cluster
from tools import mesh_sim

# Issue 3's goals (virtual seconds / bytes).
CONVERGE_999_S = 2.0
CONVERGE_100_S = 3.0
ONE_ROUND_S = 0.2  # with 10% loss: at most one gossip round more
# Issue 3 set 1024; issue 9 signs every message with the sender's node key, which adds the
# Ed25519 signature (64 bytes) and the public key (32) to the ping and to the ack: 1201 bytes
# measured (seed 11, 200 nodes), against 997 before.
INSYNC_ROUND_BYTES = 1024 + 2 * 96


@pytest.fixture(scope="module")
def lossless_200() -> dict:
    return scenario.run(nodes=200, seed=11, loss=0.0, changes=6)


@pytest.fixture(scope="module")
def lossy_200() -> dict:
    return scenario.run(nodes=200, seed=12, loss=0.1, changes=6)


def test_200_nodes_without_loss_meet_the_convergence_goals(lossless_200) -> None:
    r = lossless_200
    assert r["failures"] == [], r
    assert r["converge_999_s"] <= CONVERGE_999_S, r
    assert r["converge_100_s"] <= CONVERGE_100_S, r


def test_200_nodes_detect_a_crash_within_one_suspicion_timeout_and_a_probe(lossless_200) -> None:
    r = lossless_200
    # Probe wait, probe interval (0.5 s) and the gossip of the death bound the rest.
    assert r["suspicion_timeout_s"] < r["detect_dead_s"] <= r["suspicion_timeout_s"] + 3.0, r


def test_in_sync_pair_costs_under_a_kilobyte_per_round(lossless_200) -> None:
    assert 0 < lossless_200["insync_round_bytes"] <= INSYNC_ROUND_BYTES


def test_200_nodes_with_10pct_loss_converge_with_no_false_dead_marks(lossy_200) -> None:
    r = lossy_200
    assert r["failures"] == [], r
    assert r["false_dead"] == 0, r
    assert r["converge_999_s"] <= CONVERGE_999_S + ONE_ROUND_S, r
    assert r["converge_100_s"] <= CONVERGE_100_S + ONE_ROUND_S, r
    assert r["detect_dead_s"] <= r["suspicion_timeout_s"] + 3.0, r


def test_100_nodes_mark_a_crash_dead_everywhere_one_timeout_after_the_first_suspicion() -> None:
    # Detection = (wait until someone probes the crashed node: luck) + the probe interval
    # + the suspicion timeout, which every node runs out together because suspicions carry
    # their age; other probers confirm a real crash at once (Lifeguard), so it is the short
    # timeout. The luck is reported, not asserted; the rest is.
    runs = scenario.run(nodes=100, seed=21, seeds=3, loss=0.0, changes=2)
    assert runs["failures"] == [], runs
    for r in runs["runs"]:
        after_suspicion = r["detect_dead_s"] - r["first_suspect_s"]
        assert r["suspicion_timeout_s"] <= after_suspicion <= r["suspicion_timeout_s"] + 0.5, r
        assert r["first_suspect_s"] >= 0.5, r  # a probe interval at least


def test_partitioned_cluster_heals_into_one_view() -> None:
    cluster = Cluster(200, seed=31, loss=0.0)
    net = cluster.net
    cluster.start()
    net.run_until(5.0)
    assert cluster.run_until_converged() is not None
    side = set(cluster.order[:80])
    net.partition([side])
    net.run_until(net.now + 20.0)
    # Each side has given up on the other...
    a, b = cluster.order[0], cluster.order[-1]
    assert cluster.peers[a].core.alive_peers() == sorted(side - {a})
    assert len(cluster.peers[b].core.alive_peers()) == 200 - 80 - 1
    net.heal()
    # ...and after healing, refutations (gossip to the dead, reconnects) reunite them.
    healed_in = cluster.run_until_converged()
    assert healed_in is not None and healed_in <= 60.0, healed_in
    assert cluster.peers[a].core.live_count() == 200


def test_crashed_node_restarts_and_rejoins_with_a_higher_incarnation() -> None:
    cluster = Cluster(200, seed=41, loss=0.0)
    net = cluster.net
    cluster.start()
    net.run_until(5.0)
    assert cluster.run_until_converged() is not None
    victim, seed_id = cluster.order[17], cluster.order[3]
    net.crash(victim)
    net.run_until(net.now + 15.0)
    assert all(cluster.peers[n].core.member(victim).state == "dead"  # type: ignore[union-attr]
               for n in cluster.live())
    fresh = cluster.restart(victim, seed_id)
    assert cluster.run_until_converged() is not None
    assert fresh.core.incarnation >= 1
    views = {cluster.peers[n].core.member(victim).incarnation for n in cluster.live()}  # type: ignore[union-attr]
    assert views == {fresh.core.incarnation}
    assert cluster.false_dead == 0


def test_same_seed_gives_the_same_figures() -> None:
    first = scenario.run(nodes=40, seed=5, loss=0.1)
    second = scenario.run(nodes=40, seed=5, loss=0.1)
    assert first == second


def test_mesh_sim_prints_one_json_object(capsys) -> None:
    assert mesh_sim.main(["--nodes", "30", "--seed", "2", "--loss", "0.05", "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    for key in ("converge_999_s", "converge_100_s", "detect_dead_s", "false_dead",
                "bytes_per_node_s", "insync_round_bytes"):
        assert isinstance(figures[key], (int, float)), key
    assert figures["nodes"] == 30 and figures["seed"] == 2


def test_mesh_sim_names_the_seed_of_a_failing_run(capsys, monkeypatch) -> None:
    def failing(**kwargs):
        return {"seed": kwargs["seed"], "failures": ["seed 9: 2 dead marks of live nodes"]}

    monkeypatch.setattr(scenario, "run", failing)
    assert mesh_sim.main(["--seed", "9", "--json"]) == 1
    err = capsys.readouterr().err
    assert "seed 9" in err and "--seed" in err


def test_mesh_sim_refuses_a_bad_loss(capsys) -> None:
    with pytest.raises(SystemExit):
        mesh_sim.main(["--loss", "1.5"])
    assert "1.5" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("loss", [0.0, 0.1])
def test_500_nodes_over_several_seeds(loss) -> None:
    r = scenario.run(nodes=500, seed=100, seeds=3, loss=loss)
    assert r["failures"] == [], r
    assert r["converge_100_s"] <= CONVERGE_100_S + ONE_ROUND_S, r
    assert r["false_dead"] == 0, r


def test_every_message_the_cores_send_passes_the_codec_and_is_sized_exactly() -> None:
    from mesh.sim.net import strict_wire_size, wire_size

    checked = []

    def both(msg) -> int:
        exact = strict_wire_size(msg)  # raises if a field breaks its bounds
        assert wire_size(msg) == exact, msg
        checked.append(type(msg).__name__)
        return exact

    cluster = Cluster(30, seed=8, loss=0.1, sizer=both)
    cluster.start()
    cluster.net.run_until(3.0)
    cluster.change_manifest(cluster.order[4])
    cluster.net.crash(cluster.order[7])
    cluster.net.run_until(40.0)
    assert {"Ping", "Ack", "PingReq", "Gossip", "SyncRequest", "SyncReply"} <= set(checked)


@settings(deadline=None, max_examples=12)
@given(seed=st.integers(0, 10_000), loss=st.sampled_from([0.0, 0.05, 0.2]),
       crashed=st.integers(0, 2), split=st.integers(0, 4), split_s=st.floats(0.0, 40.0))
def test_any_mix_of_loss_crashes_and_partitions_ends_in_one_agreed_view(
        seed, loss, crashed, split, split_s) -> None:
    cluster = Cluster(12, seed=seed, loss=loss)
    net = cluster.net
    cluster.start()
    net.run_until(1.0)
    assert cluster.run_until_converged() is not None, seed
    for victim in cluster.order[-crashed:] if crashed else []:
        net.crash(victim)
    if split:
        net.partition([set(cluster.order[:split])])
        net.run_until(net.now + split_s)
        net.heal()
    net.run_until(net.now + 30.0)
    # Converged: every live node sees exactly the live nodes alive, the crashed ones dead.
    assert cluster.run_until_converged() is not None, seed
    live = cluster.live()
    for observer in live:
        core = cluster.peers[observer].core
        for victim in set(cluster.order) - set(live):
            view = core.member(victim)
            assert view is None or view.state == "dead", (seed, view)
