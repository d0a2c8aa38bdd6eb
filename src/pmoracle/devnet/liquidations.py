"""The devnet's keeper (``--days``): one in-process :class:`pmoracle.keeper.keeper.Keeper` acting after every
attested round, and what the crash scenario's ``--summary`` reports about liquidations.

The keeper bids from dedicated accounts funded with cash: a bid hands the bidder a book, after which it bids on its
own leaf in a round anchored after its last bid, so each account bids at most once a round (it holds a few). An
account is *breached* when some round attests equity < MM; *insolvent* when a round attested its equity < 0 (the
whole book goes to a bidder, the insurance fund pays); otherwise *restored* when a round after its latest breach
attests equity >= MM (after the keeper's bid, or the market's recovery) or finds the account emptied (a whole-book
bid on 0 <= E < d M: no leaf, E = MM = 0), else *unresolved*: every breached account
is exactly one of the three. The time from breach to restoration is chain time, the anchor of the breaching round
to the anchor of the restoring one, and counted in rounds too (the round that restores it is round 1).
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
from pmoracle.keeper.decision import Policy
from pmoracle.keeper.keeper import Keeper, TickReport
from pmoracle.keeper.metrics import create_keeper_metrics
from pmoracle.node.round import MONEY_TO_LEAF, RoundOutput
from pmoracle.risk.inputs import WAD
from pmoracle.risk.params import RiskParams

KEEPER_ACCOUNTS = 64  # bidders: each bids at most once a round (the next bid proves the book the last one gave it)
KEEPER_CASH_USD = 5_000_000.0


@dataclass
class LiquidationStats:
    """What the keeper did and what the rounds showed (the crash scenario's summary keys)."""

    breached_at: dict[str, int] = field(default_factory=dict)  # account -> anchor time of its first breach
    restored_at: dict[str, int] = field(default_factory=dict)  # account -> anchor time of its latest restoration
    insolvent: set[str] = field(default_factory=set)
    open_breaches: dict[str, tuple[int, int]] = field(default_factory=dict)  # account -> (anchor time, rounds since)
    breach_waits: list[int] = field(default_factory=list)  # chain seconds from a breach to its restoration
    rounds_to_restore: list[int] = field(default_factory=list)  # rounds from a breach to its restoration
    last_leaf: dict[str, tuple[int, int]] = field(default_factory=dict)  # account -> (E, MM) USD WAD, latest round
    last_wait: dict[str, str] = field(default_factory=dict)  # account -> why the keeper last waited on it
    bid_accounts: dict[str, int] = field(default_factory=dict)  # account -> bids on it
    bid_gas: list[int] = field(default_factory=list)
    auctions_started: int = 0
    auctions_ended: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # failed keeper actions by error (first word)
    waits: dict[str, int] = field(default_factory=dict)  # the keeper's waits on an open auction, by reason (first word)
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
            client, deployment, transmitters[0], params, Policy(min_profit=WAD, gas_cost=0),
            create_keeper_metrics(), bidders=transmitters[1:],
        )  # fmt: skip
        self.client = client
        self.stats = LiquidationStats()

    def on_round(self, output: RoundOutput, anchor_time: int) -> TickReport:
        """Note breaches and restorations the round attests, then let the keeper act on it; return what it did."""
        self.observe(output, anchor_time)
        return self._tick()

    def observe(self, output: RoundOutput, anchor_time: int) -> None:
        """Note the breaches and restorations the round attests."""
        stats = self.stats
        seen: set[str] = set()
        for margin in output.book.accounts:
            account = to_checksum_address(margin.account)
            if margin.is_empty or account == self.keeper.fund:  # the fund's cash goes negative by the socialized loss
                continue
            seen.add(account)
            stats.last_leaf[account] = (margin.equity * MONEY_TO_LEAF, margin.maintenance_margin * MONEY_TO_LEAF)
            if margin.equity < margin.maintenance_margin:
                stats.breached_at.setdefault(account, anchor_time)
                if margin.equity < 0:
                    stats.insolvent.add(account)
                    stats.open_breaches.pop(account, None)
                    stats.restored_at.pop(account, None)
                elif account not in stats.insolvent:
                    since, rounds = stats.open_breaches.get(account, (anchor_time, -1))
                    stats.open_breaches[account] = (since, rounds + 1)
                    stats.restored_at.pop(account, None)
            elif account in stats.open_breaches:  # restored, by a bid or by the market
                self._restore(account, anchor_time)
        for emptied in set(stats.open_breaches) - seen:  # emptied by a whole-book bid (0 <= E < d M): no leaf
            self._restore(emptied, anchor_time)

    def _restore(self, account: str, anchor_time: int) -> None:
        stats = self.stats
        since, rounds = stats.open_breaches.pop(account)
        stats.restored_at[account] = anchor_time
        stats.breach_waits.append(anchor_time - since)
        stats.rounds_to_restore.append(rounds + 1)

    def _tick(self) -> TickReport:
        stats = self.stats
        report = self.keeper.tick()
        for bid in report.bids:
            stats.bid_accounts[bid.account] = stats.bid_accounts.get(bid.account, 0) + 1
            stats.bid_gas.append(bid.gas_used)
        stats.auctions_started += len(report.started)
        stats.auctions_ended += len(report.ended)
        stats.last_wait.update(report.waiting)
        for reason in report.waiting.values():
            kind = reason.split(" ")[0]
            stats.waits[kind] = stats.waits.get(kind, 0) + 1
        for message in report.errors.values():
            kind = message.split("(")[0].split(":")[0].strip()
            stats.errors[kind] = stats.errors.get(kind, 0) + 1
        self.world.frozen = set(self.keeper.watched)
        stats.last = report
        return report

    def unresolved(self) -> set[str]:
        """Return the breached accounts no round has shown restored or insolvent yet."""
        return set(self.stats.open_breaches)

    def summary(self) -> dict[str, Any]:
        """Return the liquidation keys of ``--summary``."""
        stats = self.stats
        liquidator = self.keeper.liquidator
        waits = stats.breach_waits
        last = stats.last
        waiting: dict[str, int] = {}
        for reason in last.waiting.values() if last is not None else ():
            kind = reason.split(" ")[0]
            waiting[kind] = waiting.get(kind, 0) + 1
        return {
            "accounts_breached": len(stats.breached_at),
            "liquidations": sum(stats.bid_accounts.values()),
            "accounts_restored": len(stats.restored_at),
            "accounts_insolvent": len(stats.insolvent),
            "accounts_unresolved": len(stats.open_breaches),
            "unresolved": {
                a: {
                    "equity": stats.last_leaf[a][0] / WAD,
                    "maintenance_margin": stats.last_leaf[a][1] / WAD,
                    "rounds_below": stats.open_breaches[a][1] + 1,
                    "keeper": stats.last_wait.get(a, ""),
                }
                for a in sorted(stats.open_breaches)
            },
            "max_rounds_breach_to_restored": max(stats.rounds_to_restore, default=None),
            "auctions_open_at_end": len(self.keeper.watched),
            "keeper_waiting_at_end": dict(sorted(waiting.items())),
            "keeper_waits": dict(sorted(stats.waits.items())),
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
