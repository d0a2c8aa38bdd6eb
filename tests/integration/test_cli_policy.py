"""``pmoracle policy`` end to end: the JSON path, the checkpoint, the plot, and histories refused naming the row."""

from __future__ import annotations

import itertools
import json
import pathlib
from fractions import Fraction
from typing import Any

import pytest

from pmoracle.cli import main
from pmoracle.commands.policy import load_policy, read_history
from pmoracle.config.params import default_params_text
from pmoracle.risk.policy import compute_policy_path, decode_policy_state

DAY = 86400
T0 = 1_700_006_400
PRICES = ["50000", "51000.5", "49000.25", "38000", "45000", "44000.12345678", "44500"]


def write_history(tmp_path: pathlib.Path, rows: list[tuple[object, ...]], header: str = "time,price") -> pathlib.Path:
    path = tmp_path / "history.csv"
    path.write_text("\n".join([header, *(",".join(str(c) for c in row) for row in rows)]) + "\n")
    return path


def good_rows() -> list[tuple[object, ...]]:
    return [(T0 + i * DAY, price) for i, price in enumerate(PRICES)]


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, Any]:
    assert main(["policy", *argv, "--json"]) == 0
    out: dict[str, Any] = json.loads(capsys.readouterr().out)
    return out


def test_json_path_and_checkpoint(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path, good_rows())
    out = run_json(capsys, "--history", str(history), "--underlying", "ETH")
    samples = out["samples"]
    assert [s["time"] for s in samples] == [T0 + i * DAY for i in range(len(PRICES))]
    assert samples[5]["price"] == "44000.12345678"  # exact, never a float
    assert set(samples[0]) == {"time", "time_utc", "price", "ewma_vol", "scan_range", "state"}
    assert samples[3]["time_utc"] == "2023-11-18T00:00:00Z"
    assert all(len(s["scan_range"].split(".")[1]) == 9 for s in samples)
    # the 22% fall on day 3 raises the range, within the default step cap of +10%
    assert float(samples[2]["scan_range"]) < float(samples[3]["scan_range"]) <= 1.1 * float(samples[2]["scan_range"])
    params = load_policy(None)
    path = compute_policy_path(params, "ETH", read_history(history, with_iv=False))
    last = decode_policy_state(params, bytes.fromhex(out["checkpoint"][2:]))
    assert last == path[-1]
    assert samples[-1]["state"]["hash"] == "0x" + last.state_hash.hex()
    assert out["policy_hash"] == "0x" + params.policy_hash.hex()


def test_text_table_and_plot(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path, good_rows())
    plot = tmp_path / "path.png"
    assert main(["policy", "--history", str(history), "--plot", str(plot)]) == 0
    out = capsys.readouterr().out
    assert "2023-11-18T00:00:00Z" in out and "state hash 0x" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_iso_times_and_an_iv_column(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    params = tmp_path / "params.toml"
    vol = '\n[policy.vol]\ndecay = "0.9"\nsigmas = "3"\nseed_vol = "1.5"\nmin_shift = "0.05"\nmax_shift = "0.9"\n'
    policy = (pathlib.Path(__file__).parents[2] / "src/pmoracle/config/default_policy.toml").read_text()
    params.write_text(default_params_text() + policy + vol)
    rows = [(f"2023-11-{15 + i}T00:00:00Z", price, "0.6" if i % 2 else "0.75") for i, price in enumerate(PRICES)]
    history = write_history(tmp_path, rows, header="time,price,iv")
    out = run_json(capsys, "--history", str(history), "--params", str(params))
    shifts = [float(s["state"]["vol_shift"]) for s in out["samples"]]
    assert min(shifts) >= 0.05 and max(shifts) <= 0.9 and len(set(shifts)) > 1


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda rows: rows[:3] + rows[4:], "row 4: time 1700352000 leaves a gap after 1700179200"),
        (lambda rows: [*rows[:3], rows[1], *rows[4:]], "row 4: time 1700092800 does not follow"),
        (lambda rows: [*rows[:2], (rows[2][0], "0"), *rows[3:]], "row 3: price 0 is not positive"),
        (lambda rows: [*rows[:2], (rows[2][0], "-3"), *rows[3:]], "row 3: price -3 is not positive"),
        (lambda rows: [*rows[:2], (rows[2][0], "abc"), *rows[3:]], "row 3: price: 'abc' is not a decimal number"),
        (lambda rows: [*rows[:2], (rows[2][0], "1.123456789"), *rows[3:]], "row 3: price: '1.123456789' has more"),
        (lambda rows: [(rows[0][0] + 1, rows[0][1]), *rows[1:]], "row 1: time 1700006401 is not a sampling point"),
    ],
    ids=["gap", "out-of-order", "zero-price", "negative-price", "not-a-number", "too-many-decimals", "off-grid"],
)
def test_bad_history_is_refused_naming_the_row(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], edit: Any, message: str
) -> None:
    history = write_history(tmp_path, edit(good_rows()))
    assert main(["policy", "--history", str(history), "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert f"{history} {message}" in captured.err


def test_missing_column_and_missing_policy(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    history = write_history(tmp_path, [(T0, 1)], header="time,close")
    assert main(["policy", "--history", str(history)]) == 2
    assert "header: missing column(s) price" in capsys.readouterr().err
    params = tmp_path / "params.toml"
    params.write_text(default_params_text())
    history = write_history(tmp_path, good_rows())
    assert main(["policy", "--history", str(history), "--params", str(params)]) == 2
    assert "no [policy] section" in capsys.readouterr().err


def test_a_margin_step_cap_bounds_range_times_price(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With step_cap_basis = "margin" the 22% fall of day 3 cannot cut the one-unit margin by more than 5%: the
    range rises past the +10% that bounds it with the range basis; a bad basis exits 2 naming the field."""
    policy = (pathlib.Path(__file__).parents[2] / "src/pmoracle/config/default_policy.toml").read_text()
    params = tmp_path / "params.toml"
    params.write_text(default_params_text() + policy.replace('step_cap_basis = "range"', 'step_cap_basis = "margin"'))
    history = write_history(tmp_path, good_rows())
    out = run_json(capsys, "--history", str(history), "--params", str(params))
    ranges = [Fraction(s["scan_range"]) for s in out["samples"]]
    margins = [r * Fraction(p) for r, p in zip(ranges, PRICES, strict=True)]
    assert all(b <= a * Fraction(11, 10) and b >= a * Fraction(95, 100) for a, b in itertools.pairwise(margins))
    assert ranges[3] > ranges[2] * Fraction(11, 10)  # 0.95 x 49000.25 / 38000 = 1.225: the range rises 22.5%
    assert margins[3] >= margins[2] * Fraction(95, 100)
    assert out["policy_hash"] != "0x" + load_policy(None).policy_hash.hex()
    params.write_text(default_params_text() + policy.replace('step_cap_basis = "range"', 'step_cap_basis = "price"'))
    assert main(["policy", "--history", str(history), "--params", str(params)]) == 2
    assert "policy.step_cap_basis: expected one of range, margin, got 'price'" in capsys.readouterr().err
