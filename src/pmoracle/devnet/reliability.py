"""Survival scenarios on a real devnet (anvil, node processes, libp2p on 127.0.0.1) and the reliability table.

Each ``scenario_*`` function builds a devnet, injects a fault (TEST-ONLY :mod:`pmoracle.devnet.faults` nodes, kill -9
of processes, ...), runs the loop, stops everything and returns a :class:`ScenarioResult` with what it measured. The
end-to-end tests (tests/e2e) assert on these results; ``python -m pmoracle.devnet.reliability --out
docs/reliability.md`` runs them and writes the table.

Safety is checked the same way in every scenario: every round attested on chain (its ``RoundAttested`` event) was
recomputed independently from chain state by the devnet loop and matched, and no round was attested twice.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmoracle import numba_cache

if __name__ == "__main__":  # run as a program: numba's cache directory is chosen before the kernels are imported
    numba_cache.configure()

from pmoracle.consensus.rounds import compute_round_key, compute_transmission_schedule
from pmoracle.devnet import netlab
from pmoracle.devnet.cluster import Devnet, DevnetError, DevnetOptions, NodeProcess, build_devnet

ROUND_TIMEOUT = 60.0  # seconds one round may take under load before a scenario fails


@dataclass
class ScenarioResult:
    """What one scenario run measured."""

    name: str
    n: int
    injected: str
    rounds_attested: int = 0
    rounds_verified: int = 0
    duplicate_attestations: int = 0  # rounds with more than one RoundAttested event (must be 0)
    evidence_posted: int = 0  # successful slashing transactions (Slashed events)
    slashes: dict[str, int] = field(default_factory=dict)  # signer -> Slashed events
    max_slashes_per_round: int = 0  # the most Slashed events for one (signer, round) (must be <= 1)
    stake_before: dict[str, int] = field(default_factory=dict)
    stake_after: dict[str, int] = field(default_factory=dict)
    rewards: dict[str, int] = field(default_factory=dict)  # reporter -> wei received as slashing rewards
    recover_seconds: float | None = None  # from the fault to the next attested round (None: not applicable)
    evidence_rounds: int | None = None  # rounds between an offence and its evidence landing on chain
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        """Check if every attested round was verified and none was attested twice."""
        return self.rounds_verified == self.rounds_attested and self.duplicate_attestations == 0


def _options(n: int, run_dir: Path, faulty: tuple[tuple[int, str], ...] = (), **kw: Any) -> DevnetOptions:
    return DevnetOptions(nodes=n, accounts=kw.pop("accounts", 20), duration=None, run_dir=run_dir, quiet=True,
                         faulty=faulty, **kw)  # fmt: skip


def _quiet(_: str) -> None:
    pass


def collect_safety(devnet: Devnet, result: ScenarioResult, up_to: int | None = None) -> None:
    """Fill ``result`` with the attested rounds, their audit, and the Slashed events read from the chain.

    Only events in blocks up to ``up_to`` (all when None) count, so that figures read at that block agree.
    """
    attested = [e for e in devnet.events("MarginOracle", "RoundAttested") if up_to is None or e["blockNumber"] <= up_to]
    blocks = Counter(int(e["args"]["blockNumber"]) for e in attested)
    audited = {r.block_number: r.verified for r in devnet.attested}
    for e in attested:  # rounds attested after the loop's last look: recompute them the same way
        block = int(e["args"]["blockNumber"])
        if block not in audited:
            audited[block] = devnet.recompute(block).tree.root == bytes(e["args"]["accountsRoot"])
    result.rounds_attested = len(blocks)
    result.rounds_verified = sum(1 for b in blocks if audited[b])
    result.duplicate_attestations = sum(1 for c in blocks.values() if c > 1)
    slashed = [e for e in devnet.events("SolverRegistry", "Slashed") if up_to is None or e["blockNumber"] <= up_to]
    result.evidence_posted = len(slashed)
    per_round = Counter((e["args"]["signer"], int(e["args"]["blockNumber"])) for e in slashed)
    result.max_slashes_per_round = max(per_round.values(), default=0)
    result.slashes = dict(Counter(e["args"]["signer"] for e in slashed))
    rewards: Counter[str] = Counter()
    for e in slashed:
        rewards[e["args"]["reporter"]] += int(e["args"]["reward"])
    result.rewards = dict(rewards)


def count_evidence_rounds(devnet: Devnet) -> int:
    """Return the most later rounds attested on chain before an offence's evidence landed (0: before the next)."""
    attested = [(int(e["args"]["blockNumber"]), e["blockNumber"]) for e in devnet.events("MarginOracle",
                                                                                       "RoundAttested")]  # fmt: skip
    worst = 0
    for e in devnet.events("SolverRegistry", "Slashed"):
        offence_round, landed = int(e["args"]["blockNumber"]), e["blockNumber"]
        worst = max(worst, sum(1 for r, at in attested if r > offence_round and at < landed))
    return worst


def _run(name: str, n: int, injected: str, run_dir: Path, faulty: tuple[tuple[int, str], ...],
         body: Callable[[Devnet, ScenarioResult], None],
         after: Callable[[Devnet, ScenarioResult], None] | None = None, **kw: Any) -> ScenarioResult:  # fmt: skip
    """Build a devnet, run ``body`` on it, always stop it, and collect safety figures."""
    started = time.monotonic()
    result = ScenarioResult(name, n, injected)
    devnet = build_devnet(_options(n, run_dir, faulty, **kw), say=_quiet)
    try:
        for node in devnet.nodes:
            result.stake_before[node.signing_address] = devnet.stake_of(node.signing_address)
        body(devnet, result)
        # one block for every figure: the nodes keep running, and a slash landing between counting Slashed
        # events and reading stakes would make the two disagree
        pin = int(devnet.client.block_number())
        collect_safety(devnet, result, up_to=pin)
        devnet.scan_evidence(pin)
        result.extra["evidence_shown"] = [s.describe() for s in devnet.slashings]  # what the live table listed
        for node in devnet.nodes:
            result.stake_after[node.signing_address] = devnet.stake_of(node.signing_address, block=pin)
    finally:
        devnet.stop()
    if after is not None:  # checks of the nodes' files, once no process writes them
        after(devnet, result)
    result.wall_seconds = time.monotonic() - started
    return result


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


