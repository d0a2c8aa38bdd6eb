"""anvil that fails to bind its port is started again on a fresh one, unless the caller forced the port."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from pmoracle.devnet import devchain
from pmoracle.devnet.devchain import DevchainError, start_devchain
from pmoracle.devnet.ports import reserve_port


@pytest.fixture
def taken_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def test_a_drawn_port_taken_before_anvil_binds_it_is_replaced(taken_port: int, monkeypatch: pytest.MonkeyPatch) -> None:
    draws = iter([taken_port, reserve_port()])  # the first draw is lost to another process in between
    monkeypatch.setattr(devchain, "reserve_port", lambda: next(draws))
    chain = start_devchain()
    try:
        assert chain.port != taken_port
        assert int(str(chain.rpc("eth_chainId")), 16) == 31337
    finally:
        chain.stop()


def test_a_forced_port_in_use_fails_naming_it(taken_port: int) -> None:
    with pytest.raises(DevchainError, match=f"port {taken_port}"):
        start_devchain(port=taken_port)
