"""Shared pieces of the contract tests: dev keys, a deployed system with a committee, reports, revert decoding."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import trio
from eth_account import Account
from eth_utils import keccak, to_canonical_address
from web3 import Web3

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import (
    DEVIATION_DELAY,
    Deployment,
    NodeSpec,
    connect,
    decode_committee_view,
    deploy,
    open_transmitter,
    transact_fn,
)
from pmoracle.chain.errors import ContractError
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report, sign_report
from pmoracle.devnet.devchain import DEV_MNEMONIC, Devchain
from pmoracle.devnet.world import encode_symbol
from pmoracle.node.chain_port import OracleChainPort
from pmoracle.risk.inputs import PRICE_SCALE, SIZE_SCALE, WAD

Account.enable_unaudited_hdwallet_features()
PARAMS_HASH = keccak(text="pmoracle-test-params")
ROUND_PERIOD = 4
FINALITY_DEPTH = 2
STAKE = 10**18

# the contracts' units, for the tests that trade, price and settle
USD = WAD  # a USD amount in the ledger and in the leaves
PRICE = PRICE_SCALE  # MarketFeeds' price scale
UNIT = SIZE_SCALE  # one unit of an underlying in position-size units
USDC = 10**6  # one mock USDC (6 decimals)
WETH = 10**18  # one mock WETH (18 decimals)
BTC = encode_symbol("BTC")  # underlyings as the contracts key them
ETH = encode_symbol("ETH")


def dev_key(index: int) -> bytes:
    """Return anvil's dev private key ``index`` (funded; index 0 is 0xac09...ff80)."""
    return bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key)


def signing_key(index: int) -> bytes:
    """Return a deterministic report-signing key (never a funded account)."""
    return keccak(text=f"pmoracle-test-signer-{index}")


def address_of(key: bytes) -> str:
    """Return the checksum address of a private key."""
    return str(Account.from_key(key).address)


def node_spec(index: int) -> NodeSpec:
    """Return node ``index``: operator = dev account 1 + index, its own signing key and endpoints."""
    return NodeSpec(
        operator_key=dev_key(1 + index),
        signing_key=signing_key(index),
        peer_id=b"\x00\x24\x08\x01\x12\x20" + keccak(text=f"peer-{index}"),
        multiaddrs=(f"/ip4/127.0.0.1/tcp/{40000 + index}", f"/ip4/127.0.0.1/udp/{40000 + index}/quic-v1"),
        stake=STAKE,
    )


@dataclass
class System:
    """A deployment with ``n`` registered nodes forming the committee."""

    chain: Devchain
    w3: Web3
    deployment: Deployment
    owner: Transmitter
    signing_keys: list[bytes]
    config: CommitteeConfig

    def contract(self, name: str) -> Any:
        """Return the web3 contract ``name`` of the deployment."""
        return self.deployment.contract(self.w3, name)

    @property
    def oracle(self) -> Any:
        """Return MarginOracle."""
        return self.contract("MarginOracle")

    @property
    def registry(self) -> Any:
        """Return SolverRegistry."""
        return self.contract("SolverRegistry")

    @property
    def domain(self) -> Domain:
        """Return the EIP-712 domain of the oracle."""
        return Domain.from_address(self.deployment.chain_id, self.deployment.contracts["MarginOracle"])

    def report(self, block_number: int, tree: MerkleTree, **overrides: Any) -> Report:
        """Return the report of ``tree`` anchored at ``block_number`` (its real hash) under the current config."""
        fields: dict[str, Any] = {
            "config_digest": self.config.digest(),
            "block_number": block_number,
            "block_hash": bytes(self.w3.eth.get_block(block_number)["hash"]),
            "params_hash": self.config.params_hash,
            "accounts_root": tree.root,
            "account_count": len(tree),
            "risk_arrays_root": keccak(b"risk arrays" + block_number.to_bytes(8, "big")),
            "market_hash": keccak(b"market" + block_number.to_bytes(8, "big")),
        }
        fields.update(overrides)
        return Report(**fields)

    def certificate(
        self, report: Report, members: Sequence[int], domain: Domain | None = None
    ) -> tuple[tuple[Any, ...], int, list[bytes]]:
        """Return the attest arguments (report tuple, bitmap, signatures) signed by committee ``members``."""
        domain = domain or self.domain
        bitmap = 0
        signatures = []
        for i in sorted(members):
            bitmap |= 1 << i
            signatures.append(sign_report(domain, report, self.signing_keys[i]).signature)
        return report.as_tuple(), bitmap, signatures

    def anchor(self) -> int:
        """Mine a block and return a recent block number whose hash the next block can read."""
        self.chain.rpc("evm_mine")
        return int(self.w3.eth.block_number)


