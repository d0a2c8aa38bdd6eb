"""SolverRegistry on a real anvil: registration with proof of possession, committees, unbonding and slashing."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from eth_utils import keccak, to_canonical_address, to_checksum_address
from web3.logs import DISCARD

from pmoracle.chain.deploy import (
    DEVIATION_DELAY,
    decode_committee_view,
    open_transmitter,
    register_node,
    set_committee,
    transact_fn,
)
from pmoracle.consensus.pop import compute_pop_hash, sign_proof_of_possession
from pmoracle.consensus.report import sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.risk.version import ENGINE_VERSION
from tests.integration.chain.contracts_support import (
    STAKE,
    System,
    address_of,
    deploy_system,
    dev_key,
    make_tree,
    node_spec,
    pass_deviation_window,
    revert_of,
    stake_of,
)

UNBONDING_DELAY = 3600
SLASH_BPS = 1_000
REWARD_BPS = 5_000
ACTIVE, UNBONDING, EXITED = 1, 2, 3


@pytest.fixture(scope="module")
def system(anvil: Devchain) -> System:
    return deploy_system(
        anvil, n=4, unbonding_delay=UNBONDING_DELAY, slash_bps=SLASH_BPS, reward_bps=REWARD_BPS, min_stake=STAKE
    )


def register_call(system: System, operator_key: bytes, signer_key: bytes, proof: bytes, value: int = STAKE) -> Any:
    fn = system.registry.functions.register(address_of(signer_key), proof, b"\x12\x34", ["/ip4/127.0.0.1/tcp/1"])
    return revert_of(fn, address_of(operator_key), value=value)


def test_pop_hash_matches_python(system: System) -> None:
    registrant = address_of(dev_key(5))
    expected = compute_pop_hash(
        system.deployment.chain_id, to_canonical_address(system.registry.address), to_canonical_address(registrant)
    )
    assert system.registry.functions.popHash(registrant).call() == expected


def test_registration_without_a_valid_proof_of_possession_is_refused(system: System) -> None:
    operator, key = dev_key(5), keccak(text="pmoracle-test-signer-5")
    signer = address_of(key)
    registry = to_canonical_address(system.registry.address)
    chain_id = system.deployment.chain_id
    me = to_canonical_address(address_of(operator))
    for_other_registrant = sign_proof_of_possession(
        chain_id, registry, to_canonical_address(address_of(dev_key(6))), key
    )
    for_other_registry = sign_proof_of_possession(chain_id, keccak(text="x")[:20], me, key)
    for_other_chain = sign_proof_of_possession(chain_id + 1, registry, me, key)
    by_other_key = sign_proof_of_possession(chain_id, registry, me, keccak(text="someone else"))
    for proof in (for_other_registrant, for_other_registry, for_other_chain, by_other_key):
        name, args = register_call(system, operator, key, proof)
        assert name == "InvalidProofOfPossession" and args[0] == signer and args[1] != signer
    assert register_call(system, operator, key, bytes(65)) == (
        "InvalidProofOfPossession",
        (signer, "0x0000000000000000000000000000000000000000"),
    )
    good = sign_proof_of_possession(chain_id, registry, me, key)
    assert register_call(system, operator, key, good, value=STAKE - 1) == ("InsufficientStake", (STAKE - 1, STAKE))
    # a member's key cannot be registered again by another operator
    taken = system.signing_keys[0]
    proof = sign_proof_of_possession(chain_id, registry, me, taken)
    assert register_call(system, operator, taken, proof)[0] == "SignerAlreadyRegistered"


def test_registered_nodes_expose_stake_and_libp2p_endpoints(system: System) -> None:
    assert system.registry.functions.nodeCount().call() == 4
    page = system.registry.functions.nodesPage(1, 2).call()
    assert [tuple(n[:2]) for n in page] == [
        (address_of(node_spec(i).operator_key), address_of(node_spec(i).signing_key)) for i in (1, 2)
    ]
    node = page[0]
    assert node[2] == STAKE and node[4] == ACTIVE
    assert node[5] == node_spec(1).peer_id and tuple(node[6]) == node_spec(1).multiaddrs
    assert system.registry.functions.nodesPage(9, 5).call() == []


def test_committee_rules(system: System) -> None:
    members = [address_of(k) for k in system.signing_keys]
    owner = system.owner.address
    fn = system.registry.functions.setCommittee
    assert revert_of(fn(members, 2, 4, 2, bytes(32), 1), owner) == ("InvalidQuorum", (2, 3, 4))
    assert revert_of(fn(members, 5, 4, 2, bytes(32), 1), owner) == ("InvalidQuorum", (5, 3, 4))
    assert revert_of(fn(members, 3, 0, 2, bytes(32), 1), owner) == ("InvalidRoundPeriod", (0,))
    assert revert_of(fn(members, 3, 4, 2, bytes(32), 0), owner) == ("InvalidEngineVersion", (0,))
    stranger = to_checksum_address(keccak(text="stranger")[:20])
    assert revert_of(fn([*members[:3], stranger], 3, 4, 2, bytes(32), 1), owner) == (
        "IneligibleMember",
        (stranger, 0, 0),
    )
    assert revert_of(fn([*members[:3], members[0]], 3, 4, 2, bytes(32), 1), owner) == (
        "DuplicateMember",
        (members[0],),
    )
    assert revert_of(fn(members, 3, 4, 2, bytes(32), 1), address_of(dev_key(9)))[0] == "OwnableUnauthorizedAccount"


def test_the_engine_version_is_part_of_the_committee_and_its_digest(anvil: Devchain) -> None:
    fresh = deploy_system(anvil, n=4)
    assert fresh.config.engine_version == ENGINE_VERSION  # deploy's default: this software's engine
    members = [address_of(k) for k in fresh.signing_keys]
    receipt = set_committee(fresh.owner, fresh.deployment, members, quorum=3, round_period=4, finality_depth=2,
                            params_hash=fresh.config.params_hash, engine_version=ENGINE_VERSION + 41)  # fmt: skip
    config, digest = decode_committee_view(fresh.registry.functions.committee().call())
    assert config == dataclasses.replace(fresh.config, version=2, engine_version=ENGINE_VERSION + 41)
    assert digest == config.digest() == fresh.registry.functions.configDigest().call()
    assert fresh.oracle.functions.configDigest().call() == digest != fresh.config.digest()
    tx_receipt = fresh.w3.eth.get_transaction_receipt(receipt.tx_hash)
    (event,) = fresh.registry.events.CommitteeSet().process_receipt(tx_receipt, errors=DISCARD)  # + the oracle's log
    args = event["args"]
    assert args["engineVersion"] == ENGINE_VERSION + 41 and args["configDigest"] == digest
    assert (args["version"], args["paramsHash"], args["quorum"]) == (2, fresh.config.params_hash, 3)


def test_equivocation_is_slashed_once(system: System) -> None:
    block = system.anchor()
    report_a = system.report(block, make_tree(1, 4))
    report_b = system.report(block, make_tree(2, 4))
    sig_a = sign_report(system.domain, report_a, system.signing_keys[3]).signature
    sig_b = sign_report(system.domain, report_b, system.signing_keys[3]).signature
    other = sign_report(system.domain, report_b, system.signing_keys[2]).signature
    reporter = open_transmitter(system.chain.url, node_spec(0).operator_key)  # a registered node: rewarded
    fn = system.registry.functions.slashEquivocation
    assert revert_of(fn(report_a.as_tuple(), sig_a, report_a.as_tuple(), sig_a), reporter.address)[0] == "NotAnOffence"
    assert (
        revert_of(fn(report_a.as_tuple(), sig_a, report_b.as_tuple(), other), reporter.address)[0] == "SignerMismatch"
    )
    later = system.report(block - 1, make_tree(2, 4))
    later_sig = sign_report(system.domain, later, system.signing_keys[3]).signature
    assert revert_of(fn(report_a.as_tuple(), sig_a, later.as_tuple(), later_sig), reporter.address)[0] == (
        "RoundKeyMismatch"
    )

    before_stake = stake_of(system, 3)
    before_balance = system.w3.eth.get_balance(reporter.address)
    receipt = transact_fn(reporter, fn(report_a.as_tuple(), sig_a, report_b.as_tuple(), sig_b), label="slash")
    slashed = before_stake * SLASH_BPS // 10_000
    reward = slashed * REWARD_BPS // 10_000
    assert stake_of(system, 3) == before_stake - slashed
    gas_cost = receipt.gas_used * receipt.effective_gas_price
    assert system.w3.eth.get_balance(reporter.address) == before_balance + reward - gas_cost
    (event,) = system.registry.events.Slashed().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash), errors=DISCARD
    )
    assert event["args"]["signer"] == address_of(system.signing_keys[3]) and event["args"]["offence"] == 0
    assert event["args"]["amount"] == slashed and event["args"]["blockNumber"] == block
    # replayed, in either order
    for args in ((report_a, sig_a, report_b, sig_b), (report_b, sig_b, report_a, sig_a)):
        call = fn(args[0].as_tuple(), args[1], args[2].as_tuple(), args[3])
        assert revert_of(call, reporter.address)[0] == "AlreadySlashed"


def test_deviation_from_the_attested_report_is_slashed_once(system: System) -> None:
    tree = make_tree(3, 6)
    block = system.anchor()
    attested = system.report(block, tree)
    transact_fn(system.owner, system.oracle.functions.attest(*system.certificate(attested, (0, 1, 2))), label="attest")
    deviant = system.report(block, make_tree(4, 6))
    sig = sign_report(system.domain, deviant, system.signing_keys[3]).signature
    honest = sign_report(system.domain, attested, system.signing_keys[3]).signature
    reporter = open_transmitter(system.chain.url, dev_key(16))
    fn = system.registry.functions.slashDeviation
    # inside the deviation window (a fraud proof against the round would land first) the evidence is refused
    attested_at = int(system.oracle.functions.roundAt(block).call()[6])
    assert revert_of(fn(deviant.as_tuple(), sig), reporter.address) == (
        "DeviationWindowNotOpen",
        (block, attested_at, attested_at + DEVIATION_DELAY),
    )
    pass_deviation_window(system.chain)
    assert revert_of(fn(attested.as_tuple(), honest), reporter.address)[0] == "NotAnOffence"
    unattested = system.report(block - 1, tree)
    unattested_sig = sign_report(system.domain, unattested, system.signing_keys[3]).signature
    assert revert_of(fn(unattested.as_tuple(), unattested_sig), reporter.address) == ("RoundNotFound", (block - 1,))

    before = stake_of(system, 3)
    receipt = transact_fn(reporter, fn(deviant.as_tuple(), sig), label="slashDeviation")
    assert stake_of(system, 3) == before - before * SLASH_BPS // 10_000
    (event,) = system.registry.events.Slashed().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash), errors=DISCARD
    )
    assert event["args"]["offence"] == 1 and event["args"]["reporter"] == reporter.address
    assert revert_of(fn(deviant.as_tuple(), sig), reporter.address) == (
        "AlreadySlashed",
        (address_of(system.signing_keys[3]), system.config.digest(), block),
    )


def test_unbonding_keeps_a_node_slashable_until_withdrawal(system: System) -> None:
    member = dev_key(1)
    assert revert_of(system.registry.functions.requestUnbond(), address_of(member)) == (
        "MemberOfCommittee",
        (address_of(system.signing_keys[0]), 1),
    )
    spec = node_spec(6)
    register_node(system.chain.url, system.deployment, spec)
    operator = open_transmitter(system.chain.url, spec.operator_key)
    transact_fn(operator, system.registry.functions.requestUnbond(), label="requestUnbond")
    name, _ = revert_of(system.registry.functions.withdrawStake(), operator.address)
    assert name == "StillUnbonding"
    # misbehaviour while unbonding is still slashed
    block = system.anchor()
    a, b = system.report(block, make_tree(5, 2)), system.report(block, make_tree(6, 2))
    sig_a = sign_report(system.domain, a, spec.signing_key).signature
    sig_b = sign_report(system.domain, b, spec.signing_key).signature
    transact_fn(
        system.owner,
        system.registry.functions.slashEquivocation(a.as_tuple(), sig_a, b.as_tuple(), sig_b),
        label="slash",
    )
    system.chain.rpc("evm_increaseTime", UNBONDING_DELAY)
    system.chain.rpc("evm_mine")
    before = system.w3.eth.get_balance(operator.address)
    receipt = transact_fn(operator, system.registry.functions.withdrawStake(), label="withdrawStake")
    remaining = STAKE - STAKE * SLASH_BPS // 10_000
    gas_cost = receipt.gas_used * receipt.effective_gas_price
    assert system.w3.eth.get_balance(operator.address) == before + remaining - gas_cost
    node = system.registry.functions.nodeOf(address_of(spec.signing_key)).call()
    assert node[2] == 0 and node[4] == EXITED
    assert revert_of(system.registry.functions.withdrawStake(), operator.address)[0] == "InvalidNodeStatus"


def test_a_node_updates_its_endpoints_and_adds_stake(system: System) -> None:
    operator = open_transmitter(system.chain.url, node_spec(2).operator_key)
    signer = address_of(system.signing_keys[2])
    receipt = transact_fn(
        operator,
        system.registry.functions.updateEndpoints(b"\x01\x02", ["/dns4/node2.example/tcp/4001"]),
        label="update",
    )
    (event,) = system.registry.events.EndpointsUpdated().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash)
    )
    assert event["args"]["signer"] == signer
    before = stake_of(system, 2)
    transact_fn(operator, system.registry.functions.addStake(), label="addStake", value=5 * 10**17)
    node = system.registry.functions.nodeOf(signer).call()
    assert node[5] == b"\x01\x02" and node[6] == ["/dns4/node2.example/tcp/4001"]
    assert node[2] == before + 5 * 10**17
    stranger = address_of(dev_key(18))
    assert revert_of(system.registry.functions.updateEndpoints(b"", []), stranger) == ("NotRegistered", (stranger,))
