"""What every scenario shares: the result record, a devnet built and stopped around a body, the safety figures.

Also the reads of a node's metrics, log and files (slashing-protection store, archive) that several scenarios use.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pmoracle.devnet.cluster import Devnet, DevnetOptions, NodeProcess, build_devnet

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
    # rounds between an offence (a deviation: its window opening) and its evidence landing on chain
    evidence_rounds: int | None = None
    wall_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def safe(self) -> bool:
        """Check if every attested round was verified and none was attested twice."""
        return self.rounds_verified == self.rounds_attested and self.duplicate_attestations == 0


def scenario_options(n: int, run_dir: Path, faulty: tuple[tuple[int, str], ...] = (), **kw: Any) -> DevnetOptions:
    """Return a scenario's devnet options. The scenarios measure ECDSA certificates (signer bitmaps, the evidence
    and slashing they lead to) and run the ECDSA path unless ``ecdsa=False`` is given; FROST under faults is
    tested in tests/unit/node/test_frost_service.py (docs/frost.md)."""
    return DevnetOptions(nodes=n, accounts=kw.pop("accounts", 20), duration=None, run_dir=run_dir, quiet=True,
                         faulty=faulty, ecdsa=kw.pop("ecdsa", True), **kw)  # fmt: skip


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
    from pmoracle.node.daemon import OFFLINE_W3

    rewards: Counter[str] = Counter()
    registry = devnet.deployment.contract(OFFLINE_W3, "SolverRegistry")
    operators = {s: devnet.client.call(registry.functions.nodeOf(s))[0] for s in result.slashes}
    self_reported = 0  # wei slashed on evidence the offender's own operator posted (the contract pays no reward)
    for e in slashed:
        rewards[e["args"]["reporter"]] += int(e["args"]["reward"])
        if e["args"]["reporter"] == operators[e["args"]["signer"]]:
            self_reported += int(e["args"]["amount"])
    result.rewards = dict(rewards)
    result.extra["self_reported_slashed"] = self_reported


def count_evidence_rounds(devnet: Devnet) -> int:
    """Return the most later rounds attested on chain before an offence's evidence landed (0: before the next),
    counted for deviation from when its round's deviation window opened (SolverRegistry.deviationDelay seconds
    after the attestation: the contract refuses the evidence before; docs/dispute.md, "Slashing race")."""
    from pmoracle.node.daemon import OFFLINE_W3

    registry = devnet.deployment.contract(OFFLINE_W3, "SolverRegistry")
    delay = int(devnet.client.call(registry.functions.deviationDelay(), "latest"))
    attested = {int(e["args"]["blockNumber"]): e["blockNumber"] for e in devnet.events("MarginOracle",
                                                                                      "RoundAttested")}  # fmt: skip
    times = {at: int(devnet.client.get_block(at).timestamp) for at in attested.values()}
    worst = 0
    for e in devnet.events("SolverRegistry", "Slashed"):
        offence_round, landed = int(e["args"]["blockNumber"]), e["blockNumber"]
        opens = 0
        if int(e["args"]["offence"]) == 1 and offence_round in attested:  # deviation
            opens = times[attested[offence_round]] + delay
        later = (at for r, at in attested.items() if r > offence_round and at < landed)
        worst = max(worst, sum(1 for at in later if times[at] >= opens))
    return worst


def run_scenario(
    name: str,
    n: int,
    injected: str,
    run_dir: Path,
    faulty: tuple[tuple[int, str], ...],
    body: Callable[[Devnet, ScenarioResult], None],
    after: Callable[[Devnet, ScenarioResult], None] | None = None,
    **kw: Any,
) -> ScenarioResult:
    """Build a devnet, run ``body`` on it, always stop it, and collect safety figures."""
    started = time.monotonic()
    result = ScenarioResult(name, n, injected)
    devnet = build_devnet(scenario_options(n, run_dir, faulty, **kw), say=_quiet)
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


def faulty_nodes(devnet: Devnet) -> list[NodeProcess]:
    """Return the nodes running an injected fault."""
    return [node for node in devnet.nodes if node.fault is not None]


def honest_nodes(devnet: Devnet) -> list[NodeProcess]:
    """Return the honest nodes."""
    return [node for node in devnet.nodes if node.fault is None]


def fault_tolerance(n: int) -> int:
    """Return f = (n - 1) // 3."""
    return (n - 1) // 3


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


def check_single_digest(devnet: Devnet) -> dict[str, int]:
    """Return {"protection": rounds with two digests in any store, "archive": ... in any archive} (stopped devnet)."""
    bad = {"protection": 0, "archive": 0}
    for node in devnet.nodes:
        bad["protection"] += sum(1 for digests in protection_records(node).values() if len(digests) > 1)
        for other in devnet.nodes:
            signer = bytes.fromhex(node.signing_address[2:])
            bad["archive"] += sum(1 for d in archived_digests(other, signer).values() if len(d) > 1)
    return bad


def log_since(node: NodeProcess, offset: int) -> str:
    with open(node.log_path, "rb") as handle:
        handle.seek(offset)
        return handle.read().decode(errors="replace")


def attested_digest(devnet: Devnet, block: int) -> bytes | None:
    """Return the report digest attested on chain for round ``block`` (None when it is not attested)."""
    from pmoracle.node.daemon import OFFLINE_W3

    oracle = devnet.deployment.contract(OFFLINE_W3, "MarginOracle")
    from pmoracle.chain.errors import ContractError

    try:
        config_digest, digest, _attested_at = devnet.client.call(oracle.functions.roundDigests(block), "latest")
    except ContractError as exc:
        if exc.name == "RoundNotFound":
            return None
        raise
    return None if bytes(config_digest) == bytes(32) else bytes(digest)
