"""Deterministic simulation of the mesh: the real protocol cores on a virtual network.

`net.SimNet` is the network (virtual clock, delay, loss, partitions, crashes); each
scenario module (`membership`, `election`, `sync`, `cluster`) exposes `run(nodes=, seed=, seeds=,
loss=, **extra) -> dict` for `python -m tools.mesh_sim`. `cluster` runs whole nodes: the
agent's own node core (`mesh.node.MeshNode`), with `puller.SimPuller` as the simulator's
sync shell (pull sessions, sync answers and blob downloads over SimNet).
"""
