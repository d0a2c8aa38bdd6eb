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
    }


def reviewed_static_ranges(prices: npt.NDArray[np.int64], config: BacktestConfig, sigmas: Fraction) -> list[float]:
    """Return the ranges of a static policy a committee resets every review_days to sigmas x last year's stdev."""
    returns = np.diff(np.log(prices.astype(np.float64)))
    ranges = []
    current = float(config.static_range)
    for t in range(len(prices)):
        if t >= config.review_lookback and t % config.review_days == 0:
            current = min(max(float(sigmas) * float(np.std(returns[t - config.review_lookback : t])), 0.02), 0.6)
        ranges.append(current)
    return ranges


def measure(
    ranges: npt.NDArray[np.float64], prices: npt.NDArray[np.int64], variance: npt.NDArray[np.float64], warmup: int
) -> dict[str, Any]:
    """Return the figures of one policy on one path (horizon one sample)."""
    p = prices.astype(np.float64)
    moves = np.abs(p[warmup + 1 :] / p[warmup:-1] - 1.0)
    inside = moves <= ranges[warmup:-1]
    margin = ranges * p
    rises = margin[warmup + 1 :] / margin[warmup:-1] - 1.0
    range_rises = ranges[warmup + 1 :] / ranges[warmup:-1] - 1.0
    peak = warmup + int(np.argmax(variance[warmup:]))  # day whose return had the largest true variance
    lo, hi = max(warmup, peak - EPISODE_BEFORE), min(len(p) - 1, peak + EPISODE_AFTER)
    episode = margin[lo : hi + 1]
    peak_to_trough = float(np.max(episode / np.minimum.accumulate(episode)))
    stress_inside = inside[lo - warmup : hi - warmup]
    return {
        "covered": int(inside.sum()),
        "days": int(inside.size),
        "stress_covered": int(stress_inside.sum()),
        "stress_days": int(stress_inside.size),
        "range_sum": float(ranges[warmup:-1].sum()),
        "largest_rise": float(rises.max()),
        "largest_range_rise": float(range_rises.max()),
        "peak_to_trough": peak_to_trough,
    }


def run_backtest(config: BacktestConfig, model: GarchModel | None = None) -> dict[str, Any]:
    """Return the backtest table: per policy, coverage, capital and procyclicality over config.paths paths."""
    model = model or GarchModel()
    rng = np.random.default_rng(config.seed)
    per_policy: dict[str, list[dict[str, Any]]] = {label: [] for label in policies()}
    sigmas = base_policy().sigmas
    for _ in range(config.paths):
        prices, variance = simulate_garch_path(model, config.days, rng)
        samples = [Sample(time=START_TIME + DAY * i, price=int(price)) for i, price in enumerate(prices)]
        for label, params in policies().items():
            if params is None and label.startswith("static, reviewed"):
                ranges = reviewed_static_ranges(prices, config, sigmas)
            elif params is None:
                ranges = [float(config.static_range)] * len(prices)
            else:
                ranges = [s.scan_range / RANGE_SCALE for s in compute_policy_path(params, "BTC", samples)]
            per_policy[label].append(measure(np.array(ranges), prices, variance, config.warmup))
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


def format_backtest(results: dict[str, Any]) -> str:
    """Return the backtest table as Markdown (the form docs/policy.md shows)."""
    c = results["config"]
    g = c["garch"]
    lines = [
        f"{c['paths']} GARCH(1,1) paths x {c['days']} days (first {c['warmup']} excluded), seed {c['seed']}: "
        f"daily vol {g['daily_vol']:.0%}, alpha {g['alpha']}, beta {g['beta']}, Student-t({g['t_dof']:g})",
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
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")


def run(args: argparse.Namespace) -> int:
    """Run the backtest and print its table."""
    config = QUICK if args.quick else BacktestConfig(paths=args.paths, days=args.days, seed=args.seed)
    results = run_backtest(config)
    print(json.dumps(results, indent=2) if args.json else format_backtest(results))
    return 0
