// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {FrostVerifier} from "../../contracts/FrostVerifier.sol";

/// @title FrostVerifierHarness
/// @notice Exposes the internal FrostVerifier library for tests: the Foundry fuzz tests (FrostVerifier.t.sol) and
///         the anvil differential tests (tests/integration/chain/test_frost_verifier.py), which compile it with the
///         pinned solc at test time (`collect_sources(units=...)`): it is a test tool, not a committed artifact.
contract FrostVerifierHarness {
    /// @notice FrostVerifier.verify.
    function verify(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        external
        view
        returns (bool)
    {
        return FrostVerifier.verify(px, parity, message, rx, ry, z);
    }

    /// @notice FrostVerifier.tryVerify, the verdict as its enum index.
    function tryVerify(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        external
        view
        returns (uint8)
    {
        return uint8(FrostVerifier.tryVerify(px, parity, message, rx, ry, z));
    }

    /// @notice FrostVerifier.verify and the gas it used (gasleft() before and after the library call).
    function measureVerify(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry, uint256 z)
        external
        view
        returns (bool valid, uint256 gasUsed)
    {
        uint256 before = gasleft();
        valid = FrostVerifier.verify(px, parity, message, rx, ry, z);
        gasUsed = before - gasleft();
    }

    /// @notice FrostVerifier.challenge.
    function challenge(uint256 px, uint8 parity, bytes32 message, uint256 rx, uint256 ry)
        external
        view
        returns (uint256)
    {
        return FrostVerifier.challenge(px, parity, message, rx, ry);
    }

    /// @notice FrostVerifier.isOnCurve.
    function isOnCurve(uint256 x, uint256 y) external pure returns (bool) {
        return FrostVerifier.isOnCurve(x, y);
    }

    /// @notice FrostVerifier.pointAddress.
    function pointAddress(uint256 x, uint256 y) external pure returns (address) {
        return FrostVerifier.pointAddress(x, y);
    }
}
