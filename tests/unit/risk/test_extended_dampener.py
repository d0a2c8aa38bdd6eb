"""The extended moves' dampener (``extreme.dampener_usd``): an extreme move of k ranges brings the account's counted
P&L (after its cover) toward zero by ``(|k| - 1) x dampener``, at most to zero, as third-party calculators read
Deribit's ``extended_dampener``; documents without it keep their bytes, hash and margins."""

from __future__ import annotations

import dataclasses
import json
import pathlib
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pmoracle.config.params import default_params_text
from pmoracle.risk import kernel
from pmoracle.risk.inputs import MONEY_SCALE, SIZE_SCALE, MarketSnapshot, Portfolio, Position
from pmoracle.risk.margin import Book, compute_account_report, compute_counted_pnl
from pmoracle.risk.params import RiskParams, parse_params

from .factories import EXPIRIES, T0, account, make_market, option, params_problems, with_table_lines
from .test_deribit_published import EXTENDED, SCALE, TOLERANCE, _book, _case, _relative

ROOT = pathlib.Path(__file__).resolve().parents[3]
PRESETS = ROOT / "examples" / "params"
DERIBIT = (PRESETS / "deribit-pm.toml").read_text()
VECTORS = sorted((ROOT / "tests" / "vectors" / "deribit_pme").glob("*.json"))
# Every document's paramsHash on main before the field existed (pmoracle params check FILE, d77026f).
HASHES_BEFORE = {
    "concentration.toml": "51af550862c80a183d39697b74adda0dc182bf4d55bda5cc93fcb2f68e0f8451",
    "deribit-pm.toml": "c4fc2fde1a666d725395eae464439cfdd39783b7e0bc8e6dbf20afa8be449072",
    "deribit9x3.toml": "4803bde8dcc92b81b82957554123901b2de693125ff6456d18f3b29720adf49e",
    "derive-pmrm2.toml": "455eb7c8c4e03d3172865b4eaef0b05333829e8571fd966da056172752138057",
    "span16.toml": "db2bdd57ec0e81561ce43591645bffacd1cbfcbade0397da9d9658ecb5ae5fcd",
    "stress.toml": "7c3e22dcb16816ea25d64d9e6d341395f63a07ed16a0df38cb782fae9a38d574",
    "default": "4eea06a9495d7593c8308446561ae0883c9605f368f91103e2f3989523f57117",
}
# One underlying: every extended scenario moves it by its own extreme move (no joint modes)
BTC_ONLY = MarketSnapshot(time=T0, underlyings=(make_market().underlyings[0],))
# Deribit's extended_dampener of its USD currency (both published responses' model_params.currency.usd)
USD_DAMPENER = "25000"


def dampened(text: str, usd: str = USD_DAMPENER) -> RiskParams:
    return parse_params(with_table_lines(text, "extreme", f'dampener_usd = "{usd}"\n'))


@pytest.mark.parametrize("name", sorted(HASHES_BEFORE))
def test_a_document_without_the_field_keeps_its_bytes_and_hash(name: str) -> None:
    text = default_params_text() if name == "default" else (PRESETS / name).read_text()
    params = parse_params(text)
    assert params.extreme_dampener is None
    assert params.params_hash.hex() == HASHES_BEFORE[name]
    assert b"dampener" not in params.canonical_bytes
    zero = parse_params(with_table_lines(text, "extreme", 'dampener_usd = "0"\n'))  # 0 is no dampener
    assert (zero.canonical_bytes, zero.params_hash) == (params.canonical_bytes, params.params_hash)


def test_the_dampener_is_in_the_canonical_bytes_and_the_hash() -> None:
    params = dampened(DERIBIT)
    assert params.extreme_dampener == 25_000 * MONEY_SCALE
    assert b'"extreme_dampener":2500000000000' in params.canonical_bytes
    assert params.params_hash != parse_params(DERIBIT).params_hash
    assert dampened(DERIBIT, "25000.00000001").extreme_dampener == 25_000 * MONEY_SCALE + 1


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ('"-1"', "extreme.dampener_usd: '-1' is outside [0, 1000000000]"),
        ('"1000000001"', "extreme.dampener_usd: '1000000001' is outside [0, 1000000000]"),
        ('"0.000000001"', "extreme.dampener_usd: 1/1000000000 has more than 8 decimals"),
        ("25000.5", "extreme.dampener_usd: expected an exact rational"),
        ('"lots"', "extreme.dampener_usd: 'lots' is not a rational number"),
    ],
)
def test_bad_values_are_refused_naming_the_field(value: str, problem: str) -> None:
    problems = params_problems(with_table_lines(DERIBIT, "extreme", f"dampener_usd = {value}\n"))
    assert any(p.startswith(problem) for p in problems), problems


