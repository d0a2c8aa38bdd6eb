"""Signed trades for the contract tests: both parties sign EIP-712 orders, the matcher pairs them on the Exchange."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_utils import to_canonical_address, to_checksum_address

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.orders import Order, sign_order
from pmoracle.chain.transmitter import Receipt, Transmitter
from pmoracle.devnet.ledger_audit import CashAudit, audit_cash
from tests.integration.chain.helpers import contract_at

ORDER_LIFETIME = 3_600  # seconds an order stays valid after the latest block


@dataclass
class Desk:
    """Matches signed orders on the Exchange for test accounts whose keys it holds; posts the mark first."""

    deployment: Deployment
    matcher: Transmitter  # holds the Exchange's MATCHER_ROLE and FEEDER_ROLE (the deployer by default)
    w3: Any = None  # a connected web3: calls built here can also be eth_call'ed (revert_of)
    keys: dict[str, bytes] = field(default_factory=dict)  # checksum address -> private key
    _nonces: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    @property
    def exchange(self) -> Any:
        """Return the Exchange contract (for encoding calls)."""
        if self.w3 is not None:
            return self.deployment.contract(self.w3, "Exchange")
        return contract_at(list(load_artifact("Exchange").abi), self.deployment.contracts["Exchange"])

    def add(self, key: bytes) -> str:
        """Hold ``key``; return its checksum address."""
        address = str(Account.from_key(key).address)
        self.keys[address] = key
        return address

    def order(self, account: str, instrument_id: int, is_buy: bool, size: int, limit: int, **kw: int) -> Order:
        """Return an order of ``account`` valid for ORDER_LIFETIME from now (fields overridable)."""
        expiry = kw.pop("expiry", None)
        if expiry is None:
            expiry = self.matcher.client.get_block(self.matcher.client.block_number()).timestamp + ORDER_LIFETIME
        fields = {"nonce": next(self._nonces), "expiry": expiry} | kw
        return Order(to_canonical_address(account), instrument_id, is_buy, size, limit, **fields)

    def sign(self, order: Order, key: bytes | None = None) -> bytes:
        """Return ``order`` signed by ``key`` (default: its own account's key)."""
        signer = key if key is not None else self.keys[to_checksum_address(order.account)]
        return sign_order(self.deployment.chain_id, self.deployment.contracts["Exchange"], order, signer)

    def mark(self, instrument_id: int, price: int) -> Receipt:
        """Post ``price`` as the instrument's mark."""
        return self.matcher.transact_call(self.exchange.functions.setMarks([instrument_id], [price]))

    def match_call(self, buy: Order, buy_sig: bytes, sell: Order, sell_sig: bytes, size: int, price: int) -> Any:
        """Return the ``matchOrders`` call (to send, or to decode its revert)."""
        return self.exchange.functions.matchOrders(buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, size, price)

    def trade(
        self, buyer: str, seller: str, instrument_id: int, size: int, price: int, *, mark: int | None = None
    ) -> Receipt:
        """Trade ``size`` from seller to buyer at ``price`` with two fresh orders limited at ``price``."""
        self.mark(instrument_id, price if mark is None else mark)
        buy = self.order(buyer, instrument_id, True, size, price)
        sell = self.order(seller, instrument_id, False, size, price)
        return self.matcher.transact_call(self.match_call(buy, self.sign(buy), sell, self.sign(sell), size, price))


def check_conservation(w3: Any, deployment: Deployment) -> CashAudit:
    """Assert the ledger's money identity (pmoracle.devnet.ledger_audit) at the latest block; return its terms."""
    audit = audit_cash(w3, deployment)
    assert audit.ok, f"money not conserved: {audit}"
    return audit
