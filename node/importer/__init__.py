"""Importing the reference system's SQLite databases (games schema v18, three Elo shapes)."""
