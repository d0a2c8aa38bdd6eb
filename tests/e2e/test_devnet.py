"""End to end: real anvil, real `pmoracle node` processes over libp2p, the devnet's moving market.

One devnet serves the whole module (starting one costs ~10 s); the tests run in order on it:
rounds attested and audited, a served proof verified on chain and used by a withdrawal, a kill -9 survived,
and a restarted node that resumes without ever signing a second digest for a round.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ContractError
from pmoracle.consensus.commitments import RiskArrayTree
from pmoracle.devnet.cluster import Devnet, DevnetOptions, build_devnet, scheme_summary
from pmoracle.devnet.world import WorldError
from pmoracle.node.daemon import OFFLINE_W3
from pmoracle.node.dispute import leaves_prove_root, parse_leaves_document, parse_rows_document

N_NODES = 4
ROUND_TIMEOUT = 90.0


@pytest.fixture(scope="module")
def devnet() -> Iterator[Devnet]:
    # Kept after the run (node logs for a failing test); pytest's own tmp dirs rotate under parallel sessions.
    run_dir = Path(tempfile.mkdtemp(prefix="pmoracle-e2e-"))
    net = build_devnet(
        DevnetOptions(nodes=N_NODES, accounts=40, duration=None, run_dir=run_dir, quiet=True), say=lambda _: None
    )
    try:
        yield net
    finally:
        net.stop()
        for node in net.nodes:  # no process left behind
            assert node.process is not None and node.process.poll() is not None


def _protection_records(devnet: Devnet, index: int) -> dict[tuple[bytes, int], bytes]:
    path = devnet.nodes[index].home / "data" / "protection.sqlite"
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT config_digest, block_number, digest FROM signed_rounds").fetchall()
    return {(bytes(r[0]), int(r[1])): bytes(r[2]) for r in rows}


def test_four_nodes_attest_consecutive_rounds_that_match_recomputation(devnet: Devnet) -> None:
    period = devnet.options.round_period

    def three_consecutive(d: Devnet) -> bool:
        blocks = [r.block_number for r in d.attested]
        return any(b + period in blocks and b + 2 * period in blocks for b in blocks)

    devnet.run_until(three_consecutive, ROUND_TIMEOUT, what="three consecutive attested rounds")
    assert all(r.verified for r in devnet.attested), "an attested root differs from the independent recomputation"
    assert all(r.accounts == 41 for r in devnet.attested)  # 40 traders and the house account
    blocks = [r.block_number for r in devnet.attested]
    assert blocks == sorted(set(blocks)), "a round was attested twice or out of order"
    metrics = _metrics(devnet, 0)
    assert metrics["pmoracle_rounds_signed_total"] >= 1
    assert metrics["pmoracle_rounds_attested_total"] >= 1
    assert metrics["pmoracle_round_latency_seconds_count"] >= 1
    assert metrics["pmoracle_peers"] == N_NODES - 1
    # rounds after the first read only the accounts that changed (the audit above recomputed them in full)
    assert metrics['pmoracle_snapshot_reads_total{kind="incremental"}'] >= 1
    assert metrics["pmoracle_snapshot_mismatches_total"] == 0
    assert 0 < metrics["pmoracle_transmitter_balance_wei"] <= 10**22  # funded with 10,000 ETH, minus gas
    # the liquidation insurance fund is read too: empty, nothing paid (no auction on this devnet)
    assert metrics["pmoracle_insurance_fund_usd"] == 0.0 and metrics["pmoracle_insurance_paid_usd"] == 0.0


def test_rounds_are_attested_with_frost_by_default_and_the_summary_names_each_path(devnet: Devnet) -> None:
    """The devnet ran the DKG and registered the group key; the nodes attest with attestFrost (the ECDSA
    certificate only as a fallback one stage later), and the summary reads each round's path from the chain."""
    assert devnet.committee.group_key is not None
    period = devnet.options.round_period
    start = len(devnet.attested)

    def four_consecutive(d: Devnet) -> bool:
        blocks = [r.block_number for r in d.attested[start:]]
        return any(all(b + k * period in blocks for k in range(4)) for b in blocks)

    devnet.run_until(four_consecutive, 2 * ROUND_TIMEOUT, what="four consecutive attested rounds")
    summary = scheme_summary(devnet.attested)
    assert summary["rounds_frost"] + summary["rounds_ecdsa"] == len(devnet.attested)
    assert summary["schemes"] == {str(r.block_number): r.scheme for r in devnet.attested}
    assert summary["rounds_frost"] > len(devnet.attested) // 2, summary
    assert all(r.verified for r in devnet.attested)
    frost_gas = [r.gas for r in devnet.attested if r.scheme == "frost"]
    assert frost_gas and all(g > 21_000 for g in frost_gas)
    sent = {index: _metrics(devnet, index) for index in range(N_NODES)}
    assert sum(m['pmoracle_attestations_sent_total{scheme="frost"}'] for m in sent.values()) >= 1
    assert all(m["pmoracle_frost_signatures_total"] >= 1 for m in sent.values())
    assert all(m["pmoracle_frost_evidence_total"] == 0 for m in sent.values())
    assert "FROST signing on: member" in devnet.nodes[0].log_path.read_text()


