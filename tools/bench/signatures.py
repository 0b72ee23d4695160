"""What per-node signatures cost: Ed25519 rates, sealed/opened messages, and bytes per message.

`python -m tools.bench signatures [--quick] [--json]`. Every mesh message is signed by its
sender's node key and checked by its receiver (mesh/wire.py); leaders show a quorum certificate
(mesh/quorum.py). Printed here: signatures and verifications per second on this machine, seal
and open rates of real messages, the bytes of common messages before (HMAC tag only, no key or
signature: the envelope as it was) and after, and the share of one core that checking the
signatures of a busy node's traffic takes.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import msgpack

from mesh.election import Heartbeat
from mesh.identity import SIGNATURE_BYTES, Identity, verify_signature
from mesh.keyring import TAG_BYTES, Keyring
from mesh.manifest import Manifest, StoreSummary, sign_manifest
from mesh.membership_messages import Ack, Gossip, Ping, Update
from mesh.quorum import Notary
from mesh.wire import Wire

_NOW = 1_800_000_000_000
# Messages a node of a 100-node LAN cluster receives per second at the membership defaults:
# about 2 probes (ping and ack), 3 gossip fanout x 5 rounds from peers, and as a voter 10
# heartbeats; a busy node is counted at 10x that, a join storm.
BUSY_MESSAGES_PER_S = 10 * (2 + 15 + 10)


def _rate(n: int, step: Callable[[int], object]) -> float:
    # Per second of this process's CPU: on a shared machine, wall time measures the neighbours.
    start = time.process_time()
    for i in range(n):
        step(i)
    return n / max(time.process_time() - start, 1e-9)


def _before_bytes(sealed: bytes) -> int:
    """The size the same message had before signatures: no `key`, no signature."""
    fields = msgpack.unpackb(sealed[:-SIGNATURE_BYTES - TAG_BYTES], raw=False,
                             strict_map_key=False)
    del fields["key"]
    return len(msgpack.packb(fields, use_bin_type=True)) + TAG_BYTES


def run(quick: bool) -> dict[str, float | int | str]:
    n = 300 if quick else 3000
    alice, bob = Identity.from_seed(b"\x01" * 32), Identity.from_seed(b"\x02" * 32)
    keyring = Keyring([b"k" * 32])
    sender = Wire("c" * 32, alice, keyring)
    receiver = Wire("c" * 32, bob, keyring, replay_capacity=4 * n)
    data = b"x" * 400
    sig = alice.sign(data)
    figures: dict[str, float | int | str] = {
        "ed25519_sign_per_s": round(_rate(n, lambda _: alice.sign(data))),
        "ed25519_verify_per_s": round(_rate(n, lambda _: verify_signature(alice.public_key,
                                                                          sig, data))),
    }

    manifest = Manifest(
        node_id=alice.node_id, public_key=alice.public_key, address="192.168.1.20:7400",
        version="0.1.0", incarnation=3, seq=17, device="cuda", device_mem_mb=24_000, cores=16,
        state="selfplay", stores={s: StoreSummary(1000, "ab" * 16)
                                  for s in ("games", "matches", "models")},
        production_model=None, leader=None, term=4, lease_until_ms=0)
    signed = sign_manifest(alice, manifest)
    voters = [Identity.from_seed(bytes([i]) * 32) for i in range(3, 8)]
    quorum = {v.node_id: Notary(v).endorse(4, alice.node_id) for v in voters[:3]}
    leader_manifest = sign_manifest(alice, dataclasses.replace(
        manifest, leader=alice.node_id, lease_until_ms=_NOW, quorum=quorum,
        voters=tuple(sorted(v.node_id for v in voters)), voters_version=(4, 5)))
    messages: dict[str, object] = {
        "ping": Ping(12, view=1 << 60),
        "ack": Ack(12, view=1 << 60),
        "gossip_1_manifest": Gossip([Update(alice.node_id, "alive", 3, signed, (3, 17))]),
        "gossip_leader_manifest": Gossip([Update(alice.node_id, "alive", 3, leader_manifest,
                                                 (3, 17))]),
        "heartbeat_with_certificate": Heartbeat(4, 99, 0.8, quorum=quorum),
    }
    for name, msg in messages.items():
        sealed = sender.seal(msg, _NOW, to=bob.node_id)
        figures[f"bytes_{name}_before"] = _before_bytes(sealed)
        figures[f"bytes_{name}_after"] = len(sealed)
    figures["bytes_leader_manifest_signed"] = len(leader_manifest.body) + len(leader_manifest.sig)

    ping = messages["ping"]
    gossip = messages["gossip_1_manifest"]
    for name, msg in (("ping", ping), ("gossip", gossip)):
        sealed = [sender.seal(msg, _NOW, to=bob.node_id) for _ in range(n)]
        figures[f"seal_{name}_per_s"] = round(_rate(n, lambda _: sender.seal(msg, _NOW,
                                                                            to=bob.node_id)))
        figures[f"open_{name}_per_s"] = round(_rate(n, lambda i: receiver.open(sealed[i], _NOW)))
    notary = Notary(bob)
    figures["certificate_check_per_s"] = round(_rate(
        max(n // 3, 1), lambda _: notary.proves(quorum, 4, alice.node_id,
                                                frozenset(v.node_id for v in voters))))
    verify = float(figures["ed25519_verify_per_s"])
    figures["busy_node_messages_per_s"] = BUSY_MESSAGES_PER_S
    figures["busy_node_verify_core_share"] = f"{BUSY_MESSAGES_PER_S / verify:.1%}"
    return figures
