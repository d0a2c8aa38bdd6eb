// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AttestedMargin} from "./PmoracleTypes.sol";

/// @title IPortfolioMarginOracle
/// @notice The standard read interface of a portfolio-margin oracle for consuming protocols (lenders, vaults,
///         exchanges): which risk parameters the margins were computed under, the latest attested round, and an
///         account's proven initial margin (IM), maintenance margin (MM) and equity.
/// @dev Every round commits to a Merkle root over one leaf per account,
///      keccak256(bytes.concat(keccak256(abi.encode(account, initialMargin, maintenanceMargin, equity)))),
///      all amounts in USD with 18 decimals (equity signed). A consumer gets the leaf values and the proof off-chain
///      (from any solver node, or by recomputing the margin book) and passes them in; the oracle checks them against
///      the latest round, refusing a round older than `maxRoundAge()` blocks. A margin is only as current as its
///      round: consumers that need fresher data than `maxRoundAge()` check `latestRoot().blockNumber` themselves.
///
///      The risk parameters document is identified by `paramsHash()`, keccak256 of its canonical bytes (sorted
///      compact JSON of the validated parameters, what `pmoracle params canonical FILE.toml` prints). The full
///      document is published in the log of a `ParamsPublished` event by `publishParams`: read it with
///      eth_getLogs(address = oracle, topics = [ParamsPublished.selector, paramsHash], fromBlock = toBlock =
///      paramsPublishedAt(paramsHash)), and check keccak256(document) == paramsHash.
interface IPortfolioMarginOracle {
    /// @notice The parameters document whose keccak256 is `paramsHash` was published in full.
    /// @param paramsHash keccak256(document), the hash a committee config commits to.
    /// @param document The canonical bytes of the parameters document (UTF-8 JSON).
    event ParamsPublished(bytes32 indexed paramsHash, bytes document);

    /// @notice `publishParams` was given a document whose hash no installed config commits to.
    /// @param paramsHash keccak256 of the refused document.
    error UnknownParams(bytes32 paramsHash);
    /// @notice No round has been attested yet.
    error NoAttestedRound();
    /// @notice The round is older than `maxRoundAge` blocks.
    error RoundTooOld(uint64 blockNumber, uint256 age, uint64 maxRoundAge);
    /// @notice The leaf is not under the round's accounts root.
    error InvalidMarginProof(address account, uint64 blockNumber, bytes32 accountsRoot);
    /// @notice The round was proven fraudulent (`MarginOracle.proveFraud`): its values cannot be used, and the
    ///         latest-round reads refuse it until a newer round is attested.
    error RoundProvenFraudulent(uint64 blockNumber);

    /// @notice Return the risk parameters hash of the current committee config (zero before the first committee):
    ///         every round attested under that config was computed with this document.
    function paramsHash() external view returns (bytes32);

    /// @notice Return the block in which the document of `paramsHash_` was last published (0: never published;
    ///         anyone holding the document can publish it with `publishParams`).
    /// @param paramsHash_ A parameters hash (e.g. `paramsHash()`).
    function paramsPublishedAt(bytes32 paramsHash_) external view returns (uint64 blockNumber);

    /// @notice Publish a parameters document in full (callable by anyone): emits `ParamsPublished` and records
    ///         the block in `paramsPublishedAt`.
    /// @dev Accepted only when keccak256(document) is the paramsHash of an installed config (current or past).
    ///      Errors: `UnknownParams(keccak256(document))` otherwise.
    /// @param document The canonical bytes (`pmoracle params canonical FILE.toml`), not the TOML source.
    function publishParams(bytes calldata document) external;

    /// @notice Return the latest attested round.
    /// @dev Errors: `NoAttestedRound` before the first round, `RoundProvenFraudulent` when it was proven wrong.
    /// @return blockNumber The block whose state the round's margins describe.
    /// @return attestedAt The timestamp of the block in which the round was attested.
    /// @return accountsRoot The Merkle root over the round's account leaves.
    function latestRoot() external view returns (uint64 blockNumber, uint64 attestedAt, bytes32 accountsRoot);

    /// @notice Return the age limit, in blocks, of the round `marginOf` and `isLiquidatable` prove against.
    function maxRoundAge() external view returns (uint64);

    /// @notice Return an account's margin values once proven against the latest round.
    /// @dev Errors: `NoAttestedRound`, `RoundProvenFraudulent` when the latest round was proven wrong, `RoundTooOld`
    ///      when it is older than `maxRoundAge()` blocks, `InvalidMarginProof` when (account, leaf) is not under the
    ///      round's root.
    /// @param account The account.
    /// @param leaf The account's attested values (IM, MM, equity; USD, 18 decimals).
    /// @param proof Sibling hashes from the leaf to the root (sorted pairs, OpenZeppelin MerkleProof).
    /// @return initialMargin The attested initial margin.
    /// @return maintenanceMargin The attested maintenance margin.
    /// @return equity The attested equity (signed).
    /// @return blockNumber The block of the round the values were proven against.
    function marginOf(address account, AttestedMargin calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (uint256 initialMargin, uint256 maintenanceMargin, int256 equity, uint64 blockNumber);

    /// @notice Return true when the account's attested equity is below its attested maintenance margin in the
    ///         latest round (the oracle's definition of liquidatable).
    /// @dev Errors: as `marginOf`.
    /// @param account The account.
    /// @param leaf The account's attested values.
    /// @param proof Sibling hashes from the leaf to the root.
    function isLiquidatable(address account, AttestedMargin calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool);
}
