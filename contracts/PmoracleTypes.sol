// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @notice What a committee attests for one round: the margin book at block `blockNumber`.
/// @dev Field order and types are the EIP-712 type `REPORT_TYPE` of src/pmoracle/consensus/report.py.
struct Report {
    bytes32 configDigest;
    uint64 blockNumber;
    bytes32 blockHash;
    bytes32 paramsHash;
    bytes32 accountsRoot;
    uint32 accountCount;
    bytes32 riskArraysRoot;
    bytes32 marketHash;
}

/// @notice An account's attested margin values (USD with 18 decimals), as in the round's Merkle leaf.
struct AttestedMargin {
    uint256 initialMargin;
    uint256 maintenanceMargin;
    int256 equity;
}

/// @notice The reads of MarginOracle that other pmoracle contracts use.
interface IMarginOracle {
    /// @notice Install a new committee (only the registry).
    function setCommittee(bytes32 digest, uint64 version, bytes32 paramsHash, address[] calldata members, uint8 quorum)
        external;

    /// @notice Return the EIP-712 digest a committee member signs for `report`.
    function reportDigest(Report calldata report) external view returns (bytes32);

    /// @notice Refuse the signatures of member `index` of config `version` from now on (only the registry).
    function ejectMember(uint64 version, uint256 index) external;

    /// @notice Return the config digest and report digest attested for the round at `blockNumber`.
    function roundDigests(uint64 blockNumber) external view returns (bytes32 configDigest, bytes32 digest);

    /// @notice Return the block hash of `blockNumber` recorded when its round was attested (checked then against
    ///         blockhash()).
    function roundBlockHash(uint64 blockNumber) external view returns (bytes32);

    /// @notice Revert unless the leaf (account, values) is in the latest round, which is not too old.
    function verifyMargin(
        address account,
        uint256 initialMargin,
        uint256 maintenanceMargin,
        int256 equity,
        bytes32[] calldata proof
    ) external view returns (uint64 blockNumber);
}
