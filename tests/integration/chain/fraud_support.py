"""What the fraud-proof and pricing-challenge tests share on a real anvil: the seeded protocol (``World``) deployed
with a 4-member committee whose rounds are recomputed from the chain snapshot at B as a node does, quorums signed by
the members' keys, stakes read from the registry, and contract refusals decoded from a call in the pending block;
and a round recomputed as a node does whose rows the colluders tamper with (leaves consistent with them: only a
pricing challenge proves it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.errors import ContractError
from pmoracle.chain.snapshot import ChainSnapshot, read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.config.params import default_params_text
from pmoracle.consensus.certificate import build_certificate
from pmoracle.consensus.commitments import (
    COVER_KEY,
    RiskArrayTree,
    RiskRow,
    compute_scenario_margin,
    instrument_key,
)
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.merkle import MerkleTree
from pmoracle.consensus.report import Domain, Report, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World
from pmoracle.node.daemon import OFFLINE_W3, read_committee
from pmoracle.node.dispute import read_holdings
from pmoracle.node.round import MONEY_TO_LEAF, RoundOutput, compute_round
from pmoracle.risk.inputs import Instrument
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


@dataclass
class Round:
    """A recomputed round: its snapshot, the honest output, and each account's holdings (row key -> SIZE units)."""

    snapshot: ChainSnapshot
    truth: RoundOutput
    holdings: dict[bytes, dict[int, int]]


@dataclass
class Lie:
    """A round the colluders attested with tampered rows and leaves consistent with them."""

    round: Round
    risk_tree: RiskArrayTree
    tree: MerkleTree
    report: Report


def recompute(anvil: Devchain, seeded: Seeded) -> Round:
    """Mine a block and recompute the round anchored at the block before it."""
    anvil.rpc("evm_mine")
    snapshot = read_snapshot(seeded.client, seeded.deployment, seeded.client.block_number() - 1)
    truth = compute_round(snapshot, seeded.params, seeded.committee)
    holdings = {
        p.account: read_holdings(seeded.client, seeded.deployment, snapshot, p.account) for p in snapshot.portfolios
    }
    return Round(snapshot, truth, holdings)


def options_of(rnd: Round) -> dict[int, Instrument]:
    """Return the listed live options by row key."""
    return {
        instrument_key(iid): inst
        for iid, inst in rnd.snapshot.instruments
        if inst.is_option and inst.expiry > rnd.snapshot.market.time
    }


def instruments_of(rnd: Round) -> dict[int, Instrument]:
    """Return every listed instrument by row key."""
    return {instrument_key(iid): inst for iid, inst in rnd.snapshot.instruments}


def margin_bound(tree: RiskArrayTree, holdings: dict[int, int]) -> int:
    """Return the largest scenario bound (MONEY) of ``holdings`` under ``tree``'s rows (``proveFraud``'s rule)."""
    cover = tree.row_of(COVER_KEY)
    held = [(tree.row_of(key), size) for key, size in sorted(holdings.items())]
    return max(compute_scenario_margin(held, cover, s) for s in range(len(cover.values)))


def lie_about(seeded: Seeded, rnd: Round, tamper: Callable[[RiskRow], RiskRow], key: int) -> Lie:
    """Attest, with the colluders only, the round with row ``key`` tampered and every leaf's MM moved by exactly what
    the tampered row changes in the aggregation bound (so no leaf is provable by ``proveFraud``)."""
    rows = [tamper(row) if row.key == key else row for row in rnd.truth.risk_tree.rows]
    risk_tree = RiskArrayTree(rows)
    leaves = []
    for leaf in rnd.truth.tree.leaves:
        held = rnd.holdings[leaf.account]
        shift = margin_bound(risk_tree, held) - margin_bound(rnd.truth.risk_tree, held) if held else 0
        leaves.append(dataclasses.replace(leaf, maintenance_margin=leaf.maintenance_margin + shift * MONEY_TO_LEAF))
    tree = MerkleTree(leaves)
    report = dataclasses.replace(rnd.truth.report, accounts_root=tree.root, risk_arrays_root=risk_tree.root)
    attest(seeded, COLLUDERS, report)
    return Lie(rnd, risk_tree, tree, report)


def shift_most_held_option(seeded: Seeded, rnd: Round) -> tuple[Lie, int, int]:
    """Attest, with the colluders, ``rnd`` with the most held option's entries shifted by 5,000 quanta in the held
    direction (leaves consistent with them); return the lie, the option's row key and the shift."""
    options = options_of(rnd)
    key, size = max(
        ((k, s) for h in rnd.holdings.values() for k, s in h.items() if k in options), key=lambda t: abs(t[1])
    )
    step = 5_000 if size > 0 else -5_000
    lie = lie_about(seeded, rnd, lambda row: dataclasses.replace(row, values=tuple(v + step for v in row.values)), key)
    return lie, key, step
