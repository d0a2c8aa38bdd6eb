"""The adaptive policy in the node: every underlying's policy state, kept from the chain's ``IndexSet`` logs (and
with ``[policy.vol]`` its ``SmileSet`` logs) up to each round's anchor block and checkpointed in the data directory
(docs/policy.md).

The maths is the pure state machine of :mod:`pmoracle.risk.policy`; this module reads the logs, carries the
tracks from round to round, and stores them. A checkpoint only saves work: it is bound to the chain, the
MarketFeeds contract, the parameters document and the block hash it was taken at, and one that is corrupt or
foreign is refused and the states are recomputed from the chain, so resuming from it equals recomputing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_canonical_address, to_checksum_address

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.index_history import read_index_updates, read_smile_updates
from pmoracle.errors import InputError
from pmoracle.risk.params import RiskParams
from pmoracle.risk.policy import (
    HistoryError,
    PolicyRound,
    PolicyState,
    PolicyStateError,
    PolicyTrack,
    Sample,
    SmileQuote,
    advance_track,
    compute_iv_tenor_seconds,
    decode_policy_state,
    encode_policy_state,
    start_track,
)
from pmoracle.storage.sqlite import SqliteStore

log = logging.getLogger("pmoracle.node")

CHECKPOINT_VERSION = 2  # 2: each track carries its smiles ([policy.vol]); a version-1 checkpoint is refused
# version, chain id, MarketFeeds, paramsHash, block, block hash, tracks (underlying, next point, last update time,
# last update price, canonical state bytes or empty before the first sampling point, smiles: the last SmileSet of
# each expiry after the next point as (expiry, a, b, rho, m, sigma, time), in expiry order; empty without
# [policy.vol])
SMILE_ABI = "(uint64,int256,int256,int256,int256,int256,uint256)"
CHECKPOINT_ABI = ("uint256", "uint256", "address", "bytes32", "uint256", "bytes32",
                  f"(string,uint256,uint256,uint256,bytes,{SMILE_ABI}[])[]")  # fmt: skip

READ_TIMEOUT = 120.0  # seconds to read the logs of one round (the first round reads the whole history)


class PolicyCheckpointError(InputError):
    """Raised when a policy checkpoint is corrupt, or was taken on another chain, contract, model or history."""


class PolicyHistoryError(InputError):
    """Raised when an underlying's on-chain index history cannot be sampled (a stale index at a sampling point)."""


@dataclass(frozen=True, slots=True)
class PolicyCheckpoint:
    """Every underlying's track after the chain was read up to ``block_number``, bound to that block's hash."""

    chain_id: int
    feeds: bytes  # the MarketFeeds address (20 bytes)
    params_hash: bytes  # the parameters document (its [policy] and its max_feed_age_seconds)
    block_number: int
    block_hash: bytes
    tracks: tuple[PolicyTrack, ...]  # in symbol order, one per underlying with an IndexSet log

    def to_round(self) -> PolicyRound:
        """Return the policy of the round anchored at this checkpoint's block."""
        return PolicyRound(self.block_number, tuple(t.state for t in self.tracks if t.state is not None))


def encode_checkpoint(checkpoint: PolicyCheckpoint) -> bytes:
    """Return the checkpoint's ABI encoding (the bytes the data directory stores)."""
    tracks = []
    for t in checkpoint.tracks:
        if t.next_point is None or t.last_update is None:  # a stored track has read an update
            raise PolicyCheckpointError(f"checkpoint.{t.underlying}", "a track without any update is not stored")
        state = b"" if t.state is None else encode_policy_state(t.state)
        smiles = [(q.expiry, q.a, q.b, q.rho, q.m, q.sigma, q.time) for q in t.smiles]
        tracks.append((t.underlying, t.next_point, t.last_update.time, t.last_update.price, state, smiles))
    return abi_encode(
        CHECKPOINT_ABI,
        (CHECKPOINT_VERSION, checkpoint.chain_id, to_checksum_address(checkpoint.feeds), checkpoint.params_hash,
         checkpoint.block_number, checkpoint.block_hash, tracks),
    )  # fmt: skip


