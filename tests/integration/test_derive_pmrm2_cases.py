"""Derive's 139 published PMRM_2 portfolio cases (tests/vectors/derive_pmrm2/) through ``pmoracle import
derive-pmrm2`` and ``pmoracle margin --json``: ``equity - initial_margin`` is the case's IM, ``equity -
maintenance_margin`` its MM and ``equity`` its PortfolioMTM, each within 1e-9 relative.

Case 67 sets a skew scenario with a spot move, which Derive's own ``PMRM_2.setScenarios`` rejects (its Solidity test
skips the case as "invalid param setup"): the import refuses it, naming the feature, and exits 2.
"""

from __future__ import annotations

import json
import pathlib
from decimal import Decimal

import pytest

from pmoracle.cli import main

VECTORS = pathlib.Path(__file__).resolve().parents[1] / "vectors" / "derive_pmrm2"
CASES = sorted(VECTORS.glob("test_*.json"), key=lambda p: int(p.stem.split("_")[1]))
REFUSED = {"test_67_misc_skew_scenario_with_spot_move": "Parameters.Scenarios[30].SpotShock"}
TOLERANCE = Decimal("1e-9")


def relative_error(got: Decimal, want: Decimal) -> Decimal:
    """Return |got - want| / |want| (0 only when both are 0)."""
    if want == 0:
        return Decimal(0) if got == 0 else Decimal("Infinity")
    return abs(got - want) / abs(want)


def margin_case(case: pathlib.Path, out: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Decimal]:
    """Return the case's IM, MM and PortfolioMTM as ``pmoracle import`` + ``pmoracle margin`` compute them."""
    assert main(["import", "derive-pmrm2", str(case), "--out", str(out)]) == 0
    capsys.readouterr()
    argv = ["margin", str(out / "portfolio.json"), "--market", str(out / "market.json")]
    assert main([*argv, "--params", str(out / "params.toml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    equity = Decimal(report["equity"])
    return {
        "IM": equity - Decimal(report["initial_margin"]),
        "MM": equity - Decimal(report["maintenance_margin"]),
        "PortfolioMTM": equity,
    }


def test_every_published_case_is_transcribed() -> None:
    assert len(CASES) == 139
    for case in CASES:
        vector = json.loads(case.read_text())
        assert vector["source"]["repository"] == "derivexyz/v2-core"
        assert vector["source"]["path"].endswith(f"PMRM_2/portfolio_cases/{case.name}")
        assert set(vector["expected"]) == {"IM", "MM", "PortfolioMTM"}


@pytest.mark.parametrize("case", [c for c in CASES if c.stem not in REFUSED], ids=lambda p: p.stem)
def test_case_reproduces_within_1e_9(
    case: pathlib.Path, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    expected = json.loads(case.read_text())["expected"]
    got = margin_case(case, tmp_path, capsys)
    for key, value in got.items():
        want = Decimal(repr(expected[key]))
        assert relative_error(value, want) <= TOLERANCE, (key, str(value), str(want))


@pytest.mark.parametrize("case", sorted(REFUSED), ids=str)
def test_a_case_derive_itself_rejects_is_refused_naming_the_feature(
    case: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["import", "derive-pmrm2", str(VECTORS / f"{case}.json"), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert REFUSED[case] in err and "skew scenario with a spot move" in err
    assert not (tmp_path / "out").exists()  # nothing written


def case_with(change: dict[str, object], path: str) -> dict[str, object]:
    """Return the first vector with ``change`` applied at the dotted ``path`` (list items by index)."""
    vector = json.loads(CASES[0].read_text())
    node: object = vector
    *parents, last = path.split(".")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]  # type: ignore[index]
    node[int(last) if isinstance(node, list) else last] = change  # type: ignore[index]
    return vector


@pytest.mark.parametrize(
    ("path", "value", "field", "feature"),
    [
        (
            "Parameters.Scenarios.0.VolShockDirection",
            "Sideways",
            "Parameters.Scenarios[0].VolShockDirection",
            "Sideways",
        ),
        ("Scenario.Collaterals", [{"Name": "usd coin"}], "Scenario.Collaterals[0].Name", "not an upper-case"),
    ],
    ids=["vol direction", "asset name"],
)
def test_an_unsupported_feature_is_named_and_exits_2(
    path: str, value: object, field: str, feature: str, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    case = tmp_path / "case.json"
    case.write_text(json.dumps(case_with(value, path)))  # type: ignore[arg-type]
    assert main(["import", "derive-pmrm2", str(case), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert field in err and feature in err
    assert not (tmp_path / "out").exists()


def test_expiries_at_different_times_of_day_are_unsupported(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    vector = json.loads((VECTORS / "test_52_discounting_multi_expiry_discounting.json").read_text())
    vector["Scenario"]["OptionFeeds"][0]["FeedExpiry"] += 3600
    vector["Scenario"]["Options"][0]["Expiry"] += 3600
    case = tmp_path / "case.json"
    case.write_text(json.dumps(vector))
    assert main(["import", "derive-pmrm2", str(case), "--out", str(tmp_path / "out")]) == 2
    assert "expiries at different times of day" in capsys.readouterr().err


def test_margin_refuses_grid_only_options_and_mismatched_documents(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "case"
    assert main(["import", "derive-pmrm2", str(CASES[60]), "--out", str(out)]) == 0
    files = [str(out / "portfolio.json"), "--market", str(out / "market.json")]
    assert main(["margin", *files, "--params", str(out / "params.toml"), "--plot", str(tmp_path / "x.png")]) == 2
    assert "--plot" in capsys.readouterr().err
    assert main(["margin", *files]) == 2  # a PMRM_2 market with the default (grid) parameters
    assert "give parameters with [pmrm2]" in capsys.readouterr().err
    assert main(["margin", *files, "--params", str(out / "params.toml")]) == 0  # the text report
    text = capsys.readouterr().out
    assert "PMRM_2 margin of" in text and "Initial margin" in text
