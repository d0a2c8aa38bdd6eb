"""Backtest of the adaptive margin policy on seeded GARCH(1,1) paths with volatility clustering (docs/policy.md).

Each path is a daily index with GARCH(1,1) variance and standardized Student-t innovations. Every policy sees the
same integer samples; the adaptive ones run the real state machine (:mod:`pmoracle.risk.policy`). Figures:

- coverage: the share of days whose realized move over the horizon, |P(t+h) / P(t) - 1|, lies inside the scan
  range set at t (all days after the warm-up, and the days of each path's stress episode alone);
- capital: the mean scan range;
- procyclicality, for the margin M(t) = range(t) x P(t) of a fixed one-unit book: the peak-to-trough ratio over
  the stress episode (the largest M(t) / M(s), s <= t, inside the 90 days around the path's largest true
  variance; median over paths) and the largest one-day rise M(t) / M(t-1) - 1 (worst path); also the largest
  one-day rise of the range itself.

The step cap bounds either the range (``step_cap_basis = "range"``) or the one-unit margin ``range x price``
(``"margin"``); the tables carry both.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from pmoracle.errors import PmoracleError
from pmoracle.risk.inputs import PRICE_SCALE
from pmoracle.risk.params import BufferParams, FloorParams, PolicyParams
from pmoracle.risk.policy import RANGE_SCALE, Sample, compute_policy_path

DAY = 86400
START_TIME = 1_700_006_400  # a UTC midnight
EPISODE_BEFORE, EPISODE_AFTER = 30, 60  # the stress episode: days around the largest true variance


@dataclass(frozen=True, slots=True)
class GarchModel:
    """GARCH(1,1) daily log returns: var(t) = omega + alpha eps(t-1)^2 + beta var(t-1), eps = sqrt(var) z."""

    daily_vol: float = 0.03  # unconditional (about 57% a year, a crypto index)
    alpha: float = 0.10
    beta: float = 0.88
    t_dof: float = 5.0  # Student-t innovations, scaled to unit variance (fat tails)
    start_price: float = 50_000.0

    @property
    def omega(self) -> float:
        """Return the constant term that gives the unconditional variance daily_vol^2."""
        return self.daily_vol**2 * (1.0 - self.alpha - self.beta)


@dataclass(frozen=True, slots=True)
class BacktestConfig:
    """Sizes and seed of one backtest run."""

    paths: int = 20
    days: int = 1500
    warmup: int = 250  # days excluded from every figure (EWMA seeding, the reviewed static's first year)
    seed: int = 20261203
    static_range: Fraction = Fraction(16, 100)  # the default parameters document's BTC scan range
    review_days: int = 90  # the reviewed static policy recalibrates this often
    review_lookback: int = 365


DEFAULT = BacktestConfig()
QUICK = BacktestConfig(paths=4, days=600, warmup=200)


def simulate_garch_path(
    model: GarchModel, days: int, rng: np.random.Generator
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Return (integer prices PRICE_SCALE, true daily variance of each day's return) of one path of days + 1 prices."""
    z = rng.standard_t(model.t_dof, days) / math.sqrt(model.t_dof / (model.t_dof - 2.0))
    variance = np.empty(days)
    log_price = np.empty(days + 1)
    log_price[0] = math.log(model.start_price)
    v = model.daily_vol**2
    eps = 0.0
    for t in range(days):
        v = model.omega + model.alpha * eps * eps + model.beta * v if t else v
        eps = math.sqrt(v) * z[t]
        variance[t] = v
        log_price[t + 1] = log_price[t] + eps - 0.5 * v
    prices = np.maximum(np.rint(np.exp(log_price) * PRICE_SCALE), 1).astype(np.int64)
    return prices, variance


def base_policy(sigmas: Fraction = Fraction(5)) -> PolicyParams:
    """Return the adaptive policy without any anti-procyclicality tool: daily EWMA (0.94), 1-day horizon."""
    return PolicyParams(
        sample_interval_seconds=DAY,
        horizon_seconds=DAY,
        decay=Fraction(94, 100),
        sigmas=sigmas,
        seed_vol=Fraction(6, 10),
        min_scan_range=Fraction(2, 100),
        max_scan_range=Fraction(60, 100),
        max_step_up=None,
        max_step_down=None,
        floor=None,
        buffer=None,
        vol=None,
    )


CAP_UP, CAP_DOWN = Fraction(1, 10), Fraction(1, 20)
FLOOR = FloorParams(weight=Fraction(1, 2), lookback_samples=360, block_samples=30)
BUFFER = BufferParams(
    size=Fraction(1, 4), stress_ratio=Fraction(3, 2), slow_decay=Fraction(99, 100), rebuild_samples=60
)
MARGIN_CAP: dict[str, Any] = {"max_step_up": CAP_UP, "max_step_down": CAP_DOWN, "step_cap_basis": "margin"}


