"""FROST threshold Schnorr signatures, RFC 9591, ciphersuite FROST(secp256k1, SHA-256). PURE.

Every function follows the RFC's pseudocode of the same name (section numbers in the section comments) and serializes
exactly as the ciphersuite says (33-byte compressed SEC1 points, 32-byte big-endian scalars), so the RFC's published
test vectors pass byte for byte. Points are coincurve ``PublicKey`` objects (libsecp256k1 does the group operations);
scalars are Python ints modulo :data:`ORDER`. The identity element cannot be a ``PublicKey``; helpers that may
meet it return ``None`` and every serialization refuses it, as ``SerializeElement`` does.

Randomness is an argument: :func:`commit` takes the 32 fresh random bytes of each ``nonce_generate`` call from the
caller (the node draws them from the OS). A nonce pair signs at most once; the shell persists it as used before the
signature share leaves the node (see docs/frost.md, "Nonce safety").

Protocol, for a signing set S of at least ``MIN_PARTICIPANTS`` members and message m (RFC 9591 section 5)::

    round one, each i in S:   (d_i, e_i) = nonces; publish (D_i, E_i) = (d_i G, e_i G)
    binding factors:         rho_i = H1(PK || H4(m) || H5(encode(commitments)) || i)
    group commitment:        R = sum_i (D_i + rho_i E_i)
    challenge:               c = H2(R || PK || m)
    round two, each i in S:  z_i = d_i + e_i rho_i + lambda_i s_i c
    aggregate:               (R, z = sum_i z_i);  valid iff z G == R + c PK
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from coincurve import PublicKey

from pmoracle.errors import PmoracleError

CONTEXT_STRING = b"FROST-secp256k1-SHA256-v1"
ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141  # the group order (RFC's p)
FIELD_PRIME = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F  # secp256k1's base field
ELEMENT_SIZE = 33  # Ne: compressed SEC1 point
SCALAR_SIZE = 32  # Ns
SIGNATURE_SIZE = ELEMENT_SIZE + SCALAR_SIZE
NONCE_RANDOMNESS_SIZE = 32  # nonce_generate draws 32 fresh bytes per nonce
_HASH_TO_FIELD_LENGTH = 48  # L = ceil((ceil(log2(p)) + k) / 8) with k = 128


# --- errors ------------------------------------------------------------------------------------------------------


class FrostError(PmoracleError):
    """Raised when a FROST input is malformed or a FROST operation cannot complete; names the field and value."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class InvalidSignatureShareError(FrostError):
    """Raised when signature shares fail ``verify_signature_share``; carries the identifiers of their signers."""

    def __init__(self, identifiers: Sequence[int]) -> None:
        super().__init__("signature_shares", f"invalid share from participant(s) {', '.join(map(str, identifiers))}")
        self.identifiers = tuple(identifiers)


# --- hashing (RFC 9380 section 5.3.1; RFC 9591 section 6.5) -----------------------------------------------------


