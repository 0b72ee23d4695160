"""Durability: every batch a writer acknowledged survives kill -9 in the middle of the next."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from storage.digests import Digests, hash_rows
from storage.hlc import HybridClock
from storage.stores import open_stores

ROOT = Path(__file__).resolve().parents[2]
BATCH = 1_500

WRITER = f"""
import asyncio, sys
from pathlib import Path
from storage.hlc import HybridClock
from storage.rows import new_match
from storage.stores import open_stores

async def main(data_dir, first):
    stores = await open_stores(Path(data_dir), HybridClock(lambda: 1_000, 0), "writer")
    batch = first
    while True:
        rows = [new_match(f"b{{batch}}-{{i}}", ["a", "b"], "square8", 2, [1.0, 0.0],
                          batch * {BATCH} + i, "writer") for i in range({BATCH})]
        await stores.matches.merge(rows)
        await stores.state.set_state("last_batch", batch)
        print(batch, flush=True)  # acknowledged: the commit has returned
        batch += 1

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def run_writer_and_kill(data_dir: Path, first: int, acks_before_kill: int, rnd: random.Random) -> list[int]:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data_dir), str(first)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        while len(acked) < acks_before_kill:
            line = proc.stdout.readline()
            assert line, f"writer exited early with {proc.poll()}"
            acked.append(int(line))
        time.sleep(rnd.uniform(0, 0.03))  # land somewhere inside the next batch
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert proc.stdout is not None
    acked += [int(line) for line in proc.stdout.read().split()]  # acks already in the pipe
    return acked


async def test_acknowledged_batches_survive_kill_9_and_no_batch_is_torn(tmp_path: Path) -> None:
    rnd = random.Random(20261123)
    acked: list[int] = []
    first = 0
    for round_ in range(2):
        acked += run_writer_and_kill(tmp_path, first, acks_before_kill=3 + round_, rnd=rnd)
        first = acked[-1] + 1 + 1_000  # a fresh range: a torn batch must not be refilled

    stores = await open_stores(tmp_path, HybridClock(lambda: 1_000, 0), "reader")
    try:
        matches = await stores.matches.all_matches()
        per_batch: dict[int, int] = {}
        for row in matches:
            batch = int(row["match_id"][1:].split("-")[0])
            per_batch[batch] = per_batch.get(batch, 0) + 1
        for batch in acked:
            assert per_batch.get(batch) == BATCH, f"acknowledged batch {batch} lost rows"
        assert all(n == BATCH for n in per_batch.values()), f"a torn batch: {per_batch}"
        assert await stores.state.get_state("last_batch") >= acked[-1]
        entries = await stores.matches.bucket_entries(list(range(256)))
        scratch = Digests.from_hashes(*hash_rows([k for k, _ in entries], [v for _, v in entries]))
        assert await stores.matches.summary() == (len(matches), scratch.root_hex())
    finally:
        await stores.close()
