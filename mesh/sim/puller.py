"""The simulator's shell for sync: pull sessions and sync answers over `SimNet`.

What `mesh/runtime.py` does with aiohttp and SQLite, done over the simulated network and
in-memory stores: a pull session (`mesh.sync.pull_session`) runs step by step, each
`RemoteRequest` a message to the peer, retried on a timeout up to `request_attempts` times
(the runtime's `_ask`); each `FetchBlob` a `BlobFetch` message answered with the blob's bytes,
whose sha256 the puller checks before keeping it (the transport's verified download). Every
step runs to its end before the session resumes (mesh.sync_steps: a background request is
resumed with its reply, never a ticket), so one request is in flight at a time.
Requests from peers are answered from the local stores (`mesh.sync.answer`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from mesh.core import Send
from mesh.sync import (
    FetchBlob,
    LocalQuery,
    PullOutcome,
    PullPlan,
    RemoteRequest,
    Step,
    SyncConfig,
    Wait,
    answer,
    pull_session,
)
from mesh.sync_messages import REPLY_TO, SyncRefused
from storage.memory import MemoryStore
from storage.rows import MODEL_PREFIX, validate_registry


@dataclass(frozen=True, slots=True)
class BlobFetch:
    """Simulated `GET /mesh/v1/blob/{sha256}`."""

    sha256: str


@dataclass(frozen=True, slots=True)
class BlobData:
    """The blob's bytes (None: not held)."""

    sha256: str
    data: bytes | None


class SimModelStore(MemoryStore):
    """The model registry in memory plus the blobs it names (the SQLite store keeps files)."""

    def __init__(self, clock: Any = None) -> None:
        super().__init__(validate_registry, clock)
        self.blobs: dict[str, bytes] = {}

    def has_blob(self, sha: str) -> bool:
        return sha in self.blobs

    def put_blob(self, data: bytes) -> str:
        sha = hashlib.sha256(data).hexdigest()
        self.blobs[sha] = data
        return sha

    def missing_blobs(self) -> list[str]:
        return sorted(key[len(MODEL_PREFIX):] for key in self.keys()
                      if key.startswith(MODEL_PREFIX) and key[len(MODEL_PREFIX):] not in self.blobs)


@dataclass(slots=True)
class _Pending:
    step: RemoteRequest | FetchBlob
    attempts: int
    deadline: float


class SimPuller:
    """One node's sync shell: at most one pull session at a time, plus its answers to peers."""

    def __init__(self, stores: Mapping[str, Any], config: SyncConfig) -> None:
        self._stores = stores
        self._config = config
        self._plan: PullPlan | None = None
        self._session: Any = None
        self._pending: _Pending | None = None
        self.merges = 0  # merges made by pulls (the owner re-reads its summaries)
        self.done: list[tuple[PullPlan, PullOutcome]] = []

    @property
    def busy(self) -> bool:
        return self._session is not None

    def start(self, plan: PullPlan, now: float) -> list[Send]:
        if self._session is not None:
            raise RuntimeError("SimPuller.start: a pull is already running")
        self._plan = plan
        self._session = pull_session(plan, self._config)
        return self._advance(None, now)

    def answer(self, src: str, msg: Any) -> list[Send] | None:
        """The reply to a peer's sync request or blob fetch; None when `msg` is neither."""
        if type(msg) in REPLY_TO:
            return [Send(src, answer(msg, self._stores))]
        if isinstance(msg, BlobFetch):
            models = self._stores["models"]
            return [Send(src, BlobData(msg.sha256, models.blobs.get(msg.sha256)))]
        return None

    def on_reply(self, src: str, msg: Any, now: float) -> list[Send] | None:
        """Feed a reply to the running session; None when `msg` is no reply we wait for."""
        pending = self._pending
        if isinstance(msg, BlobData):
            if (pending is None or not isinstance(pending.step, FetchBlob)
                    or src != pending.step.peer or msg.sha256 != pending.step.sha256):
                return []  # a late blob for a fetch given up on
            self._pending = None
            ok = (msg.data is not None
                  and hashlib.sha256(msg.data).hexdigest() == msg.sha256)
            if ok:
                self._stores["models"].blobs[msg.sha256] = msg.data
            return self._advance(ok, now)
        if not isinstance(msg, (SyncRefused, *REPLY_TO.values())):
            return None
        if pending is None or src != pending.step.peer or not isinstance(pending.step,
                                                                         RemoteRequest):
            return []  # a late reply to a request given up on
        request = pending.step.request
        if not (isinstance(msg, SyncRefused) or (type(msg) is REPLY_TO[type(request)]
                                                 and msg.store == request.store)):
            return []
        self._pending = None
        return self._advance(msg, now)

    def tick(self, now: float) -> list[Send]:
        """Retry a request whose reply is overdue, or give it up (the session then fails)."""
        pending = self._pending
        if pending is None or now < pending.deadline:
            return []
        if pending.attempts < self._config.request_attempts:
            pending.attempts += 1
            pending.deadline = now + self._config.request_timeout_s
            return [self._message(pending.step)]
        self._pending = None
        return self._advance(False if isinstance(pending.step, FetchBlob) else None, now)

    def crash(self) -> None:
        """The process died: the session is gone (stores persist)."""
        self._session = self._pending = self._plan = None

    def _advance(self, result: Any, now: float) -> list[Send]:
        while True:
            try:
                step: Step = self._session.send(result)
            except StopIteration as finished:
                assert self._plan is not None
                self.done.append((self._plan, finished.value))
                self._session = self._plan = None
                return []
            if isinstance(step, LocalQuery):
                result = step.call(self._stores)
                self.merges += step.op == "merge"
                continue
            if isinstance(step, Wait):
                raise RuntimeError("a pull session waited on a ticket the simulator never gives")
            self._pending = _Pending(step, 1, now + self._config.request_timeout_s)
            return [self._message(step)]

    @staticmethod
    def _message(step: RemoteRequest | FetchBlob) -> Send:
        if isinstance(step, RemoteRequest):
            return Send(step.peer, step.request)
        return Send(step.peer, BlobFetch(step.sha256))
