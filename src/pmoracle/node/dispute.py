"""The dispute tool's logic: check an attested round by recomputing it from the chain, scan a report archive and
the chain for equivocations and deviations, and submit slashing evidence. I/O (chain reads, HTTP, SQLite).

``pmoracle dispute`` (``pmoracle.commands.dispute``) only parses arguments and prints what these functions return.
"""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import event_topic
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ContractError
from pmoracle.chain.snapshot import ChainSnapshot, read_snapshot
from pmoracle.chain.transmitter import Receipt, Transmitter
from pmoracle.consensus.commitments import (
    COLLATERAL_FLAG,
    NO_POLICY,
    FraudProof,
    PricingChallenge,
    RiskArrayTree,
    RiskRow,
    collateral_key,
    collateral_size,
    compute_fraud_proof,
    compute_market_hash,
    compute_pricing_challenge,
    encode_risk_row,
    instrument_key,
    market_abi_value,
)
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.evidence import (
    Deviation,
    Equivocation,
    Evidence,
    compute_equivocation,
    is_deviation,
    is_equivocation,
)
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, compute_root, verify_proof
from pmoracle.consensus.report import Domain, Report, SignedReport, compute_report_digest
from pmoracle.errors import InputError, PmoracleError
from pmoracle.files import read_json
from pmoracle.node.abc import AttestedRound
from pmoracle.node.api import LEAF_FIELDS
from pmoracle.node.chain_port import OFFLINE_W3, read_round
from pmoracle.node.daemon import read_committee
from pmoracle.node.datadir import archive_db_path
from pmoracle.node.policy import read_policy_round
from pmoracle.node.round import MONEY_TO_LEAF, RoundOutput, compute_round
from pmoracle.risk.params import RiskParams
from pmoracle.storage.archive import ArchivedReport, ReportArchive

SLASHED_TOPIC = event_topic("SolverRegistry", "Slashed")
OFFENCES = {0: "equivocation", 1: "deviation", 2: "fraud"}  # SolverRegistry.Offence, in declaration order


class DisputeError(PmoracleError):
    """Raised when a dispute cannot be carried out: no such attested round, a committee that changed since, or a
    node API that does not serve the round."""


# --- check --------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClaimedLeaf:
    """An account's values as the attestation claims them (from a leaves file or a node's API), with its proof."""

    leaf: AccountLeaf
    proof: tuple[bytes, ...] | None  # None: no proof given (then the whole set must rebuild the attested root)


@dataclass(frozen=True, slots=True)
class LeafDifference:
    """One account whose recomputed values differ from the attested ones (None: absent on that side)."""

    account: bytes
    recomputed: AccountLeaf | None
    attested: AccountLeaf | None
    verified: bool  # the attested leaf is proven against the attested root (by its proof or by the whole set)


