"""The synchronous topic validator: what may enter (and be forwarded on) a network's gossip topic.

Checks, cheapest first; the first failing one names the rejection reason::

    size <= MAX_MESSAGE_BYTES, exact msgpack layout       -> codec reasons (oversize, malformed, bad-field, ...)
    message.network == ours (chain id, oracle, version)   -> wrong-network
    config digest == our committee's                      -> wrong-config
    params hash == our committee's                        -> wrong-params
    signer is a committee member                          -> not-member
    EIP-712 signature recovers to the signer              -> bad-signature

FROST commitments and shares (docs/frost.md, "Signing in the round"): the same network and config digest checks,
then the identifier is the signer's (committee index + 1, else ``not-member``) and the envelope signature recovers
to the signer (``bad-signature``). Whether a share is valid is the signing machine's business (it archives the
evidence), since the verdict needs the commitments.

DKG messages (docs/frost.md, "The DKG over gossip"): the same network check, then the run's context is the one
this node takes part in (:meth:`ReportValidator.set_dkg_context`; none set: every DKG message is ``wrong-dkg``),
the sender's identifier (a package's or share's dealer, a complaint's accuser) is the signer's (``not-member``)
and the envelope signature recovers to the signer (``bad-signature``). Whether a share decrypts and is on its
dealer's commitment is the DKG session's business.

It judges one message on its own (libp2p caches the verdict per message id): whether a signer equivocated or a
report disagrees with the quorum is the consensus collector's business, after delivery.
"""

from __future__ import annotations

from collections.abc import Iterable

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg_wire import get_sender, is_valid_dkg_signature
from pmoracle.consensus.frost_round import (
    get_member_identifier,
    is_valid_commitment_signature,
    is_valid_share_signature,
)
from pmoracle.consensus.report import is_valid_signed_report
from pmoracle.p2p.abc import Verdict
from pmoracle.p2p.codec import (
    CatchUpRequest,
    DkgMessage,
    FrostCommitmentMessage,
    FrostShareMessage,
    NetworkId,
    decode_message,
)
from pmoracle.p2p.errors import CodecError

# The finite set of reasons this validator gives (metric labels); transports add their own (e.g. queue-full).
REJECTION_REASONS = (
    "not-bytes",
    "oversize",
    "malformed",
    "not-array",
    "bad-version",
    "unknown-kind",
    "bad-length",
    "bad-field",
    "non-canonical",
    "wrong-network",
    "wrong-config",
    "wrong-params",
    "not-member",
    "bad-signature",
    "wrong-dkg",
)


class ReportValidator:
    """The topic validator of one network and committee; call it with the payload bytes."""

    def __init__(self, network: NetworkId, committee: CommitteeConfig) -> None:
        """Args:
        network: the network this node is on (its topic and the EIP-712 domain).
        committee: the current committee configuration (members, quorum, params hash).
        """
        self.network = network
        self.dkg_contexts: frozenset[bytes] = frozenset()
        self.set_committee(committee)

    def set_dkg_context(self, context: bytes | None) -> None:
        """Accept the DKG messages of the run ``context`` (None: refuse every DKG message)."""
        self.set_dkg_contexts(() if context is None else (context,))

    def set_dkg_contexts(self, contexts: Iterable[bytes]) -> None:
        """Accept the DKG messages of any of the runs ``contexts`` (empty: refuse every DKG message)."""
        self.dkg_contexts = frozenset(contexts)

    def set_committee(self, committee: CommitteeConfig) -> None:
        """Switch to a new committee configuration (after an on-chain reconfiguration)."""
        self.committee = committee
        self._config_digest = committee.digest()
        self._members = frozenset(committee.members)
        self._domain = self.network.domain

    def __call__(self, payload: bytes) -> Verdict:
        """Return the verdict on ``payload``; never raises."""
        try:
            message = decode_message(payload)
        except CodecError as exc:
            return Verdict.reject(exc.reason)
        # domain: the same chain, oracle contract and protocol version
        if message.network != self.network:
            return Verdict.reject("wrong-network")
        if isinstance(message, CatchUpRequest):
            # a request for a round of our committee (anyone connected may ask; answers are rate-limited)
            if message.config_digest != self._config_digest:
                return Verdict.reject("wrong-config")
            return Verdict.accept()
        if isinstance(message, DkgMessage):
            dkg = message.signed
            if dkg.context not in self.dkg_contexts:  # a message of another run
                return Verdict.reject("wrong-dkg")
            if get_member_identifier(self.committee, dkg.signer) != get_sender(dkg):
                return Verdict.reject("not-member")
            if not is_valid_dkg_signature(self._domain, dkg):
                return Verdict.reject("bad-signature")
            return Verdict.accept()
        if isinstance(message, FrostCommitmentMessage):
            commitment = message.signed
            if commitment.config_digest != self._config_digest:
                return Verdict.reject("wrong-config")
            if get_member_identifier(self.committee, commitment.signer) != commitment.commitment.identifier:
                return Verdict.reject("not-member")
            if not is_valid_commitment_signature(self._domain, commitment):
                return Verdict.reject("bad-signature")
            return Verdict.accept()
        if isinstance(message, FrostShareMessage):
            share = message.signed
            if share.config_digest != self._config_digest:
                return Verdict.reject("wrong-config")
            if get_member_identifier(self.committee, share.signer) != share.share.identifier:
                return Verdict.reject("not-member")
            if not is_valid_share_signature(self._domain, share):
                return Verdict.reject("bad-signature")
            return Verdict.accept()
        signed = message.signed
        # the report is for our committee configuration and risk model
        if signed.report.config_digest != self._config_digest:
            return Verdict.reject("wrong-config")
        if signed.report.params_hash != self.committee.params_hash:
            return Verdict.reject("wrong-params")
        # signed by a committee member
        if signed.signer not in self._members:
            return Verdict.reject("not-member")
        # over the EIP-712 digest of exactly this report
        if not is_valid_signed_report(self._domain, signed):
            return Verdict.reject("bad-signature")
        return Verdict.accept()
