"""The devnet benchmark's log parsing, latency split and /proc reading, and the ``pmoracle bench`` suites."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pmoracle.bench.devnet import RoundTiming, parse_node_log, parse_sizes, read_proc_usage, split_round
from pmoracle.cli import build_parser
from pmoracle.errors import InputError

LOG = """\
2026-11-25T10:00:00.000Z INFO    pmoracle.node.daemon: node 0xab ready: api port 1, peer 16U
2026-11-25T10:00:01.400Z INFO    pmoracle.node.daemon: round 10: computed 1000 accounts in 0.300 s (snapshot 0.100 s)
2026-11-25T10:00:01.410Z INFO    pmoracle.node.daemon: round 10: signed report root 00ff (1000 accounts)
2026-11-25T10:00:01.600Z INFO    pmoracle.node.daemon: round 10: quorum certificate formed (digest 12)
2026-11-25T10:00:01.900Z INFO    pmoracle.node.daemon: round 10: attested on chain in tx ab (gas 90000)
2026-11-25T10:00:01.950Z INFO    pmoracle.node.daemon: round 10 attested on chain (root 00ff)
2026-11-25T10:00:06.000Z INFO    pmoracle.node.daemon: round 15: computed 1000 accounts in 0.250 s
"""


def test_log_lines_give_each_stage_of_a_round(tmp_path: Path) -> None:
    base = 1795600800.0  # 2026-11-25T10:00:00Z
    (tmp_path / "a.log").write_text(LOG)
    (tmp_path / "b.log").write_text(LOG.replace("01.410Z", "01.500Z").replace("in 0.300 s", "in 0.400 s"))
    rounds = {10: RoundTiming(10, final_at=base + 1.0, seen_at=base + 1.92)}
    parse_node_log(tmp_path / "a.log", rounds)
    parse_node_log(tmp_path / "b.log", rounds)
    timing = rounds[10]
    assert timing.compute == [0.3, 0.4] and timing.signed == [base + 1.41, base + 1.5]
    assert timing.snapshot == [0.1, 0.1]
    split = split_round(timing, quorum=2)
    assert split is not None
    assert split["latency"] == pytest.approx(0.9, abs=1e-3)  # to the transmitter's receipt, not the bench's poll
    assert split["detect"] == pytest.approx(0.05, abs=1e-3)  # median start (1.1, 1.0) - final 1.0
    assert split["compute"] == pytest.approx(0.35, abs=1e-3)
    assert split["quorum_wait"] == pytest.approx(0.45, abs=1e-3)  # 2nd signature at 1.5 - start 1.05
    assert split["gossip"] == pytest.approx(0.1, abs=1e-3) and split["chain"] == pytest.approx(0.3, abs=1e-3)
    assert split["snapshot"] == pytest.approx(0.1, abs=1e-3)
    parts = ("detect", "quorum_wait", "gossip", "chain")
    assert sum(split[k] for k in parts) == pytest.approx(split["latency"], abs=1e-3)
    assert split_round(timing, quorum=3) is None  # a missing signature: no split rather than a wrong one


def test_proc_usage_of_this_process() -> None:
    cpu, peak = read_proc_usage(os.getpid())
    assert cpu > 0 and peak > 10  # MiB: the interpreter with pytest loaded


def test_sizes_and_bench_suites() -> None:
    assert parse_sizes("4,7") == (4, 7)
    for bad in ("", "4,x", "0", "17"):
        with pytest.raises(InputError):
            parse_sizes(bad)
    parser = build_parser()
    args = parser.parse_args(["bench", "devnet", "--nodes", "7", "--accounts", "1000", "--rounds", "8"])
    assert (args.suite, args.nodes, args.accounts, args.rounds) == ("devnet", "7", 1000, 8)
    assert args.full_snapshot_every == 32  # the operators' default
    assert parser.parse_args(["bench", "devnet", "--full-snapshot-every", "2"]).full_snapshot_every == 2
    from pmoracle.bench.devnet import run

    with pytest.raises(InputError) as refused:  # before anything starts
        run(parser.parse_args(["bench", "devnet", "--full-snapshot-every", "0"]))
    assert refused.value.field == "--full-snapshot-every"
    assert parser.parse_args(["bench", "gossip", "--ns", "4", "7"]).ns == [4, 7]
    assert parser.parse_args(["bench", "risk", "--quick"]).quick
    assert parser.parse_args(["bench", "gas"]).write is None
    assert parser.parse_args(["bench", "chain", "--accounts", "10"]).accounts == 10


def test_table_reports_each_size_and_how_long_its_devnet_took_to_build() -> None:
    from pmoracle.bench.devnet import format_devnet_table

    result = {
        "n": 4, "quorum": 3, "accounts": 10_000, "rounds": 4, "latency_median_s": 0.5, "latency_p95_s": 0.9,
        "split_median_s": {"detect": 0.1, "compute": 0.2, "snapshot": 0.05, "quorum_wait": 0.25, "gossip": 0.05,
                           "chain": 0.1},
        "cpu_per_round_median_s": 0.3, "peak_rss_max_mb": 300.0, "anchors_attested": 5, "anchors_final": 5,
        "blocks_per_s": 1.1, "build_s": 123.4, "scheme": "frost", "rounds_frost": 4, "rounds_ecdsa": 0,
        "attest_gas_median": 68_139,
    }  # fmt: skip
    table = format_devnet_table([result])
    assert "| 4 | frost | 3 | 10000 | 4 | 500 ms | 900 ms | 100 ms | 200 ms (50 ms) |" in table
    assert "| 68,139 | 4/0 |" in table
    assert "n = 4: devnet built (anvil, contracts, 10000 accounts seeded, nodes started) in 123.4 s" in table


def test_trades_per_step_and_the_run_budget_are_options() -> None:
    from pmoracle.bench.devnet import run

    parser = build_parser()
    args = parser.parse_args(["bench", "devnet", "--accounts", "100000", "--trades-per-step", "1000", "--timeout=900"])
    assert (args.accounts, args.trades_per_step, args.timeout) == (100_000, 1000, 900.0)
    defaults = parser.parse_args(["bench", "devnet"])
    assert (defaults.trades_per_step, defaults.timeout) == (3, 600.0)  # the devnet's 3 trades a trading step
    for option, value in (("--trades-per-step", "-1"), ("--timeout", "0")):
        with pytest.raises(InputError) as refused:  # before anything starts
            run(parser.parse_args(["bench", "devnet", option, value]))
        assert refused.value.field == option
