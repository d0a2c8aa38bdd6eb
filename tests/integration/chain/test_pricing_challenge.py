"""The pricing challenge on a real anvil: 3 of 4 members attest risk arrays with a wrong option entry and leaves
consistent with it, which the aggregation fraud proof cannot catch; anyone recomputes the entry on chain
(``MarginOracle.challengePricing``: Black-76 in fixed point from the committed market and scenario row), the round
is invalidated and the three are slashed through the registry's existing slashing path, the honest member is not.
Every honest entry of a recomputed round is refused (``EntryWithinTolerance``), and so are bad challenges.

The seeded protocol (``World``) holds real options in ``MarginAccounts``; rounds are recomputed from the chain
snapshot at B exactly as a node does (``compute_round``).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.snapshot import read_snapshot
from pmoracle.chain.transmitter import Transmitter
from pmoracle.cli import main
from pmoracle.config.params import default_params_text
from pmoracle.consensus.commitments import (
    COVER_KEY,
    NO_POLICY,
    SCENARIO_FLAG,
    FraudProof,
    PricingChallenge,
    RiskArrayTree,
    RiskRow,
    compute_fraud_proof,
    compute_pricing_challenge,
)
from pmoracle.consensus.report import Report
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.api import row_to_json
from pmoracle.node.daemon import OFFLINE_W3
from pmoracle.node.dispute import (
    challenge_pricing_call,
    leaf_to_json,
    prove_fraud_call,
    submit_pricing_challenge,
)
from pmoracle.node.keys import KeyKind, write_key_file
from pmoracle.node.round import MONEY_TO_LEAF, compute_round
from tests.integration.chain.fraud_support import (
    COLLUDERS,
    HONEST,
    REPORTER,
    SLASH_BPS,
    Lie,
    Round,
    Seeded,
    attest,
    deploy_seeded,
    instruments_of,
    lie_about,
    options_of,
    recompute,
    revert_of,
    shift_most_held_option,
    stake_of,
)
from tests.integration.node_api_support import serve_node_api

QUANTUM = 10**14  # MarginOracle.QUANTUM: 1e-4 USD per unit in WAD


@pytest.fixture(scope="module")
def seeded(anvil: Devchain) -> Seeded:
    return deploy_seeded(anvil, seed=21)


@pytest.fixture(scope="module")
def honest(anvil: Devchain, seeded: Seeded) -> Round:
    """A round every member attested."""
    rnd = recompute(anvil, seeded)
    attest(seeded, (0, 1, 2, 3), rnd.truth.report)
    return rnd


def challenge_of(rnd: Round, tree: RiskArrayTree, key: int, scenario: int) -> PricingChallenge:
    underlying = instruments_of(rnd)[key].underlying
    return compute_pricing_challenge(tree, rnd.snapshot.market, NO_POLICY, key, underlying, scenario)


def registry_balance(seeded: Seeded) -> int:
    """Return the registry's wei balance (the stakes and the slashed pool)."""
    return int(seeded.client.request("eth_getBalance", [seeded.deployment.contracts["SolverRegistry"], "latest"]), 16)


