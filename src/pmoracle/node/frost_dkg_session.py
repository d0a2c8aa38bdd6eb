"""One member's DKG run as a session over messages: the pure state machine of ``consensus/frost_dkg.py`` driven by
a transport and trio's clock.

The transport is injected (:class:`DkgTransport` and a receive channel of decoded, sender-authenticated messages):
gossip in production, :class:`pmoracle.testing.frost.InMemoryDkgNetwork` in tests. The session follows the FROST
paper's KeyGen order::

    broadcast own round-1 package
    upon a valid round-1 package from every participant:  send f_i(l) to each P_l       (round 2)
    upon a failed proof (DkgRejected BAD_PROOF) or a Complaint:  publish the complaint; end, failed
    upon every package and share valid:  end with finish_dkg(state)
    upon the deadline:  end, failed, naming the dealers whose package never came (round 2 never started), else
                        those whose share never came

Dropped messages (``DkgRejected``) never end a run: they are counted by reason and logged, and the run goes on. A
failed run names the dealers to leave out of the next one (a new context), as docs/frost.md describes.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import trio

from pmoracle.consensus.frost_dkg import (
    Complaint,
    DkgIncompleteError,
    DkgParameters,
    DkgRejected,
    DkgRejectReason,
    DkgResult,
    DkgState,
    Round1Package,
    Round2Share,
    compute_round2_shares,
    finish_dkg,
    on_round1_package,
    on_round2_share,
    start_dkg,
)

log = logging.getLogger(__name__)

DkgMessage = Round1Package | Round2Share

# A dropped message's likely cause sets its log level: a duplicate is gossip being gossip, the rest is a fault.
_REJECT_LOG_LEVEL = {
    DkgRejectReason.DUPLICATE: logging.DEBUG,
    DkgRejectReason.FROM_SELF: logging.DEBUG,
    DkgRejectReason.DISQUALIFIED: logging.DEBUG,
    DkgRejectReason.NOT_A_PARTICIPANT: logging.INFO,
    DkgRejectReason.WRONG_RECIPIENT: logging.WARNING,
    DkgRejectReason.WRONG_DEGREE: logging.WARNING,
    DkgRejectReason.BAD_PROOF: logging.WARNING,
}


class DkgTransport(ABC):
    """How a DKG session reaches the other participants (messages come back through a receive channel)."""

    @abstractmethod
    async def broadcast_package(self, package: Round1Package) -> None:
        """Send this member's round-1 package to every participant.

        Errors:
            None: a message that cannot be sent is lost (the run then times out).
        """

    @abstractmethod
    async def send_share(self, share: Round2Share) -> None:
        """Send ``share`` to ``share.recipient`` only, encrypted to it and signed by this member.

        Errors:
            None: a message that cannot be sent is lost (the run then times out).
        """

    @abstractmethod
    async def publish_complaint(self, complaint: Complaint) -> None:
        """Publish ``complaint`` (with the share it reveals) to every participant, for the evidence archive.

        Errors:
            None: a message that cannot be sent is lost.
        """


@dataclass(frozen=True, slots=True)
class DkgOutcome:
    """How a session ended: the result, or the dealers that kept it from finishing."""

    result: DkgResult | None
    missing: tuple[int, ...] = ()  # on a timeout: dealers whose package (else share) never arrived
    disqualified: tuple[int, ...] = ()  # dealers whose proof of knowledge failed
    complaints: tuple[Complaint, ...] = ()  # this member's justified complaints (published)
    rejected: Mapping[DkgRejectReason, int] = field(default_factory=dict)  # dropped messages, by reason
    timed_out: bool = False

    @property
    def excluded(self) -> tuple[int, ...]:
        """Return every dealer this run names: to be left out of the next run."""
        accused = {c.dealer for c in self.complaints}
        return tuple(sorted(set(self.missing) | set(self.disqualified) | accused))


def _has_every_package(state: DkgState) -> bool:
    return all(i in state.packages for i in state.parameters.identifiers)


def _has_every_share(state: DkgState) -> bool:
    return all(i in state.shares for i in state.parameters.identifiers)


async def run_dkg_session(
    parameters: DkgParameters,
    seed: bytes,
    transport: DkgTransport,
    incoming: trio.abc.ReceiveChannel[DkgMessage],
    *,
    timeout: float,
) -> DkgOutcome:
    """Run this member's side of one DKG run until it finishes, fails, or ``timeout`` seconds pass (trio's clock).

    Args:
        parameters: the run (context, participants, threshold, own identifier).
        seed: at least 32 fresh random bytes (secret: the polynomial and the proof nonce derive from it).
        transport: sends this member's messages.
        incoming: the other participants' messages, decoded and with their sender authenticated by the transport.
        timeout: how long the whole run may take.

    Returns:
        The outcome: ``result`` when every package and share arrived valid, else who is missing, disqualified or
        accused, and every dropped message counted by reason.

    Errors:
        DkgError: ``parameters`` or ``seed`` are malformed. Nothing a participant sends raises.
    """
    state, package = start_dkg(parameters, seed)
    rejected: Counter[DkgRejectReason] = Counter()
    complaints: list[Complaint] = []
    shares_sent = False
    finished = False
    await transport.broadcast_package(package)
    with trio.move_on_after(timeout):
        while True:
            if not shares_sent and _has_every_package(state):  # upon every valid round-1 package: round 2
                for share in compute_round2_shares(state):
                    await transport.send_share(share)
                shares_sent = True
            if state.disqualified or state.complaints or (shares_sent and _has_every_share(state)):
                finished = True
                break
            try:
                message = await incoming.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):  # the transport is gone: the run cannot finish
                log.warning("DKG %s: the transport closed before the run finished", parameters.context.hex()[:16])
                finished = True
                break
            if isinstance(message, Round1Package):
                state, effects = on_round1_package(state, message)
            else:
                state, effects = on_round2_share(state, message)
            for effect in effects:
                if isinstance(effect, DkgRejected):
                    rejected[effect.reason] += 1
                    log.log(_REJECT_LOG_LEVEL[effect.reason], "DKG: dropped a message from %d (%s)", effect.sender,
                            effect.reason.value)  # fmt: skip
                else:
                    complaints.append(effect)
                    log.warning("DKG: member %d's share to us is not on its commitment; complaining", effect.dealer)
                    await transport.publish_complaint(effect)
    try:
        result = finish_dkg(state)
    except DkgIncompleteError as exc:
        missing = exc.missing
        if not shares_sent:  # round 2 never started: only the dealers whose package never came held it up
            missing = tuple(i for i in missing if i not in state.packages)
        return DkgOutcome(
            result=None,
            missing=missing if not finished else (),  # cut short by a failure: silence is not blamed
            disqualified=exc.disqualified,
            complaints=tuple(complaints),
            rejected=dict(rejected),
            timed_out=not finished,
        )
    return DkgOutcome(result=result, rejected=dict(rejected))
