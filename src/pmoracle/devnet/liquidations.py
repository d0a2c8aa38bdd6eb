"""The devnet's keeper (``--days``): one in-process :class:`pmoracle.keeper.keeper.Keeper` acting after every
attested round, and what the crash scenario's ``--summary`` reports about liquidations.

The keeper bids from dedicated accounts funded with cash: a bid hands the bidder a book, after which it bids on its
own leaf in a round anchored after its last bid, so each account bids at most once a round (it holds a few). An
account is *breached* the first round that attests equity < MM; it is *restored* when a later round attests
equity >= MM (after the keeper's bid, or the market's recovery); *insolvent* when a round attested its equity < 0
(the whole book goes to a bidder, the insurance fund pays). The time from breach to restoration is chain time: the
anchor of the breaching round to the anchor of the restoring one.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from eth_utils import keccak, to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.transmitter import Transmitter
from pmoracle.devnet.world import World
from pmoracle.keeper.decision import WAD, Policy
from pmoracle.keeper.keeper import Keeper, TickReport
from pmoracle.keeper.metrics import create_keeper_metrics
from pmoracle.node.round import RoundOutput
from pmoracle.risk.params import RiskParams

KEEPER_ACCOUNTS = 8  # bidders: each bids at most once a round (the next bid proves the book the last one gave it)
KEEPER_CASH_USD = 5_000_000.0


@dataclass
class LiquidationStats:
    """What the keeper did and what the rounds showed (the crash scenario's summary keys)."""

    breached_at: dict[str, int] = field(default_factory=dict)  # account -> anchor time of its first breach
    restored_at: dict[str, int] = field(default_factory=dict)  # account -> anchor time of the restoring round
    insolvent: set[str] = field(default_factory=set)
    bid_accounts: dict[str, int] = field(default_factory=dict)  # account -> bids on it
    bid_gas: list[int] = field(default_factory=list)
    auctions_started: int = 0
    auctions_ended: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed keeper actions by error (first word)
    last: TickReport | None = None


class LiquidationDesk:
    """The devnet's keeper and its bookkeeping; :meth:`on_round` runs after each attested, audited round."""

    def __init__(self, world: World, client: ChainClient, deployment: Deployment, params: RiskParams) -> None:
        self.world = world
        keys = [keccak(text=f"pmoracle-devnet-keeper-{i}") for i in range(KEEPER_ACCOUNTS)]
        transmitters = [Transmitter(client, key, poll_interval=0.01) for key in keys]
        addresses = [to_checksum_address(t.address) for t in transmitters]
        world._open(addresses, {"USDC": KEEPER_CASH_USD})  # ether for gas, and cash in the ledger
        self.keeper = Keeper(
            client, deployment, transmitters[0], params, Policy(min_profit=WAD, gas_cost=0, wait_for_plateau=True),
            create_keeper_metrics(), bidders=transmitters[1:],
        )  # fmt: skip
        self.client = client
        self.stats = LiquidationStats()

    def on_round(self, output: RoundOutput, anchor_time: int) -> TickReport:
        """Note breaches and restorations the round attests, then let the keeper act on it; return what it did."""
        stats = self.stats
        for margin in output.book.accounts:
            if margin.is_empty:
                continue
            account = to_checksum_address(margin.account)
            if account == self.keeper.fund:  # the insurance fund's cash goes negative by the socialized loss
                continue
            if margin.equity < margin.maintenance_margin:
                stats.breached_at.setdefault(account, anchor_time)
                if margin.equity < 0:
                    stats.insolvent.add(account)
            elif account in stats.breached_at and account not in stats.insolvent:
                stats.restored_at.setdefault(account, anchor_time)  # by a bid, or by the market
        report = self.keeper.tick()
        for bid in report.bids:
            stats.bid_accounts[bid.account] = stats.bid_accounts.get(bid.account, 0) + 1
            stats.bid_gas.append(bid.gas_used)
        stats.auctions_started += len(report.started)
        stats.auctions_ended += len(report.ended)
        for message in report.errors.values():
            kind = message.split("(")[0].split(":")[0].strip()
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
        self.world.frozen = set(self.keeper.watched)
        stats.last = report
        return report

    def unresolved(self) -> set[str]:
        """Return the breached accounts no round has shown restored or insolvent yet."""
        s = self.stats
        return set(s.breached_at) - set(s.restored_at) - s.insolvent

    def summary(self) -> dict[str, Any]:
        """Return the liquidation keys of ``--summary``."""
        stats = self.stats
        liquidator = self.keeper.liquidator
        waits = [stats.restored_at[a] - stats.breached_at[a] for a in stats.restored_at if a in stats.breached_at]
        return {
            "accounts_breached": len(stats.breached_at),
            "liquidations": sum(stats.bid_accounts.values()),
            "accounts_restored": len(stats.restored_at),
            "accounts_insolvent": len(stats.insolvent),
            "insurance_paid": int(self.client.call(liquidator.insurancePaid())) / WAD,
            "socialized_loss": int(self.client.call(liquidator.socializedLoss())) / WAD,
            "median_breach_to_restored_s": statistics.median(waits) if waits else None,
            "gas_per_bid_median": statistics.median(stats.bid_gas) if stats.bid_gas else None,
            "auctions_started": stats.auctions_started,
            "auctions_ended": stats.auctions_ended,
            "keeper_errors": dict(sorted(stats.errors.items())),
            "keeper_valuations_failed": int(
                self.keeper.metrics.registry.get_sample_value("pmoracle_keeper_errors_total", {"kind": "valuation"})
                or 0
            ),
            "bids_per_liquidated_account": dict(sorted(stats.bid_accounts.items())),
        }

    def table_line(self) -> str:
        """Return the live table's auctions line."""
        s = self.stats
        return (
            f"auctions: {s.auctions_started} started, {len(self.keeper.watched)} open, "
            f"{sum(s.bid_accounts.values())} bids; {len(s.breached_at)} breached, {len(s.restored_at)} restored, "
            f"{len(s.insolvent)} insolvent"
        )
