"""The node's progress marker survives a reopen and never moves back."""

from __future__ import annotations

from pathlib import Path

from pmoracle.storage.node_state import LAST_PROCESSED_BLOCK, NodeStateDB


def test_progress_survives_reopen_and_never_moves_back(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    with NodeStateDB(path) as db:
        assert db.get(LAST_PROCESSED_BLOCK) is None
        db.advance(LAST_PROCESSED_BLOCK, 100)
        db.advance(LAST_PROCESSED_BLOCK, 90)
    with NodeStateDB(path) as db:
        assert db.get(LAST_PROCESSED_BLOCK) == 100
        db.advance(LAST_PROCESSED_BLOCK, 105)
        assert db.get(LAST_PROCESSED_BLOCK) == 105