def policies() -> dict[str, PolicyParams | None]:
    """Return the policies compared, by label (None: a static policy computed by the backtest itself)."""
    adaptive = base_policy()
    return {
        "static (16%, the default document)": None,
        "static, reviewed every 90 days": None,
        "adaptive (EWMA 0.94, 5 sd)": adaptive,
        "adaptive + floor": replace(adaptive, floor=FLOOR),
        "adaptive + buffer": replace(adaptive, buffer=BUFFER),
        "adaptive + step cap": replace(adaptive, max_step_up=CAP_UP, max_step_down=CAP_DOWN),
        "adaptive + floor + cap": replace(adaptive, floor=FLOOR, max_step_up=CAP_UP, max_step_down=CAP_DOWN),
        "adaptive + buffer + cap": replace(adaptive, buffer=BUFFER, max_step_up=CAP_UP, max_step_down=CAP_DOWN),
        "adaptive + floor + buffer + cap": replace(
            adaptive, floor=FLOOR, buffer=BUFFER, max_step_up=CAP_UP, max_step_down=CAP_DOWN
        ),
        # the same cap on the one-unit margin range x price instead of the range (step_cap_basis = "margin")
        "adaptive + margin cap": replace(adaptive, **MARGIN_CAP),
        "adaptive + buffer + margin cap": replace(adaptive, buffer=BUFFER, **MARGIN_CAP),
        "adaptive + floor + buffer + margin cap": replace(adaptive, floor=FLOOR, buffer=BUFFER, **MARGIN_CAP),
    }


def reviewed_static_ranges(
    prices: npt.NDArray[np.int64], config: BacktestConfig, sigmas: Fraction, horizon: int = 1, samples_per_day: int = 1
) -> list[float]:
    """Return the ranges of a static policy a committee resets every review_days to sigmas x last year's stdev
    (of the move over ``horizon`` samples, sqrt(horizon) x the per-sample stdev)."""
    returns = np.diff(np.log(prices.astype(np.float64)))
    lookback, every = config.review_lookback * samples_per_day, config.review_days * samples_per_day
    ranges = []
    current = float(config.static_range)
    for t in range(len(prices)):
        if t >= lookback and t % every == 0:
            stdev = float(np.std(returns[t - lookback : t])) * math.sqrt(horizon)
            current = min(max(float(sigmas) * stdev, 0.02), 0.6)
        ranges.append(current)
    return ranges


def measure(
    ranges: npt.NDArray[np.float64],
    prices: npt.NDArray[np.int64],
    variance: npt.NDArray[np.float64],
    warmup: int,
    horizon: int = 1,
    samples_per_day: int = 1,
) -> dict[str, Any]:
    """Return the figures of one policy on one path: moves over ``horizon`` samples, rises over one day, the stress
    episode from 30 days before to 60 days after the sample with the largest true variance."""
    p = prices.astype(np.float64)
    moves = np.abs(p[warmup + horizon :] / p[warmup:-horizon] - 1.0)
    inside = moves <= ranges[warmup:-horizon]
    margin = ranges * p
    day = samples_per_day
    rises = margin[warmup + day :] / margin[warmup:-day] - 1.0  # over one day
    range_rises = ranges[warmup + day :] / ranges[warmup:-day] - 1.0
    peak = warmup + int(np.argmax(variance[warmup:]))  # sample whose return had the largest true variance
    lo = max(warmup, peak - EPISODE_BEFORE * samples_per_day)
    hi = min(len(p) - horizon, peak + EPISODE_AFTER * samples_per_day)
    episode = margin[lo : hi + 1]
    peak_to_trough = float(np.max(episode / np.minimum.accumulate(episode)))
    stress_inside = inside[lo - warmup : hi - warmup]
    return {
        "covered": int(inside.sum()),
        "days": int(inside.size),
        "stress_covered": int(stress_inside.sum()),
        "stress_days": int(stress_inside.size),
        "range_sum": float(ranges[warmup:-horizon].sum()),
        "largest_rise": float(rises.max()),
        "largest_range_rise": float(range_rises.max()),
        "peak_to_trough": peak_to_trough,
    }


def run_backtest(config: BacktestConfig, model: GarchModel | None = None) -> dict[str, Any]:
    """Return the backtest table: per policy, coverage, capital and procyclicality over config.paths paths."""
    model = model or GarchModel()
    rng = np.random.default_rng(config.seed)
    paths = [simulate_garch_path(model, config.days, rng) for _ in range(config.paths)]
    rows = measure_policies(paths, policies(), config, interval=DAY)
    return {
        "config": {
            "paths": config.paths,
            "days": config.days,
            "warmup": config.warmup,
            "seed": config.seed,
            "garch": {"daily_vol": model.daily_vol, "alpha": model.alpha, "beta": model.beta, "t_dof": model.t_dof},
        },
        "rows": rows,
    }