def faulty_nodes(devnet: Devnet) -> list[NodeProcess]:
    """Return the nodes running an injected fault."""
    return [node for node in devnet.nodes if node.fault is not None]


def honest_nodes(devnet: Devnet) -> list[NodeProcess]:
    """Return the honest nodes."""
    return [node for node in devnet.nodes if node.fault is None]


def fault_tolerance(n: int) -> int:
    """Return f = (n - 1) // 3."""
    return (n - 1) // 3


# --- Byzantine scenarios -------------------------------------------------------------------------------------------


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

    return _run("wrong-value", n, f"{f} x wrong-value (perturbed root)", run_dir, ((f, "wrong-value"),), body)


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

    return _run("equivocate", n, "1 x equivocate (two reports per round)", run_dir, ((1, "equivocate"),), body)


def scenario_silent_slow(run_dir: Path, n: int = 4, modes: tuple[str, ...] = ("silent",), rounds: int = 3
                         ) -> ScenarioResult:  # fmt: skip
    """Up to f nodes never sign or sign after the deadline: rounds keep being attested."""
    faulty = tuple((1, mode) for mode in modes)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        result.extra["seconds_for_rounds"] = devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        slow = [node for node in faulty_nodes(devnet) if node.fault == "slow"]
        if slow:  # keep going until a late signature was actually released (after its round was attested)
            devnet.run_until(lambda d: all("releasing the signature now" in _log_since(n, 0) for n in slow),
                             ROUND_TIMEOUT, what="a late signature")  # fmt: skip
            result.extra["late_releases"] = sum(_log_since(n, 0).count("releasing the signature now") for n in slow)

    name = "+".join(modes)
    return _run(name, n, " + ".join(f"1 x {m}" for m in modes), run_dir, faulty, body)


def read_metrics(node: NodeProcess) -> dict[str, float]:
    """Return the node's /metrics samples as {"name{labels}": value} (empty when it does not answer)."""
    text = node.get_text("/metrics", timeout=2.0) or ""
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                samples[name] = float(value)
            except ValueError:
                continue
    return samples


def rejections_by_reason(node: NodeProcess) -> dict[str, float]:
    """Return the node's ``gossip_messages_rejected`` counters by reason."""
    found = {}
    for name, value in read_metrics(node).items():
        match = re.fullmatch(r'pmoracle_gossip_messages_rejected_total\{reason="([^"]+)"\}', name)
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
        result.extra["rejected"] = {node.index: rejections_by_reason(node) for node in honest}

    return _run("spam", n, "1 x spam (malformed, oversize, non-member, bad-signature, wrong network/config)",
                run_dir, ((1, "spam"),), body)  # fmt: skip


# --- crash scenarios -----------------------------------------------------------------------------------------------


def wait_round_in_progress(devnet: Devnet) -> int:
    """Run the loop until an anchor block has just become final and is not attested yet; return the anchor."""
    period, depth = devnet.options.round_period, devnet.options.finality_depth
    state: dict[str, int] = {}

    def in_progress(d: Devnet) -> bool:
        head = int(d.client.block_number())
        anchor = head - depth
        last = d.attested[-1].block_number if d.attested else 0
        if anchor > 0 and anchor % period == 0 and anchor > last:
            state["anchor"] = anchor
            return True
        return False

    devnet.run_until(in_progress, ROUND_TIMEOUT, what="a round in progress")
    return state["anchor"]


def restart(devnet: Devnet, node: NodeProcess) -> None:
    """Start a killed node again (same data directory, keys and ports) and wait for its API."""
    node.start()
    devnet.run_until(lambda d: node.get("/health", timeout=0.5) is not None, ROUND_TIMEOUT, what=f"node {node.index}")


def protection_records(node: NodeProcess) -> dict[int, set[bytes]]:
    """Return round block -> digests recorded in the node's slashing-protection SQLite file."""
    from pmoracle.node.datadir import protection_db_path
    from pmoracle.storage.protection_db import ProtectionDB

    db = ProtectionDB(protection_db_path(node.home / "data"))
    try:
        out: dict[int, set[bytes]] = {}
        for (_, block), digest in db.iter_records():
            out.setdefault(block, set()).add(digest)
        return out
    finally:
        db.close()


def archived_digests(node: NodeProcess, signer: bytes) -> dict[int, set[bytes]]:
    """Return round block -> digests of ``signer``'s reports in ``node``'s dispute archive."""
    from pmoracle.node.datadir import archive_db_path
    from pmoracle.storage.archive import ReportArchive

    archive = ReportArchive(archive_db_path(node.home / "data"))
    try:
        out: dict[int, set[bytes]] = {}
        for item in archive.get_by_signer(signer):
            out.setdefault(item.signed.report.block_number, set()).add(item.digest)
        return out
    finally:
        archive.close()


def scheduled_transmitter(devnet: Devnet, anchor: int) -> NodeProcess:
    """Return the node in position 0 of ``anchor``'s transmission schedule."""
    key = compute_round_key(devnet.committee.digest(), anchor)
    first = compute_transmission_schedule(key, devnet.committee)[0]
    return next(node for node in devnet.nodes if bytes.fromhex(node.signing_address[2:]) == first)


