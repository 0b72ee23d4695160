"""The composition root: CLI, config, agent supervisor, HTTP routes."""

__version__ = "0.1.0"
