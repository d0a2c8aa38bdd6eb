"""The node's decision to prove an attested round: only on a digest mismatch at the canonical hash, once per round."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pmoracle.consensus.fraud_watch import (
    ROUNDS_REMEMBERED,
    AttestedDigest,
    FraudWatchState,
    ProofDecision,
    on_attested_round,
)

CONFIG = b"\x11" * 32
OTHER_CONFIG = b"\x22" * 32
HASH = b"\xaa" * 32
FORK_HASH = b"\xbb" * 32
OURS = b"\x01" * 32
THEIRS = b"\x02" * 32


def attested(block: int, digest: bytes = THEIRS, block_hash: bytes = HASH, config: bytes = CONFIG) -> AttestedDigest:
    return AttestedDigest((config, block), digest, block_hash)


def test_a_different_digest_at_the_canonical_hash_is_proven_once() -> None:
    state, decision = on_attested_round(FraudWatchState(), attested(40), (CONFIG, 40), OURS, HASH)
    assert decision is ProofDecision.PROVE
    again, decision = on_attested_round(state, attested(40), (CONFIG, 40), OURS, HASH)
    assert decision is ProofDecision.ALREADY_DECIDED and again is state


def test_the_same_digest_is_not_proven() -> None:
    state, decision = on_attested_round(FraudWatchState(), attested(40, OURS), (CONFIG, 40), OURS, HASH)
    assert decision is ProofDecision.AGREES
    assert on_attested_round(state, attested(40, OURS), (CONFIG, 40), OURS, HASH)[1] is ProofDecision.ALREADY_DECIDED


def test_a_round_at_another_block_hash_is_never_proven() -> None:
    # this node computed B on a fork that a reorg replaced: its digest differs, honestly
    start = FraudWatchState()
    state, decision = on_attested_round(start, attested(40), (CONFIG, 40), OURS, FORK_HASH)
    assert decision is ProofDecision.OTHER_BLOCK_HASH and state is start
    # once it recomputed the canonical hash, the round is decided as usual
    assert on_attested_round(state, attested(40), (CONFIG, 40), OURS, HASH)[1] is ProofDecision.PROVE


def test_a_round_of_another_committee_is_not_proven() -> None:
    start = FraudWatchState()
    state, decision = on_attested_round(start, attested(40, config=OTHER_CONFIG), (CONFIG, 40), OURS, HASH)
    assert decision is ProofDecision.OTHER_CONFIG and state is start


def test_the_memory_is_bounded_and_keeps_the_newest_rounds() -> None:
    state = FraudWatchState()
    for block in range(ROUNDS_REMEMBERED + 10):
        state, decision = on_attested_round(state, attested(block), (CONFIG, block), OURS, HASH)
        assert decision is ProofDecision.PROVE
    assert len(state.decided) == ROUNDS_REMEMBERED
    assert state.decided[-1] == (CONFIG, ROUNDS_REMEMBERED + 9)
    newest = ROUNDS_REMEMBERED + 9
    assert on_attested_round(state, attested(newest), (CONFIG, newest), OURS, HASH)[1] is ProofDecision.ALREADY_DECIDED


digests = st.sampled_from([OURS, THEIRS])
hashes = st.sampled_from([HASH, FORK_HASH])
events = st.lists(st.tuples(st.integers(0, 5), digests, hashes, digests, hashes), max_size=40)


@given(events)
def test_prove_only_on_a_mismatch_at_the_canonical_hash_and_at_most_once_per_round(
    seen: list[tuple[int, bytes, bytes, bytes, bytes]],
) -> None:
    state = FraudWatchState()
    proven: list[int] = []
    for block, their_digest, their_hash, our_digest, our_hash in seen:
        before = state
        state, decision = on_attested_round(state, attested(block, their_digest, their_hash), (CONFIG, block),
                                            our_digest, our_hash)  # fmt: skip
        if decision is ProofDecision.PROVE:
            assert their_digest != our_digest and their_hash == our_hash
            proven.append(block)
        if decision not in (ProofDecision.PROVE, ProofDecision.AGREES):
            assert state is before
    assert len(proven) == len(set(proven))
