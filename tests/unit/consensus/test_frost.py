"""FROST signing beyond the vectors: input validation, the identity element, cheater identification, properties."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pmoracle.consensus import frost
from pmoracle.errors import PmoracleError

MESSAGE = hashlib.sha256(b"report digest").digest()


def _rand(tag: str, *parts: object) -> bytes:
    """Return 32 reproducible 'random' bytes (tests only: the node draws them from the OS)."""
    return hashlib.sha256(repr((tag, *parts)).encode()).digest()


def _dealer(threshold: int, n: int, seed: int) -> tuple[bytes, dict[int, int], dict[int, bytes]]:
    secret = frost.hash_to_scalar(_rand("secret", seed), b"test")
    coefficients = [frost.hash_to_scalar(_rand("coef", seed, k), b"test") for k in range(threshold - 1)]
    shares = frost.split_secret(secret, coefficients, n)
    verification = {i: frost.serialize_element(frost.scalar_base_mult(s)) for i, s in shares.items()}
    return frost.serialize_element(frost.scalar_base_mult(secret)), shares, verification


def _sign_all(
    group_key: bytes, shares: dict[int, int], signers: tuple[int, ...], message: bytes, session: int = 0
) -> tuple[frost.SigningPackage, list[frost.SignatureShare]]:
    rounds = {i: frost.commit(i, shares[i], _rand("h", session, i), _rand("b", session, i)) for i in signers}
    commitments = [rounds[i][1] for i in sorted(signers)]
    package = frost.compute_signing_package(group_key, commitments, message)
    sig_shares = [frost.sign(i, shares[i], group_key, rounds[i][0], message, commitments) for i in signers]
    return package, sig_shares


# --- hashing -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msg", "expected"),
    [  # RFC 9380 appendix K.1, expand_message_xmd(SHA-256), DST "QUUX-V01-CS02-with-expander-SHA256-128"
        (b"", "68a985b87eb6b46952128911f2a4412bbc302a9d759667f87f7a21d803f07235"),
        (b"abc", "d8ccab23b5985ccea865c6c97b6e5b8350e794e603b4b97902f53a8a0d605615"),
    ],
)
def test_expand_message_xmd_matches_rfc9380(msg: bytes, expected: str) -> None:
    assert frost.expand_message_xmd(msg, b"QUUX-V01-CS02-with-expander-SHA256-128", 0x20).hex() == expected


def test_expand_message_xmd_refuses_an_oversized_dst() -> None:
    with pytest.raises(frost.FrostError, match="dst"):
        frost.expand_message_xmd(b"", b"x" * 256, 32)


# --- serialization -----------------------------------------------------------------------------------------------


def test_scalars_round_trip_and_refuse_the_order_and_bad_lengths() -> None:
    assert frost.deserialize_scalar(frost.serialize_scalar(frost.ORDER - 1)) == frost.ORDER - 1
    with pytest.raises(frost.FrostError, match="not below the group order"):
        frost.deserialize_scalar(frost.ORDER.to_bytes(32, "big"))
    with pytest.raises(frost.FrostError, match="expected 32 bytes"):
        frost.deserialize_scalar(b"\x01" * 31)
    with pytest.raises(frost.FrostError, match="scalar"):
        frost.serialize_scalar(frost.ORDER)


def _x_without_point() -> int:
    x = 5
    while True:
        try:
            frost.deserialize_element(b"\x02" + x.to_bytes(32, "big"))
        except frost.FrostError:
            return x
        x += 1


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x02" + b"\x01" * 31,  # short
        frost.serialize_element(frost.scalar_base_mult(7))[:1] + b"\x00" * 33,  # long
        b"\x04" + b"\x01" * 32,  # not a compressed prefix
        b"\x00" * 33,  # SEC1's identity encoding
        b"\x02" + frost.FIELD_PRIME.to_bytes(32, "big"),  # x not a field element
        b"\x02" + _x_without_point().to_bytes(32, "big"),  # no point with this x
    ],
)
def test_element_deserialization_refuses_non_points(data: bytes) -> None:
    with pytest.raises(frost.FrostError):
        frost.deserialize_element(data, "hiding")


def test_uncompressed_points_are_refused_even_when_valid() -> None:
    point = frost.scalar_base_mult(7)
    assert point is not None
    with pytest.raises(frost.FrostError, match="compressed"):
        frost.deserialize_element(point.format(compressed=False))


def test_the_identity_is_representable_but_never_serialized() -> None:
    point = frost.scalar_base_mult(11)
    assert frost.add_points([point, frost.scalar_mult(point, frost.ORDER - 1)]) is None
    assert frost.scalar_mult(point, frost.ORDER) is None
    assert frost.scalar_base_mult(0) is None
    assert frost.points_equal(frost.add_points([None, point]), point)
    assert frost.points_equal(None, None) and not frost.points_equal(None, point)
    with pytest.raises(frost.FrostError, match="identity"):
        frost.serialize_element(None, "group_commitment")


def test_signature_encoding_refuses_a_non_canonical_z() -> None:
    group_key, shares, _ = _dealer(2, 3, seed=1)
    package, sig_shares = _sign_all(group_key, shares, (1, 2), MESSAGE)
    encoded = frost.aggregate(package.commitments, MESSAGE, group_key, sig_shares).to_bytes()
    z = int.from_bytes(encoded[33:], "big")
    if z + frost.ORDER < 2**256:  # z + ORDER would verify as the same signature if accepted
        with pytest.raises(frost.FrostError, match="z"):
            frost.Signature.from_bytes(encoded[:33] + (z + frost.ORDER).to_bytes(32, "big"))
    with pytest.raises(frost.FrostError, match="65 bytes"):
        frost.Signature.from_bytes(encoded[:-1])


def test_secret_values_stay_out_of_reprs() -> None:
    nonces, _ = frost.commit(1, 12345, _rand("h"), _rand("b"))
    assert str(nonces.hiding) not in repr(nonces) and str(nonces.binding) not in repr(nonces)


def test_errors_are_pmoracle_errors_naming_the_field() -> None:
    with pytest.raises(PmoracleError) as raised:
        frost.SigningCommitment(0, b"", b"")
    assert isinstance(raised.value, frost.FrostError) and raised.value.field == "identifier"
    with pytest.raises(frost.FrostError, match="random_bytes"):
        frost.commit(1, 5, b"\x00" * 31, _rand("b"))


# --- signing -----------------------------------------------------------------------------------------------------


def test_every_two_of_three_signs_and_verifies_and_equals_a_single_signer_schnorr() -> None:
    group_key, shares, verification = _dealer(2, 3, seed=2)
    for signers in itertools.combinations(range(1, 4), 2):
        package, sig_shares = _sign_all(group_key, shares, signers, MESSAGE, session=hash(signers))
        signature = frost.aggregate_verified(package, sig_shares, verification)
        assert frost.verify(group_key, MESSAGE, signature)
        assert not frost.verify(group_key, MESSAGE[::-1], signature)
        other_key, _, _ = _dealer(2, 3, seed=3)
        assert not frost.verify(other_key, MESSAGE, signature)
        bumped = frost.Signature(signature.commitment, (signature.z + 1) % frost.ORDER)
        assert not frost.verify(group_key, MESSAGE, bumped)
    secret = frost.interpolate_constant({1: shares[1], 2: shares[2]})
    assert frost.verify(group_key, MESSAGE, frost.sign_single(secret, MESSAGE, nonce=424242))


def test_an_invalid_share_names_its_signer() -> None:
    group_key, shares, verification = _dealer(3, 5, seed=4)
    wrong = dict(shares)
    wrong[4] = (shares[4] + 1) % frost.ORDER  # signer 4 signs with a share that is not its key
    package, sig_shares = _sign_all(group_key, wrong, (1, 2, 4), MESSAGE)
    with pytest.raises(frost.InvalidSignatureShareError) as raised:
        frost.aggregate_verified(package, sig_shares, verification)
    assert raised.value.identifiers == (4,)
    assert "4" in str(raised.value)
    frost.verify_signature_share(package, sig_shares[0], verification[1])
    with pytest.raises(frost.InvalidSignatureShareError) as one:
        frost.verify_signature_share(package, sig_shares[2], verification[4])
    assert one.value.identifiers == (4,)


def test_inconsistent_group_info_is_reported_as_such_not_as_a_cheater() -> None:
    group_key, shares, verification = _dealer(2, 3, seed=8)
    _, other_shares, other_verification = _dealer(2, 3, seed=9)
    package, sig_shares = _sign_all(group_key, shares, (1, 2), MESSAGE)
    # the fast path checks only the aggregate: stale verification shares do not matter when it is valid
    assert frost.verify(group_key, MESSAGE, frost.aggregate_verified(package, sig_shares, other_verification))
    # member 2 holds a share of another key and the group info lists its matching verification share: each share
    # checks out against its own Y_i, yet they do not interpolate to the group key
    mixed = {1: shares[1], 2: other_shares[2]}
    mixed_package, mixed_sig_shares = _sign_all(group_key, mixed, (1, 2), MESSAGE, session=3)
    with pytest.raises(frost.FrostError, match="wrong group info") as raised:
        frost.aggregate_verified(mixed_package, mixed_sig_shares, {1: verification[1], 2: other_verification[2]})
    assert not isinstance(raised.value, frost.InvalidSignatureShareError)


def test_the_message_must_be_bytes() -> None:
    group_key, shares, _ = _dealer(2, 3, seed=10)
    package, _ = _sign_all(group_key, shares, (1, 2), MESSAGE)
    with pytest.raises(frost.FrostError, match="message"):
        frost.compute_signing_package(group_key, package.commitments, "text")  # type: ignore[arg-type]


def test_a_share_replayed_into_another_session_is_caught() -> None:
    group_key, shares, verification = _dealer(2, 3, seed=5)
    package_a, shares_a = _sign_all(group_key, shares, (1, 3), MESSAGE, session=1)
    _, shares_b = _sign_all(group_key, shares, (1, 3), MESSAGE, session=2)
    mixed = [shares_a[0], shares_b[1]]
    with pytest.raises(frost.InvalidSignatureShareError) as raised:
        frost.aggregate_verified(package_a, mixed, verification)
    assert raised.value.identifiers == (3,)


def test_sign_refuses_a_commitment_list_without_its_own_commitment() -> None:
    group_key, shares, _ = _dealer(2, 3, seed=6)
    nonces, own = frost.commit(1, shares[1], _rand("h", 1), _rand("b", 1))
    _, other = frost.commit(2, shares[2], _rand("h", 2), _rand("b", 2))
    _, forged = frost.commit(1, shares[1], _rand("h", 9), _rand("b", 9))
    with pytest.raises(frost.FrostError, match="does not match its nonces"):
        frost.sign(1, shares[1], group_key, nonces, MESSAGE, [forged, other])
    with pytest.raises(frost.FrostError, match="not among the signers"):
        frost.sign(3, shares[3], group_key, nonces, MESSAGE, [own, other])
    with pytest.raises(frost.FrostError, match="strictly increasing"):
        frost.sign(1, shares[1], group_key, nonces, MESSAGE, [other, own])
    with pytest.raises(frost.FrostError, match="strictly increasing"):
        frost.sign(1, shares[1], group_key, nonces, MESSAGE, [own, own])


def test_aggregate_refuses_shares_from_outside_the_commitment_list() -> None:
    group_key, shares, verification = _dealer(2, 3, seed=7)
    package, sig_shares = _sign_all(group_key, shares, (1, 2), MESSAGE)
    stray = frost.SignatureShare(3, 5)
    with pytest.raises(frost.FrostError, match="differ from committed"):
        frost.aggregate_verified(package, [sig_shares[0], stray], verification)
    with pytest.raises(frost.FrostError, match="differ from committed"):
        frost.aggregate(package.commitments, MESSAGE, group_key, sig_shares[:1])


def test_interpolating_values_refuse_duplicates_and_strangers() -> None:
    with pytest.raises(frost.FrostError, match="duplicates"):
        frost.derive_interpolating_value([1, 2, 2], 1)
    with pytest.raises(frost.FrostError, match="not among"):
        frost.derive_interpolating_value([1, 2], 3)


@settings(max_examples=15, deadline=None)
@given(
    threshold=st.integers(1, 4),
    extra=st.integers(0, 3),
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_any_quorum_of_a_dealt_key_produces_a_valid_signature(
    threshold: int, extra: int, seed: int, data: st.DataObject
) -> None:
    n = threshold + extra
    group_key, shares, verification = _dealer(threshold, n, seed)
    size = data.draw(st.integers(threshold, n))
    signers = tuple(sorted(data.draw(st.permutations(range(1, n + 1)))[:size]))
    package, sig_shares = _sign_all(group_key, shares, signers, MESSAGE, session=seed)
    assert frost.verify(group_key, MESSAGE, frost.aggregate_verified(package, sig_shares, verification))


def _solve_mod_order(rows: list[list[int]]) -> list[int]:
    """Return x with rows[i][:-1] . x == rows[i][-1] (mod ORDER): Gauss-Jordan over the scalar field."""
    rows = [r[:] for r in rows]
    size = len(rows)
    for col in range(size):
        pivot = next(r for r in range(col, size) if rows[r][col] % frost.ORDER)
        rows[col], rows[pivot] = rows[pivot], rows[col]
        inverse = pow(rows[col][col], -1, frost.ORDER)
        rows[col] = [v * inverse % frost.ORDER for v in rows[col]]
        for r in range(size):
            if r != col and rows[r][col]:
                factor = rows[r][col]
                rows[r] = [(a - factor * b) % frost.ORDER for a, b in zip(rows[r], rows[col], strict=True)]
    return [row[-1] for row in rows]


def test_one_nonce_pair_signing_three_messages_gives_away_the_secret_share() -> None:
    """Why a nonce is persisted as used before its share leaves: reuse is a key-recovery attack, not a glitch."""
    group_key, shares, _ = _dealer(2, 3, seed=15)
    nonces, own = frost.commit(1, shares[1], _rand("h", "reused"), _rand("b", "reused"))
    _, other = frost.commit(2, shares[2], _rand("h", "other"), _rand("b", "other"))
    rows = []
    for message in (b"report A", b"report B", b"report C"):
        z = frost.sign(1, shares[1], group_key, nonces, message, [own, other]).share  # what leaves the node
        package = frost.compute_signing_package(group_key, [own, other], message)  # public: anyone computes it
        lambda_1 = frost.derive_interpolating_value(package.identifiers, 1)
        rows.append(
            [1, package.binding_factors[1], lambda_1 * package.challenge % frost.ORDER, z]
        )  # z = d + e rho + l c s
    assert _solve_mod_order(rows) == [nonces.hiding, nonces.binding, shares[1]]