def deploy_system(chain: Devchain, n: int = 4, params_hash: bytes = PARAMS_HASH, **kwargs: Any) -> System:
    """Deploy everything on ``chain`` with ``n`` nodes as the committee (Byzantine quorum) under ``params_hash``."""
    nodes = [node_spec(i) for i in range(n)]
    deployment = deploy(
        chain.url,
        dev_key(0),
        params_hash=params_hash,
        round_period=ROUND_PERIOD,
        finality_depth=FINALITY_DEPTH,
        nodes=nodes,
        **kwargs,
    )
    w3 = connect(chain.url)
    config, digest = decode_committee_view(deployment.contract(w3, "SolverRegistry").functions.committee().call())
    assert config.digest() == digest, "the registry and CommitteeConfig disagree on configDigest"
    return System(
        chain, w3, deployment, open_transmitter(chain.url, dev_key(0)), [s.signing_key for s in nodes], config
    )


def stake_of(system: System, index: int) -> int:
    """Return committee member ``index``'s stake in the registry."""
    return int(system.registry.functions.nodeOf(address_of(system.signing_keys[index])).call()[2])


def pass_deviation_window(chain: Devchain, seconds: int = DEVIATION_DELAY) -> None:
    """Move chain time past SolverRegistry's deviation window (deploy's default) and mine a block."""
    chain.rpc("evm_increaseTime", seconds)
    chain.rpc("evm_mine")


async def submit_on_a_live_chain(anvil: Devchain, port: OracleChainPort, evidence: Deviation) -> None:
    """Run ``port.submit_evidence`` while a block is mined every half second (a live chain's time moves on)."""
    async with trio.open_nursery() as nursery:

        async def mine() -> None:
            while True:
                await trio.to_thread.run_sync(anvil.rpc, "evm_mine")
                await trio.sleep(0.5)

        nursery.start_soon(mine)
        await port.submit_evidence(evidence)
        nursery.cancel_scope.cancel()


def make_tree(seed: int, count: int) -> MerkleTree:
    """Return a tree of ``count`` accounts with deterministic values (USD 18 decimals)."""
    leaves = [
        AccountLeaf(
            account=keccak(text=f"account-{seed}-{i}")[:20],
            initial_margin=(1000 + i) * 10**18,
            maintenance_margin=(600 + i) * 10**18,
            equity=(5000 - 7 * i) * 10**18,
        )
        for i in range(count)
    ]
    return MerkleTree(leaves)


def revert_of(fn: Any, sender: str, *, value: int = 0) -> tuple[str, tuple[Any, ...]]:
    """Return (error name, args) of the revert of ``fn`` eth_call'ed from ``sender`` in the pending block.

    Decoded by the chain layer's ErrorDecoder (the one every caller uses). Fails the test if the call does not revert.
    """
    client = _clients.setdefault(fn.w3.provider.endpoint_uri, ChainClient([fn.w3.provider.endpoint_uri]))
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    try:
        client.call_raw(fn.address, data, "pending", sender=sender, value=value)
    except ContractError as exc:
        return exc.name, exc.error_args
    raise AssertionError("call did not revert")


_clients: dict[str, ChainClient] = {}


def funded(system: System, key_index: int, usdc: int = 0, weth: int = 0) -> Transmitter:
    """Return dev account ``key_index`` with ``usdc`` USDC (cash) and ``weth`` WETH (token units) deposited."""
    trader = open_transmitter(system.chain.url, dev_key(key_index))
    for token, amount in (("USDC", usdc), ("WETH", weth)):
        if amount:
            deposit(system, trader, token, amount)
    return trader


def deposit(system: System, trader: Transmitter, token: str, amount: int) -> None:
    """Mint ``amount`` of ``token`` to ``trader`` and deposit it."""
    erc20 = system.contract(token).functions
    transact_fn(trader, erc20.mint(trader.address, amount), label="mint")
    transact_fn(trader, erc20.approve(system.deployment.contracts["MarginAccounts"], amount), label="approve")
    accounts = system.contract("MarginAccounts").functions
    transact_fn(trader, accounts.deposit(system.deployment.contracts[token], amount), label="deposit")


def attest(system: System, block: int, leaves: list[tuple[str, int, int, int]]) -> MerkleTree:
    """Attest the round anchored at ``block`` with leaves (account, IM, MM, equity); return its tree."""
    tree = MerkleTree([AccountLeaf(to_canonical_address(a), im, mm, e) for a, im, mm, e in leaves])
    certificate = system.certificate(system.report(block, tree), (0, 1, 2))
    transact_fn(system.owner, system.oracle.functions.attest(*certificate), label="attest")
    return tree


def margin_of(tree: MerkleTree, account: str) -> tuple[tuple[int, int, int], list[bytes]]:
    leaf = tree.leaf_of(to_canonical_address(account))
    return (leaf.initial_margin, leaf.maintenance_margin, leaf.equity), tree.proof(leaf.account)


def withdraw_args(system: System, tree: MerkleTree, trader: Transmitter, token: str, amount: int) -> Any:
    margin, proof = margin_of(tree, trader.address)
    accounts = system.contract("MarginAccounts").functions
    return accounts.withdraw(system.deployment.contracts[token], amount, margin, proof)
