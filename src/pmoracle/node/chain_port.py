"""The production :class:`~pmoracle.node.abc.ChainPort`: the MarginOracle and SolverRegistry contracts reached
through :class:`~pmoracle.chain.client.ChainClient` (reads) and :class:`~pmoracle.chain.transmitter.Transmitter`
(transactions), each blocking call in a worker thread under a timeout."""

from __future__ import annotations

import logging
from typing import Any, assert_never

from web3 import Web3

from pmoracle.chain.client import ChainClient, run_sync
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.errors import ChainError, ContractError
from pmoracle.chain.transmitter import Transmitter
from pmoracle.consensus.certificate import QuorumCertificate
from pmoracle.consensus.evidence import Deviation, Equivocation, Evidence
from pmoracle.consensus.frost_evm import EvmSignature
from pmoracle.node.abc import AttestedRound, ChainPort
from pmoracle.node.metrics import NodeMetrics

log = logging.getLogger("pmoracle.node")
# web3 contract objects only encode calls and decode results here; requests go through ChainClient.
OFFLINE_W3 = Web3()

TRANSACTION_TIMEOUT = 60.0  # seconds for one transaction: signing, sending and the receipt
READ_TIMEOUT = 10.0  # seconds for one contract read


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
            call = self.oracle.functions.attestFrost(certificate.report.as_tuple(), certificate.signer_bitmap,
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
        """Post ``evidence`` with ``SolverRegistry.slashEquivocation`` / ``slashDeviation``; outcomes are logged."""
        call: Any
        match evidence:
            case Equivocation(a=a, b=b):
                call = self.registry.functions.slashEquivocation(a.report.as_tuple(), a.signature,
                                                                 b.report.as_tuple(), b.signature)  # fmt: skip
                kind, signer = "equivocation", a.signer
            case Deviation(signed=signed):
                call = self.registry.functions.slashDeviation(signed.report.as_tuple(), signed.signature)
                kind, signer = "deviation", signed.signer
            case _:
                assert_never(evidence)
        try:
            receipt = await run_sync(self.transmitter.transact_call, call, timeout=TRANSACTION_TIMEOUT)
        except ContractError as exc:
            log.info("%s evidence against 0x%s refused: %s%s", kind, signer.hex(), exc.name, exc.error_args)
            return
        except ChainError as exc:
            log.warning("%s evidence against 0x%s failed: %s", kind, signer.hex(), exc)
            return
        self.metrics.evidence_sent.labels(kind=kind).inc()
        self.metrics.gas_spent.inc(receipt.gas_used)
        log.warning("%s evidence against 0x%s posted in tx %s", kind, signer.hex(), receipt.tx_hash.hex())

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
            view = await run_sync(self.client.call, self.oracle.functions.latestRound(), "latest", timeout=READ_TIMEOUT)
        except ContractError as exc:
            if exc.name != "NoAttestedRound":
                log.warning("cannot read the latest attested round: %s", exc)
            return None
        except ChainError as exc:
            log.warning("cannot read the latest attested round: %s", exc)
            return None
        return AttestedRound.from_view(view)
