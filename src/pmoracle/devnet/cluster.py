"""The one-command devnet: anvil, contracts, staked node identities, a moving market, N node processes.

``pmoracle devnet`` (the README's ``make demo``) builds everything in a fresh run directory, starts ``--nodes``
``pmoracle node`` OS processes talking libp2p on 127.0.0.1, drives a feeder and a trader, and audits every
attested round by recomputing it independently from the chain. Ctrl-C or SIGTERM stops every child.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_utils import keccak

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import event_topic
from pmoracle.chain.deploy import Deployment, NodeSpec, deploy
from pmoracle.chain.errors import ContractError
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.config.params import default_params_text
from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.frost_dkg import DkgResult
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.devnet.devchain import Devchain, start_devchain
from pmoracle.devnet.lifecycle import Lifecycle, friday_expiries, vol_spike_params_text
from pmoracle.devnet.liquidations import LiquidationDesk
from pmoracle.devnet.netlab import NetLab
from pmoracle.devnet.ports import reserve_port
from pmoracle.devnet.processes import StopRequested, signal_group, spawn, supervise, terminate
from pmoracle.devnet.table import LiveTable, format_summary, format_table
from pmoracle.devnet.world import World
from pmoracle.errors import PmoracleError
from pmoracle.node.daemon import OFFLINE_W3, read_committee
from pmoracle.node.datadir import api_port_path, read_api_port
from pmoracle.node.frost_keys import write_frost_share
from pmoracle.node.keys import KeyKind, compute_peer_id, write_key_file
from pmoracle.node.policy import read_policy_round
from pmoracle.node.round import RoundOutput, compute_round
from pmoracle.risk.inputs import MONEY_SCALE
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.policy import RANGE_SCALE, PolicyRound

# anvil's first dev account (from the public "test ... junk" mnemonic): deployer, feeder and matcher.
DEPLOYER_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
DEVNET_PASSWORD = "pmoracle-devnet"  # devnet key files only; never a production password
LIGHT_KDF_ITERATIONS = 4096
LIQUIDATION_ROUNDS = 6  # --days: rounds after the last market step in which the keeper finishes its auctions
AWAIT_ROUND_S = 20.0  # --days: seconds to wait for the awaited round before awaiting the next anchor
POLICY_POLL_S = 10.0  # [policy]: seconds to wait for every node to publish an attested round's policy


DEVNET_DEVIATION_DELAY = 4  # seconds: see DevnetOptions.deviation_delay


def compute_rpc_timeout(accounts: int) -> float:
    """Return the seconds the devnet and its nodes wait for one JSON-RPC answer with ``accounts`` accounts.

    anvil answers nothing while it mines a block, and its work per block grows with the state (an empty block
    1.1 s at 10,000 accounts on this loaded 2-core machine, 2026-12-05): 10 s up to 10,000 accounts, then 1 s
    more per 1,800 (60 s at 100,000).
    """
    return 10.0 + max(0, accounts - 10_000) / 1_800


class DevnetError(PmoracleError):
    """Raised when the devnet cannot be built or a node process dies unexpectedly."""


@dataclass(frozen=True)
class DevnetOptions:
    """What ``pmoracle devnet`` builds and how long it runs."""

    nodes: int = 4
    accounts: int = 300
    trades_per_step: int = 3  # random trades of the world's trading steps (every third block)
    duration: float | None = 60.0  # seconds; None runs until --rounds or a signal
    rounds: int | None = None  # stop after this many attested rounds
    round_period: int = 5  # blocks between anchor blocks
    finality_depth: int = 2
    block_interval: float = 1.0  # seconds between blocks when nothing else mines one
    stage_delay: float = 1.0
    # SolverRegistry's deviation window, seconds (docs/dispute.md, "Slashing race"): long enough for an honest
    # node's fraud proof to land first on a loaded 2-core machine (measured 0.96 s, 2 blocks), short enough for an
    # outvoted liar to be slashed within a round or two
    deviation_delay: int = DEVNET_DEVIATION_DELAY
    # incremental snapshots between background checks by a full read; operators default to 32
    full_snapshot_every: int = 4
    seed: int = 1
    run_dir: Path | None = None
    quiet: bool = False
    # TEST-ONLY fault injection: (count or node indices, mode) pairs: the listed nodes, or (a count) the last nodes
    # not listed, run pmoracle.devnet.faults in that mode
    faulty: tuple[tuple[int | tuple[int, ...], str], ...] = ()
    # each node in its own network namespace (pmoracle.devnet.netlab; only inside netlab.run_inside), so that the
    # reliability scenarios can partition the network for real
    private_network: bool = False
    # market days to live through (pmoracle.devnet.lifecycle): chain time moves one step between attested rounds
    days: float | None = None
    step_hours: float = 12.0
    summary: Path | None = None  # where the --days run writes its JSON summary
    # with days: "crash" drops one underlying ~25% with a volatility spike mid-run; "vol-spike" triples one
    # underlying's volatility mid-run (no jump) and the nodes run the adaptive policy ([policy], docs/policy.md)
    scenario: str | None = None
    # the committee signs its certificates with ECDSA only (no DKG, no group key registered); by default the nodes
    # start with an ECDSA committee, run the DKG over gossip themselves, confirm the key on chain (the registry
    # installs it) and attest with FROST (ECDSA one stage later as fallback)
    ecdsa: bool = False
    dkg_in_process: bool = False  # FROST: the old shortcut (the whole DKG in this process, key registered at deploy)

    def fault_of(self, index: int) -> str | None:
        """Return the injected fault mode of node ``index`` (None for an honest node)."""
        listed = {i: mode for spec, mode in self.faulty if isinstance(spec, tuple) for i in spec}
        if index in listed:
            return listed[index]
        modes = [mode for spec, mode in self.faulty if isinstance(spec, int) for _ in range(spec)]
        position = sum(1 for i in range(index + 1, self.nodes) if i not in listed)
        return modes[position] if position < len(modes) else None


@dataclass
class NodeProcess:
    """One ``pmoracle node`` child process and its files."""

    index: int
    home: Path
    signing_address: str
    p2p_port: int  # reserved beforehand: the node's multiaddr is registered on chain
    process: subprocess.Popen[bytes] | None = None
    fault: str | None = None  # TEST-ONLY: run pmoracle.devnet.faults in this mode
    fault_args: tuple[str, ...] = ()
    host: str = "127.0.0.1"  # the address its API and libp2p listen on
    command_prefix: tuple[str, ...] = ()  # e.g. `ip netns exec pmo-0`: where the process runs
    api_listen_port: int = 0  # the [api] port of its config (0: any; fixed when its peers prove from its API)
    _api_port: int | None = None

    @property
    def log_path(self) -> Path:
        """Return the node's log file."""
        return self.home / "node.log"

    def start(self) -> None:
        """Start the node process (its output goes to node.log) in its own process group."""
        self._api_port = None
        api_port_path(self.data_dir).unlink(missing_ok=True)  # a killed process's file must not be read as ours
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        command = [sys.executable, "-m", "pmoracle.cli", "node"]
        if self.fault is not None:  # the hidden, test-only entry point of fault injection
            command = [sys.executable, "-m", "pmoracle.devnet.faults", "--mode", self.fault, *self.fault_args]
        self.process = spawn(
            [*self.command_prefix, *command, "--config", str(self.home / "node.toml")],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )  # fmt: skip
        log.close()

    @property
    def data_dir(self) -> Path:
        """Return the node's data directory (node.toml's ``data_dir``)."""
        return self.home / "data"

    @property
    def api_port(self) -> int | None:
        """Return the port the current process's API bound (``api.port = 0``; None until it is listening)."""
        if self._api_port is None:
            self._api_port = read_api_port(self.data_dir)
        return self._api_port

    def api_url(self, path: str) -> str | None:
        """Return the URL of ``path`` on the node's API (None until the API listens)."""
        port = self.api_port
        return None if port is None else f"http://{self.host}:{port}{path}"

    def kill(self, sig: int = signal.SIGKILL, *, grace: float = 10.0) -> None:
        """Send ``sig`` to the node process's group and reap it (SIGKILL when it outlives ``grace`` seconds)."""
        if self.process is not None and self.process.poll() is None:
            signal_group(self.process, sig)
            terminate([self.process], grace=grace)

    @property
    def alive(self) -> bool:
        """Check if the node process is running."""
        return self.process is not None and self.process.poll() is None

    def get_text(self, path: str, timeout: float = 1.0) -> str | None:
        """Return the text answer of the node's API at ``path`` (None when it does not answer)."""
        url = self.api_url(path)
        if url is None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return str(response.read().decode())
        except (OSError, ValueError):
            return None

    def get(self, path: str, timeout: float = 1.0) -> Any:
        """Return the JSON answer of the node's API at ``path`` (None when it does not answer)."""
        url = self.api_url(path)
        if url is None:
            return None
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"null")
        except (OSError, ValueError):
            return None


