"""Deterministic simulation of the mesh: the real protocol cores on a virtual network.

`net.SimNet` is the network (virtual clock, delay, loss, partitions, crashes); each
scenario module (`membership`, `election`, `sync`) exposes `run(nodes=, seed=, seeds=,
loss=, **extra) -> dict` for `python -m tools.mesh_sim`.
"""