def scenario_crash(run_dir: Path, n: int = 4, down_rounds: int = 1) -> ScenarioResult:
    """kill -9 of a node mid-round, of the round's scheduled transmitter, and of f nodes at once; restart each.

    Measures the time from each kill to the next attested round; afterwards checks that no node's
    slashing-protection store and no archive holds two digests for one round of one signer.
    """
    f = fault_tolerance(n)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        recoveries: list[float] = []
        restarted: list[NodeProcess] = []
        victims_of: list[tuple[str, Callable[[int], list[NodeProcess]]]] = [
            ("mid-round", lambda anchor: [devnet.nodes[1]]),
            ("transmitter", lambda anchor: [scheduled_transmitter(devnet, anchor)]),
            (f"{f} at once", lambda anchor: devnet.nodes[n - f :]),
        ]
        for label, pick in victims_of:
            anchor = wait_round_in_progress(devnet)
            victims = pick(anchor)
            killed_at = time.monotonic()
            for node in victims:
                node.kill(signal.SIGKILL)
            seen = len(devnet.attested)
            devnet.run_until(lambda d, seen=seen: len(d.attested) > seen, ROUND_TIMEOUT, what=f"a round after {label}")
            recoveries.append(time.monotonic() - killed_at)
            killed = {"what": label, "nodes": [v.index for v in victims], "anchor": anchor,
                      "next_attested": devnet.attested[-1].block_number}  # fmt: skip
            result.extra.setdefault("killed", []).append(killed)
            devnet.run_rounds(down_rounds, ROUND_TIMEOUT * down_rounds)
            for node in victims:
                restart(devnet, node)
                restarted.append(node)
        devnet.run_rounds(2, ROUND_TIMEOUT * 2)

        def restarted_sign(d: Devnet) -> bool:
            return all(read_metrics(node).get("pmoracle_rounds_signed_total", 0) > 0 for node in restarted)

        devnet.run_until(restarted_sign, ROUND_TIMEOUT * 2, what="every restarted node signing again")
        result.recover_seconds = max(recoveries)
        result.extra["recoveries"] = [round(r, 2) for r in recoveries]
        result.extra["restarted"] = sorted({node.index for node in restarted})
        result.extra["gaps"] = [
            (b.block_number - a.block_number) // devnet.options.round_period
            for a, b in zip(devnet.attested, devnet.attested[1:], strict=False)
        ]

    def after(devnet: Devnet, result: ScenarioResult) -> None:
        result.extra["double_digests"] = check_single_digest(devnet)
        result.extra["signed_after_last_kill"] = {
            node.index: max(protection_records(node), default=0) > result.extra["killed"][-1]["anchor"]
            for node in devnet.nodes
        }

    return _run("crash", n, f"kill -9: 1 node mid-round, the transmitter, {f} at once; restart each", run_dir, (),
                body, after)  # fmt: skip


def check_single_digest(devnet: Devnet) -> dict[str, int]:
    """Return {"protection": rounds with two digests in any store, "archive": ... in any archive} (stopped devnet)."""
    bad = {"protection": 0, "archive": 0}
    for node in devnet.nodes:
        bad["protection"] += sum(1 for digests in protection_records(node).values() if len(digests) > 1)
        for other in devnet.nodes:
            signer = bytes.fromhex(node.signing_address[2:])
            bad["archive"] += sum(1 for d in archived_digests(other, signer).values() if len(d) > 1)
    return bad


# --- partition -----------------------------------------------------------------------------------------------------


