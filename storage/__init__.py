"""SQLite-backed CRDT stores, hybrid logical clock, merge rules and bucket digests."""
