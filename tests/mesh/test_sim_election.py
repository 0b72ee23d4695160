"""The election scenario: safety over many seeds, failover times, stability, replayability.

Times asserted here are virtual (simulated) seconds, the protocol's behaviour, not the speed
of the machine running the test.
"""

from __future__ import annotations

import pytest

from mesh.election import ElectionConfig, Role
from mesh.sim import election as scenario
from mesh.sim.election import Clock, Cluster, SafetyMonitor


def test_a_sweep_of_seeds_with_loss_partitions_crashes_and_restarts_stays_safe() -> None:
    summary = scenario.run(seed=0, seeds=150, loss=0.1, stable=False, wan=False)
    assert summary["safety_violations"] == 0, summary["first_violation"]
    assert summary["failed_failovers"] == 0
    # The chaos really exercised elections (leaders were crashed, cut off, transferred).
    assert summary["elections"] > 5 * 150


def test_a_lossless_sweep_is_safe_too() -> None:
    summary = scenario.run(seed=1000, seeds=50, loss=0.0, stable=False, wan=False)
    assert summary["safety_violations"] == 0, summary["first_violation"]


def test_failover_on_lan_defaults_gives_a_new_lease_within_3_s() -> None:
    summary = scenario.run(seed=0, seeds=60, loss=0.1, stable=False, wan=False,
                           chaos_duration=0.0)
    assert summary["failover_samples"] == 120
    assert summary["failover_max_s"] <= scenario.LAN_FAILOVER_TARGET_S
    # Not instant either: the old lease and the voters' promises must run out first.
    assert summary["failover_p50_s"] >= ElectionConfig.lan().election_timeout_min


def test_failover_on_wan_defaults_gives_a_new_lease_within_15_s() -> None:
    times: list[float] = []
    for seed in range(40):
        got, failed, cluster = scenario.failover_run(
            seed, 3 if seed % 2 else 5, 1, 0.1, ElectionConfig.wan(), scenario.WAN_DELAY)
        assert failed == 0 and cluster.monitor.violations == []
        times += got
    assert len(times) == 80
    assert max(times) <= scenario.WAN_FAILOVER_TARGET_S


def test_ten_simulated_minutes_at_10_percent_loss_have_no_leader_change_on_lan_or_wan() -> None:
    for seed, voters, wan in ((0, 5, False), (1, 3, False), (2, 5, True)):
        report = scenario.stable_run(seed, voters, 2, loss=0.1, duration=600.0, wan=wan)
        assert report["violations"] == []
        assert report["leader_changes"] == 0
        assert report["leader"] is not None
        # Non-voters learned the leader by (emulated) gossip.
        assert report["non_voters_knowing_leader"] == report["non_voters"] == 2


def test_a_leader_cut_off_with_a_minority_loses_its_lease_and_the_majority_elects() -> None:
    cluster = Cluster(3, 5, 0, ElectionConfig.lan(), 0.0, scenario.LAN_DELAY)
    net = cluster.net
    net.run_until(5.0)
    old = cluster.leader_with_lease()
    assert old is not None
    buddy = next(v for v in sorted(cluster.voter_ids) if v != old)
    cluster.partition([{old, buddy}])
    net.run_until(25.0)
    new = cluster.leader_with_lease()
    assert new is not None and new not in (old, buddy)
    assert cluster.hosts[old].core.role is not Role.LEADER  # check-quorum stepped it down
    assert cluster.hosts[buddy].core.term < cluster.hosts[new].core.term
    cluster.heal()
    net.run_until(30.0)
    assert cluster.leader_with_lease() == new
    assert cluster.hosts[old].core.leader == new
    assert cluster.monitor.violations == []