def test_each_extended_moves_amount_is_the_moves_ranges_beyond_the_first_times_the_dampener() -> None:
    params = dampened(DERIBIT)
    book = Book(make_market(), params, [Portfolio(account=account(1))])
    scenarios = book.scenarios
    assert scenarios.is_dampened
    together = [s for s in range(len(scenarios)) if not scenarios.labels[s].startswith(("alone", "opposite"))]
    extended = [s for s in together if scenarios.is_extreme[s]]
    assert len(extended) == 8
    for s, k in zip(extended, params.extreme_moves, strict=True):  # -66% is 33/8 ranges: 3.125 x 25,000 USD
        assert int(scenarios.damp[s]) == (abs(k) - 1) * 25_000 * MONEY_SCALE
    assert int(scenarios.damp[extended[0]]) == 78_125 * MONEY_SCALE
    assert all(int(scenarios.damp[s]) == 0 for s in range(len(scenarios)) if not scenarios.is_extreme[s])
    assert not Book(make_market(), parse_params(DERIBIT), [Portfolio(account=account(1))]).scenarios.is_dampened


@given(st.integers(-(2**62), 2**62), st.integers(0, 39 * 10**17))
def test_dampening_moves_toward_zero_and_never_crosses_it(loss: int, d: int) -> None:
    got = kernel._dampened.py_func(loss, d)
    assert abs(got) == max(abs(loss) - d, 0)
    assert got * loss >= 0  # a loss never becomes a gain, nor a gain a loss
    assert kernel._dampened(loss, d) == got  # the compiled kernel's


def _short_puts(params: RiskParams) -> Book:
    """Return a book of 10 short far out-of-the-money BTC puts, whose worst loss is an extended crash."""
    put = option("BTC", EXPIRIES[2], 40_000.0, call=False)
    portfolio = Portfolio(positions=(Position(put, -10 * SIZE_SCALE),), account=account(1))
    return Book(BTC_ONLY, dataclasses.replace(params, roll_shock=None), [portfolio])


def _pnl(book: Book) -> list[int]:
    """Return account 0's P&L per scenario (MONEY)."""
    pnl = [0] * len(book.scenarios)
    for i, q in book.positions_of(0):
        for s in range(len(pnl)):
            pnl[s] += q * int(book.arrays.r[i, s])
    return pnl


def test_the_dampener_lowers_an_extended_worst_loss_by_exactly_its_amount() -> None:
    plain = _short_puts(parse_params(DERIBIT)).account_margin(0)
    s = plain.worst_scenario
    k = Fraction(-33, 8)  # -66%: the crash
    for usd in ("1", "10", "0.00000007"):
        book = _short_puts(dampened(DERIBIT, usd))
        assert book.scenarios.is_extreme[s] and f"{-66.0:+.1f}%" in book.scenarios.labels[s]
        amount = int(book.scenarios.damp[s])
        assert amount == (Fraction(usd) * MONEY_SCALE * (abs(k) - 1)) // 1  # 0.00000007 x 3.125: 21 of 21.875
        margin = book.account_margin(0)
        assert (margin.worst_scenario, margin.maintenance_margin) == (s, plain.maintenance_margin - amount)
    # a dampener larger than every extended loss: the margin is the standard table's worst loss plus the add-on
    book = _short_puts(dampened(DERIBIT))
    margin = book.account_margin(0)
    assert not book.scenarios.is_extreme[margin.worst_scenario]
    pnl = _pnl(book)
    standard = max(-p for p, e in zip(pnl, book.scenarios.is_extreme, strict=True) if not e)
    assert margin.maintenance_margin == standard + 10 * SIZE_SCALE * int(book.arrays.addon[0])
    counted = compute_counted_pnl(pnl, book.scenarios)
    assert max(0, -min(counted)) == standard
    assert all(c == 0 for c, e in zip(counted, book.scenarios.is_extreme, strict=True) if e)


def test_the_report_shows_the_counted_pnl_only_with_a_dampener() -> None:
    market = BTC_ONLY
    put = option("BTC", EXPIRIES[2], 40_000.0, call=False)
    portfolio = Portfolio(positions=(Position(put, -10 * SIZE_SCALE),), account=account(1))
    report = compute_account_report(market, parse_params(DERIBIT), portfolio)
    assert report.counted_risk_array is None
    damped = compute_account_report(market, dampened(DERIBIT, "1"), portfolio)
    assert damped.counted_risk_array is not None and damped.roll_shock == report.roll_shock
    assert damped.risk_array == report.risk_array  # the raw P&L: the dampener acts on what MM counts only
    worst = damped.worst_scenario
    assert report.worst_scenario == worst
    assert damped.counted_risk_array[worst] == report.risk_array[worst] * 8 // 33 + 3_125 * MONEY_SCALE // 1000
    addon = damped.maintenance_margin - damped.roll_shock + min(damped.counted_risk_array)
    assert addon == 10 * SIZE_SCALE * int(Book(market, parse_params(DERIBIT), [portfolio]).arrays.addon[0])


