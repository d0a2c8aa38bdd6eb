"""``pmoracle stress`` from files end to end: the JSON keys, the text table, the plot, and bad input (exit 2
naming the field)."""

from __future__ import annotations

import json
import pathlib
import shutil
from typing import Any

import pytest

from pmoracle.cli import main

ROOT = pathlib.Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MARKET = str(EXAMPLES / "market.json")
STRESS_PARAMS = str(EXAMPLES / "params" / "stress.toml")
KEYS = {"steps", "cascade_depth", "shortfall", "insurance_fund", "cover1", "cover2", "price_path"}


@pytest.fixture
def book(tmp_path: pathlib.Path) -> pathlib.Path:
    """Return a book directory holding the example portfolios."""
    directory = tmp_path / "book"
    directory.mkdir()
    for path in (EXAMPLES / "portfolios").glob("*.json"):
        shutil.copy(path, directory / path.name)
    return directory


def run_json(capsys: pytest.CaptureFixture[str], *args: str) -> dict[str, Any]:
    assert main(["stress", *args, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_a_shock_from_files_prints_every_key(book: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = run_json(capsys, "--market", MARKET, "--book", str(book), "--shock", "BTC=-0.3", "--shock", "ETH=-0.35",
                   "--vol-shock", "0.5", "--adv", "BTC=20", "--adv", "ETH=300")  # fmt: skip
    assert set(doc) >= KEYS
    assert doc["cascade_depth"] == 2 and len(doc["steps"]) == 2
    assert doc["steps"][0]["accounts_breached"] > 0 and float(doc["shortfall"]) > 0
    assert doc["largest_defaults"][0]["account"] == "market_maker"  # the file's name stands for the account
    assert doc["price_path"]["BTC"][:2] == ["95000.00000000", "66500.00000000"]
    assert doc["shortfall_exceeds_fund"] is True and doc["insurance_fund"] == "0"


def test_the_named_standard_stress_of_the_document(book: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    standard = run_json(capsys, "--market", MARKET, "--book", str(book), "--params", STRESS_PARAMS,
                        "--insurance-fund", "1000000")  # fmt: skip
    named = run_json(capsys, "--market", MARKET, "--book", str(book), "--params", STRESS_PARAMS, "--stress",
                     "standard", "--insurance-fund", "1000000")  # fmt: skip
    assert standard == named and standard["stress"] == "standard"
    assert standard["shock"] == {"moves": {"BTC": "-3/10", "ETH": "-7/20"}, "vol_shock": "1/2"}
    assert standard["shortfall_exceeds_fund"] is False


def test_the_table_and_the_plot(book: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "stress.png"
    assert main(["stress", "--market", MARKET, "--book", str(book), "--shock", "BTC=-0.2", "--adv", "BTC=20",
                 "--adv", "ETH=300", "--plot", str(png)]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "Cascade depth" in out and "Cover 1" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--shock", "XRP=-0.1"], "shock.XRP"),  # an unknown underlying
        (["--shock", "BTC=-0.3", "--adv", "BTC=-5"], "--adv BTC"),  # a negative volume
        (["--shock", "BTC=-1"], "shock.BTC"),
        (["--shock", "BTC"], "--shock"),
        (["--vol-shock", "x"], "--vol-shock"),
        (["--stress", "nope"], "--stress"),
        ([], "--shock"),  # no shock and no standard stress in the bundled document
        (["--shock", "BTC=-0.3", "--discount", "0.3"], "discount"),  # above the Liquidator's maximum
    ],
)
def test_bad_input_exits_2_naming_the_field(
    book: pathlib.Path, capsys: pytest.CaptureFixture[str], args: list[str], field: str
) -> None:
    assert main(["stress", "--market", MARKET, "--book", str(book), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"error: {field}:" in captured.err


def test_a_malformed_book_names_the_file_and_field(book: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    (book / "broken.json").write_text(json.dumps({"positions": [{"instrument": "BTC-PERPETUAL", "size": "one"}]}))
    assert main(["stress", "--market", MARKET, "--book", str(book), "--shock", "BTC=-0.3"]) == 2
    err = capsys.readouterr().err
    assert "positions[0].size" in err and "broken.json" in err


def test_files_and_chain_are_exclusive(book: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stress", "--shock", "BTC=-0.3"]) == 2
    assert main(["stress", "--book", str(book), "--shock", "BTC=-0.3"]) == 2
    assert "--market: missing" in capsys.readouterr().err