def test_a_transmitter_running_dry_degrades_health_until_funded(devnet: Devnet) -> None:
    node = devnet.nodes[1]
    keystore = json.loads((node.home / "keys" / "transmitter.json").read_text())
    transmitter = to_checksum_address("0x" + keystore["address"])
    funded = int(devnet.chain.rpc("eth_getBalance", transmitter, "latest"), 16)

    def balance_reason(d: Devnet) -> bool:
        return any("transmitter balance" in r for r in (node.get("/health") or {}).get("reasons", ()))

    devnet.chain.rpc("anvil_setBalance", transmitter, hex(5 * 10**16))  # 0.05 ETH < the 0.1 ETH minimum
    devnet.run_until(balance_reason, 30.0, what="/health naming the low transmitter balance")
    assert _metrics(devnet, 1)["pmoracle_transmitter_balance_wei"] <= 5 * 10**16
    assert "below transmit.min_balance_eth" in node.log_path.read_text()
    devnet.chain.rpc("anvil_setBalance", transmitter, hex(funded))
    devnet.run_until(lambda d: not balance_reason(d), 30.0, what="/health clearing once funded")


def _metrics(devnet: Devnet, index: int) -> dict[str, float]:
    url = f"http://127.0.0.1:{devnet.nodes[index].api_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line and not line.startswith("#")}


def test_served_proof_verifies_on_chain_and_gates_a_withdrawal(devnet: Devnet) -> None:
    # Let the network settle on the latest round: no new blocks, so no newer round replaces it meanwhile.
    devnet.run_rounds(1, ROUND_TIMEOUT)
    if len(devnet.attested) < 2:  # a round before the latest one, for /v1/leaves by block
        devnet.run_rounds(1, ROUND_TIMEOUT)
    found: dict[str, Any] = {}

    def served_by_a_node(d: Devnet) -> bool:
        # With the world paused the latest attested round stops moving; a node serves the rounds it computed
        # once it has seen them attested.
        latest = d.attested[-1]
        if found.get("latest") is not latest:
            output = d.recompute(latest.block_number)
            # an account with room to withdraw (attested equity well above its initial margin) that has not traded
            # since the anchor (MarginAccounts refuses its withdrawal until a later round); the world stays paused
            ledger = d.deployment.contract(OFFLINE_W3, "MarginAccounts").functions
            leaves = sorted(output.tree.leaves, key=lambda x: x.equity - x.initial_margin, reverse=True)
            leaf = next(
                x
                for x in leaves
                if d.client.call(ledger.tradedAt(to_checksum_address(x.account))) <= latest.block_number
            )
            found.update(latest=latest, leaf=leaf, output=output)
        account = to_checksum_address(found["leaf"].account)
        for node in d.nodes:
            answer = node.get(f"/v1/margin/{account}", 0.5) or {}
            if answer.get("blockNumber") == latest.block_number:
                found["served"] = answer
                found["rows"] = node.get(f"/v1/risk-arrays/{latest.block_number}", 5.0)
                found["leaves"] = node.get(f"/v1/leaves/{latest.block_number}", 5.0)
                found["previous"] = [n.get(f"/v1/leaves/{d.attested[-2].block_number}", 5.0) for n in d.nodes]
                return True
        return False

    devnet.run_until(served_by_a_node, 60, what="a node serving the latest round's proof", pause_world=True)
    latest, leaf, answers = found["latest"], found["leaf"], found
    account = to_checksum_address(leaf.account)
    served = answers["served"]
    assert int(served["equity"]) == leaf.equity and int(served["initialMargin"]) == leaf.initial_margin
    # the same node serves the round's risk-array rows (what `dispute prove --node-api` reads): they rebuild the
    # round's riskArraysRoot
    rows = parse_rows_document(answers["rows"])
    assert answers["rows"]["blockNumber"] == latest.block_number
    assert RiskArrayTree(rows).root == answers["output"].report.risk_arrays_root
    # and every leaf of the round in one response (what the fraud prover reads): they rebuild the attested root
    assert answers["leaves"]["blockNumber"] == latest.block_number
    assert leaves_prove_root(latest.root, parse_leaves_document(answers["leaves"]))
    # the round before, no longer any node's latest attested one (/v1/margin), is still served by block
    previous = devnet.attested[-2]
    served_previous = [b for b in answers["previous"] if b and b.get("blockNumber") == previous.block_number]
    assert served_previous and all(leaves_prove_root(previous.root, parse_leaves_document(b)) for b in served_previous)
    proof = [bytes.fromhex(p[2:]) for p in served["proof"]]
    deployment = devnet.deployment
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    attested_block = devnet.client.call(
        oracle.functions.verifyMargin(account, leaf.initial_margin, leaf.maintenance_margin, leaf.equity, proof)
    )
    assert attested_block == latest.block_number
    with pytest.raises(ContractError) as forged:  # a forged equity does not verify
        devnet.client.call(
            oracle.functions.verifyMargin(account, leaf.initial_margin, leaf.maintenance_margin, leaf.equity + 1, proof)
        )
    assert forged.value.name == "InvalidMarginProof"
    _withdraw_usdc(devnet, deployment, account, leaf, proof)


