"""Signed-report exchange over any :class:`GossipEndpoint`: dedupe, re-publication until attested, catch-up.

Gossipsub keeps nothing for a peer that was away, so delivery is made reliable above it. This is the node's only
re-publication: the consensus collector asks for one ``Broadcast`` per own signed report and has no timer of its
own (docs/consensus.md says why), and the protocol simulation proves liveness with this schedule.

- the node re-publishes its own signed report for every open round until the owner calls
  :meth:`ReportGossip.mark_attested`, first after ``republish_interval``, then at doubling intervals capped at
  ``max_republish_interval`` (a slow round must not feed itself: every re-publication costs every peer CPU);
- a node that (re)joins asks for a round with :meth:`ReportGossip.request_catch_up`; every member holding its own
  signed report for that round re-publishes it (at most once per ``catch_up_cooldown`` per round);
- received reports are deduplicated by (signer, round key, report): each distinct signed report reaches the owner
  once, and an equivocating signer's second report still does (it is evidence);
- FROST commitments and shares (docs/frost.md) go to their own channel, :meth:`ReportGossip.frost_messages`, and
  out once with :meth:`ReportGossip.publish_frost`;
- DKG messages go to :meth:`ReportGossip.dkg_messages` and out with :meth:`ReportGossip.publish_dkg` (the DKG
  transport, ``node/frost_dkg_gossip.py``, re-publishes and dedupes them).
"""

from __future__ import annotations

import logging
from collections import Counter

import trio

from pmoracle.consensus.report import Report, SignedReport
from pmoracle.errors import InputError
from pmoracle.p2p.abc import GossipEndpoint
from pmoracle.p2p.codec import (
    CatchUpRequest,
    DkgMessage,
    FrostCommitmentMessage,
    FrostShareMessage,
    NetworkId,
    SignedReportMessage,
    decode_message,
    encode_message,
)
from pmoracle.p2p.errors import CodecError, GossipError
from pmoracle.trio_types import TaskStatus

logger = logging.getLogger(__name__)

RoundKey = tuple[bytes, int]
FrostMessage = FrostCommitmentMessage | FrostShareMessage

# The re-publication schedule of an own report (the one the protocol simulation proves liveness with): first after
# REPUBLISH_INTERVAL seconds, then at doubling intervals capped at MAX_REPUBLISH_INTERVAL.
REPUBLISH_INTERVAL = 2.0
MAX_REPUBLISH_INTERVAL = 16.0

# Rounds whose received reports are remembered for deduplication (older ones are forgotten, by block number).
MAX_REMEMBERED_ROUNDS = 64


