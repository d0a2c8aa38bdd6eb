"""The layout of a node's data directory (one place, so the daemon and the tools agree)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

PROTECTION_DB_NAME = "protection.sqlite"  # slashing protection: (configDigest, block) -> the one signed digest
ARCHIVE_DB_NAME = "archive.sqlite"  # every signed report seen, kept as dispute evidence


def protection_db_path(data_dir: Path) -> Path:
    """Return the slashing-protection database path inside ``data_dir``."""
    return Path(data_dir) / PROTECTION_DB_NAME


def archive_db_path(data_dir: Path) -> Path:
    """Return the report-archive database path inside ``data_dir``."""
    return Path(data_dir) / ARCHIVE_DB_NAME


FROST_DIR_NAME = "frost"  # one encrypted FROST key share per committee epoch (node/frost_keys.py)


def frost_dir(data_dir: Path) -> Path:
    """Return the directory of the node's FROST key shares and evidence inside ``data_dir``."""
    return Path(data_dir) / FROST_DIR_NAME


def frost_share_path(data_dir: Path, context: bytes) -> Path:
    """Return the key share file of the committee epoch whose DKG context is ``context`` inside ``data_dir``."""
    return Path(data_dir) / FROST_DIR_NAME / f"share-{hashlib.sha256(context).hexdigest()[:16]}.json"


STATE_DB_NAME = "state.sqlite"  # progress: the last processed anchor block


def state_db_path(data_dir: Path) -> Path:
    """Return the node-state database path inside ``data_dir``."""
    return Path(data_dir) / STATE_DB_NAME


API_PORT_NAME = "api.port"  # the TCP port the running node's HTTP API bound (api.port = 0 binds any free port)


def api_port_path(data_dir: Path) -> Path:
    """Return the file in ``data_dir`` that holds the running node's API port."""
    return Path(data_dir) / API_PORT_NAME


def write_api_port(data_dir: Path, port: int) -> None:
    """Write ``port`` to the API port file atomically (a reader never sees a partial number)."""
    path = api_port_path(data_dir)
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(f"{port}\n")
    os.replace(partial, path)


def read_api_port(data_dir: Path) -> int | None:
    """Return the port in the API port file, or None when there is none (no node running, or not bound yet)."""
    try:
        text = api_port_path(data_dir).read_text()
    except FileNotFoundError:
        return None
    return int(text) if text.strip().isdigit() else None


POLICY_DB_NAME = "policy.sqlite"  # the adaptive policy's checkpoint: every underlying's state at one anchor block


def policy_db_path(data_dir: Path) -> Path:
    """Return the policy-checkpoint database path inside ``data_dir``."""
    return Path(data_dir) / POLICY_DB_NAME
