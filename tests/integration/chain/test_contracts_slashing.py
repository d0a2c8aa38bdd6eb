"""Slashing that is right, on a real anvil: each test is an attack on the slashing rules and shows it fail.

The attacks (issue 14, item 4): deviation evidence about a block hash that is not canonical (a reorged fork) slashes
an honest signer; an offender collects a reward for reporting itself, and a mempool copier for copying evidence; a
member slashed below the minimum stake keeps signing; a second offence after a 100% slash reverts (costs nothing);
slashed stake is locked in the registry forever.
"""

from __future__ import annotations

from eth_utils import keccak, to_checksum_address
from web3.logs import DISCARD

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import open_transmitter, transact_fn
from pmoracle.consensus.report import Report, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.dispute import read_attested_round, record_round_block_hash
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
)

OFFENDER = 3  # committee member 3 misbehaves (or is accused) in every test


def _stake(system: System, index: int) -> int:
    return int(system.registry.functions.nodeOf(address_of(system.signing_keys[index])).call()[2])


def _attest(system: System, report: Report, members: tuple[int, ...] = (0, 1, 2), key: int = 0) -> None:
    sender = system.owner if key == 0 else open_transmitter(system.chain.url, dev_key(key))
    transact_fn(sender, system.oracle.functions.attest(*system.certificate(report, members)), label="attest")


def _equivocation(system: System, block: int, signer: int = OFFENDER) -> tuple[object, ...]:
    a, b = system.report(block, make_tree(1, 3)), system.report(block, make_tree(2, 3))
    key = system.signing_keys[signer]
    return (a.as_tuple(), sign_report(system.domain, a, key).signature,
            b.as_tuple(), sign_report(system.domain, b, key).signature)  # fmt: skip


def _slash_equivocation(system: System, block: int, reporter_key: bytes, signer: int = OFFENDER) -> int:
    """Post member ``signer``'s equivocation at ``block`` from ``reporter_key``; return the reporter's net gain."""
    reporter = open_transmitter(system.chain.url, reporter_key)
    before = system.w3.eth.get_balance(reporter.address)
    fn = system.registry.functions.slashEquivocation(*_equivocation(system, block, signer))
    receipt = transact_fn(reporter, fn, label="slashEquivocation")
    return int(system.w3.eth.get_balance(reporter.address) - before + receipt.gas_used * receipt.effective_gas_price)


def test_deviation_about_a_non_canonical_block_hash_is_refused(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2)
    tree = make_tree(3, 5)
    block = system.anchor()
    _attest(system, system.report(block, tree))
    pass_deviation_window(system.chain)
    canonical = bytes(system.w3.eth.get_block(block)["hash"])
    orphaned = system.report(block, tree, block_hash=keccak(text="a block of a reorged fork"))
    sig = sign_report(system.domain, orphaned, system.signing_keys[OFFENDER]).signature
    fn = system.registry.functions.slashDeviation(orphaned.as_tuple(), sig)
    refused = ("NotCanonicalBlockHash", (block, orphaned.block_hash, canonical))
    assert revert_of(fn, system.owner.address) == refused
    # past blockhash()'s 256-block window the round's hash is recorded from the attested report (the round does
    # not store it): until then deviation evidence about the round is refused, whatever its hash
    system.chain.rpc("anvil_mine", hex(300))
    not_recorded = ("RoundBlockHashNotRecorded", (block,))
    assert revert_of(system.oracle.functions.roundBlockHash(block), system.owner.address) == not_recorded
    assert revert_of(fn, system.owner.address) == not_recorded
    client = ChainClient([system.chain.url])
    assert read_attested_round(client, system.deployment, block).block_hash == canonical  # from the header
    record_round_block_hash(client, system.owner, system.deployment, block)
    assert system.oracle.functions.roundBlockHash(block).call() == canonical
    assert system.oracle.functions.roundAt(block).call()[7] == canonical
    assert revert_of(fn, system.owner.address) == refused
    # a real deviation (canonical hash, another root) is still slashed there
    deviant = system.report(block, make_tree(4, 5))
    deviant_sig = sign_report(system.domain, deviant, system.signing_keys[OFFENDER]).signature
    before = _stake(system, OFFENDER)
    transact_fn(system.owner, system.registry.functions.slashDeviation(deviant.as_tuple(), deviant_sig), label="slash")
    assert _stake(system, OFFENDER) == before - before // 10


def test_an_honest_signature_on_a_block_reorged_after_attestation_is_not_slashed(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2)
    tree = make_tree(5, 4)
    block = system.anchor()
    old = system.report(block, tree)
    honest_sig = sign_report(system.domain, old, system.signing_keys[OFFENDER]).signature  # before the reorg
    _attest(system, old)
    system.chain.rpc("evm_mine")
    # deeper than any finality depth: block B itself and the attestation are replaced
    # the new fork's block B holds another transaction, so its hash differs
    transfer = {"from": system.owner.address, "to": address_of(dev_key(13)), "value": hex(1)}
    system.chain.rpc("anvil_reorg", int(system.w3.eth.block_number) - block + 1, [[transfer, 0]])
    system.chain.rpc("evm_mine")
    new = system.report(block, tree)
    assert new.block_hash != old.block_hash
    _attest(system, new, key=12)  # the committee re-attests the round on the new chain
    pass_deviation_window(system.chain)
    fn = system.registry.functions.slashDeviation(old.as_tuple(), honest_sig)
    assert revert_of(fn, system.owner.address) == ("NotCanonicalBlockHash", (block, old.block_hash, new.block_hash))
    assert _stake(system, OFFENDER) == STAKE


