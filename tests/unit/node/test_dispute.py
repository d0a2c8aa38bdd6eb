"""The dispute tool's chain-free parts: leaf documents, leaf comparison against an attested root, archive scanning."""

from __future__ import annotations

import dataclasses
import json
import pathlib

import pytest
from eth_utils import keccak, to_checksum_address

from pmoracle.consensus.commitments import COVER_KEY, RiskArrayTree, RiskRow
from pmoracle.consensus.evidence import Deviation, Equivocation
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import compute_report_digest, sign_report
from pmoracle.errors import InputError
from pmoracle.node.api import RiskArrays, RoundLeaves, row_to_json
from pmoracle.node.dispute import (
    ClaimedLeaf,
    compare_leaves,
    evidence_file_name,
    find_evidence,
    leaves_prove_root,
    open_archive,
    parse_leaves_document,
    parse_rows_document,
)
from pmoracle.storage.archive import ReportArchive
from tests.unit.consensus.factories import DOMAIN, make_committee, make_key, make_signed

N = 4


def tree_of(count: int) -> MerkleTree:
    return MerkleTree(
        [AccountLeaf(keccak(text=f"acct-{i}")[:20], (100 + i) * 10**18, (60 + i) * 10**18, (500 - i) * 10**18)
         for i in range(count)]
    )  # fmt: skip


def claimed_of(tree: MerkleTree, *, proofs: bool) -> list[ClaimedLeaf]:
    return [ClaimedLeaf(leaf, tuple(tree.proof(leaf.account)) if proofs else None) for leaf in tree.leaves]


def test_identical_leaves_show_no_difference() -> None:
    tree = tree_of(9)
    for proofs in (True, False):
        assert compare_leaves(tree.leaves, claimed_of(tree, proofs=proofs), tree.root) == ((), ())


def test_a_changed_leaf_is_listed_with_both_values_and_proven() -> None:
    honest = tree_of(9)
    leaves = list(honest.leaves)
    leaves[4] = dataclasses.replace(leaves[4], maintenance_margin=1)
    wrong = MerkleTree(leaves)
    for proofs in (True, False):
        differences, unproven = compare_leaves(honest.leaves, claimed_of(wrong, proofs=proofs), wrong.root)
        assert unproven == ()
        assert [(d.account, d.recomputed, d.attested, d.verified) for d in differences] == [
            (leaves[4].account, honest.leaves[4], leaves[4], True)
        ]


def test_leaves_that_do_not_rebuild_the_attested_root_are_unproven() -> None:
    honest = tree_of(5)
    forged = [dataclasses.replace(honest.leaves[0], equity=-1), *honest.leaves[1:]]
    # with the honest proofs, the forged leaf does not verify against the root
    claimed = [ClaimedLeaf(leaf, tuple(honest.proof(leaf.account))) for leaf in forged]
    differences, unproven = compare_leaves(honest.leaves, claimed, honest.root)
    assert unproven == (forged[0].account,)
    assert [(d.account, d.verified) for d in differences] == [(forged[0].account, False)]
    # without proofs the whole set fails to rebuild the root: every leaf is unproven
    _, unproven = compare_leaves(honest.leaves, [ClaimedLeaf(leaf, None) for leaf in forged], honest.root)
    assert unproven == tuple(sorted(leaf.account for leaf in forged))


def test_accounts_missing_on_either_side_are_differences() -> None:
    honest = tree_of(6)
    attested = MerkleTree([*honest.leaves[1:], AccountLeaf(b"\xee" * 20, 1, 1, 1)])
    differences, unproven = compare_leaves(honest.leaves, claimed_of(attested, proofs=False), attested.root)
    assert unproven == ()
    by_account = {d.account: d for d in differences}
    assert by_account[honest.leaves[0].account].attested is None
    assert by_account[b"\xee" * 20].recomputed is None
    assert len(differences) == 2


def test_leaves_documents_name_the_bad_field() -> None:
    leaf = {"account": "0x" + "11" * 20, "initialMargin": "1", "maintenanceMargin": 2, "equity": "-3"}
    assert parse_leaves_document([leaf]) == parse_leaves_document({"leaves": [leaf]})
    assert parse_leaves_document([leaf])[0].leaf == AccountLeaf(b"\x11" * 20, 1, 2, -3)
    cases = [
        ({"rows": []}, "leaves"),
        ([{**leaf, "account": "0x12"}], "leaves[0].account"),
        ([{k: v for k, v in leaf.items() if k != "equity"}], "leaves[0].equity"),
        ([{**leaf, "initialMargin": 1.5}], "leaves[0].initialMargin"),
        ([{**leaf, "initialMargin": "-1"}], "initial_margin"),
        ([leaf, {**leaf, "proof": []}], "leaves[1].account"),
        ([{**leaf, "proof": ["0x00"]}], "leaves[0].proof[0]"),
        ([{**leaf, "proof": "0x"}], "leaves[0].proof"),
    ]
    check_leaves_errors(cases)


def test_leaf_arrays_of_the_leaves_route_parse_and_name_the_bad_field() -> None:
    tree = tree_of(5)
    body = json.loads(json.dumps(RoundLeaves(40, tree.root, tuple(tree.leaves)).to_json()))
    assert [c.leaf for c in parse_leaves_document(body)] == tree.leaves
    row = ["0x" + "11" * 20, "1", 2, "-3"]
    assert parse_leaves_document([row]) == parse_leaves_document([dict(zip(body["fields"], row, strict=True))])
    cases = [
        ([row[:3]], "leaves[0]"),
        ([[*row, "4"]], "leaves[0]"),
        ([["0x12", *row[1:]]], "leaves[0].account"),
        ([[*row[:3], 1.5]], "leaves[0].equity"),
        ([row, row], "leaves[1].account"),
    ]
    check_leaves_errors(cases)


