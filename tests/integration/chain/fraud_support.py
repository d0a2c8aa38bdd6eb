"""What the fraud-proof and pricing-challenge tests share on a real anvil: the seeded protocol (``World``) deployed
with a 4-member committee whose rounds are recomputed from the chain snapshot at B as a node does, quorums signed by
the members' keys, stakes read from the registry, and contract refusals decoded from a call in the pending block.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.errors import ContractError
from pmoracle.chain.transmitter import Transmitter
from pmoracle.config.params import default_params_text
from pmoracle.consensus.certificate import build_certificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.report import Domain, Report, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World
from pmoracle.node.daemon import OFFLINE_W3, read_committee
from pmoracle.risk.params import RiskParams, parse_params
from tests.integration.chain.contracts_support import address_of, dev_key, node_spec

ACCOUNTS = 12
COLLUDERS = (0, 1, 2)
HONEST = 3
SLASH_BPS, REWARD_BPS = 1_000, 5_000
REPORTER = dev_key(9)  # a funded account that operates no node (no reward)


@dataclass
class Seeded:
    """The deployed, seeded protocol and its committee's keys."""

    client: ChainClient
    deployment: Deployment
    committee: CommitteeConfig
    domain: Domain
    keys: list[bytes]
    world: World
    params: RiskParams


def deploy_seeded(anvil: Devchain, seed: int) -> Seeded:
    """Deploy the contracts with 4 staked members and seed ``ACCOUNTS`` accounts with positions and collateral."""
    params = parse_params(default_params_text())
    specs = [node_spec(i) for i in range(4)]
    deployment = deploy(anvil.url, dev_key(0), params_hash=params.params_hash, round_period=4, finality_depth=2,
                        nodes=specs, slash_bps=SLASH_BPS, reward_bps=REWARD_BPS)  # fmt: skip
    client = ChainClient([anvil.url])
    committee = read_committee(client, deployment)
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    world = World(anvil.url, deployment, address_of(dev_key(0)), seed=seed)
    world.setup(ACCOUNTS)
    return Seeded(client, deployment, committee, domain, [s.signing_key for s in specs], world, params)


def attest(seeded: Seeded, members: tuple[int, ...], report: Report) -> None:
    """Sign ``report`` with ``members`` and attest it."""
    signatures = {s.signer: s.signature for s in (sign_report(seeded.domain, report, seeded.keys[i]) for i in members)}
    cert = build_certificate(seeded.committee, report, signatures)
    oracle = seeded.deployment.contract(OFFLINE_W3, "MarginOracle")
    fn = oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
    Transmitter(seeded.client, dev_key(8)).transact_call(fn)


def stake_of(seeded: Seeded, member: int) -> int:
    """Return a committee member's stake in the registry."""
    registry = seeded.deployment.contract(OFFLINE_W3, "SolverRegistry")
    return int(seeded.client.call(registry.functions.nodeOf(seeded.committee.members[member]))[2])


def revert_of(client: ChainClient, fn: Any) -> tuple[str, tuple[Any, ...]]:
    """Return (error name, args) of the revert of the bound call ``fn`` in the pending block."""
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    try:
        client.call_raw(fn.address, data, "pending", sender=address_of(REPORTER))
    except ContractError as exc:
        return exc.name, exc.error_args
    raise AssertionError("call did not revert")
