"""How the sans-IO sync generators talk to their shell: the steps they yield, and two drivers.

A sync generator (`mesh.sync.pull_session`, `mesh.sync.answer_steps`) never awaits: it yields
a step and is sent the step's result. `LocalQuery` is a call on one of the node's stores,
`RemoteRequest` a message to a peer, `FetchBlob` a verified download.

A step marked `background` may run while the generator goes on: a shell that can run it so
resumes the generator at once with a `Ticket`, and hands over its result later, when the
generator yields `Wait`. A shell that runs every step to its end before resuming (the
simulator's, a test's) resumes with the result itself, which the generator takes as a step
already finished. That is how one pull keeps several requests in flight and merges one batch
while the next arrives, in the asyncio shell, while simpler shells stay correct.

`drive` runs a generator against synchronous stores (the simulator, tests), `drive_async`
against the agent's aiosqlite stores and aiohttp transport: one protocol, two shells.
"""

from __future__ import annotations

import asyncio
import inspect
import random
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from mesh.sync_messages import SyncReply, SyncRequest

StoreOp = Literal["bucket_digests", "bucket_entries", "rows", "packed_rows", "range_rows",
                  "merge", "wanted", "missing_blobs", "has_blob"]


@dataclass(frozen=True, slots=True)
class LocalQuery:
    """Call `stores[store].<op>(*args)` on the local stores; resume with its result (or a
    `Ticket`, when `background`)."""

    store: str
    op: StoreOp
    args: tuple[Any, ...] = ()
    background: bool = False

    def call(self, stores: Mapping[str, Any]) -> Any:
        """Make the call: its result, or an awaitable of it (async stores)."""
        return getattr(stores[self.store], self.op)(*self.args)


@dataclass(frozen=True, slots=True)
class RemoteRequest:
    """Send `request` to `peer`; resume with its reply, or None when no reply came (or a
    `Ticket`, when `background`)."""

    peer: str
    request: SyncRequest
    background: bool = False


@dataclass(frozen=True, slots=True)
class FetchBlob:
    """Download model blob `sha256` from `peer` into the local blob store, verifying its hash;
    resume with True when it is now held, False when the fetch failed."""

    peer: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Ticket:
    """A background step the shell started; a later `Wait` hands over its result."""

    number: int


@dataclass(frozen=True, slots=True)
class Wait:
    """Resume with `(ticket, result)` of one background step that has finished; a store call
    that raised is thrown into the generator instead."""


Step = LocalQuery | RemoteRequest | FetchBlob | Wait
R = TypeVar("R")
Steps = Generator[Step, Any, R]
Ask = Callable[[str, SyncRequest], SyncReply | None]
AskAsync = Callable[[str, SyncRequest], Awaitable[SyncReply | None]]


def drive(steps: Steps[R], stores: Mapping[str, Any], ask: Ask | None = None,
          fetch: Callable[[str, str], bool] | None = None,
          rng: random.Random | None = None) -> R:
    """Run `steps` to the end against synchronous stores.

    `ask(peer, request)` answers remote requests (None: no reply); `fetch(peer, sha256)`
    performs blob downloads. A step with no function to serve it is a TypeError. Background
    steps run at once; `Wait` hands their results over in the order they were started, or in
    an order drawn from `rng` (to test that the order never matters).
    """
    finished: list[tuple[Ticket, Any, BaseException | None]] = []
    tickets = 0
    result: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = steps.send(result) if error is None else steps.throw(error)
        except StopIteration as done:
            return done.value
        error = None
        if isinstance(step, Wait):
            if not finished:
                raise RuntimeError("Wait with no background step started")
            ticket, result, error = finished.pop(rng.randrange(len(finished)) if rng else 0)
            result = (ticket, result)
            continue
        try:
            value = _run(step, stores, ask, fetch)
        except Exception as exc:  # handed to the generator, as a shell would
            if not getattr(step, "background", False):
                raise
            value, exc_value = None, exc
        else:
            exc_value = None
        if getattr(step, "background", False):
            tickets += 1
            finished.append((Ticket(tickets), value, exc_value))
            result = Ticket(tickets)
        else:
            result = value


def _run(step: Step, stores: Mapping[str, Any], ask: Callable[..., Any] | None,
         fetch: Callable[..., Any] | None) -> Any:
    if isinstance(step, LocalQuery):
        return step.call(stores)
    if isinstance(step, RemoteRequest):
        if ask is None:
            raise TypeError(f"{step!r} needs a peer, but no ask function was given")
        return ask(step.peer, step.request)
    if isinstance(step, FetchBlob):
        if fetch is None:
            raise TypeError(f"{step!r} needs a blob download, but no fetch function was given")
        return fetch(step.peer, step.sha256)
    raise TypeError(f"unknown sync step {step!r}")


async def drive_async(steps: Steps[R], stores: Mapping[str, Any], ask: AskAsync | None = None,
                      fetch: Callable[[str, str], Awaitable[bool]] | None = None) -> R:
    """`drive` for async stores, `ask` and `fetch` (the agent's shell).

    Background steps run as tasks; `Wait` takes the earliest-started one that has finished. A
    store call that is not a coroutine (`has_blob` is a file check) is taken as it is. Tasks
    still running when the generator ends (requests it gave up on) are cancelled.
    """
    running: dict[asyncio.Task[Any], Ticket] = {}
    tickets = 0
    result: Any = None
    error: BaseException | None = None
    try:
        while True:
            try:
                step = steps.send(result) if error is None else steps.throw(error)
            except StopIteration as done:
                return done.value
            error = None
            if isinstance(step, Wait):
                if not running:
                    raise RuntimeError("Wait with no background step started")
                done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                task = min(done, key=lambda t: running[t].number)
                ticket = running.pop(task)
                if task.exception() is not None:
                    error = task.exception()
                else:
                    result = (ticket, task.result())
                continue
            if getattr(step, "background", False):
                tickets += 1
                ticket = Ticket(tickets)
                running[asyncio.ensure_future(_run_async(step, stores, ask, fetch))] = ticket
                result = ticket
            else:
                result = await _run_async(step, stores, ask, fetch)
    finally:
        for task in running:
            task.cancel()
        if running:
            await asyncio.gather(*running, return_exceptions=True)


async def _run_async(step: Step, stores: Mapping[str, Any], ask: Callable[..., Any] | None,
                     fetch: Callable[..., Any] | None) -> Any:
    value = _run(step, stores, ask, fetch)
    if inspect.isawaitable(value):
        value = await value
    return value
