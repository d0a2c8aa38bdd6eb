"""Node metrics: private registries, every metric the operators' docs promise, safe labels."""

from __future__ import annotations

from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from pmoracle.node.metrics import create_node_metrics, endpoint_label, export_stress

EXPECTED = {
    "pmoracle_committee_version": "gauge",
    "pmoracle_committee_changes": "counter",
    "pmoracle_dkg_runs": "counter",
    "pmoracle_dkg_complaints": "counter",
    "pmoracle_dkg_confirmations": "counter",
    "pmoracle_rounds_computed": "counter",
    "pmoracle_rounds_signed": "counter",
    "pmoracle_rounds_attested": "counter",
    "pmoracle_round_latency_seconds": "histogram",
    "pmoracle_risk_compute_seconds": "histogram",
    "pmoracle_gossip_messages_in": "counter",
    "pmoracle_gossip_messages_out": "counter",
    "pmoracle_gossip_messages_rejected": "counter",
    "pmoracle_peers": "gauge",
    "pmoracle_evidence_sent": "counter",
    "pmoracle_evidence_held": "gauge",
    "pmoracle_evidence_dropped": "counter",
    "pmoracle_gas_spent": "counter",
    "pmoracle_fees_paid_wei": "counter",
    "pmoracle_rpc_errors": "counter",
    "pmoracle_head_block": "gauge",
    "pmoracle_last_attested_round": "gauge",
    "pmoracle_stress_round": "gauge",
    "pmoracle_stress_cascade_depth": "gauge",
    "pmoracle_stress_shortfall_usd": "gauge",
    "pmoracle_stress_cover2_usd": "gauge",
    "pmoracle_snapshot_reads": "counter",
    "pmoracle_snapshot_mismatches": "counter",
    "pmoracle_snapshot_checks": "counter",
}


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_two_nodes_in_one_process_have_separate_metrics() -> None:
    a, b = create_node_metrics(), create_node_metrics()
    a.rounds_signed.inc()
    a.rounds_signed.inc()
    a.gossip_messages_rejected.labels(reason="bad_signature").inc()
    a.rpc_errors.labels(endpoint=endpoint_label("https://rpc.example/v3/KEY"), kind="timeout").inc()
    a.round_latency.observe(0.8)
    a.head_block.set(1234)
    a.evidence_sent.labels(kind="equivocation").inc()
    b.rounds_signed.inc()
    sa, sb = samples(a.exposition()), samples(b.exposition())
    assert sa[("pmoracle_rounds_signed_total", ())] == 2
    assert sb[("pmoracle_rounds_signed_total", ())] == 1
    assert sa[("pmoracle_gossip_messages_rejected_total", (("reason", "bad_signature"),))] == 1
    assert sa[("pmoracle_rpc_errors_total", (("endpoint", "https://rpc.example"), ("kind", "timeout")))] == 1
    assert sa[("pmoracle_round_latency_seconds_bucket", (("le", "1.0"),))] == 1
    assert sa[("pmoracle_round_latency_seconds_bucket", (("le", "0.75"),))] == 0
    assert sa[("pmoracle_head_block", ())] == 1234
    assert sa[("pmoracle_evidence_sent_total", (("kind", "equivocation"),))] == 1
    assert b"KEY" not in a.exposition()


def test_every_metric_is_exported_with_its_type_and_documented() -> None:
    families = {f.name: f.type for f in text_string_to_metric_families(create_node_metrics().exposition().decode())}
    assert {name: families.get(name) for name in EXPECTED} == EXPECTED
    docs = (Path(__file__).resolve().parents[3] / "docs" / "operators.md").read_text()
    for name in EXPECTED:
        assert f"`{name}" in docs, name


def test_endpoint_label_strips_credentials_path_and_query() -> None:
    assert endpoint_label("https://user:pw@mainnet.example.io/v3/abc?key=1") == "https://mainnet.example.io"
    assert endpoint_label("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert endpoint_label("ws://[::1]:8546/") == "ws://[::1]:8546"
    assert endpoint_label("nonsense") == "unknown://unknown"


def test_the_standard_stress_is_exported() -> None:
    from pmoracle.risk.stress import CascadeStep, StressResult

    step = CascadeStep(1, 3, 1, 10**8, (("BTC", 10),), (("BTC", -(10**16)),), 7 * 10**18, 0)
    result = StressResult((step, step), 14 * 10**18, 0, 10**18, ((b"\1" * 20, 9 * 10**18), (b"\2" * 20, 5 * 10**18)),
                          (("BTC", (1, 2, 3, 4)),), truncated=False)  # fmt: skip
    metrics = create_node_metrics()
    export_stress(metrics, 120, result)
    s = samples(metrics.exposition())
    assert s[("pmoracle_stress_round", ())] == 120 and s[("pmoracle_stress_cascade_depth", ())] == 2
    assert s[("pmoracle_stress_shortfall_usd", ())] == 14.0 and s[("pmoracle_stress_cover2_usd", ())] == 14.0


def test_every_snapshot_check_result_is_exported_from_the_start() -> None:
    # an alert on "no check matched for hours" needs the series before the first check
    metrics = create_node_metrics()
    s = samples(metrics.exposition())
    for result in ("match", "mismatch", "error"):
        assert s[("pmoracle_snapshot_checks_total", (("result", result),))] == 0
    metrics.snapshot_checks.labels(result="match").inc()
    assert samples(metrics.exposition())[("pmoracle_snapshot_checks_total", (("result", "match"),))] == 1


def test_every_evidence_drop_reason_is_exported_from_the_start() -> None:
    metrics = create_node_metrics()
    s = samples(metrics.exposition())
    for reason in ("invalidated", "round_gone", "replaced", "error"):
        assert s[("pmoracle_evidence_dropped_total", (("reason", reason),))] == 0
    assert s[("pmoracle_evidence_held", ())] == 0