def _log_since(node: NodeProcess, offset: int) -> str:
    with open(node.log_path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def _signer_bits(devnet: Devnet, nodes: list[NodeProcess]) -> int:
    return sum(1 << devnet.committee.index_of(bytes.fromhex(node.signing_address[2:])) for node in nodes)


def _during_cut(
    devnet: Devnet, minority: list[NodeProcess], log_offsets: dict[int, int], attested: list[Any]
) -> dict[str, int]:
    """Return what the minority achieved during a cut: rounds attested with its signature, certificates it formed
    and attestations it sent (from its log since ``log_offsets``)."""
    bits = _signer_bits(devnet, minority)
    logs = [_log_since(m, log_offsets[m.index]) for m in minority]
    return {
        "with_minority_signature": sum(1 for e in attested if int(e["args"]["signerBitmap"]) & bits),
        "minority_certificates": sum(log.count("quorum certificate formed") for log in logs),
        "minority_transmissions": sum(log.count("attested on chain in tx") for log in logs),
    }


def scenario_partition(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority, then heal: in the kernel where the machine allows it, else by restarts.

    With unprivileged user namespaces (``netlab.unavailable_reason()`` is None) the scenario runs in a child
    process inside its own namespaces, each node in a network namespace of its own, and the cut is a routing rule
    that refuses every packet between the groups (:func:`scenario_partition_netns`). Without them it falls back to
    :func:`scenario_partition_by_restart`, and ``extra["partition"]["why_not_netns"]`` says why.
    """
    if netlab.inside():
        return scenario_partition_netns(run_dir, n, rounds)
    reason = netlab.unavailable_reason()
    if reason is not None:
        result = scenario_partition_by_restart(run_dir, n, rounds)
        result.extra["partition"]["why_not_netns"] = reason
        return result
    run_dir.mkdir(parents=True, exist_ok=True)
    out = run_dir / "partition-result.json"
    args = ["pmoracle.devnet.reliability", "partition-inside", str(n), str(rounds), str(run_dir), str(out)]
    done = netlab.run_inside(args, timeout=ROUND_TIMEOUT * (rounds + 6))
    if done.returncode != 0 or not out.exists():
        output = (done.stdout + done.stderr).decode(errors="replace")[-4000:]
        raise DevnetError(f"the partition scenario failed in its namespaces (exit {done.returncode}):\n{output}")
    return ScenarioResult(**json.loads(out.read_text()))


def scenario_partition_netns(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority in the kernel (``NetLab.cut``), then heal (run inside ``netlab.run_inside``).

    Measured during the cut, from 2 s after it (packets already delivered are not the cut's): the rounds the
    majority attested, the reports the minority received (none when the minority is one node: nothing reaches it),
    and the certificates and transmissions of the minority (none: it is short of a quorum).
    """
    f = fault_tolerance(n)

    def messages_in(node: NodeProcess) -> float:
        return read_metrics(node).get("pmoracle_gossip_messages_in_total", 0.0)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        assert devnet.netlab is not None
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        majority, minority = devnet.nodes[: n - f], devnet.nodes[n - f :]
        devnet.netlab.cut([[m.index for m in majority], [m.index for m in minority]])
        settle = time.monotonic() + 2.0
        devnet.run_until(lambda d: time.monotonic() > settle, 10.0, what="the cut to settle")
        cut_block = int(devnet.client.block_number())
        before = {m.index: messages_in(m) for m in minority}
        offsets = {node.index: node.log_path.stat().st_size for node in minority}
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        during = devnet.events("MarginOracle", "RoundAttested", from_block=cut_block)
        received = {m.index: messages_in(m) - before[m.index] for m in minority}
        result.extra["partition"] = {
            "method": "network namespaces; ip rule prohibit between the groups",
            "minority": [m.index for m in minority],
            "rounds_attested": len(during),
            "minority_messages_in": sum(received.values()),
            **_during_cut(devnet, minority, offsets, during),
        }
        after_cut = {m.index: messages_in(m) for m in minority}
        devnet.netlab.heal()
        healed_at = time.monotonic()

        def rejoined(d: Devnet) -> bool:
            return all(messages_in(m) > after_cut[m.index] for m in minority)

        devnet.run_until(rejoined, ROUND_TIMEOUT * 2, what="the minority receiving the majority's reports")
        result.recover_seconds = time.monotonic() - healed_at

        def signed_by_minority(d: Devnet) -> bool:
            healed = d.events("MarginOracle", "RoundAttested", from_block=cut_block)
            return any(int(e["args"]["signerBitmap"]) & _signer_bits(d, minority) for e in healed)

        result.extra["after_heal_seconds_to_a_minority_signature"] = round(
            devnet.run_until(signed_by_minority, ROUND_TIMEOUT * 3, what="a round the minority signed again"), 1
        )

    return _run("partition", n, f"{f} node(s) cut off in the kernel (own network namespaces), then healed",
                run_dir, (), body, private_network=True)  # fmt: skip


def scenario_partition_by_restart(run_dir: Path, n: int = 4, rounds: int = 3) -> ScenarioResult:
    """Cut f nodes off the majority without network namespaces, then heal.

    The cut: each minority node restarts on a new libp2p port (the registered on-chain address goes dead, so the
    majority cannot dial it) in the TEST-ONLY ``partitioned`` mode, which dials only its bootstrap list (the other
    minority nodes' new addresses), never the on-chain members. Healing restarts them normally on their old ports.
    """
    from pmoracle.chain.devchain import free_port
    from pmoracle.devnet.cluster import _node_secret
    from pmoracle.node.keys import compute_peer_id

    f = fault_tolerance(n)

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        minority = devnet.nodes[n - f :]
        originals = {node.index: (node.home / "node.toml").read_text() for node in minority}
        ports = {node.index: free_port() for node in minority}
        peer_ids = {node.index: compute_peer_id(_node_secret(devnet.options.seed, node.index, "p2p"))[0]
                    for node in minority}  # fmt: skip
        for node in minority:
            node.kill(signal.SIGTERM)
        for node in minority:
            others = [
                f'"/ip4/127.0.0.1/tcp/{ports[o.index]}/p2p/{peer_ids[o.index]}"' for o in minority if o is not node
            ]
            text = originals[node.index].replace(
                f'/tcp/{node.p2p_port}"', f'/tcp/{ports[node.index]}"\nbootstrap = [{", ".join(others)}]'
            )
            (node.home / "node.toml").write_text(text)
            node.fault = "partitioned"
            restart(devnet, node)
        offsets = {node.index: node.log_path.stat().st_size for node in minority}
        cut_block = int(devnet.client.block_number())
        devnet.run_rounds(rounds, ROUND_TIMEOUT * rounds)
        during = devnet.events("MarginOracle", "RoundAttested", from_block=cut_block)
        minority_peers = max((m.get("/health", timeout=1.0) or {}).get("peers", -1) for m in minority)
        result.extra["partition"] = {
            "method": "restart on new ports, no on-chain discovery",
            "minority": [m.index for m in minority],
            "rounds_attested": len(during),
            "minority_peers": minority_peers,
            **_during_cut(devnet, minority, offsets, during),
        }
        # heal
        for node in minority:
            node.kill(signal.SIGTERM)
            (node.home / "node.toml").write_text(originals[node.index])
            node.fault = None
        healed_at = time.monotonic()
        for node in minority:
            restart(devnet, node)

        def rejoined(d: Devnet) -> bool:
            return all(read_metrics(m).get("pmoracle_gossip_messages_in_total", 0) > 0 for m in minority)

        devnet.run_until(rejoined, ROUND_TIMEOUT * 2, what="the minority receiving the majority's reports")
        result.recover_seconds = time.monotonic() - healed_at
        result.extra["after_heal_seconds_for_2_rounds"] = round(devnet.run_rounds(2, ROUND_TIMEOUT * 2), 1)

    return _run("partition", n, f"{f} node(s) cut off (new port, no on-chain discovery), then healed", run_dir, (),
                body)  # fmt: skip


# --- reorgs -------------------------------------------------------------------------------------------------------


def mine_blocks(devnet: Devnet, count: int, interval: float = 0.4) -> None:
    """Mine ``count`` empty blocks, ``interval`` seconds apart, running the devnet loop in between (world paused)."""
    for _ in range(count):
        devnet.chain.rpc("evm_mine")
        until = time.monotonic() + interval
        while time.monotonic() < until:
            devnet.advance()
            time.sleep(0.02)


def mine_until(devnet: Devnet, done: Callable[[Devnet], bool], timeout: float, what: str) -> None:
    """Mine empty blocks until ``done(devnet)`` holds."""
    started = time.monotonic()
    while not done(devnet):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out waiting for {what}; logs in {devnet.run_dir}")
        mine_blocks(devnet, 1)


def block_hash(devnet: Devnet, number: int) -> bytes:
    """Return the canonical hash of block ``number``."""
    return devnet.client.get_block(number).hash


def signed_hashes(devnet: Devnet) -> dict[int, set[bytes]]:
    """Return round block -> block hashes of every signed report in every node's archive."""
    from pmoracle.node.datadir import archive_db_path
    from pmoracle.storage.archive import ReportArchive

    out: dict[int, set[bytes]] = {}
    for node in devnet.nodes:
        archive = ReportArchive(archive_db_path(node.home / "data"))
        try:
            for member in devnet.committee.members:
                for item in archive.get_by_signer(member):
                    out.setdefault(item.signed.report.block_number, set()).add(item.signed.report.block_hash)
        finally:
            archive.close()
    return out


def scenario_reorg(run_dir: Path, n: int = 4) -> ScenarioResult:
    """``anvil_reorg`` shallower than the finality depth around an anchor, then deeper than it after attestation.

    Shallow: nobody signs the replaced hash of a not-yet-final anchor; the round is attested with the new hash.
    Deep: the attested round and its attestation are reorged out; re-submitting its certificate reverts with
    BlockHashMismatch; slashing protection stops anyone signing the round again with the new hash; later rounds
    resume. Afterwards every signed report of a later round carries a canonical hash.
    """
    from eth_account import Account

    from pmoracle.chain.errors import ContractError
    from pmoracle.chain.transmitter import Transmitter
    from pmoracle.consensus.certificate import build_certificate
    from pmoracle.node.daemon import OFFLINE_W3

    period, depth = 5, 2

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        devnet.mine_blocks = False  # the world's own transactions must not be reorged out from under it
        # shallow: reorg the anchor while it is one block short of final
        head = int(devnet.client.block_number())
        anchor = (head // period + 2) * period
        mine_until(devnet, lambda d: int(d.client.block_number()) >= anchor + depth - 1, ROUND_TIMEOUT, "anchor")
        old_hash = block_hash(devnet, anchor)
        devnet.chain.rpc("anvil_reorg", depth, [])
        shallow_replaced = block_hash(devnet, anchor) != old_hash
        mine_until(devnet, lambda d: bool(d.attested) and d.attested[-1].block_number >= anchor, ROUND_TIMEOUT,
                   "the shallow-reorged round")  # fmt: skip
        shallow = signed_hashes(devnet).get(anchor, set())
        result.extra["shallow"] = {"depth": depth, "anchor": anchor, "hash_replaced": shallow_replaced,
                                   "signed_old_hash": old_hash in shallow,
                                   "attested": attested_digest(devnet, anchor) is not None}  # fmt: skip
        # deep: let a round be attested, then replace it and its attestation
        target = (int(devnet.client.block_number()) // period + 1) * period
        mine_until(devnet, lambda d: attested_digest(d, target) is not None, ROUND_TIMEOUT, "the round to reorg")
        signatures = {}
        report = None
        from pmoracle.node.datadir import archive_db_path
        from pmoracle.storage.archive import ReportArchive

        archive = ReportArchive(archive_db_path(devnet.nodes[0].home / "data"))
        try:
            for item in archive.get_by_round((devnet.committee.digest(), target)):
                report = item.signed.report
                signatures[item.signed.signer] = item.signed.signature
        finally:
            archive.close()
        mine_blocks(devnet, 1)
        head = int(devnet.client.block_number())
        deep = head - target + 1
        old_hash = block_hash(devnet, target)
        devnet.chain.rpc("anvil_reorg", deep, [])
        mine_blocks(devnet, 1)
        outcome = "accepted"
        if report is not None and len(signatures) >= devnet.committee.quorum:
            cert = build_certificate(devnet.committee, report, signatures)
            key = "0x" + bytes(31).hex() + "77"
            devnet.chain.rpc("anvil_setBalance", Account.from_key(key).address, hex(10**20))
            oracle = devnet.deployment.contract(OFFLINE_W3, "MarginOracle")
            fn = oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
            try:
                Transmitter(devnet.client, key).transact_call(fn)
            except ContractError as exc:
                outcome = exc.name
        else:
            outcome = f"no certificate in the archive ({len(signatures)} signatures)"
        reorged_at = time.monotonic()
        seen = len(devnet.attested)
        mine_until(devnet, lambda d: len(d.attested) > seen, ROUND_TIMEOUT * 2, "a round after the deep reorg")
        result.recover_seconds = time.monotonic() - reorged_at
        mine_until(devnet, lambda d: len(d.attested) > seen + 1, ROUND_TIMEOUT * 2, "a second round")
        hashes = signed_hashes(devnet)
        later_bad = sum(1 for b, hs in hashes.items() if b > target for h in hs if h != block_hash(devnet, b))
        result.extra["deep"] = {"depth": deep, "anchor": target, "old_cert_attest": outcome,
                                "reattested": attested_digest(devnet, target) is not None,
                                "signed_new_hash": block_hash(devnet, target) in hashes.get(target, set()),
                                "signed_old_hash": old_hash in hashes.get(target, set()),
                                "later_rounds_noncanonical_signatures": later_bad,
                                "next_attested": devnet.attested[seen].block_number}  # fmt: skip

    return _run("reorg", n, "anvil_reorg depth 2 (= finality) before an anchor is final; depth >2 after attestation",
                run_dir, (), body)  # fmt: skip


# --- RPC faults ----------------------------------------------------------------------------------------------------


class RpcFaultProxy:
    """A 127.0.0.1 JSON-RPC proxy in front of anvil that can fail on demand (a test tool).

    Modes: ``ok`` forwards; ``error`` answers every request with JSON-RPC error -32603; ``hang`` holds each request
    ``hang_seconds`` and closes without an answer; ``lag`` serves a head ``lag`` blocks behind (eth_blockNumber and
    eth_getBlockByNumber("latest")) and forwards the rest.
    """

    def __init__(self, upstream: str, *, lag: int = 8, hang_seconds: float = 3.0) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.upstream = upstream
        self.mode = "ok"
        self.lag = lag
        self.hang_seconds = hang_seconds
        self.requests: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                answer = proxy.handle(body)
                if answer is None:
                    self.close_connection = True
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _forward(self, payload: Any) -> Any:
        import json
        import urllib.request

        request = urllib.request.Request(self.upstream, data=json.dumps(payload).encode(),
                                         headers={"Content-Type": "application/json"})  # fmt: skip
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def handle(self, body: bytes) -> bytes | None:
        """Return the answer to one HTTP request body in the current mode (None: no answer)."""
        import json

        mode = self.mode
        self.requests[mode] += 1
        payload = json.loads(body)
        if mode == "hang":
            time.sleep(self.hang_seconds)
            return None
        if mode == "error" and isinstance(payload, dict):
            error = {"code": -32603, "message": "injected internal error"}
            return json.dumps({"jsonrpc": "2.0", "id": payload.get("id"), "error": error}).encode()
        if mode == "lag" and isinstance(payload, dict):
            method, params = payload.get("method"), payload.get("params") or []
            if method == "eth_blockNumber":
                real = int(self._forward(payload)["result"], 16)
                return json.dumps({"jsonrpc": "2.0", "id": payload.get("id"),
                                   "result": hex(max(0, real - self.lag))}).encode()  # fmt: skip
            if method == "eth_getBlockByNumber" and params and params[0] == "latest":
                real = int(self._forward({"jsonrpc": "2.0", "id": 0, "method": "eth_blockNumber"})["result"], 16)
                payload = {**payload, "params": [hex(max(0, real - self.lag)), *params[1:]]}
        return json.dumps(self._forward(payload)).encode()

    def close(self) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()


def attested_digest(devnet: Devnet, block: int) -> bytes | None:
    """Return the report digest attested on chain for round ``block`` (None when it is not attested)."""
    from pmoracle.node.daemon import OFFLINE_W3

    oracle = devnet.deployment.contract(OFFLINE_W3, "MarginOracle")
    from pmoracle.chain.errors import ContractError

    try:
        config_digest, digest = devnet.client.call(oracle.functions.roundDigests(block), "latest")
    except ContractError as exc:
        if exc.name == "RoundNotFound":
            return None
        raise
    return None if bytes(config_digest) == bytes(32) else bytes(digest)


def reconfigure_rpc(devnet: Devnet, node: NodeProcess, urls: list[str], timeout: float, probe: float = 2.0) -> None:
    """Stop ``node``, point its config at ``urls`` (in preference order) with ``timeout``, and start it again."""
    node.kill(signal.SIGTERM)
    path = node.home / "node.toml"
    text = path.read_text()
    text = re.sub(r"rpc_urls = \[.*\]", "rpc_urls = [" + ", ".join(f'"{u}"' for u in urls) + "]", text)
    text = re.sub(r"probe_interval = .*\n", "", text)
    text = re.sub(r"rpc_timeout = .*", f"rpc_timeout = {timeout}\nprobe_interval = {probe}", text)
    path.write_text(text)
    restart(devnet, node)


def scenario_rpc_faults(run_dir: Path, n: int = 4, phase_rounds: int = 2, phase_seconds: float = 8.0
                        ) -> ScenarioResult:  # fmt: skip
    """Node 0's primary RPC (a proxy) returns errors, hangs, lags, then heals; anvil is its fallback URL.

    Measures, per phase, the rounds node 0 signed, the RPC errors it counted for the proxy, the requests it sent to
    the proxy and the proxy's lag at its last endpoint probe (every 2 s); afterwards checks that every digest in node
    0's slashing-protection store for an attested round is the attested one.
    """

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        node = devnet.nodes[0]
        proxy = RpcFaultProxy(devnet.chain.url)
        try:
            reconfigure_rpc(devnet, node, [proxy.url, devnet.chain.url], timeout=1.0)
            devnet.run_rounds(1, ROUND_TIMEOUT)
            phases = {}
            for mode in ("error", "hang", "lag", "ok"):
                proxy.mode = mode
                before = read_metrics(node)
                started = time.monotonic()
                seen = len(devnet.attested)
                served_before = proxy.requests[mode]
                devnet.run_until(lambda d, t=started, k=seen: time.monotonic() - t >= phase_seconds
                                 and len(d.attested) >= k + phase_rounds, ROUND_TIMEOUT * phase_rounds,
                                 what=f"{phase_rounds} rounds in the {mode} phase")  # fmt: skip
                after = read_metrics(node)
                served = proxy.requests[mode] - served_before
                host = proxy.url.split("//")[1]
                errors = sum(v - before.get(k, 0) for k, v in after.items()
                             if k.startswith("pmoracle_rpc_errors_total") and host in k)  # fmt: skip
                phases[mode] = {
                    "signed": after.get("pmoracle_rounds_signed_total", 0)
                    - before.get("pmoracle_rounds_signed_total", 0),
                    "computed": after.get("pmoracle_rounds_computed_total", 0)
                    - before.get("pmoracle_rounds_computed_total", 0),
                    "proxy_errors": errors,
                    "seconds": round(time.monotonic() - started, 1),
                    "rounds_attested": len(devnet.attested) - seen,
                    # requests node 0 sent to the proxy in this phase, and the proxy's lag at node 0's last probe
                    "proxy_requests": served,
                    "proxy_lag_probed": max((v for k, v in after.items()
                                             if k.startswith("pmoracle_rpc_endpoint_lag_blocks") and host in k),
                                            default=None),
                }  # fmt: skip
            if phases["ok"]["signed"] == 0:  # recovery: wait for node 0 to sign again on its primary
                signed = read_metrics(node).get("pmoracle_rounds_signed_total", 0)
                devnet.run_until(lambda d: read_metrics(node).get("pmoracle_rounds_signed_total", 0) > signed,
                                 ROUND_TIMEOUT * 2, what="node 0 signing after the proxy healed")  # fmt: skip
                phases["ok"]["signed"] = 1
            result.extra["phases"] = phases
            result.extra["proxy_requests"] = dict(proxy.requests)
        finally:
            proxy.close()

    def check_digests(devnet: Devnet, result: ScenarioResult) -> None:
        wrong = 0
        for block, digests in protection_records(devnet.nodes[0]).items():
            attested = attested_digest(devnet, block)
            wrong += sum(1 for d in digests if attested is not None and d != attested)
        result.extra["wrong_digests"] = wrong
        result.extra["signed_rounds_node0"] = len(protection_records(devnet.nodes[0]))

    def body_and_check(devnet: Devnet, result: ScenarioResult) -> None:
        body(devnet, result)
        check_digests(devnet, result)

    return _run("rpc-faults", n, "node 0: primary RPC errors, hangs (1 s timeout), lags 8 blocks; anvil fallback",
                run_dir, (), body_and_check)  # fmt: skip


# --- the table -----------------------------------------------------------------------------------------------------


def summarize(r: ScenarioResult) -> str:
    """Return the scenario-specific figures of ``r`` in one table cell."""
    x = r.extra
    parts = []
    if r.rewards:
        parts.append(f"reporter rewards {sum(r.rewards.values()) / 10**18:g} ETH")
    if r.stake_after and r.slashes:
        parts.append("stake after " + ", ".join(f"{r.stake_after[s] / 10**18:g}" for s in r.slashes) + " ETH of 10")
    if "late_releases" in x:
        parts.append(f"{x['late_releases']} late signature(s) released after attestation")
    if "killed" in x:
        parts.append("recoveries " + "/".join(f"{v:g}" for v in x["recoveries"]) + " s; two digests for one round: "
                     f"{sum(x['double_digests'].values())}")  # fmt: skip
    if "rejected" in x:
        totals: Counter[str] = Counter()
        for reasons in x["rejected"].values():
            totals.update(reasons)
        parts.append("rejected " + ", ".join(f"{k} {int(v)}" for k, v in sorted(totals.items())))
        parts.append(f"RSS first/last {x['rss_mib'][0]}/{x['rss_mib'][-1]} MiB")
    if "phases" in x:
        parts.append("node 0 signed/computed per phase " + ", ".join(
            f"{m} {int(p['signed'])}/{int(p['computed'])}" for m, p in x["phases"].items()) +
            f"; wrong digests {x['wrong_digests']}")  # fmt: skip
        parts.append("requests to the primary per phase " + ", ".join(
            f"{m} {p['proxy_requests']}" for m, p in x["phases"].items()) + "; its lag at the last probe " +
            ", ".join(f"{m} {'-' if p['proxy_lag_probed'] is None else int(p['proxy_lag_probed'])}"
                      for m, p in x["phases"].items()))  # fmt: skip
    if "deep" in x:
        sh, dp = x["shallow"], x["deep"]
        parts.append(f"shallow: old hash signed {sh['signed_old_hash']}, attested {sh['attested']}; deep (depth "
                     f"{dp['depth']}): old certificate -> {dp['old_cert_attest']}, re-signed {dp['signed_new_hash']}, "
                     f"next round {dp['next_attested']}")  # fmt: skip
    if "partition" in x:
        p = x["partition"]
        if "minority_messages_in" in p:  # cut in the kernel
            seen = f"reports reaching the minority {p['minority_messages_in']:.0f}"
        else:
            seen = f"minority peers {p['minority_peers']}"
        parts.append(f"during the cut: {p['rounds_attested']} rounds by the majority, {seen}, minority certificates "
                     f"{p['minority_certificates']}")  # fmt: skip
        if "after_heal_seconds_to_a_minority_signature" in x:
            parts.append(f"a round signed by the minority {x['after_heal_seconds_to_a_minority_signature']} s "
                         "after the heal")  # fmt: skip
    return "; ".join(parts) or "-"


def format_table(results: list[ScenarioResult]) -> str:
    """Return the Markdown reliability table."""
    lines = [
        "| scenario | n | injected | rounds attested (verified) | duplicate attestations | evidence posted "
        "| slashes | time to recover | wall time | measured details |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        slashes = ", ".join(f"{s[:8]}..: {c}" for s, c in r.slashes.items()) or "0"
        recover = f"{r.recover_seconds:.1f} s" if r.recover_seconds is not None else "-"
        if r.evidence_rounds is not None:
            recover += f" (evidence within {r.evidence_rounds} round(s))"
        lines.append(
            f"| {r.name} | {r.n} | {r.injected} | {r.rounds_attested} ({r.rounds_verified}) | "
            f"{r.duplicate_attestations} | {r.evidence_posted} | {slashes} | {recover} | {r.wall_seconds:.0f} s | "
            f"{summarize(r)} |"
        )
    return "\n".join(lines)


SCENARIOS: dict[str, Callable[[Path], ScenarioResult]] = {
    "wrong-value-4": lambda d: scenario_wrong_value(d, 4),
    "equivocate-4": lambda d: scenario_equivocate(d, 4),
    "silent-4": lambda d: scenario_silent_slow(d, 4, ("silent",)),
    "slow-4": lambda d: scenario_silent_slow(d, 4, ("slow",)),
    "crash-4": lambda d: scenario_crash(d, 4),
    "rpc-faults-4": lambda d: scenario_rpc_faults(d, 4),
    "reorg-4": lambda d: scenario_reorg(d, 4),
    "partition-4": lambda d: scenario_partition(d, 4),
    "spam-4": lambda d: scenario_spam(d, 4),
    "wrong-value-7": lambda d: scenario_wrong_value(d, 7),
    "silent+slow-7": lambda d: scenario_silent_slow(d, 7, ("silent", "slow")),
    "partition-7": lambda d: scenario_partition(d, 7),
}


def _partition_inside(argv: list[str]) -> int:
    # `partition-inside N ROUNDS RUN_DIR OUT`: scenario_partition's child, inside netlab.run_inside
    n, rounds, run_dir, out = int(argv[0]), int(argv[1]), Path(argv[2]), Path(argv[3])
    result = scenario_partition_netns(run_dir, n, rounds)
    out.write_text(json.dumps(dataclasses.asdict(result)))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the scenarios and write the reliability table (``--out``); exit 1 if any scenario was unsafe."""
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["partition-inside"]:
        return _partition_inside(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m pmoracle.devnet.reliability", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("docs/reliability.md"))
    parser.add_argument("--only", action="append", default=[], choices=sorted(SCENARIOS), help="repeatable")
    parser.add_argument("--run-dir", type=Path, default=Path("runs/reliability"))
    parser.add_argument("--retries", type=int, default=1, help="re-runs of a scenario that failed (reported)")
    args = parser.parse_args(argv)
    results = []
    failures = []
    retried = []
    for name in args.only or list(SCENARIOS):
        result = None
        for attempt in range(1 + args.retries):
            print(f"reliability: running {name} ...", flush=True)
            try:
                result = SCENARIOS[name](args.run_dir / (name if attempt == 0 else f"{name}-retry{attempt}"))
                break
            except Exception as exc:  # a scenario that fails is reported (and retried), the others still run
                print(f"reliability: {name} FAILED: {exc}", flush=True)
                if attempt < args.retries:
                    retried.append(f"{name}: first attempt failed: {exc}")
                else:
                    failures.append(f"{name}: {exc}")
        if result is None:
            continue
        results.append(result)
        print(format_table([result]).splitlines()[-1], flush=True)
    text = HEADER + format_table(results) + "\n"
    if retried:
        text += "\nScenarios re-run after a failed attempt (the row above is the re-run):\n\n"
        text += "".join(f"- {f}\n" for f in retried)
    if failures:
        text += "\nScenarios that failed in this run:\n\n" + "".join(f"- {f}\n" for f in failures)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(f"reliability: wrote {args.out}")
    return 0 if not failures and all(r.safe for r in results) else 1


HEADER = """# Reliability: survival scenarios on a real devnet

Produced by `PYTHONPATH=src python -m pmoracle.devnet.reliability --out docs/reliability.md` (scenario code in
`src/pmoracle/devnet/reliability.py`, asserted by `tests/e2e/`). Each row is one run: anvil, `n` real node processes
talking libp2p on 127.0.0.1 (partition: each in a network namespace of its own), 20 trader accounts, a round
every 5 blocks (1 block/s), finality depth 2, stage delay 1 s. Faulty nodes run the TEST-ONLY
`python -m pmoracle.devnet.faults --mode MODE` entry point.

- *rounds attested (verified)*: `RoundAttested` events, and how many of them the devnet recomputed independently
  from chain state with the same root. *duplicate attestations*: rounds attested more than once (must be 0).
- *evidence posted*: successful slashing transactions (`Slashed` events); *slashes*: per signer.
- *time to recover*: crash: the longest time from a `kill -9` to the next attested round; partition: from the
  heal to the minority receiving the majority's reports again; reorg: from the deep reorg to the next attested
  round; Byzantine rows: how many later rounds were attested before the evidence landed (0 = before the next).

How each fault is made:

- Byzantine nodes: TEST-ONLY fault modes (`src/pmoracle/devnet/faults.py`), started only by these scenarios
  and `pmoracle devnet --faulty K:MODE` (a hidden flag), never by `node.toml` or `pmoracle node`.
- crash: `kill -9` of (1) a node right after an anchor became final, (2) position 0 of the round's transmission
  schedule, (3) f nodes at once; each restarts on its data directory. The slashing-protection SQLite of every node
  and every node's archive are checked afterwards for two digests of one signer in one round.
- partition: in the kernel. The scenario re-runs itself under `unshare --user --map-root-user --net --mount` (no
  privilege needed) and `pmoracle.devnet.netlab` puts every node in a network namespace of its own, linked by a veth
  pair to the devnet's namespace, which routes between the nodes and runs anvil. The cut is an `ip rule ...
  prohibit` for every pair of subnets in different groups: the kernel refuses every packet between the majority
  and the minority, while each node keeps its chain endpoint; healing deletes the rules. On a machine without
  unprivileged user namespaces it falls back to restarting the minority on new libp2p ports in the TEST-ONLY
  `partitioned` mode (no on-chain peer discovery), and says why.
- reorg: `anvil_reorg` of depth = finality depth while an anchor is one block short of final, then of a depth
  covering an attested anchor and its attestation; the old certificate is re-submitted to `attest`.
- RPC: node 0 is given a 127.0.0.1 JSON-RPC proxy as primary and anvil as fallback (1 s timeout); the proxy answers
  -32603 errors, then hangs, then serves a head 8 blocks behind, then heals (8 s per phase).

The chain client retries a failing endpoint (twice, with backoff), then tries it last for later requests (a
circuit breaker); the node's endpoint probe (`chain.probe_interval`, 2 s here) asks every endpoint for its head,
keeps a failing or lagging one last (`-1` or its lag on the gauge `pmoracle_rpc_endpoint_lag_blocks`) and gives
the primary its place back once it serves the current head again. A lagging endpoint that still answers is only
demoted at the next probe: reads in between are pinned to the anchor's hash, so they fail on it and fail over,
and never mix two states.

Tests: `pytest -m "not slow" tests/e2e` runs wrong-value, equivocate and crash at n = 4; `make test-long`
(`pytest -m slow`) runs the rest (n = 7 variants, silent/slow, spam, reorg, RPC faults, partition).

"""


if __name__ == "__main__":
    sys.exit(main())