def test_only_a_registered_reporter_other_than_the_offender_is_rewarded(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2)
    slash = STAKE // 10
    # the offender's own operator reports it: slashed all the same, no reward
    assert _slash_equivocation(system, system.anchor(), node_spec(OFFENDER).operator_key) == 0
    # a mempool copier (no registered node) gets nothing either
    assert _slash_equivocation(system, system.anchor(), dev_key(14)) == 0
    # a registered, staked node is rewarded
    after_two = STAKE - slash - (STAKE - slash) // 10
    reward = after_two // 10 // 2
    assert _slash_equivocation(system, system.anchor(), node_spec(0).operator_key) == reward
    assert system.registry.functions.slashedPool().call() == slash + (STAKE - slash) // 10 + after_two // 10 - reward
    assert system.registry.functions.offences(address_of(system.signing_keys[OFFENDER])).call() == 3


def test_a_member_slashed_below_the_minimum_stake_is_ejected(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE)
    member = address_of(system.signing_keys[OFFENDER])
    fn = system.registry.functions.slashEquivocation(*_equivocation(system, system.anchor()))
    receipt = transact_fn(system.owner, fn, label="slashEquivocation")
    # the oracle refuses its signature at once, in the same config (the other members keep attesting)
    report = system.report(system.anchor(), make_tree(6, 3))
    attest = system.oracle.functions.attest(*system.certificate(report, (0, 1, OFFENDER)))
    assert revert_of(attest, system.owner.address) == ("EjectedSigner", (OFFENDER, member))
    (event,) = system.registry.events.MemberEjected().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash), errors=DISCARD
    )
    assert (event["args"]["signer"], event["args"]["version"]) == (member, 1)
    assert event["args"]["stake"] == STAKE - STAKE // 10
    _attest(system, report, (0, 1, 2))
    assert system.oracle.functions.ejectedMembers().call() == [system.config.digest(), 1 << OFFENDER]
    # the owner re-keys the committee without it; it cannot be put back below the minimum stake
    members = [address_of(k) for k in system.signing_keys]
    set_committee = system.registry.functions.setCommittee
    assert revert_of(set_committee(members, 3, 4, 2, system.config.params_hash, 1), system.owner.address)[0] == (
        "IneligibleMember"
    )
    transact_fn(system.owner, set_committee(members[:3], 3, 4, 2, system.config.params_hash, 1), label="rekey")
    assert system.oracle.functions.configVersion().call() == 2


def test_a_full_slash_never_reverts_and_later_offences_count(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE, slash_bps=10_000, reward_bps=0)
    member = address_of(system.signing_keys[OFFENDER])
    for offence in (1, 2, 3):
        fn = system.registry.functions.slashEquivocation(*_equivocation(system, system.anchor()))
        receipt = transact_fn(system.owner, fn, label="slashEquivocation")
        (event,) = system.registry.events.Slashed().process_receipt(
            system.w3.eth.get_transaction_receipt(receipt.tx_hash), errors=DISCARD
        )
        assert event["args"]["amount"] == (STAKE if offence == 1 else 0)
    assert _stake(system, OFFENDER) == 0
    assert system.registry.functions.offences(member).call() == 3


def test_slashed_stake_is_swept_to_the_configured_recipient(anvil: Devchain) -> None:
    system = deploy_system(anvil, n=4, min_stake=STAKE // 2, reward_bps=0)
    _slash_equivocation(system, system.anchor(), dev_key(14))
    registry = system.registry.functions
    assert revert_of(registry.sweepSlashed(), system.owner.address) == ("NoSlashRecipient", ())
    fund = to_checksum_address(keccak(text="insurance fund treasury")[:20])
    stranger = address_of(dev_key(14))
    assert revert_of(registry.setSlashRecipient(fund), stranger)[0] == "OwnableUnauthorizedAccount"
    transact_fn(system.owner, registry.setSlashRecipient(fund), label="setSlashRecipient")
    receipt = transact_fn(open_transmitter(system.chain.url, dev_key(14)), registry.sweepSlashed(), label="sweep")
    (event,) = system.registry.events.SlashedSwept().process_receipt(
        system.w3.eth.get_transaction_receipt(receipt.tx_hash), errors=DISCARD
    )
    assert (event["args"]["recipient"], event["args"]["amount"]) == (fund, STAKE // 10)
    assert system.w3.eth.get_balance(fund) == STAKE // 10
    assert registry.slashedPool().call() == 0
    assert system.w3.eth.get_balance(system.registry.address) == 4 * STAKE - STAKE // 10
