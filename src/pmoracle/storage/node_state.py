"""The node's progress marker: the last anchor block whose round it processed (SQLite, WAL).

A restarted node resumes from it: it does not recompute rounds at or below that block, and re-enters the open
round with the report it signed before (from the archive), so a restart mid-round neither loses its vote nor
risks a different one (slashing protection would refuse that anyway).
"""

from __future__ import annotations

from pmoracle.storage.sqlite import SqliteStore

_SCHEMA = """
CREATE TABLE IF NOT EXISTS node_state (
    key TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID
"""
LAST_PROCESSED_BLOCK = "last_processed_block"


class NodeStateDB(SqliteStore):
    """A small key -> integer table in the node's data directory."""

    SCHEMA = _SCHEMA
    SYNCHRONOUS = "FULL"

    def get(self, key: str) -> int | None:
        """Return the value of ``key`` or None."""
        row = self._db.execute("SELECT value FROM node_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else int(row[0])

    def advance(self, key: str, value: int) -> None:
        """Set ``key`` to ``value`` unless it already holds a larger one (progress never moves back)."""
        self._db.execute(
            "INSERT INTO node_state (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = max(value, excluded.value)",
            (key, value),
        )
