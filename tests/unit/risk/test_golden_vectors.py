"""Golden margin vectors: the engine gives exactly the committed numbers for the committed books.

Both the numba kernel and the pure-Python reference must reproduce every vector in ``tests/vectors/margin``: each
account's leaf (IM, MM, equity in the on-chain 1e18 unit), its worst scenario, and the Merkle root; and the maths
(``detmath.json``) bit for bit through the Python functions, their compiled scalar form and the kernel's vector lanes.
Kernel and reference share the scalar maths (``detmath``), so a change there moves both together and their mutual
agreement test still passes; these frozen numbers do not. When they fail and the change is intended, the engine is
a new engine: bump ``ENGINE_VERSION`` (src/pmoracle/risk/version.py) and regenerate (docs/determinism.md).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numba import njit

from pmoracle.risk.detmath import det_exp, det_log, norm_cdf
from pmoracle.risk.margin import AccountMargin, Book, BookResult
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.pricing import black76_kernel, svi_total_variance, value_options
from pmoracle.risk.reference import (
    ReferenceConcentration,
    ReferenceRoll,
    reference_account,
    reference_cash,
    reference_row,
)
from pmoracle.risk.version import ENGINE_VERSION
from tests.vectors.generate import EngineVersionError, check_margin_rewrite
from tests.vectors.margin_books import (
    DETMATH,
    MARGIN_DIR,
    MARGIN_VECTORS,
    compute_detmath_outputs,
    compute_digests,
    decode_book,
    decode_floats,
    decode_market,
    encode_floats,
    encode_outputs,
    sweep_inputs,
)

NAMES = sorted(MARGIN_VECTORS)
LEAF_FIELDS = ("initialMargin", "maintenanceMargin", "equity")
MAX_TOTAL_BYTES = 300_000
BUMP = (
    "the engine's outputs changed. If that is intended, this is a new engine: bump ENGINE_VERSION in "
    "src/pmoracle/risk/version.py, then regenerate with `python -m tests.vectors.generate` (docs/determinism.md)"
)


@cache
def load(name: str) -> dict[str, Any]:
    """Return the committed vector ``name``."""
    document: dict[str, Any] = json.loads((MARGIN_DIR / f"{name}.json").read_text())
    return document


def params_of(vector: dict[str, Any]) -> RiskParams:
    """Return the vector's parameters, checked against the paramsHash it was generated with."""
    params = parse_params("\n".join(vector["params"]["toml"]) + "\n")
    assert "0x" + params.params_hash.hex() == vector["params"]["paramsHash"], "the parameters parse differently"
    return params


def _book(vector: dict[str, Any]) -> Book:
    return Book(decode_market(vector["market"]), params_of(vector), [decode_book(b) for b in vector["books"]])


def plain_outputs(name: str, section: str = "concentration") -> list[dict[str, Any]]:
    """Return the accounts of vector ``name`` margined without its ``section`` (an optional add-on)."""
    vector = load(name)
    params = dataclasses.replace(params_of(vector), **{section: None})
    book = Book(decode_market(vector["market"]), params, [decode_book(b) for b in vector["books"]])
    accounts: list[dict[str, Any]] = encode_outputs(book.result())["accounts"]
    return accounts


def kernel_outputs(vector: dict[str, Any]) -> dict[str, Any]:
    """Return the vector's outputs as the numba kernel computes them."""
    return encode_outputs(_book(vector).result())


def reference_outputs(vector: dict[str, Any]) -> dict[str, Any]:
    """Return the vector's outputs as the pure-Python reference computes them (rows and accounts)."""
    book = _book(vector)
    params = book.params
    rows = [reference_row(book.arrays.table, book.scenarios, i) for i in range(len(book.arrays.instruments))]
    im = (params.im_multiplier.numerator, params.im_multiplier.denominator)
    arrays = book.arrays
    concentration = ReferenceConcentration(
        tuple(arrays.concentration_coef.tolist()), tuple(arrays.concentration_threshold.tolist())
    )
    roll = ReferenceRoll(tuple(arrays.roll_bucket.tolist()), tuple(arrays.roll_coef.tolist()))
    margins = []
    for a, portfolio in enumerate(book.portfolios):
        positions = book.positions_of(a)
        held = portfolio.positions
        cash = reference_cash(portfolio.cash, [p.cost for p in held], [p.funding for p in held])
        ref = reference_account(rows, positions, book.scenarios, im, params.im_min_buffer, cash, concentration, roll)
        assert ref.status == 0, f"account 0x{portfolio.account.hex()}: the reference overflowed"
        empty = not positions and cash == 0
        margins.append(
            AccountMargin(portfolio.account, ref.initial_margin, ref.maintenance_margin, ref.equity, ref.worst, empty)
        )
    return encode_outputs(BookResult(params.params_hash, book.scenarios.labels, tuple(margins)))


