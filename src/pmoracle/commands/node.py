"""``pmoracle node --config node.toml``: run a solver node until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the node's arguments: the config file and its overrides."""
    from pmoracle.config.local import add_config_arguments

    add_config_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Load and check the config, keys and chain, then run the node's services until interrupted."""
    import trio

    from pmoracle.config.local import load_local_config, overrides_from_args
    from pmoracle.node.daemon import load_node, run_until_signalled
    from pmoracle.node.keys import read_password
    from pmoracle.node.logs import configure_logging

    config = load_local_config(args.config, overrides=overrides_from_args(args))
    configure_logging(config.node.log_format, config.node.log_level)
    password = read_password(config.keys.password_file, config.keys.password_env)
    node = load_node(config, password)

    trio.run(run_until_signalled, node)
    return 0