@dataclass
class AttestedRound:
    """An attested round as the devnet saw it, with its independent recomputation."""

    block_number: int
    accounts: int
    root: bytes
    recomputed_root: bytes
    total_im: int  # MONEY
    total_mm: int
    total_equity: int
    latency: float  # seconds from the anchor block being final to the attestation being seen
    gas: int
    scheme: str = "ecdsa"  # the path that attested it, from its RoundAttested event: "frost" or "ecdsa"
    policy: PolicyRound | None = None  # the adaptive policy's states at B, recomputed from chain ([policy] only)
    node_policy_hashes: tuple[bytes | None, ...] = ()  # what each node published on /v1/policy/B (None: nothing)

    @property
    def verified(self) -> bool:
        """Check if the attested root equals the devnet's own recomputation."""
        return self.root == self.recomputed_root

    @property
    def policy_identical(self) -> bool:
        """Check if every node that computed this round published the recomputed policy hash, and one did (True
        without a policy). A node outside the quorum may skip a round attested before it got to it: it publishes
        nothing for it, which is no disagreement (the attested report's marketHash binds the quorum's hash)."""
        if self.policy is None:
            return True
        published = [h for h in self.node_policy_hashes if h is not None]
        return bool(published) and all(h == self.policy.policy_hash for h in published)


OFFENCES = ("equivocation", "deviation", "fraud")  # SolverRegistry.Offence, by value
SCHEMES = {0: "ecdsa", 1: "frost"}  # MarginOracle.SCHEME_ECDSA, SCHEME_FROST (RoundAttested's scheme)


@dataclass(frozen=True, slots=True)
class Slashing:
    """A ``Slashed`` event the devnet saw on chain: the evidence some node posted, and what it cost the offender."""

    block: int  # the block the evidence transaction landed in
    signer: str  # the offender's signing address
    node: int | None  # the offender's devnet node index (None: not one of the devnet's nodes)
    offence: str  # "equivocation" | "deviation" | "fraud"
    round: int  # the anchor block of the round the offence was committed in
    amount: int  # wei taken from the stake

    def describe(self) -> str:
        """Return one line for the live table."""
        who = f"node {self.node}" if self.node is not None else self.signer
        return (f"{who} slashed for {self.offence} in round {self.round} "
                f"({self.amount / 10**18:,.2f} ETH, block {self.block})")  # fmt: skip


