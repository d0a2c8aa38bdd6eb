"""The Exchange order's EIP-712 digest: the written-out encoding equals eth_abi's and eth-account's."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.chain.orders import ORDER_TYPEHASH, Order, order_digest, order_typed_data

EXCHANGE = "0x5FbDB2315678afecb367f032d93F642f64180aa3"

orders = st.builds(
    Order,
    account=st.binary(min_size=20, max_size=20),
    instrument_id=st.integers(0, 2**32 - 1),
    is_buy=st.booleans(),
    size=st.integers(0, 2**128 - 1),
    limit_price=st.integers(0, 2**128 - 1),
    nonce=st.integers(0, 2**64 - 1),
    expiry=st.integers(0, 2**64 - 1),
)


@settings(max_examples=200, deadline=None)
@given(orders)
def test_the_struct_hash_is_the_abi_encoding_of_the_order(order: Order) -> None:
    types = ["bytes32", "address", "uint32", "bool", "uint128", "uint128", "uint64", "uint64"]
    words = [ORDER_TYPEHASH, order.account, order.instrument_id, order.is_buy]
    words += [order.size, order.limit_price, order.nonce, order.expiry]
    expected = keccak(abi_encode(types, words))
    assert order.struct_hash() == expected


@settings(max_examples=50, deadline=None)
@given(orders, st.integers(1, 2**32))
def test_the_digest_is_what_a_wallet_signs(order: Order, chain_id: int) -> None:
    message = encode_typed_data(full_message=order_typed_data(chain_id, EXCHANGE, order))
    assert order_digest(chain_id, EXCHANGE, order) == keccak(b"\x19" + message.version + message.header + message.body)
