"""The signature benchmark prints what per-node signatures cost (rates and bytes per message)."""

from __future__ import annotations

import pytest

from mesh.identity import SIGNATURE_BYTES
from tools.bench.signatures import run


@pytest.mark.benchmark
def test_signature_benchmark_prints_rates_and_bytes_before_and_after() -> None:
    figures = run(quick=True)
    for name, value in sorted(figures.items()):
        print(f"{name:<42} {value}")
    for msg in ("ping", "ack", "gossip_1_manifest", "heartbeat_with_certificate"):
        # The signature and the sender's public key (with its field name) are the difference.
        grown = figures[f"bytes_{msg}_after"] - figures[f"bytes_{msg}_before"]
        assert SIGNATURE_BYTES + 32 <= grown <= SIGNATURE_BYTES + 32 + 8
