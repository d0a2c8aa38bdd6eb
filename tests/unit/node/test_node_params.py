"""A node refuses a parameters document whose margins its round cannot compute (it would attest their hash)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.config.params import default_params, default_params_text, load_params_file
from pmoracle.node.daemon import NodeStartupError, check_node_params
from pmoracle.risk.params import parse_params

ROOT = Path(__file__).resolve().parents[3]


def test_a_pmrm2_document_is_refused_naming_the_file_and_the_section() -> None:
    preset = ROOT / "examples" / "params" / "derive-pmrm2.toml"
    params = load_params_file(preset)
    assert params.pmrm2 is not None
    with pytest.raises(NodeStartupError, match=r"derive-pmrm2\.toml has a \[pmrm2\] section"):
        check_node_params(params, preset)


def test_the_grid_documents_pass() -> None:
    check_node_params(default_params(), Path("default.toml"))
    for name in ("span16.toml", "deribit-pm.toml", "stress.toml"):
        path = ROOT / "examples" / "params" / name
        check_node_params(load_params_file(path), path)


def test_a_policy_with_implied_vols_passes() -> None:
    """[policy.vol] runs in the node (its IV samples come from the SmileSet logs, docs/policy.md)."""
    from tests.unit.risk.test_policy import POLICY_TOML

    params = parse_params(default_params_text() + POLICY_TOML)
    assert params.policy is not None and params.policy.vol is not None
    check_node_params(params, Path("adaptive.toml"))
    check_node_params(parse_params(default_params_text() + POLICY_TOML.split("[policy.vol]")[0]), Path("a.toml"))


def test_an_absolute_vol_shift_is_refused_naming_the_file_and_the_field() -> None:
    """The pricing challenge recomputes vol x (1 + shock x shift): a round committing absolute shifts could be
    invalidated although honest (tests/integration/chain/test_entry_pricer.py shows it), so a node refuses it."""
    text = (ROOT / "examples" / "params" / "span16.toml").read_text()
    text = text.replace("[vol]\n", '[vol]\nshift_unit = "absolute"\n', 1)
    params = parse_params(text)
    with pytest.raises(NodeStartupError, match=r'span16-points\.toml sets vol\.shift_unit = "absolute"'):
        check_node_params(params, Path("span16-points.toml"))
    check_node_params(parse_params(text.replace('"absolute"', '"relative"')), Path("span16.toml"))


def test_an_extended_dampener_is_refused_naming_the_file_and_the_field() -> None:
    """MarginOracle.proveFraud sums each scenario's loss x cover from the committed rows: a dampened MM is below it,
    so an honest round could be proven fraudulent (tests/unit/consensus/test_commitments.py shows it)."""
    text = (ROOT / "examples" / "params" / "deribit-pm.toml").read_text()
    params = parse_params(text.replace("[extreme]\n", '[extreme]\ndampener_usd = "25000"\n', 1))
    with pytest.raises(NodeStartupError, match=r"deribit-damped\.toml sets extreme\.dampener_usd"):
        check_node_params(params, Path("deribit-damped.toml"))
    check_node_params(parse_params(text.replace("[extreme]\n", '[extreme]\ndampener_usd = "0"\n', 1)), Path("d.toml"))
