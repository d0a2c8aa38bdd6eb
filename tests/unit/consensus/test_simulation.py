"""Protocol simulations of the production executor on the in-memory network under trio's virtual clock.

The members run :class:`~pmoracle.node.executor.ProtocolExecutor` with ReportGossip's production re-publication
schedule and the production codec and validator (see simulation.py): safety always, liveness with a quorum.

Safety: every node forms at most one certificate per round key, every certificate carries the honest digest, the
chain only ever attests honest digests. Liveness: whenever a quorum of honest nodes is connected, every round that
becomes ready is covered (it or a newer round attested) within LIVENESS_BOUND virtual seconds.
"""

from __future__ import annotations

import pathlib
from collections import Counter

import pytest
import trio.testing

from pmoracle.consensus.committee import compute_max_faulty
from pmoracle.consensus.evidence import Deviation, Equivocation, is_deviation, is_equivocation
from pmoracle.p2p.reports import MAX_REPUBLISH_INTERVAL, REPUBLISH_INTERVAL
from tests.unit.consensus.factories import DOMAIN, PERIOD
from tests.unit.consensus.simulation import (
    GENESIS,
    SLOW_DELAY,
    STAGE_DELAY,
    TX_DELAY,
    Partition,
    Scenario,
    SimResult,
    run_simulation,
)

REPUBLICATIONS = 2  # re-publications of an own report a round may need over lossy links (with catch-up)


def republication_time(count: int) -> float:
    """Return when ReportGossip re-publishes an own report for the ``count``-th time (seconds after the first)."""
    at, interval = 0.0, REPUBLISH_INTERVAL
    for _ in range(count):
        at += interval
        interval = min(2 * interval, MAX_REPUBLISH_INTERVAL)
    return at


def liveness_bound(n: int) -> float:
    """Return the virtual time within which a ready round is attested when a quorum of honest nodes is connected."""
    # up to f faulty transmitters ahead in the schedule, plus one crashed, plus re-publications over lossy links
    return (compute_max_faulty(n) + 2) * STAGE_DELAY + republication_time(REPUBLICATIONS) + SLOW_DELAY + TX_DELAY + 2.0


def assert_safe(result: SimResult) -> None:
    """Check the safety invariants of one run."""
    seen: set[tuple[int, int]] = set()
    # every CertificateFormed a node carried out is one it still holds: never two for one round
    assert result.formed_counts == Counter(f.node for f in result.formed)
    for formed in result.formed:
        block = formed.certificate.report.block_number
        assert (formed.node, block) not in seen, f"node {formed.node} formed two certificates for round {block}"
        seen.add((formed.node, block))
        assert formed.digest == result.honest_digest(block)
    blocks = [a.block for a in result.chain.attestations]
    assert blocks == sorted(set(blocks))
    for attestation in result.chain.attestations:
        assert attestation.digest == result.honest_digest(attestation.block)
    assert result.chain.refused["invalid"] == 0


def assert_live(result: SimResult, *, start: float, end: float) -> int:
    """Check that every round ready in [start, end - bound] is covered in time; return how many were checked."""
    bound = liveness_bound(result.scenario.n)
    checked = 0
    block = GENESIS - GENESIS % PERIOD
    while result.ready_time(block) <= end - bound:
        ready = result.ready_time(block)
        if ready >= start:
            covered = [a for a in result.chain.attestations if a.block >= block and a.at <= ready + bound]
            assert covered, f"round {block} ready at {ready} not covered within {bound}s: {result.chain.attestations}"
            checked += 1
        block += PERIOD
    return checked


def _byzantine(n: int, behaviour: str) -> dict[int, str]:
    f = compute_max_faulty(n)
    return {n - 1 - i: behaviour for i in range(f)}


@pytest.mark.parametrize("n", [4, 7, 16])
async def test_honest_run(n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock) -> None:
    result = await run_simulation(Scenario(n=n, seed=n), tmp_path)
    assert_safe(result)
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 3
    # with every node honest and connected, every round is attested, by the first transmitter, within seconds
    ready_rounds = {a.block for a in result.chain.attestations}
    assert len(ready_rounds) >= 5
    # every node formed a certificate for every attested round
    for block in ready_rounds:
        assert {f.node for f in result.formed if f.certificate.report.block_number == block} == set(range(n))
    assert result.evidence == []
    # each node keeps every member's signature of every round it saw, once
    assert all(result.archived[i] >= n * len(ready_rounds) for i in range(n))


