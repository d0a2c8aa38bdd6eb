"""A committee member's FROST signer: fresh nonces, commitments bound to one round, shares released only after their
nonce is durably recorded as used (docs/frost.md, "Nonce safety").

The secret nonces live in this object's memory only, from :meth:`FrostSigner.commit` until the share is recorded,
and are deleted then (or by :meth:`FrostSigner.forget_through` when the round is over). Nothing secret is written
to disk: after a restart, the commitments issued before it can no longer sign anything new, and the store
(:class:`~pmoracle.storage.frost_nonces.FrostNonceDB`) refuses any second use of a commitment whose share left
the node. Like slashing protection, it runs on the node's event loop: each call is synchronous, one fsync'd
SQLite transaction.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

from pmoracle.consensus import frost
from pmoracle.consensus.frost_dkg import DkgResult
from pmoracle.consensus.rounds import RoundKey
from pmoracle.storage.frost_nonces import FrostNonceDB, FrostNonceError, NonceReuseError, compute_package_digest

RandomBytes = Callable[[int], bytes]


class FrostSigner:
    """Signs FROST shares for one member's key share, with the nonce discipline of docs/frost.md."""

    def __init__(self, key: DkgResult, store: FrostNonceDB, *, random_bytes: RandomBytes = os.urandom) -> None:
        """Bind a signer to a member's DKG result and the node's nonce store.

        Args:
            key: this member's DKG result (identifier, signing share, group key).
            store: the nonce store in the node's data directory.
            random_bytes: the random source (``os.urandom``; tests pass a seeded one).
        """
        self._key = key
        self._store = store
        self._random_bytes = random_bytes
        # (D, E) -> (round key, secret nonces): only commitments issued by this process and not yet used
        self._held: dict[tuple[bytes, bytes], tuple[RoundKey, frost.SigningNonces]] = {}

    def __repr__(self) -> str:
        return f"FrostSigner(identifier={self.identifier}, held={len(self._held)})"

    @property
    def identifier(self) -> int:
        """Return this member's FROST identifier."""
        return self._key.identifier

    @property
    def held_count(self) -> int:
        """Return how many issued commitments still have their secret nonces in memory."""
        return len(self._held)

    def commit(self, round_key: RoundKey) -> frost.SigningCommitment:
        """Draw a fresh nonce pair for ``round_key`` and return its commitment, recorded as issued before it leaves.

        Args:
            round_key: the one round (configDigest, anchor block) the commitment may sign for.

        Returns:
            The public commitment (to gossip ahead of the round).

        Errors:
            FrostNonceError: the random source repeated a nonce (nothing is held).
            InputError: the round key is malformed.
        """
        nonces, commitment = frost.commit(
            self.identifier,
            self._key.signing_share,
            self._random_bytes(frost.NONCE_RANDOMNESS_SIZE),
            self._random_bytes(frost.NONCE_RANDOMNESS_SIZE),
        )
        self._store.record_issued(round_key, self._key.group_public_key, commitment)
        self._held[(commitment.hiding, commitment.binding)] = (round_key, nonces)
        return commitment

    def sign(
        self, round_key: RoundKey, message: bytes, commitments: Sequence[frost.SigningCommitment]
    ) -> frost.SignatureShare:
        """Return this member's share of the signing package, after recording its nonce as used.

        A repeated identical request gets the recorded share again (also after a restart); anything else with a
        used commitment is refused.

        Args:
            round_key: the round the signing session belongs to.
            message: the report digest; it must be the one this node recorded and signed with ECDSA for the round.
            commitments: the signing package's commitment list (sorted by identifier), with this member's own.

        Returns:
            The signature share, safe to release: its nonce is recorded as used.

        Errors:
            FrostError: the list is malformed, lacks this member, or its commitment is not the one of its nonces.
            FrostNonceError: the commitment was not issued here, is bound to another round, or its nonces are no
                longer held (issued before a restart, or forgotten).
            NotSignedReportError: ``message`` is not the report digest signed for the round.
            NonceReuseError: the commitment already signed another message or commitment list.
        """
        own = next((c for c in commitments if c.identifier == self.identifier), None)
        if own is None:
            raise frost.FrostError("commitments", f"participant {self.identifier} is not among the signers")
        package_digest = compute_package_digest(commitments)
        recorded = self._store.check_use(round_key, own, message, package_digest)
        if recorded is not None:  # the same request again: its share is already out
            return frost.SignatureShare(self.identifier, recorded)
        held = self._held.get((own.hiding, own.binding))
        if held is None:
            raise FrostNonceError(own, "its secret nonces are not held (issued before a restart, or forgotten)")
        share = frost.sign(
            self.identifier, self._key.signing_share, self._key.group_public_key, held[1], message, commitments
        )
        try:
            released = self._store.record_used(round_key, own, message, package_digest, share.share)
        except NonceReuseError:  # used meanwhile by another request: never again
            del self._held[(own.hiding, own.binding)]
            raise
        # the use is on disk: the nonces are consumed whether or not the share ever reaches anyone
        del self._held[(own.hiding, own.binding)]
        return frost.SignatureShare(self.identifier, released)

    def forget_through(self, block_number: int) -> int:
        """Delete the secret nonces of every round anchored at or below ``block_number``; return how many."""
        stale = [point for point, (round_key, _) in self._held.items() if round_key[1] <= block_number]
        for point in stale:
            del self._held[point]
        return len(stale)
