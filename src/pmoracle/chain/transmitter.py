"""Sends transactions for one key: own nonce tracking, gas estimate with margin, capped EIP-1559 fees,
replacement of a stuck transaction, receipts, and custom errors decoded into ``ContractError``.

Blocking like the client; the node calls it through ``client.run_sync``. Sends of one Transmitter are serialized by
a lock so nonces are handed out in order even when several trio tasks transmit at once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any

from eth_account import Account
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.errors import (
    ChainError,
    ContractError,
    FeeCapExceededError,
    RpcError,
    RpcResponseError,
    RpcUnavailableError,
    TransactionFailedError,
    TransactionTimeoutError,
)
from pmoracle.chain.revert import revert_data_of

GWEI = 10**9
BPS = 10_000


@dataclass(frozen=True, slots=True)
class FeePolicy:
    """How a transmitter prices gas (wei per gas; multipliers in basis points)."""

    priority_fee: int = 1 * GWEI  # the tip offered to the block producer
    base_fee_multiplier: int = 2  # max fee = base fee of the latest block x this + tip: survives 6 full blocks
    max_fee_cap: int = 200 * GWEI  # never offer more per gas; refuse when the chain needs more
    gas_margin_bps: int = 12_500  # gas limit = estimate x 1.25 (the estimate is for the state it was made on)
    replacement_bump_bps: int = 1_250  # a replacement raises both fees by >= 12.5% (geth needs 10%)

    def __post_init__(self) -> None:
        for name in ("priority_fee", "base_fee_multiplier", "max_fee_cap", "gas_margin_bps", "replacement_bump_bps"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ChainError(f"FeePolicy.{name}: expected a non-negative integer, got {value!r}")
        if self.gas_margin_bps < BPS:
            raise ChainError(f"FeePolicy.gas_margin_bps: must be >= {BPS}, got {self.gas_margin_bps}")


@dataclass(frozen=True, slots=True)
class PendingTransaction:
    """A signed and sent transaction, with the hashes of the earlier versions it replaced (same nonce)."""

    tx_hash: bytes
    nonce: int
    to: str | None
    data: bytes
    value: int
    gas: int
    max_fee_per_gas: int
    max_priority_fee_per_gas: int
    replaced_hashes: tuple[bytes, ...] = ()

    @property
    def all_hashes(self) -> tuple[bytes, ...]:
        """Return this transaction's hash and those it replaced (any of them may be the one mined)."""
        return (self.tx_hash, *self.replaced_hashes)


