"""The API port file: what a node bound with api.port = 0, for tools to find it."""

from __future__ import annotations

from pathlib import Path

from pmoracle.node.datadir import api_port_path, read_api_port, write_api_port


def test_written_port_reads_back_and_replaces_the_previous_one(tmp_path: Path) -> None:
    assert read_api_port(tmp_path) is None
    write_api_port(tmp_path, 24395)
    assert read_api_port(tmp_path) == 24395
    write_api_port(tmp_path, 31001)
    assert read_api_port(tmp_path) == 31001
    assert [p.name for p in tmp_path.iterdir()] == ["api.port"]  # no partial file left behind


def test_a_file_without_a_port_reads_as_none(tmp_path: Path) -> None:
    api_port_path(tmp_path).write_text("")
    assert read_api_port(tmp_path) is None
