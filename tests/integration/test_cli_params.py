"""``pmoracle params``: check a document (its hash and canonical bytes, or every problem by path); print the schema."""

from __future__ import annotations

import json
import pathlib

import pytest
from eth_utils import keccak

from pmoracle.cli import main
from pmoracle.config.params import default_params_text, params_schema
from pmoracle.risk.params import parse_params

ROOT = pathlib.Path(__file__).resolve().parents[2]
PRESET = ROOT / "examples" / "params" / "deribit-pm.toml"


def test_check_prints_the_hash_and_canonical_bytes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "check", str(PRESET), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    params = parse_params(PRESET.read_text())
    assert out == {"params_hash": "0x" + params.params_hash.hex(), "canonical": params.canonical_bytes.decode()}


def test_check_lists_every_problem_once_per_field(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.toml"
    text = default_params_text().replace("scan_range = 0.16", "scan_range = 1.5").replace("level = 0.9", 'level = "x"')
    bad.write_text(text.replace('modes = ["together", "alone", "opposite"]', 'modes = ["sideways"]'))
    assert main(["params", "check", str(bad)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    for path in ("price.scan_range:", "expected_shortfall.level:", "joint.modes"):
        assert captured.err.count(f"{bad}: {path}") == 1, path


def test_schema_prints_the_bundled_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "schema"]) == 0
    assert json.loads(capsys.readouterr().out) == params_schema()


def test_check_without_a_file_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["params", "check"]) == 2
    assert "FILE.toml" in capsys.readouterr().err


def test_canonical_writes_exactly_the_bytes_the_hash_covers(capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    """What a user publishes on-chain: keccak256 of the written bytes is the document's paramsHash."""
    path = ROOT / "src" / "pmoracle" / "config" / "default_params.toml"
    assert main(["params", "canonical", str(path)]) == 0
    out = capsysbinary.readouterr().out
    params = parse_params(path.read_text())
    assert out == params.canonical_bytes
    assert keccak(out) == params.params_hash


def test_canonical_of_an_invalid_document_writes_nothing_and_exits_2(
    tmp_path: pathlib.Path, capsysbinary: pytest.CaptureFixture[bytes]
) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text(default_params_text().replace("scan_range = 0.16", "scan_range = 1.5"))
    assert main(["params", "canonical", str(bad)]) == 2
    captured = capsysbinary.readouterr()
    assert captured.out == b""
    assert f"{bad}: price.scan_range:".encode() in captured.err
