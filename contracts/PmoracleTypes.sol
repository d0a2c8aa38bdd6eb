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

/// @notice One row of a round's risk-array tree with its Merkle proof (docs/protocol.md, "Commitments of a report"):
///         `key` is a ledger instrument id, a collateral key `2**255 | decimals << 160 | token`, or the cover key
///         `2**256 - 1`; `values` packs one big-endian int64 per scenario.
struct RiskRow {
    uint256 key;
    int64 base;
    int64 addon;
    bytes values;
    bytes32[] proof;
}

/// @notice The ledger reads of an aggregation fraud proof (MarginAccounts).
interface IFraudLedger {
    /// @notice Return an account's position in an instrument (SIZE units, signed) at the end of block `blockNumber`.
    function positionAt(address account, uint32 instrumentId, uint64 blockNumber) external view returns (int128);

    /// @notice Return the number of an account's open positions at the end of block `blockNumber`.
    function openPositionCountAt(address account, uint64 blockNumber) external view returns (uint256);

    /// @notice Return the enabled collateral tokens (never removed: a token enabled after B had no balance at B).
    function collateralTokens() external view returns (address[] memory);

    /// @notice Return an account's balance of a collateral token (token units) at the end of block `blockNumber`.
    function balanceAt(address account, address token, uint64 blockNumber) external view returns (uint256);
}

/// @notice What MarginOracle asks of SolverRegistry when a round is proven fraudulent.
interface IFraudSlasher {
    /// @notice Slash every signer of the fraudulent round (only the oracle); `reporter` proved it.
    function slashFraud(address[] calldata signers, bytes32 configDigest, uint64 blockNumber, address reporter)
        external;
}

/// @notice The reads of MarginOracle that other pmoracle contracts use.
interface IMarginOracle {
    /// @notice Install a new committee (only the registry); a group key of (0, 0) means no FROST certificates.
    function setCommittee(
        bytes32 digest,
        uint64 version,
        bytes32 paramsHash,
        address[] calldata members,
        uint8 quorum,
        uint256 groupKeyX,
        uint8 groupKeyParity
    ) external;

    /// @notice Return the EIP-712 digest a committee member signs for `report`.
    function reportDigest(Report calldata report) external view returns (bytes32);

    /// @notice Set the ledger whose positions fraud proofs read, once (only the registry).
    function setLedger(address ledger) external;

    /// @notice Refuse the signatures of member `index` of config `version` from now on (only the registry).
    function ejectMember(uint64 version, uint256 index) external;

    /// @notice Return the config digest, report digest and attestation time (seconds) of the round at `blockNumber`;
    ///         revert `RoundNotFound` unless the ring holds it, `RoundProvenFraudulent` once it was invalidated.
    function roundDigests(uint64 blockNumber)
        external
        view
        returns (bytes32 configDigest, bytes32 digest, uint64 attestedAt);

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

/// @notice One expiry's SVI raw smile as a report's market snapshot holds it (WAD, signed).
struct SmileQuote {
    uint64 expiry;
    int256 a;
    int256 b;
    int256 rho;
    int256 m;
    int256 sigma;
}

/// @notice A price at an expiry (USD with 8 decimals): a quoted forward or a settlement price.
struct PricePoint {
    uint64 expiry;
    uint256 price;
}

/// @notice One underlying of a report's market snapshot: index (USD 1e8), rate (WAD), smiles, quoted forwards,
///         feed time and settlement prices (docs/protocol.md, "Commitments of a report").
struct UnderlyingQuote {
    bytes32 symbol;
    uint256 index;
    int256 rate;
    SmileQuote[] smiles;
    PricePoint[] forwards;
    uint64 updatedAt;
    PricePoint[] settlements;
}

/// @notice One collateral asset of a report's market snapshot.
struct AssetQuote {
    bytes32 symbol;
    uint256 price;
    uint256 haircut;
    bytes32 underlying;
    uint64 updatedAt;
}

/// @notice The market snapshot at a round's block B: `keccak256(abi.encode(market, policyHash))` is the report's
///         `marketHash` (`pmoracle.consensus.commitments.MARKET_ABI_TYPE`).
struct MarketSnapshot {
    uint64 time;
    UnderlyingQuote[] underlyings;
    AssetQuote[] assets;
}

/// @notice An instrument as the ledger lists it (MarginAccounts.InstrumentView): kind 0 perpetual, 1 future,
///         2 call, 3 put; strike USD 1e8.
struct LedgerInstrument {
    uint32 id;
    bytes32 underlying;
    uint8 kind;
    uint64 expiry;
    uint128 strike;
    int256 cumulativeFunding;
}

/// @notice The ledger's instrument registry, read by a pricing challenge.
interface IInstrumentRegistry {
    /// @notice Return a listed instrument (reverts for an unknown id).
    function instrument(uint32 instrumentId) external view returns (LedgerInstrument memory);
}
