"""``pmoracle frost dkg --config node.toml``: join the FROST DKG of the installed committee over libp2p.

The node's config names the chain (the committee is read from SolverRegistry), the keys (the report-signing key
signs the DKG messages and opens the shares encrypted to it; the p2p key is the libp2p identity) and where the
share goes (``keys.frost_share``). The members run the command at about the same time (the node itself stopped, or
with another ``[p2p] listen`` port); each prints its result as one JSON object. Registering the group key on chain
(``SolverRegistry.setFrostCommittee``) stays the owner's action once the members report the same group key and
transcript digest (docs/operators.md).

Exit status: 0 with the share written; 1 when the run did not finish (the JSON and stderr name the members
missing, disqualified or accused: run again with ``--run`` + 1 once they are fixed or replaced); 2 on bad input
(``keys.frost_share`` unset or already there without ``--force``, a key that is not a member's, ...).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

DEFAULT_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register ``frost dkg`` and its options."""
    from pmoracle.config.local import add_config_arguments

    sub = parser.add_subparsers(dest="action", required=True)
    dkg = sub.add_parser("dkg", help="join the DKG of the installed committee over libp2p; write the key share")
    add_config_arguments(dkg)
    dkg.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds the run may take")
    dkg.add_argument("--run", type=int, default=0, help="the run number (after a failed run: the next one)")
    dkg.add_argument("--force", action="store_true", help="replace an existing keys.frost_share file")


def _fail_if_exists(out: Path, force: bool) -> None:
    from pmoracle.errors import InputError

    if out.exists() and not force:
        raise InputError("keys.frost_share", f"{out} exists; --force replaces it")


def run(args: argparse.Namespace) -> int:
    """Read the committee, run this member's DKG over libp2p, write the share; print the result as JSON."""
    import trio
    from libp2p.crypto.secp256k1 import create_new_key_pair

    from pmoracle.chain.client import ChainClient
    from pmoracle.chain.deploy import Deployment
    from pmoracle.config.local import load_local_config, overrides_from_args
    from pmoracle.consensus.frost_dkg_wire import MAX_RUN
    from pmoracle.consensus.frost_evm import EvmGroupKey
    from pmoracle.consensus.report import Domain
    from pmoracle.errors import InputError
    from pmoracle.node.daemon import read_committee, read_peer_addresses
    from pmoracle.node.frost_dkg_gossip import join_dkg_over_libp2p
    from pmoracle.node.frost_keys import write_frost_share
    from pmoracle.node.keys import KeyKind, read_password, unlock_key_file
    from pmoracle.node.logs import configure_logging
    from pmoracle.p2p.codec import NetworkId
    from pmoracle.p2p.libp2p_gossip import GossipConfig

    if not args.timeout > 0:
        raise InputError("--timeout", f"must be positive, got {args.timeout}")
    if not 0 <= args.run <= MAX_RUN:
        raise InputError("--run", f"must be in [0, {MAX_RUN}], got {args.run}")
    # keys.frost_share is what this command writes: the start-up file check (which wants it there) is off; the key
    # files' own errors name a missing one
    config = load_local_config(args.config, overrides=overrides_from_args(args), check_files=False)
    configure_logging(config.node.log_format, config.node.log_level)
    out = config.keys.frost_share
    if out is None:
        raise InputError("keys.frost_share", "is not set: the config must name where the key share goes")
    _fail_if_exists(out, args.force)
    password = read_password(config.keys.password_file, config.keys.password_env)
    signing = unlock_key_file(config.keys.signing_keystore, password, expected_kind=KeyKind.SIGNING)
    p2p = unlock_key_file(config.keys.p2p_key, password, expected_kind=KeyKind.P2P)
    client = ChainClient(config.chain.rpc_urls, timeout=config.chain.rpc_timeout)
    deployment = Deployment.load(config.chain.deployment)
    committee = read_committee(client, deployment)
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    peers = tuple(read_peer_addresses(client, deployment, committee.members))
    gossip = GossipConfig(NetworkId.from_domain(domain), listen=config.p2p.listen,
                          bootstrap=tuple(dict.fromkeys((*config.p2p.bootstrap, *peers))))  # fmt: skip
    outcome, transport = trio.run(
        lambda: join_dkg_over_libp2p(
            gossip, create_new_key_pair(p2p.secret), committee, signing.secret, run=args.run, timeout=args.timeout
        )
    )
    assert outcome is not None  # only a silent member has none
    summary: dict[str, Any] = {"run": args.run, "committeeVersion": committee.version,
                               "members": len(committee.members), "threshold": committee.quorum}  # fmt: skip
    if outcome.result is None:

        def named(identifiers: tuple[int, ...] | list[int]) -> list[str]:
            return [f"{i} (0x{committee.members[i - 1].hex()})" for i in identifiers]

        accused = sorted({c.dealer for c in outcome.complaints})
        summary |= {"ok": False, "timedOut": outcome.timed_out, "missing": named(outcome.missing),
                    "disqualified": named(outcome.disqualified), "accused": named(accused),
                    "complaintsSeen": len(transport.complaints)}  # fmt: skip
        print(json.dumps(summary, indent=2))
        print(f"pmoracle frost dkg: the run did not finish: missing {summary['missing']}, disqualified "
              f"{summary['disqualified']}, accused {summary['accused']}", file=sys.stderr)  # fmt: skip
        return 1
    result = outcome.result
    try:
        group_key = EvmGroupKey.from_compressed(result.group_public_key)
    except Exception:  # x >= n (probability 2^-128): the contract cannot store it
        print("pmoracle frost dkg: the group key cannot be registered (x >= n); run again with --run + 1",
              file=sys.stderr)  # fmt: skip
        return 1
    _fail_if_exists(out, args.force)
    partial = out.with_name(out.name + ".partial")
    partial.unlink(missing_ok=True)
    write_frost_share(partial, result, password)
    os.replace(partial, out)  # a whole file or none
    summary |= {"ok": True, "identifier": result.identifier, "groupKey": "0x" + result.group_public_key.hex(),
                "groupKeyX": hex(group_key.x), "groupKeyParity": group_key.parity,
                "transcriptDigest": "0x" + result.transcript_digest.hex(), "shareFile": str(out)}  # fmt: skip
    print(json.dumps(summary, indent=2))
    return 0
