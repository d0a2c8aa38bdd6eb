"""The layout of a node's data directory (one place, so the daemon and the tools agree)."""

from __future__ import annotations

from pathlib import Path

PROTECTION_DB_NAME = "protection.sqlite"  # slashing protection: (configDigest, block) -> the one signed digest
ARCHIVE_DB_NAME = "archive.sqlite"  # every signed report seen, kept as dispute evidence


def protection_db_path(data_dir: Path) -> Path:
    """Return the slashing-protection database path inside ``data_dir``."""
    return Path(data_dir) / PROTECTION_DB_NAME


def archive_db_path(data_dir: Path) -> Path:
    """Return the report-archive database path inside ``data_dir``."""
    return Path(data_dir) / ARCHIVE_DB_NAME


STATE_DB_NAME = "state.sqlite"  # progress: the last processed anchor block


def state_db_path(data_dir: Path) -> Path:
    """Return the node-state database path inside ``data_dir``."""
    return Path(data_dir) / STATE_DB_NAME