@dataclass(frozen=True, slots=True)
class Receipt:
    """The outcome of a mined transaction."""

    tx_hash: bytes
    block_number: int
    block_hash: bytes
    status: int
    gas_used: int
    effective_gas_price: int
    contract_address: str | None = None
    logs: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def _ceil_bps(value: int, bps: int) -> int:
    return -(-value * bps // BPS)


def _is_nonce_too_low(error: RpcResponseError) -> bool:
    message = error.rpc_message.lower()
    return "nonce too low" in message or "nonce is too low" in message or "noncetoolow" in message


def _is_already_known(error: RpcResponseError) -> bool:
    message = error.rpc_message.lower()
    return "already known" in message or "already imported" in message or "alreadyknown" in message


class Transmitter:
    """Sends EIP-1559 transactions from one private key through a ``ChainClient``."""

    def __init__(
        self,
        client: ChainClient,
        private_key: bytes | str,
        *,
        fees: FeePolicy | None = None,
        receipt_timeout: float = 30.0,
        poll_interval: float = 0.05,
        estimate_block: str = "latest",
    ) -> None:
        """Create a transmitter; the nonce is fetched from the chain on the first send.

        Args:
            client: the chain client.
            private_key: 32-byte secp256k1 key (bytes or 0x-hex).
            fees: fee policy (defaults: 1 gwei tip, 2x base fee, 200 gwei cap, 1.25x gas, 12.5% bump).
            receipt_timeout: default seconds ``wait`` waits for a receipt.
            poll_interval: seconds between receipt polls.
            estimate_block: block tag gas is estimated on; "pending" runs the estimate where the transaction will
                run (a contract reading ``blockhash(latest)`` sees zero on "latest"), but anvil then builds a
                pending block from its pool, so the node keeps "latest".
        """
        self.client = client
        self._account = Account.from_key(private_key)
        self.address: str = self._account.address
        self.fees = fees or FeePolicy()
        self.receipt_timeout = receipt_timeout
        self.poll_interval = poll_interval
        self.estimate_block = estimate_block
        self._lock = threading.Lock()
        self._next_nonce: int | None = None
        self._counter_lock = threading.Lock()
        self.gas_used_total = 0
        self.fees_paid_total = 0  # wei
        self.transactions_sent = 0
        self.replacements_sent = 0
        self.nonce_resyncs = 0

    # ----- building -----

    def estimate_gas(self, to: str | None, data: bytes, value: int = 0) -> int:
        """Return the gas limit for a transaction: ``eth_estimateGas`` x the policy margin.

        The estimate runs on the transmitter's ``estimate_block``.

        Errors:
            ContractError when the estimate reverts (decoded from the JSON-RPC error's data).
        """
        tx: dict[str, Any] = {"from": self.address, "data": "0x" + data.hex(), "value": hex(value)}
        if to is not None:
            tx["to"] = to
        try:
            estimate = int(self.client.request("eth_estimateGas", [tx, self.estimate_block]), 16)
        except RpcResponseError as exc:
            revert = revert_data_of(exc)
            if revert is None:
                raise
            raise self.client.error_decoder.decode(revert) from exc
        return _ceil_bps(estimate, self.fees.gas_margin_bps)

    def compute_fees(self, base_fee: int) -> tuple[int, int]:
        """Return (max fee, priority fee) per gas for a base fee; the max fee is clamped to the cap.

        Errors:
            FeeCapExceededError when even base fee + tip exceeds the cap (the transaction could not be included).
        """
        tip = self.fees.priority_fee
        if base_fee + tip > self.fees.max_fee_cap:
            raise FeeCapExceededError(base_fee + tip, self.fees.max_fee_cap)
        return min(base_fee * self.fees.base_fee_multiplier + tip, self.fees.max_fee_cap), tip

    def _current_base_fee(self) -> int:
        return self.client.get_block("latest").base_fee_per_gas or 0

    # ----- sending -----

    def _fetch_nonce(self) -> int:
        return int(self.client.request("eth_getTransactionCount", [self.address, "pending"]), 16)

    def _sign_and_send(self, tx: dict[str, Any]) -> bytes:
        signed = self._account.sign_transaction(tx)
        tx_hash = bytes(signed.hash)
        try:
            self.client.request("eth_sendRawTransaction", ["0x" + bytes(signed.raw_transaction).hex()])
        except RpcResponseError as exc:
            if not _is_already_known(exc):  # sent before through another endpoint: same hash, fine
                raise
        return tx_hash

    def send(self, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None) -> PendingTransaction:
        """Estimate, price, sign and send a transaction with the next nonce (``to=None`` deploys a contract).

        Args:
            to: destination address, or None to create a contract from ``data``.
            data: calldata (or init code).
            value: wei to transfer.
            gas: gas limit; estimated with margin when None.

        Returns:
            The pending transaction (pass it to ``wait`` or ``replace``).

        Errors:
            ContractError when the gas estimate reverts; FeeCapExceededError when the chain is too expensive;
            RpcError when the node rejects the transaction.
        """
        if gas is None:
            gas = self.estimate_gas(to, data, value)
        max_fee, tip = self.compute_fees(self._current_base_fee())
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.client.chain_id,
            "to": to,
            "value": value,
            "data": data,
            "gas": gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": tip,
        }
        if to is None:
            del tx["to"]
        with self._lock:
            for attempt in range(2):
                if self._next_nonce is None:
                    self._next_nonce = self._fetch_nonce()
                tx["nonce"] = self._next_nonce
                try:
                    tx_hash = self._sign_and_send(tx)
                except RpcResponseError as exc:
                    self._next_nonce = None  # resync next time: whether that nonce was used is unknown
                    if _is_nonce_too_low(exc) and attempt == 0:
                        with self._counter_lock:
                            self.nonce_resyncs += 1
                        continue
                    raise
                except RpcUnavailableError:
                    self._next_nonce = None
                    raise
                self._next_nonce += 1
                break
        with self._counter_lock:
            self.transactions_sent += 1
        return PendingTransaction(
            tx_hash=tx_hash, nonce=tx["nonce"], to=to, data=data, value=value, gas=gas,
            max_fee_per_gas=max_fee, max_priority_fee_per_gas=tip,
        )  # fmt: skip

    def send_call(self, contract_fn: Any, *, value: int = 0, gas: int | None = None) -> PendingTransaction:
        """Send a bound web3 contract function call (``contract.functions.f(args)``); see ``send``."""
        data = bytes.fromhex(contract_fn._encode_transaction_data()[2:])
        return self.send(contract_fn.address, data, value=value, gas=gas)

    def replace(self, pending: PendingTransaction) -> PendingTransaction:
        """Re-send a stuck transaction with the same nonce and both fees raised by at least the bump.

        The new fees are the larger of the bumped old fees and what the current base fee asks for.

        Errors:
            FeeCapExceededError when the bumped max fee exceeds the cap; RpcError when the node rejects it.
        """
        bump = BPS + self.fees.replacement_bump_bps
        tip = max(_ceil_bps(pending.max_priority_fee_per_gas, bump), self.fees.priority_fee)
        bumped_max = _ceil_bps(pending.max_fee_per_gas, bump)
        if bumped_max > self.fees.max_fee_cap:
            raise FeeCapExceededError(bumped_max, self.fees.max_fee_cap)
        wanted = self._current_base_fee() * self.fees.base_fee_multiplier + tip
        max_fee = max(bumped_max, min(wanted, self.fees.max_fee_cap))
        tx: dict[str, Any] = {
            "type": 2,
            "chainId": self.client.chain_id,
            "nonce": pending.nonce,
            "value": pending.value,
            "data": pending.data,
            "gas": pending.gas,
            "maxFeePerGas": max_fee,
            "maxPriorityFeePerGas": min(tip, max_fee),
        }
        if pending.to is not None:
            tx["to"] = pending.to
        with self._lock:
            tx_hash = self._sign_and_send(tx)
        with self._counter_lock:
            self.replacements_sent += 1
        return replace(
            pending,
            tx_hash=tx_hash,
            max_fee_per_gas=max_fee,
            max_priority_fee_per_gas=tx["maxPriorityFeePerGas"],
            replaced_hashes=(pending.tx_hash, *pending.replaced_hashes),
        )

    # ----- receipts -----

    def get_receipt(self, tx_hash: bytes) -> Receipt | None:
        """Return the receipt of a transaction, or None while it is not mined."""
        raw = self.client.request("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])
        if raw is None:
            return None
        try:
            return Receipt(
                tx_hash=bytes.fromhex(raw["transactionHash"][2:]),
                block_number=int(raw["blockNumber"], 16),
                block_hash=bytes.fromhex(raw["blockHash"][2:]),
                status=int(raw["status"], 16),
                gas_used=int(raw["gasUsed"], 16),
                effective_gas_price=int(raw.get("effectiveGasPrice", "0x0"), 16),
                contract_address=to_checksum_address(raw["contractAddress"]) if raw.get("contractAddress") else None,
                logs=tuple(raw.get("logs", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChainError(f"malformed receipt for 0x{tx_hash.hex()}: {raw!r}") from exc

    def wait(self, pending: PendingTransaction, timeout: float | None = None) -> Receipt:
        """Wait for the receipt of a pending transaction (or of any version it replaced).

        Returns:
            The receipt, when the transaction succeeded.

        Errors:
            TransactionTimeoutError when none is mined in time; ContractError when it reverted (decoded by replaying
            the call on the parent block); TransactionFailedError when it failed without a decodable reason.
        """
        timeout = self.receipt_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            for tx_hash in pending.all_hashes:
                receipt = self.get_receipt(tx_hash)
                if receipt is not None:
                    self._account_gas(receipt)
                    if receipt.status != 1:
                        raise self._explain_failure(pending, receipt)
                    return receipt
            if time.monotonic() >= deadline:
                raise TransactionTimeoutError(pending.tx_hash, pending.nonce, timeout)
            time.sleep(self.poll_interval)

    def transact(
        self, to: str | None, data: bytes, *, value: int = 0, gas: int | None = None, max_replacements: int = 2
    ) -> Receipt:
        """Send a transaction and wait for it, replacing it with bumped fees each time a wait times out.

        Errors:
            as ``send``, ``replace`` and ``wait``; TransactionTimeoutError after the last replacement's wait.
        """
        pending = self.send(to, data, value=value, gas=gas)
        for attempt in range(max_replacements + 1):
            try:
                return self.wait(pending)
            except TransactionTimeoutError:
                if attempt == max_replacements:
                    # never mined, even with bumped fees: its nonce may be ahead of the chain (a reorg dropped an
                    # earlier transaction of ours); the next send asks the node for the nonce again
                    with self._lock:
                        self._next_nonce = None
                    raise
                pending = self.replace(pending)
        raise ChainError("unreachable")  # pragma: no cover

    def transact_call(self, contract_fn: Any, *, value: int = 0, max_replacements: int = 2) -> Receipt:
        """Send a bound web3 contract function call and wait for its receipt; see ``transact``."""
        data = bytes.fromhex(contract_fn._encode_transaction_data()[2:])
        return self.transact(contract_fn.address, data, value=value, max_replacements=max_replacements)

    def _account_gas(self, receipt: Receipt) -> None:
        with self._counter_lock:
            self.gas_used_total += receipt.gas_used
            self.fees_paid_total += receipt.gas_used * receipt.effective_gas_price

    def _explain_failure(self, pending: PendingTransaction, receipt: Receipt) -> ChainError:
        """Return the ContractError a failed transaction raised, found by replaying it on the parent block."""
        tx: dict[str, Any] = {
            "from": self.address,
            "data": "0x" + pending.data.hex(),
            "value": hex(pending.value),
            "gas": hex(pending.gas),
        }
        if pending.to is not None:
            tx["to"] = pending.to
        try:
            self.client.request("eth_call", [tx, hex(max(receipt.block_number - 1, 0))])
        except RpcResponseError as exc:
            revert = revert_data_of(exc)
            if revert is not None:
                error: ContractError = self.client.error_decoder.decode(revert, tx_hash=receipt.tx_hash)
                return error
        except RpcError:
            pass  # the parent state may be pruned (anvil --prune-history): the reason stays unknown
        return TransactionFailedError(receipt.tx_hash, receipt.block_number)
