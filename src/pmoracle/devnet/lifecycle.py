"""A devnet that lives for days of market time: ``pmoracle devnet --days D``.

Between two attested rounds the chain's clock is moved ahead by one market step (12 hours by default) and the
protocol lives through it as a venue would: the feeder moves prices along a seeded path with volatility clustering
(GARCH(1,1) returns, implied volatility following realized), posts index, smiles, collateral prices and marks; the
perpetuals pay funding; expiries that passed get their settlement price and every position in them is settled into
cash; weekly and monthly expiries are listed as old ones settle; traders trade at the marks with orders they sign;
some withdraw against the latest attested round (and some are refused). At the first step every account is levered
to a target: market makers and hedgers to 1.2-2x their initial margin, directional traders close to theirs.

Everything here is devnet tooling driving the real contracts; the solver nodes see only the chain.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak, to_canonical_address

from pmoracle.devnet.ledger_audit import CashAudit
from pmoracle.devnet.world import DAY, UNDERLYINGS, World, encode_symbol
from pmoracle.errors import InputError
from pmoracle.node.round import RoundOutput
from pmoracle.risk.inputs import PRICE_SCALE, WAD, InstrumentKind

HOUR = 3_600
LEAF_PER_USD = 10**18
SETTLE_BATCH = 100  # accounts per settle() call
FRIDAY = 4  # (day + 3) % 7 of a Friday (1970-01-01 was a Thursday)
MAX_FUNDING_PER_DAY = 0.001  # the devnet's funding rates stay within 0.1% of the index a day
FEE_RATE = 2 * WAD // 10_000  # 2 bps of the traded value from each side


# The vol-spike scenario's adaptive policy (docs/policy.md): one sample per market step, the default policy's tools,
# the step cap on the one-unit margin range x price (the backtest's "adaptive + floor + buffer + margin cap").
VOL_SPIKE_POLICY = """
# pmoracle devnet --scenario vol-spike: the adaptive policy, one sample per market step ({interval} s)
[policy]
sample_interval_seconds = {interval}
horizon_seconds = 86400
decay = "0.94"
sigmas = "5"
seed_vol = "0.6"
min_scan_range = "0.02"
max_scan_range = "0.6"
max_step_up = "0.1"
max_step_down = "0.05"
step_cap_basis = "margin"

[policy.floor]
weight = "0.5"
lookback_samples = 60
block_samples = 10

[policy.buffer]
size = "0.25"
stress_ratio = "1.5"
slow_decay = "0.99"
rebuild_samples = 20

