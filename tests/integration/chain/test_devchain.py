"""The devchain starts the pinned anvil, answers JSON-RPC, and stops by its own PID."""

from __future__ import annotations

from pmoracle.devnet.devchain import Devchain, start_devchain


def test_anvil_answers_and_mines(anvil: Devchain) -> None:
    before = int(str(anvil.rpc("eth_blockNumber")), 16)
    anvil.rpc("evm_mine")
    assert int(str(anvil.rpc("eth_blockNumber")), 16) == before + 1
    assert int(str(anvil.rpc("eth_chainId")), 16) == 31337


def test_stop_leaves_no_process() -> None:
    chain = start_devchain(chain_id=4242)
    assert int(str(chain.rpc("eth_chainId")), 16) == 4242
    chain.stop()
    assert chain.process.poll() is not None
