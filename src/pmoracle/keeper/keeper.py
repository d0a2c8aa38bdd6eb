"""The keeper's I/O shell: reads the latest attested round, finds the accounts below maintenance margin, starts
auctions, bids when :func:`pmoracle.keeper.decision.decide` says so, and ends auctions the round shows restored.

The breached accounts come from the keeper's own recomputation of the attested round (``read_snapshot`` at its
anchor + the engine), checked against the attested accounts root: a keeper trusts no node for the list. The leaves
and proofs come from that recomputation, or from a node's ``GET /v1/margin/{account}`` when ``margin_api`` is set
(checked against the root too). Every decision is logged; transactions go through the ``Transmitter``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import threading
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi.exceptions import DecodingError
from eth_utils import to_canonical_address, to_checksum_address
from web3 import Web3

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import event_topic
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ChainError, ContractError
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Receipt, Transmitter
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, verify_proof
from pmoracle.errors import PmoracleError
from pmoracle.keeper.decision import Action, AuctionParams, BidderFunds, Decision, Policy, Quote, decide, gain
from pmoracle.keeper.metrics import KeeperMetrics
from pmoracle.node.policy import read_policy_round
from pmoracle.node.round import compute_leaves
from pmoracle.risk.concentration import compute_bid_reserve
from pmoracle.risk.errors import ConcentrationOverflowError
from pmoracle.risk.inputs import WAD
from pmoracle.risk.margin import WAD_PER_MONEY, Book, compute_book
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import compute_effective_params

log = logging.getLogger(__name__)
_W3 = Web3()  # encodes calls only
_BID_TOPIC = "0x" + event_topic("Liquidator", "Bid").hex()


class KeeperError(PmoracleError):
    """Raised when the keeper cannot trust what it read (a recomputation or a proof that does not match the root)."""


@dataclass(frozen=True, slots=True)
class BidRecord:
    """One mined bid."""

    account: str
    fraction: int
    discount: int
    cost: int  # payment + fee, USD WAD (negative: a subsidy)
    gain: int  # f E - cost at attested values, USD WAD
    gas_used: int
    restored: bool  # the bid closed the auction
    whole_book: bool  # the bid took the whole book (E < d M, an insolvent account included)
    mined_at: int  # block timestamp


@dataclass
class TickReport:
    """What one evaluation of the latest attested round did."""

    round_block: int | None = None
    breached: list[str] = field(default_factory=list)  # accounts the round shows below maintenance margin
    started: list[str] = field(default_factory=list)
    bids: list[BidRecord] = field(default_factory=list)
    ended: list[str] = field(default_factory=list)
    waiting: dict[str, str] = field(default_factory=dict)  # account -> why it waits
    errors: dict[str, str] = field(default_factory=dict)  # account -> the error of its failed action


UNBOUNDED_RESERVE = 2**200  # USD WAD: a reserve no account carries
NO_LEAF: tuple[tuple[int, int, int], list[bytes]] = ((0, 0, 0), [])  # what a cash-only bidder proves: nothing


@dataclass(frozen=True, slots=True)
class Bidder:
    """A bidding account as the Liquidator will judge it: what it brings, and the leaf and proof it sends (NO_LEAF
    for a cash-only account)."""

    transmitter: Transmitter
    funds: BidderFunds
    leaf: tuple[tuple[int, int, int], list[bytes]] = NO_LEAF


class TickBidders:
    """The accounts that can bid on one round within one pass: read on first use (an account's cash, book and
    leaf cost several calls), and an account that bid leaves the list, since its book changed after the anchor."""

    def __init__(self, read: Callable[[], list[Bidder]]) -> None:
        self._read = read
        self._ready: list[Bidder] | None = None

    def best(self, params: AuctionParams) -> Bidder | None:
        """Return the account with the most headroom (None: none can bid)."""
        if self._ready is None:
            self._ready = self._read()
        return max(self._ready, key=lambda b: b.funds.headroom(params), default=None)

    def spend(self, bidder: Bidder) -> None:
        """Take ``bidder`` out of the list: it bid, and no leaf of this round proves its book any more."""
        if self._ready is not None and bidder in self._ready:
            self._ready.remove(bidder)


@dataclass(frozen=True, slots=True)
class AttestedRound:
    """The latest attested round as the keeper uses it: anchor block, root, and the leaves it recomputed."""

    block_number: int
    accounts_root: bytes
    tree: MerkleTree


def fetch_margin(base_url: str, account: str, timeout: float = 10.0) -> tuple[AccountLeaf, int, list[bytes]]:
    """Return (leaf, anchor block, proof) of ``account`` from a node's ``GET /v1/margin/{account}``.

    Errors:
        KeeperError when the node answers with an error status or a malformed body.
    """
    url = f"{base_url.rstrip('/')}/v1/margin/{account}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
        leaf = AccountLeaf(
            account=to_canonical_address(body["account"]),
            initial_margin=int(body["initialMargin"]),
            maintenance_margin=int(body["maintenanceMargin"]),
            equity=int(body["equity"]),
        )
        proof = [bytes.fromhex(node.removeprefix("0x")) for node in body["proof"]]
        return leaf, int(body["blockNumber"]), proof
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise KeeperError(f"margin API {url}: {exc}") from exc


class Keeper:
    """One keeper acting on the latest attested round from one or more bidding accounts; call :meth:`tick`
    periodically."""

    def __init__(
        self,
        client: ChainClient,
        deployment: Deployment,
        transmitter: Transmitter,
        risk_params: RiskParams,
        policy: Policy,
        metrics: KeeperMetrics,
        *,
        margin_api: str | None = None,
        block_time: int = 0,
        bidders: Sequence[Transmitter] = (),
        value_at_marks: bool = True,
    ) -> None:
        """Args:
        client: the chain client (views and the snapshot).
        deployment: the contracts' addresses.
        transmitter: the keeper account's transmitter (starts auctions, ends them, and bids).
        risk_params: the parameters the committee attests with (their hash must match the rounds').
        policy: the least profit and the gas cost estimate of a bid.
        metrics: where to count what it does.
        margin_api: a node's API base URL for leaves and proofs (None: the keeper's own recomputation).
        block_time: seconds added to the latest block's time to date a bid (0, the safe choice: see ``decide``).
        bidders: more accounts to bid from. A bid hands the bidder a book, after which its next bid must prove its
            own leaf in a round anchored after that bid (the Liquidator's attested check), so one account bids at
            most once a round; the account with the most headroom bids.
        value_at_marks: also value the book at current marks with the engine (the chain's latest block) and bid
            only when the lower of the two values pays; when the engine cannot value it (stale feeds), the attested
            value alone is used and the failure counted (``errors{kind="valuation"}``).
        """
        self.client = client
        self.deployment = deployment
        self.transmitter = transmitter
        self.risk_params = risk_params
        self.policy = policy
        self.metrics = metrics
        self.margin_api = margin_api
        self.block_time = block_time
        self.address = to_checksum_address(transmitter.address)
        self.bidders = [transmitter, *bidders]
        self.value_at_marks = value_at_marks
        self._marks: dict[str, int] | None = None  # equity at current marks by account, for one tick
        self.liquidator = deployment.contract(_W3, "Liquidator").functions
        self.ledger = deployment.contract(_W3, "MarginAccounts").functions
        self.oracle = deployment.contract(_W3, "MarginOracle").functions
        self.fund = to_checksum_address(deployment.contracts["Liquidator"])  # the insurance fund: never auctioned
        self.watched: set[str] = set()  # accounts with an auction the keeper knows of
        self._round: AttestedRound | None = None
        self._book: Book | None = None  # the latest round's book, recomputed (the concentration reserve reads it)

    # --- reads ----------------------------------------------------------------------------------------------------

    def auction_params(self) -> AuctionParams:
        """Return the Liquidator's parameters (read every tick: the admin may change them)."""
        return AuctionParams(*self.client.call(self.liquidator.params()))

    def latest_round(self) -> AttestedRound | None:
        """Return the latest attested round recomputed from the chain (None before the first round).

        Errors:
            KeeperError when the recomputation's root differs from the attested root (other risk parameters, or
            a committee attesting something else); ChainError / RpcError on a failed read.
        """
        try:
            view = self.client.call(self.oracle.latestRound())
        except ContractError as exc:
            if exc.name == "NoAttestedRound":
                return None
            raise
        block_number, root = int(view[0]), bytes(view[1])
        if self._round is not None and self._round.block_number == block_number:
            return self._round
        snapshot = read_snapshot(self.client, self.deployment, block_number)
        model = self.risk_params
        if model.policy is not None:  # the round ran on the adaptive policy's ranges at B (docs/policy.md)
            policy = read_policy_round(self.client, self.deployment, model, block_number)
            model = compute_effective_params(model, policy.states)
        book = Book(snapshot.market, model, snapshot.portfolios)
        tree = MerkleTree(compute_leaves(book.result()))
        if tree.root != root:
            raise KeeperError(
                f"round {block_number}: recomputed root 0x{tree.root.hex()} != attested 0x{root.hex()} "
                "(check risk.params_file against the committee's paramsHash)"
            )
        self._round = AttestedRound(block_number, root, tree)
        self._book = book
        self.metrics.rounds_seen.inc()
        self.metrics.last_round.set(block_number)
        return self._round

    def margin_of(self, round_: AttestedRound, account: str) -> tuple[tuple[int, int, int], list[bytes]]:
        """Return the attested (IM, MM, E) of ``account`` and its proof, from the node API or the recomputation.

        Errors:
            KeeperError when the node's leaf is for another round or does not prove against the attested root.
        """
        if self.margin_api is None:
            leaf = round_.tree.leaf_of(to_canonical_address(account))
            proof = round_.tree.proof(leaf.account)
        else:
            leaf, block_number, proof = fetch_margin(self.margin_api, account)
            if block_number != round_.block_number or not verify_proof(round_.accounts_root, leaf, proof):
                raise KeeperError(f"margin API: {account}'s proof does not match round {round_.block_number}")
        return (leaf.initial_margin, leaf.maintenance_margin, leaf.equity), proof

    def started_at(self, account: str) -> int | None:
        """Return when ``account``'s open auction started (None: no auction)."""
        started = int(self.client.call(self.liquidator.auctions(account))[0])
        return started or None

    # --- one evaluation -------------------------------------------------------------------------------------------

    def tick(self) -> TickReport:
        """Evaluate the latest attested round once: start, bid, wait or end on every breached or watched account.

        Returns:
            What it did. A failed action (a revert: another keeper was first, the round moved) is logged, counted
            and reported; it does not stop the others.

        Errors:
            KeeperError / ChainError / RpcError when the round or the chain cannot be read.
        """
        report = TickReport()
        self._marks = None
        round_ = self.latest_round()
        if round_ is None:
            return report
        params = self.auction_params()
        # a newer round attested mid-tick makes every later proof fail (InvalidMarginProof): the accounts left
        # are evaluated again on it, once
        only: list[str] | None = None
        for _ in range(2):
            stale = self._pass(params, round_, report, only)
            newer = self.latest_round() if stale else None
            if newer is None or newer.block_number == round_.block_number:
                break
            round_, only = newer, stale
            for account in stale:
                report.errors.pop(account, None)
        self.metrics.open_auctions.set(len(self.watched))
        self.metrics.cash_usd.set(self._cash() / WAD)
        return report

    def _pass(
        self, params: AuctionParams, round_: AttestedRound, report: TickReport, only: list[str] | None
    ) -> list[str]:
        """Act on every breached or watched account of ``round_`` (or on those of ``only`` among them); return
        those whose proof the chain refused (a newer round was attested meanwhile)."""
        report.round_block = round_.block_number
        breached = [
            str(to_checksum_address(leaf.account))
            for leaf in round_.tree.leaves
            if leaf.equity < leaf.maintenance_margin and to_checksum_address(leaf.account) != self.fund
        ]
        if only is None:
            report.breached = breached
        present = {str(to_checksum_address(leaf.account)) for leaf in round_.tree.leaves}
        accounts = set(breached) | (self.watched & present)
        bidders = TickBidders(lambda: self.ready_bidders(round_, params))
        stale = []
        for account in sorted(accounts if only is None else accounts & set(only)):
            try:
                self._act(params, round_, account, report, bidders)
            except (ChainError, KeeperError) as exc:
                kind = exc.name if isinstance(exc, ContractError) else type(exc).__name__
                self.metrics.errors.labels(kind=kind).inc()
                report.errors[account] = str(exc)
                log.warning("keeper action on %s failed: %s", account, exc)
                if kind == "InvalidMarginProof":
                    stale.append(account)
        return stale

    def _cash(self, address: str | None = None) -> int:
        return int(self.client.call(self.ledger.cashOf(address or self.address)))

    def cash_only(self, address: str) -> bool:
        """Return whether ``address`` holds no position and no collateral balance in the ledger (its equity is its
        cash and it bids without a leaf)."""
        if int(self.client.call(self.ledger.openPositionCount(address))) != 0:
            return False
        tokens = self.client.call(self.ledger.collateralTokens())
        return all(
            int(self.client.call(self.ledger.balanceOf(address, to_checksum_address(token)))) == 0 for token in tokens
        )

    def bidder_of(self, round_: AttestedRound, transmitter: Transmitter, params: AuctionParams) -> Bidder | None:
        """Return how the Liquidator would judge ``transmitter``'s account as a bidder in ``round_`` (None: it
        cannot bid now: it holds a book the round does not prove, changed since its anchor, or is under auction)."""
        address = to_checksum_address(transmitter.address)
        if self.cash_only(address):
            return Bidder(transmitter, BidderFunds(self._cash(address)))
        if int(self.client.call(self.ledger.tradedAt(address))) > round_.block_number:
            return None
        if self.started_at(address) is not None:
            return None
        try:
            self.client.call(self.ledger.checkNoFundingSince(address, round_.block_number))
            margin, proof = self.margin_of(round_, address)
        except (ContractError, KeyError, KeeperError):
            return None
        _, mm, equity = margin
        base = int(self.client.call(self.ledger.withdrawableEquity(address, equity, round_.block_number)))
        return Bidder(transmitter, BidderFunds(base, mm), (margin, proof))

    def ready_bidders(self, round_: AttestedRound, params: AuctionParams) -> list[Bidder]:
        """Return the keeper's accounts that can bid in ``round_`` now."""
        return [b for t in self.bidders if (b := self.bidder_of(round_, t, params)) is not None]

    def bid_reserve(self, bidder: str, account: str) -> int:
        """Return the margin (USD WAD) that ``bidder``'s book merged with any fraction of ``account``'s may carry
        beyond the sum of their attested margins under a convex concentration add-on (0 without one): both books as
        of the latest round's anchor, which neither has changed since when the contract accepts the bid."""
        book = self._book
        if book is None or book.arrays.concentration_coef.size == 0:
            return 0
        index = {p.account: k for k, p in enumerate(book.portfolios)}
        ours, theirs = index.get(to_canonical_address(bidder)), index.get(to_canonical_address(account))
        if ours is None or theirs is None:
            return 0
        coef, threshold = book.arrays.concentration_coef.tolist(), book.arrays.concentration_threshold.tolist()
        try:
            reserve = compute_bid_reserve(coef, threshold, book.exposures(ours), book.exposures(theirs))
        except ConcentrationOverflowError:
            return UNBOUNDED_RESERVE  # the merged book would be over the engine's limit: never bid into it
        return reserve * WAD_PER_MONEY

    def _decide(
        self, params: AuctionParams, equity: int, mm: int, started: int | None, funds: BidderFunds, account: str
    ) -> Decision:
        now = self.client.get_block("latest").timestamp + self.block_time
        equity_now = self.equity_now(account) if self.value_at_marks and started is not None else None
        return decide(
            params, self.policy, equity=equity, mm=mm, auction_started_at=started, now=now, funds=funds,
            equity_now=equity_now,
        )  # fmt: skip

    def equity_now(self, account: str) -> int | None:
        """Return ``account``'s equity at current marks (USD WAD), valued by the engine on the latest block once per
        tick; None when the engine cannot value the book (counted and logged)."""
        if self._marks is None:
            try:
                snapshot = read_snapshot(self.client, self.deployment, self.client.block_number())
                book = compute_book(snapshot.market, self.risk_params, snapshot.portfolios)
                self._marks = {str(to_checksum_address(leaf.account)): leaf.equity for leaf in compute_leaves(book)}
            except PmoracleError as exc:
                self.metrics.errors.labels(kind="valuation").inc()
                log.warning("cannot value books at current marks: %s", exc)
                self._marks = {}
        return self._marks.get(account)

    def _check_quote(self, account: str, q: Quote, equity: int, mm: int) -> None:
        """Compare the keeper's quote with ``Liquidator.quote`` at the latest block (the time the bid was dated at
        with ``block_time = 0``); raise KeeperError when they differ (the mirror of the contract's arithmetic broke,
        or the parameters changed under it)."""
        onchain = self.client.call(self.liquidator.quote(account, q.fraction, equity, mm))
        _, most, discount, payment, fee = (int(v) for v in onchain)
        if self.block_time == 0 and (most, discount, payment, fee) != (q.max_fraction, q.discount, q.payment, q.fee):
            raise KeeperError(
                f"{account}: keeper quote (max {q.max_fraction}, d {q.discount}, payment {q.payment}, fee {q.fee}) "
                f"!= Liquidator.quote (max {most}, d {discount}, payment {payment}, fee {fee})"
            )

    def _mined_quote(self, receipt: Receipt, quoted: Quote) -> Quote:
        """Return what the mined bid moved, from its ``Bid`` event (a TAKE_MAX bid's fraction and discount are the
        mining block's); ``quoted`` when the receipt has no such event.

        Errors:
            KeeperError when the event's data is malformed.
        """
        liquidator = self.deployment.contracts["Liquidator"].lower()
        for entry in receipt.logs:
            if entry.get("address", "").lower() != liquidator or entry["topics"][0] != _BID_TOPIC:
                continue
            try:
                fraction, discount, payment, fee, _ = abi_decode(
                    ["uint256", "uint256", "int256", "uint256", "bool"], bytes.fromhex(entry["data"][2:])
                )
            except (DecodingError, ValueError) as exc:
                raise KeeperError(f"malformed Bid event in 0x{receipt.tx_hash.hex()}: {exc}") from exc
            return Quote(fraction, quoted.max_fraction, discount, payment, fee)
        return quoted

    def _act(
        self, params: AuctionParams, round_: AttestedRound, account: str, report: TickReport, bidders: TickBidders
    ) -> None:
        margin, proof = self.margin_of(round_, account)
        _, mm, equity = margin
        started = self.started_at(account)
        bidder = bidders.best(params)
        funds = bidder.funds if bidder is not None else BidderFunds(0)
        if bidder is not None and bidder.leaf is not NO_LEAF:
            funds = dataclasses.replace(funds, reserve=self.bid_reserve(bidder.transmitter.address, account))
        decision = self._decide(params, equity, mm, started, funds, account)
        if decision.action is Action.START:
            receipt = self.transmitter.transact_call(self.liquidator.startAuction(account, margin, proof))
            self.metrics.auctions_started.inc()
            self.metrics.gas_spent.inc(receipt.gas_used)
            self.watched.add(account)
            report.started.append(account)
            log.info("auction started on %s: equity %s < mm %s (round %d)", account, equity, mm, round_.block_number)
            started = self.started_at(account)
            decision = self._decide(params, equity, mm, started, funds, account)
        if started is not None:
            self.watched.add(account)
        if decision.action is Action.END:
            receipt = self.transmitter.transact_call(self.liquidator.endAuction(account, margin, proof))
            self.metrics.auctions_ended.inc()
            self.metrics.gas_spent.inc(receipt.gas_used)
            self.watched.discard(account)
            report.ended.append(account)
            log.info("auction on %s ended: round %d attests it restored", account, round_.block_number)
        elif decision.action is Action.WAIT:
            report.waiting[account] = decision.reason
            log.debug("waiting on %s: %s", account, decision.reason)
        elif decision.action is Action.BID:
            assert decision.quote is not None and bidder is not None  # decide() quotes every bid; headroom > 0
            q = decision.quote
            self._check_quote(account, q, equity, mm)
            fraction, max_payment = decision.bid_args
            call = self.liquidator.bid(account, fraction, max_payment, margin, proof, *bidder.leaf)
            bidders.spend(bidder)  # its book changes now: no leaf proves it until the next round
            receipt = bidder.transmitter.transact_call(call)
            q = self._mined_quote(receipt, q)
            restored = self.started_at(account) is None
            mined_at = self.client.get_block(receipt.block_number).timestamp
            record = BidRecord(
                account, q.fraction, q.discount, q.cost, gain(q, equity), receipt.gas_used, restored,
                q.fraction == WAD and q.max_fraction == WAD, mined_at,
            )  # fmt: skip
            if restored:
                self.watched.discard(account)
            report.bids.append(record)
            self.metrics.bids.labels(outcome="restored" if restored else "partial").inc()
            self.metrics.bid_fraction.observe(q.fraction / WAD)
            self.metrics.bid_discount.observe(q.discount / WAD)
            self.metrics.bid_gain_usd.inc(max(0, record.gain) / WAD)
            self.metrics.gas_spent.inc(receipt.gas_used)
            log.info(
                "bid on %s: fraction %.6f at discount %.4f, cost %.2f USD, gain %.2f USD, gas %d, %s",
                account, q.fraction / WAD, q.discount / WAD, q.cost / WAD, record.gain / WAD, receipt.gas_used,
                "restored" if restored else "auction still open",
            )  # fmt: skip


def run_keeper(keeper: Keeper, interval: float, stop: threading.Event) -> None:
    """Call ``keeper.tick()`` every ``interval`` seconds until ``stop`` is set; a failed tick is logged, counted
    and retried at the next interval (a node's outage or an RPC failure must not end the keeper)."""
    while not stop.is_set():
        try:
            keeper.tick()
        except (PmoracleError, OSError) as exc:
            keeper.metrics.errors.labels(kind=type(exc).__name__).inc()
            log.warning("keeper tick failed: %s", exc)
        stop.wait(interval)


def describe(report: TickReport) -> dict[str, Any]:
    """Return a JSON-able summary of a tick (for logs and the devnet)."""
    return {
        "round": report.round_block,
        "breached": len(report.breached),
        "started": len(report.started),
        "bids": len(report.bids),
        "ended": len(report.ended),
        "waiting": len(report.waiting),
        "errors": len(report.errors),
    }
