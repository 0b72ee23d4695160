"""RingRift rules and the players, networks and training built on them (plain data, no I/O)."""
