"""Deterministic FROST committees for tests and benchmarks: a whole DKG run in one process (never for production).

Every member's seed comes from one public seed, so anyone can recompute the signing shares: these keys exist so
that tests and separate processes agree on a committee without sharing files.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from pmoracle.consensus import frost, frost_dkg


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