def decode_checkpoint(params: RiskParams, data: bytes) -> PolicyCheckpoint:
    """Return the checkpoint ``data`` encodes; raise ``PolicyCheckpointError`` unless it is canonical, of these
    parameters, and every track is consistent (its state the policy's, at the point before its next one)."""
    policy = params.policy
    if policy is None:
        raise PolicyCheckpointError("checkpoint", "the parameters have no [policy] section")
    try:
        version, chain_id, feeds, params_hash, block, block_hash, raw_tracks = abi_decode(CHECKPOINT_ABI, data)
    except Exception as exc:  # eth_abi raises several unrelated types for malformed input
        raise PolicyCheckpointError("checkpoint", f"not an ABI-encoded checkpoint: {exc}") from None
    if version != CHECKPOINT_VERSION:  # one encoding version exists
        raise PolicyCheckpointError("checkpoint.version", f"{version} is not {CHECKPOINT_VERSION}")
    if params_hash != params.params_hash:  # the states depend on the whole document's policy and staleness limit
        raise PolicyCheckpointError("checkpoint.params_hash", f"0x{params_hash.hex()} is not these parameters'")
    tracks = []
    for underlying, next_point, last_time, last_price, state_bytes, raw_smiles in raw_tracks:
        where = f"checkpoint.{underlying}"
        try:
            state = decode_policy_state(policy, state_bytes) if state_bytes else None
        except PolicyStateError as exc:
            raise PolicyCheckpointError(where, f"{exc.field}: {exc.message}") from None
        if state is not None and state.underlying != underlying:  # a state sits under its own symbol
            raise PolicyCheckpointError(where, f"holds the state of {state.underlying}")
        if next_point % policy.sample_interval_seconds:  # sampling points are multiples of the interval
            raise PolicyCheckpointError(where, f"next point {next_point} is not a sampling point")
        if state is not None and state.time + policy.sample_interval_seconds != next_point:  # no point skipped
            raise PolicyCheckpointError(where, f"state at {state.time} does not precede the next point {next_point}")
        if last_price <= 0:  # an index price is positive
            raise PolicyCheckpointError(where, f"last price {last_price} is not positive")
        smiles = tuple(SmileQuote(*raw) for raw in raw_smiles)
        if smiles and policy.vol is None:  # smiles are kept for [policy.vol] only
            raise PolicyCheckpointError(where, "holds smiles, but the policy has no [policy.vol]")
        if [q.expiry for q in smiles] != sorted({q.expiry for q in smiles}):  # one quote per expiry, in order
            raise PolicyCheckpointError(where, "smiles not in strict expiry order")
        if smiles and smiles[0].expiry <= next_point:  # an expiry at or before the next point is never live again
            raise PolicyCheckpointError(where, f"smile of expiry {smiles[0].expiry} is not after {next_point}")
        if any(q.time > next_point for q in smiles):  # read before the next point
            raise PolicyCheckpointError(where, f"a smile is written after the next point {next_point}")
        tracks.append(PolicyTrack(underlying, next_point, Sample(last_time, last_price), state, smiles))
    if [t.underlying for t in tracks] != sorted({t.underlying for t in tracks}):  # symbol order, no repeats
        raise PolicyCheckpointError("checkpoint.tracks", "not in strict symbol order")
    checkpoint = PolicyCheckpoint(chain_id, to_canonical_address(feeds), params_hash, block, block_hash, tuple(tracks))
    if encode_checkpoint(checkpoint) != bytes(data):  # one checkpoint, one encoding
        raise PolicyCheckpointError("checkpoint", "not the canonical encoding of its content")
    return checkpoint


