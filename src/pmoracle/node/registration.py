"""Stake and register a node in SolverRegistry from its key files (what ``pmoracle register`` does).

The operator account is the node's transmitter key (it pays the stake and later the gas of ``attest``); the proof of
possession is signed by the report-signing key over (operator, chain id, registry); the libp2p peer id comes from
the p2p key, and every announced multiaddr ends in ``/p2p/<peer id>`` so other nodes can dial it from chain alone.
Reverts are the registry's own custom errors, decoded and turned into :class:`RegistrationError` messages.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import DeployError, Deployment, NodeSpec, register_node
from pmoracle.chain.errors import ChainError, RpcResponseError
from pmoracle.errors import InputError, PmoracleError

WEI_PER_ETH = 10**18
NODE_STATUS = {0: "none", 1: "active", 2: "unbonding", 3: "withdrawn"}


class RegistrationError(PmoracleError):
    """Raised when the registry refuses a registration; ``reason`` is the contract's custom error name."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class NodeRecord:
    """A node as SolverRegistry stores it (``nodeOf(signer)``)."""

    operator: str
    signer: str
    stake: int  # wei
    status: str  # none, active, unbonding, withdrawn
    peer_id: str  # base58; "" when none is stored
    multiaddrs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Registration:
    """A mined registration: the node read back from chain and the transaction's hash, block and gas."""

    node: NodeRecord
    tx_hash: bytes
    block_number: int
    gas_used: int


def parse_stake(text: str) -> int:
    """Return the stake in wei of a decimal ETH amount such as ``"10"`` or ``"1.5"``.

    Errors:
        InputError("--stake") for a malformed, non-positive or sub-wei amount.
    """
    try:
        eth = Decimal(text)
    except InvalidOperation:
        raise InputError("--stake", f"{text!r} is not a number of ETH") from None
    if not eth.is_finite() or eth <= 0:
        raise InputError("--stake", f"must be a positive amount of ETH, got {text!r}")
    wei = eth * WEI_PER_ETH
    if wei != wei.to_integral_value():
        raise InputError("--stake", f"{text!r} ETH is not a whole number of wei")
    return int(wei)


def complete_multiaddr(text: str, peer_id: str) -> str:
    """Return ``text`` with ``/p2p/<peer_id>`` appended (or checked, when it already names a peer).

    Errors:
        InputError("--multiaddr") when it is not a multiaddr, has no transport, or names another peer.
    """
    from multiaddr import Multiaddr

    try:
        addr = Multiaddr(text)
    except Exception:  # the multiaddr package raises several unrelated types for bad input
        raise InputError("--multiaddr", f"{text!r} is not a multiaddr (e.g. /ip4/203.0.113.7/tcp/9000)") from None
    protocols = [p.name for p in addr.protocols()]
    if not any(p in protocols for p in ("tcp", "udp")):
        raise InputError("--multiaddr", f"{text!r} names no tcp or udp port")
    if "p2p" in protocols:
        named = addr.value_for_protocol("p2p")
        if named != peer_id:
            raise InputError("--multiaddr", f"{text!r} names peer {named}, but the p2p key is peer {peer_id}")
        return str(addr)
    return f"{str(addr).rstrip('/')}/p2p/{peer_id}"


def read_registered_node(client: ChainClient, deployment: Deployment, signer: str) -> NodeRecord:
    """Return the registry's record of ``signer`` (status ``none`` when it was never registered)."""
    from libp2p.peer.id import ID
    from web3 import Web3

    registry = deployment.contract(Web3(), "SolverRegistry")
    view = client.call(registry.functions.nodeOf(to_checksum_address(signer)), "latest")
    return NodeRecord(
        operator=to_checksum_address(view[0]), signer=to_checksum_address(view[1]), stake=int(view[2]),
        status=NODE_STATUS.get(int(view[4]), str(view[4])), peer_id=ID(bytes(view[5])).to_base58() if view[5] else "",
        multiaddrs=tuple(view[6]),
    )  # fmt: skip


