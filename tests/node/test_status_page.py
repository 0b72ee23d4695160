"""The status page as HTML: every member, escaped peer text, no external assets."""

from __future__ import annotations

import re

from node.status_page import render

LEADER = "a" * 32


def status(**extra):
    members = [
        {"node_id": LEADER, "state": "alive", "address": "127.0.0.1:1", "last_heard_s": None,
         "role": "leader", "games_per_hour": 120, "manifest": {"device": "cuda",
                                                                 "state": "selfplay"}},
        {"node_id": "b" * 32, "state": "suspect", "address": "<script>x</script>:2",
         "last_heard_s": 4.5, "role": "voter", "games_per_hour": 0,
         "manifest": {"device": "cpu", "state": "idle"}},
    ]
    base = {"node_id": LEADER, "cluster_id": "c1", "leader": LEADER, "term": 3,
            "lease_until": 1010.0, "members": members, "stores": {"games": {"count": 7}},
            "configs": [{"board_type": "square8", "num_players": 2, "production": "f" * 64,
                         "candidates": [{"alias": "candidate", "model": "e" * 64}],
                         "leaderboard": [{"participant": "p1", "elo": 1540.2, "ci_low": 1500,
                                          "ci_high": 1580, "games": 20}]}],
            "promotions": [{"at": 900.0, "board_type": "square8", "num_players": 2,
                            "decision": "rollback", "candidate": "f" * 64,
                            "incumbent": "e" * 64, "games_played": 100, "win_rate": 0.41,
                            "elo_delta": -60.0, "reason": "regression <b>severe</b>"}],
            "drift": {"thresholds": {"max_elo": 50, "avg_elo": 25},
                      "last": {"square8_2": {"target": "127.0.0.1:2", "max_rating_diff": 70.0,
                                             "avg_rating_diff": 30.0, "is_significant": True}},
                      "history": {"square8_2": {"trend": "worsening",
                                                "persistent_drift": True,
                                                "avg_drift_last_hour": 65.0}}},
            "series": {"games_per_hour": [[0, 5], [3600, 9]], "top_elo": [[10, "s", 1500.0],
                                                                         [20, "s", 1540.0]]}}
    base.update(extra)
    return base


def test_leader_page_lists_every_member_and_section():
    page = render(status(), now=1000.0)
    assert "aaaaaaaaaaaa" in page and "bbbbbbbbbbbb" in page
    for text in ("this node leads", "Models and Elo", "1540", "1500 to 1580", "rollback",
                 "worsening", "<svg", "<polyline", "Elo drift", "Promotions and rollbacks"):
        assert text in page, text


def test_peer_text_is_escaped_and_nothing_is_loaded_from_elsewhere():
    page = render(status(), now=1000.0)
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<b>severe</b>" not in page
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", page)
    assert "http-equiv=refresh" in page


def test_follower_page_links_to_the_leader():
    page = render(status(node_id="b" * 32, leader=LEADER), now=1000.0)
    assert "this node follows" in page and "href='http://127.0.0.1:1/'" in page


def test_page_without_leader_or_data_still_renders():
    page = render({"node_id": "n", "members": []}, now=0.0)
    assert "no leader" in page and "No check yet" in page
