"""The JSON Schema of the parameters document and the engine's parser agree on every field: the same fields, the
same required ones, the same types and the same bounds (rationals' bounds are the schema's ``x-range``)."""

from __future__ import annotations

import copy
import json
import tomllib
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from pmoracle.config.params import check_params_schema, default_params_text, params_schema
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import parse_params

ROOT = Path(__file__).resolve().parents[3]
POLICY = (ROOT / "src" / "pmoracle" / "config" / "default_policy.toml").read_text(encoding="utf-8")
PRESETS = sorted((ROOT / "examples" / "params").glob("*.toml"))
PMRM2 = tomllib.loads((ROOT / "examples" / "params" / "derive-pmrm2.toml").read_text(encoding="utf-8"))["pmrm2"]
STRESS = (ROOT / "examples" / "params" / "stress.toml").read_text(encoding="utf-8")
CONCENTRATION = (ROOT / "examples" / "params" / "concentration.toml").read_text(encoding="utf-8")
# Tables keyed by free names (symbols, stress names): one field each, as the schema describes them.
FREE_KEY_TABLES = (
    "price.scan_range_by_underlying", "vol.shift_by_underlying", "policy.underlying", "pmrm2.collateral",
    "stress.adv", "stress.daily_vol", "stress.scenarios", "concentration.adv", "concentration.daily_vol",
    "roll_shock.min_move", "roll_shock.annual_move",
)  # fmt: skip


def dump_toml(doc: dict[str, Any]) -> str:
    """Return a TOML text of ``doc`` (tables of scalars and lists: all a parameters document holds)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return json.dumps(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):  # an inline table in a list (pmrm2.scenarios)
            return "{ " + ", ".join(f"{json.dumps(k)} = {value(x)}" for k, x in v.items()) + " }"
        return repr(v)

    def table(prefix: str, node: dict[str, Any]) -> Iterator[str]:
        scalars = {k: v for k, v in node.items() if not isinstance(v, dict)}
        if prefix:
            yield f"[{prefix}]"
        yield from (f"{json.dumps(k)} = {value(v)}" for k, v in scalars.items())
        for k, v in node.items():
            if isinstance(v, dict):
                yield from table(f"{prefix}.{k}" if prefix else k, v)

    return "\n".join(table("", doc)) + "\n"


def full_document() -> dict[str, Any]:
    """Return a document with every field: the default, an override, the policy with every section, PMRM_2, the
    stress, the concentration add-on, the extended moves' vol state, cover scaling and dampener, and the roll shock."""
    doc = tomllib.loads(default_params_text())
    head, vol = POLICY.split("# [policy.vol]")
    policy = tomllib.loads(head + "[policy.vol]" + vol.replace("# ", ""))  # the commented-out section, enabled
    policy["policy"]["underlying"] = {"ETH": {"sigmas": "4", "seed_vol": "0.8", "max_step_up": "0.05"}}
    doc.update(policy)
    doc["pmrm2"] = copy.deepcopy(PMRM2)
    doc["stress"] = tomllib.loads(STRESS)["stress"]
    doc["concentration"] = tomllib.loads(CONCENTRATION)["concentration"]
    doc["extreme"].update(vol_shock="1", cover_scaling="inverse_move", dampener_usd="25000")  # the optional fields
    doc["roll_shock"] = {"min_move": {"BTC": "0.01", "ETH": "0.005"}, "annual_move": {"BTC": "0.075", "ETH": "0.05"}}
    doc["vol"]["shift_by_underlying"] = {"BTC": 0.4}
    doc["vol"]["shift_unit"] = "relative"  # "absolute" excludes [policy.vol]
    return doc


def schema_leaves(schema: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, dict[str, Any], bool]]:
    """Yield (path, schema, required) of every field; a table of free keys counts as one field."""
    required = set(schema.get("required", ()))
    for name, sub in schema["properties"].items():
        path = f"{prefix}.{name}" if prefix else name
        if "properties" in sub:
            yield path, sub, name in required
            yield from schema_leaves(sub, path)
        else:
            yield path, sub, name in required