def slash_and_check(seeded: Seeded, lie: Lie, challenge: PricingChallenge) -> None:
    """Submit ``challenge``: exactly the colluders lose SLASH_BPS of their stake, through the registry's slashing
    path, and the wei taken are all in its slashed pool (the reporter operates no node: no reward): money is
    conserved. The round is then refused everywhere."""
    registry = seeded.deployment.contract(OFFLINE_W3, "SolverRegistry")
    pool_before = int(seeded.client.call(registry.functions.slashedPool()))
    balance_before = registry_balance(seeded)
    before = [stake_of(seeded, i) for i in range(4)]
    outcomes = submit_pricing_challenge(Transmitter(seeded.client, REPORTER), seeded.deployment, lie.report, challenge)
    assert {o.signer for o in outcomes} == {seeded.committee.members[i] for i in COLLUDERS}
    assert {o.offence for o in outcomes} == {"fraud"} and {o.reward for o in outcomes} == {0}
    after = [stake_of(seeded, i) for i in range(4)]
    assert all(after[i] == before[i] * (10_000 - SLASH_BPS) // 10_000 for i in COLLUDERS)
    assert after[HONEST] == before[HONEST]
    taken = sum(before) - sum(after)
    assert taken == sum(o.amount for o in outcomes) > 0
    assert int(seeded.client.call(registry.functions.slashedPool())) == pool_before + taken
    assert registry_balance(seeded) == balance_before
    oracle = seeded.deployment.contract(OFFLINE_W3, "MarginOracle")
    leaf = lie.tree.leaves[0]
    verify = oracle.functions.verifyMargin(
        to_checksum_address(leaf.account), leaf.initial_margin, leaf.maintenance_margin, leaf.equity,
        lie.tree.proof(leaf.account),
    )  # fmt: skip
    assert revert_of(seeded.client, verify) == ("RoundProvenFraudulent", (lie.report.block_number,))
    again = challenge_pricing_call(seeded.deployment, lie.report, challenge)
    assert revert_of(seeded.client, again)[0] == "RoundProvenFraudulent"


def test_every_honest_entry_is_refused(seeded: Seeded, honest: Round) -> None:
    instruments = instruments_of(honest)
    held = {key for holdings in honest.holdings.values() for key in holdings if key in instruments}
    assert len(held & set(options_of(honest))) >= 4, "the seeded book holds options"
    assert any(not instruments[key].is_option for key in held), "and futures or perpetuals"
    tree = honest.truth.risk_tree
    n_scen = len(tree.row_of(COVER_KEY).values)
    worst_quanta = 0.0
    checked = 0
    for key in sorted(held):
        for scenario in range(n_scen):
            call = challenge_pricing_call(
                seeded.deployment, honest.truth.report, challenge_of(honest, tree, key, scenario)
            )
            name, args = revert_of(seeded.client, call)
            assert name == "EntryWithinTolerance", (key, scenario, name, args)
            _key, _s, attested, recomputed, tolerance = args
            assert abs(attested - recomputed) <= tolerance < 2 * QUANTUM
            worst_quanta = max(worst_quanta, abs(attested - recomputed) / QUANTUM)
            checked += 1
    print(f"\n{checked} honest entries ({len(held)} instruments x {n_scen} scenarios) refused;"
          f" largest gap {worst_quanta:.4f} quanta")  # fmt: skip
    assert worst_quanta <= 0.5 + 1e-6  # the engine's round-half-even, and nothing more


def test_an_honest_round_priced_with_its_own_vol_shift_is_not_challengeable(anvil: Devchain, seeded: Seeded) -> None:
    # Before any test below slashes (and ejects) the colluders: this round needs a quorum's signatures.
    # A node with [policy.vol] (or vol.shift_by_underlying) prices BTC's options with BTC's own shift under the
    # document's paramsHash; its scenario row must commit that shift, not the document's constant, or every honest
    # round of such a node would be provably "wrong".
    anvil.rpc("evm_mine")
    snapshot = read_snapshot(seeded.client, seeded.deployment, seeded.client.block_number() - 1)
    own_shift = seeded.params.vol_shift * 0.6
    params = dataclasses.replace(seeded.params, vol_shift_by_underlying=(("BTC", own_shift),))
    truth = compute_round(snapshot, params, seeded.committee)
    # the report keeps the document's hash, as compute_round does with a policy's effective parameters
    truth = dataclasses.replace(truth, report=dataclasses.replace(truth.report, params_hash=seeded.params.params_hash))
    assert (
        truth.report.risk_arrays_root
        != compute_round(snapshot, seeded.params, seeded.committee).report.risk_arrays_root
    )
    attest(seeded, (0, 1, 2, 3), truth.report)
    rnd = Round(snapshot, truth, holdings={})
    tree = truth.risk_tree
    rows = {row.key for row in tree.rows}
    btc_options = sorted(k for k, inst in options_of(rnd).items() if inst.underlying == "BTC" and k in rows)
    assert btc_options, "the seeded book holds BTC options"
    n_scen = len(tree.row_of(COVER_KEY).values)
    for key in btc_options[:3]:
        for scenario in range(0, n_scen, 4):
            call = challenge_pricing_call(seeded.deployment, truth.report, challenge_of(rnd, tree, key, scenario))
            assert revert_of(seeded.client, call)[0] == "EntryWithinTolerance", (key, scenario)


def test_bad_challenges_are_refused_and_slash_nobody(seeded: Seeded, honest: Round) -> None:
    report = honest.truth.report
    tree = honest.truth.risk_tree
    options = options_of(honest)
    key = min(k for k in options if k in {r.key for r in tree.rows})
    good = challenge_of(honest, tree, key, 0)
    n_scen = len(good.row.values)

    def refused(challenge: PricingChallenge, rep: Report = report) -> tuple[str, tuple[object, ...]]:
        return revert_of(seeded.client, challenge_pricing_call(seeded.deployment, rep, challenge))

    before = [stake_of(seeded, i) for i in range(4)]
    assert refused(good)[0] == "EntryWithinTolerance"
    tampered = dataclasses.replace(
        good, row=dataclasses.replace(good.row, values=(good.row.values[0] + 50, *good.row.values[1:]))
    )
    assert refused(tampered) == ("InvalidRowProof", (key, report.risk_arrays_root))
    bad_path = dataclasses.replace(good, scenario_proof=good.scenario_proof[1:])
    assert refused(bad_path) == ("InvalidRowProof", (good.scenario_row.key, report.risk_arrays_root))
    other_market = dataclasses.replace(good, market=dataclasses.replace(good.market, time=good.market.time + 1))
    name, args = refused(other_market)
    assert name == "MarketMismatch" and args[2] == report.market_hash
    assert refused(dataclasses.replace(good, policy_hash=b"\x01" * 32))[0] == "MarketMismatch"
    assert refused(dataclasses.replace(good, scenario=n_scen)) == ("ScenarioOutOfRange", (n_scen, n_scen))
    collateral = next(r for r in tree.rows if r.key >> 255 and r.key != COVER_KEY)
    as_instrument = dataclasses.replace(good, row=collateral, row_proof=tuple(tree.proof(collateral.key)))
    assert refused(as_instrument) == ("NotAnInstrument", (collateral.key,))
    cover = tree.row_of(COVER_KEY)
    assert refused(dataclasses.replace(good, row=cover, row_proof=tuple(tree.proof(COVER_KEY)))) == (
        "NotAnInstrument",
        (COVER_KEY,),
    )
    foreign = [r for r in tree.rows if r.key & SCENARIO_FLAG and r.key != COVER_KEY and r.key != good.scenario_row.key]
    assert foreign, "the market has two underlyings"
    wrong_column = dataclasses.replace(good, scenario_row=foreign[0], scenario_proof=tuple(tree.proof(foreign[0].key)))
    assert refused(wrong_column) == ("InvalidScenarioRow", (foreign[0].key, good.scenario_row.key))
    assert refused(good, dataclasses.replace(report, market_hash=bytes(32)))[0] == "ReportMismatch"
    assert [stake_of(seeded, i) for i in range(4)] == before


def test_a_wrong_option_row_escapes_the_aggregation_proof_but_not_the_pricing_challenge(
    anvil: Devchain, seeded: Seeded, honest: Round
) -> None:
    rnd = recompute(anvil, seeded)
    options = options_of(rnd)
    # the victim: the account with an MM whose largest option position is shifted in its favour by 0.5 USD per unit
    victim, key, size = max(
        ((leaf, k, s) for leaf in rnd.truth.tree.leaves if leaf.maintenance_margin > 0
         for k, s in rnd.holdings[leaf.account].items() if k in options),
        key=lambda t: abs(t[2]),
    )  # fmt: skip
    step = 5_000 if size > 0 else -5_000
    lie = lie_about(seeded, rnd, lambda row: dataclasses.replace(row, values=tuple(v + step for v in row.values)), key)
    lied = lie.tree.leaf_of(victim.account)
    assert lied.maintenance_margin < victim.maintenance_margin  # the victim's MM is understated
    # the attack: every lying leaf is consistent with the lying rows, so no aggregation proof exists ...
    for leaf in lie.tree.leaves:
        proof = lie.tree.proof(leaf.account)
        holdings = rnd.holdings[leaf.account]
        assert compute_fraud_proof(leaf, proof, lie.risk_tree, holdings, MONEY_TO_LEAF) is None
    # ... and the contract refuses one forced in the victim's worst scenario
    holdings = rnd.holdings[victim.account]
    rows = tuple((lie.risk_tree.row_of(k), tuple(lie.risk_tree.proof(k))) for k in sorted(holdings))
    cover = lie.risk_tree.row_of(COVER_KEY)
    worst = next(m.worst_scenario for m in rnd.truth.book.accounts if m.account == victim.account)
    forced = FraudProof(lied, tuple(lie.tree.proof(victim.account)), cover, tuple(lie.risk_tree.proof(COVER_KEY)),
                        rows, worst, 0)  # fmt: skip
    assert revert_of(seeded.client, prove_fraud_call(seeded.deployment, lie.report, forced))[0] == "NotFraudulent"
    # the fix: the entry is recomputed on chain from the committed market and scenario row
    slash_and_check(seeded, lie, challenge_of(rnd, lie.risk_tree, key, worst))


def test_an_entry_a_few_quanta_off_is_provable(anvil: Devchain) -> None:
    seeded = deploy_seeded(anvil, seed=22)  # its own committee: a slash leaves the colluders below the minimum stake
    rnd = recompute(anvil, seeded)
    options = options_of(rnd)
    key = max(k for holdings in rnd.holdings.values() for k in holdings if k in options)
    scenario = 7

    def off(row: RiskRow) -> RiskRow:
        values = list(row.values)
        values[scenario] -= 3
        return dataclasses.replace(row, values=tuple(values))

    lie = lie_about(seeded, rnd, off, key)
    slash_and_check(seeded, lie, challenge_of(rnd, lie.risk_tree, key, scenario))


@dataclass
class ProveSetup:
    """A fresh committee whose colluders attested one option's entries shifted by ``step`` quanta, with the files
    ``dispute prove`` reads."""

    seeded: Seeded
    rnd: Round
    lie: Lie
    key: int  # the shifted option's row key
    step: int
    base: list[str]  # dispute prove --latest --json, without the leaves/rows source
    signing: list[str]  # --key-file and --password-file of the reporter


def shift_an_option(anvil: Devchain, tmp_path: Path, seed: int) -> ProveSetup:
    """Deploy a committee of its own (a slash leaves the colluders below the minimum stake) and attest, with the
    colluders, the most held option's entries shifted by 5,000 quanta in the held direction."""
    seeded = deploy_seeded(anvil, seed=seed)
    rnd = recompute(anvil, seeded)
    lie, key, step = shift_most_held_option(seeded, rnd)
    deployment_file = tmp_path / "deployment.json"
    seeded.deployment.save(deployment_file)
    params_file = tmp_path / "risk-params.toml"
    params_file.write_text(default_params_text())
    key_file = tmp_path / "reporter.json"
    write_key_file(KeyKind.TRANSMITTER, key_file, b"pw", secret=REPORTER, kdf_iterations=1024)
    password_file = tmp_path / "password.txt"
    password_file.write_text("pw\n")
    base = ["dispute", "prove", "--rpc", anvil.url, "--deployment", str(deployment_file), "--params", str(params_file),
            "--latest", "--json"]  # fmt: skip
    return ProveSetup(seeded, rnd, lie, key, step, base, ["--key-file", str(key_file), "--password-file",
                                                          str(password_file)])  # fmt: skip


def prove_and_check_slashes(setup: ProveSetup, args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``dispute prove`` with a key: exactly the colluders are slashed, and a second run is refused."""
    seeded = setup.seeded
    before = [stake_of(seeded, i) for i in range(4)]
    assert main([*args, *setup.signing]) == 0
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["proven"] is True and outcome["round"] == setup.lie.report.block_number
    assert {s["signer"] for s in outcome["slashed"]} == {
        to_checksum_address(seeded.committee.members[i]) for i in COLLUDERS
    }
    after = [stake_of(seeded, i) for i in range(4)]
    assert after[HONEST] == before[HONEST] and all(after[i] < before[i] for i in COLLUDERS)
    assert main([*args, *setup.signing]) == 1  # the round is invalidated: refused
    assert json.loads(capsys.readouterr().out)["error"] == "RoundProvenFraudulent"


def test_dispute_prove_finds_the_wrong_entry_and_slashes_the_quorum(
    anvil: Devchain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    setup = shift_an_option(anvil, tmp_path, seed=23)
    rnd, lie, key, step = setup.rnd, setup.lie, setup.key, setup.step
    leaves_file = tmp_path / "attested-leaves.json"
    leaves_file.write_text(json.dumps([leaf_to_json(leaf) for leaf in lie.tree.leaves]))
    rows_file = tmp_path / "attested-rows.json"
    rows_file.write_text(json.dumps({"rows": [row_to_json(row) for row in lie.risk_tree.rows]}))
    base = [*setup.base, "--leaves", str(leaves_file)]
    # without the attested rows, nothing can be proven (the leaves are consistent with rows the tool does not have)
    assert main(base) == 1
    outcome = json.loads(capsys.readouterr().out)
    assert outcome["riskArraysMatch"] is False and "--rows" in outcome["error"]
    # rows that are not the attested tree are bad input, named
    bad_rows = tmp_path / "other-rows.json"
    bad_rows.write_text(json.dumps([row_to_json(row) for row in rnd.truth.risk_tree.rows]))
    assert main([*base, "--rows", str(bad_rows)]) == 2
    err = capsys.readouterr().err
    assert "rows:" in err and f"rows from rows file {bad_rows} rebuild" in err
    malformed = tmp_path / "malformed-rows.json"
    malformed.write_text(json.dumps([{"key": "0x1", "base": 0, "addon": 0, "values": ["x"]}]))
    assert main([*base, "--rows", str(malformed)]) == 2
    assert "rows[0].values[0]" in capsys.readouterr().err
    # found without a key: the largest gap, 5,000 quanta, of the shifted option
    assert main([*base, "--rows", str(rows_file)]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["proven"] is False and found["challenge"]["instrumentId"] == key
    assert found["challenge"]["attestedEntry"] - found["challenge"]["recomputedEntry"] == step
    prove_and_check_slashes(setup, [*base, "--rows", str(rows_file)], capsys)


def test_dispute_prove_reads_the_attested_rows_from_the_node_api(
    anvil: Devchain, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No rows file: ``--node-api`` of a node whose quorum attested the round serves the leaves (/v1/margin) and the
    attested rows (/v1/risk-arrays/B) through the API server the daemon runs."""
    setup = shift_an_option(anvil, tmp_path, seed=29)
    rnd, lie = setup.rnd, setup.lie
    block = lie.report.block_number
    # a node that serves the leaves but keeps no rows of the round: nothing can be proven, and the tool says why
    with serve_node_api(lie.tree, block) as url:
        assert main([*setup.base, "--node-api", url]) == 1
        outcome = json.loads(capsys.readouterr().out)
        assert outcome["riskArraysMatch"] is False and outcome["riskArraysSource"] is None
        assert "--node-api" in outcome["error"]
    # a node serving rows that are not the attested ones: bad input naming the node's route
    with serve_node_api(lie.tree, block, rnd.truth.risk_tree) as url:
        assert main([*setup.base, "--node-api", url]) == 2
        err = capsys.readouterr().err
        assert f"node API {url}/v1/risk-arrays/{block}" in err and "not the attested riskArraysRoot" in err
    with serve_node_api(lie.tree, block, lie.risk_tree) as url:
        assert main([*setup.base, "--node-api", url]) == 0
        found = json.loads(capsys.readouterr().out)
        assert found["riskArraysSource"] == f"node API {url}/v1/risk-arrays/{block}"
        assert found["proven"] is False and found["challenge"]["instrumentId"] == setup.key
        assert found["challenge"]["attestedEntry"] - found["challenge"]["recomputedEntry"] == setup.step
        prove_and_check_slashes(setup, [*setup.base, "--node-api", url], capsys)
