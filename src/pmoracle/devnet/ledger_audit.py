"""Money conservation of the ledger, checked from chain state alone (devnet summary, contract tests).

The identity (docs/protocol.md, "Cash flows") holds after every transaction, exactly, in USD WAD:

    settlement tokens held x cashScale
        = sum(cash) - sum(cost of open positions) + feesCollected + fundingPool
          + sum(size x settlement value x VALUE_SCALE over open positions of expired instruments whose
                settlement price is fixed)

Deposits and withdrawals of the settlement token move cash and tokens together; a trade moves cash - cost of its
two sides by opposite amounts (plus the fees, which move to ``feesCollected``); realized funding moves between
cash and the pool; settling a position moves its settlement value from the last term into cash. Each collateral
token held also equals the sum of the accounts' balances of it, and the open sizes of every instrument not yet
settling sum to zero (every trade has two sides).

The insurance fund is the Liquidator contract's own account in the ledger: liquidation fees and donations are cash
moved into it, subsidies cash moved out of it, so the identity needs no new term (``insurance_fund`` reports that
account's cash, already inside ``cash``; negative: the loss socialized over every cash holder). A bid moves a
fraction of sizes, costs, balances and cash between two accounts, and realizes the moved perpetuals' funding as a
trade does: every term is unchanged (docs/liquidation.md, "Money").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment

VALUE_SCALE = 10**6  # size (1e-4) x price (1e-8 USD) x VALUE_SCALE = USD WAD
PAGE = 500


@dataclass(frozen=True, slots=True)
class CashAudit:
    """The terms of the cash identity at one block (USD WAD) and whether every check held."""

    block: int
    tokens_held: int  # settlement tokens held by the ledger, x cashScale
    cash: int
    cost: int
    fees: int
    funding_pool: int
    settling: int  # settlement value of open positions whose settlement price is fixed
    insurance_fund: int  # the Liquidator's cash (part of ``cash``); negative: the socialized loss
    collateral_ok: bool
    open_interest_ok: bool

    @property
    def ok(self) -> bool:
        """Check the cash identity, the collateral balances and the two-sidedness of open positions."""
        ledger = self.cash - self.cost + self.fees + self.funding_pool + self.settling
        return self.tokens_held == ledger and self.collateral_ok and self.open_interest_ok


def _settlement_value(kind: int, strike: int, price: int) -> int:
    if kind == 1:
        return price
    return max(price - strike, 0) if kind == 2 else max(strike - price, 0)


def audit_cash(w3: Any, deployment: Deployment, block: int | str = "latest") -> CashAudit:
    """Read the ledger at ``block`` and return the terms of its cash identity.

    Args:
        w3: a web3 client connected to the chain.
        deployment: the deployment (MarginAccounts, MarketFeeds, the settlement and collateral tokens).
        block: the block to read (default the latest).
    """
    ledger = deployment.contract(w3, "MarginAccounts").functions
    feeds = deployment.contract(w3, "MarketFeeds").functions
    number: int = w3.eth.get_block(block)["number"]
    instruments = []
    count = ledger.instrumentCount().call(block_identifier=number)
    for offset in range(0, count, PAGE):
        instruments += ledger.instrumentsPage(offset, PAGE).call(block_identifier=number)
    fixed: dict[int, int] = {}
    for iid, underlying, kind, expiry, strike, _ in instruments:
        if kind != 0:
            price, fixed_at = feeds.settlementPrice(underlying, expiry).call(block_identifier=number)
            if fixed_at:
                fixed[iid] = _settlement_value(kind, strike, price)
    views = []
    for offset in range(0, ledger.accountCount().call(block_identifier=number), PAGE):
        views += ledger.accountsPage(offset, PAGE).call(block_identifier=number)
    cash = cost = settling = fund = 0
    open_sizes: dict[int, int] = {}
    balances: dict[str, int] = {}
    fund_account = deployment.contracts.get("Liquidator")
    for account, account_cash, positions, collateral in views:
        cash += account_cash
        if account == fund_account:
            fund = account_cash
        for iid, size, position_cost, _funding_index in positions:
            cost += position_cost
            open_sizes[iid] = open_sizes.get(iid, 0) + size
            if iid in fixed:
                settling += size * fixed[iid] * VALUE_SCALE
        for token, amount in collateral:
            balances[token] = balances.get(token, 0) + amount
    settlement_token = ledger.settlementToken().call(block_identifier=number)
    scale = ledger.cashScale().call(block_identifier=number)

    def held(token: str) -> int:
        erc20 = w3.eth.contract(address=token, abi=load_artifact("MockERC20").abi)
        return int(erc20.functions.balanceOf(deployment.contracts["MarginAccounts"]).call(block_identifier=number))

    collateral_ok = all(
        held(token) == balances.get(token, 0) for token in ledger.collateralTokens().call(block_identifier=number)
    )
    return CashAudit(
        block=number,
        tokens_held=held(settlement_token) * scale,
        cash=cash,
        cost=cost,
        fees=ledger.feesCollected().call(block_identifier=number),
        funding_pool=ledger.fundingPool().call(block_identifier=number),
        settling=settling,
        insurance_fund=fund,
        collateral_ok=collateral_ok,
        open_interest_ok=all(size == 0 for iid, size in open_sizes.items() if iid not in fixed),
    )
