"""Byzantine scenarios: f TEST-ONLY faulty nodes sign wrong roots, equivocate, stay silent, lag or spam."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from pmoracle.devnet.cluster import Devnet, NodeProcess
from pmoracle.devnet.scenarios.common import (
    ROUND_TIMEOUT,
    ScenarioResult,
    count_evidence_rounds,
    fault_tolerance,
    faulty_nodes,
    honest_nodes,
    log_since,
    read_metrics,
    run_scenario,
)


def run_dispute_tools(devnet: Devnet, witness: NodeProcess, liar: str) -> dict[str, Any]:
    """Run ``pmoracle dispute`` as an outsider would against the live devnet; return exit codes and findings.

    ``check --latest`` recomputes the latest round from chain state; ``scan`` reads an honest node's archive and
    the chain; ``submit`` posts the oldest equivocation found (the nodes usually slashed it already, so the
    contract's refusal is the expected outcome; either way the scenario's one-slash-per-round check applies).
    """
    import contextlib
    import io

    from pmoracle.cli import main

    rpc, deployment = devnet.chain.url, str(devnet.run_dir / "deployment.json")
    evidence_dir = devnet.run_dir / "evidence"
    chain_args = ["--rpc", rpc, "--deployment", deployment]
    codes: dict[str, Any] = {}
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        codes["check"] = main(["dispute", "check", *chain_args, "--params", str(devnet.run_dir / "risk-params.toml"),
                               "--latest"])  # fmt: skip
        codes["scan"] = main(["dispute", "scan", "--archive", str(witness.home / "data"), *chain_args,
                              "--out", str(evidence_dir)])  # fmt: skip
        equivocations = sorted(evidence_dir.glob(f"equivocation-*-{liar.lower()}.json"),
                               key=lambda p: int(p.name.split("-")[1]))  # fmt: skip
        codes["equivocation_files"] = len(equivocations)
        if equivocations:
            codes["submit"] = main(["dispute", "submit", str(equivocations[0]), *chain_args,
                                    "--key-file", str(witness.home / "keys" / "transmitter.json"),
                                    "--password-file", str(devnet.run_dir / "password.txt")])  # fmt: skip
    codes["output"] = out.getvalue()
    return codes


def scenario_wrong_value(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """f nodes sign a wrong root every round: the honest root is attested, each liar is slashed, reporters paid."""
    f = fault_tolerance(n)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        liars = [node.signing_address for node in faulty_nodes(devnet)]

        def all_slashed(d: Devnet) -> bool:
            signers = {e["args"]["signer"] for e in d.events("SolverRegistry", "Slashed")}
            return all(liar in signers for liar in liars)

        devnet.run_until(all_slashed, ROUND_TIMEOUT, what="deviation evidence against every faulty node")
        first = devnet.attested[0].block_number
        result.evidence_rounds = count_evidence_rounds(devnet)
        result.extra["first_round"] = first
        # each node's fraud prover: an honest node computed every attested digest and never tries; a liar sees every
        # attested digest differ from its own and tries (unprovable: the devnet configures no dispute.peer_apis)
        result.extra["fraud_proofs"] = {
            node.index: counters_by_label(node, "pmoracle_fraud_proofs_total", "result") for node in devnet.nodes
        }

    return run_scenario("wrong-value", n, f"{f} x wrong-value (perturbed root)", run_dir, ((f, "wrong-value"),), body)


def scenario_equivocate(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """One node signs two reports per round: equivocation evidence lands within two rounds, one slash per round."""

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        liar = faulty_nodes(devnet)[0].signing_address

        def slashed(d: Devnet) -> bool:
            return any(e["args"]["signer"] == liar for e in d.events("SolverRegistry", "Slashed"))

        devnet.run_until(slashed, ROUND_TIMEOUT, what="equivocation evidence")
        # one more round, so later evidence (deviation of the same round, other nodes' copies) has had its chance
        devnet.run_rounds(1, ROUND_TIMEOUT)
        events = devnet.events("SolverRegistry", "Slashed")
        result.extra["offences"] = dict(Counter(int(e["args"]["offence"]) for e in events))  # 0 = equivocation
        result.evidence_rounds = count_evidence_rounds(devnet)
        result.extra["dispute"] = run_dispute_tools(devnet, honest_nodes(devnet)[0], liar)

    return run_scenario("equivocate", n, "1 x equivocate (two reports per round)", run_dir, ((1, "equivocate"),), body)


def scenario_silent_slow(run_dir: Path, n: int = 4, modes: tuple[str, ...] = ("silent",), rounds: int = 3
                         ) -> ScenarioResult:  # fmt: skip
    """Up to f nodes never sign or sign after the deadline: rounds keep being attested."""
    faulty = tuple((1, mode) for mode in modes)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        result.extra["seconds_for_rounds"] = devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        slow = [node for node in faulty_nodes(devnet) if node.fault == "slow"]
        if slow:  # keep going until a late signature was actually released (after its round was attested)
            devnet.run_until(lambda d: all("releasing the signature now" in log_since(n, 0) for n in slow),
                             ROUND_TIMEOUT, what="a late signature")  # fmt: skip
            result.extra["late_releases"] = sum(log_since(n, 0).count("releasing the signature now") for n in slow)

    name = "+".join(modes)
    return run_scenario(name, n, " + ".join(f"1 x {m}" for m in modes), run_dir, faulty, body)


def counters_by_label(node: NodeProcess, counter: str, label: str) -> dict[str, float]:
    """Return the node's ``counter`` (a name with ``_total``) by the value of its one label ``label``."""
    found = {}
    for name, value in read_metrics(node).items():
        match = re.fullmatch(rf'{re.escape(counter)}\{{{label}="([^"]+)"\}}', name)
        if match:
            found[match.group(1)] = value
    return found


def rss_bytes(node: NodeProcess) -> int:
    """Return the resident set size of the node process (0 when it is not running)."""
    if node.process is None or node.process.poll() is not None:
        return 0
    try:
        for line in Path(f"/proc/{node.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0


def scenario_spam(run_dir: Path, n: int = 4, rounds: int = 6) -> ScenarioResult:
    """One node floods the topic with junk: honest nodes reject it at the validator, stay live, memory bounded."""

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        honest = honest_nodes(devnet)
        devnet.run_rounds(1, ROUND_TIMEOUT)
        samples: list[list[int]] = []
        for _ in range(rounds):
            devnet.run_rounds(1, ROUND_TIMEOUT)
            samples.append([rss_bytes(node) for node in honest])
        result.extra["rss_mib"] = [[round(b / 2**20, 1) for b in s] for s in samples]
        rejected = "pmoracle_gossip_messages_rejected_total"
        result.extra["rejected"] = {node.index: counters_by_label(node, rejected, "reason") for node in honest}

    return run_scenario("spam", n, "1 x spam (malformed, oversize, non-member, bad-signature, wrong network/config)",
                        run_dir, ((1, "spam"),), body)  # fmt: skip