@dataclass(frozen=True, slots=True)
class CheckResult:
    """The verdict on one attested round."""

    attested: AttestedRound
    recomputed: Report
    recomputed_digest: bytes
    leaves: tuple[AccountLeaf, ...]  # recomputed, sorted by account
    claimed_count: int | None  # attested leaves compared (None: none were given)
    differences: tuple[LeafDifference, ...]
    unproven: tuple[bytes, ...]  # accounts whose claimed leaf does not verify against the attested root

    @property
    def root_matches(self) -> bool:
        """Check if the recomputed accounts root equals the attested one."""
        return self.recomputed.accounts_root == self.attested.accounts_root

    @property
    def digest_matches(self) -> bool:
        """Check if the recomputed report's digest equals the attested one (root, block hash, params, count)."""
        return self.recomputed_digest == self.attested.report_digest

    @property
    def holds(self) -> bool:
        """Check if the attestation equals the independent recomputation."""
        return self.root_matches and self.digest_matches

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form printed by ``dispute check --json``."""
        return {
            "blockNumber": self.attested.block_number,
            "holds": self.holds,
            "attested": {
                "accountsRoot": _hex(self.attested.accounts_root),
                "reportDigest": _hex(self.attested.report_digest),
                "configDigest": _hex(self.attested.config_digest),
                "accountCount": self.attested.account_count,
            },
            "recomputed": {**self.recomputed.to_json(), "reportDigest": _hex(self.recomputed_digest)},
            "rootMatches": self.root_matches,
            "digestMatches": self.digest_matches,
            "attestedLeavesCompared": self.claimed_count,
            "differences": [
                {
                    "account": to_checksum_address(d.account),
                    "recomputed": leaf_to_json(d.recomputed) if d.recomputed else None,
                    "attested": leaf_to_json(d.attested) if d.attested else None,
                    "verified": d.verified,
                }
                for d in self.differences
            ],
            "unproven": [to_checksum_address(a) for a in self.unproven],
            "leaves": [leaf_to_json(leaf) for leaf in self.leaves],
        }


def _hex(value: bytes) -> str:
    return "0x" + value.hex()


def leaf_to_json(leaf: AccountLeaf) -> dict[str, Any]:
    """Return a leaf as the node API writes it (amounts as decimal strings, USD with 18 decimals)."""
    return {
        "account": to_checksum_address(leaf.account),
        "initialMargin": str(leaf.initial_margin),
        "maintenanceMargin": str(leaf.maintenance_margin),
        "equity": str(leaf.equity),
    }


def _int_field(obj: Mapping[str, Any], field: str, where: str) -> int:
    if field not in obj:
        raise InputError(f"{where}.{field}", "missing")
    return _int_value(obj[field], f"{where}.{field}")


def _int_value(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(name, f"expected an integer or a decimal string, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise InputError(name, f"not an integer: {value!r}") from None


def _bytes_field(value: Any, field: str, size: int) -> bytes:
    if not isinstance(value, str):
        raise InputError(field, f"expected a 0x-hex string, got {value!r}")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise InputError(field, f"not hex: {value!r}") from None
    if len(raw) != size:
        raise InputError(field, f"expected {size} bytes, got {len(raw)}")
    return raw


def parse_claimed_leaf(obj: Any, where: str) -> ClaimedLeaf:
    """Return the claimed leaf of one JSON object in the node API's ``/v1/margin`` form (``proof`` optional), or of
    one ``/v1/leaves`` leaf array ``[account, initialMargin, maintenanceMargin, equity]`` (no proof).

    Errors:
        InputError naming the field (``where.field``) that is missing or malformed.
    """
    if isinstance(obj, list):
        if len(obj) != len(LEAF_FIELDS):
            raise InputError(where, f"expected [{', '.join(LEAF_FIELDS)}], got {len(obj)} items")
        obj = dict(zip(LEAF_FIELDS, obj, strict=True))
    if not isinstance(obj, dict):
        raise InputError(where, f"expected an object, got {type(obj).__name__}")
    if "account" not in obj:
        raise InputError(f"{where}.account", "missing")
    leaf = AccountLeaf(
        account=_bytes_field(obj["account"], f"{where}.account", 20),
        initial_margin=_int_field(obj, "initialMargin", where),
        maintenance_margin=_int_field(obj, "maintenanceMargin", where),
        equity=_int_field(obj, "equity", where),
    )
    proof = obj.get("proof")
    if proof is None:
        return ClaimedLeaf(leaf, None)
    if not isinstance(proof, list):
        raise InputError(f"{where}.proof", "expected a list of 32-byte hex strings")
    return ClaimedLeaf(leaf, tuple(_bytes_field(p, f"{where}.proof[{i}]", 32) for i, p in enumerate(proof)))


def _document_list(obj: Any, name: str) -> list[Any]:
    """Return the list a file holds: the document itself, or its ``name`` member (``{"leaves": [...]}``)."""
    if isinstance(obj, dict):
        if name not in obj:
            raise InputError(name, f"missing: expected a list of {name} or an object with a '{name}' list")
        obj = obj[name]
    if not isinstance(obj, list):
        raise InputError(name, f"expected a list, got {type(obj).__name__}")
    return obj


def parse_leaves_document(obj: Any) -> list[ClaimedLeaf]:
    """Return the claimed leaves of a leaves file: a list of leaf objects (or ``/v1/leaves`` leaf arrays), or
    ``{"leaves": [...]}`` (what a node's ``/v1/leaves/B`` serves).

    Errors:
        InputError naming the malformed field.
    """
    claimed = [parse_claimed_leaf(item, f"leaves[{i}]") for i, item in enumerate(_document_list(obj, "leaves"))]
    seen: set[bytes] = set()
    for i, item in enumerate(claimed):
        if item.leaf.account in seen:
            raise InputError(f"leaves[{i}].account", f"duplicate account {to_checksum_address(item.leaf.account)}")
        seen.add(item.leaf.account)
    return claimed


def load_leaves_file(path: Path) -> list[ClaimedLeaf]:
    """Return the claimed leaves in the JSON file ``path``.

    Errors:
        InputError when the file cannot be read, is not JSON, or a leaf is malformed.
    """
    return parse_leaves_document(read_json(path, "leaves"))


def parse_rows_document(obj: Any) -> list[RiskRow]:
    """Return the rows of a rows file: a list of row objects (``row_to_json``), or ``{"rows": [...]}`` (what a
    node's ``/v1/risk-arrays`` serves).

    Errors:
        InputError naming the malformed field (``rows[i].key``, ``rows[i].values[s]``, ...).
    """
    rows = []
    for i, item in enumerate(_document_list(obj, "rows")):
        where = f"rows[{i}]"
        if not isinstance(item, dict):
            raise InputError(where, f"expected an object, got {type(item).__name__}")
        key = item.get("key")
        if not isinstance(key, str | int) or isinstance(key, bool):
            raise InputError(f"{where}.key", f"expected an integer or a 0x-hex string, got {key!r}")
        try:
            key_value = int(key, 0) if isinstance(key, str) else key
        except ValueError:
            raise InputError(f"{where}.key", f"not an integer: {key!r}") from None
        values = item.get("values")
        if not isinstance(values, list):
            raise InputError(f"{where}.values", f"expected a list of integers, got {values!r}")
        ints = tuple(_int_value(v, f"{where}.values[{s}]") for s, v in enumerate(values))
        base, addon = _int_field(item, "base", where), _int_field(item, "addon", where)
        try:
            rows.append(RiskRow(key_value, base, addon, ints))
        except InputError as exc:
            raise InputError(f"{where}.{exc.field}", exc.message) from None
    return rows


@dataclass(frozen=True, slots=True)
class ClaimedRows:
    """Risk-array rows claimed to be a round's attested ones, with where they came from (named in errors)."""

    rows: tuple[RiskRow, ...]
    source: str  # "rows file PATH" or "node API URL"


def load_rows_file(path: Path) -> ClaimedRows:
    """Return the claimed risk-array rows in the JSON file ``path``.

    Errors:
        InputError when the file cannot be read, is not JSON, or a row is malformed.
    """
    return ClaimedRows(tuple(parse_rows_document(read_json(path, "rows"))), f"rows file {path}")


def _get_node_json(url: str, timeout: float) -> Any:
    """Return the JSON a node API serves at ``url``, or None on 404.

    Errors:
        DisputeError naming the URL when it cannot be reached, answers another error status, or is not JSON.
    """
    status, body = _request_node_json(url, timeout)
    return None if status == 404 else body


def _request_node_json(url: str, timeout: float) -> tuple[int, Any]:
    """Return (200, the JSON a node API serves at ``url``) or (404, its JSON error body, None when not JSON).

    Errors:
        DisputeError naming the URL when it cannot be reached, answers another error status, or is not JSON.
    """
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return 200, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code != 404:
            raise DisputeError(f"node API {url}: HTTP {exc.code}") from None
        try:
            return 404, json.loads(exc.read())
        except (OSError, ValueError):
            return 404, None
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise DisputeError(f"node API {url}: {exc}") from None


def fetch_node_rows(api_url: str, block_number: int, *, timeout: float = 30.0) -> ClaimedRows | None:
    """Return the risk-array rows a node's ``GET /v1/risk-arrays/{block}`` serves, or None when the node does not
    keep the round (404).

    Errors:
        DisputeError naming the URL when the node cannot be reached, answers for another round, or serves rows
        that are malformed.
    """
    url = f"{api_url.rstrip('/')}/v1/risk-arrays/{block_number}"
    body = _get_node_json(url, timeout)
    if body is None:
        return None
    if not isinstance(body, dict) or body.get("blockNumber") != block_number:
        got = body.get("blockNumber") if isinstance(body, dict) else body
        raise DisputeError(f"node API {url} serves round {got!r}, not round {block_number}")
    try:
        return ClaimedRows(tuple(parse_rows_document(body)), f"node API {url}")
    except InputError as exc:
        raise DisputeError(f"node API {url}: {exc}") from None


def fetch_round_leaves(api_url: str, block_number: int, *, timeout: float = 30.0) -> list[ClaimedLeaf] | None:
    """Return every leaf a node's ``GET /v1/leaves/{block}`` serves for round ``block_number``, in one request
    (without proofs: the whole set proves itself by rebuilding the root), or None when the node has no such route
    (a node of an older release: its 404 is the plain ``not found`` of an unknown path).

    Errors:
        DisputeError naming the URL when the node cannot be reached, does not keep the round (its 404 names it),
        answers for another round, or serves leaves that are malformed.
    """
    url = f"{api_url.rstrip('/')}/v1/leaves/{block_number}"
    status, body = _request_node_json(url, timeout)
    if status == 404:
        error = body.get("error") if isinstance(body, dict) else None
        if error == "not found":
            return None
        raise DisputeError(f"node API {url} serves no leaves of round {block_number}: {error or 'HTTP 404'}")
    if not isinstance(body, dict) or body.get("blockNumber") != block_number:
        got = body.get("blockNumber") if isinstance(body, dict) else body
        raise DisputeError(f"node API {url} serves round {got!r}, not round {block_number}")
    try:
        return parse_leaves_document(body)
    except InputError as exc:
        raise DisputeError(f"node API {url}: {exc}") from None


def fetch_attested_leaves(
    api_url: str, accounts: Sequence[bytes], block_number: int, *, timeout: float = 30.0
) -> list[ClaimedLeaf]:
    """Return the leaves a node serves for round ``block_number``: all of them from ``/v1/leaves/{block}`` in one
    request, or, from a node without that route, ``accounts``' from ``/v1/margin`` (``fetch_node_leaves``: one
    request each, only while the round is the node's latest attested one).

    Errors:
        DisputeError as ``fetch_round_leaves`` and ``fetch_node_leaves``.
    """
    whole = fetch_round_leaves(api_url, block_number, timeout=timeout)
    return fetch_node_leaves(api_url, accounts, block_number, timeout=timeout) if whole is None else whole


def leaves_prove_root(root: bytes, claimed: Sequence[ClaimedLeaf]) -> bool:
    """Check if every claimed leaf is proven against ``root``: by its own proof, or (the leaves without one, only
    when none has one) together, by rebuilding ``root`` as the whole set."""
    without = [c.leaf for c in claimed if c.proof is None]
    if without and (len(without) != len(claimed) or compute_root(without) != root):
        return False
    return all(c.proof is None or verify_proof(root, c.leaf, c.proof) for c in claimed)


def fetch_node_leaves(
    api_url: str, accounts: Sequence[bytes], block_number: int, *, timeout: float = 5.0
) -> list[ClaimedLeaf]:
    """Return what a node's ``GET /v1/margin/{account}`` serves for each account (absent ones are left out).

    Args:
        api_url: the node's API base URL (``http://127.0.0.1:8545``).
        accounts: the accounts to ask for.
        block_number: the round the answers must belong to.
        timeout: seconds per request.

    Errors:
        DisputeError when the node cannot be reached, answers for another round, or answers malformed JSON.
    """
    claimed = []
    base = api_url.rstrip("/")
    for account in accounts:
        url = f"{base}/v1/margin/{to_checksum_address(account)}"
        body = _get_node_json(url, timeout)
        if body is None:
            continue  # the attested round has no leaf for this account (or the node serves none)
        if not isinstance(body, dict) or body.get("blockNumber") != block_number:
            got = body.get("blockNumber") if isinstance(body, dict) else body
            raise DisputeError(f"node API {base} serves round {got!r}, not round {block_number}")
        try:
            claimed.append(parse_claimed_leaf(body, "margin"))
        except InputError as exc:
            raise DisputeError(f"node API {url}: {exc}") from None
    return claimed


def read_attested_round(client: ChainClient, deployment: Deployment, block_number: int | None) -> AttestedRound:
    """Return the round MarginOracle attested at ``block_number`` (the latest one for None).

    Errors:
        DisputeError when no round is attested there (or the oracle no longer keeps it); ChainError on RPC failure.
    """
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    fn = oracle.functions.latestRound() if block_number is None else oracle.functions.roundAt(block_number)
    try:
        return read_round(client, fn)
    except ContractError as exc:
        if exc.name in ("NoAttestedRound", "RoundNotFound"):
            where = "yet" if block_number is None else f"at block {block_number}"
            raise DisputeError(f"no round attested {where} ({exc.name})") from None
        raise


def compare_leaves(
    recomputed: Sequence[AccountLeaf], claimed: Sequence[ClaimedLeaf], attested_root: bytes
) -> tuple[tuple[LeafDifference, ...], tuple[bytes, ...]]:
    """Return the accounts whose claimed (attested) values differ from the recomputed ones, and the accounts whose
    claimed leaf is not proven against ``attested_root``.

    A claimed leaf with a proof is proven by the proof; leaves without one are proven together when they rebuild
    the attested root. Accounts only recomputed are compared only when the claimed set is the whole proven tree.
    """
    without_proof = [c.leaf for c in claimed if c.proof is None]
    whole_set_proven = bool(without_proof) and len(without_proof) == len(claimed)
    whole_set_proven = whole_set_proven and compute_root(without_proof) == attested_root
    proven = {
        c.leaf.account: (verify_proof(attested_root, c.leaf, c.proof) if c.proof is not None else whole_set_proven)
        for c in claimed
    }
    mine = {leaf.account: leaf for leaf in recomputed}
    theirs = {c.leaf.account: c.leaf for c in claimed}
    differences = []
    accounts = sorted(theirs.keys() | (mine.keys() if whole_set_proven else set()))
    for account in accounts:
        a, b = mine.get(account), theirs.get(account)
        if a != b:
            differences.append(LeafDifference(account, a, b, proven.get(account, whole_set_proven)))
    unproven = tuple(sorted(a for a, ok in proven.items() if not ok))
    return tuple(differences), unproven


def check_round(
    client: ChainClient,
    deployment: Deployment,
    params: RiskParams,
    block_number: int | None,
    *,
    claimed: Callable[[AttestedRound, Sequence[AccountLeaf]], Sequence[ClaimedLeaf]] | None = None,
) -> CheckResult:
    """Recompute an attested round from the chain state at its block and compare it with the attestation.

    Args:
        client: the chain client.
        deployment: the contracts.
        params: the risk model parameters (their hash must be the committee's ``paramsHash``).
        block_number: the round's anchor block; None for the latest attested round.
        claimed: returns the attested leaves to compare account by account (from a file or a node), given the
            attested round and the recomputed leaves; None compares roots and digests only.

    Returns:
        The verdict with both roots and digests, and the differing accounts with both values.

    Errors:
        DisputeError when the round is not attested, or was attested under another committee than the current
        one; InputError when ``params`` are not the committee's; ChainError and SnapshotError on chain failures.
    """
    attested, _snapshot, output = _recompute(client, deployment, params, block_number)
    return _compare(client, deployment, attested, output, claimed)


def _recompute(
    client: ChainClient, deployment: Deployment, params: RiskParams, block_number: int | None
) -> tuple[AttestedRound, ChainSnapshot, RoundOutput]:
    """Return the attested round with the chain snapshot at its block and the round recomputed from it."""
    attested = read_attested_round(client, deployment, block_number)
    committee = read_committee(client, deployment)
    if committee.digest() != attested.config_digest:
        raise DisputeError(
            f"round {attested.block_number} was attested under config {_hex(attested.config_digest)}, the registry "
            f"now holds {_hex(committee.digest())}: this tool recomputes rounds of the current committee only"
        )
    if params.params_hash != committee.params_hash:
        raise InputError(
            "params", f"paramsHash {_hex(params.params_hash)} is not the committee's {_hex(committee.params_hash)}"
        )
    snapshot = read_snapshot(client, deployment, attested.block_number)
    policy = None if params.policy is None else read_policy_round(client, deployment, params, attested.block_number)
    return attested, snapshot, compute_round(snapshot, params, committee, policy)


def _compare(
    client: ChainClient,
    deployment: Deployment,
    attested: AttestedRound,
    output: RoundOutput,
    claimed: Callable[[AttestedRound, Sequence[AccountLeaf]], Sequence[ClaimedLeaf]] | None,
) -> CheckResult:
    """Return the verdict of ``check_round`` for a recomputed round."""
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    leaves = tuple(output.tree.leaves)  # sorted by account
    differences: tuple[LeafDifference, ...] = ()
    unproven: tuple[bytes, ...] = ()
    claimed_count = None
    if claimed is not None:
        claimed_leaves = claimed(attested, leaves)
        claimed_count = len(claimed_leaves)
        differences, unproven = compare_leaves(leaves, claimed_leaves, attested.accounts_root)
    return CheckResult(
        attested=attested, recomputed=output.report, recomputed_digest=compute_report_digest(domain, output.report),
        leaves=leaves, claimed_count=claimed_count, differences=differences, unproven=unproven,
    )  # fmt: skip


# --- scan ---------------------------------------------------------------------------------------------------------


def open_archive(path: Path) -> ReportArchive:
    """Open a node's report archive: the SQLite file itself or the node's data directory holding it.

    Errors:
        InputError when the path does not exist or holds no archive.
    """
    path = Path(path)
    if path.is_dir():
        path = archive_db_path(path)
    if not path.is_file():
        raise InputError("archive", f"no report archive at {path}")
    import sqlite3

    try:
        archive = ReportArchive(path)
    except sqlite3.Error as exc:
        raise InputError("archive", f"{path} is not a report archive: {exc}") from None
    try:
        archive.get_round_keys()
    except sqlite3.Error as exc:
        archive.close()
        raise InputError("archive", f"{path} is not a report archive: {exc}") from None
    return archive


def read_attested_digest(
    client: ChainClient, deployment: Deployment, block_number: int
) -> tuple[bytes, bytes, bytes] | None:
    """Return (configDigest, reportDigest, blockHash) attested at ``block_number``, or None when no round is kept
    there. The block hash is the canonical one of ``block_number`` (the oracle checked it when it attested)."""
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    try:
        attested = read_round(client, oracle.functions.roundAt(block_number))
    except ContractError as exc:
        if exc.name == "RoundNotFound":
            return None
        raise
    return attested.config_digest, attested.report_digest, attested.block_hash


def find_evidence(
    archive: ReportArchive,
    *,
    domain: Domain | None = None,
    committee: CommitteeConfig | None = None,
    attested_digest: Callable[[int], tuple[bytes, bytes, bytes] | None] | None = None,
) -> list[Evidence]:
    """Return every equivocation and deviation the archive proves, round by round.

    Args:
        archive: the node's signed-report archive.
        domain: the oracle's EIP-712 domain; orders equivocations canonically and checks signatures.
        committee: with ``domain``, keeps only evidence against valid signatures of its members.
        attested_digest: block -> (configDigest, reportDigest, blockHash) attested on chain (None: not
            attested); without it, no deviation is looked for. A report about another hash of the block (signed
            on a fork a reorg replaced) is no deviation.

    Returns:
        Equivocations (one per signer and round) then deviations (one per signed report), by round.
    """
    found: list[Evidence] = []
    for key in archive.get_round_keys():
        reports = archive.get_by_round(key)
        by_signer: dict[bytes, list[ArchivedReport]] = {}
        for archived in reports:
            by_signer.setdefault(archived.signed.signer, []).append(archived)
        for signed_by in by_signer.values():
            if len(signed_by) < 2:
                continue
            a, b = signed_by[0].signed, signed_by[1].signed  # ordered by digest in the archive
            equivocation = compute_equivocation(domain, a, b) if domain is not None else Equivocation(a, b)
            if domain is not None and committee is not None and not is_equivocation(domain, committee, equivocation):
                continue
            found.append(equivocation)
        if attested_digest is None:
            continue
        attested = attested_digest(key[1])
        if attested is None or attested[0] != key[0]:
            continue
        for archived in reports:
            if archived.digest == attested[1] or archived.signed.report.block_hash != attested[2]:
                continue
            deviation = Deviation(archived.signed, attested[1])
            if domain is not None and committee is not None and not is_deviation(domain, committee, deviation):
                continue
            found.append(deviation)
    return found


def evidence_signer(evidence: Evidence) -> bytes:
    """Return the address the evidence accuses."""
    return evidence.a.signer if isinstance(evidence, Equivocation) else evidence.signed.signer


def evidence_round(evidence: Evidence) -> tuple[bytes, int]:
    """Return the round key the evidence is about."""
    return evidence.a.report.round_key if isinstance(evidence, Equivocation) else evidence.signed.report.round_key


def evidence_file_name(evidence: Evidence, domain: Domain | None = None) -> str:
    """Return a file name for ``evidence`` unique per offence: kind, block, signer (and signed digest prefix)."""
    signer = evidence_signer(evidence).hex()
    block = evidence_round(evidence)[1]
    if isinstance(evidence, Equivocation):
        return f"equivocation-{block}-0x{signer}.json"
    tag = (
        compute_report_digest(domain, evidence.signed.report)
        if domain is not None
        else keccak(evidence.signed.signature)
    )
    return f"deviation-{block}-0x{signer}-{tag.hex()[:8]}.json"


# --- submit -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlashOutcome:
    """A ``Slashed`` event of SolverRegistry: who lost how much, and what the reporter earned."""

    tx_hash: bytes
    signer: bytes
    offence: str
    config_digest: bytes
    block_number: int
    amount: int  # wei of stake taken
    reporter: bytes
    reward: int  # wei paid to the reporter
    gas_used: int

    def to_json(self) -> dict[str, Any]:
        """Return the JSON form printed by ``dispute submit --json``."""
        return {
            "slashed": True,
            "txHash": _hex(self.tx_hash),
            "signer": to_checksum_address(self.signer),
            "offence": self.offence,
            "configDigest": _hex(self.config_digest),
            "blockNumber": self.block_number,
            "amount": str(self.amount),
            "reporter": to_checksum_address(self.reporter),
            "reward": str(self.reward),
            "gasUsed": self.gas_used,
        }


def decode_slashed_events(receipt: Receipt, registry_address: str) -> list[SlashOutcome]:
    """Return the ``Slashed`` events SolverRegistry emitted in ``receipt``."""
    outcomes = []
    for log in receipt.logs:
        if str(log.get("address", "")).lower() != registry_address.lower():
            continue
        topics = [bytes.fromhex(str(t)[2:]) for t in log.get("topics", [])]
        if len(topics) != 3 or topics[0] != SLASHED_TOPIC:
            continue
        data = bytes.fromhex(str(log["data"])[2:])
        config_digest, block_number, amount, reporter, reward = abi_decode(
            ["bytes32", "uint64", "uint256", "address", "uint256"], data
        )
        offence = int.from_bytes(topics[2], "big")
        outcomes.append(
            SlashOutcome(
                tx_hash=receipt.tx_hash, signer=topics[1][12:], offence=OFFENCES.get(offence, str(offence)),
                config_digest=bytes(config_digest), block_number=int(block_number), amount=int(amount),
                reporter=bytes.fromhex(reporter[2:]), reward=int(reward), gas_used=receipt.gas_used,
            )
        )  # fmt: skip
    return outcomes


def submit_evidence(transmitter: Transmitter, deployment: Deployment, evidence: Evidence) -> SlashOutcome:
    """Post ``evidence`` to SolverRegistry (slashEquivocation or slashDeviation) and return the slash.

    Errors:
        ContractError with the contract's reason when it refuses (AlreadySlashed, NotAnOffence, RoundKeyMismatch,
        NotCanonicalBlockHash, UnknownSigner, ...); ChainError on RPC or transaction failures; DisputeError if
        the transaction succeeded without a Slashed event.
    """
    registry = deployment.contract(OFFLINE_W3, "SolverRegistry")
    if isinstance(evidence, Equivocation):
        a, b = evidence.a, evidence.b
        fn = registry.functions.slashEquivocation(a.report.as_tuple(), a.signature, b.report.as_tuple(), b.signature)
    else:
        fn = registry.functions.slashDeviation(evidence.signed.report.as_tuple(), evidence.signed.signature)
    receipt = transmitter.transact_call(fn)
    outcomes = decode_slashed_events(receipt, deployment.contracts["SolverRegistry"])
    if len(outcomes) != 1:
        raise DisputeError(f"transaction {_hex(receipt.tx_hash)} emitted {len(outcomes)} Slashed events, expected 1")
    return outcomes[0]


# --- fraud proofs -------------------------------------------------------------------------------------------------


def read_holdings(
    client: ChainClient, deployment: Deployment, snapshot: ChainSnapshot, account: bytes
) -> dict[int, int]:
    """Return what ``account`` holds at the snapshot's block as risk-array row keys -> SIZE units: every open
    position (from the snapshot) and every non-zero collateral balance (read per token at that block).

    Errors:
        InputError if the account holds an instrument the snapshot has no ledger id for; ChainError on RPC failures.
    """
    ids = {instrument: iid for iid, instrument in snapshot.instruments}
    holdings: dict[int, int] = {}
    portfolio = next((p for p in snapshot.portfolios if p.account == account), None)
    for position in portfolio.positions if portfolio is not None else ():
        iid = ids.get(position.instrument)
        if iid is None:
            raise InputError("instrument", f"no ledger id for {position.instrument!r}")
        key = instrument_key(iid)
        holdings[key] = holdings.get(key, 0) + position.size
    ledger = deployment.contract(OFFLINE_W3, "MarginAccounts")
    for token, _symbol, decimals in snapshot.tokens:
        balance = int(client.call(ledger.functions.balanceOf(to_checksum_address(account), to_checksum_address(token)),
                                  snapshot.block_number))  # fmt: skip
        if balance:
            holdings[collateral_key(token, decimals)] = collateral_size(balance, decimals)
    return {key: size for key, size in holdings.items() if size or key & COLLATERAL_FLAG}


def prove_fraud_call(deployment: Deployment, report: Report, proof: FraudProof) -> Any:
    """Return the bound ``MarginOracle.proveFraud`` call of ``proof`` against ``report``."""
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    leaf = proof.leaf
    return oracle.functions.proveFraud(
        report.as_tuple(),
        to_checksum_address(leaf.account),
        (leaf.initial_margin, leaf.maintenance_margin, leaf.equity),
        list(proof.account_proof),
        encode_risk_row(proof.cover, proof.cover_proof),
        [encode_risk_row(row, row_proof) for row, row_proof in proof.rows],
        proof.scenario,
    )


def challenge_pricing_call(deployment: Deployment, report: Report, challenge: PricingChallenge) -> Any:
    """Return the bound ``MarginOracle.challengePricing`` call of ``challenge`` against ``report``."""
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    return oracle.functions.challengePricing(
        report.as_tuple(),
        market_abi_value(challenge.market),
        challenge.policy_hash,
        encode_risk_row(challenge.row, challenge.row_proof),
        encode_risk_row(challenge.scenario_row, challenge.scenario_proof),
        challenge.scenario,
    )


def submit_pricing_challenge(
    transmitter: Transmitter, deployment: Deployment, report: Report, challenge: PricingChallenge
) -> list[SlashOutcome]:
    """Post ``challenge`` to ``MarginOracle.challengePricing``: the round is invalidated; return each signer's slash.

    Errors:
        ContractError with the contract's reason when it refuses (EntryWithinTolerance, MarketMismatch,
        InvalidRowProof, InvalidScenarioRow, NotAnInstrument, ScenarioOutOfRange, ReportMismatch, RoundProvenFraudulent,
        ...); ChainError on RPC or transaction failures.
    """
    receipt = transmitter.transact_call(challenge_pricing_call(deployment, report, challenge))
    return decode_slashed_events(receipt, deployment.contracts["SolverRegistry"])


def submit_fraud_proof(
    transmitter: Transmitter, deployment: Deployment, report: Report, proof: FraudProof
) -> list[SlashOutcome]:
    """Post ``proof`` to ``MarginOracle.proveFraud``: the round is invalidated; return the slash of each signer.

    Errors:
        ContractError with the contract's reason when it refuses (NotFraudulent, InvalidRowProof, RowNotHeld,
        IncompleteHoldings, ReportMismatch, RoundProvenFraudulent, ...); ChainError on RPC or transaction failures.
    """
    receipt = transmitter.transact_call(prove_fraud_call(deployment, report, proof))
    return decode_slashed_events(receipt, deployment.contracts["SolverRegistry"])


def slash_frost_signers(
    transmitter: Transmitter, deployment: Deployment, members: Sequence[bytes], signed: Sequence[SignedReport]
) -> list[SlashOutcome]:
    """Slash, with ``MarginOracle.slashFrostSigner``, each member whose own ECDSA signature in ``signed`` is of the
    report of a FROST-attested round that was proven fraudulent (the FROST certificate does not say who signed; the
    proof slashed nobody). ``members`` are the committee's signing addresses by index. A signer the contract refuses
    (already slashed, not a member, a round not FROST or not invalidated) is skipped; return the slashes made.

    Errors:
        ChainError on RPC or transaction failures (a refusal is not one).
    """
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    outcomes: list[SlashOutcome] = []
    for item in signed:
        if item.signer not in members:
            continue
        call = oracle.functions.slashFrostSigner(item.report.as_tuple(), members.index(item.signer), item.signature)
        try:
            receipt = transmitter.transact_call(call)
        except ContractError:
            continue
        outcomes.extend(decode_slashed_events(receipt, deployment.contracts["SolverRegistry"]))
    return outcomes


ROUND_ATTESTED_TOPIC = event_topic("MarginOracle", "RoundAttested")


def record_round_block_hash(
    client: ChainClient, transmitter: Transmitter, deployment: Deployment, block_number: int
) -> Receipt:
    """Record in MarginOracle the block hash of the round attested at ``block_number`` (``recordRoundBlockHash``,
    with the attested report rebuilt from its ``RoundAttested`` log), so that SolverRegistry can judge deviation
    evidence against that round once blockhash() has forgotten the block (256 blocks; ``roundBlockHash`` reverts
    ``RoundBlockHashNotRecorded`` until then).

    Errors:
        DisputeError when no round is kept at ``block_number`` or no log rebuilds its digest; ContractError
        (``ReportMismatch``, ``RoundNotFound``) or ChainError from the transaction.
    """
    attested = read_attested_round(client, deployment, block_number)
    report = read_attested_report(client, deployment, attested)
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    return transmitter.transact_call(oracle.functions.recordRoundBlockHash(report.as_tuple()))


def read_attested_report(client: ChainClient, deployment: Deployment, attested: AttestedRound) -> Report:
    """Return the report the quorum signed for an attested round, rebuilt from its ``RoundAttested`` log.

    Errors:
        DisputeError when no log of the round rebuilds its stored digest; ChainError on RPC failures.
    """
    oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
    params_hash = bytes(client.call(oracle.functions.paramsHashOf(attested.config_version)))
    logs = client.request(
        "eth_getLogs",
        [{"address": deployment.contracts["MarginOracle"], "fromBlock": hex(attested.block_number),
          "toBlock": "latest", "topics": ["0x" + ROUND_ATTESTED_TOPIC.hex(),
                                          "0x" + attested.block_number.to_bytes(32, "big").hex()]}],
    )  # fmt: skip
    domain = Domain.from_address(client.chain_id, deployment.contracts["MarginOracle"])
    for log in logs:
        data = bytes.fromhex(str(log["data"])[2:])
        _digest, root, count, _bitmap, _sender, risk_root, market_hash, _scheme = abi_decode(
            ["bytes32", "bytes32", "uint32", "uint256", "address", "bytes32", "bytes32", "uint8"], data
        )
        report = Report(
            config_digest=attested.config_digest, block_number=attested.block_number, block_hash=attested.block_hash,
            params_hash=params_hash, accounts_root=bytes(root), account_count=int(count),
            risk_arrays_root=bytes(risk_root), market_hash=bytes(market_hash),
        )  # fmt: skip
        if compute_report_digest(domain, report) == attested.report_digest:
            return report
    raise DisputeError(f"no RoundAttested log rebuilds the digest of round {attested.block_number}")


@dataclass(frozen=True, slots=True)
class ProveResult:
    """What ``dispute prove`` found in an attested round: the proof it can submit, or why there is none."""

    attested: AttestedRound
    report: Report
    proof: FraudProof | None
    understated: tuple[bytes, ...]  # proven attested leaves whose MM is below the recomputed MM
    changed: tuple[bytes, ...]  # of those, accounts changed since B (still provable: the ledger keeps their history)
    rows_match: bool  # the attested risk-array root is the recomputed one (else only a pricing challenge helps)
    challenge: PricingChallenge | None = None  # the wrong entry with the largest gap (no aggregation proof)
    recomputed_entry: int = 0  # the challenged entry as the recomputation gives it (MONEY per SIZE unit)
    rows_source: str | None = None  # where the attested rows came from (None: not given)


# An attested option entry this many quanta from the recomputed one is beyond ``Black76.pnlTolerance`` (one quantum
# plus 1e-12 of the values' scale, at most 1.1 quanta below 1e7 USD of scale; the engine's entry is within half a
# quantum of the exact P&L), so ``challengePricing`` proves it.
PROVABLE_ENTRY_GAP = 2


def find_wrong_entry(
    snapshot: ChainSnapshot, output: RoundOutput, attested: RiskArrayTree, report: Report
) -> tuple[PricingChallenge, int] | None:
    """Return the pricing challenge of the attested instrument entry farthest from the recomputed one, with the
    recomputed entry, or None when no instrument's entry is ``PROVABLE_ENTRY_GAP`` quanta off or the report's market
    hash is not the recomputed market's (the market itself is then what is wrong).

    ``attested`` is the attested risk-array tree (its root the report's); the first key and column win ties.
    """
    policy_hash = NO_POLICY if output.policy is None else output.policy.policy_hash
    if compute_market_hash(snapshot.market, policy_hash) != report.market_hash:
        return None
    instruments = {instrument_key(iid): inst for iid, inst in snapshot.instruments}
    best: tuple[int, int, int, int] | None = None  # (gap, key, scenario, recomputed)
    for key in sorted(instruments):
        try:
            mine, theirs = output.risk_tree.row_of(key), attested.row_of(key)
        except InputError:
            continue  # a row only one side has: not an entry the contract can recompute
        if len(mine.values) != len(theirs.values):
            continue
        for scenario, (ours, claimed) in enumerate(zip(mine.values, theirs.values, strict=True)):
            gap = abs(claimed - ours)
            if gap >= PROVABLE_ENTRY_GAP and (best is None or gap > best[0]):
                best = (gap, key, scenario, ours)
    if best is None:
        return None
    _, key, scenario, ours = best
    challenge = compute_pricing_challenge(
        attested, snapshot.market, policy_hash, key, instruments[key].underlying, scenario
    )
    return challenge, ours


def find_fraud_proof(
    client: ChainClient,
    deployment: Deployment,
    params: RiskParams,
    block_number: int | None,
    claimed: Callable[[AttestedRound, Sequence[AccountLeaf]], Sequence[ClaimedLeaf]],
    claimed_rows: Callable[[AttestedRound], ClaimedRows | None] | None = None,
) -> ProveResult:
    """Recompute an attested round and return the aggregation fraud proof of the first attested leaf (by
    account) whose MM is below the recomputation's (from the snapshot at B: the contract reads the same holdings at B
    from the ledger's history, so an account changed since B is provable too); when the attested risk
    arrays are not the recomputed ones, the proof is built on the attested rows (``claimed_rows``), and when none
    exists, the pricing challenge of the attested instrument entry farthest from the recomputation
    (``find_wrong_entry``).

    Args:
        client: the chain client.
        deployment: the contracts.
        params: the risk model parameters (the committee's).
        block_number: the round's anchor block; None for the latest attested round.
        claimed: returns the attested leaves (with proofs, or the whole set), as for ``check_round``.
        claimed_rows: returns the attested risk-array rows of the round, the whole set (None: not known), e.g.
            ``load_rows_file`` or ``fetch_node_rows``.

    Returns:
        The proof (None when no leaf can be proven) or the challenge, with what was found.

    Errors:
        InputError("rows") naming their source when ``claimed_rows`` do not rebuild the attested risk-array root;
        DisputeError,
        InputError, ChainError and SnapshotError as ``check_round``.
    """
    attested, snapshot, output = _recompute(client, deployment, params, block_number)
    result = _compare(client, deployment, attested, output, claimed)
    report = read_attested_report(client, deployment, attested)
    rows_match = output.report.risk_arrays_root == report.risk_arrays_root
    risk_tree: RiskArrayTree | None = output.risk_tree if rows_match else None
    rows_given = None if claimed_rows is None else claimed_rows(attested)
    if rows_given is not None:
        risk_tree = RiskArrayTree(rows_given.rows)
        if risk_tree.root != report.risk_arrays_root:
            raise InputError(
                "rows", f"the {len(rows_given.rows)} rows from {rows_given.source} rebuild root "
                f"{_hex(risk_tree.root)}, not the attested riskArraysRoot {_hex(report.risk_arrays_root)} of round "
                f"{attested.block_number}"
            )  # fmt: skip
    claimed_leaves = {c.leaf.account: c for c in claimed(attested, result.leaves)}
    whole = [c.leaf for c in claimed_leaves.values()]
    tree = MerkleTree(whole) if whole and all(c.proof is None for c in claimed_leaves.values()) else None
    understated: list[bytes] = []
    changed: list[bytes] = []
    ledger = deployment.contract(OFFLINE_W3, "MarginAccounts")
    proof = None
    for difference in result.differences:
        mine, theirs = difference.recomputed, difference.attested
        if mine is None or theirs is None or not difference.verified:
            continue
        if theirs.maintenance_margin >= mine.maintenance_margin:
            continue
        understated.append(difference.account)
        changed_at = int(client.call(ledger.functions.changedAt(to_checksum_address(difference.account))))
        if changed_at > attested.block_number:
            changed.append(difference.account)
        if proof is not None or risk_tree is None:
            continue
        given = claimed_leaves[difference.account].proof
        account_proof = given if given is not None else tree.proof(difference.account) if tree else []
        holdings = read_holdings(client, deployment, snapshot, difference.account)
        try:
            proof = compute_fraud_proof(theirs, account_proof, risk_tree, holdings, MONEY_TO_LEAF)
        except InputError:
            continue  # the attested tree has no row for a holding: not provable by aggregation
    found = ProveResult(attested, report, proof, tuple(understated), tuple(changed), rows_match,
                        rows_source=None if rows_given is None else rows_given.source)  # fmt: skip
    if proof is None and not rows_match and risk_tree is not None:
        wrong = find_wrong_entry(snapshot, output, risk_tree, report)
        if wrong is not None:
            found = dataclasses.replace(found, challenge=wrong[0], recomputed_entry=wrong[1])
    return found
