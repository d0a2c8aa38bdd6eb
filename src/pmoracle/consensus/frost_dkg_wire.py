"""The DKG's gossip envelopes: round-1 packages, encrypted round-2 shares and complaints, each signed by its
sender's report-signing key and bound to one DKG run. PURE.

A run's context (:func:`compute_dkg_context`) hashes the oracle's EIP-712 domain (chain id, oracle contract), the
committee's registry, version and member set (its config digest without a group key: the run makes the key) and a
run number (a failed run is followed by a new one, without the members it names). It is the DKG's context string
(:class:`~pmoracle.consensus.frost_dkg.DkgParameters`), so a proof of knowledge of another run never verifies, and
every envelope carries it, so the topic validator refuses a message of another run before it is delivered.

Each envelope's signature is over keccak256(tag || domainSeparator || context || body): a recipient recovers the
sender's public key from a round-1 package's signature, and that key is what round-2 shares are encrypted to. The
share's encryption (ECIES) is the shell's (``node/frost_dkg_gossip.py``): it needs randomness.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from eth_utils import keccak

from pmoracle.consensus import frost
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg import Complaint, Round1Package
from pmoracle.consensus.report import Domain, recover_public_key, recover_signer, sign_digest
from pmoracle.errors import InputError

CONTEXT_TAG = b"pmoracle-frost-dkg-context-v1"
PACKAGE_TAG = b"pmoracle-frost-dkg-package-v1"
SHARE_TAG = b"pmoracle-frost-dkg-share-v1"
COMPLAINT_TAG = b"pmoracle-frost-dkg-complaint-v1"
EPHEMERAL_KEY_SIZE = 33  # a compressed secp256k1 point
SHARE_CIPHERTEXT_SIZE = 32 + 16  # the 32-byte share and the AEAD's 16-byte tag
MAX_RUN = 255  # the run number is a uint8


def compute_dkg_context(domain: Domain, committee: CommitteeConfig, run: int = 0) -> bytes:
    """Return keccak256(tag || domainSeparator || configDigest(committee without group key) || uint8 run)."""
    if type(run) is not int or not 0 <= run <= MAX_RUN:
        raise InputError("run", f"must be in [0, {MAX_RUN}], got {run!r}")
    keyless = dataclasses.replace(committee, group_key=None)
    return keccak(CONTEXT_TAG + domain.separator() + keyless.digest() + run.to_bytes(1, "big"))


def _check_envelope(context: bytes, signer: bytes, signature: bytes) -> None:
    if not isinstance(context, bytes) or len(context) != 32:
        raise InputError("context", f"expected 32 bytes, got {context!r}")
    if not isinstance(signer, bytes) or len(signer) != 20:
        raise InputError("signer", f"expected a 20-byte address, got {signer!r}")
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise InputError("signature", f"expected 65 bytes, got {signature!r}")


@dataclass(frozen=True, slots=True)
class SignedDkgPackage:
    """A dealer's round-1 package for the run ``context``, signed with its report-signing key."""

    context: bytes
    package: Round1Package
    signer: bytes  # 20-byte report-signing address of committee member ``package.dealer - 1``
    signature: bytes  # 65 bytes over compute_package_digest

    def __post_init__(self) -> None:
        _check_envelope(self.context, self.signer, self.signature)


@dataclass(frozen=True, slots=True)
class SignedDkgShare:
    """A dealer's round-2 share for ``recipient``, encrypted to the recipient (ECIES), signed by the dealer."""

    context: bytes
    dealer: int
    recipient: int
    ephemeral_key: bytes  # 33-byte compressed ephemeral public key
    ciphertext: bytes  # the AEAD of the 32-byte share
    signer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_envelope(self.context, self.signer, self.signature)
        if not isinstance(self.ephemeral_key, bytes) or len(self.ephemeral_key) != EPHEMERAL_KEY_SIZE:
            raise InputError("ephemeral_key", f"expected {EPHEMERAL_KEY_SIZE} bytes")
        if not isinstance(self.ciphertext, bytes) or len(self.ciphertext) != SHARE_CIPHERTEXT_SIZE:
            raise InputError("ciphertext", f"expected {SHARE_CIPHERTEXT_SIZE} bytes")

    @property
    def associated_data(self) -> bytes:
        """Return what the AEAD authenticates besides the share (:func:`compute_share_associated_data`)."""
        return compute_share_associated_data(self.context, self.dealer, self.recipient, self.ephemeral_key)


def compute_share_associated_data(context: bytes, dealer: int, recipient: int, ephemeral_key: bytes) -> bytes:
    """Return context || ser(dealer) || ser(recipient) || E: what a share's AEAD authenticates besides the share."""
    return context + frost.serialize_scalar(dealer) + frost.serialize_scalar(recipient) + ephemeral_key


