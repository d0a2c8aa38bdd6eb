"""Deploy and wire every pmoracle contract on a chain, and register nodes and committees (devnet, tests, operators).

Transactions go through the node's own :class:`~pmoracle.chain.transmitter.Transmitter` over a
:class:`~pmoracle.chain.client.ChainClient` (nonce tracking, gas margin, capped fees, decoded custom errors), one
receipt at a time. web3 contract objects are used only to encode calls (and by tests to read views).
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from eth_account import Account
from eth_utils import keccak, to_checksum_address
from web3 import HTTPProvider, Web3

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.errors import ContractError
from pmoracle.chain.transmitter import Receipt, Transmitter
from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.consensus.pop import sign_proof_of_possession
from pmoracle.errors import InputError, PmoracleError
from pmoracle.risk.version import ENGINE_VERSION

# Token mocks of the devnet: (key in the deployment JSON, name, symbol, decimals). USDC is the settlement token
# (cash); the others are collateral.
MOCK_TOKENS = (("USDC", "USD Coin (mock)", "USDC", 6), ("WBTC", "Wrapped BTC (mock)", "WBTC", 8),
               ("WETH", "Wrapped Ether (mock)", "WETH", 18))  # fmt: skip
SETTLEMENT_TOKEN = "USDC"
# The Liquidator's auction (docs/liquidation.md, "Parameters"): buffer 10% above MM, a discount of MM rising to 2%
# in 5 minutes then to 10% in 1 hour, 20% of the bidder's discount to the insurance fund, bids of at least 5%.
LIQUIDATION_PARAMS = (10**17, 2 * 10**16, 10**17, 300, 3_600, 2 * 10**17, 5 * 10**16)
# SolverRegistry's deviation window (seconds): deviation evidence waits this long after a round's attestation, so
# that a fraud proof invalidates a wrong round before its honest minority can be slashed (docs/dispute.md)
DEVIATION_DELAY = 3_600
RECEIPT_POLL_S = 0.01  # anvil automines at once: poll receipts quickly


class DeployError(PmoracleError):
    """Raised when a deployment or setup transaction reverts; names the call and the decoded custom error."""

    def __init__(self, call: str, error: str, args: tuple[Any, ...] = ()) -> None:
        super().__init__(f"{call}: {error}{args!r}")
        self.call = call
        self.error = error
        self.args_ = args


def connect(rpc_url: str) -> Web3:
    """Return a synchronous web3 client on ``rpc_url`` with the middleware cleared (for view calls in tests)."""
    w3 = Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))
    w3.middleware_onion.clear()
    return w3


def open_transmitter(chain: str | ChainClient, key: bytes) -> Transmitter:
    """Return a Transmitter for ``key`` on a chain given by its RPC URL or an existing client.

    Gas is estimated on the pending block, where the transaction runs: a call reading ``blockhash`` of the latest
    block (attesting a fresh anchor in tests) sees zero on "latest".
    """
    client = chain if isinstance(chain, ChainClient) else ChainClient([chain], timeout=30.0)
    return Transmitter(client, key, poll_interval=RECEIPT_POLL_S, estimate_block="pending")


def transact_fn(transmitter: Transmitter, fn: Any, *, label: str, value: int = 0) -> Receipt:
    """Send a bound contract function call (``contract.functions.f(...)``), wait, and return its receipt.

    Errors:
        DeployError naming ``label`` and the decoded custom error when the call reverts.
    """
    try:
        return transmitter.transact_call(fn, value=value)
    except ContractError as exc:
        raise DeployError(label, exc.name, exc.error_args) from exc


def deploy_contract(transmitter: Transmitter, name: str, *args: Any) -> str:
    """Deploy the artifact ``name`` with constructor ``args`` and return its checksum address.

    Errors:
        DeployError when the constructor reverts.
    """
    artifact = load_artifact(name)
    factory = Web3().eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    init_code = bytes.fromhex(factory.constructor(*args).data_in_transaction[2:])
    try:
        receipt = transmitter.transact(None, init_code)
    except ContractError as exc:
        raise DeployError(f"deploy {name}", exc.name, exc.error_args) from exc
    if receipt.contract_address is None:
        raise DeployError(f"deploy {name}", "no contract address in the receipt", (receipt.tx_hash.hex(),))
    return receipt.contract_address


@dataclass(frozen=True, slots=True)
class Deployment:
    """Where the pmoracle contracts live on one chain (the deployment JSON)."""

    chain_id: int
    deploy_block: int
    contracts: dict[str, str]  # name -> checksum address

    def to_json(self) -> dict[str, Any]:
        """Return the deployment JSON object."""
        return {"chainId": self.chain_id, "deployBlock": self.deploy_block, "contracts": dict(self.contracts)}

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Deployment:
        """Return the deployment described by a deployment JSON object."""
        try:
            contracts = {str(k): str(to_checksum_address(v)) for k, v in obj["contracts"].items()}
            return cls(chain_id=int(obj["chainId"]), deploy_block=int(obj["deployBlock"]), contracts=contracts)
        except KeyError as exc:
            raise InputError(str(exc.args[0]), "missing from deployment JSON") from None
        except (TypeError, ValueError) as exc:
            raise InputError("deployment", str(exc)) from None

    def save(self, path: pathlib.Path) -> None:
        """Write the deployment JSON to ``path``."""
        path.write_text(json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def load(cls, path: pathlib.Path) -> Deployment:
        """Read a deployment JSON file."""
        return cls.from_json(json.loads(path.read_text()))

    def contract(self, w3: Web3, name: str) -> Any:
        """Return a web3 contract object for ``name`` (MockERC20's ABI for the tokens)."""
        artifact_name = "MockERC20" if name in ("USDC", "WBTC", "WETH") else name
        address = to_checksum_address(self.contracts[name])
        return w3.eth.contract(address=address, abi=list(load_artifact(artifact_name).abi))


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """A node to register: operator (transaction) key, report-signing key, libp2p endpoints and stake."""

    operator_key: bytes
    signing_key: bytes
    peer_id: bytes
    multiaddrs: tuple[str, ...]
    stake: int


def deploy(
    rpc_url: str,
    deployer_key: bytes,
    *,
    params_hash: bytes,
    round_period: int,
    finality_depth: int,
    nodes: Sequence[NodeSpec] = (),
    quorum: int | None = None,
    engine_version: int = ENGINE_VERSION,
    min_stake: int = 10**18,
    unbonding_delay: int = 7 * 86400,
    slash_bps: int = 1_000,
    reward_bps: int = 5_000,
    deviation_delay: int = DEVIATION_DELAY,
    history_blocks: int = 1024,
    max_round_age: int = 256,
    feeder: str | None = None,
    matcher: str | None = None,
    liquidation_params: tuple[int, ...] = LIQUIDATION_PARAMS,
    output: pathlib.Path | None = None,
    group_key: EvmGroupKey | None = None,
) -> Deployment:
    """Deploy MarketFeeds, SolverRegistry, MarginOracle, MarginAccounts, Exchange, Liquidator and the mock tokens.

    The deployer is admin/owner of everything; ``feeder`` and ``matcher`` (default: the deployer) get the feeder
    roles (MarketFeeds, the ledger's funding rates, the Exchange's marks) and the Exchange's matcher role; the
    Exchange gets the ledger's EXCHANGE_ROLE and the Liquidator its LIQUIDATOR_ROLE; USDC is the settlement token
    (its deposits are cash) and the other tokens are enabled as collateral; the registry gets the oracle. When
    ``nodes`` are
    given they are registered (stake, proof of possession, endpoints) and set as the committee with ``quorum``
    (default the Byzantine quorum) and the given ``params_hash``, ``round_period``, ``finality_depth`` and
    ``engine_version``.

    Args:
        rpc_url: JSON-RPC URL of the chain.
        deployer_key: 32-byte private key paying for the deployment.
        params_hash: keccak256 of the canonical risk parameters (committee config).
        round_period: blocks between anchor blocks (committee config).
        finality_depth: blocks an anchor must be buried under (committee config).
        nodes: nodes to register and put in the first committee (none: no committee yet).
        quorum: committee quorum (default (n + f) // 2 + 1).
        engine_version: the risk engine version of the committee (default: this software's ``ENGINE_VERSION``).
        min_stake, unbonding_delay, slash_bps, reward_bps: SolverRegistry parameters (wei, seconds, bps, bps).
        deviation_delay: SolverRegistry's deviation window, seconds after a round's attestation before deviation
            evidence against it is accepted (at most 1 day and ``unbonding_delay``; docs/dispute.md).
        history_blocks, max_round_age: MarginOracle ring size and maximum round age, in blocks.
        feeder, matcher: addresses given the feeder and matcher roles (default: the deployer).
        liquidation_params: the Liquidator's ``Params`` tuple (buffer, fastDiscount, maxDiscount, fastPhase,
            slowPhase, feeShare, minFraction).
        output: where to write the deployment JSON (not written when None).
        group_key: the first committee's FROST group key (None: an ECDSA-only committee).

    Returns:
        The Deployment (chain id, first deployment block, addresses).

    Errors:
        InputError for inconsistent arguments; DeployError naming the call and the decoded custom error when a
        transaction reverts.
    """
    if len(params_hash) != 32:
        raise InputError("params_hash", f"expected 32 bytes, got {len(params_hash)}")
    if round_period < 1:
        raise InputError("round_period", f"must be >= 1, got {round_period}")
    if finality_depth < 0:
        raise InputError("finality_depth", f"must be >= 0, got {finality_depth}")
    sender = open_transmitter(rpc_url, deployer_key)
    client = sender.client
    w3 = Web3()  # encodes calls only
    admin = sender.address
    deploy_block = client.block_number() + 1
    addresses: dict[str, str] = {}
    addresses["MarketFeeds"] = deploy_contract(sender, "MarketFeeds", admin, feeder or admin)
    addresses["SolverRegistry"] = deploy_contract(
        sender, "SolverRegistry", admin, min_stake, unbonding_delay, slash_bps, reward_bps, deviation_delay
    )
    addresses["MarginOracle"] = deploy_contract(
        sender, "MarginOracle", addresses["SolverRegistry"], history_blocks, max_round_age
    )
    for key, name, symbol, decimals in MOCK_TOKENS:
        addresses[key] = deploy_contract(sender, "MockERC20", name, symbol, decimals)
    addresses["MarginAccounts"] = deploy_contract(
        sender,
        "MarginAccounts",
        admin,
        addresses["MarketFeeds"],
        addresses["MarginOracle"],
        addresses[SETTLEMENT_TOKEN],
    )
    addresses["Exchange"] = deploy_contract(
        sender,
        "Exchange",
        admin,
        matcher or admin,
        feeder or admin,
        addresses["MarginAccounts"],
        addresses["MarketFeeds"],
    )
    addresses["Liquidator"] = deploy_contract(
        sender, "Liquidator", admin, addresses["MarginAccounts"], tuple(liquidation_params)
    )
    deployment = Deployment(chain_id=client.chain_id, deploy_block=deploy_block, contracts=addresses)
    registry = deployment.contract(w3, "SolverRegistry")
    transact_fn(sender, registry.functions.setOracle(addresses["MarginOracle"]), label="SolverRegistry.setOracle")
    # the ledger whose positions MarginOracle.proveFraud reads (docs/dispute.md)
    transact_fn(sender, registry.functions.setLedger(addresses["MarginAccounts"]), label="SolverRegistry.setLedger")
    accounts = deployment.contract(w3, "MarginAccounts")
    roles = (
        ("EXCHANGE_ROLE", addresses["Exchange"]),
        ("LIQUIDATOR_ROLE", addresses["Liquidator"]),
        ("FEEDER_ROLE", feeder or admin),
    )
    for role, holder in roles:
        fn = accounts.functions.grantRole(keccak(text=role), holder)
        transact_fn(sender, fn, label=f"MarginAccounts.grantRole {role}")
    for key, *_ in MOCK_TOKENS:
        if key != SETTLEMENT_TOKEN:
            fn = accounts.functions.addCollateral(addresses[key])
            transact_fn(sender, fn, label=f"MarginAccounts.addCollateral {key}")
    if nodes:
        for spec in nodes:
            register_node(client, deployment, spec)
        members = [Account.from_key(spec.signing_key).address for spec in nodes]
        set_committee(
            sender,
            deployment,
            members,
            quorum=quorum if quorum is not None else compute_byzantine_quorum(len(members)),
            round_period=round_period,
            finality_depth=finality_depth,
            params_hash=params_hash,
            engine_version=engine_version,
            group_key=group_key,
        )
    if output is not None:
        deployment.save(output)
    return deployment


def register_node(chain: str | ChainClient, deployment: Deployment, spec: NodeSpec) -> Receipt:
    """Register ``spec``'s node from its operator account with its proof of possession; return the receipt.

    Errors:
        DeployError with the decoded custom error (``AlreadyRegistered``, ``StakeTooLow``, ...) on a revert.
    """
    sender = open_transmitter(chain, spec.operator_key)
    registry = deployment.contract(Web3(), "SolverRegistry")
    proof = sign_proof_of_possession(
        deployment.chain_id,
        bytes.fromhex(deployment.contracts["SolverRegistry"][2:]),
        bytes.fromhex(sender.address[2:]),
        spec.signing_key,
    )
    signer = Account.from_key(spec.signing_key).address
    fn = registry.functions.register(signer, proof, spec.peer_id, list(spec.multiaddrs))
    return transact_fn(sender, fn, label="SolverRegistry.register", value=spec.stake)


def set_committee(
    owner: Transmitter,
    deployment: Deployment,
    members: Sequence[str],
    *,
    quorum: int,
    round_period: int,
    finality_depth: int,
    params_hash: bytes,
    engine_version: int,
    group_key: EvmGroupKey | None = None,
) -> Receipt:
    """Set a new committee config in SolverRegistry (which installs it in MarginOracle); return the receipt.

    Args:
        group_key: the committee's FROST group key (``SolverRegistry.setFrostCommittee``: the config digest covers
            it and ``MarginOracle.attestFrost`` verifies under it); None installs an ECDSA-only committee.

    Errors:
        DeployError with the decoded custom error (``InvalidQuorum``, ``IneligibleMember``,
        ``InvalidEngineVersion``, ``InvalidGroupKey``, ...) on a revert.
    """
    registry = deployment.contract(Web3(), "SolverRegistry")
    addresses = [to_checksum_address(m) for m in members]
    args = (addresses, quorum, round_period, finality_depth, params_hash, engine_version)
    if group_key is None:
        return transact_fn(owner, registry.functions.setCommittee(*args), label="SolverRegistry.setCommittee")
    fn = registry.functions.setFrostCommittee(*args, group_key.x, group_key.parity)
    return transact_fn(owner, fn, label="SolverRegistry.setFrostCommittee")


def decode_committee_view(view: Sequence[Any]) -> tuple[CommitteeConfig, bytes]:
    """Return the config and the contract's ``configDigest`` from ``SolverRegistry.committee()``'s return value.

    Errors:
        InputError (from ``CommitteeConfig``) when the registry holds no committee yet or a field is out of range.
    """
    (chain_id, registry, version, members, quorum, round_period, finality_depth, params_hash, engine_version,
     group_key_x, group_key_parity, digest) = view  # fmt: skip
    config = CommitteeConfig(
        chain_id=int(chain_id),
        registry=bytes.fromhex(str(registry)[2:]),
        version=int(version),
        members=tuple(bytes.fromhex(str(m)[2:]) for m in members),
        quorum=int(quorum),
        round_period=int(round_period),
        finality_depth=int(finality_depth),
        params_hash=bytes(params_hash),
        engine_version=int(engine_version),
        group_key=EvmGroupKey(int(group_key_x), int(group_key_parity)) if int(group_key_x) else None,
    )
    return config, bytes(digest)


def confirm_frost_key(
    transmitter: Transmitter,
    deployment: Deployment,
    committee: CommitteeConfig,
    group_key: EvmGroupKey,
    transcript_digest: bytes,
    signature: bytes,
) -> Receipt:
    """Relay a member's confirmation of its DKG result to ``SolverRegistry.confirmFrostKey``; return the receipt.

    Args:
        transmitter: any funded account (the confirmation is signed by the member's report-signing key).
        committee: the current (keyless) committee the DKG ran for.
        signature: :func:`pmoracle.consensus.frost_confirm.sign_frost_confirmation` of the three values.

    Errors:
        DeployError with the decoded custom error (``NotCurrentVersion``, ``CommitteeHasGroupKey``,
        ``NotCommitteeMember``, ``AlreadyConfirmed``, ``InvalidParameter``) on a revert.
    """
    registry = deployment.contract(Web3(), "SolverRegistry")
    fn = registry.functions.confirmFrostKey(committee.version, group_key.x, group_key.parity, transcript_digest,
                                            signature)  # fmt: skip
    return transact_fn(transmitter, fn, label="SolverRegistry.confirmFrostKey")