@dataclass
class Devnet:
    """A running devnet: chain, contracts, world, node processes, and what was attested so far."""

    options: DevnetOptions
    run_dir: Path
    chain: Devchain
    deployment: Deployment
    params: RiskParams
    committee: CommitteeConfig
    world: World
    nodes: list[NodeProcess]
    client: ChainClient
    netlab: NetLab | None = None  # the private network, with DevnetOptions.private_network
    lifecycle: Lifecycle | None = None  # with DevnetOptions.days: the market lives through days between rounds
    liquidations: LiquidationDesk | None = None  # with DevnetOptions.days: the keeper acting after every round
    attested: list[AttestedRound] = field(default_factory=list)
    outputs: dict[int, RoundOutput] = field(default_factory=dict)  # the latest audited rounds' recomputations
    _awaited_anchor: int | None = None  # days mode: the anchor whose attestation the next market step waits for
    _awaited_since: float = 0.0
    _rounds_after_days: int = 0  # rounds the keeper was given after the last market step
    _keeper_round: int = 0  # the latest round the keeper acted on
    slashings: list[Slashing] = field(default_factory=list)
    accountability: dict[str, Any] | None = None  # run_devnet's last chain read: accountability_summary's keys
    _evidence_scanned: int = 0  # the last block whose Slashed events are in ``slashings``
    _ready_at: dict[int, float] = field(default_factory=dict)
    _seen_head: int = 0
    _last_block_at: float = 0.0
    nodes_started_at: float = 0.0  # time.monotonic() when the node processes were started
    key_installed_s: float | None = None  # the nodes' own DKG: seconds from their start to the key installed
    first_frost_s: float | None = None  # seconds from the nodes' start to the first FROST-attested round audited
    audit_after: int = 0  # rounds at or below this block are not audited (attested during the setup, e.g. the DKG)
    mine_blocks: bool = True  # the loop mines/steps the world every block interval (tests may pause it)

    @property
    def runs_own_dkg(self) -> bool:
        """Check if the nodes run the DKG and install their FROST key themselves (the default)."""
        return not self.options.ecdsa and not self.options.dkg_in_process

    def await_group_key(self, say: Callable[[str], None], *, timeout: float | None = None) -> None:
        """With the nodes' own DKG: wait until they installed their group key (``key_installed_s``, ``committee``);
        the rounds the keyless committee attested meanwhile belong to the setup and are not audited. Nothing to do
        otherwise, or when the key is already installed.

        Errors:
            DevnetError when ``timeout`` seconds (default: one DKG timeout + 60 s) pass first, or a node exited.
        """
        if not self.runs_own_dkg or self.key_installed_s is not None:
            return
        self.committee = await_group_key(self.client, self.deployment, self.nodes, say,
                                         timeout=DKG_TIMEOUT + 60.0 if timeout is None else timeout)  # fmt: skip
        self.key_installed_s = time.monotonic() - self.nodes_started_at
        self.audit_after = self.latest_round()[0]
        if self.audit_after:
            say(f"devnet: rounds up to {self.audit_after} were attested with ECDSA while the nodes ran the DKG "
                "(setup: not audited)")  # fmt: skip

    # --- chain reads ------------------------------------------------------------------------------------------

    def latest_round(self) -> tuple[int, bytes, int]:
        """Return (block number, accounts root, account count) of the latest attested round (0 if none)."""
        oracle = self.deployment.contract(OFFLINE_W3, "MarginOracle")
        try:
            view = self.client.call(oracle.functions.latestRound(), "latest")
        except ContractError as exc:
            if exc.name == "NoAttestedRound":
                return 0, bytes(32), 0
            raise
        return int(view[0]), bytes(view[1]), int(view[5])

    def recompute(self, block_number: int) -> RoundOutput:
        """Return the round at ``block_number`` recomputed from chain state alone (what an auditor does)."""
        snapshot = read_snapshot(self.client, self.deployment, block_number)
        policy = None
        if self.params.policy is not None:  # the adaptive policy's states, recomputed from the chain's first block
            policy = read_policy_round(self.client, self.deployment, self.params, block_number)
        return compute_round(snapshot, self.params, self.committee, policy)

    def attestation(self, block_number: int) -> tuple[int, str]:
        """Return (gas used, scheme) of the transaction that attested ``block_number``: the scheme is its
        ``RoundAttested`` event's, "frost" or "ecdsa" ((0, "") if the event cannot be found)."""
        topic = "0x" + event_topic("MarginOracle", "RoundAttested").hex()
        logs = self.client.request(
            "eth_getLogs",
            [{"address": self.deployment.contracts["MarginOracle"], "fromBlock": hex(block_number),
              "toBlock": "latest", "topics": [topic, "0x" + block_number.to_bytes(32, "big").hex()]}],
        )  # fmt: skip
        if not logs:
            return 0, ""
        receipt = self.client.request("eth_getTransactionReceipt", [logs[0]["transactionHash"]])
        event = _decode_log(self.deployment.contract(OFFLINE_W3, "MarginOracle").events.RoundAttested(), logs[0])
        return int(receipt["gasUsed"], 16), SCHEMES.get(int(event["args"]["scheme"]), "unknown")

    # --- the loop ---------------------------------------------------------------------------------------------

    def step(self, head: int) -> None:
        """Advance the world by one step: a market move, some trades, or an empty block.

        With a lifecycle (``--days``), the market instead lives one step of market time once the awaited round is
        attested and audited, then blocks are mined up to the next anchor's finality, and nothing moves until the
        nodes attest it: every anchor gets its round, computed on a state that no longer changes.
        """
        if self.lifecycle is not None:
            self._live(head)
            return
        if head % 3 == 0:
            self.world.move_market(self.world_time())
        elif head % 3 == 1:
            self.world.trade_randomly(self.options.trades_per_step)
        else:
            # the world's RPC waits longer than Devchain.rpc's 2 s: anvil's work per block grows with the state
            # (~1 s an empty block at 10,000 accounts on a loaded machine)
            self.world.rpc("evm_mine", [])

    def _live(self, head: int) -> None:
        assert self.lifecycle is not None
        if not self.attested:  # warm-up: the first round after the setup
            # with the nodes' own DKG the setup's rounds were attested before the key was installed and no block comes
            # by itself: mine to the next anchor's finality (again if the nodes skipped it)
            if self.audit_after and (
                self._awaited_anchor is None or time.monotonic() - self._awaited_since > AWAIT_ROUND_S
            ):
                self._await_next_anchor(head)
            return
        latest = self.attested[-1].block_number
        if self._awaited_anchor is not None and latest < self._awaited_anchor:
            # the nodes are computing it; one they skipped (an anchor crossed mid-step kept them busy) is never
            # attested: after a while the next anchor is awaited instead (the skipped one counts as unsigned)
            if time.monotonic() - self._awaited_since > AWAIT_ROUND_S:
                self._await_next_anchor(int(self.client.block_number()))
            return
        if self.days_done:
            self._liquidate_after_days(latest)
            return
        if self.liquidations is not None:
            self._keeper_round = latest
            report = self.liquidations.on_round(self.outputs[latest], self.client.get_block(latest).timestamp)
            if report.bids:  # the market holds still for a round: the next one attests what the bids restored,
                # while the discount of the auctions started now runs its course
                self.lifecycle.hold(self.liquidations.keeper.auction_params().plateau)
                self._await_next_anchor(int(self.client.block_number()))
                return
        self.lifecycle.step(self.outputs[latest], latest)
        self._await_next_anchor(int(self.client.block_number()))

    def _liquidate_after_days(self, latest: int) -> None:
        """After the last market step, give the keeper up to LIQUIDATION_ROUNDS more rounds (the market holds
        still) while a breached account is neither restored nor insolvent or an auction is open. Between them the
        auctions' discount schedule runs its course (chain time moves by fastPhase + slowPhase, the feeds posted
        again at the same prices), as it would between two market steps."""
        desk = self.liquidations
        if desk is None or self._keeper_round >= latest:
            return
        self._keeper_round = latest
        anchor_time = self.client.get_block(latest).timestamp
        if self._rounds_after_days >= LIQUIDATION_ROUNDS:  # the round after the keeper's last: what it attests
            desk.observe(self.outputs[latest], anchor_time)
            return
        self._rounds_after_days += 1
        desk.on_round(self.outputs[latest], anchor_time)
        if desk.unresolved() or desk.keeper.watched:
            if self.lifecycle is not None:
                self.lifecycle.hold(desk.keeper.auction_params().plateau)
            self._await_next_anchor(int(self.client.block_number()))

    def _await_next_anchor(self, head: int) -> None:
        period, depth = self.options.round_period, self.options.finality_depth
        self._awaited_anchor = (head // period + 1) * period
        self._awaited_since = time.monotonic()
        self.world.rpc("anvil_mine", [hex(self._awaited_anchor + depth - head)])  # the world's RPC waits longer

    @property
    def days_done(self) -> bool:
        """Check if a ``--days`` run lived all its market days (always False without a lifecycle)."""
        if self.lifecycle is None or self.options.days is None:
            return False
        lived = self.lifecycle.stats.steps * self.lifecycle.step_seconds
        return lived >= self.options.days * 86400

    def finished(self) -> bool:
        """Check if a ``--days`` run is over: every market day lived, the round after the last step attested, and
        (with the keeper) its auctions finished or its extra rounds spent."""
        if not self.days_done or self._awaited_anchor is None or not self.attested:
            return False
        latest = self.attested[-1].block_number
        if self.liquidations is not None and self._keeper_round < latest:  # the desk has not seen the latest round
            return False
        return latest >= self._awaited_anchor

    def unsigned_rounds(self) -> int:
        """Return the anchors between the first and the latest attested round that no round was attested for."""
        if not self.attested:
            return 0
        period = self.options.round_period
        first, last = self.attested[0].block_number, self.attested[-1].block_number
        done = {r.block_number for r in self.attested}
        return sum(1 for anchor in range(first, last + 1, period) if anchor not in done)

    def observe(self, head: int, now: float) -> None:
        """Note when anchor blocks became final, and audit a newly attested round by recomputing it."""
        period, depth = self.options.round_period, self.options.finality_depth
        first = max(self._seen_head + 1, depth)
        for final_head in range(first, head + 1):
            anchor = final_head - depth
            if anchor > 0 and anchor % period == 0:
                self._ready_at.setdefault(anchor, now)
        self._seen_head = max(self._seen_head, head)
        block, root, count = self.latest_round()
        if block > self.audit_after and (not self.attested or block > self.attested[-1].block_number):
            last = self.attested[-1].block_number if self.attested else self.audit_after
            if block - last > period:  # rounds attested since the last look that are no longer the latest
                for event in self.events("MarginOracle", "RoundAttested", from_block=last):
                    missed = int(event["args"]["blockNumber"])
                    if last < missed < block:
                        self._audit(missed, bytes(event["args"]["accountsRoot"]),
                                    int(event["args"]["accountCount"]), head, now)  # fmt: skip
            self._audit(block, root, count, head, now)
        self.scan_evidence(head)

    def scan_evidence(self, up_to: int) -> None:
        """Add the ``Slashed`` events of the blocks after the last scan, up to ``up_to``, to ``slashings``."""
        if up_to <= self._evidence_scanned:
            return
        nodes = {node.signing_address.lower(): node.index for node in self.nodes}
        for event in self.events("SolverRegistry", "Slashed", from_block=self._evidence_scanned + 1, to_block=up_to):
            args = event["args"]
            self.slashings.append(
                Slashing(block=event["blockNumber"], signer=args["signer"], node=nodes.get(args["signer"].lower()),
                         offence=OFFENCES[int(args["offence"])], round=int(args["blockNumber"]),
                         amount=int(args["amount"]))
            )  # fmt: skip
        self._evidence_scanned = up_to

    def _audit(self, block: int, root: bytes, count: int, head: int, now: float) -> None:
        output = self.recompute(block)
        self.outputs[block] = output
        for old in sorted(self.outputs)[:-4]:
            del self.outputs[old]
        leaves = output.book.accounts
        gas, scheme = self.attestation(block)
        if scheme == "frost" and self.first_frost_s is None:
            self.first_frost_s = now - self.nodes_started_at
        if scheme == "frost" and self.committee.group_key is None:  # the nodes installed their key meanwhile
            self.committee = read_committee(self.client, self.deployment)
        self.attested.append(
            AttestedRound(
                block_number=block, accounts=count, root=root, recomputed_root=output.tree.root,
                total_im=sum(a.initial_margin for a in leaves), total_mm=sum(a.maintenance_margin for a in leaves),
                total_equity=sum(a.equity for a in leaves),
                latency=now - self._ready_at.get(block, now), gas=gas, scheme=scheme,
                policy=output.policy,
                node_policy_hashes=() if output.policy is None else self.node_policy_hashes(block),
            )
        )  # fmt: skip

    def node_policy_hashes(self, block: int, timeout: float = POLICY_POLL_S) -> tuple[bytes | None, ...]:
        """Return the policy hash each node publishes for round ``block`` (None: none within ``timeout`` s; a node
        outside the quorum may still be computing the round when it is attested)."""
        hashes: list[bytes | None] = [None] * len(self.nodes)
        deadline = time.monotonic() + timeout
        while True:
            for node in self.nodes:
                if hashes[node.index] is None and node.alive:
                    body = node.get(f"/v1/policy/{block}")
                    if isinstance(body, dict) and isinstance(body.get("policyHash"), str):
                        hashes[node.index] = bytes.fromhex(body["policyHash"].removeprefix("0x"))
            if all(h is not None for h in hashes) or time.monotonic() > deadline:
                return tuple(hashes)
            time.sleep(0.05)

    def advance(self) -> None:
        """Run one iteration of the devnet loop: check the nodes, audit new rounds, step the world when due.

        Errors:
            DevnetError when a node process exited on its own (a SIGKILL sent by a test is not an error).
        """
        now = time.monotonic()
        for node in self.nodes:
            if node.process is not None and node.process.poll() not in (None, -signal.SIGKILL, -signal.SIGTERM):
                raise DevnetError(f"node {node.index} exited with {node.process.returncode}; see {node.log_path}")
        head = int(self.client.block_number())
        self.observe(head, now)
        if self.mine_blocks and now - self._last_block_at >= self.options.block_interval:
            self._last_block_at = now
            self.step(head)

    def run_until(
        self, done: Callable[[Devnet], bool], timeout: float, *, what: str = "condition", pause_world: bool = False
    ) -> float:
        """Run the loop until ``done(self)`` holds; return the seconds it took.

        Args:
            done: the condition, checked before every iteration.
            timeout: seconds before giving up.
            what: what is awaited (named in the timeout error).
            pause_world: mine no blocks and move nothing meanwhile (the attested state stays put).

        Errors:
            DevnetError when ``timeout`` seconds pass first (naming ``what``), or a node process died on its own.
        """
        started = time.monotonic()
        mine_blocks, self.mine_blocks = self.mine_blocks, self.mine_blocks and not pause_world
        try:
            while not done(self):
                if time.monotonic() - started > timeout:
                    raise DevnetError(f"timed out after {timeout:.0f} s waiting for {what} "
                                      f"({len(self.attested)} rounds attested); logs in {self.run_dir}")  # fmt: skip
                self.advance()
                time.sleep(0.02)
        finally:
            self.mine_blocks = mine_blocks
        return time.monotonic() - started

    def run_rounds(self, count: int, timeout: float) -> float:
        """Run the loop until ``count`` more rounds are attested; return the seconds it took."""
        target = len(self.attested) + count
        return self.run_until(lambda d: len(d.attested) >= target, timeout, what=f"{count} more attested rounds")

    def events(self, contract: str, event: str, from_block: int = 0, to_block: int | str = "latest") -> list[Any]:
        """Return the decoded ``event`` logs of ``contract`` (e.g. "SolverRegistry", "Slashed") in a block range."""
        instance = self.deployment.contract(OFFLINE_W3, contract)
        abi_event = getattr(instance.events, event)()
        topic = "0x" + event_topic(contract, event).hex()
        logs = self.client.request("eth_getLogs", [{"address": self.deployment.contracts[contract],
                                                    "fromBlock": hex(from_block),
                                                    "toBlock": to_block if isinstance(to_block, str) else hex(to_block),
                                                    "topics": [topic]}])  # fmt: skip
        return [_decode_log(abi_event, raw) for raw in logs]

    def stake_of(self, signer: str, block: int | str = "latest") -> int:
        """Return the on-chain stake (wei) at ``block`` of the node whose signing address is ``signer``."""
        registry = self.deployment.contract(OFFLINE_W3, "SolverRegistry")
        return int(self.client.call(registry.functions.nodeOf(signer), block)[2])

    def balance_of(self, address: str) -> int:
        """Return the balance (wei) of ``address`` at the latest block."""
        return int(self.client.request("eth_getBalance", [address, "latest"]), 16)

    def world_time(self) -> int:
        """Return the latest block's timestamp."""
        return int(self.client.get_block("latest").timestamp)

    def node_status(self) -> list[dict[str, Any] | None]:
        """Return each node's /health answer (None for a node that does not answer)."""
        return [node.get("/health", timeout=0.5) for node in self.nodes]

    def stop(self) -> None:
        """Stop every node's process group and the chain's (SIGTERM, then SIGKILL); leave no process behind."""
        terminate([node.process for node in self.nodes if node.process is not None])
        self.chain.stop()


def _decode_log(abi_event: Any, raw: dict[str, Any]) -> Any:
    """Return the raw JSON-RPC log ``raw`` decoded by web3's ``abi_event``."""
    from hexbytes import HexBytes

    entry = {**raw, "topics": [HexBytes(t) for t in raw["topics"]], "data": HexBytes(raw["data"]),
             "blockNumber": int(raw["blockNumber"], 16), "logIndex": int(raw["logIndex"], 16),
             "transactionIndex": int(raw["transactionIndex"], 16),
             "transactionHash": HexBytes(raw["transactionHash"]),
             "blockHash": HexBytes(raw["blockHash"])}  # fmt: skip
    return abi_event.process_log(entry)


FRAUD_SLASHES_TIMEOUT_S = 10.0  # seconds the loop waits, after the last round, for a proven round's slashes


def _await_fraud_slashes(devnet: Devnet, say: Callable[[str], None]) -> int:
    """Run the loop (no blocks of its own) until every invalidated round has at least a quorum of fraud slashes, or
    ``FRAUD_SLASHES_TIMEOUT_S`` pass: a FROST round's signers are slashed one transaction each after its proof
    (``slashFrostSigner``), so the last proof's slashes may still be on their way when the last round is attested.

    Returns:
        The block the summary is read at: the one where the proofs and their slashes were found settled (the nodes
        keep running meanwhile, so a later block may already hold a proof whose slashes are still on their way), or
        the head when the wait timed out (the summary then shows what landed).
    """
    settled_at: list[int] = []

    def settled(d: Devnet) -> bool:
        head = int(d.client.block_number())
        d.scan_evidence(head)
        slashes = Counter(s.round for s in d.slashings if s.offence == "fraud" and s.block <= head)
        invalidated = {int(e["args"]["blockNumber"])
                       for e in d.events("MarginOracle", "RoundInvalidated", to_block=head)}  # fmt: skip
        if all(slashes[r] >= d.committee.quorum for r in invalidated):
            settled_at.append(head)
            return True
        return False

    try:
        devnet.run_until(settled, FRAUD_SLASHES_TIMEOUT_S, what="the proven rounds' slashes", pause_world=True)
    except DevnetError as exc:
        say(f"devnet: {exc}")  # the summary then shows the slashes that did land
        return int(devnet.client.block_number())
    return settled_at[-1]


def _node_secret(seed: int, index: int, kind: str) -> bytes:
    return keccak(f"pmoracle-devnet-{seed}-node-{index}-{kind}".encode())


def build_devnet(options: DevnetOptions, *, say: Callable[[str], None] = print, wait_for_key: bool = True) -> Devnet:
    """Build a devnet: start anvil, deploy, create and stake node identities, seed the world, start the nodes, and
    (FROST by the nodes' own DKG, ``wait_for_key``) wait until they installed their group key.

    Errors:
        DevchainError, DeployError, WorldError, DevnetError naming the step that failed; everything started so
        far is stopped first.
    """
    run_dir = options.run_dir or Path("runs") / time.strftime("devnet-%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    # 1024 blocks of state: the audit recomputes attested rounds from chain state, and the market moves and
    # trades mine many blocks a second, so 64 (the default) can prune a round before it was audited
    netlab = None
    if options.private_network:
        netlab = NetLab(options.nodes)
        netlab.setup()
    chain = start_devchain(log_path=run_dir / "anvil.log", prune_history=1024,
                           host="0.0.0.0" if netlab is not None else "127.0.0.1")  # fmt: skip
    try:
        devnet = _build(options, run_dir.resolve(), chain, netlab, say)
    except BaseException:
        chain.stop()
        raise
    if wait_for_key:
        try:
            devnet.await_group_key(say)
        except BaseException:
            devnet.stop()
            raise
    return devnet


def _align_to_sampling(world: World, client: ChainClient, interval: int, now: int) -> int:
    """Move chain time so that the market's steps fall midway between the policy's sampling points (multiples of
    ``interval``): each sampling point then sees exactly one new step, and the policy's path is the same in every
    run, wherever the wall clock started anvil. Return the new chain time."""
    world.rpc("evm_increaseTime", [(interval // 2 - now % interval) % interval])
    world.rpc("evm_mine", [])
    return int(client.get_block("latest").timestamp)


def _build(
    options: DevnetOptions, run_dir: Path, chain: Devchain, netlab: NetLab | None, say: Callable[[str], None]
) -> Devnet:
    where = ", node k in network namespace pmo-k at 10.77.(k+1).2" if netlab is not None else ""
    say(f"devnet: anvil on {chain.url}, run directory {run_dir}{where}")
    params_text = default_params_text()
    if options.scenario == "vol-spike":  # the nodes run the adaptive policy
        params_text = vol_spike_params_text(params_text, round(options.step_hours * 3600))
    params = parse_params(params_text)
    (run_dir / "risk-params.toml").write_text(params_text)
    (run_dir / "password.txt").write_text(DEVNET_PASSWORD + "\n")
    nodes: list[NodeProcess] = []
    specs: list[NodeSpec] = []
    for i in range(options.nodes):
        home = run_dir / f"node-{i}"
        (home / "keys").mkdir(parents=True, exist_ok=True)
        secrets = {kind: _node_secret(options.seed, i, kind) for kind in ("signing", "transmitter", "p2p")}
        for kind, secret in secrets.items():
            out = home / "keys" / f"{kind}.json"
            if not out.exists():
                write_key_file(KeyKind(kind), out, DEVNET_PASSWORD.encode(), secret=secret,
                               kdf_iterations=LIGHT_KDF_ITERATIONS)  # fmt: skip
        peer_id, _ = compute_peer_id(secrets["p2p"])
        p2p_port = reserve_port()
        from libp2p.peer.id import ID

        host = netlab.address(i) if netlab is not None else "127.0.0.1"
        multiaddr = f"/ip4/{host}/tcp/{p2p_port}/p2p/{peer_id}"
        transmitter = Account.from_key(secrets["transmitter"]).address
        chain.rpc("anvil_setBalance", transmitter, hex(10**22))
        peer_id_bytes = ID.from_base58(peer_id).to_bytes()
        specs.append(NodeSpec(operator_key=secrets["transmitter"], signing_key=secrets["signing"],
                              peer_id=peer_id_bytes, multiaddrs=(multiaddr,), stake=10**19))  # fmt: skip
        nodes.append(NodeProcess(i, home, Account.from_key(secrets["signing"]).address, p2p_port,
                                 fault=options.fault_of(i), host=host,
                                 command_prefix=netlab.command_prefix(i) if netlab is not None else ()))  # fmt: skip
    group_key = None
    if not options.ecdsa and options.dkg_in_process:  # FROST, the shortcut: the DKG in this process
        shares = run_devnet_dkg(options)
        group_key = EvmGroupKey.from_compressed(shares[1].group_public_key)
        for node in nodes:
            out = node.home / "keys" / FROST_SHARE_FILE
            if not out.exists():
                write_frost_share(out, shares[node.index + 1], DEVNET_PASSWORD.encode(),
                                  kdf_iterations=LIGHT_KDF_ITERATIONS)  # fmt: skip
    deployment = deploy(
        chain.url, DEPLOYER_KEY, params_hash=params.params_hash, round_period=options.round_period,
        finality_depth=options.finality_depth, nodes=specs, deviation_delay=options.deviation_delay,
        output=run_dir / "deployment.json", group_key=group_key,
    )  # fmt: skip
    own_dkg = not options.ecdsa and not options.dkg_in_process
    scheme = "ECDSA certificates" if group_key is None else "FROST group key registered (ECDSA as fallback)"
    if own_dkg:
        scheme = "ECDSA committee; the nodes run the DKG and install their FROST key themselves"
    say(f"devnet: contracts deployed, {options.nodes} nodes staked and registered (quorum "
        f"{compute_byzantine_quorum(options.nodes)} of {options.nodes}); {scheme}")  # fmt: skip
    client = ChainClient([chain.url], timeout=compute_rpc_timeout(options.accounts))
    committee = read_committee(client, deployment)
    world = World(chain.url, deployment, Account.from_key(DEPLOYER_KEY).address, seed=options.seed)
    started = time.monotonic()
    lifecycle = None
    liquidations = None
    if options.days is not None:
        now = int(client.get_block("latest").timestamp)
        if options.scenario == "vol-spike":
            now = _align_to_sampling(world, client, round(options.step_hours * 3600), now)
        world.setup(options.accounts, expiries=friday_expiries(now))
        lifecycle = Lifecycle(world, step_seconds=round(options.step_hours * 3600), seed=options.seed)
        if options.scenario == "crash":
            steps = math.ceil(options.days * 86400 / lifecycle.step_seconds)
            lifecycle.crash_step = max(1, steps // 2)
        elif options.scenario == "vol-spike":
            steps = math.ceil(options.days * 86400 / lifecycle.step_seconds)
            lifecycle.spike_step = max(1, steps // 2)
        liquidations = LiquidationDesk(world, client, deployment, params)
    else:
        world.setup(options.accounts)
    say(f"devnet: market seeded ({len(world.instruments)} instruments), {options.accounts} accounts opened "
        f"with {world.trades} trades in {time.monotonic() - started:.1f} s")  # fmt: skip
    # The setup lands in a few large blocks: move the head to the first anchor after them (and its finality), so
    # that no round is ever anchored in the middle of the setup with half the accounts opened.
    head = int(client.block_number())
    first_anchor = -(-head // options.round_period) * options.round_period
    if first_anchor + options.finality_depth > head:
        world.rpc("anvil_mine", [hex(first_anchor + options.finality_depth - head)])  # slow blocks: the world's RPC
    if any(options.fault_of(node.index) == "collude" for node in nodes):  # the honest nodes prove from the others' APIs
        for node in nodes:
            node.api_listen_port = reserve_port()
    try:
        for node in nodes:
            rpc_url = f"http://{netlab.gateway(node.index)}:{chain.port}" if netlab is not None else chain.url
            _write_node_config(node, run_dir, rpc_url, options, nodes)
            node.start()
        nodes_started = time.monotonic()
    except BaseException:
        terminate([node.process for node in nodes if node.process is not None])
        raise
    return Devnet(
        options, run_dir, chain, deployment, params, committee, world, nodes, client, netlab, lifecycle, liquidations,
        nodes_started_at=nodes_started,
    )  # fmt: skip


FROST_SHARE_FILE = "frost-share.json"  # in each node's keys/ (the devnet's DKG shortcut)


DKG_TIMEOUT = 60.0  # seconds one DKG run of a devnet node may take (frost.dkg_timeout)
KEY_POLL_S = 0.2


def await_group_key(
    client: ChainClient,
    deployment: Deployment,
    nodes: Sequence[NodeProcess],
    say: Callable[[str], None],
    *,
    timeout: float,
) -> CommitteeConfig:
    """Wait until the nodes' own DKG installed a FROST group key in SolverRegistry (every member confirmed it);
    return the new committee.

    Errors:
        DevnetError when ``timeout`` seconds pass first (the nodes' logs say which run failed and why), or a node
        process exited.
    """
    started = time.monotonic()
    while True:
        committee = read_committee(client, deployment)
        if committee.group_key is not None:
            key = committee.group_key.to_compressed().hex()
            elapsed = time.monotonic() - started
            say(f"devnet: the nodes ran the DKG over gossip and installed their group key 0x{key[:16]}... "
                f"(committee version {committee.version}) {elapsed:.1f} s after they started")  # fmt: skip
            return committee
        for node in nodes:
            if node.process is not None and node.process.poll() is not None:
                raise DevnetError(f"node {node.index} exited with {node.process.returncode} during the DKG; "
                                  f"see {node.log_path}")  # fmt: skip
        if time.monotonic() - started > timeout:
            raise DevnetError(f"the nodes installed no FROST group key within {timeout:.0f} s (pmoracle_dkg_runs_total "
                              f"and the node logs say why); logs in {nodes[0].home.parent}")  # fmt: skip
        time.sleep(KEY_POLL_S)


def run_devnet_dkg(options: DevnetOptions) -> dict[int, DkgResult]:
    """Return every member's share of a t-of-n group key, t the committee's quorum (identifier = index + 1).

    The devnet's fallback shortcut (``--dkg-in-process``): the whole DKG runs in this process with member seeds
    derived from the devnet seed
    (:func:`pmoracle.testing.frost.run_test_dkg`), like the devnet's other keys; a production committee runs it
    over gossip, one member per node (docs/frost.md).
    """
    from pmoracle.testing.frost import run_test_dkg

    label = f"pmoracle-devnet-{options.seed}-frost-dkg-{options.nodes}"
    return run_test_dkg(compute_byzantine_quorum(options.nodes), options.nodes, keccak(label.encode()),
                        context=keccak(f"{label}-context".encode()))  # fmt: skip


def _write_node_config(
    node: NodeProcess, run_dir: Path, rpc_url: str, options: DevnetOptions, nodes: list[NodeProcess]
) -> None:
    text = f"""# devnet node {node.index} (generated by pmoracle devnet)
[node]
data_dir = "data"
log_format = "text"
log_level = "INFO"

[chain]
rpc_urls = ["{rpc_url}"]
rpc_timeout = {compute_rpc_timeout(options.accounts)}
poll_interval = 0.1
probe_interval = 2.0
full_snapshot_every = {options.full_snapshot_every}
deployment = "{run_dir / "deployment.json"}"

[keys]
signing_keystore = "keys/signing.json"
transmitter_keystore = "keys/transmitter.json"
p2p_key = "keys/p2p.json"
password_file = "{run_dir / "password.txt"}"
{f'frost_share = "keys/{FROST_SHARE_FILE}"' if options.dkg_in_process and not options.ecdsa else ""}

[p2p]
listen = "/ip4/{node.host}/tcp/{node.p2p_port}"

[api]
host = "{node.host}"
port = {node.api_listen_port}

[risk]
params_file = "{run_dir / "risk-params.toml"}"

[transmit]
stage_delay = {options.stage_delay}
gas_price_cap_gwei = 500

[frost]
auto_dkg = {"false" if options.ecdsa or options.dkg_in_process else "true"}
dkg_timeout = {DKG_TIMEOUT}
"""
    peers = [
        f"http://{peer.host}:{peer.api_listen_port}" for peer in nodes if peer is not node and peer.api_listen_port
    ]
    if peers and node.fault is None:  # an honest node proves a wrong attested round from the others' APIs
        text += f"\n[dispute]\npeer_apis = {json.dumps(peers)}\n"
    (node.home / "node.toml").write_text(text)


def run_devnet(options: DevnetOptions, *, say: Callable[[str], None] = print, table: LiveTable | None = None) -> Devnet:
    """Build and run a devnet until ``duration``, ``rounds`` or SIGINT/SIGTERM; return it (stopped).

    Args:
        options: what to build and how long to run.
        say: where progress messages go (when ``table`` is None).
        table: where the live table goes (default: redrawn in place on a terminal, plain lines when piped).

    Returns:
        The stopped devnet, with every round it audited.

    Errors:
        StopRequested on SIGINT/SIGTERM while building (seeding included), after every child process was ended;
        DevchainError, DeployError, WorldError, DevnetError as :func:`build_devnet`.
    """
    live = table if table is not None else LiveTable(say=say)
    with supervise(), live:
        devnet = build_devnet(options, say=live.say, wait_for_key=False)
        started = time.monotonic()
        try:
            try:
                devnet.await_group_key(live.say)  # a stop meanwhile ends the run as a stop while running does
                started = time.monotonic()
                last_print = 0.0
                while True:
                    now = time.monotonic()
                    if options.duration is not None and now - started > options.duration:
                        break
                    if options.rounds is not None and len(devnet.attested) >= options.rounds:
                        break
                    if devnet.finished():
                        break
                    devnet.advance()
                    if not options.quiet and now - last_print > 2.0:
                        last_print = now
                        live.show(format_table(devnet))
                    time.sleep(0.02)
            except StopRequested as stop:  # a signal while running ends the run normally, with its summary
                live.say(f"devnet: {stop}")
            devnet.accountability = accountability_summary(devnet, _await_fraud_slashes(devnet, live.say))
            if devnet.lifecycle is not None:
                write_lifecycle_summary(devnet, time.monotonic() - started, live.say)
            elif options.summary is not None:
                summary = {"rounds_attested": len(devnet.attested),
                           "rounds_verified": sum(1 for r in devnet.attested if r.verified),
                           **scheme_summary(devnet.attested), **devnet.accountability,
                           "key_installed_s": devnet.key_installed_s,
                           "first_frost_s": devnet.first_frost_s}  # fmt: skip
                options.summary.write_text(json.dumps(summary, indent=2) + "\n")
                live.say(f"devnet: summary written to {options.summary}")
        finally:
            devnet.stop()
        if not options.quiet:
            live.show(format_table(devnet, nodes=False))  # the nodes are stopped by now
    say(format_summary(devnet))
    say(f"devnet: logs and data in {devnet.run_dir}")
    return devnet


def _fraction_text(value: int) -> str:
    """Return a RANGE_SCALE fraction as an exact decimal string (``0.153000000``)."""
    return f"{value // RANGE_SCALE}.{value % RANGE_SCALE:09d}"


def policy_summary(rounds: Sequence[AttestedRound]) -> dict[str, Any]:
    """Return the summary's ``policy`` object: per attested round the applied scan ranges and vol shifts (fractions,
    exact decimals), the stressed underlyings, the samples and the last sample's price (PRICE_SCALE) per underlying, the
    recomputed policy hash and whether every node published it."""
    path = []
    for r in rounds:
        if r.policy is None:
            continue
        path.append({
            "block": r.block_number,
            "scan_range": {s.underlying: _fraction_text(s.scan_range) for s in r.policy.states},
            "stressed": [s.underlying for s in r.policy.states if s.stressed],
            "vol_shift": {s.underlying: _fraction_text(s.vol_shift) for s in r.policy.states},
            "samples": {s.underlying: s.count for s in r.policy.states},
            "sampled_price": {s.underlying: str(s.price) for s in r.policy.states},  # the last sample's, 1e-8 USD
            "total_mm_usd": round(r.total_mm / MONEY_SCALE, 2),
            "policy_hash": "0x" + r.policy.policy_hash.hex(),
            "nodes_identical": r.policy_identical,
            "nodes_answered": sum(h is not None for h in r.node_policy_hashes),
        })  # fmt: skip
    return {"rounds": path, "identical_every_round": bool(path) and all(p["nodes_identical"] for p in path)}


def scheme_summary(rounds: Sequence[AttestedRound]) -> dict[str, Any]:
    """Return the summary's signature-scheme keys, read from each round's ``RoundAttested`` event: ``rounds_frost``
    and ``rounds_ecdsa`` (rounds attested by ``attestFrost`` and by ``attest``) and ``schemes`` (round -> scheme)."""
    return {"rounds_frost": sum(r.scheme == "frost" for r in rounds),
            "rounds_ecdsa": sum(r.scheme == "ecdsa" for r in rounds),
            "schemes": {str(r.block_number): r.scheme for r in rounds}}  # fmt: skip


def accountability_summary(devnet: Devnet, up_to: int | None = None) -> dict[str, Any]:
    """Return the summary's fraud-proof keys, read from the chain: ``attested_rounds`` (every round attested, by
    block), ``fraud_proofs`` (proofs the oracle accepted),
    ``rounds_invalidated`` (distinct rounds), ``invalidated`` (per proof: the round, the block it was attested and
    proven in, the prover's node index), ``slashed`` (per node index: slashings and wei taken, every node listed) and
    ``deviation_slashed_rounds`` (per node index: the rounds it was slashed for deviation in, every node listed),
    all as of block ``up_to`` (default the head), so that proofs and slashes are counted from one chain state."""
    head = int(devnet.client.block_number()) if up_to is None else up_to
    devnet.scan_evidence(head)
    attested_in = {int(e["args"]["blockNumber"]): int(e["blockNumber"])
                   for e in devnet.events("MarginOracle", "RoundAttested", to_block=head)}  # fmt: skip
    transmitters = {Account.from_key(_node_secret(devnet.options.seed, node.index, "transmitter")).address.lower():
                    node.index for node in devnet.nodes}  # fmt: skip
    invalidated = [
        {"round": int(e["args"]["blockNumber"]), "attested_block": attested_in.get(int(e["args"]["blockNumber"])),
         "proven_block": int(e["blockNumber"]), "account": e["args"]["account"],
         "prover_node": transmitters.get(str(e["args"]["prover"]).lower())}
        for e in devnet.events("MarginOracle", "RoundInvalidated", to_block=head)
    ]  # fmt: skip
    slashed = {str(node.index): {"count": 0, "amount": 0} for node in devnet.nodes}
    deviations: dict[str, list[int]] = {str(node.index): [] for node in devnet.nodes}
    for slashing in devnet.slashings:
        if slashing.node is not None and slashing.block <= head:
            slashed[str(slashing.node)]["count"] += 1
            slashed[str(slashing.node)]["amount"] += slashing.amount
            if slashing.offence == "deviation":
                deviations[str(slashing.node)].append(slashing.round)
    return {"attested_rounds": sorted(attested_in),
            "fraud_proofs": len(invalidated), "rounds_invalidated": len({i["round"] for i in invalidated}),
            "invalidated_rounds": sorted({i["round"] for i in invalidated}),
            "invalidated": invalidated, "slashed": slashed,
            "deviation_slashed_rounds": {k: sorted(v) for k, v in deviations.items()}}  # fmt: skip


def write_lifecycle_summary(devnet: Devnet, wall_seconds: float, say: Callable[[str], None]) -> dict[str, Any]:
    """Audit the ledger's money from chain state, and write (``--summary``) and return the ``--days`` summary."""
    from web3 import HTTPProvider, Web3

    from pmoracle.devnet.ledger_audit import audit_cash

    assert devnet.lifecycle is not None
    audit = audit_cash(Web3(HTTPProvider(devnet.chain.url)), devnet.deployment)
    summary = devnet.lifecycle.summary(devnet.attested, devnet.unsigned_rounds(), audit, wall_seconds)
    if devnet.liquidations is not None:
        summary.update(devnet.liquidations.summary())
        summary["scenario"] = devnet.options.scenario
        summary["crashed_at_step"] = devnet.lifecycle.stats.crashed_at_step
    if devnet.params.policy is not None:
        summary["spiked_at_step"] = devnet.lifecycle.stats.spiked_at_step
        summary["policy"] = policy_summary(devnet.attested)
    summary.update(scheme_summary(devnet.attested))
    summary.update(devnet.accountability or accountability_summary(devnet))
    if devnet.options.summary is not None:
        devnet.options.summary.write_text(json.dumps(summary, indent=2) + "\n")
        say(f"devnet: summary written to {devnet.options.summary}")
    say("devnet: " + ", ".join(f"{k} {summary[k]}" for k in list(summary)[:10]))
    return summary
