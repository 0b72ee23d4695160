"""Progress of a long import: a callback `(what, how many more done)` the CLI draws as bars."""

from __future__ import annotations

from collections.abc import Callable

Progress = Callable[[str, int], None]
