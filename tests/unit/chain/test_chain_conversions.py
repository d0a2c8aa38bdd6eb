"""Pure parts of the chain layer: revert decoding, unit conversion, symbols, account conversion, fee arithmetic."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.errors import FeeCapExceededError, RpcResponseError, SnapshotError
from pmoracle.chain.revert import ErrorDecoder, revert_data_of
from pmoracle.chain.snapshot import convert_account, decode_symbol, to_size_units
from pmoracle.chain.transmitter import GWEI, FeePolicy, Transmitter
from pmoracle.risk.inputs import Instrument, InstrumentKind, Portfolio, Position

ABI = [
    {"type": "error", "name": "StaleRound", "inputs": [
        {"name": "given", "type": "uint64"}, {"name": "latest", "type": "uint64"}]},
    {"type": "error", "name": "BadLeaf", "inputs": [{"name": "leaf", "type": "tuple", "components": [
        {"name": "account", "type": "address"}, {"name": "equity", "type": "int256"}]}]},
    {"type": "function", "name": "f", "inputs": [], "outputs": []},
]  # fmt: skip
KEY = "0x" + "11" * 32


def test_custom_error_selector_and_arguments_are_decoded() -> None:
    decoder = ErrorDecoder([ABI])
    data = keccak(text="StaleRound(uint64,uint64)")[:4] + abi_encode(["uint64", "uint64"], [5, 9])
    error = decoder.decode(data)
    assert (error.name, error.error_args, error.data) == ("StaleRound", (5, 9), data)
    leaf = keccak(text="BadLeaf((address,int256))")[:4] + abi_encode(["(address,int256)"], [("0x" + "ab" * 20, -3)])
    assert decoder.decode(leaf).error_args == (("0x" + "ab" * 20, -3),)
    require = keccak(text="Error(string)")[:4] + abi_encode(["string"], ["nope"])
    assert decoder.decode(require).name == "Error"
    assert decoder.decode(b"\xde\xad\xbe\xef").name == "UnknownError"
    assert decoder.decode(b"").name == "EmptyRevert"
    truncated = data[:10]
    assert decoder.decode(truncated).name == "UnknownError"


def test_revert_data_is_found_in_json_rpc_errors() -> None:
    plain = RpcResponseError("u", "eth_call", 3, "execution reverted", "0x1234")
    nested = RpcResponseError("u", "eth_call", -32000, "execution reverted", {"data": "0xabcd"})
    bare = RpcResponseError("u", "eth_call", 3, "execution reverted")
    other = RpcResponseError("u", "eth_call", -32602, "invalid params")
    assert revert_data_of(plain) == b"\x12\x34" and revert_data_of(nested) == b"\xab\xcd"
    assert revert_data_of(bare) == b"" and revert_data_of(other) is None


@pytest.mark.parametrize(
    ("amount", "decimals", "expected"),
    [
        (1_234_567, 6, 12_345),
        (99, 6, 0),
        (10**18 - 1, 18, 9_999),
        (150_000_000, 8, 15_000),
        (7, 2, 700),
        (3, 0, 30_000),
    ],
)
def test_token_amounts_convert_to_size_units_rounding_down(amount: int, decimals: int, expected: int) -> None:
    assert to_size_units(amount, decimals) == expected


def test_symbols_decode_from_left_aligned_bytes32() -> None:
    assert decode_symbol("s", b"BTC".ljust(32, b"\0")) == "BTC"
    for bad in (b"\0" * 32, b"btc".ljust(32, b"\0"), b"B\0TC".ljust(32, b"\0"), "É".encode().ljust(32, b"\0")):
        with pytest.raises(SnapshotError):
            decode_symbol("s", bad)


def test_account_conversion_sorts_sums_and_skips_empty() -> None:
    perp = Instrument("BTC", InstrumentKind.PERPETUAL)
    fut = Instrument("BTC", InstrumentKind.FUTURE, 1_800_000_000)
    instruments = {1: perp, 2: fut}
    usdc, wbtc = "0x" + "0a" * 20, "0x" + "0b" * 20
    tokens = {to_checksum_address(usdc): ("USDC", 6), to_checksum_address(wbtc): ("WBTC", 8)}
    account = "0x" + "cd" * 20
    got = convert_account((account, [(2, -5), (1, 7)], [(wbtc, 10**8), (usdc, 50)]), instruments, tokens)
    assert got == Portfolio(
        positions=(Position(perp, 7), Position(fut, -5)),
        collateral=(("WBTC", 10_000),),  # 50 units of USDC round down to 0 and are dropped
        account=bytes.fromhex("cd" * 20),
    )
    assert convert_account((account, [], [(usdc, 99)]), instruments, tokens) is None
    with pytest.raises(SnapshotError, match="unknown instrument"):
        convert_account((account, [(3, 1)], []), instruments, tokens)
    with pytest.raises(SnapshotError, match="no price feed"):
        convert_account((account, [], [("0x" + "0c" * 20, 1)]), instruments, tokens)


def test_fees_are_capped_and_refused_above_the_cap() -> None:
    offline = ChainClient(["http://127.0.0.1:9"])  # no request is made by compute_fees
    tx = Transmitter(offline, KEY, fees=FeePolicy(priority_fee=2 * GWEI, max_fee_cap=50 * GWEI))
    assert tx.compute_fees(10 * GWEI) == (22 * GWEI, 2 * GWEI)
    assert tx.compute_fees(40 * GWEI) == (50 * GWEI, 2 * GWEI)  # clamped: still includable at the cap
    with pytest.raises(FeeCapExceededError) as info:
        tx.compute_fees(49 * GWEI)
    assert (info.value.max_fee_per_gas, info.value.cap) == (51 * GWEI, 50 * GWEI)
