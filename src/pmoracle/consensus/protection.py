"""Slashing protection as a rule: never release a signature for a second digest under one round key. PURE.

The shell (``pmoracle.storage.protection_db``) applies this rule to a durable store *before* a signature leaves
the node, so a crash between recording and signing can only lose a signature, never create a conflicting one.
"""

from __future__ import annotations

import enum


class SigningVerdict(enum.Enum):
    """What the slashing-protection rule says about signing a digest for a round key."""

    RECORD_AND_SIGN = "record_and_sign"  # nothing recorded yet: record (key -> digest) durably, then sign
    SIGN_AGAIN = "sign_again"  # the same digest is already recorded: signing it again is harmless
    REFUSE = "refuse"  # a different digest is recorded: signing would be equivocation


def check_can_sign(existing_digest: bytes | None, digest: bytes) -> SigningVerdict:
    """Return the verdict for signing ``digest`` when ``existing_digest`` is recorded for the same round key."""
    if existing_digest is None:
        return SigningVerdict.RECORD_AND_SIGN
    if existing_digest == digest:
        return SigningVerdict.SIGN_AGAIN
    return SigningVerdict.REFUSE


def is_safe_to_sign(existing_digest: bytes | None, digest: bytes) -> bool:
    """Check if signing ``digest`` cannot make this signer equivocate."""
    return check_can_sign(existing_digest, digest) is not SigningVerdict.REFUSE