@dataclass(frozen=True, slots=True)
class SignedDkgComplaint:
    """A recipient's complaint (with the share it reveals) for the run ``context``, signed by the accuser."""

    context: bytes
    complaint: Complaint
    signer: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_envelope(self.context, self.signer, self.signature)


SignedDkgMessage = SignedDkgPackage | SignedDkgShare | SignedDkgComplaint


def compute_package_digest(domain: Domain, context: bytes, package: Round1Package) -> bytes:
    """Return keccak256(tag || domainSeparator || context || ser(dealer) || uint8 t || C_0..C_t-1 || R || ser(mu))."""
    return keccak(
        PACKAGE_TAG + domain.separator() + context + frost.serialize_scalar(package.dealer)
        + len(package.commitment).to_bytes(1, "big") + b"".join(package.commitment) + package.proof_commitment
        + frost.serialize_scalar(package.proof_response)
    )  # fmt: skip


def compute_share_digest(
    domain: Domain, context: bytes, dealer: int, recipient: int, ephemeral_key: bytes, ciphertext: bytes
) -> bytes:
    """Return keccak256(tag || domainSeparator || context || ser(dealer) || ser(recipient) || E || ciphertext)."""
    return keccak(
        SHARE_TAG + domain.separator() + context + frost.serialize_scalar(dealer) + frost.serialize_scalar(recipient)
        + ephemeral_key + ciphertext
    )  # fmt: skip


def compute_complaint_digest(domain: Domain, context: bytes, complaint: Complaint) -> bytes:
    """Return keccak256(tag || domainSeparator || context || ser(accuser) || ser(dealer) || ser(share))."""
    return keccak(
        COMPLAINT_TAG + domain.separator() + context + frost.serialize_scalar(complaint.accuser)
        + frost.serialize_scalar(complaint.dealer) + frost.serialize_scalar(complaint.share)
    )  # fmt: skip


def compute_message_digest(domain: Domain, message: SignedDkgMessage) -> bytes:
    """Return the digest ``message.signature`` is over."""
    if isinstance(message, SignedDkgPackage):
        return compute_package_digest(domain, message.context, message.package)
    if isinstance(message, SignedDkgShare):
        m = message
        return compute_share_digest(domain, m.context, m.dealer, m.recipient, m.ephemeral_key, m.ciphertext)
    return compute_complaint_digest(domain, message.context, message.complaint)


def get_sender(message: SignedDkgMessage) -> int:
    """Return the identifier that sent ``message``: the dealer of a package or share, the accuser of a complaint."""
    if isinstance(message, SignedDkgPackage):
        return message.package.dealer
    if isinstance(message, SignedDkgShare):
        return message.dealer
    return message.complaint.accuser


def _sign(digest: bytes, private_key: bytes) -> tuple[bytes, bytes]:
    signature = sign_digest(digest, private_key)
    signer = recover_signer(digest, signature)
    if signer is None:
        raise InputError("private_key", "produced an unrecoverable signature")
    return signer, signature


def sign_dkg_package(domain: Domain, context: bytes, package: Round1Package, private_key: bytes) -> SignedDkgPackage:
    """Return ``package`` signed with a member's report-signing key."""
    signer, signature = _sign(compute_package_digest(domain, context, package), private_key)
    return SignedDkgPackage(context, package, signer, signature)


def sign_dkg_share(
    domain: Domain,
    context: bytes,
    dealer: int,
    recipient: int,
    ephemeral_key: bytes,
    ciphertext: bytes,
    private_key: bytes,
) -> SignedDkgShare:
    """Return an encrypted share signed with the dealer's report-signing key."""
    digest = compute_share_digest(domain, context, dealer, recipient, ephemeral_key, ciphertext)
    signer, signature = _sign(digest, private_key)
    return SignedDkgShare(context, dealer, recipient, ephemeral_key, ciphertext, signer, signature)


def sign_dkg_complaint(domain: Domain, context: bytes, complaint: Complaint, private_key: bytes) -> SignedDkgComplaint:
    """Return ``complaint`` signed with the accuser's report-signing key."""
    signer, signature = _sign(compute_complaint_digest(domain, context, complaint), private_key)
    return SignedDkgComplaint(context, complaint, signer, signature)


def is_valid_dkg_signature(domain: Domain, message: SignedDkgMessage) -> bool:
    """Check if ``message.signature`` is ``message.signer``'s signature of the message."""
    return recover_signer(compute_message_digest(domain, message), message.signature) == message.signer


def recover_sender_key(domain: Domain, message: SignedDkgMessage) -> bytes | None:
    """Return the 33-byte public key that signed ``message`` (what shares to its sender are encrypted to)."""
    return recover_public_key(compute_message_digest(domain, message), message.signature)
