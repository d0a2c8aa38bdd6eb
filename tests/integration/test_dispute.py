"""``pmoracle dispute`` against a real anvil: a seeded protocol, rounds attested by the committee's real signatures
(one honest, one where a quorum signed a perturbed root), a real SQLite report archive, and real slashing."""

from __future__ import annotations

import dataclasses
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.cli import main
from pmoracle.config.params import default_params_text
from pmoracle.consensus.certificate import build_certificate
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import Deviation, encode_evidence
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree
from pmoracle.consensus.report import Domain, Report, SignedReport, compute_report_digest, sign_report
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World
from pmoracle.node.daemon import OFFLINE_W3, read_committee
from pmoracle.node.keys import KeyKind, write_key_file
from pmoracle.node.round import RoundOutput, compute_round
from pmoracle.risk.params import parse_params
from pmoracle.storage.archive import ReportArchive
from tests.integration.chain.contracts_support import address_of, dev_key, node_spec, pass_deviation_window
from tests.integration.node_api_support import serve_node_api

ACCOUNTS = 20
PASSWORD = "dispute-test-password"
REPORTER_KEY = dev_key(9)  # a funded anvil account that is no node's operator
STAKE = 10**18
SLASH_BPS, REWARD_BPS = 1_000, 5_000


@dataclass
class Net:
    chain: Devchain
    tmp: Path
    client: ChainClient
    deployment: Deployment
    deployment_file: Path
    params_file: Path
    committee: CommitteeConfig
    domain: Domain
    signing_keys: list[bytes]
    honest_block: int
    honest: RoundOutput
    wrong_block: int
    wrong_tree: MerkleTree
    perturbed: list[bytes]  # accounts whose attested values were changed in the wrong round

    def chain_args(self) -> list[str]:
        return ["--rpc", self.chain.url, "--deployment", str(self.deployment_file)]

    def check_args(self) -> list[str]:
        return ["dispute", "check", *self.chain_args(), "--params", str(self.params_file)]


def attest(net_client: ChainClient, deployment: Deployment, committee: CommitteeConfig, domain: Domain,
           keys: list[bytes], report: Report) -> None:  # fmt: skip
    """Sign ``report`` with a quorum of members and attest it through the Transmitter."""
    signatures = {s.signer: s.signature for s in (sign_report(domain, report, k) for k in keys[: committee.quorum])}
    cert = build_certificate(committee, report, signatures)
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    fn = oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
    Transmitter(net_client, dev_key(8)).transact_call(fn)  # not the World admin: its nonces are its own


@pytest.fixture(scope="module")
def net(anvil: Devchain, tmp_path_factory: pytest.TempPathFactory) -> Net:
    tmp = tmp_path_factory.mktemp("dispute")
    params_text = default_params_text()
    params = parse_params(params_text)
    params_file = tmp / "risk-params.toml"
    params_file.write_text(params_text)
    deployment_file = tmp / "deployment.json"
    specs = [node_spec(i) for i in range(4)]
    deployment = deploy(anvil.url, dev_key(0), params_hash=params.params_hash, round_period=4, finality_depth=2,
                        nodes=specs, slash_bps=SLASH_BPS, reward_bps=REWARD_BPS, output=deployment_file)  # fmt: skip
    client = ChainClient([anvil.url])
    committee = read_committee(client, deployment)
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    world = World(anvil.url, deployment, address_of(dev_key(0)), seed=7)
    world.setup(ACCOUNTS)
    keys = [s.signing_key for s in specs]

    # round 1: the honest recomputation, signed by a quorum and attested
    anvil.rpc("evm_mine")
    honest_block = client.block_number() - 1
    honest = compute_round(read_snapshot(client, deployment, honest_block), params, committee)
    attest(client, deployment, committee, domain, keys, honest.report)

    # round 2: the market moves; a quorum signs a root in which two accounts' values were changed
    world.move_market(int(client.get_block("latest").timestamp))
    anvil.rpc("evm_mine")
    wrong_block = client.block_number() - 1
    truth = compute_round(read_snapshot(client, deployment, wrong_block), params, committee)
    leaves = list(truth.tree.leaves)
    leaves[3] = dataclasses.replace(leaves[3], initial_margin=leaves[3].initial_margin + 10**18)
    leaves[11] = dataclasses.replace(leaves[11], equity=leaves[11].equity - 5 * 10**17)
    wrong_tree = MerkleTree(leaves)
    wrong = dataclasses.replace(truth.report, accounts_root=wrong_tree.root)
    attest(client, deployment, committee, domain, keys, wrong)
    return Net(anvil, tmp, client, deployment, deployment_file, params_file, committee, domain, keys, honest_block,
               honest, wrong_block, wrong_tree, [leaves[3].account, leaves[11].account])  # fmt: skip