def advance_checkpoint(
    client: ChainClient,
    deployment: Deployment,
    params: RiskParams,
    checkpoint: PolicyCheckpoint | None,
    block_number: int,
    block_hash: bytes,
    timestamp: int,
) -> PolicyCheckpoint:
    """Read the ``IndexSet`` logs (with ``[policy.vol]`` also the ``SmileSet`` logs) after ``checkpoint`` up to
    ``block_number`` and advance every track to the sampling points before ``timestamp`` (the block's).

    Args:
        client: the JSON-RPC client.
        deployment: the contract addresses (MarketFeeds).
        params: the parameters document; it must have a [policy] section.
        checkpoint: the tracks at an earlier block (None: read the whole history from the deployment's block).
        block_number: the round's anchor block.
        block_hash: its hash (bound into the returned checkpoint).
        timestamp: its timestamp.

    Returns:
        The checkpoint at ``block_number``.

    Errors:
        PolicyHistoryError naming the underlying when its index is stale at a sampling point; ChainError and
        SnapshotError when the logs cannot be read.
    """
    policy = params.policy
    if policy is None:
        raise InputError("params", "the parameters document has no [policy] section")
    if checkpoint is not None and checkpoint.block_number >= block_number:  # checkpoints only move forward
        raise InputError("checkpoint", f"block {checkpoint.block_number} is not before {block_number}")
    feeds = deployment.contracts["MarketFeeds"]
    start = deployment.deploy_block if checkpoint is None else checkpoint.block_number + 1  # no log before it
    updates: dict[str, list[Sample]] = {}
    for update in read_index_updates(client, feeds, block_number, from_block=start):
        updates.setdefault(update.underlying, []).append(Sample(time=update.time, price=update.price))
    smiles: dict[str, list[SmileQuote]] = {}
    tenor = None
    if policy.vol is not None:  # the IV samples: the smiles' ATM vol at the engine's vol.tenor_days
        tenor = compute_iv_tenor_seconds(params.vol_tenor_days)
        for smile in read_smile_updates(client, feeds, block_number, from_block=start):
            smiles.setdefault(smile.underlying, []).append(smile.quote)
    tracks = {t.underlying: t for t in checkpoint.tracks} if checkpoint is not None else {}
    for symbol in sorted(set(tracks) | set(updates)):
        track = tracks.get(symbol) or start_track(symbol)
        try:
            tracks[symbol] = advance_track(policy, track, updates.get(symbol, []), timestamp,
                                           params.max_feed_age_seconds, smiles.get(symbol, ()), tenor)  # fmt: skip
        except HistoryError as exc:
            raise PolicyHistoryError(f"policy.{symbol}", exc.message) from None
    return PolicyCheckpoint(
        chain_id=client.chain_id, feeds=to_canonical_address(feeds), params_hash=params.params_hash,
        block_number=block_number, block_hash=block_hash, tracks=tuple(tracks[s] for s in sorted(tracks)),
    )  # fmt: skip


def read_policy_round(
    client: ChainClient, deployment: Deployment, params: RiskParams, block_number: int
) -> PolicyRound:
    """Return the policy at ``block_number`` recomputed from the chain alone (the dispute tool, the devnet auditor).

    Errors: as :func:`advance_checkpoint`; ChainError when the block does not exist.
    """
    header = client.get_block(block_number)
    return advance_checkpoint(client, deployment, params, None, block_number, header.hash, header.timestamp).to_round()


class PolicyCheckpointStore(SqliteStore):
    """The latest policy checkpoint, one row replaced atomically (SQLite transaction, synchronous FULL), stored with
    its keccak256: a flipped bit that still decodes canonically is caught by the digest, not trusted."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS policy_checkpoint (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        data BLOB NOT NULL,
        digest BLOB NOT NULL
    )
    """
    SYNCHRONOUS = "FULL"

    def load(self) -> bytes | None:
        """Return the stored checkpoint's bytes, or None when there is none.

        Errors:
            PolicyCheckpointError when the bytes do not match their stored digest.
        """
        row = self._db.execute("SELECT data, digest FROM policy_checkpoint WHERE id = 1").fetchone()
        if row is None:
            return None
        data, digest = bytes(row[0]), bytes(row[1])
        if keccak(data) != digest:  # damaged on disk
            raise PolicyCheckpointError("checkpoint", f"its digest 0x{digest.hex()} does not match its bytes")
        return data

    def save(self, data: bytes) -> None:
        """Replace the stored checkpoint with ``data`` (all underlyings at once, or nothing)."""
        self._db.execute("INSERT OR REPLACE INTO policy_checkpoint (id, data, digest) VALUES (1, ?, ?)",
                         (data, keccak(data)))  # fmt: skip


