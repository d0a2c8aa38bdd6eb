"""decode_packed_accounts: MarginAccountsReader's packed output, decoded exactly and strictly."""

from __future__ import annotations

import pytest
from eth_abi import encode as abi_encode
from eth_utils import keccak
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.chain.blocks import BlockHeader
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.errors import SnapshotError
from pmoracle.chain.snapshot import (
    ACCOUNT_EVENTS,
    PackedPage,
    RawAccount,
    _accounts_in_logs,
    decode_packed_accounts,
)
from pmoracle.testing.packed import encode_packed_accounts

INT128 = st.integers(-(2**127), 2**127 - 1)
INT256 = st.integers(-(2**255), 2**255 - 1)
ADDRESS = st.binary(min_size=20, max_size=20)
POSITION = st.tuples(st.integers(0, 2**32 - 1), INT128, INT128, INT256)
BALANCE = st.tuples(ADDRESS, st.integers(0, 2**256 - 1))
ACCOUNT = st.tuples(ADDRESS, INT256, st.lists(POSITION, max_size=4), st.lists(BALANCE, max_size=3))


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.integers(0, 2**64), st.integers(0, 2**64), st.lists(ACCOUNT, max_size=5))
def test_packed_output_round_trips(since: bytes, next_index: int, total: int, accounts: list[RawAccount]) -> None:
    page = decode_packed_accounts(encode_packed_accounts(since, next_index, total, accounts))
    expected = [(a, c, list(p), list(b)) for a, c, p, b in accounts]
    assert page == PackedPage(since, next_index, total, expected)


ONE = (b"\x11" * 20, -5, [(1, -3, -180_000, 7)], [(b"\x22" * 20, 10**18)])


def test_the_header_alone_is_an_empty_page() -> None:
    assert decode_packed_accounts(encode_packed_accounts(b"\0" * 32, 0, 0, [])) == PackedPage(b"\0" * 32, 0, 0, [])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "one ABI-encoded bytes"),
        (abi_encode(["uint256", "uint256"], [64, 0]), "one ABI-encoded bytes"),  # offset other than 32
        (abi_encode(["bytes"], [b"\0" * 95]), "shorter than its header"),
        (encode_packed_accounts(b"\0" * 32, 1, 1, [ONE])[:-32], "does not match"),  # a word cut off
        (encode_packed_accounts(b"\0" * 32, 1, 1, [ONE]) + b"\0" * 32, "does not match"),  # a word too many
    ],
)
def test_malformed_output_is_named(data: bytes, message: str) -> None:
    with pytest.raises(SnapshotError, match=message):
        decode_packed_accounts(data)


@pytest.mark.parametrize("cut", [1, 20, 53, 54, 60, 121, 123, 150, 175])
def test_a_record_cut_short_is_refused(cut: int) -> None:
    payload = decode_payload(encode_packed_accounts(b"\0" * 32, 1, 1, [ONE]))
    assert len(payload) == 96 + 176  # one account, one position, one balance
    with pytest.raises(SnapshotError, match=r"truncated|run past"):
        decode_packed_accounts(abi_encode(["bytes"], [payload[: 96 + cut]]))


def decode_payload(data: bytes) -> bytes:
    return data[64 : 64 + int.from_bytes(data[32:64], "big")]


def test_account_events_are_the_ledgers_with_their_accounts_indexed() -> None:
    """Each event the incremental read takes changed accounts from exists in MarginAccounts' ABI with those
    topics indexed addresses (topic i is the i-th indexed input)."""
    events = {
        f"{e['name']}({','.join(i['type'] for i in e['inputs'])})": e
        for e in load_artifact("MarginAccounts").abi
        if e.get("type") == "event"
    }
    for signature, topics in ACCOUNT_EVENTS.items():
        indexed = [i for i in events[signature]["inputs"] if i["indexed"]]
        assert all(indexed[t - 1]["type"] == "address" for t in topics), signature
        assert all(indexed[t - 1]["name"] != "token" for t in topics), signature  # accounts, not the tokens


class _LogsNode:
    """Answers ``eth_getLogs`` with ``logs`` and says block 7 is canonical with hash ``b"\\7" * 32``."""

    def __init__(self, logs: object) -> None:
        self.logs = logs

    def request(self, method: str, params: object = ()) -> object:
        assert method == "eth_getLogs"
        return self.logs

    def get_block(self, number: int) -> BlockHeader:
        return BlockHeader(number=number, hash=b"\7" * 32, parent_hash=b"\6" * 32, timestamp=1_000)


TRADED = "0x" + keccak(text="Traded(address,address,uint32,uint128,uint128,int128,int128,uint256)").hex()
DEPOSITED = "0x" + keccak(text="Deposited(address,address,uint256,uint256)").hex()


def word(value: bytes) -> str:
    return "0x" + value.rjust(32, b"\0").hex()


def test_the_accounts_named_by_the_ledgers_logs_and_only_them() -> None:
    a, b, c, token = (bytes([i]) * 20 for i in (0xA, 0xB, 0xC, 0xD))
    logs = [
        {"topics": [TRADED, word(b), word(a), word(b"\1")]},
        {"topics": [DEPOSITED, word(c), word(token)]},  # the token is not an account
        {"topics": ["0x" + "11" * 32, word(token)]},  # another event: nothing
        {"topics": []},
    ]
    header = BlockHeader(number=7, hash=b"\7" * 32, parent_hash=b"\6" * 32, timestamp=1_000)
    assert _accounts_in_logs(_LogsNode(logs), "0x" + "00" * 20, 3, header) == [a, b, c]  # type: ignore[arg-type]
    moved = BlockHeader(number=7, hash=b"\x08" * 32, parent_hash=b"\6" * 32, timestamp=1_000)
    assert _accounts_in_logs(_LogsNode(logs), "0x" + "00" * 20, 3, moved) is None  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "logs",
    [
        {"not": "a list"},
        [{"topics": "0x00"}],
        [{"topics": [TRADED, word(b"\1" * 21), word(b"\2")]}],  # more than an address
        [{"topics": [TRADED, "0xzz", word(b"\2")]}],
        [{"topics": [TRADED, word(b"\1")]}],  # a topic missing
    ],
)
def test_malformed_logs_are_named(logs: object) -> None:
    header = BlockHeader(number=7, hash=b"\7" * 32, parent_hash=b"\6" * 32, timestamp=1_000)
    with pytest.raises(SnapshotError):
        _accounts_in_logs(_LogsNode(logs), "0x" + "00" * 20, 3, header)  # type: ignore[arg-type]
