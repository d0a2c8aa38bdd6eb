"""The keeper's Prometheus metrics, on a registry of its own (named like the node's: ``pmoracle_keeper_``)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

FRACTION_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0)
DISCOUNT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


@dataclass(frozen=True, slots=True)
class KeeperMetrics:
    """Every metric of one keeper and the registry that exports them."""

    registry: CollectorRegistry
    rounds_seen: Counter  # attested rounds the keeper evaluated
    auctions_started: Counter  # startAuction transactions it sent and got mined
    auctions_ended: Counter  # endAuction transactions (the round attests the account restored)
    bids: Counter  # bids mined, by outcome (restored | partial)
    bid_fraction: Histogram  # fraction of the book taken by each bid (1 = whole book)
    bid_discount: Histogram  # discount of each bid (fraction of maintenance margin)
    bid_gain_usd: Counter  # the keeper's gain at attested values, f E - payment - fee, in USD
    gas_spent: Counter  # gas units used by the keeper's transactions
    errors: Counter  # failed actions, by kind (the contract's custom error, or rpc)
    open_auctions: Gauge  # auctions open on-chain among the accounts the keeper watches
    cash_usd: Gauge  # the keeper account's cash in the ledger, USD
    last_round: Gauge  # anchor block of the latest attested round evaluated

    def exposition(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)


def create_keeper_metrics(registry: CollectorRegistry | None = None) -> KeeperMetrics:
    """Return a fresh :class:`KeeperMetrics` on ``registry`` (a new private registry when None)."""
    registry = CollectorRegistry(auto_describe=True) if registry is None else registry
    p = "pmoracle_keeper_"
    return KeeperMetrics(
        registry=registry,
        rounds_seen=Counter(p + "rounds_seen", "Attested rounds evaluated", registry=registry),
        auctions_started=Counter(p + "auctions_started", "Auctions started by this keeper", registry=registry),
        auctions_ended=Counter(p + "auctions_ended", "Auctions ended on a restored account", registry=registry),
        bids=Counter(p + "bids", "Bids mined, by outcome", ["outcome"], registry=registry),
        bid_fraction=Histogram(
            p + "bid_fraction", "Fraction of the book taken per bid", buckets=FRACTION_BUCKETS, registry=registry
        ),
        bid_discount=Histogram(
            p + "bid_discount", "Discount per bid (of maintenance margin)", buckets=DISCOUNT_BUCKETS, registry=registry
        ),
        bid_gain_usd=Counter(p + "bid_gain_usd", "Gain of the bids at attested values, USD", registry=registry),
        gas_spent=Counter(p + "gas_spent", "Gas used by the keeper's transactions", registry=registry),
        errors=Counter(p + "errors", "Failed actions, by kind", ["kind"], registry=registry),
        open_auctions=Gauge(p + "open_auctions", "Open auctions on watched accounts", registry=registry),
        cash_usd=Gauge(p + "cash_usd", "The keeper account's cash in the ledger, USD", registry=registry),
        last_round=Gauge(p + "last_round", "Anchor block of the latest round evaluated", registry=registry),
    )
