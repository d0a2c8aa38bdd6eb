"""The keeper's loop: a failed evaluation is counted and retried, never the end of the keeper."""

from __future__ import annotations

import threading
from types import SimpleNamespace

from pmoracle.errors import PmoracleError
from pmoracle.keeper.keeper import TickReport, describe, run_keeper
from pmoracle.keeper.metrics import create_keeper_metrics


def test_a_failed_tick_is_counted_and_the_loop_goes_on_until_stopped() -> None:
    stop = threading.Event()
    metrics = create_keeper_metrics()
    outcomes: list[str] = []

    def tick() -> TickReport:
        outcomes.append("tick")
        if len(outcomes) == 1:
            raise PmoracleError("rpc down")
        if len(outcomes) == 3:
            stop.set()
        return TickReport(round_block=7)

    run_keeper(SimpleNamespace(tick=tick, metrics=metrics), 0.0, stop)  # type: ignore[arg-type]
    assert outcomes == ["tick"] * 3
    assert 'pmoracle_keeper_errors_total{kind="PmoracleError"} 1.0' in metrics.exposition().decode()


def test_describe_counts_what_a_tick_did() -> None:
    report = TickReport(round_block=64, breached=["a", "b"], started=["a"], waiting={"a": "gain"})
    assert describe(report) == {
        "round": 64, "breached": 2, "started": 1, "bids": 0, "ended": 0, "waiting": 1, "errors": 0,
    }  # fmt: skip
