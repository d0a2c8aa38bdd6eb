"""The alerting rules shipped for operators (examples/prometheus/pmoracle-alerts.yml) name only metrics that exist.

Prometheus would load a rule on a misspelled or renamed metric without complaint and never fire it; this test is
what keeps the rules and ``pmoracle.node.metrics`` in step. (PromQL syntax itself needs promtool, which is not
installed here.)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from pmoracle.node.metrics import create_node_metrics

RULES = Path(__file__).resolve().parents[3] / "examples" / "prometheus" / "pmoracle-alerts.yml"
SUFFIXES = {"counter": ("_total",), "gauge": ("",), "histogram": ("_bucket", "_count", "_sum")}


def exported_names() -> set[str]:
    registry = CollectorRegistry()
    create_node_metrics(registry)
    return {family.name + suffix for family in registry.collect() for suffix in SUFFIXES[family.type]}


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_metric_an_alert_names_is_exported() -> None:
    exported = exported_names()
    for rule in rules():
        named = set(re.findall(r"\bpmoracle_[a-z_]+", rule["expr"]))
        assert named <= exported, f"{rule['alert']}: unknown metric(s) {sorted(named - exported)}"


def test_every_alert_is_complete_and_unique() -> None:
    names = [rule["alert"] for rule in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


PAGED_ON = (
    "pmoracle_head_block",  # the chain follower is stuck
    "pmoracle_last_attested_round",  # the network stopped attesting
    "pmoracle_rounds_signed_total",  # this node stopped signing
    "pmoracle_snapshot_mismatches_total",  # the incremental book went wrong
    "pmoracle_snapshot_checks_total",  # the incremental book went unchecked
    "pmoracle_transmitter_balance_wei",  # no gas for attestations or evidence
    "pmoracle_peers",  # cut off from the committee
)


def test_the_signals_operators_page_on_are_covered() -> None:
    watched = " ".join(rule["expr"] for rule in rules())
    for metric in PAGED_ON:
        assert metric in watched, metric
