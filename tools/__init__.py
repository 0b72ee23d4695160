"""Operator commands: benchmarks, mesh simulation report, drift reports."""