def _nearest_book(case: dict[str, object], params: RiskParams) -> Book:
    """Return the case's book at the engine's nearest 4-decimal sizes (not scaled: the dampener is a fixed amount)."""
    book, sizes, _ = _book(case)  # type: ignore[arg-type]
    positions = tuple(
        Position(p.instrument, round(q * SIZE_SCALE)) for p, q in zip(book.portfolios[0].positions, sizes, strict=True)
    )
    return Book(book.market, params, [Portfolio(positions=positions, account=account(1))])


@pytest.mark.parametrize("path", VECTORS, ids=lambda p: p.stem)
@pytest.mark.parametrize("which", ["usd_extended_dampener", "extended_dampener"])
def test_deribits_published_aggregated_vectors(path: pathlib.Path, which: str) -> None:
    """Deribit's ``aggregated_risk_vectors`` (after ``pnl_offset`` and ``extended_dampener``): its 8 extended values
    are 0 in both responses, where the instruments' values before them are losses on one side and gains on the other.
    The engine, with the dampener at the responses' USD value (25,000) or at the coin currency's value read as USD
    (100,000 BTC, 200,000 ETH), counts each of the 8 as 0 too. Deribit's standard aggregate is the instruments' sum,
    its gains times ``pnl_offset`` (not expressed)."""
    case = _case(path)
    model, expected = case["model_params"], case["expected"]
    (published,) = expected["aggregated_risk_vectors"].values()
    pre = [Fraction(0)] * 35
    for name in case["positions"]:
        vector = expected["initial_risk_vectors"][name]
        pre = [a + Fraction(b) for a, b in zip(pre, vector["standard"] + vector["extended"], strict=True)]
    offset = Fraction(model["pnl_offset"])
    for s, value in enumerate(published["standard"]):
        want = pre[s] if pre[s] <= 0 else offset * pre[s]
        assert _relative(Fraction(value), want) < TOLERANCE, (s, value, float(want))
    assert [Fraction(v) for v in published["extended"]] == [0] * 8
    assert min(pre[27:]) < 0 < max(pre[27:])  # dampened to 0 in both directions
    plain_params = _book(case)[0].params
    text = DERIBIT.replace("[extreme]\n", f'[extreme]\ndampener_usd = "{model[which]}"\n', 1)
    params = dataclasses.replace(plain_params, extreme_dampener=parse_params(text).extreme_dampener)
    damped, plain = _nearest_book(case, params), _nearest_book(case, plain_params)
    counted, undamped = (
        compute_counted_pnl(_pnl(damped), damped.scenarios),
        compute_counted_pnl(_pnl(plain), plain.scenarios),
    )
    assert counted[27:] == [0] * 8
    assert min(undamped[27:]) < 0 < max(undamped[27:])
    for s in range(27, 35):  # a few hundred (ETH) or thousand (BTC) USD, far below each move's amount
        assert 0 < abs(undamped[s]) < int(damped.scenarios.damp[s])
    assert counted[:27] == undamped[:27]
    assert damped.account_margin(0).maintenance_margin == plain.account_margin(0).maintenance_margin


def test_the_published_data_bounds_the_amount_from_below_only() -> None:
    """What the two responses pin: each extended scenario's dampening is at least its counted |P&L| (a few hundred to a
    few thousand USD), so every dampener from about 3,100 USD up reproduces them under the calculators' reading; the
    formula, the unit and which currency's value applies are not pinned."""
    smallest = []
    for path in VECTORS:
        case = _case(path)
        book, _, _ = _book(case)
        counted = compute_counted_pnl(_pnl(book), book.scenarios)
        moves = [Fraction(m) / Fraction(case["model_params"]["price_range"]) for m in EXTENDED]
        # the least dampener reproducing the zeros: max over the extended moves of |counted| / (|k| - 1), per book
        need = max(Fraction(abs(counted[27 + j]), SCALE) / (abs(k) - 1) for j, k in enumerate(moves))
        smallest.append(need / MONEY_SCALE)
    assert all(n < 25_000 for n in smallest)
    print("least dampener (USD) reproducing each response:", ", ".join(f"{float(n):,.2f}" for n in smallest))


def test_risk_arrays_json_lists_each_scenarios_amount_only_with_a_dampener() -> None:
    from pmoracle.commands.risk_arrays import arrays_to_json

    market = make_market()
    for params in (parse_params(DERIBIT), dampened(DERIBIT)):
        book = Book(market, params, [Portfolio(positions=(Position(option("BTC", EXPIRIES[2], 40_000.0, False),
                                                                   SIZE_SCALE),), account=account(1))])  # fmt: skip
        doc = json.loads(json.dumps(arrays_to_json(book.arrays, market, params)))
        has = [("dampener_usd" in s) for s in doc["scenarios"]]
        assert all(has) == (params.extreme_dampener is not None) and (any(has) == all(has))
        if params.extreme_dampener is not None:
            assert doc["scenarios"][27]["dampener_usd"] == "78125.00000000"  # -66%: 3.125 x 25,000
            assert doc["scenarios"][0]["dampener_usd"] == "0.00000000"
            assert "dampener_usd" in doc["units"]
