"""Benchmarks: `python -m tools.bench <suite> [--json]`."""
