"""The devnet's live table: redrawn in place on a terminal, plain lines when piped."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

from rich.console import Console

from pmoracle.devnet.cluster import AttestedRound, Slashing
from pmoracle.devnet.lifecycle import LifeStats
from pmoracle.devnet.liquidations import LiquidationDesk, LiquidationStats
from pmoracle.devnet.table import LiveTable, format_evidence, format_summary, format_table
from pmoracle.risk.inputs import MONEY_SCALE

CURSOR_UP = "\x1b[1A"  # how rich moves back over the previous version of the table
ERASE_LINE = "\x1b[2K"


def _round(block: int, verified: bool = True, scheme: str = "ecdsa") -> AttestedRound:
    root = bytes([block % 256]) * 32
    return AttestedRound(block_number=block, accounts=20, root=root, recomputed_root=root if verified else bytes(32),
                         total_im=1_234 * MONEY_SCALE, total_mm=617 * MONEY_SCALE, total_equity=9_000 * MONEY_SCALE,
                         latency=0.25, gas=210_000, scheme=scheme)  # fmt: skip


def _devnet(rounds: list[AttestedRound], slashings: list[Slashing] | None = None, **timings: float) -> Any:
    node = SimpleNamespace(index=0, alive=True)
    return SimpleNamespace(attested=rounds, slashings=slashings or [], nodes=[node], lifecycle=None,
                           liquidations=None, key_installed_s=timings.get("key"), first_frost_s=timings.get("frost"),
                           node_status=lambda: [{"headBlock": 42, "peers": 3, "status": "ok"}])  # fmt: skip


def test_the_table_shows_rounds_audit_evidence_and_nodes() -> None:
    text = format_table(_devnet([_round(10, scheme="frost"), _round(15, verified=False)]))
    lines = text.splitlines()
    assert lines[0].split() == ["round", "accounts", "total", "IM", "total", "MM", "equity", "latency", "gas", "scheme",
                                "audit"]  # fmt: skip
    assert lines[1].split() == ["10", "20", "1,234", "617", "9,000", "0.25s", "210000", "frost", "root", "verified"]
    assert lines[2].endswith("MISMATCH")
    assert lines[3] == "evidence on chain: none"
    assert lines[4] == "node 0: head 42 peers 3 ok"
    assert "node 0" not in format_table(_devnet([_round(10)]), nodes=False)


def test_evidence_lists_the_latest_slashings_and_counts_the_rest() -> None:
    slashings = [Slashing(block=100 + i, signer="0xabc", node=3, offence="deviation", round=95 + i, amount=10**18)
                 for i in range(5)]  # fmt: skip
    lines = format_evidence(slashings).splitlines()
    assert lines[0] == "evidence on chain: 5 slashings (2 earlier not shown)"
    expected = [f"  node 3 slashed for deviation in round {97 + i} (1.00 ETH, block {102 + i})" for i in range(3)]
    assert lines[1:] == expected


def test_the_summary_counts_verified_rounds() -> None:
    summary = format_summary(_devnet([_round(10, scheme="frost"), _round(15), _round(20, verified=False)]))
    assert summary.startswith("devnet: 3 rounds attested, 2 verified by independent recomputation")
    assert summary.endswith("; 1 by FROST, 2 by ECDSA")
    assert format_summary(_devnet([])) == "devnet: no round attested"
    # the nodes' own DKG: when the key was installed and the first FROST round audited
    summary = format_summary(_devnet([_round(10, scheme="frost")], key=12.34, frost=20.0))
    assert summary.endswith("; group key installed 12.3 s and first FROST round audited 20.0 s after the nodes started")


def test_on_a_terminal_the_table_is_redrawn_in_place() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    said: list[str] = []
    with LiveTable(console, say=said.append) as live:
        assert live.in_place
        live.say("devnet: starting")
        live.show("round 10 verified\nnode 0: ok")
        live.show("round 15 verified\nnode 0: ok")
    out = screen.getvalue()
    assert said == []  # nothing went to the plain output
    assert out.count("devnet: starting") == 1
    # the second two-line version is drawn over the first: erase its last line, go up one, erase the first
    between = out[out.index("round 10 verified") : out.index("round 15 verified")]
    assert between.endswith(ERASE_LINE + CURSOR_UP + ERASE_LINE)


def test_when_piped_every_version_is_printed_as_plain_lines() -> None:
    screen = io.StringIO()
    console = Console(file=screen)  # a StringIO is not a terminal
    said: list[str] = []
    with LiveTable(console, say=said.append) as live:
        assert not live.in_place
        live.say("devnet: starting")
        live.show("round 10 verified")
        live.show("round 15 verified")
    assert said == ["devnet: starting", "round 10 verified", "round 15 verified"]
    assert screen.getvalue() == ""
    assert not any("\x1b" in line for line in said)


def test_a_days_run_shows_market_time_settlements_trades_and_withdrawals() -> None:
    stats = LifeStats(steps=9, expiries_settled=1, positions_settled=87, expiries_listed=1, funding_payments=18,
                      withdrawals=40, withdrawals_refused=7, max_accounts_below_mm=3,
                      settlements=["expiry 04DEC26 settled at BTC 97,120, ETH 3,050: 87 positions"])  # fmt: skip
    devnet = _devnet([_round(10)])
    devnet.lifecycle = SimpleNamespace(stats=stats, step_seconds=12 * 3600)
    devnet.world = SimpleNamespace(prices={"BTC": 97_120.4, "ETH": 3_050.0}, trades=412)
    lines = format_table(devnet, nodes=False).splitlines()
    assert lines[2] == ("market day 4.5: BTC 97,120  ETH 3,050  |  412 trades, 40 withdrawals (7 refused), "
                        "18 funding payments")  # fmt: skip
    assert lines[3] == ("settled: 1 expiry, 87 positions; 1 expiry listed; at most 3 accounts below maintenance "
                        "margin")  # fmt: skip
    assert lines[4] == "  expiry 04DEC26 settled at BTC 97,120, ETH 3,050: 87 positions"
    assert lines[5] == "evidence on chain: none"


def test_a_days_run_with_the_keeper_shows_its_auctions() -> None:
    devnet = _devnet([_round(10)])
    devnet.lifecycle = SimpleNamespace(stats=LifeStats(steps=2), step_seconds=12 * 3600)
    devnet.world = SimpleNamespace(prices={"BTC": 71_000.0}, trades=3)
    stats = LiquidationStats(breached_at={"a": 1, "b": 1, "c": 2}, restored_at={"a": 9}, insolvent={"b"},
                             open_breaches={"c": (2, 0)}, bid_accounts={"a": 1, "b": 1},
                             auctions_started=3)  # fmt: skip
    desk = LiquidationDesk.__new__(LiquidationDesk)  # the bookkeeping only: no chain behind it
    desk.stats, desk.keeper = stats, SimpleNamespace(watched={"c"})
    devnet.liquidations = desk
    lines = format_table(devnet, nodes=False).splitlines()
    assert "auctions: 3 started, 1 open, 2 bids; 3 breached, 1 restored, 1 insolvent" in lines
    assert desk.unresolved() == {"c"}


def _margin(account: bytes, equity: int, mm: int, empty: bool = False) -> SimpleNamespace:
    return SimpleNamespace(account=account, equity=equity, maintenance_margin=mm, is_empty=empty)


def test_every_breached_account_is_restored_insolvent_or_unresolved() -> None:
    """The crash summary's bookkeeping: a re-breach reopens an account, an account emptied by a whole-book bid (no
    leaf) counts as restored, an insolvent one stays insolvent; the three sets partition the breached ones."""
    a, b, c, d = (bytes([n]) * 20 for n in (1, 2, 3, 4))
    desk = LiquidationDesk.__new__(LiquidationDesk)  # the bookkeeping only: no chain behind it
    desk.stats, desk.keeper = LiquidationStats(), SimpleNamespace(fund="0x" + "ff" * 20)
    rounds = [
        [_margin(a, 5, 10), _margin(b, -1, 10), _margin(c, 20, 10)],  # a breached, b insolvent
        [_margin(a, 12, 10), _margin(b, -1, 10), _margin(d, 3, 10)],  # a restored, d breached
        [_margin(a, 4, 10), _margin(d, 0, 0, empty=True)],  # a breached again; d emptied (whole book)
    ]
    for t, accounts in enumerate(rounds):
        desk.observe(SimpleNamespace(book=SimpleNamespace(accounts=accounts)), anchor_time=100 * t)
    stats = desk.stats
    breached = set(stats.breached_at)
    assert len(breached) == 3 and len(stats.insolvent) == len(stats.restored_at) == len(desk.unresolved()) == 1
    assert set(stats.restored_at) | stats.insolvent | desk.unresolved() == breached
    assert stats.rounds_to_restore == [1, 1] and stats.breach_waits == [100, 100]
