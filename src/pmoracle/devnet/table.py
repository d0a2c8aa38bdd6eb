"""The devnet's live table: the latest attested rounds, the evidence on chain, every node's view.

On a terminal :class:`LiveTable` redraws the table in place (``rich``); when the output is piped (CI, tests, a log
file) it prints each update as plain lines, as a log would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from rich.console import Console
from rich.live import Live
from rich.text import Text

from pmoracle.risk.inputs import MONEY_SCALE

if TYPE_CHECKING:
    from pmoracle.devnet.cluster import Devnet, Slashing


def _usd(money: int) -> str:
    return f"{money / MONEY_SCALE:,.0f}"


def _count(n: int, noun: str, plural: str | None = None) -> str:
    return f"{n or 'no'} {noun if n == 1 else plural or noun + 's'}"


def format_table(devnet: Devnet, *, nodes: bool = True) -> str:
    """Return the live table: the latest attested rounds and (with ``nodes``) every node's view."""
    lines = [
        f"{'round':>6} {'accounts':>8} {'total IM':>16} {'total MM':>16} {'equity':>16} {'latency':>8} "
        f"{'gas':>8} {'scheme':>6}  audit"
    ]
    for r in devnet.attested[-6:]:
        lines.append(
            f"{r.block_number:>6} {r.accounts:>8} {_usd(r.total_im):>16} {_usd(r.total_mm):>16} "
            f"{_usd(r.total_equity):>16} {r.latency:>7.2f}s {r.gas:>8} {r.scheme:>6}  "
            f"{'root verified' if r.verified else 'MISMATCH'}"
        )
    if devnet.lifecycle is not None:
        lines.append(format_lifecycle(devnet))
    lines.append(format_evidence(devnet.slashings))
    if not nodes:
        return "\n".join(lines)
    status = []
    for node, health in zip(devnet.nodes, devnet.node_status(), strict=True):
        if health is None:
            status.append(f"node {node.index}: {'starting' if node.alive else 'down'}")
        else:
            status.append(f"node {node.index}: head {health.get('headBlock')} peers {health.get('peers')} "
                          f"{health.get('status')}")  # fmt: skip
    return "\n".join([*lines, "  |  ".join(status)])


def format_lifecycle(devnet: Devnet) -> str:
    """Return the ``--days`` lines of the live table: market time and prices, settlements, trades, withdrawals."""
    life = devnet.lifecycle
    assert life is not None
    stats, world = life.stats, devnet.world
    day = stats.steps * life.step_seconds / 86400
    prices = "  ".join(f"{symbol} {price:,.0f}" for symbol, price in sorted(world.prices.items()))
    settled = _count(stats.expiries_settled, "expiry", "expiries")
    listed = _count(stats.expiries_listed, "expiry", "expiries")
    lines = [
        f"market day {day:g}: {prices}  |  {_count(world.trades, 'trade')}, "
        f"{_count(stats.withdrawals, 'withdrawal')} ({stats.withdrawals_refused} refused), "
        f"{_count(stats.funding_payments, 'funding payment')}",
        f"settled: {settled}, {_count(stats.positions_settled, 'position')}; {listed} listed; "
        f"at most {stats.max_accounts_below_mm} accounts below maintenance margin",
    ]
    lines += [f"  {line}" for line in stats.settlements[-2:]]
    if devnet.liquidations is not None:
        lines.append(devnet.liquidations.table_line())
    return "\n".join(lines)


def format_evidence(slashings: Sequence[Slashing], *, latest: int = 3) -> str:
    """Return the evidence lines of the live table: the latest ``latest`` slashings seen on chain, or none."""
    if not slashings:
        return "evidence on chain: none"
    more = len(slashings) - latest
    head = f"evidence on chain: {_count(len(slashings), 'slashing')}"
    shown = [f"  {s.describe()}" for s in slashings[-latest:]]
    return "\n".join([head + (f" ({more} earlier not shown)" if more > 0 else ""), *shown])


def format_summary(devnet: Devnet) -> str:
    """Return the closing line of a run: rounds attested and verified, median latency, slashings."""
    rounds = devnet.attested
    if not rounds:
        return "devnet: no round attested"
    latencies = sorted(r.latency for r in rounds)
    frost, ecdsa = sum(r.scheme == "frost" for r in rounds), sum(r.scheme == "ecdsa" for r in rounds)
    line = (f"devnet: {len(rounds)} rounds attested, {sum(r.verified for r in rounds)} verified by independent "
            f"recomputation; median latency {latencies[len(latencies) // 2]:.2f} s; "
            f"{_count(len(devnet.slashings), 'slashing')} on chain; {frost} by FROST, {ecdsa} by ECDSA")  # fmt: skip
    if devnet.key_installed_s is not None and devnet.first_frost_s is not None:  # the nodes' own DKG
        line += (f"; group key installed {devnet.key_installed_s:.1f} s and first FROST round audited "
                 f"{devnet.first_frost_s:.1f} s after the nodes started")  # fmt: skip
    return line


class LiveTable:
    """Shows successive versions of the table: redrawn in place on a terminal, printed as plain lines otherwise.

    Use as a context manager; :meth:`show` replaces the table, :meth:`say` prints a message above it.
    """

    def __init__(self, console: Console | None = None, *, say: Callable[[str], None] = print) -> None:
        self.console = console if console is not None else Console()
        self._say = say
        self._live: Live | None = None

    @property
    def in_place(self) -> bool:
        """Check if the table is redrawn in place (the output is a terminal)."""
        return self.console.is_terminal

    def __enter__(self) -> LiveTable:
        if self.in_place:
            self._live = Live(console=self.console, auto_refresh=False, redirect_stdout=False)
            self._live.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._live is not None:
            self._live.stop()  # the last version stays on screen
            self._live = None

    def show(self, table: str) -> None:
        """Replace the table on screen (terminal) or print it (piped)."""
        if self._live is not None:
            self._live.update(Text(table), refresh=True)
        else:
            self._say(table)

    def say(self, message: str) -> None:
        """Print a message (above the table on a terminal)."""
        if self._live is not None:
            self._live.console.print(Text(message))
        else:
            self._say(message)
