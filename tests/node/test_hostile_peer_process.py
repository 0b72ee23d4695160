"""Real processes: a peer holding the cluster key attacks three honest voters on loopback.

It speaks as a voter it has no key for, heartbeats as a phantom leader at term+1 and at the
maximum term, announces itself sole voter at version (10^9, 1), marks a live node dead at
incarnation 2^64-1 (to others and to the node itself), and asks for votes it may not ask for.
Every attack is refused and counted on /metrics; the honest cluster keeps its one leader, its
term, its voter set and equal roots.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request

import msgpack

from mesh.election import MAX_TERM, Heartbeat, RequestVote
from mesh.identity import SIGNATURE_BYTES, Identity
from mesh.keyring import PURPOSE_ENVELOPE, TAG_BYTES, Keyring
from mesh.manifest import Manifest, sign_manifest
from mesh.membership_messages import Gossip, Update
from mesh.quorum import Notary
from mesh.wire import SIG_DOMAIN, Wire
from node.datadir import open_data_dir
from tests.node.procs import NodeProcess, wait_until
from tests.node.test_election_process import leaders, start_three_voters

GOSSIP = "/mesh/v1/gossip"
U64_MAX = (1 << 64) - 1


def _post(node: NodeProcess, body: bytes) -> tuple[int, str]:
    request = urllib.request.Request(f"http://{node.address}{GOSSIP}", data=body,
                                     headers={"Content-Type": "application/msgpack"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, ""
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def _counter(node: NodeProcess, name: str, **labels: str) -> float:
    _, body = node.get("/metrics")
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    total = 0.0
    for line in body.decode().splitlines():
        match = re.fullmatch(rf"{name}(?:_total)?\{{([^}}]*)\}} (\S+)", line)
        if match and ",".join(sorted(match.group(1).split(","))) == want:
            total += float(match.group(2))
    return total


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _one_leader(nodes: list[NodeProcess]) -> tuple[str, int] | None:
    seen = leaders(nodes)
    if len(seen) == 1:
        leader, term = next(iter(seen))
        if leader is not None:
            return leader, term
    return None


def test_a_key_holder_cannot_take_over_or_evict_and_every_refusal_is_counted(tmp_path):
    nodes = start_three_voters(tmp_path)
    try:
        wait_until(lambda: all(len(n.status()["voters"]) == 3 for n in nodes), timeout=60,
                   what="three voters everywhere")
        leader, term = wait_until(lambda: _one_leader(nodes), timeout=30, what="one leader")
        voters = sorted(nodes[0].status()["voters"])
        files = open_data_dir(nodes[0].data_dir)
        mallory = Identity.generate()
        wire = Wire(files.cluster.cluster_id, mallory, Keyring(files.cluster.secrets))
        ids = {n: n.status()["node_id"] for n in nodes}
        victim = next(n for n in nodes if ids[n] != leader)
        others = [n for n in nodes if n is not victim]

        # 1. Speak as the leader (to the leader: as another voter), signed by Mallory's key.
        def as_voter(to: str) -> bytes:
            speaker = leader if to != leader else ids[victim]
            sealed = wire.seal(Heartbeat(term + 1, 1, 0.5), _now_ms(), to=to)
            return _respeak(sealed, speaker, to, mallory, files.cluster.secrets)

        for node in nodes:
            status, line = _post(node, as_voter(ids[node]))
            assert (status, line.split(":")[0]) == (401, "bad_signature")

        # 2-3. A phantom leader under a minted id, at term+1 and at the maximum term, with a
        # "certificate" of its own vote; 6. vote requests from a non-voter.
        notary = Notary(mallory)
        for t in (term + 1, MAX_TERM):
            own_vote = {mallory.node_id: notary.endorse(t, mallory.node_id)}
            beat = Heartbeat(t, 1, 0.5, quorum=own_vote)
            for node in nodes:
                assert _post(node, wire.seal(beat, _now_ms(), to=ids[node]))[0] == 204
        for node in nodes:
            ask = wire.seal(RequestVote(term + 1), _now_ms(), to=ids[node])
            assert _post(node, ask)[0] == 204

        # 4. A self-signed manifest naming Mallory leader of term 10^9 and sole voter.
        manifest = Manifest(
            node_id=mallory.node_id, public_key=mallory.public_key, address="127.0.0.1:9",
            version="evil", incarnation=0, seq=1, device="cpu", device_mem_mb=0, cores=1,
            state="idle", stores={}, production_model=None, leader=mallory.node_id,
            term=10**9, lease_until_ms=_now_ms() + 3_600_000, voters=(mallory.node_id,),
            voters_version=(10**9, 1), quorum={mallory.node_id: notary.endorse(10**9,
                                                                               mallory.node_id)})
        claim = Update(mallory.node_id, "alive", 0, sign_manifest(mallory, manifest), (0, 1))
        # 5. The victim, alive, marked dead at the maximum incarnation (also told to itself).
        death = Update(ids[victim], "dead", U64_MAX)
        for node in nodes:
            sealed = wire.seal(Gossip([claim, death]), _now_ms(), to=ids[node])
            assert _post(node, sealed)[0] == 204

        def refused(node: NodeProcess, core: str, reason: str) -> float:
            return _counter(node, "ringrift_mesh_protocol_refused", core=core, reason=reason)

        for node in nodes:
            assert _counter(node, "ringrift_mesh_refused", reason="bad_signature") >= 1
            assert refused(node, "election", "not_voter") >= 3
        for node in others:
            assert refused(node, "membership", "incarnation_step") >= 1
        assert refused(victim, "membership", "self_claim") >= 1
        wait_until(lambda: all(refused(n, "voters", "unauthorised") >= 1 for n in nodes),
                   timeout=10, what="the forged voter set refused on every node")

        assert _one_leader(nodes) == (leader, term)
        for node in nodes:
            status = node.status()
            assert sorted(status["voters"]) == voters
            states = {m["node_id"]: m["state"] for m in status["members"]}
            assert states[ids[victim]] == "alive"

        def equal_roots() -> bool:
            roots = [{k: v["root"] for k, v in n.status()["stores"].items()} for n in nodes]
            return roots[0] == roots[1] == roots[2]

        # The leader's own writes (its pipeline seeds models) spread by anti-entropy.
        wait_until(equal_roots, timeout=60, what="equal roots on every node")
        assert all(n.proc.poll() is None for n in nodes)
    finally:
        for node in nodes:
            node.stop()


def _respeak(sealed: bytes, as_id: str, to: str, signer: Identity,
             secrets: tuple[bytes, ...]) -> bytes:
    """`sealed` with its `from` replaced by `as_id`, re-signed by `signer`, re-tagged with the
    cluster key: what a key holder can forge without the real sender's node key."""
    fields = msgpack.unpackb(sealed[:-SIGNATURE_BYTES - TAG_BYTES], raw=False)
    fields["from"] = as_id
    envelope = msgpack.packb(fields, use_bin_type=True)
    to_bytes = to.encode()
    binding = b"\x01" + len(to_bytes).to_bytes(1, "big") + to_bytes + envelope
    sig = signer.sign(SIG_DOMAIN + binding)
    return envelope + sig + Keyring(secrets).tag(PURPOSE_ENVELOPE, binding + sig)