def check_leaves_errors(cases: list[tuple[object, str]]) -> None:
    """Each leaves document is refused naming its field."""
    for document, field in cases:
        with pytest.raises(InputError) as info:
            parse_leaves_document(document)
        assert info.value.field == field, (document, info.value)


def test_leaves_prove_the_root_by_their_proofs_or_as_the_whole_set() -> None:
    tree = tree_of(7)
    assert leaves_prove_root(tree.root, claimed_of(tree, proofs=True))
    assert leaves_prove_root(tree.root, claimed_of(tree, proofs=False))
    assert leaves_prove_root(tree.root, claimed_of(tree, proofs=True)[2:4])  # each by its proof
    assert not leaves_prove_root(tree.root, claimed_of(tree, proofs=False)[1:])  # not the whole set
    forged = [ClaimedLeaf(dataclasses.replace(tree.leaves[0], equity=0), None), *claimed_of(tree, proofs=False)[1:]]
    assert not leaves_prove_root(tree.root, forged)
    # a proof-less leaf beside proven ones is not proven by them
    mixed = [*claimed_of(tree, proofs=True)[1:], ClaimedLeaf(dataclasses.replace(tree.leaves[0], equity=0), None)]
    assert not leaves_prove_root(tree.root, mixed)


def test_rows_documents_round_trip_and_name_the_bad_field() -> None:
    rows = [RiskRow(7, -2, 3, (1, -1, 2**63 - 1)), RiskRow(COVER_KEY, 10**6, 0, (10**6,))]
    assert parse_rows_document([row_to_json(r) for r in rows]) == rows
    assert parse_rows_document({"rows": [row_to_json(r) for r in rows]}) == rows
    # what a node's /v1/risk-arrays serves is a rows document
    served = RiskArrays(64, RiskArrayTree(rows).root, tuple(rows)).to_json()
    assert parse_rows_document(json.loads(json.dumps(served))) == rows
    row = row_to_json(rows[0])
    cases = [
        ({"leaves": []}, "rows"),
        ("rows", "rows"),
        (["x"], "rows[0]"),
        ([{**row, "key": "0xzz"}], "rows[0].key"),
        ([{**row, "key": 1.5}], "rows[0].key"),
        ([{**row, "values": ["x"]}], "rows[0].values[0]"),
        ([{**row, "values": 3}], "rows[0].values"),
        ([{k: v for k, v in row.items() if k != "addon"}], "rows[0].addon"),
        ([{**row, "base": 2**63}], "rows[0].base"),
        ([row, {**row, "values": [2**64]}], "rows[1].values"),
    ]
    for document, field in cases:
        with pytest.raises(InputError) as info:
            parse_rows_document(document)
        assert info.value.field == field, (document, info.value)


def test_find_evidence_in_an_archive(tmp_path: pathlib.Path) -> None:
    committee = make_committee(N)
    # member 3 signed block 10 of a fork a deep reorg replaced (another hash): that is no deviation
    on_old_fork = dataclasses.replace(make_signed(N, 3, 10).report, block_hash=b"\xee" * 32)
    reports = [make_signed(N, m, 10) for m in range(N - 1)] + [sign_report(DOMAIN, on_old_fork, make_key(3))]
    reports += [make_signed(N, 1, 10, variant=1), make_signed(N, 2, 20, variant=2), make_signed(N, 3, 20)]
    with ReportArchive(tmp_path / "archive.sqlite") as archive:
        for s in reports:
            archive.add(s, compute_report_digest(DOMAIN, s.report), 1.0)
    archive = open_archive(tmp_path)  # the data directory is accepted too
    try:
        assert archive.get_round_keys() == [(committee.digest(), 10), (committee.digest(), 20)]
        # archive only: member 1's equivocation in round 10
        found = find_evidence(archive, domain=DOMAIN, committee=committee)
        assert len(found) == 1 and isinstance(found[0], Equivocation)
        assert {found[0].a.signer, found[0].b.signer} == {committee.members[1]}
        assert compute_report_digest(DOMAIN, found[0].a.report) < compute_report_digest(DOMAIN, found[0].b.report)
        # with the chain: round 10 attested the honest digest, round 20 is not attested
        honest = compute_report_digest(DOMAIN, make_signed(N, 0, 10).report)

        def attested(block: int) -> tuple[bytes, bytes, bytes] | None:
            return (committee.digest(), honest, make_signed(N, 0, 10).report.block_hash) if block == 10 else None

        found = find_evidence(archive, domain=DOMAIN, committee=committee, attested_digest=attested)
        deviations = [e for e in found if isinstance(e, Deviation)]
        assert [d.signed for d in deviations] == [make_signed(N, 1, 10, variant=1)]
        assert {evidence_file_name(e, DOMAIN) for e in found} == {
            f"equivocation-10-{to_checksum_address(committee.members[1]).lower()}.json",
            f"deviation-10-{to_checksum_address(committee.members[1]).lower()}-"
            f"{compute_report_digest(DOMAIN, deviations[0].signed.report).hex()[:8]}.json",
        }
        # under another committee config the reports prove nothing
        assert find_evidence(archive, domain=DOMAIN, committee=make_committee(N + 3), attested_digest=attested) == []
    finally:
        archive.close()


def test_open_archive_rejects_what_is_not_an_archive(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError, match="no report archive"):
        open_archive(tmp_path / "missing")
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(InputError, match="not a report archive"):
        open_archive(junk)