class PolicyTracker:
    """The node's policy shell: the states at each round's anchor block, resumed from the checkpoint when it is
    valid for this chain and history, recomputed from the chain otherwise.

    ``at`` runs on the trio thread (the SQLite file is used there only); chain reads run in worker threads.
    """

    def __init__(self, client: ChainClient, deployment: Deployment, params: RiskParams, path: Path) -> None:
        """Args:
        client: the JSON-RPC client.
        deployment: the contract addresses (MarketFeeds).
        params: the parameters document (with a [policy] section).
        path: the checkpoint database (``policy.sqlite`` in the data directory).
        """
        if params.policy is None:
            raise InputError("params", "the parameters document has no [policy] section")
        self.client = client
        self.deployment = deployment
        self.params = params
        self.store = PolicyCheckpointStore(path)
        self.checkpoint: PolicyCheckpoint | None = None  # the latest one, once loaded or computed
        self.refused_checkpoints = 0  # stored checkpoints refused (corrupt, foreign, off the canonical chain)
        self._loaded = False

    def close(self) -> None:
        """Close the checkpoint database."""
        self.store.close()

    def _load(self) -> PolicyCheckpoint | None:
        try:
            data = self.store.load()
            if data is None:
                return None
            checkpoint = decode_checkpoint(self.params, data)
        except PolicyCheckpointError as exc:
            self.refused_checkpoints += 1
            log.warning("policy checkpoint refused, recomputing from the chain: %s", exc)
            return None
        feeds = to_canonical_address(self.deployment.contracts["MarketFeeds"])
        if (checkpoint.chain_id, checkpoint.feeds) != (self.client.chain_id, feeds):  # another chain's history
            self.refused_checkpoints += 1
            log.warning("policy checkpoint refused: taken on chain %d, MarketFeeds %s; recomputing from the chain",
                        checkpoint.chain_id, to_checksum_address(checkpoint.feeds))  # fmt: skip
            return None
        return checkpoint

    async def _usable(self, block_number: int) -> PolicyCheckpoint | None:
        """Return the checkpoint to resume from for a round at ``block_number`` (None: from the chain's start)."""
        if not self._loaded:
            self.checkpoint = self._load()
            self._loaded = True
        checkpoint = self.checkpoint
        if checkpoint is None or checkpoint.block_number >= block_number:  # an older round: recompute it
            return None
        header = await run_sync(self.client.get_block, checkpoint.block_number, timeout=READ_TIMEOUT)
        if header.hash != checkpoint.block_hash:  # the checkpoint's block is no longer canonical (or another chain)
            self.refused_checkpoints += 1
            log.warning("policy checkpoint at block %d refused: its hash 0x%s is not the chain's 0x%s",
                        checkpoint.block_number, checkpoint.block_hash.hex(), header.hash.hex())  # fmt: skip
            self.checkpoint = None
            return None
        return checkpoint

    async def at(self, block_number: int, block_hash: bytes, timestamp: int) -> PolicyRound:
        """Return the policy at the round's anchor block and checkpoint it.

        Args:
            block_number: the anchor block B.
            block_hash: B's hash (the snapshot's).
            timestamp: B's timestamp (the snapshot's).

        Returns:
            Every underlying's state at B.

        Errors:
            PolicyHistoryError naming the underlying whose index is stale at a sampling point (the round is not
            signed); ChainError when the chain cannot be read.
        """
        resume = await self._usable(block_number)
        checkpoint = await run_sync(advance_checkpoint, self.client, self.deployment, self.params, resume,
                                    block_number, block_hash, timestamp, timeout=READ_TIMEOUT)  # fmt: skip
        if self.checkpoint is None or checkpoint.block_number > self.checkpoint.block_number:
            self.store.save(encode_checkpoint(checkpoint))
            self.checkpoint = checkpoint
        return checkpoint.to_round()


# --- the published form (node API, dispute tool) --------------------------------------------------------------


def policy_round_to_json(policy: PolicyRound) -> dict[str, Any]:
    """Return the JSON a node publishes for a round's policy: the hash and every state, canonical bytes included."""
    return {
        "blockNumber": policy.block_number,
        "policyHash": "0x" + policy.policy_hash.hex(),
        "states": [
            {
                "underlying": s.underlying,
                "scanRange": str(s.scan_range),
                "volShift": str(s.vol_shift),
                "stressed": s.stressed,
                "count": s.count,
                "time": s.time,
                "stateHash": "0x" + s.state_hash.hex(),
                "state": "0x" + encode_policy_state(s).hex(),
            }
            for s in policy.states
        ],
    }


def policy_round_from_json(params: RiskParams, body: Any) -> tuple[PolicyRound, bytes]:
    """Return the policy a node published and the hash it claimed; raise ``InputError`` naming a malformed field.

    Each state is decoded from its canonical bytes (and must be a state of these parameters' policy).
    """
    if params.policy is None:
        raise InputError("params", "the parameters document has no [policy] section")
    try:
        block = int(body["blockNumber"])
        claimed = bytes.fromhex(str(body["policyHash"]).removeprefix("0x"))
        raw_states = list(body["states"])
    except (KeyError, TypeError, ValueError) as exc:
        raise InputError("policy", f"malformed policy JSON: {exc!r}") from None
    states: list[PolicyState] = []
    for i, raw in enumerate(raw_states):
        try:
            data = bytes.fromhex(str(raw["state"]).removeprefix("0x"))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"policy.states[{i}]", f"malformed state: {exc!r}") from None
        states.append(decode_policy_state(params.policy, data))
    return PolicyRound(block, tuple(states)), claimed


