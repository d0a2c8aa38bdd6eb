"""Crash scenarios on a real devnet: kill -9 of node processes mid-round, restart, no double signing, liveness."""

from __future__ import annotations

from pathlib import Path

import pytest

from pmoracle.devnet.scenarios.crash import scenario_crash


def check_crash(tmp_path: Path, n: int) -> None:
    result = scenario_crash(tmp_path, n=n)
    assert result.rounds_attested >= 5
    assert result.rounds_verified == result.rounds_attested
    assert result.duplicate_attestations == 0
    # attestation resumed within two rounds of every kill (the survivors are a quorum)
    for killed in result.extra["killed"]:
        assert killed["next_attested"] - killed["anchor"] <= 2 * 5, killed
    # no node, restarted or not, ever recorded or sent two digests for one round
    assert result.extra["double_digests"] == {"protection": 0, "archive": 0}
    assert result.extra["restarted"]  # and the restarted ones signed again (run_until inside the scenario)
    assert result.evidence_posted == 0  # crashing is no offence


@pytest.mark.timeout(240)
def test_kill_and_restart_n4(tmp_path: Path) -> None:
    check_crash(tmp_path, 4)


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_kill_and_restart_n7(tmp_path: Path) -> None:
    check_crash(tmp_path, 7)
