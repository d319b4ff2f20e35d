"""SQLite connections for the per-service stores: one file per service, or memory for tests."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def connect(path: str, schema: str) -> sqlite3.Connection:
    """Open (creating if needed) the database at `path` and apply the idempotent `schema`."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.row_factory = sqlite3.Row
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.executescript(schema)
    return connection
