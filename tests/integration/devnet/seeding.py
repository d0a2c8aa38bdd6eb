"""A pinned-time world setup and a digest of the book it seeds, shared by the seeding tests."""

from __future__ import annotations

import hashlib

from eth_account import Account

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import deploy
from pmoracle.chain.snapshot import read_snapshot
from pmoracle.config.params import default_params_text, parse_params
from pmoracle.devnet.cluster import DEPLOYER_KEY
from pmoracle.devnet.devchain import Devchain
from pmoracle.devnet.world import World, compute_expiries

SETUP_TIME = 2_000_000_000  # 2033-05-18: the setup's chain time, so that option marks (and cash) are fixed


def seed_world(chain: Devchain, accounts: int, seed: int = 1) -> World:
    """Deploy the protocol on ``chain`` and seed ``accounts`` accounts at the pinned chain time."""
    params = parse_params(default_params_text())
    deployment = deploy(chain.url, DEPLOYER_KEY, params_hash=params.params_hash, round_period=5, finality_depth=2)
    world = World(chain.url, deployment, Account.from_key(DEPLOYER_KEY).address, seed=seed)
    world.rpc("evm_mine", [SETUP_TIME])
    world.setup(accounts, expiries=compute_expiries(SETUP_TIME))
    return world


def book_digest(chain: Devchain, world: World) -> str:
    """Return the SHA-256 of every account's book at the head (cash, positions, cost, collateral), as read by the
    node's snapshot."""
    client = ChainClient([chain.url])
    snapshot = read_snapshot(client, world.deployment, client.block_number())
    text = "\n".join(repr(p) for p in snapshot.portfolios)
    return hashlib.sha256(text.encode()).hexdigest()
