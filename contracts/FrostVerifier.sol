// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title FrostVerifier
/// @notice Verifies an RFC 9591 FROST(secp256k1, SHA-256) Schnorr signature (R, z) under a group key P with one
///         `ecrecover` call, at a cost that does not depend on how many members signed.
/// @dev The rule of docs/frost.md, "On-chain verification", line by line; `pmoracle.consensus.frost_evm`'s
///      `is_valid_evm_signature` is the same rule in Python and tests/vectors/frost_evm.json the shared vectors.
///      A signature is valid iff z G == R + c P with c = H2(ser(R) || ser(P) || m). The EVM has no point
///      arithmetic, but ecrecover(h, v, r, s) returns the address of r^-1 (s K - h G), K the point with
///      x-coordinate r and y-parity v - 27. With K = P, r = P.x, s = -c P.x and h = -z P.x (mod n) that is the
///      address of z G - c P, which is R's address exactly when the signature is valid (Chronicle Scribe's
///      LibSchnorr technique, with RFC 9591's challenge so signatures are plain RFC 9591 signatures).
///      The group key is stored as (P.x, P.parity) with 0 < P.x < n; R comes as its affine coordinates, checked to
///      be on the curve so that its 160-bit address commits to the point (an unchecked R.y would turn the address
///      comparison into a birthday search).
library FrostVerifier {
    /// @notice secp256k1's group order n.
    uint256 internal constant ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    /// @notice secp256k1's base field prime p.
    uint256 internal constant FIELD_PRIME = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFC2F;

    /// @dev expand_message_xmd's DST' = "FROST-secp256k1-SHA256-v1chal" || I2OSP(29, 1): H2's tag and its length.
    bytes30 internal constant CHALLENGE_DST_PRIME = "FROST-secp256k1-SHA256-v1chal\x1d";

    /// @notice Why a signature was refused (`Valid` when it was not), in the order the rule checks.
    enum Verdict {
        Valid,
        /// @dev P.x is 0 or not below n, or the parity is not 0 or 1: not a key the contract can hold.
        InvalidGroupKey,
        /// @dev z is 0 or not below n: only the canonical z is accepted, never its z + n twin.
        NonCanonicalZ,
        /// @dev (R.x, R.y) is not a point of secp256k1.
        CommitmentOffCurve,
        /// @dev The challenge is 0 (probability 2^-256): ecrecover would fail anyway.
        ZeroChallenge,
        /// @dev z G - c P is not R: a wrong signature, message or key.
        WrongCommitment
    }

    /// @notice Check if (rx, ry, z) is a valid RFC 9591 signature of `message` under the group key (px, parity).
    /// @param px The group key's x-coordinate, 0 < px < n.
    /// @param parity The group key's y-parity: 0 even, 1 odd.
    /// @param message The signed message (the 32-byte report digest).
    /// @param rx The group commitment R's x-coordinate.
    /// @param ry The group commitment R's y-coordinate.
    /// @param z The signature's scalar.
    /// @return True iff the signature is valid.
    function verify(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        internal
        view
        returns (bool)
    {
        return tryVerify(px, parity, message, rx, ry, z) == Verdict.Valid;
    }

    /// @notice Return `Verdict.Valid` for a valid signature, else the first rule it breaks (see `verify`).
    function tryVerify(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        internal
        view
        returns (Verdict)
    {
        // 0. a key the contract can hold (it is checked at registration; checked again so a library call is total)
        if (px == 0 || px >= ORDER || parity > 1) return Verdict.InvalidGroupKey;
        // 1. canonical, non-zero z: no z + n twin, and a non-zero ecrecover hash below
        if (z == 0 || z >= ORDER) return Verdict.NonCanonicalZ;
        // 2. R is a curve point, so address(R) commits to R
        if (!isOnCurve(rx, ry)) return Verdict.CommitmentOffCurve;
        // 3. c = H2(ser(R) || ser(P) || m)
        uint256 c = challenge(px, parity, message, rx, ry);
        uint256 s;
        uint256 h;
        unchecked {
            // 4. s = -c P.x (mod n); c != 0 since n is prime and 0 < P.x < n (a mulmod result is below n)
            s = ORDER - mulmod(c, px, ORDER);
            // 5. h = -z P.x (mod n), non-zero because 0 < z, P.x < n
            h = ORDER - mulmod(z, px, ORDER);
        }
        if (s == ORDER) return Verdict.ZeroChallenge;
        // 6. Q = address(P.x^-1 (s P - h G)) = address(z G - c P)
        address recovered = recover(h, 27 + parity, px, s);
        // 7. ecrecover succeeded and Q = R
        if (recovered == address(0) || recovered != pointAddress(rx, ry)) return Verdict.WrongCommitment;
        return Verdict.Valid;
    }

    /// @notice Return ecrecover(h, v, r, s): the precompile (0x01) called with its four words written past the free
    ///         memory pointer (Solidity's `ecrecover` allocates them), address(0) when it recovers nothing.
    function recover(uint256 h, uint256 v, uint256 r, uint256 s) internal view returns (address q) {
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, h)
            mstore(add(m, 0x20), v)
            mstore(add(m, 0x40), r)
            mstore(add(m, 0x60), s)
            mstore(0x00, 0) // an input it cannot recover returns no data: q stays 0
            // the precompile fails only when out of gas
            if iszero(staticcall(gas(), 0x01, m, 0x80, 0x00, 0x20)) { revert(0, 0) }
            q := mload(0x00)
        }
    }

    /// @notice Return RFC 9591's challenge c = H2(ser(R) || ser(P) || message) for a 32-byte message.
    /// @dev H2 is hash_to_field (RFC 9380) with expand_message_xmd over SHA-256 and L = 48: three sha256
    ///      precompile calls on b0 = H(Z_pad || msg || I2OSP(48, 2) || 0x00 || DST'), b1 = H(b0 || 0x01 || DST'),
    ///      b2 = H((b0 xor b1) || 0x02 || DST'), and c = (b1 || b2[:16]) mod n. Points are 33-byte compressed SEC1.
    ///      The preimages are written past the free memory pointer (never allocated: nothing else runs meanwhile)
    ///      and the digests to the scratch space; abi.encodePacked would allocate three buffers and cost about
    ///      1,400 gas more. frost_evm.compute_evm_challenge is the same computation in Python.
    function challenge(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry)
        internal
        view
        returns (uint256 c)
    {
        bytes30 dstPrime = CHALLENGE_DST_PRIME;
        assembly ("memory-safe") {
            let m := mload(0x40)
            // b0's 195-byte preimage: Z_pad (64 zero bytes) | ser(R) | ser(P) | message | 0x0030 | 0x00 | DST'
            mstore(m, 0)
            mstore(add(m, 0x20), 0)
            mstore8(add(m, 0x40), add(2, and(ry, 1)))
            mstore(add(m, 0x41), rx)
            mstore8(add(m, 0x61), add(2, parity))
            mstore(add(m, 0x62), px)
            mstore(add(m, 0x82), message)
            mstore(add(m, 0xa2), shl(232, 0x003000)) // I2OSP(48, 2) || I2OSP(0, 1), then zeros
            mstore(add(m, 0xa5), dstPrime) // 30 bytes, left-aligned
            // the sha256 precompile (0x02) fails only when out of gas
            if iszero(staticcall(gas(), 0x02, m, 0xc3, 0x00, 0x20)) { revert(0, 0) }
            let b0 := mload(0x00)
            // b1's 63-byte preimage: b0 | 0x01 | DST'
            mstore(m, b0)
            mstore(add(m, 0x20), or(shl(248, 1), shr(8, dstPrime)))
            if iszero(staticcall(gas(), 0x02, m, 0x3f, 0x00, 0x20)) { revert(0, 0) }
            let b1 := mload(0x00)
            // b2's 63-byte preimage: (b0 xor b1) | 0x02 | DST'
            mstore(m, xor(b0, b1))
            mstore8(add(m, 0x20), 2)
            if iszero(staticcall(gas(), 0x02, m, 0x3f, 0x00, 0x20)) { revert(0, 0) }
            // the 48 uniform bytes b1 || b2[:16] as an integer, reduced mod n: b1 * 2^128 + b2 / 2^128
            c := addmod(mulmod(b1, shl(128, 1), ORDER), shr(128, mload(0x00)), ORDER)
        }
    }

    /// @notice Check if (x, y) are field elements with y^2 = x^3 + 7 (mod p).
    function isOnCurve(uint256 x, uint256 y) internal pure returns (bool) {
        if (x >= FIELD_PRIME || y >= FIELD_PRIME) return false;
        return mulmod(y, y, FIELD_PRIME) == addmod(mulmod(mulmod(x, x, FIELD_PRIME), x, FIELD_PRIME), 7, FIELD_PRIME);
    }

    /// @notice Return the Ethereum address of the point (x, y): the last 20 bytes of keccak256(x || y).
    function pointAddress(uint256 x, uint256 y) internal pure returns (address a) {
        assembly ("memory-safe") {
            mstore(0x00, x)
            mstore(0x20, y)
            a := and(keccak256(0x00, 0x40), 0xffffffffffffffffffffffffffffffffffffffff)
        }
    }
}
