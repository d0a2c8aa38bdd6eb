"""The shell's reading of risk parameters: the bundled default document and operators' files, errors named."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.config.params import default_params, default_params_text, load_params_file
from pmoracle.errors import InputError
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import parse_params

BUNDLED = Path(__file__).resolve().parents[3] / "src" / "pmoracle" / "config" / "default_params.toml"


def test_the_default_is_the_bundled_document() -> None:
    assert default_params_text() == BUNDLED.read_text(encoding="utf-8")
    assert default_params() == parse_params(BUNDLED.read_text(encoding="utf-8"))


def test_a_params_file_loads_to_the_same_hash(tmp_path: Path) -> None:
    path = tmp_path / "risk-params.toml"
    path.write_text(default_params_text())
    assert load_params_file(path).params_hash == default_params().params_hash


def test_a_missing_file_names_the_config_field(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_params_file(tmp_path / "absent.toml")
    assert info.value.field == "risk.params_file"
    assert "cannot read file" in str(info.value)


def test_an_invalid_document_names_the_file_and_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(default_params_text().replace("horizon_seconds = 86400", "horizon_seconds = -1"))
    with pytest.raises(ParamsError) as info:
        load_params_file(path, "params")
    assert info.value.problems == (f"{path}: horizon_seconds: -1 is outside [0, 2592000]",)