def measure_policies(
    paths: list[tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]],
    labelled: dict[str, PolicyParams | None],
    config: BacktestConfig,
    interval: int,
) -> list[dict[str, Any]]:
    """Return one row of figures per policy over ``paths`` sampled every ``interval`` seconds (the warm-up is
    ``config.warmup`` days; the adaptive policies' horizon sets how many samples a move spans)."""
    samples_per_day = DAY // interval
    adaptive = [p for p in labelled.values() if p is not None]
    horizon = adaptive[0].horizon_seconds // interval if adaptive else 1
    sigmas = adaptive[0].sigmas if adaptive else Fraction(5)
    warmup = config.warmup * samples_per_day
    per_policy: dict[str, list[dict[str, Any]]] = {label: [] for label in labelled}
    for prices, variance in paths:
        samples = [Sample(time=START_TIME + interval * i, price=int(price)) for i, price in enumerate(prices)]
        for label, params in labelled.items():
            if params is None and label.startswith("static, reviewed"):
                ranges = reviewed_static_ranges(prices, config, sigmas, horizon, samples_per_day)
            elif params is None:
                ranges = [float(config.static_range)] * len(prices)
            else:
                ranges = [s.scan_range / RANGE_SCALE for s in compute_policy_path(params, "BTC", samples)]
            per_policy[label].append(measure(np.array(ranges), prices, variance, warmup, horizon, samples_per_day))
    rows = []
    for label, results in per_policy.items():
        days = sum(r["days"] for r in results)
        rows.append(
            {
                "policy": label,
                "coverage": sum(r["covered"] for r in results) / days,
                "stress_coverage": sum(r["stress_covered"] for r in results) / sum(r["stress_days"] for r in results),
                "mean_range": sum(r["range_sum"] for r in results) / days,
                "peak_to_trough_median": float(np.median([r["peak_to_trough"] for r in results])),
                "largest_one_day_rise": max(r["largest_rise"] for r in results),
                "largest_one_day_range_rise": max(r["largest_range_rise"] for r in results),
            }
        )
    return rows


# --- the devnet's own path -------------------------------------------------------------------------------------


DEVNET_STEP = 12 * 3600  # the devnet's market step (--step-hours 12)


