"""``pmoracle register``: stake and register a node in SolverRegistry from its key files."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the command's arguments: the node config (keys, RPC, deployment), stake and multiaddrs."""
    from pmoracle.config.local import add_config_arguments

    add_config_arguments(parser)
    parser.add_argument("--stake", required=True, metavar="ETH", help="stake sent with the registration, in ETH")
    parser.add_argument(
        "--multiaddr",
        action="append",
        required=True,
        metavar="MULTIADDR",
        help="address other nodes dial, e.g. /ip4/203.0.113.7/tcp/9000 (repeatable; /p2p/<peer id> is appended)",
    )


def run(args: argparse.Namespace) -> int:
    """Unlock the node's keys, send ``register`` from the transmitter account, print the transaction and node."""
    from pmoracle.chain.client import ChainClient
    from pmoracle.chain.deploy import Deployment
    from pmoracle.config.local import load_local_config, overrides_from_args
    from pmoracle.errors import InputError
    from pmoracle.node.keys import KeyKind, read_password, unlock_key_file
    from pmoracle.node.registration import format_registration, parse_stake, register_from_keys

    stake = parse_stake(args.stake)
    config = load_local_config(args.config, overrides=overrides_from_args(args))
    password = read_password(config.keys.password_file, config.keys.password_env)
    signing = unlock_key_file(config.keys.signing_keystore, password, expected_kind=KeyKind.SIGNING)
    transmitter = unlock_key_file(config.keys.transmitter_keystore, password, expected_kind=KeyKind.TRANSMITTER)
    p2p = unlock_key_file(config.keys.p2p_key, password, expected_kind=KeyKind.P2P)
    if p2p.info.peer_id is None:
        raise InputError("keys.p2p_key", f"{config.keys.p2p_key} holds no libp2p peer id")
    try:
        deployment = Deployment.load(config.chain.deployment)
    except OSError as exc:
        raise InputError("chain.deployment", f"cannot read {config.chain.deployment}: {exc.strerror}") from None
    client = ChainClient(config.chain.rpc_urls, timeout=config.chain.rpc_timeout)
    registration = register_from_keys(
        client, deployment, signing_key=signing.secret, transmitter_key=transmitter.secret,
        peer_id=p2p.info.peer_id, multiaddrs=tuple(args.multiaddr), stake=stake,
    )  # fmt: skip
    print(format_registration(registration))
    return 0
