"""Chain and network faults on a real devnet: reorgs, a failing primary RPC endpoint, a partitioned minority."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pmoracle.devnet import netlab
from pmoracle.devnet.scenarios.common import ScenarioResult
from pmoracle.devnet.scenarios.partition import scenario_partition, scenario_partition_by_restart
from pmoracle.devnet.scenarios.reorg import scenario_reorg
from pmoracle.devnet.scenarios.rpc_faults import scenario_rpc_faults


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_reorgs_shallower_and_deeper_than_finality(tmp_path: Path) -> None:
    result = scenario_reorg(tmp_path, n=4)
    assert result.rounds_verified == result.rounds_attested >= 3
    assert result.duplicate_attestations == 0
    shallow, deep = result.extra["shallow"], result.extra["deep"]
    # a reorg no deeper than the finality depth replaces an anchor nobody signed yet: attested with the new hash
    assert shallow["hash_replaced"] and not shallow["signed_old_hash"] and shallow["attested"]
    # deeper: the old certificate no longer matches the chain, and nobody re-signs the round with another hash
    assert deep["depth"] > 2
    assert deep["old_cert_attest"] == "BlockHashMismatch"
    assert not deep["signed_new_hash"] and not deep["reattested"]
    # later rounds carry canonical hashes only and attestation resumes within two rounds
    assert deep["later_rounds_noncanonical_signatures"] == 0
    assert deep["next_attested"] - deep["anchor"] <= 2 * 5
    # nobody was slashed: the nodes that signed the old hash are honest (deviation counts on the canonical hash only)
    assert result.slashes == {} and result.evidence_posted == 0


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_failing_primary_rpc_falls_back_and_recovers(tmp_path: Path) -> None:
    result = scenario_rpc_faults(tmp_path, n=4)
    assert result.rounds_verified == result.rounds_attested >= 6
    assert result.duplicate_attestations == 0
    phases = result.extra["phases"]
    # the committee stayed live through every phase (node 0 is one of four; three are a quorum)
    assert all(phase["rounds_attested"] >= 2 for phase in phases.values())
    # the proxy's failures were counted, node 0 kept computing rounds through its fallback URL, and it signs again
    # once the proxy is healthy
    assert sum(phase["proxy_errors"] for phase in phases.values()) > 0
    assert phases["error"]["computed"] > 0
    assert phases["ok"]["signed"] > 0
    # the probe saw the lag, and gave the healed primary its place back: node 0 reads from it again (head polls
    # every 0.1 s, not only the probe's one request per 2 s)
    assert phases["lag"]["proxy_lag_probed"] >= 3
    assert phases["ok"]["proxy_lag_probed"] == 0
    assert phases["ok"]["proxy_requests"] >= 4 * phases["ok"]["seconds"]
    # never a digest other than the attested one (no signature on partial or stale data)
    assert result.extra["wrong_digests"] == 0


def check_partition(result: ScenarioResult) -> dict[str, Any]:
    assert result.rounds_verified == result.rounds_attested >= 5
    assert result.duplicate_attestations == 0
    cut: dict[str, Any] = result.extra["partition"]
    # the majority (a quorum) kept attesting; the minority formed and sent nothing, and no attested round carries
    # its signature
    assert cut["rounds_attested"] >= 3
    assert cut["with_minority_signature"] == 0
    assert cut["minority_certificates"] == 0 and cut["minority_transmissions"] == 0
    # after healing the minority receives the majority's reports again (run_until inside) and rounds continue
    assert result.recover_seconds is not None
    return cut


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_partitioned_minority_attests_nothing_and_rejoins(tmp_path: Path) -> None:
    result = scenario_partition(tmp_path, n=4)
    cut = check_partition(result)
    if netlab.unavailable_reason() is None:
        # the kernel refused every packet between the groups: the lone minority node received no report at all,
        # and once healed it signed attested rounds again
        assert cut["method"].startswith("network namespaces")
        assert cut["minority"] == [3] and cut["minority_messages_in"] == 0
        assert result.extra["after_heal_seconds_to_a_minority_signature"] > 0
    else:
        assert cut["why_not_netns"]
        assert cut["minority_peers"] == len(cut["minority"]) - 1


@pytest.mark.slow
@pytest.mark.timeout(500)
def test_two_of_seven_cut_off_still_talk_to_each_other_but_attest_nothing(tmp_path: Path) -> None:
    cut = check_partition(scenario_partition(tmp_path, n=7))
    assert cut["minority"] == [5, 6]
    # a partition, not an outage: the two minority nodes kept exchanging reports, short of a quorum of 5
    if "minority_messages_in" in cut:  # cut in the kernel
        assert cut["minority_messages_in"] > 0
    else:
        assert cut["minority_peers"] == 1


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_partition_by_restart_where_there_are_no_namespaces(tmp_path: Path) -> None:
    # the fallback of machines without unprivileged user namespaces: the minority restarts on new ports and dials
    # only itself
    cut = check_partition(scenario_partition_by_restart(tmp_path, n=4))
    assert cut["minority_peers"] == len(cut["minority"]) - 1
