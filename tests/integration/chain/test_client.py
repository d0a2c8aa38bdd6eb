"""ChainClient against a real anvil: typed reads, pinned calls, revert decoding, endpoint failover, run_sync."""

from __future__ import annotations

import pytest
import trio

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.errors import ChainCallTimeoutError, ContractError, RpcResponseError, RpcUnavailableError
from pmoracle.chain.revert import ErrorDecoder
from pmoracle.chain.transmitter import Transmitter
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.ports import reserve_port

from .helpers import DEV_KEYS, contract_at
from .probe import compile_probe


@pytest.fixture(scope="module")
def probe(anvil: Devchain) -> tuple[ChainClient, object]:
    artifact = compile_probe()
    client = ChainClient([anvil.url], error_decoder=ErrorDecoder([artifact["abi"]]))
    receipt = Transmitter(client, DEV_KEYS[0]).transact(None, artifact["bytecode"])
    assert receipt.contract_address is not None
    return client, contract_at(artifact["abi"], receipt.contract_address)


def test_reads_chain_id_and_blocks(anvil: Devchain) -> None:
    client = ChainClient([anvil.url])
    assert client.chain_id == 31337
    anvil.rpc("evm_mine")
    head = client.head()
    assert head.number == client.block_number() >= 1
    parent = client.get_block(head.number - 1)
    assert head.parent_hash == parent.hash
    assert client.get_block(head.hash) == head
    assert head.timestamp >= parent.timestamp and head.base_fee_per_gas is not None


def test_call_is_pinned_to_a_block_by_number_and_by_hash(anvil: Devchain, probe: tuple) -> None:
    client, contract = probe
    tx = Transmitter(client, DEV_KEYS[0])
    tx.transact_call(contract.functions.set(7))
    before = client.get_block("latest")
    tx.transact_call(contract.functions.set(9))
    assert client.call(contract.functions.value()) == 9
    assert client.call(contract.functions.value(), before.number) == 7
    assert client.call(contract.functions.value(), before.hash) == 7
    for i in range(3):
        tx.transact_call(contract.functions.push(i + 1, -(10**20) * (i + 1)))
    page = client.call(contract.functions.page(1, 10))
    assert page == ((2, -2 * 10**20), (3, -3 * 10**20))


def test_call_revert_is_decoded_into_contract_error(probe: tuple) -> None:
    client, contract = probe
    with pytest.raises(ContractError) as info:
        client.call(contract.functions.failRequire())
    assert info.value.name == "Error" and info.value.error_args == ("nope",)


def test_unknown_block_hash_is_an_error(probe: tuple) -> None:
    client, contract = probe
    with pytest.raises((RpcResponseError, RpcUnavailableError)):
        client.call(contract.functions.value(), b"\x11" * 32)


def test_failover_to_the_next_endpoint_and_error_counters(anvil: Devchain) -> None:
    dead = f"http://127.0.0.1:{reserve_port()}"
    client = ChainClient([dead, anvil.url], timeout=1.0, retries=1, backoff=0.01)
    assert client.block_number() >= 0
    assert client.error_counts() == {(dead, "connection"): 2}
    assert client.request_counts()[anvil.url] >= 1
    # the failed endpoint is tried last from now on: the next call costs no new failure
    assert client.preferred_endpoints() == (anvil.url, dead)
    assert client.block_number() >= 0
    assert client.error_counts() == {(dead, "connection"): 2}


def test_all_endpoints_down_raises_unavailable() -> None:
    dead = [f"http://127.0.0.1:{reserve_port()}" for _ in range(2)]
    client = ChainClient(dead, timeout=0.5, retries=0)
    with pytest.raises(RpcUnavailableError) as info:
        client.block_number()
    assert {e.endpoint for e in info.value.errors} == set(dead)


def test_head_demotes_a_lagging_endpoint(anvil: Devchain) -> None:
    from pmoracle.devnet.devchain import start_devchain

    lagging = start_devchain()  # same chain id, but stuck at genesis: a lagging replica
    try:
        for _ in range(5):
            anvil.rpc("evm_mine")
        client = ChainClient([lagging.url, anvil.url], max_lag_blocks=2)
        head = client.head()
        assert head.number == int(str(anvil.rpc("eth_blockNumber")), 16)
        assert client.preferred_endpoints() == (anvil.url, lagging.url)
        assert client.endpoint_lag()[lagging.url] == head.number
        assert client.error_counts()[(lagging.url, "lagging")] == 1
        # Reads now go to the up-to-date endpoint first.
        assert client.block_number() == head.number
    finally:
        lagging.stop()


async def test_run_sync_runs_in_a_thread_with_a_timeout(anvil: Devchain) -> None:
    client = ChainClient([anvil.url])
    assert await run_sync(client.block_number, timeout=5) >= 0

    def slow() -> int:
        import time

        time.sleep(1.0)
        return 1

    with pytest.raises(ChainCallTimeoutError):
        await run_sync(slow, timeout=0.05)
    await trio.sleep(0)


def test_an_endpoint_of_another_chain_is_never_used(anvil: Devchain) -> None:
    from pmoracle.devnet.devchain import start_devchain

    client = ChainClient([anvil.url])
    assert client.chain_id == 31337
    other = start_devchain(chain_id=4242)
    try:
        client = ChainClient([anvil.url, other.url])
        assert client.chain_id == 31337
        client._preferred = [other.url, anvil.url]  # as if head() had promoted it
        assert client.block_number() == int(str(anvil.rpc("eth_blockNumber")), 16)
        assert client.error_counts() == {(other.url, "wrong-chain"): 1}
        assert client.preferred_endpoints() == (anvil.url, other.url)
    finally:
        other.stop()


def test_head_gives_a_recovered_primary_its_place_back(anvil: Devchain) -> None:
    from pmoracle.devnet.rpc_proxy import RpcFaultProxy

    primary = RpcFaultProxy(anvil.url)  # a provider in front of the same chain that can fail on demand
    try:
        client = ChainClient([primary.url, anvil.url], timeout=1.0, retries=0)
        primary.mode = "error"
        assert client.block_number() >= 0  # served by the fallback
        assert client.preferred_endpoints() == (anvil.url, primary.url)
        client.head()  # still failing: stays behind
        assert client.preferred_endpoints() == (anvil.url, primary.url)
        assert client.endpoint_lag()[primary.url] == -1
        primary.mode = "ok"
        client.head()  # answers the current head again: back in first place
        assert client.preferred_endpoints() == (primary.url, anvil.url)
        assert client.endpoint_lag() == {primary.url: 0, anvil.url: 0}
        served = primary.requests["ok"]
        client.block_number()
        assert primary.requests["ok"] == served + 1
    finally:
        primary.close()
