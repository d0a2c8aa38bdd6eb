"""A lying quorum on a real anvil: 3 of 4 members attest a root that understates one account's maintenance margin.

The seeded protocol (``World``) holds real positions in ``MarginAccounts``; the honest round is recomputed from the
chain snapshot at B exactly as a node does, and the colluders sign the same report with one leaf's MM lowered.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.snapshot import ChainSnapshot, read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.config.params import default_params_text
from pmoracle.consensus.certificate import build_certificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World
from pmoracle.node.daemon import OFFLINE_W3, read_committee
from pmoracle.node.round import RoundOutput, compute_round
from pmoracle.risk.params import parse_params
from tests.integration.chain.contracts_support import address_of, dev_key, node_spec

ACCOUNTS = 12
COLLUDERS = (0, 1, 2)
HONEST = 3
STAKE = 10**18
SLASH_BPS, REWARD_BPS = 1_000, 5_000


@dataclass
class Lie:
    client: ChainClient
    deployment: Deployment
    committee: CommitteeConfig
    domain: Domain
    keys: list[bytes]
    snapshot: ChainSnapshot
    honest: RoundOutput
    victim: AccountLeaf  # the honest leaf whose MM the quorum understated
    lie_tree: MerkleTree
    lie_report: Report


def attest(lie_client: ChainClient, deployment: Deployment, committee: CommitteeConfig, domain: Domain,
           keys: list[bytes], members: tuple[int, ...], report: Report) -> None:  # fmt: skip
    """Sign ``report`` with ``members`` and attest it."""
    signatures = {s.signer: s.signature for s in (sign_report(domain, report, keys[i]) for i in members)}
    cert = build_certificate(committee, report, signatures)
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    fn = oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
    Transmitter(lie_client, dev_key(8)).transact_call(fn)


@pytest.fixture(scope="module")
def lie(anvil: Devchain) -> Lie:
    params = parse_params(default_params_text())
    specs = [node_spec(i) for i in range(4)]
    deployment = deploy(anvil.url, dev_key(0), params_hash=params.params_hash, round_period=4, finality_depth=2,
                        nodes=specs, slash_bps=SLASH_BPS, reward_bps=REWARD_BPS)  # fmt: skip
    client = ChainClient([anvil.url])
    committee = read_committee(client, deployment)
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    World(anvil.url, deployment, address_of(dev_key(0)), seed=11).setup(ACCOUNTS)
    anvil.rpc("evm_mine")
    block = client.block_number() - 1
    snapshot = read_snapshot(client, deployment, block)
    honest = compute_round(snapshot, params, committee)
    # the victim: the account with the most positions among those with a margin requirement
    held = {p.account: len(p.positions) for p in snapshot.portfolios}
    victim = max((leaf for leaf in honest.tree.leaves if leaf.maintenance_margin > 0), key=lambda x: held[x.account])
    leaves = [
        dataclasses.replace(leaf, maintenance_margin=leaf.maintenance_margin // 2) if leaf == victim else leaf
        for leaf in honest.tree.leaves
    ]
    lie_tree = MerkleTree(leaves)
    lie_report = dataclasses.replace(honest.report, accounts_root=lie_tree.root)
    keys = [s.signing_key for s in specs]
    attest(client, deployment, committee, domain, keys, COLLUDERS, lie_report)
    return Lie(client, deployment, committee, domain, keys, snapshot, honest, victim, lie_tree, lie_report)


def stake_of(lie: Lie, member: int) -> int:
    registry = lie.deployment.contract(OFFLINE_W3, "SolverRegistry")
    node = lie.client.call(registry.functions.nodeOf(lie.committee.members[member]))
    return int(node[2])


def test_a_lying_quorum_goes_unpunished_and_the_honest_member_is_slashed(lie: Lie) -> None:
    """Today's contracts: the understated leaf verifies, and the only evidence anyone can submit is the honest
    member's own report, which `slashDeviation` treats as the offence."""
    oracle = lie.deployment.contract(OFFLINE_W3, "MarginOracle")
    understated = lie.lie_tree.leaf_of(lie.victim.account)
    assert understated.maintenance_margin < lie.victim.maintenance_margin
    proof = lie.lie_tree.proof(lie.victim.account)
    lie.client.call(
        oracle.functions.verifyMargin(
            to_checksum_address(understated.account), understated.initial_margin, understated.maintenance_margin,
            understated.equity, proof,
        )
    )  # fmt: skip
    honest_signed = sign_report(lie.domain, lie.honest.report, lie.keys[HONEST])
    registry = lie.deployment.contract(OFFLINE_W3, "SolverRegistry")
    before = [stake_of(lie, i) for i in range(4)]
    Transmitter(lie.client, dev_key(9)).transact_call(
        registry.functions.slashDeviation(lie.honest.report.as_tuple(), honest_signed.signature)
    )
    after = [stake_of(lie, i) for i in range(4)]
    assert [after[i] == before[i] for i in COLLUDERS] == [True, True, True]  # the liars keep their stake
    assert after[HONEST] < before[HONEST]  # the honest member pays
