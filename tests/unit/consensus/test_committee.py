"""Committee config: Byzantine quorum sizes and the config digest encoding."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import keccak

from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum, compute_max_faulty
from pmoracle.consensus.frost_evm import EvmGroupKey
from pmoracle.errors import InputError


@pytest.mark.parametrize(("n", "f", "q"), [(1, 0, 1), (4, 1, 3), (7, 2, 5), (10, 3, 7), (16, 5, 11)])
def test_byzantine_quorum(n: int, f: int, q: int) -> None:
    assert compute_max_faulty(n) == f
    assert compute_byzantine_quorum(n) == q
    # two quorums intersect in more than f members, so in at least one honest member
    assert 2 * q - n > f


def _config(**overrides: object) -> CommitteeConfig:
    fields: dict[str, object] = dict(
        chain_id=31337, registry=b"\x01" * 20, version=1, members=tuple(bytes([i]) * 20 for i in range(2, 6)),
        quorum=3, round_period=10, finality_depth=2, params_hash=b"\x09" * 32, engine_version=7,
    )  # fmt: skip
    fields.update(overrides)
    return CommitteeConfig(**fields)  # type: ignore[arg-type]


def test_digest_is_abi_encoding_of_fields() -> None:
    config = _config()
    expected = keccak(
        encode(
            ["uint256", "address", "uint64", "address[]", "uint8", "uint64", "uint64", "bytes32", "uint32"],
            [31337, b"\x01" * 20, 1, list(config.members), 3, 10, 2, b"\x09" * 32, 7],
        )
    )
    assert config.digest() == expected
    assert _config(version=2).digest() != expected
    assert _config(quorum=4).digest() != expected
    # two engines never share a config digest, so their reports never count toward one quorum
    assert _config(engine_version=8).digest() != expected


def test_a_group_key_is_appended_to_the_digest_and_its_absence_keeps_it() -> None:
    key = EvmGroupKey(0x1234, 1)
    config = _config(group_key=key)
    expected = keccak(
        encode(
            ["uint256", "address", "uint64", "address[]", "uint8", "uint64", "uint64", "bytes32", "uint32", "uint256",
             "uint8"],
            [31337, b"\x01" * 20, 1, list(config.members), 3, 10, 2, b"\x09" * 32, 7, 0x1234, 1],
        )
    )  # fmt: skip
    assert config.digest() == expected
    assert _config(group_key=EvmGroupKey(0x1234, 0)).digest() != expected
    assert _config(group_key=None).digest() == _config().digest() != expected


@pytest.mark.parametrize(
    ("field", "overrides"),
    [
        ("quorum", {"quorum": 2}),
        ("quorum", {"quorum": 5}),
        ("members", {"members": (b"\x02" * 20, b"\x02" * 20, b"\x03" * 20, b"\x04" * 20)}),
        ("members", {"members": ()}),
        ("round_period", {"round_period": 0}),
        ("engine_version", {"engine_version": 0}),
        ("engine_version", {"engine_version": 2**32}),
        ("group_key", {"group_key": (0x1234, 1)}),
    ],
)
def test_invalid_config_rejected(field: str, overrides: dict[str, object]) -> None:
    with pytest.raises(InputError) as info:
        _config(**overrides)
    assert info.value.field == field


def test_index_of() -> None:
    config = _config()
    assert config.index_of(config.members[2]) == 2
    assert config.index_of(b"\xff" * 20) is None
