"""``pmoracle policy``: the adaptive margin policy's scan-range path over an index history (docs/policy.md).

Reads a CSV history of one underlying (``time,price`` and, when the policy sizes vol shocks, ``iv``), or the
``IndexSet`` logs of a deployment's ``MarketFeeds`` (``--rpc URL --deployment FILE``, sampled as a node samples
them), runs the pure state machine of :mod:`pmoracle.risk.policy` over it and prints the path: a table, or one
JSON object with ``--json``, and a PNG with ``--plot``. A history with a gap, a time out of order, a non-positive
price or an unreadable cell (or a chain index stale at a sampling point) is refused with status 2 and one message
naming the row (the sampling point); nothing is printed then.
"""

from __future__ import annotations

import argparse
import csv
import json
import pathlib
import sys
from importlib import resources
from typing import TYPE_CHECKING, Any

from pmoracle.errors import InputError
from pmoracle.files import read_text

if TYPE_CHECKING:
    from fractions import Fraction

    from pmoracle.risk.params import PolicyParams
    from pmoracle.risk.policy import PolicyState, Sample

DEFAULT_POLICY_RESOURCE = "default_policy.toml"
COLUMNS = ("time", "price", "iv")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the policy sub-command's arguments."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--history",
        type=pathlib.Path,
        metavar="FILE.csv",
        help="index history: a header row time,price[,iv]; time in unix seconds or ISO-8601 UTC, price in USD, "
        "iv as a fraction (0.55 = 55%%); one row per sampling point, no gaps",
    )
    source.add_argument(
        "--rpc",
        action="append",
        metavar="URL",
        help="read the index history from MarketFeeds IndexSet logs at this JSON-RPC endpoint (repeat for "
        "fallbacks); needs --deployment",
    )
    parser.add_argument("--deployment", type=pathlib.Path, metavar="FILE", help="with --rpc: the deployment JSON")
    parser.add_argument(
        "--to-block", type=int, metavar="B", help="with --rpc: read up to block B, as a round anchored at B (latest)"
    )
    parser.add_argument(
        "--max-age",
        type=int,
        metavar="SECONDS",
        help="with --rpc: the index must be this fresh at every sampling point (default: the document's "
        "max_feed_age_seconds, else one sampling interval)",
    )
    parser.add_argument(
        "--params",
        type=pathlib.Path,
        metavar="FILE.toml",
        help="a parameters document with a [policy] section (default: the bundled pmoracle/config/default_policy.toml)",
    )
    parser.add_argument("--underlying", default="BTC", help="the underlying's symbol, bound into the state (BTC)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    parser.add_argument("--plot", type=pathlib.Path, metavar="OUT.png", help="write the price and scan-range path")


def run(args: argparse.Namespace) -> int:
    """Compute and print the policy path of one history.

    Args:
        args: ``history`` or ``rpc`` with ``deployment`` (and optional ``to_block``, ``max_age``), ``params``
            (optional), ``underlying``, ``json``, ``plot`` (optional).

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) for an unreadable file or a bad row, naming the row, or a chain history
        that cannot be read or sampled; ``ParamsError`` for an invalid or missing ``[policy]`` section.
    """
    from pmoracle.risk.policy import HistoryError, compute_policy_path

    if not (args.underlying.isascii() and args.underlying.isalnum() and args.underlying.isupper()):
        raise InputError("--underlying", f"{args.underlying!r} is not an upper-case symbol")
    params = load_policy(args.params).for_underlying(args.underlying)  # its [policy.underlying.SYM] applied
    if args.rpc is not None:
        samples, source = read_chain_history(args, params)
        where = "sampling point"
    else:
        for option in ("deployment", "to_block", "max_age"):
            if getattr(args, option) is not None:
                raise InputError(f"--{option.replace('_', '-')}", "is used with --rpc only")
        samples = read_history(args.history, with_iv=params.vol is not None)
        source, where = args.history.name, f"{args.history} row"
    try:
        path = compute_policy_path(params, args.underlying, samples)
    except HistoryError as exc:
        raise InputError(f"{where} {exc.index + 1}", exc.message) from None
    if not path:
        raise InputError(str(args.history or "--rpc"), "the history has no sampling point")
    if args.plot is not None:
        write_plot(args.plot, params, path, title=f"{args.underlying} — {source}")
    output = json.dumps(path_to_json(params, path), indent=2) if args.json else format_path(params, path)
    sys.stdout.write(output + "\n")
    return 0


def load_policy(path: pathlib.Path | None) -> PolicyParams:
    """Return the ``[policy]`` section of the document at ``path`` (or of the bundled default).

    Errors:
        ``InputError`` naming ``--params`` when the file cannot be read; ``ParamsError`` when the section is
        missing or invalid.
    """
    from pmoracle.risk.errors import ParamsError
    from pmoracle.risk.params import parse_policy_params

    if path is None:
        text = resources.files("pmoracle.config").joinpath(DEFAULT_POLICY_RESOURCE).read_text(encoding="utf-8")
        where = DEFAULT_POLICY_RESOURCE
    else:
        text = read_text(path, "--params")
        where = str(path)
    try:
        policy = parse_policy_params(text)
    except ParamsError as exc:
        raise ParamsError([f"{where}: {problem}" for problem in exc.problems]) from None
    if policy is None:
        raise ParamsError([f"{where}: policy: missing (the document has no [policy] section)"])
    return policy


def read_chain_history(args: argparse.Namespace, params: PolicyParams) -> tuple[list[Sample], str]:
    """Return the samples of ``args.underlying``'s on-chain index up to ``--to-block`` and a title for them.

    The samples are the ones a node derives for a round anchored at that block (the sampling points strictly before
    its timestamp, from the ``IndexSet`` logs at or before it; with ``[policy.vol]`` each sample's implied vol from
    the ``SmileSet`` logs, at the document's ``vol.tenor_days``).

    Errors:
        ``InputError`` naming the option for a missing deployment, an unreachable chain, a block beyond the head,
        a ``[policy.vol]`` document without ``vol.tenor_days``, no update of the underlying, or a stale index or
        smile at a sampling point.
    """
    from pmoracle.chain.errors import ChainError
    from pmoracle.chain.index_history import read_index_updates, read_smile_updates
    from pmoracle.commands.chain_args import connect
    from pmoracle.risk.policy import HistoryError, Sample, compute_track_samples, start_track

    if args.deployment is None:
        raise InputError("--deployment", "is required with --rpc")
    tenor = None if params.vol is None else document_tenor_seconds(args.params)
    max_age = args.max_age if args.max_age is not None else document_max_age(args.params, params)
    if max_age <= 0:
        raise InputError("--max-age", f"must be positive, got {max_age}")
    client, deployment = connect(args.rpc, args.deployment)
    try:
        head = client.block_number()
        block = head if args.to_block is None else args.to_block
        if not 0 <= block <= head:
            raise InputError("--to-block", f"{block} is not a block of the chain (head {head})")
        header = client.get_block(block)
        feeds = deployment.contracts["MarketFeeds"]
        updates = read_index_updates(client, feeds, block, from_block=deployment.deploy_block,
                                     underlying=args.underlying)  # fmt: skip
        smiles = [] if tenor is None else [
            u.quote for u in read_smile_updates(client, feeds, block, from_block=deployment.deploy_block,
                                                underlying=args.underlying)
        ]  # fmt: skip
    except ChainError as exc:
        raise InputError("--rpc", f"cannot read the index history: {exc}") from None
    if not updates:
        raise InputError("--underlying", f"{args.underlying} has no IndexSet log up to block {block}")
    history = [Sample(time=u.time, price=u.price) for u in updates]
    try:
        samples = compute_track_samples(params, start_track(args.underlying), history, header.timestamp, max_age,
                                        smiles, tenor)  # fmt: skip
    except HistoryError as exc:
        raise InputError(f"{args.underlying} on chain", exc.message) from None
    source = "IndexSet" if tenor is None else "IndexSet and SmileSet"
    return samples, f"MarketFeeds {source} logs up to block {block}"


def document_tenor_seconds(path: pathlib.Path | None) -> Fraction:
    """Return the document's ``vol.tenor_days`` in seconds, exact: the tenor of a ``[policy.vol]``'s IV samples.

    Errors: ``InputError`` naming ``--params`` when the document has none (a node reads it from its whole document).
    """
    import tomllib

    from pmoracle.risk.policy import compute_iv_tenor_seconds

    value = None if path is None else tomllib.loads(read_text(path, "--params")).get("vol", {}).get("tenor_days")
    if not isinstance(value, int | float) or isinstance(value, bool) or not value > 0:
        raise InputError("--params", "[policy.vol] on chain needs the document's vol.tenor_days (a positive number)")
    return compute_iv_tenor_seconds(float(value))  # as RiskParams reads it: a float


def document_max_age(path: pathlib.Path | None, params: PolicyParams) -> int:
    """Return the document's ``max_feed_age_seconds`` (the node's staleness rule), else one sampling interval."""
    import tomllib

    if path is not None:
        value = tomllib.loads(read_text(path, "--params")).get("max_feed_age_seconds")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return params.sample_interval_seconds


def read_history(path: pathlib.Path, with_iv: bool) -> list[Sample]:
    """Return the samples of a CSV history; each cell is read exactly (no rounding).

    Args:
        path: the CSV file; its header names the columns (``time``, ``price``, and ``iv`` when ``with_iv``).
        with_iv: whether the policy needs the implied-vol column.

    Errors:
        ``InputError`` naming the file and row (row 1 is the first data row) for a missing column, an unreadable
        cell, or a non-positive price (the order of times and gaps are checked by the policy itself).
    """
    from pmoracle.risk.documents import parse_utc_time, to_fixed
    from pmoracle.risk.inputs import PRICE_DECIMALS, WAD_DECIMALS
    from pmoracle.risk.policy import Sample

    rows = list(csv.reader(read_text(path, "--history").splitlines()))
    if not rows:
        raise InputError(str(path), "empty file: expected a header row time,price[,iv]")
    header = [cell.strip().lower() for cell in rows[0]]
    wanted = ("time", "price", "iv") if with_iv else ("time", "price")
    missing = [name for name in wanted if name not in header]
    if missing:
        raise InputError(f"{path} header", f"missing column(s) {', '.join(missing)} (found {', '.join(header)})")
    unknown = [name for name in header if name not in COLUMNS]
    if unknown or len(set(header)) != len(header):
        raise InputError(f"{path} header", f"unknown or repeated column(s) in {', '.join(header)}")
    at = {name: header.index(name) for name in wanted}
    samples = []
    for row_number, row in enumerate(rows[1:], start=1):
        field = f"{path} row {row_number}"
        if not any(cell.strip() for cell in row):
            raise InputError(field, "empty row")
        if len(row) != len(header):
            raise InputError(field, f"{len(row)} cells, the header has {len(header)}")
        try:
            time_cell = row[at["time"]].strip()
            time = parse_utc_time(int(time_cell) if time_cell.isdigit() else time_cell, "time")
            price = to_fixed(row[at["price"]].strip(), PRICE_DECIMALS, "price")
            iv = to_fixed(row[at["iv"]].strip(), WAD_DECIMALS, "iv") if with_iv else 0
        except InputError as exc:
            raise InputError(field, f"{exc.field}: {exc.message}") from None
        if price <= 0:
            raise InputError(field, f"price {row[at['price']].strip()} is not positive")
        if with_iv and iv <= 0:
            raise InputError(field, f"iv {row[at['iv']].strip()} is not positive")
        samples.append(Sample(time=time, price=price, iv=iv))
    return samples


# --- output -----------------------------------------------------------------------------------------------------


def format_fraction(value: int) -> str:
    """Return a RANGE_SCALE fraction as an exact decimal string (``0.153000000``)."""
    from pmoracle.risk.policy import RANGE_SCALE

    return f"{value // RANGE_SCALE}.{value % RANGE_SCALE:09d}"


def format_price(value: int) -> str:
    """Return a PRICE_SCALE price as an exact decimal string."""
    from pmoracle.risk.inputs import PRICE_DECIMALS, PRICE_SCALE

    return f"{value // PRICE_SCALE}.{value % PRICE_SCALE:0{PRICE_DECIMALS}d}"


def state_to_json(params: PolicyParams, state: PolicyState) -> dict[str, Any]:
    """Return one sample's entry of ``--json``: fractions and prices as exact decimal strings."""
    from pmoracle.risk.naming import format_utc_time
    from pmoracle.risk.policy import (
        compute_annual_vol,
        compute_base_range,
        compute_floor_range,
        compute_target_range,
    )

    return {
        "time": state.time,
        "time_utc": format_utc_time(state.time),
        "price": format_price(state.price),
        "ewma_vol": format_fraction(compute_annual_vol(params, state.variance)),
        "scan_range": format_fraction(state.scan_range),
        "state": {
            "count": state.count,
            "base_range": format_fraction(compute_base_range(params, state.variance)),
            "floor_range": format_fraction(compute_floor_range(params, state)),
            "stressed_vol": format_fraction(compute_annual_vol(params, state.stressed_variance)),
            "buffer": format_fraction(state.buffer_level),
            "stress": state.stressed,
            "target_range": format_fraction(compute_target_range(params, state)),
            "vol_shift": format_fraction(state.vol_shift),
            "hash": "0x" + state.state_hash.hex(),
        },
    }


def path_to_json(params: PolicyParams, path: list[PolicyState]) -> dict[str, Any]:
    """Return the JSON object of ``--json``: the path and the last state's checkpoint (its canonical bytes)."""
    last = path[-1]
    return {
        "underlying": last.underlying,
        "policy_hash": "0x" + params.policy_hash.hex(),
        "units": {
            "ewma_vol": "annualised, fraction",
            "scan_range": "fraction of the price",
            "buffer": "fraction of the base range",
            "vol_shift": "relative vol shift at the reference tenor (0: the document's vol.shift)",
        },
        "samples": [state_to_json(params, state) for state in path],
        "checkpoint": "0x" + last.canonical_bytes.hex(),
    }


def format_path(params: PolicyParams, path: list[PolicyState]) -> str:
    """Return the path as a table, one row per sample."""
    from pmoracle.risk.naming import format_utc_time
    from pmoracle.risk.policy import RANGE_SCALE, compute_annual_vol, compute_base_range, compute_floor_range

    last = path[-1]
    lines = [
        f"Policy path of {last.underlying}: {len(path)} samples every {params.sample_interval_seconds} s, "
        f"horizon {params.horizon_seconds} s, policy 0x{params.policy_hash.hex()[:16]}…",
        f"{'time (UTC)':<22}{'price':>16}{'ewma vol':>10}{'base':>9}{'floor':>9}{'buffer':>8}{'stress':>8}"
        f"{'range':>9}{'vol shift':>11}",
    ]
    for s in path:
        lines.append(
            f"{format_utc_time(s.time):<22}{format_price(s.price):>16}"
            f"{compute_annual_vol(params, s.variance) / RANGE_SCALE:>10.2%}"
            f"{compute_base_range(params, s.variance) / RANGE_SCALE:>9.2%}"
            f"{compute_floor_range(params, s) / RANGE_SCALE:>9.2%}{s.buffer_level / RANGE_SCALE:>8.0%}"
            f"{'yes' if s.stressed else '':>8}{s.scan_range / RANGE_SCALE:>9.2%}{s.vol_shift / RANGE_SCALE:>11.2%}"
        )
    lines.append(f"state hash 0x{last.state_hash.hex()}")
    return "\n".join(lines)


def write_plot(path: pathlib.Path, params: PolicyParams, states: list[PolicyState], title: str) -> None:
    """Write a PNG: the price above, the applied scan range with its base and floor below, stress shaded.

    Errors: ``InputError`` naming ``--plot`` if the file cannot be written.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pmoracle.risk.inputs import PRICE_SCALE
    from pmoracle.risk.policy import RANGE_SCALE, compute_base_range, compute_floor_range

    days = [(s.time - states[0].time) / 86400 for s in states]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6.5), sharex=True, layout="constrained")
    top.plot(days, [s.price / PRICE_SCALE for s in states], color="black", linewidth=1.0)
    top.set_ylabel("index (USD)")
    top.set_title(title, loc="left", fontsize=10)
    pct = 100 / RANGE_SCALE
    bottom.plot(days, [compute_base_range(params, s.variance) * pct for s in states], label="base (EWMA)", lw=0.8)
    if params.floor is not None:
        floor = [compute_floor_range(params, s) * pct for s in states]
        bottom.plot(days, floor, label="stressed floor", lw=0.8, linestyle="--")
    bottom.plot(days, [s.scan_range * pct for s in states], label="applied scan range", color="black", lw=1.4)
    half = params.sample_interval_seconds / 86400 / 2
    start = None
    for i, s in enumerate([*states, None]):  # shade each run of stressed samples once
        if s is not None and s.stressed and start is None:
            start = i
        elif (s is None or not s.stressed) and start is not None:
            bottom.axvspan(days[start] - half, days[i - 1] + half, color="red", alpha=0.12, linewidth=0)
            start = None
    bottom.set_ylabel("scan range (% of price)")
    bottom.set_xlabel("days since the first sample (stress shaded)")
    bottom.legend(loc="upper left", fontsize=8)
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise InputError("--plot", f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(fig)
