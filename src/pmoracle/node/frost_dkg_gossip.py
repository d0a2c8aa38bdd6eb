"""The DKG's gossip transport: a :class:`DkgTransport` over the node's :class:`~pmoracle.p2p.reports.ReportGossip`.

Every message is a signed envelope of ``consensus/frost_dkg_wire.py`` on the network's topic (the topic validator
refuses other runs, non-members, bad signatures and malformed messages before delivery). Round-2 shares are
encrypted to their recipient (ECIES): an ephemeral secp256k1 key, ECDH with the recipient's report-signing public
key (recovered from the signature on the recipient's round-1 package), HKDF-SHA256, ChaCha20-Poly1305 over the
32-byte share with the envelope's context, dealer, recipient and ephemeral key as associated data. Gossip keeps
nothing for a peer that is not connected yet, so the transport re-publishes its own messages every
``republish_interval`` seconds until it is cancelled, and hands each distinct received message to the session once.
"""

from __future__ import annotations

import logging
import math
import os
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import trio
from coincurve import PrivateKey, PublicKey
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_utils import keccak

from pmoracle.consensus import frost
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg import Complaint, DkgParameters, Round1Package, Round2Share
from pmoracle.consensus.frost_dkg_wire import (
    SignedDkgComplaint,
    SignedDkgMessage,
    SignedDkgPackage,
    compute_dkg_context,
    compute_share_associated_data,
    get_sender,
    recover_sender_key,
    sign_dkg_complaint,
    sign_dkg_package,
    sign_dkg_share,
)
from pmoracle.consensus.frost_round import get_member_identifier
from pmoracle.consensus.report import Domain, address_of
from pmoracle.errors import InputError
from pmoracle.node.frost_dkg_session import DkgMessage, DkgOutcome, DkgTransport, run_dkg_session
from pmoracle.p2p import codec
from pmoracle.p2p.reports import ReportGossip
from pmoracle.trio_types import TaskStatus

if TYPE_CHECKING:
    from libp2p.crypto.keys import KeyPair

    from pmoracle.p2p.libp2p_gossip import GossipConfig

log = logging.getLogger(__name__)

ECIES_INFO = b"pmoracle-frost-dkg-ecies-v1"
_NONCE = bytes(12)  # every key encrypts one share: the ephemeral key is fresh for each
DEFAULT_REPUBLISH_INTERVAL = 1.0


def _derive_key(shared: bytes, ephemeral_key: bytes, recipient_key: bytes) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=ECIES_INFO + ephemeral_key + recipient_key)
    return hkdf.derive(shared)


def encrypt_share(recipient_key: bytes, share: int, associated_data: Callable[[bytes], bytes]) -> tuple[bytes, bytes]:
    """Return ``(ephemeral_key, ciphertext)``: ``share`` encrypted to the 33-byte public key ``recipient_key``,
    authenticating ``associated_data(ephemeral_key)`` with it.

    Errors:
        InputError: ``recipient_key`` is not a public key.
    """
    try:
        recipient = PublicKey(recipient_key).format(compressed=True)
    except ValueError:
        raise InputError("recipient_key", f"not a public key: {recipient_key.hex()}") from None
    ephemeral = PrivateKey()  # fresh randomness from the OS
    ephemeral_key = ephemeral.public_key.format(compressed=True)
    key = _derive_key(ephemeral.ecdh(recipient), ephemeral_key, recipient)
    return ephemeral_key, ChaCha20Poly1305(key).encrypt(
        _NONCE, frost.serialize_scalar(share), associated_data(ephemeral_key)
    )


def decrypt_share(private_key: bytes, ephemeral_key: bytes, ciphertext: bytes, associated_data: bytes) -> int | None:
    """Return the share in ``ciphertext`` (encrypted to ``private_key``'s public key), or None if it does not open."""
    own = PrivateKey(private_key)
    try:
        shared = own.ecdh(ephemeral_key)
    except ValueError:  # not a point
        return None
    key = _derive_key(shared, ephemeral_key, own.public_key.format(compressed=True))
    try:
        plaintext = ChaCha20Poly1305(key).decrypt(_NONCE, ciphertext, associated_data)
    except InvalidTag:
        return None
    try:
        return frost.deserialize_scalar(plaintext, "share")
    except frost.FrostError:
        return None


