"""The node's tunable defaults, read from the one place they live: the embedded config/node.toml.

Every default there carries the reason for its value. The mesh reads the file as data (it never
imports the node's code), so `RuntimeConfig` built without arguments holds exactly what a node
started without a config file runs with.
"""

from __future__ import annotations

import tomllib
from importlib import resources
from typing import Any


def default_toml() -> str:
    return resources.files("config").joinpath("node.toml").read_text(encoding="utf-8")


DEFAULTS: dict[str, dict[str, Any]] = tomllib.loads(default_toml())


def default(section: str, key: str) -> Any:
    """The embedded default of `section.key`; a KeyError names a key node.toml lacks."""
    try:
        return DEFAULTS[section][key]
    except KeyError:
        raise KeyError(f"config/node.toml has no default for {section}.{key}") from None
