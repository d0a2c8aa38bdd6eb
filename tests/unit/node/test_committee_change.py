"""A node follows committee changes (``ProtocolExecutor.install_committee``, what the daemon calls when it reads a
new configDigest from SolverRegistry at a head): n production executors on the in-memory network under virtual
time (tests/unit/consensus/simulation.py); the simulated chain installs a new committee version mid-run."""

from __future__ import annotations

import pathlib

import trio.testing

from pmoracle.consensus.report import address_of, compute_report_digest
from tests.unit.consensus.factories import DOMAIN, make_key, make_report
from tests.unit.consensus.simulation import Reconfiguration, Scenario, SimResult, run_simulation

CHANGE_AT = 20.0  # virtual seconds: rounds 100 and 110 under the first version, the rest under the second
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
    assert len(after) >= 2 and all(s == "frost" for _, _, s in after)
    assert max(b for b, _, _ in before) < min(b for b, _, _ in after)  # the change lands at a round boundary
    assert result.chain.refused["invalid-frost"] == 0
    for node, installed in result.installed.items():  # every member installed version 2 once, at its next head
        assert [v for _, v in installed] == [2], node
        assert CHANGE_AT <= installed[0][0] <= CHANGE_AT + 1.0


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