def _explain(error: DeployError) -> RegistrationError:
    args = error.args_
    if error.error == "InsufficientStake":
        given, minimum = args
        return RegistrationError(error.error, f"stake {given / WEI_PER_ETH:g} ETH is below the registry's minimum "
                                              f"{minimum / WEI_PER_ETH:g} ETH ({minimum} wei)")  # fmt: skip
    if error.error == "OperatorAlreadyRegistered":
        message = f"operator {args[0]} (the transmitter key) is already registered with signer {args[1]}"
        return RegistrationError(error.error, message + "; use a new transmitter key for another node")
    if error.error == "SignerAlreadyRegistered":
        return RegistrationError(error.error, f"signing key {args[0]} is already registered (a signing key can be "
                                              "registered once, even after withdrawal)")  # fmt: skip
    if error.error == "InvalidProofOfPossession":
        return RegistrationError(error.error, f"proof of possession recovers {args[1]}, not signer {args[0]}")
    return RegistrationError(error.error, f"registration refused by SolverRegistry: {error}")


def register_from_keys(
    client: ChainClient,
    deployment: Deployment,
    *,
    signing_key: bytes,
    transmitter_key: bytes,
    peer_id: str,
    multiaddrs: tuple[str, ...],
    stake: int,
) -> Registration:
    """Stake ``stake`` wei and register the node from its operator (transmitter) account; return what chain stores.

    Args:
        client: chain client on the deployment's chain.
        deployment: where SolverRegistry lives.
        signing_key: report-signing private key (signs the proof of possession).
        transmitter_key: operator private key (sends the transaction and pays the stake).
        peer_id: base58 libp2p peer id of the node's p2p key.
        multiaddrs: announced addresses, each completed with ``/p2p/<peer id>``.
        stake: wei sent with ``register``.

    Returns:
        The registered node read back from ``nodeOf(signer)`` and the transaction's hash, block and gas.

    Errors:
        InputError for bad multiaddrs; RegistrationError naming the registry's reason (stake below minimum,
        already registered, ...) or a node-side refusal (insufficient funds); ChainError when the chain is
        unreachable or on another chain id.
    """
    from eth_account import Account
    from libp2p.peer.id import ID

    if not multiaddrs:
        raise InputError("--multiaddr", "give at least one address other nodes can dial")
    addrs = tuple(complete_multiaddr(m, peer_id) for m in multiaddrs)
    if client.chain_id != deployment.chain_id:
        raise ChainError(f"deployment is for chain {deployment.chain_id}, the RPC serves {client.chain_id}")
    operator = Account.from_key(transmitter_key).address
    signer = Account.from_key(signing_key).address
    spec = NodeSpec(operator_key=transmitter_key, signing_key=signing_key, peer_id=ID.from_base58(peer_id).to_bytes(),
                    multiaddrs=addrs, stake=stake)  # fmt: skip
    try:
        receipt = register_node(client, deployment, spec)
    except DeployError as exc:
        raise _explain(exc) from None
    except RpcResponseError as exc:
        if "insufficient funds" in exc.rpc_message.lower() or "lack of funds" in exc.rpc_message.lower():
            message = f"operator {operator} cannot pay {stake / WEI_PER_ETH:g} ETH stake plus gas: {exc.rpc_message}"
            raise RegistrationError("InsufficientFunds", message) from None
        raise
    node = read_registered_node(client, deployment, signer)
    return Registration(node, tx_hash=receipt.tx_hash, block_number=receipt.block_number, gas_used=receipt.gas_used)


def format_registration(registration: Registration) -> str:
    """Return the text ``pmoracle register`` prints."""
    node = registration.node
    lines = [
        f"registered in block {registration.block_number}: tx 0x{registration.tx_hash.hex()} "
        f"(gas {registration.gas_used})",
        f"  signer     {node.signer}",
        f"  operator   {node.operator}",
        f"  stake      {Decimal(node.stake) / WEI_PER_ETH:f} ETH",
        f"  status     {node.status}",
        f"  peer id    {node.peer_id}",
        *(f"  multiaddr  {m}" for m in node.multiaddrs),
        "The committee owner adds the signer to the committee (SolverRegistry.setCommittee) before it signs rounds.",
    ]
    return "\n".join(lines)
