"""The node's own FROST DKG: run when this node is a member of an installed committee without a group key.

On the node's running libp2p host (its :class:`~pmoracle.p2p.reports.ReportGossip` and topic validator), one run
after another until one finishes::

    run r (context = compute_dkg_context(domain, committee, r): bound to the committee's configDigest and version)
        the gossip DKG (node/frost_dkg_gossip.py) with timeout frost.dkg_timeout
        upon a member's message of a later run r' > r:   abandon r, join r' at once ("superseded")
        upon every package and share valid:             write the share encrypted to <data_dir>/frost/ (the format
                                                        of `pmoracle frost dkg`), confirm (key, transcript) on chain
                                                        (keep re-publishing for ``linger`` s meanwhile); then
                                                        upon a member's message of a later run:  join it (its result
                                                        replaces this one on chain)
        upon a complaint, a disqualification, an unusable key or the deadline:  archive the complaints; wait the
                                                        backoff (doubling; a member's message of a later run ends the
                                                        wait: join it); run r + 1

Every complaint this member raised or received is written as an evidence file (``O_EXCL``, fsync'd) in
``<data_dir>/frost/evidence/``: the signed complaint as its gossip encoding, which anyone re-checks with
:func:`~pmoracle.consensus.frost_dkg.is_valid_complaint` against the dealer's package. Members that start apart
meet in the latest run any of them reached: the validator accepts the committee's later runs too, and a member's
message of one makes the others join it, also those whose run already finished (a complaint or a lost share can end
a run for one member only; the registry installs a key only when every member confirmed the same one, and a member's
later confirmation replaces its earlier one). A node restarted after writing its share confirms it again (nothing
is sent when the registry already holds it) and listens for later runs.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg import DkgParameters, DkgResult
from pmoracle.consensus.frost_dkg_wire import MAX_RUN, SignedDkgComplaint, compute_dkg_context, sign_dkg_complaint
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.consensus.report import Domain, address_of
from pmoracle.errors import PmoracleError
from pmoracle.node.datadir import frost_dir, frost_share_path
from pmoracle.node.frost_dkg_gossip import DEFAULT_REPUBLISH_INTERVAL, GossipDkgTransport, run_gossip_dkg
from pmoracle.node.frost_dkg_session import DkgOutcome
from pmoracle.node.frost_keys import unlock_frost_share, write_frost_share
from pmoracle.node.metrics import NodeMetrics
from pmoracle.p2p import codec
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator

log = logging.getLogger("pmoracle.node")

BACKOFF_INITIAL = 5.0  # seconds before the run after a first failure; doubles with each failure
BACKOFF_MAX = 60.0
LINGER = 10.0  # seconds a member that finished keeps re-publishing: the others finish from its messages
CONFIRM_ATTEMPTS = 5  # tries to send a confirmation (a failed one is retried after the backoff)

# What the node does with a finished run: confirm (committee, result) on chain (SolverRegistry.confirmFrostKey)
FrostKeyConfirmer = Callable[[CommitteeConfig, DkgResult], Awaitable[None]]


def dkg_evidence_dir(data_dir: Path) -> Path:
    """Return the directory of archived DKG complaints inside ``data_dir`` (beside the FROST signing evidence)."""
    return frost_dir(data_dir) / "evidence"


def write_dkg_complaint(evidence_dir: Path, network: codec.NetworkId, run: int, signed: SignedDkgComplaint) -> bool:
    """Write ``signed`` as an evidence file (created once, ``O_EXCL``, fsync'd); return False if it was there."""
    complaint = signed.complaint
    evidence_dir.mkdir(parents=True, exist_ok=True)
    path = evidence_dir / f"dkg-{signed.context.hex()[:16]}-{complaint.accuser}-{complaint.dealer}.json"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False  # one complaint per accuser, dealer and run is the evidence
    record = {
        "kind": "dkg-complaint",
        "context": "0x" + signed.context.hex(),
        "run": run,
        "accuser": complaint.accuser,
        "dealer": complaint.dealer,
        "signer": "0x" + signed.signer.hex(),
        "message": "0x" + codec.encode_message(codec.DkgMessage(network, signed)).hex(),
    }
    with os.fdopen(fd, "w") as out:
        json.dump(record, out, indent=1, sort_keys=True)
        out.flush()
        os.fsync(out.fileno())
    dir_fd = os.open(evidence_dir, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the new name survives a crash too
    finally:
        os.close(dir_fd)
    return True


class DkgService:
    """One member's own DKG for one committee version at a time; :meth:`run_for` until its share is confirmed."""

    def __init__(
        self,
        domain: Domain,
        reports: ReportGossip,
        validator: ReportValidator | None,
        signing_key: bytes,
        password: bytes,
        data_dir: Path,
        confirm: FrostKeyConfirmer,
        metrics: NodeMetrics,
        *,
        timeout: float,
        republish_interval: float = DEFAULT_REPUBLISH_INTERVAL,
        backoff: tuple[float, float] = (BACKOFF_INITIAL, BACKOFF_MAX),
        linger: float = LINGER,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        """Args:
        domain: the oracle's EIP-712 domain (the run's context and the envelopes' signatures).
        reports: the node's report gossip (DKG messages travel on its topic).
        validator: the gossip endpoint's topic validator (accepts the committee's runs while one is going on);
            None when the endpoint accepts everything (tests and fault injection).
        signing_key: this member's report-signing key.
        password: the key files' password (the share is stored under it).
        data_dir: the node's data directory (shares in frost/, complaints in frost/evidence/).
        confirm: sends the finished run's group key and transcript digest on chain.
        metrics: counts runs by result, complaints and confirmations.
        timeout: seconds one run may take.
        republish_interval: seconds between re-publications of own DKG messages.
        backoff: (first, longest) seconds to wait after a failed run before the next one.
        linger: seconds to keep re-publishing after a finished run.
        random_bytes: the source of each run's secret seed (the OS's).
        """
        self.domain = domain
        self.reports = reports
        self.validator = validator
        self.signing_key = signing_key
        self.password = password
        self.data_dir = Path(data_dir)
        self.confirm = confirm
        self.metrics = metrics
        self.timeout = timeout
        self.republish_interval = republish_interval
        self.backoff = backoff
        self.linger = linger
        self.random_bytes = random_bytes
        self.outcomes: list[tuple[int, DkgOutcome | None]] = []  # (run, outcome) of every run, None: superseded
        self.results: list[tuple[int, DkgResult]] = []  # (run, result) of every run finished here, in order

    async def run_for(self, committee: CommitteeConfig) -> None:
        """Run this member's DKG for ``committee``: until its share is written and confirmed, then keep listening for
        members in a later run (a run that failed for them after it finished here) and join it, until cancelled.

        Returns at once when ``committee`` already has a group key or this node is not a member, or when every run
        number was used (logged). Cancel it when another committee is installed.

        Errors:
            KeyFileError (WrongPasswordError, ...) when a share stored for this committee does not open; OSError when
            an evidence file cannot be written. The node logs them and goes on with ECDSA certificates.
        """
        me = committee.index_of(address_of(self.signing_key))
        if me is None or committee.group_key is not None:
            return
        contexts = [compute_dkg_context(self.domain, committee, run) for run in range(MAX_RUN + 1)]
        stored = self._stored_result(contexts)
        while True:
            if stored is None:
                finished = await self._run_until_finished(committee, me, contexts, start=0)
            else:
                finished = stored
            if finished is None:
                return
            run, result = finished
            self.results.append((run, result))
            await self._confirm(committee, result)
            later = await self._wait_for_later_run(committee, contexts, after=run, delay=math.inf)
            if later is None:  # pragma: no cover - an infinite wait ends only by cancellation
                return
            log.info("DKG: members are in run %d, after run %d finished here; joining it", later, run)
            stored = await self._run_until_finished(committee, me, contexts, start=later)
            if stored is None:
                return

    async def _confirm(self, committee: CommitteeConfig, result: DkgResult) -> None:
        """Confirm ``result`` on chain, retrying with backoff: a confirmation whose gas was estimated before another
        member's landed runs out of gas when it turns out to be the one installing the key."""
        delay = self.backoff[0]
        for attempt in range(1, CONFIRM_ATTEMPTS + 1):
            try:
                await self.confirm(committee, result)
            except PmoracleError as exc:
                self.metrics.dkg_runs.labels(result="error").inc()
                log.warning("DKG: the group key of committee version %d could not be confirmed on chain (attempt %d "
                            "of %d): %s", committee.version, attempt, CONFIRM_ATTEMPTS, exc)  # fmt: skip
                if attempt < CONFIRM_ATTEMPTS:
                    await trio.sleep(delay)
                    delay = min(2 * delay, self.backoff[1])
                continue
            self.metrics.dkg_confirmations.inc()
            log.info("DKG: confirmed group key %s (transcript %s) for committee version %d on chain",
                     result.group_public_key.hex()[:18], result.transcript_digest.hex()[:16],
                     committee.version)  # fmt: skip
            return

    def _stored_result(self, contexts: list[bytes]) -> tuple[int, DkgResult] | None:
        """Return the latest run's share this committee's DKG already wrote here (a restart after the run), if any."""
        for run in reversed(range(len(contexts))):
            path = frost_share_path(self.data_dir, contexts[run])
            if path.exists():
                log.info("DKG: this committee's share of run %d is already in %s; confirming it", run, path)
                return run, unlock_frost_share(path, self.password, context=contexts[run])
        return None

    async def _run_until_finished(
        self, committee: CommitteeConfig, me: int, contexts: list[bytes], *, start: int
    ) -> tuple[int, DkgResult] | None:
        """Run from run ``start`` on until one finishes here; return it, or None when none can (logged)."""
        run = start
        failures = 0
        while run <= MAX_RUN:
            outcome, later = await self._run_once(committee, me, contexts, run)
            self.outcomes.append((run, outcome))
            if outcome is None:  # members moved on: join them now
                self.metrics.dkg_runs.labels(result="superseded").inc()
                log.info("DKG run %d: members are in run %s already; joining it", run, later)
                run = run + 1 if later is None else later
                continue
            self._archive_complaints(contexts[run], run, outcome)
            result = outcome.result
            if result is not None:
                try:
                    EvmGroupKey.from_compressed(result.group_public_key)
                except PmoracleError:  # x >= n (probability 2^-128): the contract cannot store it
                    log.warning("DKG run %d: the group key cannot be registered (x >= n); next run", run)
                    self.metrics.dkg_runs.labels(result="failed").inc()
                    run += 1
                    continue
                try:
                    self._write_share(contexts[run], result)
                except PmoracleError as exc:
                    self.metrics.dkg_runs.labels(result="error").inc()
                    log.error("DKG run %d: the share could not be written: %s", run, exc)
                    return None
                self.metrics.dkg_runs.labels(result="ok").inc()
                return run, result
            self.metrics.dkg_runs.labels(result="timed_out" if outcome.timed_out else "failed").inc()

            def named(ids: tuple[int, ...] | list[int]) -> list[str]:
                return [f"{i} (0x{committee.members[i - 1].hex()})" for i in ids]

            log.warning("DKG run %d for committee version %d did not finish: missing %s, disqualified %s, accused %s",
                        run, committee.version, named(outcome.missing), named(outcome.disqualified),
                        named(sorted({c.dealer for c in outcome.complaints})))  # fmt: skip
            delay = min(self.backoff[0] * 2**failures, self.backoff[1])
            failures += 1
            later = await self._wait_for_later_run(committee, contexts, after=run, delay=delay)
            run = run + 1 if later is None else later
        log.error("DKG: every run number of committee version %d was used; the owner must install a key or a new "
                  "committee", committee.version)  # fmt: skip
        return None

    async def _run_once(
        self, committee: CommitteeConfig, me: int, contexts: list[bytes], run: int
    ) -> tuple[DkgOutcome | None, int | None]:
        """Run ``run``; return its outcome, or (None, r') when members were seen in a later run r' first."""
        transport = GossipDkgTransport(
            self.reports, self.domain, committee, contexts[run], self.signing_key,
            republish_interval=self.republish_interval,
            later_runs={context: r for r, context in enumerate(contexts) if r > run},
        )  # fmt: skip
        parameters = DkgParameters(contexts[run], tuple(range(1, committee.n + 1)), committee.quorum, me + 1)
        outcome: DkgOutcome | None = None
        self._accept_runs(contexts, run)
        try:
            async with trio.open_nursery() as nursery:

                async def abandon_for_later_run() -> None:
                    await transport.later_run_seen.wait()
                    nursery.cancel_scope.cancel()

                nursery.start_soon(abandon_for_later_run)
                outcome = await run_gossip_dkg(transport, parameters, self.random_bytes(32), timeout=self.timeout,
                                               linger=self.linger)  # fmt: skip
                nursery.cancel_scope.cancel()
        finally:
            self._accept_runs(contexts, None)
        if outcome is None:  # abandoned
            return None, transport.later_run
        # complaints other members published (this member's own are in the outcome)
        for signed in transport.complaints:
            if write_dkg_complaint(dkg_evidence_dir(self.data_dir), self.reports.network, run, signed):
                self.metrics.dkg_complaints.inc()
        return outcome, None

    async def _wait_for_later_run(
        self, committee: CommitteeConfig, contexts: list[bytes], *, after: int, delay: float
    ) -> int | None:
        """Wait up to ``delay`` seconds for a member's message of a run after ``after``; return that run (None: no
        such message came). The messages themselves are dropped: their senders re-publish them every second."""
        if after >= MAX_RUN:
            await trio.sleep(delay)
            return None
        transport = GossipDkgTransport(
            self.reports, self.domain, committee, contexts[after], self.signing_key,
            later_runs={context: r for r, context in enumerate(contexts) if r > after},
        )  # fmt: skip
        self._accept_runs(contexts, after + 1)
        try:
            with trio.move_on_after(delay):
                async for message in self.reports.dkg_messages():
                    if transport.note_later_run(message) and transport.later_run is not None:
                        return transport.later_run
        finally:
            self._accept_runs(contexts, None)
        return None

    def _accept_runs(self, contexts: list[bytes], first: int | None) -> None:
        """Let the topic validator accept runs ``first`` and later of this committee (None: no DKG message)."""
        if self.validator is not None:
            self.validator.set_dkg_contexts(() if first is None else contexts[first:])

    def _archive_complaints(self, context: bytes, run: int, outcome: DkgOutcome) -> None:
        for complaint in outcome.complaints:  # this member's, signed as it published them (deterministic ECDSA)
            signed = sign_dkg_complaint(self.domain, context, complaint, self.signing_key)
            if write_dkg_complaint(dkg_evidence_dir(self.data_dir), self.reports.network, run, signed):
                self.metrics.dkg_complaints.inc()

    def _write_share(self, context: bytes, result: DkgResult) -> None:
        out = frost_share_path(self.data_dir, context)
        out.parent.mkdir(parents=True, exist_ok=True)
        partial = out.with_name(out.name + ".partial")
        partial.unlink(missing_ok=True)
        write_frost_share(partial, result, self.password)
        os.replace(partial, out)  # a whole file or none
        log.info("DKG: share of group key %s written to %s", result.group_public_key.hex()[:18], out)