def simulate_devnet_path(
    steps: int, seed: int, spike_step: int | None, symbol: str = "BTC"
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Return (integer prices PRICE_SCALE, true variance of each step's return) of a path of the devnet's own index
    generator for ``symbol`` (``Lifecycle.move_prices`` and, at ``spike_step``, ``Lifecycle.spike``: the vol-spike
    scenario), run without a chain. A chain run draws its traders' actions from the same random stream, so its path
    is one member of this family, not the same draw for the same seed."""
    from types import SimpleNamespace
    from typing import cast

    from pmoracle.devnet.lifecycle import Lifecycle
    from pmoracle.devnet.world import UNDERLYINGS, World

    world = SimpleNamespace(
        prices={u.symbol: u.price for u in UNDERLYINGS}, vols={u.symbol: u.atm_vol for u in UNDERLYINGS}
    )  # all move_prices and spike touch
    life = Lifecycle(cast(World, world), step_seconds=DEVNET_STEP, seed=seed, spike_step=spike_step,
                     spike_symbol=symbol)  # fmt: skip
    prices, variance = [world.prices[symbol]], []
    for step in range(1, steps + 1):  # as Lifecycle.step: count the step, spike, then move
        life.stats.steps = step
        if step == spike_step:
            life.spike()
        variance.append(life.variance[symbol])
        life.move_prices()
        prices.append(world.prices[symbol])
    return np.array([int(p * PRICE_SCALE) for p in prices], dtype=np.int64), np.array(variance)


def devnet_policies() -> dict[str, PolicyParams | None]:
    """Return the policies compared on the devnet's path: its vol-spike document's policy and that policy's parts."""
    from pmoracle.config.params import default_params_text
    from pmoracle.devnet.lifecycle import vol_spike_params_text
    from pmoracle.risk.params import parse_params

    document = parse_params(vol_spike_params_text(default_params_text(), DEVNET_STEP)).policy
    if document is None:  # the vol-spike document always carries one
        raise PmoracleError("the vol-spike parameters document has no [policy]")
    full = replace(document, vol=None)  # the backtest measures price scan ranges, which [policy.vol] does not move
    if full.step_cap_basis != "margin":  # the document caps the margin; the rows below take it apart
        raise PmoracleError("the vol-spike parameters document does not cap the margin")
    base = replace(full, floor=None, buffer=None, max_step_up=None, max_step_down=None, step_cap_basis="range")
    capped = replace(base, max_step_up=full.max_step_up, max_step_down=full.max_step_down)
    tools = replace(capped, floor=full.floor, buffer=full.buffer)
    # its cap is per 12-hour step (+21% / -9.75% a day); these cap +10% / -5% a day, as the daily default
    per_day = {"max_step_up": Fraction(488, 10_000), "max_step_down": Fraction(253, 10_000)}
    return {
        "static (16%, the default document)": None,
        "static, reviewed every 90 days": None,
        "adaptive (EWMA 0.94 a step, 5 sd)": base,
        "adaptive + floor": replace(base, floor=full.floor),
        "adaptive + buffer": replace(base, buffer=full.buffer),
        "adaptive + step cap": capped,
        "adaptive + buffer + cap": replace(capped, buffer=full.buffer),
        "adaptive + floor + buffer + cap": tools,
        "adaptive + floor + buffer + cap +10% / -5% a day": replace(tools, **per_day),
        "adaptive + margin cap": replace(capped, step_cap_basis="margin"),
        "adaptive + floor + buffer + margin cap (the devnet's document)": full,
        "the devnet's document, margin cap +10% / -5% a day": replace(full, **per_day),
    }


def run_devnet_backtest(config: BacktestConfig, first_seed: int = 1) -> dict[str, Any]:
    """Return the backtest table on ``config.paths`` devnet paths (seeds first_seed, first_seed + 1, ...) of
    ``config.days`` days each, the volatility spike at mid-run, sampled every market step."""
    steps = config.days * DAY // DEVNET_STEP
    paths = [simulate_devnet_path(steps, seed, steps // 2) for seed in range(first_seed, first_seed + config.paths)]
    rows = measure_policies(paths, devnet_policies(), config, interval=DEVNET_STEP)
    return {
        "config": {"paths": config.paths, "days": config.days, "warmup": config.warmup, "seed": first_seed,
                   "devnet": {"step_seconds": DEVNET_STEP, "spike_step": steps // 2, "symbol": "BTC"}},
        "rows": rows,
    }  # fmt: skip


def format_backtest(results: dict[str, Any]) -> str:
    """Return the backtest table as Markdown (the form docs/policy.md shows)."""
    c = results["config"]
    if "devnet" in c:
        d = c["devnet"]
        title = (f"{c['paths']} devnet paths x {c['days']} days (first {c['warmup']} excluded), seeds {c['seed']}.."
                 f"{c['seed'] + c['paths'] - 1}: {d['symbol']} every {d['step_seconds'] // 3600} h, volatility "
                 f"tripled at step {d['spike_step']}; moves over the policies' 1-day horizon")  # fmt: skip
    else:
        g = c["garch"]
        title = (f"{c['paths']} GARCH(1,1) paths x {c['days']} days (first {c['warmup']} excluded), seed "
                 f"{c['seed']}: daily vol {g['daily_vol']:.0%}, alpha {g['alpha']}, beta {g['beta']}, "
                 f"Student-t({g['t_dof']:g})")  # fmt: skip
    lines = [
        title,
        "",
        "| policy | coverage | coverage in stress | mean range | peak-to-trough (median) | largest 1-day margin rise"
        " | largest 1-day range rise |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['policy']} | {r['coverage']:.2%} | {r['stress_coverage']:.2%} | {r['mean_range']:.2%} | "
            f"{r['peak_to_trough_median']:.2f} | {r['largest_one_day_rise']:+.1%} | "
            f"{r['largest_one_day_range_rise']:+.1%} |"
        )
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the policy backtest's options."""
    parser.add_argument("--paths", type=int, default=DEFAULT.paths, help="number of GARCH paths")
    parser.add_argument("--days", type=int, default=DEFAULT.days, help="days per path")
    parser.add_argument("--seed", type=int, default=DEFAULT.seed, help="seed of the paths")
    parser.add_argument("--quick", action="store_true", help="4 paths of 600 days, for a fast check")
    parser.add_argument("--devnet", action="store_true",
                        help="the devnet's own path instead (its generator with --scenario vol-spike, 12-hour steps; "
                             "seeds from --seed, default 1) and its document's policy")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    """Run the backtest and print its table."""
    config = QUICK if args.quick else BacktestConfig(paths=args.paths, days=args.days, seed=args.seed)
    if args.devnet:
        results = run_devnet_backtest(config, first_seed=1 if args.seed == DEFAULT.seed else args.seed)
    else:
        results = run_backtest(config)
    print(json.dumps(results, indent=2) if args.json else format_backtest(results))
    return 0
