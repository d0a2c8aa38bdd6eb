"""The ``pmoracle`` command. Each sub-command lives in ``pmoracle.commands.<name>`` and is imported lazily, so
``pmoracle margin`` never pays for importing libp2p or web3."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from pmoracle import numba_cache
from pmoracle.errors import PmoracleError

# name -> (module, one-line help). Each module defines ``add_arguments(parser)`` and ``run(args) -> int``.
COMMANDS: dict[str, tuple[str, str]] = {
    "margin": ("pmoracle.commands.margin", "Portfolio margin of one book from a portfolio and a market snapshot file."),
    "keys": ("pmoracle.commands.keys", "create, import and inspect key files; export/import slashing protection"),
    "node": ("pmoracle.commands.node", "run a solver node (chain follower, risk rounds, gossip, transmitter, API)"),
    "devnet": ("pmoracle.commands.devnet", "run a local multi-node devnet: anvil, contracts, market, N nodes"),
    "dispute": (
        "pmoracle.commands.dispute",
        "check an attested round, scan for misbehaviour, submit slashing evidence",
    ),
    "liquidator": (
        "pmoracle.commands.liquidator",
        "run the liquidation keeper: start auctions on breached accounts, bid when the discount pays",
    ),
    "frost": ("pmoracle.commands.frost", "FROST: join the DKG of the installed committee over libp2p (frost dkg)"),
    "register": ("pmoracle.commands.register", "stake and register a node in SolverRegistry from its key files"),
    "bench": ("pmoracle.commands.bench", "run a benchmark: risk, gossip, gas, chain, devnet"),
    "policy": ("pmoracle.commands.policy", "adaptive margin policy: the scan-range path of an index history"),
    "params": ("pmoracle.commands.params", "check a risk parameters document; print its JSON Schema"),
    "risk-arrays": ("pmoracle.commands.risk_arrays", "per-instrument risk arrays of a market, like a SPAN file"),
    "import": ("pmoracle.commands.import_case", "convert a venue's published margin case into this project's files"),
    "stress": ("pmoracle.commands.stress", "liquidation cascade of a whole book under a shock: shortfall, Cover 1/2"),
}

EXIT_INPUT_ERROR = 2


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Return the argument parser with every sub-command listed.

    With ``command``, only that sub-command's module is imported to register its options (the others are listed
    with their help line only), so a command never pays for importing the modules of another; without it, every
    sub-command registers its options.
    """
    parser = argparse.ArgumentParser(prog="pmoracle", description="Decentralized portfolio-margin oracle.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        sub_parser = sub.add_parser(name, help=help_text, description=help_text)
        sub_parser.set_defaults(_module=module_name)
        if command is None or name == command:
            importlib.import_module(module_name).add_arguments(sub_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # before anything imports the risk kernels, a command module's options included (numba_cache explains why)
    numba_cache.configure()
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command if command in COMMANDS else None).parse_args(argv)
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args))
    except PmoracleError as exc:
        print(f"pmoracle {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERROR


if __name__ == "__main__":
    sys.exit(main())
