"""User-supplied files: one InputError naming the file (or the input it stands for) and what is wrong with it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.errors import InputError
from pmoracle.files import read_json, read_text


def test_reads_a_json_document(tmp_path: Path) -> None:
    path = tmp_path / "doc.json"
    path.write_text('{"a": [1, {"b": "2"}]}', encoding="utf-8")
    assert read_json(path) == {"a": [1, {"b": "2"}]}


def test_a_missing_file_names_the_path_or_the_field(tmp_path: Path) -> None:
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError) as by_path:
        read_json(missing)
    assert by_path.value.field == str(missing)
    assert "cannot read file: No such file or directory" in by_path.value.message
    with pytest.raises(InputError) as by_field:
        read_json(missing, "evidence")
    assert by_field.value.field == "evidence"
    assert str(missing) in by_field.value.message


def test_malformed_json_gives_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{\n  "a": 1,\n  "b": \n}', encoding="utf-8")
    with pytest.raises(InputError, match="malformed JSON at line 4 column 1"):
        read_json(path, "leaves")


def test_a_repeated_key_is_refused_at_any_depth(tmp_path: Path) -> None:
    path = tmp_path / "dup.json"
    path.write_text('{"outer": {"x": "1", "x": "2"}}', encoding="utf-8")
    with pytest.raises(InputError, match="key 'x' appears twice"):
        read_json(path)


def test_text_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes("name = 'caf\u00e9'".encode("latin-1"))
    with pytest.raises(InputError, match="cannot read file"):
        read_text(path, "params")
