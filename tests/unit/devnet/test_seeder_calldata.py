"""The world's packed DevnetSeeder calldata equals eth_abi's encoding of the same deposits and matches."""

from __future__ import annotations

import random

from web3 import Web3

from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.orders import Order
from pmoracle.devnet.world import checksum_address, encode_deposits, encode_matches


def _order(rng: random.Random, is_buy: bool) -> Order:
    return Order(rng.randbytes(20), rng.randrange(2**32), is_buy, rng.randrange(1, 2**128), rng.randrange(1, 2**128),
                 rng.randrange(2**64), rng.randrange(2**64))  # fmt: skip


def test_packed_calldata_equals_eth_abi() -> None:
    rng = random.Random(11)
    seeder = Web3().eth.contract(abi=load_artifact("DevnetSeeder").abi)
    for count in (0, 1, 3, 250):
        address = Web3.to_checksum_address
        deposits = [(address(rng.randbytes(20)), address(rng.randbytes(20)), rng.randrange(99)) for _ in range(count)]
        assert encode_deposits(deposits) == seeder.encode_abi("deposit", args=[deposits])
        matches = [
            (_order(rng, True), rng.randbytes(rng.choice((64, 65, 97))), _order(rng, False), rng.randbytes(65),
             rng.randrange(1, 2**128), rng.randrange(1, 2**128))
            for _ in range(count)
        ]  # fmt: skip
        as_abi = [(b.as_tuple(), bs, s.as_tuple(), ss, size, price) for b, bs, s, ss, size, price in matches]
        assert encode_matches(matches) == seeder.encode_abi("matchOrders", args=[as_abi])


def test_checksum_addresses_equal_eth_utils() -> None:
    rng = random.Random(2)
    for raw in [bytes(20), b"\xff" * 20, *(rng.randbytes(20) for _ in range(500))]:
        assert checksum_address(raw) == Web3.to_checksum_address(raw)
