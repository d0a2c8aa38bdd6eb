"""The common shape of the node's SQLite files: WAL journal, autocommit with explicit transactions."""

from __future__ import annotations

import pathlib
import sqlite3
from types import TracebackType
from typing import Self


class SqliteStore:
    """A SQLite file with its schema; subclasses set ``SCHEMA`` and how durable each commit is."""

    SCHEMA = ""
    # FULL: a commit survives power loss (what slashing protection needs); NORMAL: may lose the last commits.
    SYNCHRONOUS = "FULL"

    def __init__(self, path: str | pathlib.Path) -> None:
        """Open (creating if needed) the store at ``path``.

        Errors:
            sqlite3.Error: the file cannot be opened or is not a database.
        """
        self.path = pathlib.Path(path)
        # autocommit mode: transactions are explicit (BEGIN IMMEDIATE takes the write lock before reading)
        self._db = sqlite3.connect(self.path, isolation_level=None, timeout=30.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={self.SYNCHRONOUS}")
        self._db.executescript(self.SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