def _cut_off_a_slow_leader(seed: int, drift: float) -> list[str]:
    """Leader clock slow by `drift`, follower clocks fast by it; isolate the leader."""
    cluster = Cluster(seed, 3, 0, ElectionConfig.lan(), 0.0, scenario.LAN_DELAY)
    for node_id in ("v1", "v2"):
        cluster.hosts[node_id].clock = Clock(1 + drift, 0.0)
    cluster.hosts["v0"].clock = Clock(1 - drift, 0.0)
    # v0 tends to win first when its timer fires first; a slow clock makes that less
    # likely, so elect whoever wins and re-clock that one.
    cluster.net.run_until(5.0)
    leader = cluster.leader_with_lease()
    assert leader is not None
    for node_id in cluster.ids:
        rate = 1 - drift if node_id == leader else 1 + drift
        old = cluster.hosts[node_id].clock
        # Keep local time continuous at the switch, as a clock that changes rate would.
        now = cluster.net.now
        cluster.hosts[node_id].clock = Clock(rate, old.local(now) - rate * now)
    cluster.net.run_until(10.0)
    cluster.partition([{leader}])
    cluster.net.run_until(20.0)
    return cluster.monitor.violations


def test_clock_drift_beyond_the_configured_bound_is_caught_as_overlapping_leases() -> None:
    # The monitor is not vacuous: with clocks 20x past the bound, leases overlap.
    caught = [seed for seed in range(10) if _cut_off_a_slow_leader(seed, 0.2)]
    assert caught
    assert "two valid leases" in _cut_off_a_slow_leader(caught[0], 0.2)[0]
    # At the bound the same cut never overlaps.
    d = ElectionConfig.lan().max_clock_drift
    assert all(_cut_off_a_slow_leader(seed, d) == [] for seed in range(10))


def test_the_same_seed_replays_the_same_run() -> None:
    first = scenario.run(seed=17, seeds=3, loss=0.1, stable=False)
    again = scenario.run(seed=17, seeds=3, loss=0.1, stable=False)
    assert first == again
    other = scenario.run(seed=18, seeds=3, loss=0.1, stable=False)
    assert other != first


def test_the_summary_carries_the_reported_figures() -> None:
    summary = scenario.run(seed=0, seeds=2, loss=0.1, stable=True, stable_duration=60.0)
    for key in ("safety_violations", "failover_p50_s", "failover_p99_s", "failover_max_s",
                "leader_changes_stable", "leader_changes_stable_wan", "failover_wan_max_s",
                "failing_seeds", "failures"):
        assert key in summary
    assert summary["failover_samples"] == 4 and summary["failover_wan_samples"] == 2


def test_unknown_scenario_options_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="bogus"):
        scenario.run(seeds=1, bogus=3)
    with pytest.raises(ValueError, match="seeds"):
        scenario.run(seeds=0)


class _Fake:
    """Just enough of an Election for the monitor."""

    def __init__(self, role: Role, term: int, lease_until: float, voter: bool = True) -> None:
        self.role = role
        self.term = term
        self.lease_until = lease_until
        self.is_voter = voter
        self.voters = frozenset({"a", "b", "c"})

    def is_leader_with_lease(self, now: float) -> bool:
        return self.role is Role.LEADER and now < self.lease_until


def test_the_monitor_flags_two_leaders_in_one_term() -> None:
    monitor = SafetyMonitor()
    clock = Clock(1.0, 0.0)
    monitor.step("a", _Fake(Role.LEADER, 3, 0.0), clock, 1.0)  # type: ignore[arg-type]
    monitor.step("b", _Fake(Role.LEADER, 3, 0.0), clock, 2.0)  # type: ignore[arg-type]
    assert monitor.violations == ["t=2.0000: two leaders in term 3: a and b"]


def test_the_monitor_judges_leases_by_true_time_through_each_clock() -> None:
    monitor = SafetyMonitor()
    slow = Clock(0.5, 100.0)  # local 101 = true 2.0
    monitor.step("a", _Fake(Role.LEADER, 1, 101.0), slow, 1.0)  # type: ignore[arg-type]
    monitor.step("b", _Fake(Role.LEADER, 2, 9.0), Clock(1.0, 0.0), 1.5)  # type: ignore[arg-type]
    assert len(monitor.violations) == 1 and "two valid leases" in monitor.violations[0]
    # After a's lease ends (true 2.0), b may hold one.
    clean = SafetyMonitor()
    clean.step("a", _Fake(Role.LEADER, 1, 101.0), slow, 1.0)  # type: ignore[arg-type]
    clean.step("b", _Fake(Role.LEADER, 2, 9.0), Clock(1.0, 0.0), 2.5)  # type: ignore[arg-type]
    assert clean.violations == []