@pytest.mark.parametrize(
    ("n", "behaviour"), [(4, "wrong"), (7, "wrong"), (16, "wrong"), (7, "silent"), (7, "withhold"), (7, "slow")]
)
async def test_up_to_f_faulty(
    n: int, behaviour: str, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    faulty = _byzantine(n, behaviour)
    result = await run_simulation(Scenario(n=n, seed=100 + n, behaviours=faulty), tmp_path)
    assert_safe(result)
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 3
    if behaviour == "wrong":
        # every wrong signer is caught deviating from an attested round, with evidence the contract accepts
        deviators = {ev.signed.signer for _, ev in result.evidence if isinstance(ev, Deviation)}
        assert deviators == {result.committee.members[i] for i in faulty}
        assert all(is_deviation(DOMAIN, result.committee, ev) for _, ev in result.evidence if isinstance(ev, Deviation))
    else:
        assert result.evidence == []


@pytest.mark.parametrize("n", [4, 7, 16])
async def test_equivocators_are_caught(n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock) -> None:
    faulty = _byzantine(n, "equivocate")
    result = await run_simulation(Scenario(n=n, seed=200 + n, behaviours=faulty, duration=40.0), tmp_path)
    assert_safe(result)
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 1
    equivocations = [ev for _, ev in result.evidence if isinstance(ev, Equivocation)]
    assert {ev.a.signer for ev in equivocations} == {result.committee.members[i] for i in faulty}
    assert all(is_equivocation(DOMAIN, result.committee, ev) for ev in equivocations)


@pytest.mark.parametrize(("n", "loss", "max_delay"), [(4, 0.3, 1.5), (7, 0.2, 1.0), (16, 0.1, 0.8)])
async def test_message_loss_and_delay(
    n: int, loss: float, max_delay: float, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=n, seed=300 + n, loss=loss, max_delay=max_delay), tmp_path)
    assert result.network_stats["lost"] > 0
    assert_safe(result)
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 3


@pytest.mark.parametrize("n", [4, 7, 16])
async def test_minority_partition_keeps_majority_live(
    n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    f = compute_max_faulty(n)
    cut = Partition(start=5.0, end=45.0, groups=(tuple(range(n - f)), tuple(range(n - f, n))))
    result = await run_simulation(Scenario(n=n, seed=400 + n, partition=cut, duration=70.0), tmp_path)
    assert_safe(result)
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 4


@pytest.mark.parametrize("n", [4, 7, 16])
async def test_majority_partition_halts_then_heals(
    n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    # two halves, neither holds a quorum
    half = n // 2
    cut = Partition(start=5.0, end=45.0, groups=(tuple(range(half)), tuple(range(half, n))))
    result = await run_simulation(Scenario(n=n, seed=500 + n, partition=cut, duration=80.0), tmp_path)
    assert_safe(result)
    # no round that became ready during the partition is attested during it
    for attestation in result.chain.attestations:
        if cut.start <= attestation.at < cut.end:
            assert result.ready_time(attestation.block) < cut.start
    assert not any(cut.start + 1.0 <= result.ready_time(a.block) and a.at < cut.end for a in result.chain.attestations)
    # after the heal, liveness is back
    assert assert_live(result, start=cut.end, end=result.scenario.duration) >= 1
    assert any(a.at >= cut.end for a in result.chain.attestations)
    # the round in flight at the heal is attested itself: only ReportGossip's re-publication carries its reports
    # across (catch-up is asked for at compute time, during the cut), before the next round could cover it
    in_flight = max(b for b in range(GENESIS - GENESIS % PERIOD, 1000, PERIOD) if result.ready_time(b) < cut.end)
    [recovered] = [a for a in result.chain.attestations if a.block == in_flight]
    assert cut.end < recovered.at <= result.ready_time(in_flight) + republication_time(REPUBLICATIONS + 1)


@pytest.mark.parametrize("n", [4, 7, 16])
async def test_scheduled_transmitter_crashing(
    n: int, tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(Scenario(n=n, seed=600 + n, crash_first_transmitter=True), tmp_path)
    assert_safe(result)
    [(crashed, crashed_at, block)] = result.crashed
    # the round it was due to post is still attested, by the next member of the schedule, one stage later
    [attestation] = [a for a in result.chain.attestations if a.block == block]
    assert attestation.transmitter != crashed
    assert crashed_at + STAGE_DELAY <= attestation.at <= crashed_at + 2 * STAGE_DELAY + TX_DELAY + 1.0
    assert assert_live(result, start=0.0, end=result.scenario.duration) >= 3