# the vol shift k from the smiles' 30-day ATM vol (vol.tenor_days), moved at the same cap per step
[policy.vol]
decay = "0.94"
sigmas = "3"
seed_vol = "1.5"
min_shift = "0.05"
max_shift = "0.9"
"""


def vol_spike_params_text(base: str, step_seconds: int) -> str:
    """Return the parameters document of the vol-spike scenario: ``base`` with a ``[policy]`` (``[policy.vol]``
    included) sampling once per market step, and a feed age limit of one step plus an hour (the feeder writes the
    index and every smile once per step)."""
    limit = "max_feed_age_seconds = 300"
    if limit not in base:
        raise InputError("params", f"the base document has no {limit!r} line to replace")
    return base.replace(limit, f"max_feed_age_seconds = {step_seconds + HOUR}") + VOL_SPIKE_POLICY.format(
        interval=step_seconds
    )


def friday_expiries(now: int, weeks: int = 2, months: int = 2) -> list[int]:
    """Return the listed expiries at ``now``: the next ``weeks`` Fridays and the last Friday of the next
    ``months`` months that are not already among them (08:00 UTC, strictly after ``now``)."""
    first = now // DAY if now < now // DAY * DAY + 8 * HOUR else now // DAY + 1  # today's 08:00 if still ahead
    day = first
    fridays: list[int] = []
    while len(fridays) < weeks:
        if (day + 3) % 7 == FRIDAY:
            fridays.append(day)
        day += 1
    monthly: list[int] = []
    day = first
    while len(monthly) < months:
        # a Friday whose next Friday is in another month is its month's last Friday
        if (day + 3) % 7 == FRIDAY and _month(day) != _month(day + 7):
            monthly.append(day)
        day += 1
    return sorted({d * DAY + 8 * HOUR for d in (*fridays, *monthly)})


def _month(day: int) -> int:
    import datetime

    date = datetime.date(1970, 1, 1) + datetime.timedelta(days=day)
    return date.year * 12 + date.month


@dataclass
class LifeStats:
    """What the protocol lived through (the devnet's ``--summary``)."""

    steps: int = 0
    expiries_settled: int = 0
    positions_settled: int = 0
    expiries_listed: int = 0
    funding_payments: int = 0
    withdrawals: int = 0
    withdrawals_refused: int = 0
    refusals: dict[str, int] = field(default_factory=dict)
    deposits: int = 0
    max_accounts_below_mm: int = 0
    crashed_at_step: int | None = None  # the crash scenario's step, once it happened
    spiked_at_step: int | None = None  # the vol-spike scenario's step, once it happened
    settlements: list[str] = field(default_factory=list)  # one line per settled expiry, latest last


@dataclass
class Lifecycle:
    """Moves the world through market time, one step between attested rounds (see the module docstring)."""

    world: World
    step_seconds: int = 12 * HOUR
    seed: int = 1
    stats: LifeStats = field(default_factory=LifeStats)
    variance: dict[str, float] = field(default_factory=dict)  # per-step return variance (GARCH state)
    levered: bool = False
    settled: set[int] = field(default_factory=set)  # expiries whose instruments were settled
    crash_step: int | None = None  # the crash scenario: at this step one underlying drops, its volatility spikes
    crash_symbol: str = "BTC"
    crash_drop: float = 0.25
    crash_vol_multiplier: float = 2.5
    spike_step: int | None = None  # the vol-spike scenario: at this step one underlying's volatility jumps
    spike_symbol: str = "BTC"
    spike_vol_multiplier: float = 3.0

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed * 7_919)  # the users: withdrawals, leverage targets
        # the market's own stream: the price path is a function of the seed and the step alone, never of how many
        # draws the users made (which depends on the rounds a run happened to attest)
        self._market_rng = random.Random(self.seed * 7_919 + 1)
        for spec in UNDERLYINGS:
            self.variance[spec.symbol] = spec.atm_vol**2 * self.step_seconds / (365 * DAY)

    # --- the market path ------------------------------------------------------------------------------------------

    def move_prices(self) -> None:
        """One GARCH(1,1) step per underlying: r = sigma z, sigma^2' = w + a r^2 + b sigma^2; implied vol follows."""
        alpha, beta = 0.10, 0.85
        for spec in UNDERLYINGS:
            long_run = spec.atm_vol**2 * self.step_seconds / (365 * DAY)
            var = self.variance[spec.symbol]
            r = math.sqrt(var) * self._market_rng.gauss(0.0, 1.0)
            self.world.prices[spec.symbol] *= math.exp(r - var / 2)
            self.variance[spec.symbol] = (1 - alpha - beta) * long_run + alpha * r * r + beta * var
            realized = math.sqrt(self.variance[spec.symbol] * 365 * DAY / self.step_seconds)
            implied = 0.7 * self.world.vols[spec.symbol] + 0.3 * realized * 1.1
            self.world.vols[spec.symbol] = min(max(implied, 0.2), 1.5)

    def crash(self) -> None:
        """Drop ``crash_symbol`` by ``crash_drop`` and spike its implied and GARCH volatility (the crash scenario)."""
        symbol = self.crash_symbol
        self.world.prices[symbol] *= 1 - self.crash_drop
        self.world.vols[symbol] = min(self.world.vols[symbol] * self.crash_vol_multiplier, 1.5)
        self.variance[symbol] *= self.crash_vol_multiplier**2
        self.stats.crashed_at_step = self.stats.steps

    def spike(self) -> None:
        """Multiply ``spike_symbol``'s GARCH volatility (and its implied vol) by ``spike_vol_multiplier``, without a
        price jump: the clustering then carries large moves for several steps (the vol-spike scenario)."""
        symbol = self.spike_symbol
        self.variance[symbol] *= self.spike_vol_multiplier**2
        self.world.vols[symbol] = min(self.world.vols[symbol] * self.spike_vol_multiplier, 1.5)
        self.stats.spiked_at_step = self.stats.steps

    # --- one step -------------------------------------------------------------------------------------------------

    def step(self, output: RoundOutput, round_block: int) -> None:
        """Live one market step after the round anchored at ``round_block`` (its recomputation ``output``)."""
        world = self.world
        leaves = {m.account: m for m in output.book.accounts}
        below = sum(1 for m in leaves.values() if m.equity < m.maintenance_margin)
        self.stats.max_accounts_below_mm = max(self.stats.max_accounts_below_mm, below)
        if not self.levered:  # the first step: lever every account to its target against this round
            self._lever(output)
            self.levered = True
            return
        # withdrawals first, against the round just attested (a withdrawal after this step's funding payment,
        # settlement or trade would be refused until the next round: FundingSinceRound, TradedSinceRound)
        self._withdraw_some(output, count=max(2, len(world.accounts) // 40))
        self.stats.steps += 1
        world.rpc("evm_increaseTime", [self.step_seconds])
        if self.stats.steps == self.spike_step:  # before the move: the spike's first step is already wild
            self.spike()
        self.move_prices()
        if self.stats.steps == self.crash_step:
            self.crash()
        world.now = world.now + self.step_seconds
        world.send_all([*world._feed_txs(world.now), world._marks_tx()])  # mined in the first block after the warp
        self._settle_expired()
        self._roll_expiries()
        self._pay_funding()
        world.trade_randomly(max(3, len(world.accounts) // 10))

    def hold(self, seconds: int) -> None:
        """Let ``seconds`` of chain time pass with the market holding still: the feeds are posted again at the same
        prices (fresh for the engine), nothing trades, settles or pays funding."""
        world = self.world
        world.rpc("evm_increaseTime", [seconds])
        world.now = world.now + seconds
        world.send_all([*world._feed_txs(world.now), world._marks_tx()])

    def _settle_expired(self) -> None:
        world = self.world
        for expiry in [e for e in world.expiries if e <= world.now and e not in self.settled]:
            txs = []
            for spec in UNDERLYINGS:
                price = int(world.prices[spec.symbol] * PRICE_SCALE)
                txs.append(world._tx(world.admin, "MarketFeeds", "setSettlementPrice", encode_symbol(spec.symbol),
                                     expiry, price))  # fmt: skip
            world.send_all(txs)
            holders = [world.house, *world.accounts]
            settle = []
            for inst in world.instruments:
                if inst.expiry != expiry:
                    continue
                for i in range(0, len(holders), SETTLE_BATCH):
                    settle.append(world._tx(world.admin, "MarginAccounts", "settle", inst.id,
                                            holders[i : i + SETTLE_BATCH]))  # fmt: skip
            hashes = world.send_all(settle)
            settled = self._count_events(hashes, "Settled")
            world.send_all([
                world._tx(world.admin, "MarketFeeds", "removeSmile", encode_symbol(spec.symbol), expiry)
                for spec in UNDERLYINGS
            ])  # fmt: skip
            self.settled.add(expiry)
            self.stats.expiries_settled += 1
            self.stats.positions_settled += settled
            prices = ", ".join(f"{s.symbol} {world.prices[s.symbol]:,.0f}" for s in UNDERLYINGS)
            day = _format_day(expiry)
            self.stats.settlements.append(f"expiry {day} settled at {prices}: {settled} positions")

    def _roll_expiries(self) -> None:
        wanted = [e for e in friday_expiries(self.world.now) if e not in self.world.expiries]
        if wanted:
            self.world.list_expiries(wanted)
            self.stats.expiries_listed += len(wanted)

    def _pay_funding(self) -> None:
        world = self.world
        txs = []
        for inst in world.instruments:
            if inst.kind != InstrumentKind.PERPETUAL:
                continue
            # longs pay when the market ran up this step, shorts when it fell: a premium-like rate, capped
            drift = math.log(world.prices[inst.underlying] / self._last_price(inst.underlying))
            rate = max(-MAX_FUNDING_PER_DAY, min(MAX_FUNDING_PER_DAY, drift / 10))
            # setting the rate first pays what accrued at the old one (a step is longer than FUNDING_PERIOD)
            txs.append(world._tx(world.admin, "MarginAccounts", "setFundingRate", inst.id, int(rate * WAD)))
            self.stats.funding_payments += 1
        world.send_all(txs)
        self._prices_seen = dict(world.prices)

    def _last_price(self, symbol: str) -> float:
        seen: dict[str, float] = getattr(self, "_prices_seen", {})
        return seen.get(symbol, self.world.prices[symbol])

    # --- leverage and withdrawals ---------------------------------------------------------------------------------

    def _target(self, index: int) -> float:
        """Return account ``index``'s target equity / IM: directional traders close to 1, the others 1.2-2."""
        directional = index % 5 in (2, 3)  # the option buyer and the naked put seller (World._open_users)
        return self._rng.uniform(1.03, 1.12) if directional else self._rng.uniform(1.2, 2.0)

    def _lever(self, output: RoundOutput) -> None:
        """Bring every account's equity to its target x IM: withdraw the excess cash, or deposit what is missing."""
        world = self.world
        world.send_all([world._tx(world.admin, "MarginAccounts", "setFeeRate", FEE_RATE)])
        leaves = {m.account: m for m in output.book.accounts}
        withdraw: list[tuple[str, int]] = []
        top_up: dict[str, float] = {}
        cash = dict(zip(world.accounts, world.cash_of(world.accounts), strict=True))
        for i, account in enumerate(world.accounts):
            m = leaves.get(to_canonical_address(account))
            if m is None or m.initial_margin == 0:
                continue
            target = self._target(i) * m.initial_margin
            gap = (m.equity - target) / 10**8  # USD
            if gap > 1 and cash[account] > 1:  # what is not cash (collateral, option value) stays
                withdraw.append((account, int(min(gap, cash[account] - 1))))
            elif gap < -1:
                top_up[account] = -gap
        for account, usd in top_up.items():
            world._open([account], {"USDC": usd})
            self.stats.deposits += 1
        self._withdraw(output, withdraw)

    def _withdraw_some(self, output: RoundOutput, count: int) -> None:
        """Let ``count`` random accounts withdraw a part of their cash against the latest attested round."""
        world = self.world
        picks = self._rng.sample(world.accounts, min(count, len(world.accounts)))
        cash = world.cash_of(picks)
        self._withdraw(output, [(a, int(c * self._rng.uniform(0.05, 0.5))) for a, c in zip(picks, cash, strict=True)
                                if c >= 2])  # fmt: skip

    def _withdraw(self, output: RoundOutput, amounts: Sequence[tuple[str, int]]) -> None:
        """Withdraw ``(account, USD)`` amounts of USDC with the proofs of ``output`` (the latest attested round);
        each refusal is counted under its custom error (simulated first, then sent)."""
        world = self.world
        txs = []
        for account, usd in amounts:
            if usd <= 0:
                continue
            leaf = output.tree.leaf_of(to_canonical_address(account))
            margin = (leaf.initial_margin, leaf.maintenance_margin, leaf.equity)
            proof = output.tree.proof(leaf.account)
            txs.append(world._tx(account, "MarginAccounts", "withdraw", world.deployment.contracts["USDC"],
                                 usd * 10**6, margin, proof))  # fmt: skip
        results = world.simulate(txs)
        allowed = []
        for tx, error in zip(txs, results, strict=True):
            if error is None:
                allowed.append(tx)
            else:
                self._refused(error)
        for _, error in zip(allowed, world.send_tolerant(allowed), strict=True):
            if error is None:
                self.stats.withdrawals += 1
            else:  # a round attested between the simulation and the block: judged on a newer root
                self._refused(error)

    def _refused(self, error: str) -> None:
        self.stats.withdrawals_refused += 1
        self.stats.refusals[error] = self.stats.refusals.get(error, 0) + 1

    def _count_events(self, hashes: Sequence[str], name: str) -> int:
        world = self.world
        event = getattr(world.ledger_events, name)()
        topic = "0x" + _topic(event.abi).hex()
        count = 0
        receipts = world.batch([("eth_getTransactionReceipt", [h]) for h in hashes])
        for receipt in receipts:
            count += sum(1 for log in receipt["logs"] if log["topics"] and log["topics"][0] == topic)
        return count

    def summary(self, rounds: Sequence[Any], unsigned: int, audit: CashAudit, wall_seconds: float) -> dict[str, Any]:
        """Return the ``--summary`` JSON object (the issue's keys, then details)."""
        return {
            "rounds_attested": len(rounds),
            "rounds_verified": sum(1 for r in rounds if r.verified),
            "rounds_unsigned": unsigned,
            "expiries_settled": self.stats.expiries_settled,
            "positions_settled": self.stats.positions_settled,
            "trades": self.world.trades,
            "withdrawals": self.stats.withdrawals,
            "withdrawals_refused": self.stats.withdrawals_refused,
            "max_accounts_below_mm": self.stats.max_accounts_below_mm,
            "conservation_ok": audit.ok,
            "days": self.stats.steps * self.step_seconds / DAY,
            "steps": self.stats.steps,
            "expiries_listed": self.stats.expiries_listed,
            # every expiry the calendar wants listed at the end is listed (a week can pass with nothing new to list:
            # its new Friday may already be listed as a month end)
            "expiry_schedule_kept": set(friday_expiries(self.world.now)) <= set(self.world.expiries),
            "funding_payments": self.stats.funding_payments,
            "refusals": dict(sorted(self.stats.refusals.items())),
            "deposits_topped_up": self.stats.deposits,
            "conservation": {
                "tokens_held": str(audit.tokens_held), "cash": str(audit.cash), "cost": str(audit.cost),
                "fees": str(audit.fees), "funding_pool": str(audit.funding_pool), "settling": str(audit.settling),
                "collateral_ok": audit.collateral_ok, "open_interest_ok": audit.open_interest_ok,
            },
            "final_prices": {s.symbol: round(self.world.prices[s.symbol], 2) for s in UNDERLYINGS},
            "wall_seconds": round(wall_seconds, 1),
        }  # fmt: skip


def _topic(abi: dict[str, Any]) -> bytes:
    return keccak(text=f"{abi['name']}({','.join(i['type'] for i in abi['inputs'])})")


def _format_day(expiry: int) -> str:
    import datetime

    return datetime.datetime.fromtimestamp(expiry, datetime.UTC).strftime("%d%b%y").upper()