def document_leaves(doc: dict[str, Any], prefix: str = "") -> Iterator[str]:
    for name, value in doc.items():
        path = f"{prefix}.{name}" if prefix else name
        yield path
        if isinstance(value, dict) and path not in FREE_KEY_TABLES:
            yield from document_leaves(value, path)


def with_value(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    node[last] = value
    return out


def without(doc: dict[str, Any], path: str) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


def parser_problems(doc: dict[str, Any]) -> tuple[str, ...]:
    try:
        parse_params(dump_toml(doc))
    except ParamsError as exc:
        return exc.problems
    return ()


FULL = full_document()
SCHEMA = params_schema()
LEAVES = [(p, s, r) for p, s, r in schema_leaves(SCHEMA) if "properties" not in s]


def flat_values(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in doc.items():
        path = f"{prefix}.{name}" if prefix else name
        out[path] = value
        if isinstance(value, dict):
            out.update(flat_values(value, path))
    return out


FULL_VALUE = flat_values(FULL)


# Fields whose bound conflicts with a rule across fields at the full document's values: move the partner first.
PARTNERS: dict[str, dict[str, Any]] = {
    "vol.min_vol": {"vol.max_vol": 20.0},
    "vol.max_vol": {"vol.min_vol": 1e-4},
    "policy.decay": {"policy.buffer.slow_decay": "999999/1000000"},
    "policy.min_scan_range": {"policy.max_scan_range": "99/100"},
    "policy.max_scan_range": {"policy.min_scan_range": "1/1000000"},
    "policy.buffer.slow_decay": {"policy.decay": "1/1000000"},
    "policy.vol.min_shift": {"policy.vol.max_shift": "99/100"},
    "policy.vol.max_shift": {"policy.vol.min_shift": "1/1000"},
}


def set_field(path: str, value: Any, bound: str) -> dict[str, Any]:
    doc = FULL
    for partner, partner_value in PARTNERS.get(path, {}).items():
        doc = with_value(doc, partner, partner_value)
    if path == "policy.floor.lookback_samples" and isinstance(value, int):  # a multiple of block, <= 1024 blocks
        doc = with_value(doc, "policy.floor.block_samples", 1 if value <= 1024 else 1000)
    if path == "policy.floor.block_samples" and isinstance(value, int):
        doc = with_value(doc, "policy.floor.lookback_samples", value if bound == "max" else 1000)
    return with_value(doc, path, value)


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("path", [str(p.relative_to(ROOT)) for p in PRESETS] + ["default", "full"])
def test_the_default_the_full_document_and_every_preset_satisfy_both(path: str) -> None:
    text = {"default": default_params_text(), "full": dump_toml(FULL)}.get(path) or (ROOT / path).read_text()
    assert check_params_schema(text) == ()
    parse_params(text)


def test_the_schema_has_exactly_the_parsers_fields() -> None:
    assert {p for p, _, _ in schema_leaves(SCHEMA)} == set(document_leaves(FULL))
    for path in document_leaves(FULL):  # an unknown field next to each: both refuse it, naming it
        parent = path.rsplit(".", 1)[0] if "." in path else ""
        if parent in FREE_KEY_TABLES:
            continue
        bogus = f"{parent}.bogus" if parent else "bogus"
        doc = with_value(FULL, bogus, 1)
        assert f"{bogus}: unknown field" in check_params_schema(dump_toml(doc))
        assert f"{bogus}: unknown field" in parser_problems(doc)


@pytest.mark.parametrize(("path", "required"), [(p, r) for p, _, r in schema_leaves(SCHEMA)], ids=str)
def test_required_fields_agree(path: str, required: bool) -> None:
    doc = without(FULL, path)
    schema_says = check_params_schema(dump_toml(doc))
    parser_says = parser_problems(doc)
    assert bool(schema_says) == bool(parser_says) == required, (schema_says, parser_says)
    if required:  # the parser names each missing field of a missing table
        assert f"{path}: missing" in schema_says
        assert any(p.startswith(path) and p.endswith(": missing") for p in parser_says), parser_says


def numeric_cases() -> Iterator[tuple[str, Any, bool, str]]:
    for path, sub, _ in LEAVES:
        if sub.get("type") not in ("number", "integer"):
            continue
        lo, hi = sub["minimum"], sub["maximum"]
        if path.startswith("price.scan_range"):
            hi = 0.99  # the document's reference is "fraction"
        step = 1 if sub["type"] == "integer" else max(abs(lo), abs(hi), 1.0) * 1e-9
        yield path, lo, True, "min"
        yield path, hi, True, "max"
        yield path, lo - step, False, "min"
        yield path, hi + step, False, "max"
        yield path, "x", False, "min"


@pytest.mark.parametrize(("path", "value", "valid", "bound"), list(numeric_cases()), ids=str)
def test_numeric_bounds_and_types_agree(path: str, value: Any, valid: bool, bound: str) -> None:
    doc = set_field(path, value, bound)
    schema_says = check_params_schema(dump_toml(doc))
    parser_says = parser_problems(doc)
    assert (schema_says == ()) == valid and (parser_says == ()) == valid, (schema_says, parser_says)
    if not valid:
        assert any(p.startswith(f"{path}:") for p in schema_says), schema_says
        assert any(p.startswith(f"{path}:") for p in parser_says), parser_says


def rational_cases() -> Iterator[tuple[str, str, bool]]:
    for path, sub, _ in LEAVES:
        item = sub.get("items", sub)
        if "x-range" not in item:
            continue
        lo, hi = (Fraction(x) for x in item["x-range"])
        lo_open, hi_open = item.get("x-exclusive", (False, False))
        eps = Fraction(1, 10**9)
        yield path, str(lo + eps if lo_open else lo), True
        yield path, str(hi - eps if hi_open else hi), True
        yield path, str(lo if lo_open else lo - eps), False
        yield path, str(hi if hi_open else hi + eps), False


@pytest.mark.parametrize(("path", "value", "valid"), list(rational_cases()), ids=str)
def test_rational_ranges_are_the_parsers(path: str, value: str, valid: bool) -> None:
    is_list = isinstance(FULL_VALUE.get(path), list)
    doc = set_field(path, [value] if is_list else value, "min")
    if path in ("policy.buffer.slow_decay",) and valid:  # strictly above policy.decay
        doc = with_value(doc, "policy.decay", str(Fraction(value) / 2))
    if path == "policy.decay" and valid:  # strictly below policy.buffer.slow_decay
        doc = with_value(doc, "policy.buffer.slow_decay", str((Fraction(value) + 1) / 2))
    parser_says = parser_problems(doc)
    assert (parser_says == ()) == valid, parser_says
    if not valid:
        assert any(p.startswith(path) for p in parser_says), parser_says
    assert check_params_schema(dump_toml(doc)) == ()  # a rational string's range is the parser's


def test_a_bad_document_lists_every_problem_at_once_in_both() -> None:
    doc = with_value(FULL, "price.scan_range", 1.5)
    doc = with_value(doc, "vol.shocks", [])
    doc = with_value(doc, "joint.modes", ["sideways"])
    doc = with_value(doc, "policy.floor.weight", 0.5)  # a float where an exact rational is required
    doc = without(doc, "margin.im_multiplier")
    expected = {"price.scan_range", "vol.shocks", "joint.modes", "policy.floor.weight", "margin.im_multiplier"}
    assert {p.split(":")[0].split("[")[0] for p in check_params_schema(dump_toml(doc))} == expected
    assert {p.split(":")[0].split("[")[0] for p in parser_problems(doc)} == expected


def test_malformed_toml_is_a_params_error() -> None:
    with pytest.raises(ParamsError) as info:
        check_params_schema("version = ")
    assert info.value.problems[0].startswith("malformed TOML")


def test_pmrm2_collateral_tables_are_checked_by_both() -> None:
    doc = with_value(FULL, "pmrm2.collateral.USDC", {"im_haircut": 0.6, "mm_haircut": 0.5, "risk_cancelling": 1})
    doc = with_value(doc, "pmrm2.collateral.123", {"im_haircut": 0.0, "mm_haircut": 0.0, "risk_cancelling": True})
    schema_says = check_params_schema(dump_toml(doc))
    parser_says = parser_problems(doc)
    assert any(p.startswith("pmrm2.collateral.USDC.risk_cancelling:") for p in schema_says), schema_says
    assert any(p.startswith("pmrm2.collateral.USDC.risk_cancelling:") for p in parser_says), parser_says
    assert any(p.startswith("pmrm2.collateral.USDC.im_haircut:") for p in parser_says)  # 0.6 + 0.5 > 1: x-rule
    assert any("123" in p for p in schema_says) and any(p.startswith("pmrm2.collateral.123:") for p in parser_says)


@pytest.mark.parametrize("value", ["price", 1, ""])
def test_a_bad_step_cap_basis_is_refused_by_both_naming_it(value: Any) -> None:
    doc = with_value(FULL, "policy.step_cap_basis", value)
    assert any(p.startswith("policy.step_cap_basis:") for p in check_params_schema(dump_toml(doc)))
    assert any(p.startswith("policy.step_cap_basis:") for p in parser_problems(doc))
    assert check_params_schema(dump_toml(with_value(FULL, "policy.step_cap_basis", "margin"))) == ()
    assert parser_problems(with_value(FULL, "policy.step_cap_basis", "margin")) == ()


@pytest.mark.parametrize(
    ("override", "field"),
    [
        ({"eth": {"sigmas": "4"}}, "policy.underlying.eth"),  # not an upper-case symbol
        ({"ETH": {"decay": "0.9"}}, "policy.underlying.ETH.decay"),  # not an overridable field
        ({"ETH": {"sigmas": 30}}, "policy.underlying.ETH.sigmas"),  # outside the field's bounds
        ({"ETH": {}}, "policy.underlying.ETH"),  # an empty override
        ({"ETH": "4"}, "policy.underlying.ETH"),  # not a table
    ],
)
def test_a_bad_underlying_override_is_refused_by_both_naming_it(override: dict[str, Any], field: str) -> None:
    doc = with_value(FULL, "policy.underlying", override)
    schema_says, parser_says = check_params_schema(dump_toml(doc)), parser_problems(doc)
    # the schema names a bad table name at its parent, quoting it
    symbol = field.split(".")[2]
    assert any(p.startswith(f"{field}:") or f"'{symbol}' does not match" in p for p in schema_says), schema_says
    assert any(p.startswith(f"{field}:") for p in parser_says), parser_says


@pytest.mark.parametrize("value", ["points", 1, ""])
def test_a_bad_vol_shift_unit_is_refused_by_both_naming_it(value: Any) -> None:
    doc = with_value(FULL, "vol.shift_unit", value)
    assert any(p.startswith("vol.shift_unit:") for p in check_params_schema(dump_toml(doc)))
    assert any(p.startswith("vol.shift_unit:") for p in parser_problems(doc))
    absolute = with_value(without(FULL, "policy.vol"), "vol.shift_unit", "absolute")
    assert check_params_schema(dump_toml(absolute)) == ()
    assert parser_problems(absolute) == ()
    # with [policy.vol] (a relative shift): the parser's x-rule
    assert check_params_schema(dump_toml(with_value(FULL, "vol.shift_unit", "absolute"))) == ()
    assert any(p.startswith("vol.shift_unit:") for p in parser_problems(with_value(FULL, "vol.shift_unit", "absolute")))