def compute_differences(name: str, engine: str, vector: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """Return one line per number of ``got`` that differs from the vector, naming the account and the field."""
    expected = vector["expected"]
    lines = []
    where = f"{name}.json [{engine}]"
    if got["root"] != expected["root"]:
        lines.append(f"{where}: accounts root {expected['root']} -> {got['root']}")
    if got["leafCount"] != expected["leafCount"]:
        lines.append(f"{where}: leaf count {expected['leafCount']} -> {got['leafCount']}")
    for book, want, have in zip(vector["books"], expected["accounts"], got["accounts"], strict=True):
        account = f"{where}: account {want['account']} ({book['name']})"
        if have["account"] != want["account"]:
            lines.append(f"{account}: computed for {have['account']}")
        elif (want["leaf"] is None) != (have["leaf"] is None):
            lines.append(f"{account}: leaf {want['leaf']} -> {have['leaf']}")
        elif want["leaf"] is not None:
            for field in LEAF_FIELDS:
                if have["leaf"][field] != want["leaf"][field]:
                    lines.append(f"{account}: {field} {want['leaf'][field]} -> {have['leaf'][field]}")
            for field in ("worstScenario", "worstScenarioLabel"):
                if have[field] != want[field]:
                    lines.append(f"{account}: {field} {want[field]!r} -> {have[field]!r}")
    return lines


def _check(name: str, engine: str, got: dict[str, Any], labels: tuple[str, ...] | list[str]) -> None:
    vector = load(name)
    lines = compute_differences(name, engine, vector, got)
    if list(labels) != vector["scenarios"]:
        lines.append(f"{name}.json [{engine}]: the scenario set changed ({len(vector['scenarios'])} -> {len(labels)})")
    if lines:
        pytest.fail(f"{len(lines)} golden values moved; {BUMP}:\n" + "\n".join(lines[:60]), pytrace=False)


def test_vectors_are_of_this_engine_version() -> None:
    versions = {name: load(name)["engineVersion"] for name in [*NAMES, DETMATH]}
    assert set(versions.values()) == {ENGINE_VERSION}, (
        f"ENGINE_VERSION is {ENGINE_VERSION} but the vectors were generated by {versions}: regenerate them with "
        "`python -m tests.vectors.generate`"
    )


@pytest.mark.parametrize("name", NAMES)
def test_kernel_reproduces_the_vector(name: str) -> None:
    vector = load(name)
    _check(name, "numba kernel", kernel_outputs(vector), _book(vector).scenarios.labels)


@pytest.mark.parametrize("name", NAMES)
def test_reference_reproduces_the_vector(name: str) -> None:
    vector = load(name)
    _check(name, "python reference", reference_outputs(vector), _book(vector).scenarios.labels)


def test_a_moved_number_is_named_by_account_and_field() -> None:
    vector = load("negative_equity")
    got = copy.deepcopy(vector["expected"])
    leaf = got["accounts"][1]["leaf"]
    leaf["equity"] = str(int(leaf["equity"]) - 1)
    got["accounts"][2]["worstScenario"] += 1
    lines = compute_differences("negative_equity", "test", vector, got)
    account_1, account_2 = (got["accounts"][i]["account"] for i in (1, 2))
    assert lines == [
        f"negative_equity.json [test]: account {account_1} (short ETH puts far in the money, no collateral): "
        f"equity {vector['expected']['accounts'][1]['leaf']['equity']} -> {leaf['equity']}",
        f"negative_equity.json [test]: account {account_2} (short options only, no collateral): worstScenario "
        f"{got['accounts'][2]['worstScenario'] - 1} -> {got['accounts'][2]['worstScenario']}",
    ]


def test_vectors_cover_the_books_they_claim() -> None:
    """Options, futures, perpetuals, every collateral asset, both underlyings, empty and insolvent accounts, and the
    ledger: cash of both signs, futures and perpetual costs, perpetual funding owed and received."""
    kinds, assets, underlyings = set(), set(), set()
    negative, empty = 0, 0
    cash_signs: set[int] = set()
    costs: set[str] = set()
    funding_signs: set[int] = set()
    for name in NAMES:
        vector = load(name)
        for book, out in zip(vector["books"], vector["expected"]["accounts"], strict=True):
            cash_signs.add((book["cash"] > 0) - (book["cash"] < 0))
            costs |= {p[1] for p in book["positions"] if p[5] != 0}
            funding_signs |= {(p[6] > 0) - (p[6] < 0) for p in book["positions"] if p[6] != 0}
            kinds |= {p[1] for p in book["positions"]}
            underlyings |= {p[0] for p in book["positions"]}
            assets |= {asset for asset, _ in book["collateral"]}
            negative += out["leaf"] is not None and int(out["leaf"]["equity"]) < 0
            empty += out["leaf"] is None
    assert kinds == {"CALL", "PUT", "FUTURE", "PERPETUAL"}
    assert assets == {"BTC", "DAI", "ETH", "USDC"} and underlyings == {"BTC", "ETH"}
    assert negative >= 10 and empty >= 3
    assert cash_signs == {-1, 0, 1} and costs == {"FUTURE", "PERPETUAL"} and funding_signs == {-1, 1}
    assert len(load("random")["books"]) == 50
    # the default, std scan ranges, the concentration add-on and Deribit's extended table
    assert len({load(name)["params"]["paramsHash"] for name in NAMES}) == 4
    extended = [a for a in load("deribit_extended")["expected"]["accounts"] if a["leaf"] is not None]
    assert sum("extreme" in a["worstScenarioLabel"] and "vol up" in a["worstScenarioLabel"] for a in extended) >= 10
    addon = sum(
        int(a["leaf"]["maintenanceMargin"]) > int(b["leaf"]["maintenanceMargin"])
        for a, b in zip(load("concentration")["expected"]["accounts"], plain_outputs("concentration"), strict=True)
        if a["leaf"] is not None
    )
    assert addon >= 10  # the add-on vector's books pay it
    deribit = load("deribit_extended")["expected"]["accounts"]
    rolled = sum(
        int(a["leaf"]["maintenanceMargin"]) > int(b["leaf"]["maintenanceMargin"])
        for a, b in zip(deribit, plain_outputs("deribit_extended", "roll_shock"), strict=True)
        if a["leaf"] is not None
    )
    assert rolled >= 20  # the Deribit vector's books pay the roll shock


def test_vectors_are_the_generated_set_and_small() -> None:
    files = sorted(MARGIN_DIR.glob("*.json"))
    assert [f.stem for f in files] == sorted([*NAMES, DETMATH])
    assert sum(f.stat().st_size for f in files) < MAX_TOTAL_BYTES


def test_the_generator_refuses_moved_outputs_without_a_new_engine_version(tmp_path: Path) -> None:
    committed = load("futures")
    path = tmp_path / "futures.json"
    path.write_text(json.dumps(committed))
    moved = copy.deepcopy(committed)
    moved["expected"]["root"] = "0x" + "00" * 32
    with pytest.raises(EngineVersionError, match="ENGINE_VERSION is still"):
        check_margin_rewrite(path, moved)
    check_margin_rewrite(path, committed)  # unchanged: fine
    check_margin_rewrite(path, moved | {"engineVersion": committed["engineVersion"] + 1})  # a new engine: fine
    more_books = copy.deepcopy(moved)
    more_books["books"].append(more_books["books"][0])
    check_margin_rewrite(path, more_books)  # new inputs give new outputs: fine


# --- the maths, bit for bit -----------------------------------------------------------------------------------------


@njit
def _compiled_scalars(
    exp_x: np.ndarray, log_x: np.ndarray, cdf_x: np.ndarray, svi: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Return the scalar functions compiled by numba, as the kernel inlines them."""
    exp_y, log_y, cdf_y = np.empty_like(exp_x), np.empty_like(log_x), np.empty_like(cdf_x)
    svi_y = np.empty(svi.shape[0])
    for i in range(exp_x.shape[0]):
        exp_y[i] = det_exp(exp_x[i])
    for i in range(log_x.shape[0]):
        log_y[i] = det_log(log_x[i])
    for i in range(cdf_x.shape[0]):
        cdf_y[i] = norm_cdf(cdf_x[i])
    for i in range(svi.shape[0]):
        svi_y[i] = svi_total_variance(svi[i, 0], svi[i, 1], svi[i, 2], svi[i, 3], svi[i, 4], svi[i, 5])
    return exp_y, log_y, cdf_y, svi_y


def compiled_detmath_outputs(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Return the maths vector's outputs through numba: compiled scalars, ``black76_kernel`` and the lanes."""
    exp_y, log_y, cdf_y, svi_y = _compiled_scalars(
        *(np.array(inputs[k], dtype=np.float64) for k in ("det_exp", "det_log", "norm_cdf", "svi_total_variance"))
    )
    return {
        "det_exp": exp_y.tolist(),
        "det_log": log_y.tolist(),
        "norm_cdf": cdf_y.tolist(),
        "svi_total_variance": svi_y.tolist(),
        "black76": [list(black76_kernel(*args)) for args in inputs["black76"]],
    }


def lanes_black76_outputs(inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Return Black-76 through ``value_options``: the vectorized lanes the risk kernel prices with."""
    rows = inputs["black76"]
    is_call = np.array([r[0] for r in rows], dtype=np.bool_)
    columns = [np.array([r[j] for r in rows], dtype=np.float64) for j in range(1, 6)]
    out = [np.empty(len(rows)) for _ in range(5)]
    value_options(is_call, *columns, *out)
    return {"black76": [[float(o[i]) for o in out] for i in range(len(rows))]}


def detmath_differences(path: str, got: dict[str, list[Any]]) -> list[str]:
    """Return one line per value of ``got`` whose bits differ from the maths vector, naming function and input."""
    vector = load(DETMATH)
    lines = []
    for function, values in encode_floats(got).items():
        for i, (want, have) in enumerate(zip(vector["expected"][function], values, strict=True)):
            if want != have:
                lines.append(f"detmath.json [{path}]: {function}{vector['inputs'][function][i]}: {want} -> {have}")
    return lines


def _detmath_outputs(path: str, inputs: dict[str, list[Any]]) -> dict[str, list[Any]]:
    if path == "python":
        return compute_detmath_outputs(inputs)
    if path == "numba scalar":
        return compiled_detmath_outputs(inputs)
    return lanes_black76_outputs(inputs)


PATHS = ("python", "numba scalar", "numba lanes")


@pytest.mark.parametrize("path", PATHS)
def test_the_maths_is_bit_for_bit_the_vector(path: str) -> None:
    inputs = decode_floats(load(DETMATH)["inputs"])
    lines = detmath_differences(path, _detmath_outputs(path, inputs))
    if lines:
        pytest.fail(f"{len(lines)} values changed bits; {BUMP}:\n" + "\n".join(lines[:60]), pytrace=False)


@pytest.mark.parametrize("path", PATHS)
def test_the_maths_sweep_digests_are_the_vector(path: str) -> None:
    """2**16 seeded points per function: a change that flips the last bit of one result in 10^4 still shows."""
    sweep = load(DETMATH)["sweep"]
    got = compute_digests(_detmath_outputs(path, sweep_inputs()))
    moved = [f"detmath.json [{path}]: sweep of {f}: sha256 {sweep['sha256'][f]} -> {d}" for f, d in got.items()
             if d != sweep["sha256"][f]]  # fmt: skip
    if moved:
        pytest.fail(f"{len(moved)} functions changed bits; {BUMP}:\n" + "\n".join(moved), pytrace=False)