def leaf_json(leaf: AccountLeaf, proof: list[bytes] | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {"account": to_checksum_address(leaf.account), "initialMargin": str(leaf.initial_margin),
                           "maintenanceMargin": str(leaf.maintenance_margin), "equity": str(leaf.equity)}  # fmt: skip
    if proof is not None:
        obj["proof"] = ["0x" + p.hex() for p in proof]
    return obj


# --- check --------------------------------------------------------------------------------------------------------


def test_check_holds_for_the_honest_round(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*net.check_args(), "--round", str(net.honest_block)]) == 0
    out = capsys.readouterr().out
    assert f"round {net.honest_block}: the attestation HOLDS" in out
    assert "0x" + net.honest.tree.root.hex() in out
    # without attested leaves the recomputed leaves are printed
    for leaf in net.honest.tree.leaves:
        assert to_checksum_address(leaf.account) in out
    # with the attested leaves (here: the honest tree with proofs) no account differs
    leaves_file = net.tmp / "honest-leaves.json"
    tree = net.honest.tree
    leaves_file.write_text(json.dumps([leaf_json(leaf, tree.proof(leaf.account)) for leaf in tree.leaves]))
    assert main([*net.check_args(), "--round", str(net.honest_block), "--leaves", str(leaves_file), "--json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["holds"] is True and verdict["differences"] == [] and verdict["unproven"] == []
    assert verdict["attestedLeavesCompared"] == len(tree) >= ACCOUNTS


def test_check_fails_on_the_perturbed_round_and_names_the_accounts(
    net: Net, capsys: pytest.CaptureFixture[str]
) -> None:
    # --latest is the wrong round; roots alone already show it
    assert main([*net.check_args(), "--latest"]) == 1
    out = capsys.readouterr().out
    assert f"round {net.wrong_block}: the attestation DOES NOT HOLD" in out
    assert "0x" + net.wrong_tree.root.hex() in out

    # with proven attested leaves, exactly the two changed accounts are listed with both values
    tree = net.wrong_tree
    with_proofs = net.tmp / "wrong-leaves.json"
    with_proofs.write_text(json.dumps({"leaves": [leaf_json(leaf, tree.proof(leaf.account)) for leaf in tree.leaves]}))
    assert main([*net.check_args(), "--round", str(net.wrong_block), "--leaves", str(with_proofs), "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["holds"] is False and verdict["rootMatches"] is False
    differing = {d["account"]: d for d in verdict["differences"]}
    assert set(differing) == {to_checksum_address(a) for a in net.perturbed}
    first = differing[to_checksum_address(net.perturbed[0])]
    assert first["verified"] is True
    assert int(first["attested"]["initialMargin"]) == int(first["recomputed"]["initialMargin"]) + 10**18
    assert first["attested"]["equity"] == first["recomputed"]["equity"]
    second = differing[to_checksum_address(net.perturbed[1])]
    assert int(second["attested"]["equity"]) == int(second["recomputed"]["equity"]) - 5 * 10**17

    # the whole leaf set without proofs proves itself by rebuilding the attested root; the text names both values
    whole = net.tmp / "wrong-leaves-whole.json"
    whole.write_text(json.dumps([leaf_json(leaf) for leaf in tree.leaves]))
    assert main([*net.check_args(), "--round", str(net.wrong_block), "--leaves", str(whole)]) == 1
    out = capsys.readouterr().out
    assert "2 accounts differ" in out and "NOT proven" not in out
    changed = tree.leaf_of(net.perturbed[0])
    assert f"initialMargin      recomputed {changed.initial_margin - 10**18}  attested {changed.initial_margin}" in out


def test_check_fetches_attested_leaves_from_a_node_api(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    with serve_node_api(net.wrong_tree, net.wrong_block) as url:
        assert main([*net.check_args(), "--round", str(net.wrong_block), "--node-api", url, "--json"]) == 1
        verdict = json.loads(capsys.readouterr().out)
        assert {d["account"] for d in verdict["differences"]} == {to_checksum_address(a) for a in net.perturbed}
        assert all(d["verified"] for d in verdict["differences"])
        # a node keeping no leaves of the round asked for is bad input naming the node's route, not a verdict
        assert main([*net.check_args(), "--round", str(net.honest_block), "--node-api", url]) == 2
        assert f"{url}/v1/leaves/{net.honest_block} serves no leaves of round {net.honest_block}" in (
            capsys.readouterr().err
        )
        # what the route serves, saved, is a leaves file
        saved = net.tmp / "v1-leaves.json"
        with urllib.request.urlopen(f"{url}/v1/leaves/{net.wrong_block}") as response:
            saved.write_bytes(response.read())
        assert main([*net.check_args(), "--round", str(net.wrong_block), "--leaves", str(saved), "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["differences"] == verdict["differences"]
    # a node whose latest attested round is newer still serves this one by block, while it keeps it
    newer = MerkleTree([dataclasses.replace(leaf, equity=leaf.equity + 1) for leaf in net.wrong_tree.leaves])
    with serve_node_api(newer, net.wrong_block + 8, older={net.wrong_block: (net.wrong_tree, None)}) as url:
        assert main([*net.check_args(), "--round", str(net.wrong_block), "--node-api", url, "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["differences"] == verdict["differences"]
    # a node of an older release (no /v1/leaves) is asked /v1/margin account by account: only its latest round
    with serve_node_api(net.wrong_tree, net.wrong_block, leaves_route=False) as url:
        assert main([*net.check_args(), "--round", str(net.wrong_block), "--node-api", url, "--json"]) == 1
        assert json.loads(capsys.readouterr().out)["differences"] == verdict["differences"]
        assert main([*net.check_args(), "--round", str(net.honest_block), "--node-api", url]) == 2
        assert f"not round {net.honest_block}" in capsys.readouterr().err


def test_check_rejects_bad_input(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*net.check_args(), "--round", str(net.honest_block + 1)]) == 2
    assert "no round attested at block" in capsys.readouterr().err
    bad = net.tmp / "bad-leaves.json"
    bad.write_text(json.dumps([{"account": "0x" + "11" * 20, "initialMargin": "lots", "maintenanceMargin": "1",
                                "equity": "1"}]))  # fmt: skip
    assert main([*net.check_args(), "--round", str(net.honest_block), "--leaves", str(bad)]) == 2
    assert "leaves[0].initialMargin" in capsys.readouterr().err
    other_params = net.tmp / "other-params.toml"
    other_params.write_text(default_params_text().replace("\nmax_feed_age_seconds = ", "\nmax_feed_age_seconds = 1", 1))
    args = ["dispute", "check", *net.chain_args(), "--params", str(other_params), "--round", str(net.honest_block)]
    assert main(args) == 2
    assert "paramsHash" in capsys.readouterr().err


# --- scan and submit ----------------------------------------------------------------------------------------------


def build_archive(net: Net) -> Path:
    """Return a node data directory whose archive holds the honest round's reports plus an equivocation by member 2
    and a deviation by member 3."""
    data_dir = net.tmp / "node-data"
    data_dir.mkdir(exist_ok=True)
    honest = net.honest.report
    other = dataclasses.replace(honest, accounts_root=b"\x42" * 32)
    third = dataclasses.replace(honest, accounts_root=b"\x43" * 32)
    signed: list[SignedReport] = [sign_report(net.domain, honest, k) for k in net.signing_keys]
    signed.append(sign_report(net.domain, other, net.signing_keys[2]))  # member 2 signs a second digest
    signed[3] = sign_report(net.domain, third, net.signing_keys[3])  # member 3 signs only a wrong one
    with ReportArchive(data_dir / "archive.sqlite") as archive:
        for i, s in enumerate(signed):
            archive.add(s, compute_report_digest(net.domain, s.report), seen_at=1_700_000_000.0 + i)
    return data_dir


def test_scan_finds_the_equivocation_and_the_deviations(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = build_archive(net)
    out_dir = net.tmp / "evidence"
    assert main(["dispute", "scan", "--archive", str(data_dir), *net.chain_args(), "--out", str(out_dir)]) == 1
    text = capsys.readouterr().out
    member = [to_checksum_address(m) for m in net.committee.members]
    assert "3 findings" in text
    assert f"equivocation: {member[2]} signed two reports for round {net.honest_block}" in text
    assert f"deviation: {member[3]} signed round {net.honest_block}" in text
    assert f"deviation: {member[2]} signed round {net.honest_block}" in text
    files = sorted(p.name for p in out_dir.iterdir())
    assert len(files) == 3
    assert f"equivocation-{net.honest_block}-{member[2].lower()}.json" in files
    # honest members 0 and 1 are never accused
    assert not any(member[0].lower() in f or member[1].lower() in f for f in files)
    # without the chain only the equivocation is provable from the archive alone
    assert main(["dispute", "scan", "--archive", str(data_dir / "archive.sqlite"), "--json"]) == 1
    found = json.loads(capsys.readouterr().out)["findings"]
    assert [f["kind"] for f in found] == ["equivocation"]


def test_submit_slashes_once_and_reports_the_contracts_refusal(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = net.tmp / "evidence"
    if not out_dir.exists():
        test_scan_finds_the_equivocation_and_the_deviations(net, capsys)
        capsys.readouterr()
    member2 = to_checksum_address(net.committee.members[2])
    key_file = net.tmp / "reporter.json"
    write_key_file(KeyKind.TRANSMITTER, key_file, PASSWORD.encode(), secret=REPORTER_KEY, kdf_iterations=1024)
    password_file = net.tmp / "password.txt"
    password_file.write_text(PASSWORD + "\n")
    submit = ["--key-file", str(key_file), "--password-file", str(password_file), *net.chain_args()]
    registry = net.deployment.contract(OFFLINE_W3, "SolverRegistry")
    stake_before = int(net.client.call(registry.functions.nodeOf(member2))[2])

    evidence = out_dir / f"equivocation-{net.honest_block}-{member2.lower()}.json"
    assert main(["dispute", "submit", str(evidence), *submit, "--json"]) == 0
    outcome = json.loads(capsys.readouterr().out)
    amount = STAKE * SLASH_BPS // 10_000
    assert outcome["slashed"] is True and outcome["offence"] == "equivocation"
    assert outcome["signer"] == member2 and outcome["blockNumber"] == net.honest_block
    # the reporter runs no registered node: the slash stands, unrewarded (only a staked node is rewarded)
    assert int(outcome["amount"]) == amount and int(outcome["reward"]) == 0
    assert outcome["reporter"] == address_of(REPORTER_KEY)
    assert int(net.client.call(registry.functions.nodeOf(member2))[2]) == stake_before - amount

    # the same offence again, and member 2's deviation in the same round: refused, stake untouched
    assert main(["dispute", "submit", str(evidence), *submit]) == 1
    assert "refused by the contract: AlreadySlashed(" in capsys.readouterr().out
    # deviation evidence waits for the round's deviation window (a fraud proof may still invalidate the round)
    member3 = to_checksum_address(net.committee.members[3])
    deviation3 = next(out_dir.glob(f"deviation-{net.honest_block}-{member3.lower()}-*.json"))
    assert main(["dispute", "submit", str(deviation3), *submit]) == 1
    text = capsys.readouterr().out
    assert f"refused by the contract: DeviationWindowNotOpen({net.honest_block}, " in text
    assert f"round {net.honest_block} was attested at chain time " in text and "submit again then" in text
    pass_deviation_window(net.chain)
    deviation2 = next(out_dir.glob(f"deviation-{net.honest_block}-{member2.lower()}-*.json"))
    assert main(["dispute", "submit", str(deviation2), *submit, "--json"]) == 1
    refusal = json.loads(capsys.readouterr().out)
    assert refusal == {"slashed": False, "error": "AlreadySlashed",
                       "args": [member2, "0x" + net.committee.digest().hex(), net.honest_block]}  # fmt: skip
    assert int(net.client.call(registry.functions.nodeOf(member2))[2]) == stake_before - amount

    # member 3's deviation slashes member 3
    assert main(["dispute", "submit", str(deviation3), *submit]) == 0
    text = capsys.readouterr().out
    assert f"slashed {member3} for deviation in round {net.honest_block}: {amount} wei" in text


def test_submit_rejects_malformed_evidence_naming_the_field(net: Net, capsys: pytest.CaptureFixture[str]) -> None:
    signed = sign_report(net.domain, net.honest.report, net.signing_keys[0])
    good = encode_evidence(Deviation(signed, b"\1" * 32))
    cases: list[tuple[Any, str]] = [
        ({**good, "kind": "perjury"}, "kind:"),
        ({**good, "version": 9}, "version:"),
        ({**good, "signed": {k: v for k, v in good["signed"].items() if k != "signature"}}, "signature:"),
        ({**good, "attestedDigest": "0xzz"}, "attestedDigest:"),
        ({**good, "signed": {**good["signed"], "report": {**good["signed"]["report"], "blockNumber": "x"}}},
         "report:"),
    ]  # fmt: skip
    args = ["--rpc", net.chain.url, "--deployment", str(net.deployment_file), "--key-file", str(net.tmp / "nokey")]
    for i, (obj, field) in enumerate(cases):
        path = net.tmp / f"malformed-{i}.json"
        path.write_text(json.dumps(obj))
        assert main(["dispute", "submit", str(path), *args]) == 2
        err = capsys.readouterr().err
        assert field in err, (field, err)
    not_json = net.tmp / "not-json.json"
    not_json.write_text("{ evidence")
    assert main(["dispute", "submit", str(not_json), *args]) == 2
    assert "evidence: " in capsys.readouterr().err