def _withdraw_usdc(devnet: Devnet, deployment: Deployment, account: str, leaf: object, proof: list[bytes]) -> None:
    accounts = deployment.contract(OFFLINE_W3, "MarginAccounts")
    usdc = deployment.contracts["USDC"]
    margin = (leaf.initial_margin, leaf.maintenance_margin, leaf.equity)  # type: ignore[attr-defined]
    data = accounts.encode_abi("withdraw", args=[usdc, 10**6, margin, proof])  # 1 USDC
    before = devnet.world.rpc("eth_call", [{"to": usdc, "data": _balance_of(account)}, "latest"])
    tx = devnet.world.rpc("eth_sendTransaction", [{"from": account, "to": accounts.address, "data": data}])
    devnet.run_until(
        lambda d: d.world.rpc("eth_getTransactionReceipt", [tx]) is not None,
        10,
        what="the withdrawal",
        pause_world=True,
    )
    receipt = devnet.world.rpc("eth_getTransactionReceipt", [tx])
    assert receipt["status"] == "0x1", "the ledger refused a withdrawal backed by a valid attested proof"
    after = devnet.world.rpc("eth_call", [{"to": usdc, "data": _balance_of(account)}, "latest"])
    assert int(after, 16) - int(before, 16) == 10**6
    # the same proof with a forged equity is refused by the ledger
    forged = accounts.encode_abi("withdraw", args=[usdc, 10**6, (*margin[:2], margin[2] + 1), proof])
    call = {"from": account, "to": accounts.address, "data": forged}
    with pytest.raises(WorldError, match="execution reverted"):
        devnet.world.rpc("eth_call", [call, "latest"])


def _balance_of(account: str) -> str:
    return "0x70a08231" + "00" * 12 + account[2:].lower()


def test_kill_9_of_one_node_does_not_stop_attestation_and_restart_resumes_safely(devnet: Devnet) -> None:
    victim = devnet.nodes[1]
    before = _protection_records(devnet, 1)
    assert before, "the node signed nothing before the kill"
    victim.kill()  # SIGKILL: no clean shutdown
    devnet.run_rounds(2, ROUND_TIMEOUT)  # attestation goes on with 3 of 4 nodes
    victim.start()
    devnet.run_until(
        lambda d: (d.nodes[1].get("/health", 0.5) or {}).get("headBlock") is not None, 60, what="the restarted node"
    )
    devnet.run_rounds(2, ROUND_TIMEOUT)
    devnet.run_until(
        lambda d: len(_protection_records(d, 1)) > len(before), ROUND_TIMEOUT, what="the restarted node signing"
    )
    after = _protection_records(devnet, 1)
    # never a second digest for a round it had signed; and it signs again after the restart
    assert {key: after[key] for key in before} == before
    assert all(r.verified for r in devnet.attested)
    # node 0 ran all along: its rounds read incrementally, every 4th snapshot was checked by a full read in the
    # background, and none differed
    metrics = _metrics(devnet, 0)
    assert metrics['pmoracle_snapshot_checks_total{result="match"}'] >= 1
    assert metrics['pmoracle_snapshot_checks_total{result="mismatch"}'] == 0
    assert metrics["pmoracle_snapshot_mismatches_total"] == 0
    assert (
        metrics['pmoracle_snapshot_reads_total{kind="incremental"}']
        > metrics['pmoracle_snapshot_reads_total{kind="full"}']
    )


def test_bad_config_reports_every_problem_at_once(tmp_path: Path) -> None:
    bad = tmp_path / "node.toml"
    bad.write_text("[chain]\nrpc_urls = []\nrpc_timeout = -1\n[api]\nport = 70000\n[bogus]\nx = 1\n")
    result = subprocess.run(
        [sys.executable, "-m", "pmoracle.cli", "node", "--config", str(bad)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    for key in ("chain.rpc_urls", "chain.rpc_timeout", "api.port", "bogus"):
        assert key in result.stderr, result.stderr