class GossipDkgTransport(DkgTransport):
    """One member's DKG transport on the gossip topic; run :meth:`run` in a nursery alongside the session."""

    def __init__(
        self,
        gossip: ReportGossip,
        domain: Domain,
        committee: CommitteeConfig,
        context: bytes,
        private_key: bytes,
        *,
        republish_interval: float = DEFAULT_REPUBLISH_INTERVAL,
        later_runs: Mapping[bytes, int] | None = None,
    ) -> None:
        """Args:
        gossip: the node's report gossip (its endpoint's validator accepts the run ``context``).
        domain: the oracle's EIP-712 domain (envelopes are signed under it).
        committee: the committee whose members run the DKG (identifier = index + 1).
        context: the run (``compute_dkg_context``).
        private_key: this member's report-signing key (signs envelopes, opens shares encrypted to it).
        republish_interval: seconds between re-publications of own messages.
        later_runs: the contexts of later runs of the same committee -> their run numbers: a member's message of
            one of them is not delivered but noted in :attr:`later_run` and :attr:`later_run_seen` (the members
            that already moved on to a later run, which this member should join).
        """
        if republish_interval <= 0:
            raise InputError("republish_interval", f"must be positive, got {republish_interval}")
        self.gossip = gossip
        self.domain = domain
        self.committee = committee
        self.context = context
        self._private_key = private_key
        self.republish_interval = republish_interval
        self._own: list[codec.DkgMessage] = []
        self._seen: set[SignedDkgMessage] = set()
        self._keys: dict[int, bytes] = {}  # identifier -> public key recovered from its round-1 package
        self.complaints: list[SignedDkgComplaint] = []  # every signed complaint received (evidence)
        self.stats: Counter[str] = Counter()
        self.later_runs: Mapping[bytes, int] = later_runs or {}
        self.later_run: int | None = None  # the latest later run a member's message was seen of
        self.later_run_seen = trio.Event()

    async def broadcast_package(self, package: Round1Package) -> None:
        await self._publish(sign_dkg_package(self.domain, self.context, package, self._private_key))

    async def send_share(self, share: Round2Share) -> None:
        recipient_key = self._keys.get(share.recipient)
        if recipient_key is None:  # the session sends shares only once every package arrived: unreachable
            log.warning("DKG: no key for member %d yet; its share is not sent", share.recipient)
            return
        ephemeral_key, ciphertext = encrypt_share(
            recipient_key, share.share, lambda e: compute_share_associated_data(self.context, share.dealer,
                                                                                share.recipient, e)
        )  # fmt: skip
        signed = sign_dkg_share(self.domain, self.context, share.dealer, share.recipient, ephemeral_key, ciphertext,
                                self._private_key)  # fmt: skip
        await self._publish(signed)

    async def publish_complaint(self, complaint: Complaint) -> None:
        await self._publish(sign_dkg_complaint(self.domain, self.context, complaint, self._private_key))

    async def run(
        self,
        deliver: trio.MemorySendChannel[DkgMessage],
        me: int,
        *,
        task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Deliver the other members' packages and own shares to ``deliver`` and re-publish, until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._republish_loop)
            task_status.started()
            async for message in self.gossip.dkg_messages():
                for item in self._accept(message, me):
                    await deliver.send(item)
            nursery.cancel_scope.cancel()

    def _accept(self, message: codec.DkgMessage, me: int) -> Sequence[DkgMessage]:
        signed = message.signed
        if self.note_later_run(message):
            return ()
        if message.network != self.gossip.network or signed.context != self.context:  # the validator's job too
            self.stats["wrong-run"] += 1
            return ()
        if signed in self._seen:  # re-publications and gossip's own duplicates
            self.stats["duplicate"] += 1
            return ()
        sender = get_sender(signed)
        key = recover_sender_key(self.domain, signed)
        if key is None or not self._is_members_key(sender, key):  # the validator checked it; never trust input
            self.stats["bad-signature"] += 1
            return ()
        self._seen.add(signed)
        if isinstance(signed, SignedDkgPackage):
            self._keys.setdefault(sender, key)
            return (signed.package,)
        if isinstance(signed, SignedDkgComplaint):
            self.complaints.append(signed)
            log.warning("DKG: member %d complains against member %d", signed.complaint.accuser,
                        signed.complaint.dealer)  # fmt: skip
            return ()
        if signed.recipient != me:  # everyone sees every share; only its recipient can open it
            return ()
        share = decrypt_share(self._private_key, signed.ephemeral_key, signed.ciphertext, signed.associated_data)
        if share is None:  # signed by its dealer but not openable: the dealer's fault; the run names it missing
            self.stats["undecryptable"] += 1
            log.warning("DKG: member %d's share to us does not decrypt", signed.dealer)
            return ()
        return (Round2Share(signed.dealer, signed.recipient, share),)

    def note_later_run(self, message: codec.DkgMessage) -> bool:
        """Note ``message`` if it belongs to one of :attr:`later_runs` (a member's, validly signed: it sets
        :attr:`later_run` and :attr:`later_run_seen`); return whether it did belong to one."""
        signed = message.signed
        if message.network != self.gossip.network or signed.context not in self.later_runs:
            return False
        key = recover_sender_key(self.domain, signed)
        if key is None or not self._is_members_key(get_sender(signed), key):
            self.stats["bad-signature"] += 1
            return True
        self.stats["later-run"] += 1
        run = self.later_runs[signed.context]
        if self.later_run is None or run > self.later_run:
            self.later_run = run
            self.later_run_seen.set()
        return True

    def _is_members_key(self, identifier: int, key: bytes) -> bool:
        address = keccak(PublicKey(key).format(compressed=False)[1:])[12:]
        return get_member_identifier(self.committee, address) == identifier

    async def _publish(self, signed: SignedDkgMessage) -> None:
        message = codec.DkgMessage(self.gossip.network, signed)
        self._own.append(message)
        await self.gossip.publish_dkg(message)

    async def _republish_loop(self) -> None:
        while True:
            await trio.sleep(self.republish_interval)
            for message in list(self._own):
                await self.gossip.publish_dkg(message)
                self.stats["republished"] += 1


async def run_gossip_dkg(
    transport: GossipDkgTransport,
    parameters: DkgParameters,
    seed: bytes,
    *,
    timeout: float,
    linger: float = 2 * DEFAULT_REPUBLISH_INTERVAL,
    on_outcome: Callable[[DkgOutcome], None] | None = None,
) -> DkgOutcome:
    """Run this member's DKG session over ``transport`` (its gossip already running), then keep re-publishing for
    ``linger`` seconds so that members still waiting for a re-published message finish too.

    Args:
        transport: this member's gossip transport (its context is ``parameters.context``).
        parameters: the run (identifiers = committee index + 1, threshold, own identifier).
        seed: at least 32 fresh random bytes (secret).
        timeout: how long the session may take.
        linger: seconds to keep re-publishing after a finished run (0: stop at once).
        on_outcome: called with the outcome as soon as the session ends (before lingering).

    Returns:
        The session's outcome.
    """
    if parameters.context != transport.context:
        raise InputError("context", "the session and the transport are bound to different runs")
    send, receive = trio.open_memory_channel[DkgMessage](math.inf)
    async with trio.open_nursery() as nursery:
        await nursery.start(transport.run, send, parameters.me)
        outcome = await run_dkg_session(parameters, seed, transport, receive, timeout=timeout)
        if on_outcome is not None:
            on_outcome(outcome)
        if outcome.result is not None and linger > 0:
            await trio.sleep(linger)
        nursery.cancel_scope.cancel()
    return outcome


async def join_dkg_over_libp2p(
    gossip_config: GossipConfig,
    peer_key: KeyPair,
    committee: CommitteeConfig,
    signing_key: bytes,
    *,
    run: int = 0,
    timeout: float,
    linger: float = 2 * DEFAULT_REPUBLISH_INTERVAL,
    seed: bytes | None = None,
    silent: bool = False,
    on_outcome: Callable[[DkgOutcome], None] | None = None,
) -> tuple[DkgOutcome | None, GossipDkgTransport]:
    """Join the DKG run ``run`` of ``committee`` as the member ``signing_key`` signs for, over a libp2p endpoint.

    Args:
        gossip_config: the endpoint (its network is the oracle's; listen address, bootstrap peers).
        peer_key: the libp2p identity.
        committee: the installed committee (identifiers = index + 1, threshold = its quorum).
        signing_key: this member's report-signing key.
        run: the run number (a failed run is followed by run + 1 without the members it names).
        timeout: seconds the session may take.
        linger: seconds to keep re-publishing after a finished run.
        seed: 32 secret random bytes (None: drawn from the OS).
        silent: tests only: join the topic but send nothing (a member that stays silent); returns no outcome.
        on_outcome: called with the outcome as soon as the session ends (before lingering).

    Returns:
        The outcome (None when ``silent``) and the transport (its stats and the complaints it saw).

    Errors:
        InputError: ``signing_key`` is not a member's.
    """
    from pmoracle.p2p.libp2p_gossip import Libp2pGossip
    from pmoracle.p2p.validator import ReportValidator

    domain = gossip_config.network.domain
    index = committee.index_of(address_of(signing_key))
    if index is None:
        raise InputError("signing_key", f"0x{address_of(signing_key).hex()} is not a member of the committee")
    context = compute_dkg_context(domain, committee, run)
    validator = ReportValidator(gossip_config.network, committee)
    validator.set_dkg_context(context)
    gossip = Libp2pGossip(gossip_config, peer_key, validator)
    reports = ReportGossip(gossip, gossip_config.network)
    transport = GossipDkgTransport(reports, domain, committee, context, signing_key)
    parameters = DkgParameters(context, tuple(range(1, len(committee.members) + 1)), committee.quorum, index + 1)
    outcome: DkgOutcome | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(gossip.run)
        await nursery.start(reports.run)
        if silent:
            await trio.sleep(timeout + linger)
        else:
            outcome = await run_gossip_dkg(transport, parameters, seed if seed is not None else os.urandom(32),
                                           timeout=timeout, linger=linger, on_outcome=on_outcome)  # fmt: skip
        nursery.cancel_scope.cancel()
    return outcome, transport
