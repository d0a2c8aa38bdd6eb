"""Deterministic FROST committees for tests and benchmarks: a whole DKG run in one process, a test committee with
its group key registered, and an in-memory network for DKG sessions (never for production).

Every member's seed comes from one public seed, so anyone can recompute the signing shares: these keys exist so
that tests and separate processes agree on a committee without sharing files.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from collections.abc import Callable, Sequence

import trio

from pmoracle.consensus import frost, frost_dkg
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.consensus.frost_round import DEFAULT_ATTEMPTS, FrostRoundContext
from pmoracle.node.frost_dkg_session import DkgMessage, DkgTransport
from pmoracle.testing.committees import TestCommittee, make_test_committee


def _derive(seed: bytes, *labels: object) -> bytes:
    return hashlib.sha256(seed + repr(labels).encode()).digest()


def run_test_dkg(threshold: int, n: int, seed: bytes, context: bytes | None = None) -> dict[int, frost_dkg.DkgResult]:
    """Return every member's result of a DKG among identifiers 1..n, each message delivered once, in order.

    Raises DkgError if any member rejects a message (it cannot happen with honest members).
    """
    ids = tuple(range(1, n + 1))
    context = context if context is not None else _derive(seed, "context")
    started = {
        i: frost_dkg.start_dkg(frost_dkg.DkgParameters(context, ids, threshold, i), _derive(seed, "member", i))
        for i in ids
    }
    states = {i: state for i, (state, _) in started.items()}
    for dealer, (_, package) in started.items():
        for i in ids:
            if i != dealer:
                states[i], effects = frost_dkg.on_round1_package(states[i], package)
                if effects:
                    raise frost_dkg.DkgError("dkg", f"member {i} rejected dealer {dealer}: {effects}")
    for state, _ in started.values():
        for share in frost_dkg.compute_round2_shares(state):
            states[share.recipient], effects = frost_dkg.on_round2_share(states[share.recipient], share)
            if effects:
                raise frost_dkg.DkgError("dkg", f"member {share.recipient} rejected dealer {share.dealer}: {effects}")
    return {i: frost_dkg.finish_dkg(state) for i, state in states.items()}


def sign_in_process(
    results: dict[int, frost_dkg.DkgResult], signers: Sequence[int], message: bytes, seed: bytes
) -> frost.Signature:
    """Return the aggregate of ``signers``' shares of ``message`` (unchecked: below the threshold it is invalid)."""
    group_key = next(iter(results.values())).group_public_key
    rounds = {
        i: frost.commit(i, results[i].signing_share, _derive(seed, "hiding", i), _derive(seed, "binding", i))
        for i in signers
    }
    commitments = [rounds[i][1] for i in sorted(signers)]
    shares = [
        frost.sign(i, results[i].signing_share, group_key, rounds[i][0], message, commitments) for i in sorted(signers)
    ]
    return frost.aggregate(commitments, message, group_key, shares)


@dataclasses.dataclass(frozen=True, slots=True)
class FrostTestCommittee:
    """A test committee whose config carries the group key of a DKG among its members (threshold = quorum)."""

    __test__ = False  # not a pytest test class

    committee: TestCommittee  # its config has ``group_key`` set
    results: dict[int, frost_dkg.DkgResult]  # identifier (committee index + 1) -> DKG result

    @property
    def group_public_key(self) -> bytes:
        """Return the 33-byte group key."""
        return self.results[1].group_public_key

    def context(
        self, me: int | None, *, stage_delay: float = 2.0, window_rounds: int = 16, attempts: int = DEFAULT_ATTEMPTS
    ) -> FrostRoundContext:
        """Return member ``me``'s signing context (None: a watcher)."""
        first = self.results[1]
        return FrostRoundContext.create(
            self.committee.network.domain, self.committee.config, first.group_public_key, first.verification_shares,
            first.parameters.threshold, me, stage_delay=stage_delay, window_rounds=window_rounds, attempts=attempts,
        )  # fmt: skip


def make_frost_test_committee(n: int, label: str = "pmoracle-test") -> FrostTestCommittee:
    """Return the test committee of size ``n`` with a t-of-n group key, t its quorum (keys derived from ``label``)."""
    base = make_test_committee(n, label)
    results = run_test_dkg(base.config.quorum, n, hashlib.sha256(f"{label}/frost/{n}".encode()).digest())
    group_key = EvmGroupKey.from_compressed(results[1].group_public_key)
    config = dataclasses.replace(base.config, group_key=group_key)
    return FrostTestCommittee(dataclasses.replace(base, config=config), results)


# tamper(sender, recipient, message) returns what to deliver instead: [message] unchanged, [] drops it.
DkgTamper = Callable[[int, int, DkgMessage], Sequence[DkgMessage]]


class InMemoryDkgNetwork:
    """DKG messages between sessions in one process, each delivery passed through ``tamper`` (to change, drop or
    add messages). Complaints are collected in :attr:`complaints`."""

    def __init__(self, identifiers: Sequence[int], *, tamper: DkgTamper | None = None) -> None:
        self._tamper = tamper
        self._channels = {i: trio.open_memory_channel[DkgMessage](math.inf) for i in identifiers}
        self.complaints: list[frost_dkg.Complaint] = []

    def incoming(self, identifier: int) -> trio.abc.ReceiveChannel[DkgMessage]:
        """Return member ``identifier``'s receive channel."""
        return self._channels[identifier][1]

    def transport(self, identifier: int) -> DkgTransport:
        """Return member ``identifier``'s transport."""
        return _InMemoryDkgTransport(self, identifier)

    def deliver(self, sender: int, recipient: int, message: DkgMessage) -> None:
        """Put ``message`` (or what ``tamper`` makes of it) in ``recipient``'s channel."""
        delivered = self._tamper(sender, recipient, message) if self._tamper is not None else [message]
        for item in delivered:
            self._channels[recipient][0].send_nowait(item)


class _InMemoryDkgTransport(DkgTransport):
    def __init__(self, network: InMemoryDkgNetwork, me: int) -> None:
        self._network = network
        self._me = me

    async def broadcast_package(self, package: frost_dkg.Round1Package) -> None:
        for recipient in self._network._channels:
            if recipient != self._me:
                self._network.deliver(self._me, recipient, package)

    async def send_share(self, share: frost_dkg.Round2Share) -> None:
        self._network.deliver(self._me, share.recipient, share)

    async def publish_complaint(self, complaint: frost_dkg.Complaint) -> None:
        self._network.complaints.append(complaint)
