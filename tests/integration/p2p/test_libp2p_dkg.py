"""Real libp2p: n peer-demo processes on 127.0.0.1 run the DKG over gossip (signed messages, shares encrypted to
their recipient): every member writes an encrypted share of one group key, and a quorum of those shares signs a
message the group key verifies; a member that stays silent is named by every other, which exits non-zero."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pmoracle.consensus import frost
from pmoracle.consensus.frost_dkg_wire import compute_dkg_context
from pmoracle.node.frost_keys import unlock_frost_share
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.demo_cluster import DemoCluster
from pmoracle.testing.frost import sign_in_process
from pmoracle.testing.peer_demo import DEMO_PASSWORD


@pytest.mark.timeout(150)
@pytest.mark.parametrize("n", [4, 7])
def test_processes_run_the_dkg_over_libp2p_and_sign(n: int, tmp_path: Path) -> None:
    cluster = DemoCluster(n, ["--dkg", f"--data-dir={tmp_path / 'data'}", "--dkg-timeout=90"], log_dir=tmp_path)
    try:
        cluster.start_all()
        events = cluster.wait_for(lambda e: e["event"] == "dkg", n, timeout=120)
        codes = [cluster.procs[i].wait(timeout=30) for i in range(n)]
    finally:
        cluster.stop()
    print(json.dumps({"n": n, "seconds": sorted(e["seconds"] for e in events)}))
    assert all(e["ok"] for e in events), events
    assert codes == [0] * n
    assert len({e["group_key"] for e in events}) == 1 and len({e["transcript"] for e in events}) == 1
    committee = make_test_committee(n)
    context = compute_dkg_context(committee.network.domain, committee.config)  # the run of the installed committee
    results = {}
    for event in events:
        result = unlock_frost_share(Path(event["share_file"]), DEMO_PASSWORD, context=context)
        results[result.identifier] = result
    assert sorted(results) == list(range(1, n + 1))
    group_key = bytes.fromhex(events[0]["group_key"][2:])
    assert all(r.group_public_key == group_key for r in results.values())
    threshold = committee.config.quorum
    for signers in (tuple(range(1, threshold + 1)), tuple(range(n - threshold + 1, n + 1))):
        signature = sign_in_process(results, signers, b"margin", b"\x05" * 32)
        assert frost.verify(group_key, b"margin", signature)
    # below the threshold the shares do not sign
    assert not frost.verify(group_key, b"margin", sign_in_process(results, tuple(range(1, threshold)), b"margin",
                                                                  b"\x05" * 32))  # fmt: skip


@pytest.mark.timeout(150)
def test_a_silent_member_is_named_and_the_others_exit_non_zero(tmp_path: Path) -> None:
    n, silent = 4, 2
    args = ["--dkg", f"--data-dir={tmp_path / 'data'}", "--dkg-timeout=20", f"--dkg-silent={silent}"]
    cluster = DemoCluster(n, args, log_dir=tmp_path)
    try:
        cluster.start_all()
        events = cluster.wait_for(lambda e: e["event"] == "dkg", n, timeout=120)
        codes = {i: cluster.procs[i].wait(timeout=30) for i in range(n)}
    finally:
        cluster.stop()
    others = [e for e in events if e["index"] != silent]
    assert len(others) == n - 1
    for event in others:
        assert not event["ok"] and event["timed_out"]
        assert event["missing"] == [silent + 1]  # identifier = index + 1
        assert codes[event["index"]] == 1
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("frost-share.json"))
