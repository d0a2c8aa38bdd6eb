"""A node follows committee changes (``ProtocolExecutor.install_committee``, what the daemon calls when it reads a
new configDigest from SolverRegistry at a head): n production executors on the in-memory network under virtual
time (tests/unit/consensus/simulation.py); the simulated chain installs a new committee version mid-run."""

from __future__ import annotations

import pathlib

import trio.testing

from pmoracle.consensus.report import address_of, compute_report_digest
from tests.unit.consensus.factories import DOMAIN, make_key, make_report
from tests.unit.consensus.simulation import (
    BLOCK_TIME,
    GENESIS,
    STAGE_DELAY,
    TX_DELAY,
    Reconfiguration,
    Scenario,
    SimResult,
    run_simulation,
)

# virtual seconds: between two heads (every 0.25 s), so that every member notices the change at the head of 20.0,
# the one round 120 becomes ready at (rounds 100 and 110 under the first version, the rest under the second)
CHANGE_AT = 19.9
FIRST_AFTER = 120
DURATION = 50.0


def _versions(result: SimResult) -> list[tuple[int, bytes, str]]:
    """Return (round, config digest, scheme) of every attested round, checking each carries the honest digest of
    the configuration it was attested under."""
    committees = {c.digest(): c for c in (result.chain.committee, result.committee)}
    rounds = []
    for a in result.chain.attestations:
        committee = committees[a.config_digest]
        assert a.digest == compute_report_digest(DOMAIN, make_report(committee, a.block))
        rounds.append((a.block, a.config_digest, a.scheme))
    return rounds


async def test_an_ecdsa_committee_replaced_by_one_with_a_group_key_signs_with_frost_after_the_change(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(
        Scenario(n=4, seed=710, duration=DURATION, reconfigure=Reconfiguration(at=CHANGE_AT, frost=True)), tmp_path
    )
    first, second = result.committee.digest(), result.chain.committee.digest()
    assert result.chain.committee.version == 2 and result.chain.committee.group_key is not None
    rounds = _versions(result)
    before = [(b, d, s) for b, d, s in rounds if d == first]
    after = [(b, d, s) for b, d, s in rounds if d == second]
    assert before and all(s == "ecdsa" for _, _, s in before)
    assert [b for b, _, _ in after] == [FIRST_AFTER, 130, 140] and all(s == "frost" for _, _, s in after), after
    assert max(b for b, _, _ in before) < min(b for b, _, _ in after)  # the change lands at a round boundary
    assert result.chain.refused["invalid-frost"] == 0
    for node, installed in result.installed.items():  # every member installed version 2 once, at its next head
        assert [v for _, v in installed] == [2], node
        assert CHANGE_AT <= installed[0][0] <= CHANGE_AT + 1.0


async def test_a_member_that_installs_the_new_committee_late_still_signs_every_round_after_it_with_frost(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    # Member 0 (identifier 1, in every first signing set) notices version 2 half a second after the others, so it
    # starts round 120 under version 1; the commitments the others send ahead for round 130 as they publish their
    # reports of round 120 reach it while it still runs version 1, and its validator drops them. The members say
    # their commitments again when round 130 starts, so from that round on every round is FROST. (Round 120 itself
    # may fall back to ECDSA: member 0 is the first transmitter without the others' commitments.)
    change = Reconfiguration(at=CHANGE_AT, frost=True, lag={0: 0.5})
    result = await run_simulation(Scenario(n=4, seed=710, duration=DURATION, reconfigure=change), tmp_path)
    second = result.chain.committee.digest()
    assert result.rejections["wrong-config"] > 0  # the race happened: messages of version 2 met version 1
    [(installed_at, version)] = result.installed[0]
    assert version == 2 and CHANGE_AT + 0.5 <= installed_at <= CHANGE_AT + 1.0
    _versions(result)  # every round carries the honest digest of its configuration
    after = [a for a in result.chain.attestations if a.config_digest == second and a.block > FIRST_AFTER]
    assert [(a.block, a.scheme) for a in after] == [(130, "frost"), (140, "frost")], after
    # and in the first signing attempt (half a stage), plus the transaction's inclusion: no attempt was lost
    assert all(a.at - (a.block - GENESIS + 2) * BLOCK_TIME <= STAGE_DELAY / 2 + TX_DELAY for a in after), after


async def test_a_member_left_out_of_the_new_committee_stops_signing(
    tmp_path: pathlib.Path, autojump_clock: trio.testing.MockClock
) -> None:
    result = await run_simulation(
        Scenario(n=5, seed=720, duration=DURATION, reconfigure=Reconfiguration(at=CHANGE_AT, drop=(4,))), tmp_path
    )
    first, second = result.committee.digest(), result.chain.committee.digest()
    dropped = address_of(make_key(4))
    assert result.chain.committee.members == result.committee.members[:4]
    rounds = _versions(result)
    assert any(d == first for _, d, _ in rounds) and len([d for _, d, _ in rounds if d == second]) >= 2
    assert dropped in result.signers[first]  # it signed while a member
    assert dropped not in result.signers[second]  # and never under the new version
    assert result.signers[second] == set(result.chain.committee.members)