class ReportGossip:
    """The report-level protocol on top of a gossip endpoint; run :meth:`run` in a nursery."""

    def __init__(
        self,
        endpoint: GossipEndpoint,
        network: NetworkId,
        *,
        republish_interval: float = REPUBLISH_INTERVAL,
        max_republish_interval: float = MAX_REPUBLISH_INTERVAL,
        catch_up_cooldown: float = 1.0,
        queue_size: int = 256,
    ) -> None:
        """Args:
        endpoint: the transport (libp2p or in-memory) whose validator already checks signatures.
        network: the network messages are stamped with.
        republish_interval: seconds before the first re-publication of our own unattested report.
        max_republish_interval: cap of the doubling interval between later re-publications.
        catch_up_cooldown: minimum seconds between two answers to catch-up requests for one round.
        queue_size: bound of the :meth:`reports` queue (overflow is dropped and counted in ``stats``).
        """
        if republish_interval <= 0 or catch_up_cooldown < 0:
            raise InputError("republish_interval", "intervals must be positive")
        if max_republish_interval < republish_interval:
            raise InputError("max_republish_interval", f"{max_republish_interval} < {republish_interval}")
        self.max_republish_interval = max_republish_interval
        # round key -> (when to re-publish next, current interval); trio time
        self._next_republish: dict[RoundKey, tuple[float, float]] = {}
        self.endpoint = endpoint
        self.network = network
        self.republish_interval = republish_interval
        self.catch_up_cooldown = catch_up_cooldown
        self._own: dict[RoundKey, SignedReport] = {}  # our signed reports of open (unattested) rounds
        self._attested: set[RoundKey] = set()
        self._kept: dict[RoundKey, SignedReport] = {}  # our reports of attested rounds, for catch-up answers
        self._seen: dict[RoundKey, set[tuple[bytes, Report]]] = {}
        self._last_answer: dict[RoundKey, float] = {}
        self._send, self._receive = trio.open_memory_channel[SignedReport](queue_size)
        self._frost_send, self._frost_receive = trio.open_memory_channel[FrostMessage](queue_size)
        self._dkg_send, self._dkg_receive = trio.open_memory_channel[DkgMessage](queue_size)
        self._wake = trio.Event()
        # Counts: published, republished, catch-up-sent, catch-up-answered, received, duplicate, undecodable,
        # queue-full.
        self.stats: Counter[str] = Counter()

    def reports(self) -> trio.abc.ReceiveChannel[SignedReport]:
        """Return the channel of signed reports from other members, each distinct one once."""
        return self._receive

    def frost_messages(self) -> trio.abc.ReceiveChannel[FrostMessage]:
        """Return the channel of FROST commitments and shares from other members (the signing machine dedupes)."""
        return self._frost_receive

    async def publish_frost(self, message: FrostMessage) -> None:
        """Publish a FROST commitment or share once (the signing machine has its own attempts, not re-publication).

        Args:
            message: our signed commitment or share, on this network.
        """
        try:
            await self.endpoint.publish(encode_message(message))
        except GossipError as exc:  # not connected yet / shutting down: the round falls back to ECDSA
            logger.debug("FROST publish failed: %s", exc)
            return
        self.stats["frost-published"] += 1

    def dkg_messages(self) -> trio.abc.ReceiveChannel[DkgMessage]:
        """Return the channel of DKG messages from other members (the DKG transport dedupes)."""
        return self._dkg_receive

    async def publish_dkg(self, message: DkgMessage) -> None:
        """Publish a DKG message once (the DKG transport re-publishes its own until the run ends).

        Args:
            message: our signed DKG message, on this network.
        """
        try:
            await self.endpoint.publish(encode_message(message))
        except GossipError as exc:  # not connected yet / shutting down: the transport re-publishes
            logger.debug("DKG publish failed: %s", exc)
            return
        self.stats["dkg-published"] += 1

    async def publish_own(self, signed: SignedReport) -> None:
        """Publish our signed report now and keep re-publishing it until its round is attested.

        Args:
            signed: our report, already recorded by slashing protection.
        """
        key = signed.report.round_key
        if key in self._attested:
            return
        self._own[key] = signed
        self._next_republish[key] = (trio.current_time() + self.republish_interval, self.republish_interval)
        self._remember(signed)
        await self._publish(signed)
        self.stats["published"] += 1

    def mark_attested(self, round_key: RoundKey) -> None:
        """Stop re-publishing for ``round_key`` (a certificate exists); we still answer catch-up for it."""
        self._attested.add(round_key)
        signed = self._own.pop(round_key, None)
        self._next_republish.pop(round_key, None)
        if signed is not None:
            self._kept[round_key] = signed
        self._forget_old()

    async def request_catch_up(self, round_key: RoundKey) -> None:
        """Ask connected members to re-publish their signed reports for ``round_key``."""
        config_digest, block_number = round_key
        request = CatchUpRequest(self.network, config_digest, block_number)
        try:
            await self.endpoint.publish(encode_message(request))
        except GossipError as exc:  # not connected yet / shutting down: the next round asks again
            logger.debug("catch-up request failed: %s", exc)
            return
        self.stats["catch-up-sent"] += 1

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Receive and re-publish until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._republish_loop)
            task_status.started()
            await self._receive_loop()
            nursery.cancel_scope.cancel()

    async def _publish(self, signed: SignedReport) -> None:
        try:
            await self.endpoint.publish(encode_message(SignedReportMessage(self.network, signed)))
        except GossipError as exc:  # not connected yet / shutting down: the next re-publication retries
            logger.debug("publish failed: %s", exc)

    async def _republish_loop(self) -> None:
        # Polls at a fraction of the base interval; publish_own and mark_attested change the schedule.
        while True:
            await trio.sleep(self.republish_interval / 4)
            now = trio.current_time()
            for key, (due, interval) in list(self._next_republish.items()):
                signed = self._own.get(key)
                if signed is None or now < due:
                    continue
                interval = min(2 * interval, self.max_republish_interval)
                self._next_republish[key] = (now + interval, interval)
                await self._publish(signed)
                self.stats["republished"] += 1

    async def _receive_loop(self) -> None:
        async for received in self.endpoint.messages():
            try:
                message = decode_message(received.payload)
            except CodecError:  # the endpoint's validator should have refused it; never crash on input
                self.stats["undecodable"] += 1
                continue
            if message.network != self.network:
                self.stats["undecodable"] += 1
                continue
            if isinstance(message, CatchUpRequest):
                await self._answer_catch_up(message.round_key)
                continue
            if isinstance(message, DkgMessage):  # the DKG transport's
                try:
                    self._dkg_send.send_nowait(message)
                    self.stats["dkg-received"] += 1
                except trio.WouldBlock:
                    self.stats["dkg-queue-full"] += 1
                continue
            if isinstance(message, FrostCommitmentMessage | FrostShareMessage):  # the signing machine's
                try:
                    self._frost_send.send_nowait(message)
                    self.stats["frost-received"] += 1
                except trio.WouldBlock:
                    self.stats["frost-queue-full"] += 1
                continue
            signed = message.signed
            if not self._remember(signed):
                self.stats["duplicate"] += 1
                continue
            self.stats["received"] += 1
            try:
                self._send.send_nowait(signed)
            except trio.WouldBlock:
                self.stats["queue-full"] += 1

    async def _answer_catch_up(self, round_key: RoundKey) -> None:
        signed = self._own.get(round_key) or self._kept.get(round_key)
        if signed is None:
            return
        now = trio.current_time()
        last = self._last_answer.get(round_key)
        if last is not None and now - last < self.catch_up_cooldown:
            return
        self._last_answer[round_key] = now
        await self._publish(signed)
        self.stats["catch-up-answered"] += 1

    def _remember(self, signed: SignedReport) -> bool:
        entry = (signed.signer, signed.report)
        seen = self._seen.setdefault(signed.report.round_key, set())
        if entry in seen:
            return False
        seen.add(entry)
        self._forget_old()
        return True

    def _forget_old(self) -> None:
        # Keep the newest MAX_REMEMBERED_ROUNDS rounds (by block number) in every per-round table.
        for table in (self._seen, self._kept, self._last_answer):
            while len(table) > MAX_REMEMBERED_ROUNDS:
                del table[min(table, key=lambda key: key[1])]
        while len(self._attested) > MAX_REMEMBERED_ROUNDS:
            self._attested.discard(min(self._attested, key=lambda key: key[1]))
