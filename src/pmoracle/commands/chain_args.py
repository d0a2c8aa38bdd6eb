"""Chain arguments shared by the commands that read a deployment (``--rpc URL --deployment FILE``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pmoracle.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from pmoracle.chain.client import ChainClient
    from pmoracle.chain.deploy import Deployment


def load_deployment(path: Path) -> Deployment:
    """Return the deployment file at ``path``.

    Errors:
        InputError("deployment") when the file cannot be read or is not a deployment's JSON object.
    """
    from pmoracle.chain.deploy import Deployment
    from pmoracle.files import read_json

    obj = read_json(path, "deployment")
    if not isinstance(obj, dict):
        raise InputError("deployment", f"{path}: expected a JSON object")
    return Deployment.from_json(obj)


def connect(rpc: Sequence[str], deployment_path: Path) -> tuple[ChainClient, Deployment]:
    """Return a client of ``rpc`` and the deployment at ``deployment_path``, checked to be of the same chain.

    Errors:
        InputError("rpc") when no endpoint answers; InputError("deployment") when the file is unreadable or names
        another chain than the RPC serves.
    """
    from pmoracle.chain.client import ChainClient
    from pmoracle.chain.errors import ChainError

    deployment = load_deployment(deployment_path)
    client = ChainClient(list(rpc), timeout=10.0)
    try:
        chain_id = client.chain_id
    except ChainError as exc:
        raise InputError("rpc", f"chain unreachable at {', '.join(rpc)}: {exc}") from None
    if chain_id != deployment.chain_id:
        raise InputError("deployment", f"is for chain {deployment.chain_id}, the RPC serves chain {chain_id}")
    return client, deployment
