"""Transmitter against a real anvil: nonces, gas margin, fee cap, stuck-transaction replacement, decoded reverts."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from pmoracle.chain.client import ChainClient
from pmoracle.chain.errors import ContractError, FeeCapExceededError, TransactionTimeoutError
from pmoracle.chain.revert import ErrorDecoder
from pmoracle.chain.transmitter import FeePolicy, Receipt, Transmitter
from pmoracle.devnet.devchain import Devchain

from .helpers import DEV_KEYS, contract_at
from .probe import compile_probe


@pytest.fixture(scope="module")
def probe(anvil: Devchain) -> tuple[ChainClient, object]:
    artifact = compile_probe()
    client = ChainClient([anvil.url], error_decoder=ErrorDecoder([artifact["abi"]]))
    receipt = Transmitter(client, DEV_KEYS[0]).transact(None, artifact["bytecode"])
    assert receipt.contract_address is not None
    return client, contract_at(artifact["abi"], receipt.contract_address)


@pytest.fixture
def manual_mining(anvil: Devchain) -> Iterator[None]:
    anvil.rpc("evm_setAutomine", False)
    try:
        yield
    finally:
        anvil.rpc("evm_setAutomine", True)


def test_several_sends_use_consecutive_nonces(anvil: Devchain, probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[1])
    start = int(str(anvil.rpc("eth_getTransactionCount", tx.address, "latest")), 16)
    pendings = [tx.send_call(contract.functions.set(i)) for i in range(1, 6)]
    assert [p.nonce for p in pendings] == list(range(start, start + 5))
    receipts = [tx.wait(p) for p in pendings]
    assert all(r.status == 1 for r in receipts)
    assert client.call(contract.functions.value()) == 5
    assert tx.gas_used_total == sum(r.gas_used for r in receipts) > 0
    assert tx.fees_paid_total == sum(r.gas_used * r.effective_gas_price for r in receipts)
    # The gas limit carries the 1.25x margin over the estimate.
    estimate = int(
        str(
            anvil.rpc(
                "eth_estimateGas",
                {
                    "from": tx.address,
                    "to": contract.address,
                    "data": contract.functions.set(3)._encode_transaction_data(),
                },
            )
        ),
        16,
    )
    assert tx.send_call(contract.functions.set(3)).gas == -(-estimate * 125 // 100)


def test_nonce_resyncs_after_another_sender_used_it(anvil: Devchain, probe: tuple) -> None:
    client, contract = probe
    mine = Transmitter(client, DEV_KEYS[2])
    tx = mine.send_call(contract.functions.set(11))
    mine.wait(tx)
    # The same key used elsewhere (another process) advances the chain's nonce behind our back.
    other = Transmitter(client, DEV_KEYS[2])
    other.wait(other.send_call(contract.functions.set(12)))
    again = mine.send_call(contract.functions.set(13))
    assert again.nonce == tx.nonce + 2
    assert mine.nonce_resyncs == 1
    assert mine.wait(again).status == 1


def test_custom_error_with_arguments_is_decoded_from_the_estimate(probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[0])
    with pytest.raises(ContractError) as info:
        tx.send_call(contract.functions.set(5000))
    assert info.value.name == "TooBig" and info.value.error_args == (5000, 1000)
    with pytest.raises(ContractError) as info:
        tx.send_call(contract.functions.set(666))
    assert info.value.name == "Forbidden"
    assert info.value.error_args == (tx.address, b"beast".ljust(32, b"\0"))


def test_mined_revert_is_decoded_by_replay(probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[0])
    pending = tx.send_call(contract.functions.set(4000), gas=100_000)  # explicit gas: no estimate, so it mines
    with pytest.raises(ContractError) as info:
        tx.wait(pending)
    assert info.value.name == "TooBig" and info.value.error_args == (4000, 1000)
    assert info.value.tx_hash == pending.tx_hash


def test_fee_cap_refuses_rather_than_overpays(probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[0], fees=FeePolicy(max_fee_cap=1))
    with pytest.raises(FeeCapExceededError) as info:
        tx.send_call(contract.functions.set(1))
    assert info.value.cap == 1 and info.value.max_fee_per_gas > 1


def test_stuck_transaction_is_replaced_with_bumped_fees(anvil: Devchain, probe: tuple, manual_mining: None) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[3], poll_interval=0.02)
    stuck = tx.send_call(contract.functions.set(21))
    with pytest.raises(TransactionTimeoutError):
        tx.wait(stuck, timeout=0.2)
    bumped = tx.replace(stuck)
    assert bumped.nonce == stuck.nonce and bumped.tx_hash != stuck.tx_hash
    assert bumped.max_fee_per_gas * 1000 >= stuck.max_fee_per_gas * 1125
    assert bumped.max_priority_fee_per_gas * 1000 >= stuck.max_priority_fee_per_gas * 1125
    anvil.rpc("evm_mine")
    receipt = tx.wait(bumped, timeout=5)
    assert receipt.tx_hash == bumped.tx_hash
    assert anvil.rpc("eth_getTransactionReceipt", "0x" + stuck.tx_hash.hex()) is None
    assert client.call(contract.functions.value()) == 21
    # A replacement whose bumped fee would pass the cap is refused.
    capped = Transmitter(client, DEV_KEYS[3], fees=FeePolicy(max_fee_cap=bumped.max_fee_per_gas))
    with pytest.raises(FeeCapExceededError):
        capped.replace(bumped)


def test_transact_replaces_a_stuck_transaction_by_itself(anvil: Devchain, probe: tuple, manual_mining: None) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[3], receipt_timeout=0.3, poll_interval=0.02)
    outcome: list[object] = []
    worker = threading.Thread(
        target=lambda: outcome.append(tx.transact_call(contract.functions.set(33), max_replacements=2))
    )
    worker.start()
    deadline = time.monotonic() + 10
    while tx.replacements_sent < 1 and time.monotonic() < deadline:  # nothing mines until the first replacement
        time.sleep(0.02)
    anvil.rpc("evm_mine")
    worker.join(timeout=10)
    receipt = outcome[0]
    assert isinstance(receipt, Receipt) and receipt.status == 1
    assert tx.replacements_sent == 1 and tx.transactions_sent == 1
    assert client.call(contract.functions.value()) == 33


def test_a_nonce_left_ahead_by_a_reorg_is_fetched_again(anvil: Devchain, probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[2], receipt_timeout=0.3, poll_interval=0.02)
    tx.transact_call(contract.functions.set(5))
    anvil.rpc("anvil_reorg", 1, [])  # drops that block and its transaction: the chain's nonce is back by one
    with pytest.raises(TransactionTimeoutError):  # the next nonce leaves a gap: never mined
        tx.transact_call(contract.functions.set(6), max_replacements=1)
    receipt = tx.transact_call(contract.functions.set(7))  # asks the node for the nonce again: fills the gap
    assert receipt.status == 1
    # the queued transaction then runs too (as on any node that kept it), and the next send resyncs again
    assert client.call(contract.functions.value()) == 6
    assert tx.transact_call(contract.functions.set(8)).status == 1
    assert client.call(contract.functions.value()) == 8
