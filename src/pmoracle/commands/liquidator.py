"""``pmoracle liquidator --config keeper.toml``: run the liquidation keeper until SIGINT/SIGTERM."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the keeper's arguments."""
    parser.add_argument("--config", type=Path, required=True, help="keeper config file (see examples/keeper.toml)")
    parser.add_argument("--once", action="store_true", help="evaluate the latest attested round once and exit")


def run(args: argparse.Namespace) -> int:
    """Load the config and key, check the deployment, then evaluate the latest attested round every poll."""
    import json
    import logging
    import signal
    import threading

    from prometheus_client import start_http_server

    from pmoracle.chain.client import ChainClient
    from pmoracle.chain.deploy import Deployment
    from pmoracle.chain.transmitter import Transmitter
    from pmoracle.config.params import default_params, load_params_file
    from pmoracle.keeper.config import load_keeper_config
    from pmoracle.keeper.decision import Policy
    from pmoracle.keeper.keeper import Keeper, describe, run_keeper
    from pmoracle.keeper.metrics import create_keeper_metrics
    from pmoracle.node.keys import read_password, unlock_key_file
    from pmoracle.node.logs import configure_logging

    config = load_keeper_config(args.config)
    configure_logging(config.log_format, config.log_level)
    log = logging.getLogger("pmoracle.keeper")
    password = read_password(config.password_file, config.password_env)
    key = unlock_key_file(config.keystore, password, expected_kind="transmitter")
    client = ChainClient(list(config.rpc_urls))
    params = default_params() if config.params_file is None else load_params_file(config.params_file)
    metrics = create_keeper_metrics()
    keeper = Keeper(
        client,
        Deployment.load(config.deployment),
        Transmitter(client, key.secret),
        params,
        Policy(config.min_profit, config.gas_cost, config.wait_for_plateau),
        metrics,
        margin_api=config.margin_api,
        block_time=config.block_time,
    )
    if args.once:
        print(json.dumps(describe(keeper.tick())))
        return 0
    if config.metrics_port:
        start_http_server(config.metrics_port, config.metrics_host, registry=metrics.registry)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("keeper %s watching %s", keeper.address, config.rpc_urls[0])
    run_keeper(keeper, config.poll_interval, stop)
    return 0
