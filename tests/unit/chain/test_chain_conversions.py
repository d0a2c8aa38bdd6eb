"""Pure parts of the chain layer: revert decoding, unit conversion, symbols, account conversion, fee arithmetic."""

from __future__ import annotations

import pytest
from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.chain.client import ChainClient
from pmoracle.chain.errors import FeeCapExceededError, RpcResponseError, SnapshotError
from pmoracle.chain.revert import ErrorDecoder, revert_data_of
from pmoracle.chain.snapshot import (
    convert_account,
    decode_accounts_page,
    decode_symbol,
    funding_owed,
    to_size_units,
)
from pmoracle.chain.transmitter import GWEI, FeePolicy, Transmitter
from pmoracle.risk.inputs import WAD, Instrument, InstrumentKind, Portfolio, Position

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
    funding = {1: 95 * WAD}  # the perpetual's cumulative funding: 95 USD per unit long
    usdc, wbtc = b"\x0a" * 20, b"\x0b" * 20
    tokens = {usdc: ("USDC", 6), wbtc: ("WBTC", 8)}
    account = b"\xcd" * 20
    raw = (account, -3 * WAD, [(2, -5, -47_500_000 * 10**12, 0), (1, 7, 66_500_000 * 10**12, 90 * WAD)],
           [(wbtc, 10**8), (usdc, 50)])  # fmt: skip
    got = convert_account(raw, instruments, tokens, funding)
    assert got == Portfolio(
        # 7e-4 units long paid funding at 90 and owes (95 - 90) x 7e-4 = 0.0035 USD
        positions=(Position(perp, 7, cost=66_500_000 * 10**12, funding=35 * 10**14),
                   Position(fut, -5, cost=-47_500_000 * 10**12)),
        collateral=(("WBTC", 10_000),),  # 50 units of USDC round down to 0 and are dropped
        account=bytes.fromhex("cd" * 20),
        cash=-3 * WAD,
    )  # fmt: skip
    assert convert_account((account, 0, [], [(usdc, 99)]), instruments, tokens, funding) is None
    cash_only = convert_account((account, 1, [], []), instruments, tokens, funding)  # 1e-18 USD: still an account
    assert cash_only == Portfolio(account=account, cash=1)
    with pytest.raises(SnapshotError, match="unknown instrument"):
        convert_account((account, 0, [(3, 1, 0, 0)], []), instruments, tokens, funding)
    with pytest.raises(SnapshotError, match="no price feed"):
        convert_account((account, 0, [], [(b"\x0c" * 20, 1)]), instruments, tokens, funding)


def test_funding_owed_rounds_up_like_the_ledger() -> None:
    assert funding_owed(10_000, 95 * WAD, 0) == 95 * WAD
    assert funding_owed(-10_000, 95 * WAD, 0) == -95 * WAD
    assert funding_owed(1, 3, 0) == 1 and funding_owed(-1, 3, 0) == 0  # ceil(3e-4), ceil(-3e-4)


def test_fees_are_capped_and_refused_above_the_cap() -> None:
    offline = ChainClient(["http://127.0.0.1:9"])  # no request is made by compute_fees
    tx = Transmitter(offline, KEY, fees=FeePolicy(priority_fee=2 * GWEI, max_fee_cap=50 * GWEI))
    assert tx.compute_fees(10 * GWEI) == (22 * GWEI, 2 * GWEI)
    assert tx.compute_fees(40 * GWEI) == (50 * GWEI, 2 * GWEI)  # clamped: still includable at the cap
    with pytest.raises(FeeCapExceededError) as info:
        tx.compute_fees(49 * GWEI)
    assert (info.value.max_fee_per_gas, info.value.cap) == (51 * GWEI, 50 * GWEI)


ACCOUNT_VIEW = "(address,int256,(uint32,int128,int128,int256)[],(address,uint256)[])[]"
_addresses = st.binary(min_size=20, max_size=20)
_int128 = st.integers(-(2**127), 2**127 - 1)
_int256 = st.integers(-(2**255), 2**255 - 1)
_account_views = st.lists(
    st.tuples(
        _addresses,
        _int256,
        st.lists(st.tuples(st.integers(0, 2**32 - 1), _int128, _int128, _int256), max_size=6),
        st.lists(st.tuples(_addresses, st.integers(0, 2**256 - 1)), max_size=4),
    ),
    max_size=6,
)


def _eth_abi_page(data: bytes) -> list:
    (page,) = abi_decode([ACCOUNT_VIEW], data)
    return [
        (bytes.fromhex(a[2:]), cash, [tuple(p) for p in ps], [(bytes.fromhex(t[2:]), amount) for t, amount in cs])
        for a, cash, ps, cs in page
    ]


@settings(max_examples=300, deadline=None)
@given(_account_views)
def test_accounts_page_decodes_like_eth_abi(page: list) -> None:
    data = abi_encode([ACCOUNT_VIEW], [page])
    expected = [(a, cash, list(p), list(c)) for a, cash, p, c in page]
    assert decode_accounts_page(data) == _eth_abi_page(data) == expected


@settings(max_examples=300, deadline=None)
@given(_account_views.filter(bool), st.data())
def test_corrupted_accounts_page_is_refused_or_decoded_like_eth_abi(page: list, data: st.DataObject) -> None:
    """Flip one byte or cut the data: strict eth_abi and the fast decoder agree, or the fast one refuses."""
    raw = bytearray(abi_encode([ACCOUNT_VIEW], [page]))
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    else:
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    try:
        expected = _eth_abi_page(bytes(raw))
    except Exception:  # eth_abi refuses: so must the fast decoder
        with pytest.raises(SnapshotError):
            decode_accounts_page(bytes(raw))
        return
    try:
        got = decode_accounts_page(bytes(raw))
    except SnapshotError:
        return  # stricter than eth_abi (e.g. an offset whose target word is cut short) is allowed
    assert got == expected