def test_the_monitor_flags_a_leader_elected_in_a_minority_and_a_non_voter_campaigning() -> None:
    monitor = SafetyMonitor()
    clock = Clock(1.0, 0.0)
    monitor.step("a", _Fake(Role.LEADER, 1, 0.0), clock, 1.0,  # type: ignore[arg-type]
                 connected_voters=1)
    monitor.step("n", _Fake(Role.CANDIDATE, 1, 0.0, voter=False), clock,  # type: ignore[arg-type]
                 1.0)
    assert len(monitor.violations) == 2
    assert "partition holding 1 of 3" in monitor.violations[0]
    assert "non-voter n" in monitor.violations[1]


@pytest.mark.slow
def test_thousands_of_seeds_stay_safe_and_meet_the_failover_targets() -> None:
    summary = scenario.run(seed=10_000, seeds=3000, loss=0.1, stable=True)
    assert summary["safety_violations"] == 0, summary["first_violation"]
    assert summary["failover_max_s"] <= scenario.LAN_FAILOVER_TARGET_S
    assert summary["failover_wan_max_s"] <= scenario.WAN_FAILOVER_TARGET_S
    assert summary["leader_changes_stable"] == 0


@pytest.mark.slow
def test_a_lossier_network_stays_safe_over_many_seeds() -> None:
    summary = scenario.run(seed=50_000, seeds=1000, loss=0.3, stable=False)
    assert summary["safety_violations"] == 0, summary["first_violation"]


def test_a_promoted_non_voter_votes_so_the_grown_voter_set_survives_a_leader_crash() -> None:
    cluster = Cluster(4, 3, 1, ElectionConfig.lan(), 0.0, scenario.LAN_DELAY)
    net = cluster.net
    net.run_until(5.0)
    old = cluster.leader_with_lease()
    assert old is not None
    cluster.change_voters(old, cluster.voter_ids | {"n0"}, spread=1.0)
    net.run_until(7.0)
    assert cluster.hosts["n0"].core.is_voter
    assert cluster.hosts["n0"].core.voters_version == (cluster.hosts[old].core.term, 2)
    assert cluster.leader_with_lease() == old
    cluster.crash(old)
    # Three of four voters are left: no majority without the promoted node's vote.
    net.run_until(12.0)
    new = cluster.leader_with_lease()
    assert new is not None and new != old
    assert cluster.hosts["n0"].core.term == cluster.hosts[new].core.term
    assert cluster.monitor.violations == []


def test_the_mesh_sim_tool_prints_the_election_figures_as_one_json_object(
        capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from tools import mesh_sim

    rc = mesh_sim.main(["--scenario", "election", "--seeds", "2", "--nodes", "7",
                        "--loss", "0.1", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["safety_violations"] == 0 and out["failures"] == []
    assert out["leader_changes_stable"] == 0
    assert out["failover_p50_s"] <= out["failover_p99_s"] <= out["failover_max_s"]


def test_a_failing_seed_is_named_in_failures_and_replays_alone() -> None:
    # Clock drift far past the bound makes leases overlap on some seeds.
    options = {"loss": 0.05, "stable": False, "wan": False, "drift": 0.4}
    summary = scenario.run(seed=0, seeds=10, **options)
    assert summary["safety_violations"] > 0
    first = summary["failing_seeds"][0]
    assert summary["failures"][0].startswith(f"seed {first}: ")
    alone = scenario.run(seed=first, seeds=1, **options)
    assert alone["failures"][0] == summary["failures"][0]
