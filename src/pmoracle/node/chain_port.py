"""The production :class:`~pmoracle.node.abc.ChainPort`: the MarginOracle and SolverRegistry contracts reached
through :class:`~pmoracle.chain.client.ChainClient` (reads) and :class:`~pmoracle.chain.transmitter.Transmitter`
(transactions), each blocking call in a worker thread under a timeout."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, assert_never

import trio
from web3 import Web3

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ChainError, ContractError
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.evidence import Deviation, Equivocation, Evidence
from pmoracle.consensus.frost_evm import EvmSignature
from pmoracle.errors import PmoracleError
from pmoracle.node.abc import AttestedRound, ChainPort
from pmoracle.node.metrics import NodeMetrics

log = logging.getLogger("pmoracle.node")
# web3 contract objects only encode calls and decode results here; requests go through ChainClient.
OFFLINE_W3 = Web3()

TRANSACTION_TIMEOUT = 60.0  # seconds for one transaction: signing, sending and the receipt
READ_TIMEOUT = 10.0  # seconds for one contract read
WINDOW_MARGIN = 1.0  # seconds held past a deviation window's opening (block timestamps are whole seconds)
WINDOW_RETRIES = 5  # DeviationWindowNotOpen refusals (chain time behind this host's clock) before dropping as "error"
WINDOW_RETRY_S = 2.0  # seconds between those tries


_DROP_REASONS = {
    "invalidated": "the round was proven fraudulent",
    "round_gone": "the oracle no longer keeps the round",
    "replaced": "the round holds another digest",
    "error": "its window could not be read or stayed closed",
}


class OracleChainPort(ChainPort):
    """Certificates to ``MarginOracle.attestFrost`` (ECDSA ``attest`` as fallback), evidence to
    ``SolverRegistry.slash*``, ``latestRound`` reads."""

    def __init__(
        self, client: ChainClient, transmitter: Transmitter, deployment: Deployment, metrics: NodeMetrics
    ) -> None:
        """Args:
        client: the JSON-RPC client (reads).
        transmitter: the node's transmitter account (transactions, nonces, fees).
        deployment: the contract addresses and ABIs.
        metrics: gas and evidence counters.
        """
        self.client = client
        self.transmitter = transmitter
        self.deployment = deployment
        self.metrics = metrics
        self.oracle = deployment.contract(OFFLINE_W3, "MarginOracle")
        self.registry = deployment.contract(OFFLINE_W3, "SolverRegistry")

    async def transmit(self, certificate: QuorumCertificate, frost_signature: EvmSignature | None = None) -> None:
        """Post ``certificate``: with ``MarginOracle.attestFrost`` when a FROST signature of its report is given,
        else (or when the contract refuses the FROST certificate) with ``MarginOracle.attest``.

        Args:
            certificate: the quorum's ECDSA certificate (the fallback, and the bitmap ``attestFrost`` stores).
            frost_signature: the committee's aggregated FROST signature of the report's digest, if signing finished.

        Refusals and failures are logged, never raised; the log line names the scheme that attested.
        """
        block = certificate.report.block_number
        if frost_signature is not None:
            call = self.oracle.functions.attestFrost(certificate.report.as_frost_tuple(), certificate.signer_bitmap,
                                                     *frost_signature.to_words())  # fmt: skip
            outcome = await self._send(call, block, "attestFrost")
            if outcome != "refused":
                return
            log.info("round %d: falling back to the ECDSA certificate", block)
        call = self.oracle.functions.attest(certificate.report.as_tuple(), certificate.signer_bitmap,
                                            list(certificate.signatures))  # fmt: skip
        await self._send(call, block, "attest")

    async def _send(self, call: Any, block: int, name: str) -> str:
        """Send one attestation; return "attested", "refused" (a contract error) or "failed" (any other)."""
        try:
            receipt = await run_sync(self.transmitter.transact_call, call, timeout=TRANSACTION_TIMEOUT)
        except ContractError as exc:
            # Another node's attestation landed first (the usual case for later schedule positions).
            log.info("round %d: %s refused by the contract: %s%s", block, name, exc.name, exc.error_args)
            return "already attested" if exc.name == "StaleBlockNumber" else "refused"
        except ChainError as exc:  # ChainCallTimeoutError included
            log.warning("round %d: %s failed: %s", block, name, exc)
            return "failed"
        self.metrics.gas_spent.inc(receipt.gas_used)
        scheme = "frost" if name == "attestFrost" else "ecdsa"
        self.metrics.attestations_sent.labels(scheme=scheme).inc()
        log.info("round %d: attested on chain in tx %s (gas %d, %s)", block, receipt.tx_hash.hex(), receipt.gas_used,
                 scheme)  # fmt: skip
        return "attested"

    async def submit_evidence(self, evidence: Evidence) -> None:
        """Post ``evidence`` with ``SolverRegistry.slashEquivocation`` / ``slashDeviation``; outcomes are logged.

        Equivocation is posted at once. Deviation evidence is held until its round's deviation window opens
        (``SolverRegistry.deviationDelay`` seconds after the attestation: a wrong round is proven and invalidated
        first), then posted if the round still stands with the digest it deviates from (recording the round's block
        hash first when blockhash() has forgotten it); else it is dropped, counted
        (``pmoracle_evidence_dropped_total``) and logged. Held evidence lives in this task: a restart drops it.
        """
        match evidence:
            case Equivocation(a=a, b=b):
                call = self.registry.functions.slashEquivocation(a.report.as_tuple(), a.signature,
                                                                 b.report.as_tuple(), b.signature)  # fmt: skip
                refusal = await self._post_evidence(call, "equivocation", a.signer)
                if refusal is not None:
                    log.info("equivocation evidence against 0x%s refused: %s%s", a.signer.hex(), refusal.name,
                             refusal.error_args)  # fmt: skip
            case Deviation():
                self.metrics.evidence_held.inc()
                try:
                    await self._submit_deviation(evidence)
                finally:
                    self.metrics.evidence_held.dec()
            case _:
                assert_never(evidence)

    async def _submit_deviation(self, evidence: Deviation) -> None:
        signed = evidence.signed
        block, signer = signed.report.block_number, signed.signer.hex()
        window = await self._read_deviation_window(evidence)
        if isinstance(window, str):
            self._drop_deviation(evidence, window)
            return
        opens_at, chain_now = window
        if opens_at > chain_now:
            log.info("round %d: deviation evidence against 0x%s held %d s, until its deviation window opens at %d",
                     block, signer, opens_at - chain_now, opens_at)  # fmt: skip
            await trio.sleep(opens_at - chain_now + WINDOW_MARGIN)
        call = self.registry.functions.slashDeviation(signed.report.as_tuple(), signed.signature)
        for _ in range(WINDOW_RETRIES):
            # the round must still stand: a fraud proof may have invalidated it while the evidence was held
            window = await self._read_deviation_window(evidence)
            if isinstance(window, str):
                self._drop_deviation(evidence, window)
                return
            refusal = await self._post_evidence(call, "deviation", signed.signer)
            if refusal is None:
                return
            if refusal.name == "RoundBlockHashNotRecorded":
                # blockhash() has forgotten B (256 blocks) and the round stores no hash: record it, then post again
                if not await self._record_round_block_hash(block):
                    break
                continue
            if refusal.name != "DeviationWindowNotOpen":
                log.info("deviation evidence against 0x%s refused: %s%s", signer, refusal.name, refusal.error_args)
                return
            # the chain's time has not reached the window yet (no block since, or a clock behind this host's)
            log.info("round %d: deviation window still closed (%s%s); retrying in %.0f s", block, refusal.name,
                     refusal.error_args, WINDOW_RETRY_S)  # fmt: skip
            await trio.sleep(WINDOW_RETRY_S)
        self._drop_deviation(evidence, "error")

    async def _read_deviation_window(self, evidence: Deviation) -> tuple[int, int] | str:
        """Return (the round's window opening, the latest block's timestamp), or why to drop the evidence: the round
        was invalidated, left the oracle's ring, holds another digest, or the reads failed ("error")."""
        block = evidence.signed.report.block_number
        try:
            _config, digest, attested_at = await run_sync(self.client.call, self.oracle.functions.roundDigests(block),
                                                          "latest", timeout=READ_TIMEOUT)  # fmt: skip
            delay = await run_sync(self.client.call, self.registry.functions.deviationDelay(), "latest",
                                   timeout=READ_TIMEOUT)  # fmt: skip
            head = await run_sync(self.client.get_block, "latest", timeout=READ_TIMEOUT)
        except ContractError as exc:
            return {"RoundProvenFraudulent": "invalidated", "RoundNotFound": "round_gone"}.get(exc.name, "error")
        except ChainError as exc:
            log.warning("round %d: cannot read its deviation window: %s", block, exc)
            return "error"
        if bytes(digest) != evidence.attested_digest:
            return "replaced"
        return int(attested_at) + int(delay), int(head.timestamp)

    async def _record_round_block_hash(self, block: int) -> bool:
        """Record round ``block``'s hash in MarginOracle from its attested report; return whether it was."""
        # imported here: node.dispute (the attested report rebuilt from its log) imports this module
        from pmoracle.node.dispute import record_round_block_hash

        try:
            receipt = await run_sync(record_round_block_hash, self.client, self.transmitter, self.deployment, block,
                                     timeout=TRANSACTION_TIMEOUT)  # fmt: skip
        except PmoracleError as exc:
            log.warning("round %d: cannot record its block hash for deviation evidence: %s", block, exc)
            return False
        self.metrics.gas_spent.inc(receipt.gas_used)
        log.info("round %d: block hash recorded in tx %s (blockhash() no longer has it)", block, receipt.tx_hash.hex())
        return True

    def _drop_deviation(self, evidence: Deviation, reason: str) -> None:
        self.metrics.evidence_dropped.labels(reason=reason).inc()
        signed = evidence.signed
        log.warning("round %d: deviation evidence against 0x%s dropped (%s): no offence to post",
                    signed.report.block_number, signed.signer.hex(), _DROP_REASONS[reason])  # fmt: skip

    async def _post_evidence(self, call: Any, kind: str, signer: bytes) -> ContractError | None:
        """Send one evidence transaction; return the contract's refusal (None when posted, or failed and logged)."""
        try:
            receipt = await run_sync(self.transmitter.transact_call, call, timeout=TRANSACTION_TIMEOUT)
        except ContractError as exc:
            return exc
        except ChainError as exc:
            log.warning("%s evidence against 0x%s failed: %s", kind, signer.hex(), exc)
            return None
        self.metrics.evidence_sent.labels(kind=kind).inc()
        self.metrics.gas_spent.inc(receipt.gas_used)
        log.warning("%s evidence against 0x%s posted in tx %s", kind, signer.hex(), receipt.tx_hash.hex())
        return None

    async def read_ejected_members(self) -> tuple[bytes, int] | None:
        """Return ``MarginOracle.ejectedMembers()`` (config digest, bitmap), or None when the read fails."""
        fn = self.oracle.functions.ejectedMembers()
        try:
            digest, bitmap = await run_sync(self.client.call, fn, "latest", timeout=READ_TIMEOUT)
        except ChainError as exc:  # ContractError included
            log.warning("cannot read the ejected members: %s", exc)
            return None
        return bytes(digest), int(bitmap)

    async def read_latest_attested(self) -> AttestedRound | None:
        """Return ``MarginOracle.latestRound()``, or None before the first attestation or when the read fails."""
        try:
            return await run_sync(read_round, self.client, self.oracle.functions.latestRound(), timeout=READ_TIMEOUT)
        except ContractError as exc:
            if exc.name != "NoAttestedRound":
                log.warning("cannot read the latest attested round: %s", exc)
            return None
        except ChainError as exc:
            log.warning("cannot read the latest attested round: %s", exc)
            return None


def read_round(client: ChainClient, fn: Any) -> AttestedRound:
    """Call a ``RoundView`` view of MarginOracle (``latestRound()``, ``roundAt(block)``) and return the round.

    The oracle does not store a round's block hash: its view returns blockhash() for 256 blocks, then the hash
    recorded by ``recordRoundBlockHash``, else zero. For zero this returns the canonical header's hash of the block,
    the one the oracle checked at attestation (a reorg deeper than the block also replaces the attestation).

    Errors:
        ContractError for the view's reverts (``NoAttestedRound``, ``RoundNotFound``); ChainError on RPC failures.
    """
    attested = AttestedRound.from_view(client.call(fn, "latest"))
    if attested.block_hash == bytes(32):
        attested = dataclasses.replace(attested, block_hash=client.get_block(attested.block_number).hash)
    return attested