def expand_message_xmd(msg: bytes, dst: bytes, len_in_bytes: int) -> bytes:
    """Return ``expand_message_xmd(msg, DST, len_in_bytes)`` of RFC 9380 with SHA-256."""
    b_in_bytes, s_in_bytes = 32, 64
    ell = -(-len_in_bytes // b_in_bytes)
    if ell > 255 or len_in_bytes > 65535:
        raise FrostError("len_in_bytes", f"must be at most {255 * b_in_bytes}, got {len_in_bytes}")
    if len(dst) > 255:
        raise FrostError("dst", f"must be at most 255 bytes, got {len(dst)}")
    dst_prime = dst + len(dst).to_bytes(1, "big")
    msg_prime = bytes(s_in_bytes) + msg + len_in_bytes.to_bytes(2, "big") + b"\x00" + dst_prime
    b_0 = hashlib.sha256(msg_prime).digest()
    b_i = hashlib.sha256(b_0 + b"\x01" + dst_prime).digest()
    uniform = b_i
    for i in range(2, ell + 1):
        b_i = hashlib.sha256(bytes(x ^ y for x, y in zip(b_0, b_i, strict=True)) + bytes([i]) + dst_prime).digest()
        uniform += b_i
    return uniform[:len_in_bytes]


def hash_to_scalar(msg: bytes, dst: bytes) -> int:
    """Return ``hash_to_field(msg, 1)`` over the scalar field (RFC 9380 section 5.2, L = 48, expand_message_xmd)."""
    return int.from_bytes(expand_message_xmd(msg, dst, _HASH_TO_FIELD_LENGTH), "big") % ORDER


def h1(msg: bytes) -> int:
    """Return H1(m): the binding-factor hash (DST = contextString || "rho")."""
    return hash_to_scalar(msg, CONTEXT_STRING + b"rho")


def h2(msg: bytes) -> int:
    """Return H2(m): the challenge hash (DST = contextString || "chal")."""
    return hash_to_scalar(msg, CONTEXT_STRING + b"chal")


def h3(msg: bytes) -> int:
    """Return H3(m): the nonce hash (DST = contextString || "nonce")."""
    return hash_to_scalar(msg, CONTEXT_STRING + b"nonce")


def h4(msg: bytes) -> bytes:
    """Return H4(m) = SHA-256(contextString || "msg" || m)."""
    return hashlib.sha256(CONTEXT_STRING + b"msg" + msg).digest()


def h5(msg: bytes) -> bytes:
    """Return H5(m) = SHA-256(contextString || "com" || m)."""
    return hashlib.sha256(CONTEXT_STRING + b"com" + msg).digest()


# --- group: serialization and arithmetic (RFC 9591 sections 3.1, 6.5) -------------------------------------------

# ``None`` stands for the identity element, which libsecp256k1's public keys cannot hold.
Point = PublicKey | None


def serialize_scalar(scalar: int) -> bytes:
    """Return ``SerializeScalar``: the 32-byte big-endian encoding of a scalar in [0, ORDER)."""
    if not 0 <= scalar < ORDER:
        raise FrostError("scalar", f"not in [0, group order): {scalar:#x}")
    return scalar.to_bytes(SCALAR_SIZE, "big")


def deserialize_scalar(data: bytes, name: str = "scalar") -> int:
    """Return ``DeserializeScalar``: the scalar of a 32-byte big-endian string below the group order."""
    if not isinstance(data, bytes) or len(data) != SCALAR_SIZE:
        raise FrostError(name, f"expected {SCALAR_SIZE} bytes, got {data!r}")
    value = int.from_bytes(data, "big")
    if value >= ORDER:
        raise FrostError(name, f"not below the group order: 0x{data.hex()}")
    return value


def serialize_element(point: Point, name: str = "element") -> bytes:
    """Return ``SerializeElement``: the 33-byte compressed SEC1 encoding (the identity is refused)."""
    if point is None:
        raise FrostError(name, "is the identity element")
    return point.format(compressed=True)


def deserialize_element(data: bytes, name: str = "element") -> PublicKey:
    """Return ``DeserializeElement``: the point of a 33-byte compressed SEC1 string, validated on the curve."""
    if not isinstance(data, bytes) or len(data) != ELEMENT_SIZE or data[0] not in (2, 3):
        raise FrostError(name, f"expected a {ELEMENT_SIZE}-byte compressed point, got {data!r}")
    try:
        return PublicKey(data)  # libsecp256k1 checks x < field prime and that x has a point on the curve
    except ValueError:
        raise FrostError(name, f"not a point on secp256k1: 0x{data.hex()}") from None


def scalar_base_mult(scalar: int) -> Point:
    """Return ``ScalarBaseMult(k)`` = k G (None for k = 0 mod ORDER)."""
    k = scalar % ORDER
    return None if k == 0 else PublicKey.from_valid_secret(k.to_bytes(SCALAR_SIZE, "big"))


def scalar_mult(point: Point, scalar: int) -> Point:
    """Return ``ScalarMult(A, k)`` = k A (None when A is the identity or k = 0 mod ORDER)."""
    k = scalar % ORDER
    if point is None or k == 0:
        return None
    return point.multiply(k.to_bytes(SCALAR_SIZE, "big"))


def add_points(points: Iterable[Point]) -> Point:
    """Return the sum of ``points`` (None for the identity)."""
    terms = [p for p in points if p is not None]
    if not terms:
        return None
    if len(terms) == 1:
        return terms[0]
    try:
        return PublicKey.combine_keys(terms)
    except ValueError:  # libsecp256k1 refuses only a sum at infinity
        return None


def points_equal(a: Point, b: Point) -> bool:
    """Check if two points (or identities) are the same element."""
    if a is None or b is None:
        return a is None and b is None
    return a.format(compressed=True) == b.format(compressed=True)


def _check_identifier(identifier: int, name: str = "identifier") -> None:
    if not isinstance(identifier, int) or isinstance(identifier, bool) or not 0 < identifier < ORDER:
        raise FrostError(name, f"must be a non-zero scalar, got {identifier!r}")


def _check_scalar(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < ORDER:
        raise FrostError(name, f"must be a scalar in [0, group order), got {value!r}")


# --- messages ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SigningNonces:
    """A participant's secret nonce pair from round one; signs at most once, then is deleted."""

    hiding: int = field(repr=False)
    binding: int = field(repr=False)

    def __post_init__(self) -> None:
        _check_scalar(self.hiding, "hiding")
        _check_scalar(self.binding, "binding")


@dataclass(frozen=True, slots=True)
class SigningCommitment:
    """A participant's public round-one commitment: identifier and the two nonce commitments (33 bytes each)."""

    identifier: int
    hiding: bytes
    binding: bytes

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)
        deserialize_element(self.hiding, "hiding")
        deserialize_element(self.binding, "binding")

    def encode(self) -> bytes:
        """Return ``SerializeScalar(i) || SerializeElement(D_i) || SerializeElement(E_i)``."""
        return serialize_scalar(self.identifier) + self.hiding + self.binding


@dataclass(frozen=True, slots=True)
class SignatureShare:
    """A participant's round-two output z_i."""

    identifier: int
    share: int

    def __post_init__(self) -> None:
        _check_identifier(self.identifier)
        _check_scalar(self.share, "share")


@dataclass(frozen=True, slots=True)
class Signature:
    """A Schnorr signature (R, z): the 33-byte group commitment and the scalar z."""

    commitment: bytes
    z: int

    def __post_init__(self) -> None:
        deserialize_element(self.commitment, "commitment")
        _check_scalar(self.z, "z")

    def to_bytes(self) -> bytes:
        """Return the RFC's canonical 65-byte encoding ``SerializeElement(R) || SerializeScalar(z)``."""
        return self.commitment + serialize_scalar(self.z)

    @classmethod
    def from_bytes(cls, data: bytes) -> Signature:
        """Return the signature of a 65-byte canonical encoding (malformed input raises FrostError)."""
        if not isinstance(data, bytes) or len(data) != SIGNATURE_SIZE:
            raise FrostError("signature", f"expected {SIGNATURE_SIZE} bytes, got {data!r}")
        return cls(data[:ELEMENT_SIZE], deserialize_scalar(data[ELEMENT_SIZE:], "z"))


# --- polynomials and secret sharing (RFC 9591 sections 4.2, C.1, C.2) -------------------------------------------


def derive_interpolating_value(identifiers: Sequence[int], identifier: int) -> int:
    """Return the Lagrange coefficient at zero of ``identifier`` within the distinct ``identifiers``."""
    if identifier not in identifiers:
        raise FrostError("identifier", f"{identifier} is not among {list(identifiers)}")
    if len(set(identifiers)) != len(identifiers):
        raise FrostError("identifiers", f"contain duplicates: {list(identifiers)}")
    numerator, denominator = 1, 1
    for x_j in identifiers:
        if x_j == identifier:
            continue
        numerator = numerator * x_j % ORDER
        denominator = denominator * (x_j - identifier) % ORDER
    return numerator * pow(denominator, -1, ORDER) % ORDER


def evaluate_polynomial(x: int, coefficients: Sequence[int]) -> int:
    """Return f(x) for the coefficients of f, constant term first (Horner's method)."""
    value = 0
    for coefficient in reversed(coefficients):
        value = (value * x + coefficient) % ORDER
    return value


def interpolate_constant(points: Mapping[int, int]) -> int:
    """Return f(0) from points {x: f(x)} with distinct non-zero x."""
    xs = sorted(points)
    return sum(points[x] * derive_interpolating_value(xs, x) for x in xs) % ORDER


def compute_vss_commitment(coefficients: Sequence[int]) -> tuple[bytes, ...]:
    """Return ``vss_commit``: the serialized commitments a_k G to each coefficient."""
    return tuple(serialize_element(scalar_base_mult(a), "coefficient") for a in coefficients)


def evaluate_vss_commitment(commitment: Sequence[Point], identifier: int) -> Point:
    """Return sum_k C_k identifier^k: the public image f(identifier) G of a committed polynomial."""
    terms: list[Point] = []
    power = 1
    for c_k in commitment:
        terms.append(scalar_mult(c_k, power))
        power = power * identifier % ORDER
    return add_points(terms)


def split_secret(secret: int, coefficients: Sequence[int], max_participants: int) -> dict[int, int]:
    """Return ``secret_share_shard``: {i: f(i)} for i in 1..max_participants, f = secret + coefficients."""
    _check_scalar(secret, "secret")
    if not 0 < max_participants < ORDER:
        raise FrostError("max_participants", f"must be positive, got {max_participants}")
    polynomial = [secret, *coefficients]
    return {i: evaluate_polynomial(i, polynomial) for i in range(1, max_participants + 1)}


# --- round one (RFC 9591 sections 4.1, 5.1) ----------------------------------------------------------------------


def generate_nonce(secret: int, random_bytes: bytes) -> int:
    """Return ``nonce_generate(secret)`` with its 32 fresh random bytes given: H3(random_bytes || secret)."""
    if not isinstance(random_bytes, bytes) or len(random_bytes) != NONCE_RANDOMNESS_SIZE:
        raise FrostError("random_bytes", f"expected {NONCE_RANDOMNESS_SIZE} bytes, got {random_bytes!r}")
    return h3(random_bytes + serialize_scalar(secret))


def commit(
    identifier: int, secret_share: int, hiding_randomness: bytes, binding_randomness: bytes
) -> tuple[SigningNonces, SigningCommitment]:
    """Return round one's ``commit``: the secret nonce pair and its public commitment."""
    _check_identifier(identifier)
    nonces = SigningNonces(
        generate_nonce(secret_share, hiding_randomness), generate_nonce(secret_share, binding_randomness)
    )
    return nonces, compute_commitment(identifier, nonces)


def compute_commitment(identifier: int, nonces: SigningNonces) -> SigningCommitment:
    """Return the public commitment (d G, e G) of a nonce pair."""
    return SigningCommitment(
        identifier,
        serialize_element(scalar_base_mult(nonces.hiding), "hiding"),
        serialize_element(scalar_base_mult(nonces.binding), "binding"),
    )


# --- binding factors, group commitment, challenge (RFC 9591 sections 4.3 - 4.6) ---------------------------------


def check_commitment_list(commitments: Sequence[SigningCommitment]) -> None:
    """Raise FrostError unless the commitment list is non-empty and sorted by strictly increasing identifier."""
    if not commitments:
        raise FrostError("commitments", "empty")
    identifiers = [c.identifier for c in commitments]
    if any(a >= b for a, b in itertools.pairwise(identifiers)):
        raise FrostError("commitments", f"identifiers must be strictly increasing, got {identifiers}")


def encode_group_commitment_list(commitments: Sequence[SigningCommitment]) -> bytes:
    """Return ``encode_group_commitment_list``: the concatenated encodings, in identifier order."""
    check_commitment_list(commitments)
    return b"".join(c.encode() for c in commitments)


def compute_binding_factor_input(
    group_public_key: bytes, commitments: Sequence[SigningCommitment], message: bytes, identifier: int
) -> bytes:
    """Return rho_input = PK || H4(msg) || H5(encode(commitments)) || SerializeScalar(identifier)."""
    return _binding_factor_prefix(group_public_key, commitments, message) + serialize_scalar(identifier)


def _binding_factor_prefix(group_public_key: bytes, commitments: Sequence[SigningCommitment], message: bytes) -> bytes:
    if not isinstance(message, bytes):
        raise FrostError("message", f"must be bytes, got {type(message).__name__}")
    deserialize_element(group_public_key, "group_public_key")
    return group_public_key + h4(message) + h5(encode_group_commitment_list(commitments))


def compute_binding_factors(
    group_public_key: bytes, commitments: Sequence[SigningCommitment], message: bytes
) -> dict[int, int]:
    """Return ``compute_binding_factors``: {identifier: rho_i = H1(rho_input_i)}."""
    prefix = _binding_factor_prefix(group_public_key, commitments, message)
    return {c.identifier: h1(prefix + serialize_scalar(c.identifier)) for c in commitments}


def compute_group_commitment(commitments: Sequence[SigningCommitment], binding_factors: Mapping[int, int]) -> Point:
    """Return ``compute_group_commitment``: R = sum_i (D_i + rho_i E_i) (None if the identity)."""
    terms: list[Point] = []
    for c in commitments:
        if c.identifier not in binding_factors:
            raise FrostError("binding_factors", f"no binding factor for participant {c.identifier}")
        terms.append(deserialize_element(c.hiding, "hiding"))
        terms.append(scalar_mult(deserialize_element(c.binding, "binding"), binding_factors[c.identifier]))
    return add_points(terms)


def compute_challenge(group_commitment: bytes, group_public_key: bytes, message: bytes) -> int:
    """Return ``compute_challenge``: c = H2(SerializeElement(R) || SerializeElement(PK) || msg)."""
    return h2(group_commitment + group_public_key + message)


@dataclass(frozen=True, slots=True)
class SigningPackage:
    """What every signer and the aggregator derive from (group key, commitment list, message)."""

    group_public_key: bytes
    commitments: tuple[SigningCommitment, ...]
    message: bytes
    binding_factors: Mapping[int, int]
    group_commitment: bytes  # R, serialized
    challenge: int

    @property
    def identifiers(self) -> tuple[int, ...]:
        """Return the signing participants' identifiers, ascending."""
        return tuple(c.identifier for c in self.commitments)

    def get_commitment(self, identifier: int) -> SigningCommitment:
        """Return participant ``identifier``'s commitment (FrostError if it is not a signer)."""
        for c in self.commitments:
            if c.identifier == identifier:
                return c
        raise FrostError("identifier", f"{identifier} is not among the signers {list(self.identifiers)}")


def compute_signing_package(
    group_public_key: bytes, commitments: Sequence[SigningCommitment], message: bytes
) -> SigningPackage:
    """Return the binding factors, group commitment R and challenge c of one signing session."""
    binding_factors = compute_binding_factors(group_public_key, commitments, message)
    group_commitment = serialize_element(compute_group_commitment(commitments, binding_factors), "group_commitment")
    challenge = compute_challenge(group_commitment, group_public_key, message)
    return SigningPackage(group_public_key, tuple(commitments), message, binding_factors, group_commitment, challenge)


# --- round two, aggregation, verification (RFC 9591 sections 5.2, 5.3, 5.4, appendix B) -------------------------


def sign(
    identifier: int,
    secret_share: int,
    group_public_key: bytes,
    nonces: SigningNonces,
    message: bytes,
    commitments: Sequence[SigningCommitment],
) -> SignatureShare:
    """Return round two's ``sign``: z_i = d_i + e_i rho_i + lambda_i s_i c.

    The caller must have checked that the message is one it agrees to sign and must never pass the same nonces
    twice; the own commitment must appear in ``commitments`` unchanged (checked here).
    """
    _check_identifier(identifier)
    _check_scalar(secret_share, "secret_share")
    package = compute_signing_package(group_public_key, commitments, message)
    own = package.get_commitment(identifier)
    if own != compute_commitment(identifier, nonces):
        raise FrostError("commitments", f"participant {identifier}'s commitment does not match its nonces")
    lambda_i = derive_interpolating_value(package.identifiers, identifier)
    rho_i = package.binding_factors[identifier]
    z_i = (nonces.hiding + nonces.binding * rho_i + lambda_i * secret_share * package.challenge) % ORDER
    return SignatureShare(identifier, z_i)


def _check_shares_match(package: SigningPackage, shares: Sequence[SignatureShare]) -> None:
    if sorted(s.identifier for s in shares) != list(package.identifiers):
        raise FrostError(
            "signature_shares",
            f"signers {sorted(s.identifier for s in shares)} differ from committed {list(package.identifiers)}",
        )


def aggregate(
    commitments: Sequence[SigningCommitment],
    message: bytes,
    group_public_key: bytes,
    shares: Sequence[SignatureShare],
) -> Signature:
    """Return ``aggregate``: (R, z = sum z_i); unchecked (see :func:`aggregate_verified`)."""
    package = compute_signing_package(group_public_key, commitments, message)
    _check_shares_match(package, shares)
    return Signature(package.group_commitment, sum(s.share for s in shares) % ORDER)


def is_valid_signature_share(package: SigningPackage, share: SignatureShare, verification_share: bytes) -> bool:
    """Check ``verify_signature_share``: z_i G == D_i + rho_i E_i + (c lambda_i) Y_i."""
    commitment = package.get_commitment(share.identifier)
    lambda_i = derive_interpolating_value(package.identifiers, share.identifier)
    comm_share = add_points(
        [
            deserialize_element(commitment.hiding, "hiding"),
            scalar_mult(deserialize_element(commitment.binding, "binding"), package.binding_factors[share.identifier]),
        ]
    )
    public_key_i = deserialize_element(verification_share, "verification_share")
    right = add_points([comm_share, scalar_mult(public_key_i, package.challenge * lambda_i)])
    return points_equal(scalar_base_mult(share.share), right)


def verify_signature_share(package: SigningPackage, share: SignatureShare, verification_share: bytes) -> None:
    """Raise InvalidSignatureShareError naming the signer unless ``share`` is valid for ``verification_share``."""
    if not is_valid_signature_share(package, share, verification_share):
        raise InvalidSignatureShareError([share.identifier])


def aggregate_verified(
    package: SigningPackage, shares: Sequence[SignatureShare], verification_shares: Mapping[int, bytes]
) -> Signature:
    """Return the aggregate signature after checking it; if it fails, name every signer whose share is invalid.

    The fast path checks only the group signature (valid shares always aggregate to a valid signature); a failed
    check falls back to one ``verify_signature_share`` per share, as RFC 9591 section 5.4 suggests.
    """
    _check_shares_match(package, shares)
    signature = Signature(package.group_commitment, sum(s.share for s in shares) % ORDER)
    if verify(package.group_public_key, package.message, signature):
        return signature
    bad = [
        s.identifier
        for s in sorted(shares, key=lambda s: s.identifier)
        if s.identifier not in verification_shares
        or not is_valid_signature_share(package, s, verification_shares[s.identifier])
    ]
    if bad:
        raise InvalidSignatureShareError(bad)
    # Valid shares of at least the threshold sum to a valid signature: the signers are too few, or the verification
    # shares are not those of the group key.
    raise FrostError(
        "signature_shares", "every share checks out but the signature does not: below threshold or wrong group info"
    )


def verify(group_public_key: bytes, message: bytes, signature: Signature) -> bool:
    """Check ``prime_order_verify``: z G == R + H2(R || PK || msg) PK."""
    public_key = deserialize_element(group_public_key, "group_public_key")
    commitment = deserialize_element(signature.commitment, "commitment")
    challenge = compute_challenge(signature.commitment, group_public_key, message)
    return points_equal(scalar_base_mult(signature.z), add_points([commitment, scalar_mult(public_key, challenge)]))


def sign_single(secret_key: int, message: bytes, nonce: int) -> Signature:
    """Return ``prime_order_sign`` with the nonce given: the one-party Schnorr signature FROST verifies as."""
    _check_scalar(secret_key, "secret_key")
    commitment = serialize_element(scalar_base_mult(nonce), "nonce")
    public_key = serialize_element(scalar_base_mult(secret_key), "secret_key")
    challenge = compute_challenge(commitment, public_key, message)
    return Signature(commitment, (nonce + challenge * secret_key) % ORDER)
