"""Real libp2p: four peer-demo processes on 127.0.0.1 gossip signed reports and reach the same certificate;
one is SIGKILLed and restarted and gets every signature again well before the library's ~60 s reconnect backoff.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pmoracle.consensus.report import compute_report_digest, recover_signer
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.demo_cluster import DemoCluster
from pmoracle.testing.peer_demo import FIRST_BLOCK

N = 4
COMMITTEE = make_test_committee(N)
DOMAIN = COMMITTEE.network.domain
HONEST_DIGEST = "0x" + compute_report_digest(DOMAIN, COMMITTEE.report(FIRST_BLOCK)).hex()
MEMBERS = sorted("0x" + m.hex() for m in COMMITTEE.config.members)


def _assert_valid_certificate(certificate: dict[str, object]) -> None:
    digest = bytes.fromhex(str(certificate["digest"])[2:])
    bitmap = int(certificate["signer_bitmap"])  # type: ignore[call-overload]
    indices = [i for i in range(N) if bitmap >> i & 1]
    signatures = [bytes.fromhex(s[2:]) for s in certificate["signatures"]]  # type: ignore[attr-defined]
    assert len(indices) == len(signatures) >= COMMITTEE.config.quorum
    for index, signature in zip(indices, signatures, strict=True):
        assert recover_signer(digest, signature) == COMMITTEE.config.members[index]


@pytest.mark.timeout(120)
def test_four_processes_certify_and_a_killed_member_rejoins(tmp_path: Path) -> None:
    cluster = DemoCluster(N, ["--rounds=1", "--linger=90", "--round-timeout=40"], log_dir=tmp_path)
    try:
        cluster.start_all()
        rounds = cluster.wait_for(lambda e: e["event"] == "round", N, timeout=60)
        assert sorted(e["_member"] for e in rounds) == list(range(N))
        for event in rounds:
            assert event["complete"] and event["block"] == FIRST_BLOCK
            assert event["digest"] == HONEST_DIGEST
            assert event["signers"] == MEMBERS  # every process holds the same full signature set
            assert event["certificate"]["digest"] == HONEST_DIGEST
            _assert_valid_certificate(event["certificate"])

        cluster.kill(3)
        restarted_at = time.time()
        cluster.start(3)  # same peer key, same port, no memory of the round
        (rejoined,) = cluster.wait_for(lambda e: e["event"] == "round" and e["_member"] == 3, 1, timeout=40)
        assert rejoined["complete"] and rejoined["signers"] == MEMBERS
        assert rejoined["digest"] == HONEST_DIGEST
        # from its own signature to every other member's: far below libp2p 0.8.1's ~60-70 s reconnect
        assert rejoined["t_complete"] - rejoined["t_sign"] < 20
        assert rejoined["t_complete"] - restarted_at < 40  # process start + dial + catch-up, on 2 shared cores
    finally:
        cluster.stop()
    assert all(proc.poll() is not None for proc in cluster.procs.values())
