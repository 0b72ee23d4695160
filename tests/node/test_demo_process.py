"""A shortened demo end to end: real node processes, the whole loop, a promotion decision.

Slow (a few minutes of real play on loopback): `python3 -m pytest -q -m slow
tests/node/test_demo_process.py`. The default run checks only that the command refuses bad
arguments.
"""

from __future__ import annotations

import io
import re

import pytest

from node.cli import main
from node.demo import run


def test_demo_refuses_bad_arguments(capsys):
    assert main(["demo", "--nodes", "0"]) == 2
    assert "--nodes 1..9" in capsys.readouterr().err


@pytest.mark.slow
def test_a_shortened_demo_decides_a_promotion_and_every_node_holds_production():
    out = io.StringIO()
    assert run(nodes=3, minutes=4.0, seed=1, keep=False, out=out) == 0
    text = out.getvalue()
    assert "training" in text and "SPRT" in text, text
    event = re.search(r"promotion event: square8 2p (\w+) candidate \w+ over \w+ after "
                      r"(\d+) games: (.+)", text)
    assert event, text
    assert event.group(1) in ("swap_production", "retain_production")
    assert "pass: " in event.group(3) or "fail: " in event.group(3)
    held = re.findall(r"n\d: games \d+, production square8 2p (\w+) \(blob held\), "
                      r"manifest announces (\w+)", text)
    assert len(held) == 3 and len(set(held)) == 1 and held[0][0] == held[0][1], text