# --- the dispute tool's check ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyDifference:
    """One underlying whose published state differs from the recomputed one (None: absent on that side)."""

    underlying: str
    recomputed: PolicyState | None
    published: PolicyState | None


@dataclass(frozen=True, slots=True)
class PolicyCheck:
    """The verdict on a node's published policy at one anchor block (or the recomputation alone)."""

    recomputed: PolicyRound
    published: PolicyRound | None  # None: nothing to compare (no node given)
    claimed_hash: bytes | None  # the policyHash the node published
    differences: tuple[PolicyDifference, ...]

    @property
    def holds(self) -> bool:
        """Check if the node published exactly the recomputed states and their hash (True without a node)."""
        if self.published is None:
            return True
        return not self.differences and self.claimed_hash == self.recomputed.policy_hash

    def to_json(self) -> dict[str, Any]:
        """Return the verdict as JSON: the recomputed policy, and the node's claims and differences if any."""
        out: dict[str, Any] = {"holds": self.holds, "recomputed": policy_round_to_json(self.recomputed)}
        if self.published is not None:
            out["claimedPolicyHash"] = "0x" + (self.claimed_hash or b"").hex()
            out["differences"] = [
                {
                    "underlying": d.underlying,
                    "recomputedStateHash": None if d.recomputed is None else "0x" + d.recomputed.state_hash.hex(),
                    "publishedStateHash": None if d.published is None else "0x" + d.published.state_hash.hex(),
                    "recomputedScanRange": None if d.recomputed is None else str(d.recomputed.scan_range),
                    "publishedScanRange": None if d.published is None else str(d.published.scan_range),
                    "recomputedVolShift": None if d.recomputed is None else str(d.recomputed.vol_shift),
                    "publishedVolShift": None if d.published is None else str(d.published.vol_shift),
                }
                for d in self.differences
            ]
        return out


def compare_policy(recomputed: PolicyRound, published: PolicyRound) -> tuple[PolicyDifference, ...]:
    """Return the underlyings whose states differ between the two rounds, in symbol order."""
    symbols = sorted({s.underlying for s in recomputed.states} | {s.underlying for s in published.states})
    return tuple(
        PolicyDifference(symbol, mine, theirs)
        for symbol in symbols
        if (mine := recomputed.state_of(symbol)) != (theirs := published.state_of(symbol))
    )


def fetch_node_policy(api_url: str, params: RiskParams, block_number: int, *, timeout: float = 10.0) -> Any:
    """Return the policy a node's ``GET /v1/policy/{block}`` serves and the hash it claims.

    Errors:
        InputError naming the node's URL when it cannot be reached, does not keep the round, answers for another
        round, or answers something that is not a policy of these parameters.
    """
    import json
    import urllib.error
    import urllib.request

    url = f"{api_url.rstrip('/')}/v1/policy/{block_number}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise InputError("--node", f"{url}: HTTP {exc.code} (the node keeps the policy of its last 8 rounds)") from None
    except (urllib.error.URLError, OSError, json.JSONDecodeError) as exc:
        raise InputError("--node", f"{url}: {exc}") from None
    try:
        published, claimed = policy_round_from_json(params, body)
    except InputError as exc:
        raise InputError("--node", f"{url}: {exc}") from None
    if published.block_number != block_number:  # the node answered for the round asked
        raise InputError("--node", f"{url} serves round {published.block_number}, not {block_number}")
    return published, claimed


def check_policy(
    client: ChainClient,
    deployment: Deployment,
    params: RiskParams,
    block_number: int,
    published: tuple[PolicyRound, bytes] | None = None,
) -> PolicyCheck:
    """Recompute the policy at ``block_number`` from the chain alone and compare it with what a node published.

    Args:
        client: the JSON-RPC client.
        deployment: the contract addresses.
        params: the committee's parameters document (with a [policy] section).
        block_number: the round's anchor block.
        published: the node's states at that block and the hash it claimed (see :func:`fetch_node_policy`).

    Returns:
        The recomputed states, and every underlying whose published state differs.

    Errors:
        PolicyHistoryError when the chain's history cannot be sampled at that block (no honest node signs the
        round then); ChainError when the chain cannot be read.
    """
    recomputed = read_policy_round(client, deployment, params, block_number)
    if published is None:
        return PolicyCheck(recomputed, None, None, ())
    states, claimed = published
    return PolicyCheck(recomputed, states, claimed, compare_policy(recomputed, states))
