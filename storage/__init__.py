"""SQLite-backed CRDT stores, hybrid logical clock, merge rules and bucket digests.

Where things live:

- `hlc`: HybridClock, pack/unpack.
- `digests`: bucket of a key, 64-bit row hash, the 256 bucket digests and their root.
- `merge`: versions, Strategy, MergeStats, plan_merge (every merge decision).
- `rows`: the wire form of each row kind, its validation and builders (new_game, ...).
- `memory`: synchronous in-memory stores for the mesh simulator.
- `stores`: open_stores(data_dir, clock, node_id) -> Stores (games, matches, models, state).
- `synced` (the sync calls and bulk merge of the SQLite stores), `games`, `matches`,
  `models` (+ `blobs`, `fencing`), `state`, `database`, `schema`, `tables`, `files`.
"""
