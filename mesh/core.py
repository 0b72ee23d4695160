"""What every sans-IO protocol core hands back to the shell that drives it.

A core (membership, election, sync) never sleeps, opens sockets or reads the wall clock:
`handle(src, msg, now)` and `tick(now)` return a list of outputs. `Send` is the one output
they all share; a core may define further effects of its own (the election core asks for
its term and vote to be persisted before any message that depends on them is sent).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Send:
    """Deliver `msg` to node `to`; `address` ("host:port") overrides the membership lookup.

    `address` is needed only before the peer's node id is known (joining through a seed).
    """

    to: str
    msg: object
    address: str | None = None
