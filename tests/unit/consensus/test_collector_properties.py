"""Property tests of the collector: whatever arrives, in whatever order, the safety invariants hold."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pmoracle.consensus.certificate import is_valid_certificate
from pmoracle.consensus.collector import (
    MAX_DIGESTS_PER_SIGNER,
    CertificateFormed,
    CollectorContext,
    CollectorState,
    Effect,
    Rejected,
    init_collector_state,
    on_new_head,
    on_round_attested,
    on_signed_report,
    on_tick,
)
from pmoracle.consensus.report import SignedReport, compute_report_digest
from tests.unit.consensus.factories import DOMAIN, make_committee, make_report, make_signed

N = 7  # f = 2, quorum 5
F = 2
BLOCKS = (40, 50)
BYZANTINE = (5, 6)


def _pool() -> list[SignedReport]:
    msgs = []
    for block in BLOCKS:
        for member in range(N):
            # honest members sign only the honest report; Byzantine ones sign anything
            for variant in (0, 1, 2) if member in BYZANTINE else (0,):
                msgs.append(make_signed(N, member, block, variant))
    # invalid ones: a forged signature and a report on a non-anchor block
    msgs.append(replace(make_signed(N, 0, 40), signature=make_signed(N, 1, 40).signature))
    msgs.append(make_signed(N, 1, 41))
    return msgs


POOL = _pool()
HONEST = {b: compute_report_digest(DOMAIN, make_report(make_committee(N), b)) for b in BLOCKS}

events = st.lists(
    st.one_of(
        st.tuples(st.just("msg"), st.integers(0, len(POOL) - 1)),
        st.tuples(st.just("tick"), st.integers(0, 100)),
        st.tuples(st.just("attest"), st.sampled_from(BLOCKS)),
        st.tuples(st.just("head"), st.integers(30, 90)),
    ),
    max_size=60,
)


def _run(state: CollectorState, script: list[tuple[str, int]]) -> tuple[CollectorState, list[Effect]]:
    committee = state.context.committee
    now = 0.0
    all_effects: list[Effect] = []
    for kind, value in script:
        before = state
        if kind == "msg":
            state, effects = on_signed_report(state, POOL[value], now)
        elif kind == "tick":
            now += value
            state, effects = on_tick(state, now)
        elif kind == "attest":
            attested = make_report(committee, value)
            state, effects = on_round_attested(state, (committee.digest(), value), HONEST[value], attested.block_hash)
        else:
            state, effects = on_new_head(state, value)
        # a rejected input leaves the very same state
        if any(isinstance(e, Rejected) for e in effects):
            assert state is before and len(effects) == 1
        all_effects.extend(effects)
        # memory stays bounded: one entry per signer per digest, at most two digests per signer
        for rnd in state.rounds.values():
            assert all(len(ds) <= MAX_DIGESTS_PER_SIGNER for ds in rnd.digests_of.values())
            assert sum(len(by) for by in rnd.signed.values()) == sum(len(ds) for ds in rnd.digests_of.values())
    return state, all_effects


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=events, me=st.sampled_from([None, 0, 6]))
def test_at_most_one_certificate_per_round_and_always_honest(script: list[tuple[str, int]], me: int | None) -> None:
    committee = make_committee(N)
    # a window of two rounds, so that head moves (forwards and back, as in a reorg) forget rounds
    context = CollectorContext.create(DOMAIN, committee, None if me is None else committee.members[me], window_rounds=2)
    _, effects = _run(init_collector_state(context, 52), script)
    formed = [e for e in effects if isinstance(e, CertificateFormed)]
    blocks = [e.certificate.report.block_number for e in formed]
    assert len(blocks) == len(set(blocks))
    for e in formed:
        assert is_valid_certificate(DOMAIN, committee, e.certificate)
        # f Byzantine members cannot reach a quorum on a wrong value
        assert e.digest == HONEST[e.certificate.report.block_number]


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(list(range(len(POOL)))))
def test_certificate_independent_of_arrival_order(order: list[int]) -> None:
    committee = make_committee(N)
    state = init_collector_state(CollectorContext.create(DOMAIN, committee, None), 52)
    state, _ = _run(state, [("msg", i) for i in order])
    for block in BLOCKS:
        cert = state.get_certificate(block)
        assert cert is not None and compute_report_digest(DOMAIN, cert.report) == HONEST[block]
