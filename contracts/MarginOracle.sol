// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {Clones} from "@openzeppelin/contracts/proxy/Clones.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {
    Report,
    AttestedMargin,
    RiskRow,
    MarketSnapshot,
    LedgerInstrument,
    IMarginOracle,
    IFraudLedger,
    IFraudSlasher,
    IInstrumentRegistry
} from "./PmoracleTypes.sol";
import {IPortfolioMarginOracle} from "./IPortfolioMarginOracle.sol";
import {FrostVerifier} from "./FrostVerifier.sol";
import {EntryPricer} from "./EntryPricer.sol";

/// @title MarginOracle
/// @notice Stores the margin book roots attested by a quorum of the solver committee and proves account leaves.
/// @dev Check order of `attest` (docs/contracts.md): config digest, block number, block hash, signer range,
///      ejected signers, quorum, signature count, then each signature in bitmap order. Rounds live in a ring keyed
///      by `blockNumber % historyBlocks`, so every round of the last `historyBlocks` blocks stays readable. A round
///      stores three slots: its accounts root (what `verifyMargin` reads), the report digest (the report's other
///      fields, its block hash, risk-array root and market hash among them, are passed back by a fraud proof and
///      checked against it) and one packed word with the signer bitmap (who is slashed if the round is proven
///      wrong). The block hash checked at attestation is blockhash() for 256 blocks, then the one recorded from the
///      attested report by `recordRoundBlockHash` (a slot written only when a late deviation needs it).
///      The committee (digest, version, ejected members, paramsHash, FROST group key x, members) is kept as code, not
///      storage: an OpenZeppelin `Clones` clone with immutable args abi.encodePacked(configDigest,
///      uint256(ejectedBitmap << 64 | version), paramsHash, groupKeyX, members) whose implementation is address(0) (it never runs anything). `attest` reads
///      it with one EXTCODECOPY instead of one cold SLOAD per signer (the SSTORE2 pattern); an ejection writes a
///      new clone.
///      FROST (docs/frost.md): a committee installed with a group key (x, parity) may attest with `attestFrost`, one
///      RFC 9591 Schnorr signature of the report digest checked by FrostVerifier at a cost independent of n; the
///      ECDSA `attest` stays the fallback. A FROST round stores the ECDSA quorum bitmap the transmitter names, but
///      a FROST signature does not authenticate who signed, so a fraud proof on a FROST round slashes nobody from
///      that bitmap: each signer is slashed with its own ECDSA signature of the report (`slashFrostSigner`).
///      Aggregation fraud proof (`proveFraud`, docs/dispute.md): anyone shows, from an account's holdings at B read
///      from the ledger's history (`positionAt`, `balanceAt`, `openPositionCountAt`) and the committed risk-array rows, that its attested MM is below the loss
///      of one scenario; the round is then invalidated (its signer bitmap cleared: every read of it reverts
///      `RoundProvenFraudulent`) and every signer is slashed through the registry.
///      Pricing challenge (`challengePricing`, docs/dispute.md): anyone shows that one committed option entry R[i, s]
///      is farther from its Black-76 recomputation (EntryPricer, from the committed market and scenario row) than
///      the engine's accuracy allows; the round is then invalidated and its signers slashed the same way.
///      Consuming protocols read it through IPortfolioMarginOracle (parameters hash and document, latest round,
///      proven margins); `publishParams` only writes the publication block of a known parameters hash.
contract MarginOracle is IMarginOracle, IPortfolioMarginOracle, EIP712 {
    /// @notice keccak256 of the EIP-712 Report type (REPORT_TYPE in src/pmoracle/consensus/report.py).
    bytes32 public constant REPORT_TYPEHASH = keccak256(
        "Report(bytes32 configDigest,uint64 blockNumber,bytes32 blockHash,bytes32 paramsHash,bytes32 accountsRoot,uint32 accountCount,bytes32 riskArraysRoot,bytes32 marketHash)"
    );

    /// @notice Largest committee: signer bitmaps index members 0..63.
    uint256 public constant MAX_COMMITTEE = 64;
    /// @notice Risk-array key of the row holding the scenarios' cover fractions.
    uint256 public constant COVER_KEY = type(uint256).max;
    /// @notice Bit set in the risk-array key of an underlying's scenario row (`SCENARIO_FLAG | column`).
    uint256 public constant SCENARIO_FLAG = 1 << 254;
    /// @notice The engine's P&L unit in WAD USD (1e-4 USD per unit): an entry R is worth R x QUANTUM.
    int256 public constant QUANTUM = 1e14;
    /// @notice Bit set in the risk-array key of a collateral token.
    uint256 public constant COLLATERAL_FLAG = 1 << 255;
    /// @notice Leaf amounts (USD, 18 decimals) per engine MONEY unit (USD, 8 decimals).
    uint256 public constant MONEY_TO_LEAF = 1e10;
    /// @dev SIZE units (1e-4) are 4 decimals.
    uint256 internal constant SIZE_DECIMALS = 4;

    /// @notice How a round was certified: a quorum of ECDSA signatures (`attest`) or one FROST signature.
    uint8 public constant SCHEME_ECDSA = 0;
    /// @notice See `SCHEME_ECDSA`.
    uint8 public constant SCHEME_FROST = 1;

    /// @notice A stored round (three slots; `attestedAt` is a uint32 of seconds, enough until 2106; config versions
    ///         stay below 2**56, one per `setCommittee`). The block hash is not stored: the report digest commits to
    ///         it, `blockhash()` returns it for 256 blocks, and `recordRoundBlockHash` keeps it from the attested
    ///         report when it is needed later (`roundBlockHash`).
    struct Round {
        bytes32 accountsRoot;
        bytes32 reportDigest;
        uint64 blockNumber;
        uint32 attestedAt;
        uint32 accountCount;
        uint56 configVersion;
        uint8 scheme;
        uint64 signerBitmap;
    }

    /// @notice The fields of a report that `attestFrost` takes: its config digest and parameters hash are the current
    ///         committee's and its block hash is `blockhash(blockNumber)` (the contract checked them against those
    ///         values anyway; not sending them saves 1,536 gas of calldata). The signed message is the EIP-712 digest
    ///         of the whole `Report`, rebuilt from these fields and those three values.
    struct FrostReport {
        uint64 blockNumber;
        bytes32 accountsRoot;
        uint32 accountCount;
        bytes32 riskArraysRoot;
        bytes32 marketHash;
    }

    /// @notice A round as returned by the views (`blockHash`: the hash recorded by `recordRoundBlockHash`, else
    ///         `blockhash()`, zero past 256 blocks when none was recorded).
    struct RoundView {
        uint64 blockNumber;
        bytes32 accountsRoot;
        bytes32 reportDigest;
        bytes32 configDigest;
        uint64 configVersion;
        uint32 accountCount;
        uint64 attestedAt;
        bytes32 blockHash;
        uint256 signerBitmap;
    }

    /// @dev What `_sumRows` accumulates over a fraud proof's rows (one memory word on the stack).
    struct Sum {
        int256 pnl;
        int256 addons;
        bool malformed;
        uint256 positions;
        uint256 previousKey;
        uint64 blockNumber;
    }

    /// @dev Everything `attest` and `verifyMargin` read from storage, packed in one slot (the group key's x is in
    ///      the committee blob, its parity here).
    struct State {
        address committeeData;
        uint64 lastBlockNumber;
        uint8 quorum;
        uint8 committeeSize;
        uint8 groupKeyParity;
    }

    /// @notice The stateless pricer of option entries (deployed by the constructor).
    EntryPricer public immutable pricer;
    /// @notice The SolverRegistry, the only account that can install committees.
    address public immutable registry;
    /// @notice Rounds of the last `historyBlocks` blocks are always kept.
    uint64 public immutable historyBlocks;
    /// @notice A round older than this many blocks cannot be used by `verifyMargin`.
    uint64 public immutable maxRoundAge;

    State internal _state;
    /// @notice The config digest of each installed config version.
    mapping(uint64 version => bytes32 digest) public configDigestOf;
    /// @notice The risk parameters hash of each installed config version (what its reports must carry).
    mapping(uint64 version => bytes32 paramsHash) public paramsHashOf;
    mapping(uint256 slot => Round) internal _rounds;
    /// @notice The block in which the document of a parameters hash was last published (0: never).
    mapping(bytes32 paramsHash => uint64 blockNumber) public paramsPublishedAt;
    /// @dev The parameters hashes some installed config committed to (what `publishParams` accepts).
    mapping(bytes32 paramsHash => bool) internal _paramsKnown;
    /// @dev The committee clone of each installed config version as installed (members in bitmap order).
    mapping(uint64 version => address data) internal _committeeAt;
    /// @notice Whether a member was slashed for a FROST round proven fraudulent, by keccak256(reportDigest, member).
    mapping(bytes32 key => bool) public frostSignerSlashed;
    /// @notice The ledger whose positions fraud proofs read (set once by the registry's owner).
    IFraudLedger public ledger;
    /// @dev The block hash of an attested round, recorded from its report by `recordRoundBlockHash`.
    mapping(uint64 blockNumber => bytes32 blockHash) internal _recordedBlockHash;

    /// @notice A committee config was installed by the registry.
    event CommitteeInstalled(uint64 indexed version, bytes32 indexed configDigest, address[] members, uint8 quorum);
    /// @notice The installed committee's FROST group key (emitted only when it has one).
    event GroupKeyInstalled(uint64 indexed version, uint256 groupKeyX, uint8 groupKeyParity);
    /// @notice The registry ejected member `index` of config `version` (slashed below the minimum stake): its
    ///         signatures are refused until the owner installs a committee without it.
    event SignerEjected(uint64 indexed version, uint256 index, address member);
    /// @notice A round was attested.
    event RoundAttested(
        uint64 indexed blockNumber,
        bytes32 indexed configDigest,
        bytes32 reportDigest,
        bytes32 accountsRoot,
        uint32 accountCount,
        uint256 signerBitmap,
        address transmitter,
        bytes32 riskArraysRoot,
        bytes32 marketHash,
        uint8 scheme
    );

    /// @notice A round was proven fraudulent: `verifyMargin` and every read of it revert from now on, and its
    ///         signers were slashed.
    event RoundInvalidated(
        uint64 indexed blockNumber, bytes32 reportDigest, uint256 signerBitmap, address account, address prover
    );

    /// @notice A risk-array entry was proven wrong by a pricing challenge (WAD USD per unit): the round is
    ///         invalidated (`RoundInvalidated` follows, with account 0).
    event PricingChallenged(
        uint64 indexed blockNumber, uint256 key, uint256 scenario, int256 attested, int256 recomputed, uint256 tolerance
    );

    /// @notice The caller is not the registry.
    error NotRegistry(address caller);
    /// @notice A committee of this size cannot be installed.
    error InvalidCommitteeSize(uint256 size);
    /// @notice No committee has been installed yet.
    error NoCommittee();
    /// @notice The report's config digest is not the current one.
    error ConfigDigestMismatch(bytes32 given, bytes32 current);
    /// @notice The report's paramsHash is not the one the current config commits to.
    error ParamsHashMismatch(bytes32 given, bytes32 current);
    /// @notice The report's block is not newer than the last attested block.
    error StaleBlockNumber(uint64 given, uint64 lastAttested);
    /// @notice blockhash(blockNumber) is unknown (zero: future, current or older than 256 blocks) or differs.
    error BlockHashMismatch(uint64 blockNumber, bytes32 given, bytes32 actual);
    /// @notice blockhash(blockNumber) is zero (a future or current block, or one older than 256 blocks).
    error BlockHashUnknown(uint64 blockNumber);
    /// @notice The round is older than 256 blocks and its block hash was not recorded (`recordRoundBlockHash`).
    error RoundBlockHashNotRecorded(uint64 blockNumber);
    /// @notice The bitmap names a member index at or above the committee size.
    error SignerOutOfRange(uint256 signerBitmap, uint8 committeeSize);
    /// @notice The bitmap names a member the registry ejected from the current config.
    error EjectedSigner(uint256 memberIndex, address member);
    /// @notice The ejection names another config version than the current one, or a member index outside it.
    error InvalidEjection(uint64 version, uint256 index);
    /// @notice Fewer signers than the quorum.
    error BelowQuorum(uint256 signers, uint8 quorum);
    /// @notice The number of signatures differs from the number of bits set in the bitmap.
    error SignatureCountMismatch(uint256 signatures, uint256 signers);
    /// @notice A signature is malformed or malleable (OpenZeppelin ECDSA.RecoverError, with its argument).
    error InvalidSignature(uint256 memberIndex, uint8 recoverError, bytes32 errorArg);
    /// @notice A signature recovers to another address than the member its bit names.
    error SignerMismatch(uint256 memberIndex, address expected, address recovered);
    /// @notice The group key is not (0, 0) (no FROST) nor 0 < x < n with parity 0 or 1.
    error InvalidGroupKey(uint256 groupKeyX, uint8 groupKeyParity);
    /// @notice `attestFrost` for a committee installed without a FROST group key (use `attest`).
    error NoGroupKey(uint64 version);
    /// @notice The FROST signature is refused; `verdict` is FrostVerifier.Verdict's index (2 non-canonical z,
    ///         3 R off the curve, 4 zero challenge, 5 wrong signature, message or key).
    error InvalidFrostSignature(uint8 verdict);
    /// @notice `slashFrostSigner` on a round that was certified with ECDSA or was not proven fraudulent.
    error NotFraudulentFrostRound(uint64 blockNumber);
    /// @notice This member was already slashed for this FROST round.
    error FrostSignerAlreadySlashed(uint64 blockNumber, address member);
    /// @notice No round is stored for this block (never attested, or overwritten in the ring).
    error RoundNotFound(uint64 blockNumber);
    /// @notice A constructor or setter argument is out of range.
    error InvalidParameter(string name, uint256 value);
    /// @notice The ledger was already set.
    error LedgerAlreadySet(address ledger);
    /// @notice No ledger was set: fraud proofs cannot read positions.
    error NoLedger();
    /// @notice The report passed back is not the one attested for its block.
    error ReportMismatch(uint64 blockNumber, bytes32 given, bytes32 attested);
    /// @notice The cover row's key is not `COVER_KEY`, or the scenario is not one of its columns.
    error InvalidCoverRow(uint256 key, uint256 scenario);
    /// @notice A row is not under the report's risk-array root with its proof.
    error InvalidRowProof(uint256 key, bytes32 riskArraysRoot);
    /// @notice Rows must come by strictly increasing key, each a held instrument or a non-zero collateral balance.
    error RowNotHeld(address account, uint256 key);
    /// @notice The rows do not cover every position and collateral balance of the account.
    error IncompleteHoldings(address account, uint256 rows, uint256 held);
    /// @notice The market snapshot and policy hash passed hash to another value than the report's marketHash.
    error MarketMismatch(uint64 blockNumber, bytes32 given, bytes32 committed);
    /// @notice The row's key is not a ledger instrument id (a collateral, cover or scenario key).
    error NotAnInstrument(uint256 key);
    /// @notice The option's underlying is not in the committed market snapshot.
    error UnknownUnderlying(bytes32 underlying);
    /// @notice The scenario row is not the one of the option's underlying (its key must be `expected`).
    error InvalidScenarioRow(uint256 key, uint256 expected);
    /// @notice The scenario is not a column of the instrument's row.
    error ScenarioOutOfRange(uint256 scenario, uint256 scenarios);
    /// @notice The entry's P&L is within the tolerance of the recomputed one (WAD USD per unit): no fraud.
    error EntryWithinTolerance(uint256 key, uint256 scenario, int256 attested, int256 recomputed, uint256 tolerance);
    /// @notice The attested maintenance margin covers the scenario's counted loss and add-ons: no fraud.
    error NotFraudulent(address account, uint256 scenario, uint256 attestedMaintenanceMargin, uint256 required);

    /// @param registry_ The SolverRegistry (installs committees).
    /// @param historyBlocks_ Rounds of the last `historyBlocks_` blocks stay readable (ring size).
    /// @param maxRoundAge_ A round older than this many blocks cannot be used by `verifyMargin` (<= history).
    constructor(address registry_, uint64 historyBlocks_, uint64 maxRoundAge_) EIP712("pmoracle", "1") {
        if (historyBlocks_ == 0) revert InvalidParameter("historyBlocks", historyBlocks_);
        if (maxRoundAge_ > historyBlocks_) revert InvalidParameter("maxRoundAge", maxRoundAge_);
        registry = registry_;
        pricer = new EntryPricer();
        historyBlocks = historyBlocks_;
        maxRoundAge = maxRoundAge_;
    }

    /// @notice Install a committee config; called by SolverRegistry.setCommittee.
    /// @param digest The config digest (SolverRegistry.configDigest()).
    /// @param version The config version.
    /// @param paramsHash_ The risk parameters hash the config commits to (every report must carry it).
    /// @param members_ The report-signing addresses in committee (bitmap) order.
    /// @param quorum_ The minimum number of distinct signers.
    /// @param groupKeyX The committee's FROST group key x-coordinate (0 with parity 0: no FROST, `attest` only).
    /// @param groupKeyParity The group key's y-parity (0 even, 1 odd).
    function setCommittee(
        bytes32 digest,
        uint64 version,
        bytes32 paramsHash_,
        address[] calldata members_,
        uint8 quorum_,
        uint256 groupKeyX,
        uint8 groupKeyParity
    ) external {
        if (msg.sender != registry) revert NotRegistry(msg.sender);
        if (members_.length == 0 || members_.length > MAX_COMMITTEE) revert InvalidCommitteeSize(members_.length);
        if (version > type(uint56).max) revert InvalidParameter("version", version);
        bool keyless = groupKeyX == 0 && groupKeyParity == 0;
        if (!keyless && (groupKeyX == 0 || groupKeyX >= FrostVerifier.ORDER || groupKeyParity > 1)) {
            revert InvalidGroupKey(groupKeyX, groupKeyParity);
        }
        address data = Clones.cloneWithImmutableArgs(
            address(0), abi.encodePacked(digest, uint256(version), paramsHash_, groupKeyX, members_)
        );
        configDigestOf[version] = digest;
        paramsHashOf[version] = paramsHash_;
        _committeeAt[version] = data;
        _paramsKnown[paramsHash_] = true;
        State storage s = _state;
        s.committeeData = data;
        s.quorum = quorum_;
        s.committeeSize = uint8(members_.length);
        s.groupKeyParity = groupKeyParity;
        emit CommitteeInstalled(version, digest, members_, quorum_);
        if (!keyless) emit GroupKeyInstalled(version, groupKeyX, groupKeyParity);
    }

    /// @notice Refuse the signatures of member `index` of the current config; called by SolverRegistry when a
    ///         member is slashed below the minimum stake. The config digest does not change, so the other members
    ///         keep attesting until the owner installs a new committee.
    /// @param version The current config version.
    /// @param index The member's index in the committee (bitmap order).
    function ejectMember(uint64 version, uint256 index) external {
        if (msg.sender != registry) revert NotRegistry(msg.sender);
        State storage s = _state;
        if (s.committeeData == address(0)) revert NoCommittee();
        bytes memory committee = Clones.fetchCloneArgs(s.committeeData);
        (, uint64 current) = _committeeHeader(committee);
        if (version != current || index >= s.committeeSize) revert InvalidEjection(version, index);
        uint256 ejected = _ejectedOf(committee) | (1 << index);
        assembly ("memory-safe") {
            mstore(add(committee, 0x40), or(shl(64, ejected), version))
        }
        s.committeeData = Clones.cloneWithImmutableArgs(address(0), committee);
        emit SignerEjected(version, index, _memberOf(committee, index));
    }

    /// @notice Attest a round: store its accounts root once a quorum of the committee signed the report.
    /// @param report The report every signer signed (EIP-712, this contract's domain).
    /// @param signerBitmap Bit i set when committee member i signed; signatures follow in increasing i.
    /// @param signatures 65-byte signatures (r, s, v), one per set bit, in bitmap order.
    function attest(Report calldata report, uint256 signerBitmap, bytes[] calldata signatures) external {
        State memory s = _state;
        if (s.committeeData == address(0)) revert NoCommittee();
        bytes memory committee = Clones.fetchCloneArgs(s.committeeData);
        (bytes32 current, uint64 version) = _committeeHeader(committee);
        // 1. the report belongs to the current committee config
        if (report.configDigest != current) revert ConfigDigestMismatch(report.configDigest, current);
        //    … and carries the paramsHash that config commits to (so the stored round determines the digest)
        if (report.paramsHash != _paramsHashOf(committee)) {
            revert ParamsHashMismatch(report.paramsHash, _paramsHashOf(committee));
        }
        // 2. only newer rounds (this also refuses a replayed report)
        if (report.blockNumber <= s.lastBlockNumber) revert StaleBlockNumber(report.blockNumber, s.lastBlockNumber);
        // 3. the report is about this chain's block (blockhash is zero outside the last 256 blocks)
        bytes32 actual = blockhash(report.blockNumber);
        if (actual == bytes32(0) || actual != report.blockHash) {
            revert BlockHashMismatch(report.blockNumber, report.blockHash, actual);
        }
        // 4. signers are distinct by construction (one bit per member) and within the committee
        if (signerBitmap >> s.committeeSize != 0) revert SignerOutOfRange(signerBitmap, s.committeeSize);
        // 5. no signer was ejected from this config (slashed below the minimum stake)
        _checkNotEjected(signerBitmap, committee);
        uint256 count = _countBits(signerBitmap);
        // 6. upon |signers| >= quorum
        if (count < s.quorum) revert BelowQuorum(count, s.quorum);
        if (signatures.length != count) revert SignatureCountMismatch(signatures.length, count);
        // 7. each signature is member i's over the EIP-712 digest (ECDSA rejects high-s and bad v)
        bytes32 digest = reportDigest(report);
        _checkSignatures(digest, signerBitmap, signatures, committee);
        _storeReport(report, digest, version, signerBitmap);
    }

    /// @dev `attest`'s store and event, in their own frame (`attest`'s stack is full).
    function _storeReport(Report calldata report, bytes32 digest, uint64 version, uint256 signerBitmap) internal {
        _storeRound(report.blockNumber, report.accountsRoot, report.accountCount, digest, version, SCHEME_ECDSA, signerBitmap);
        _emitAttested(report, digest, signerBitmap, SCHEME_ECDSA);
    }

    /// @notice Attest a round with one FROST signature: the committee's group key signed the EIP-712 digest of the
    ///         report (RFC 9591, FROST(secp256k1, SHA-256)); the round is stored exactly as `attest` stores it.
    /// @dev Check order: committee and group key, block number, block hash known, signer range, ejected signers,
    ///      quorum, then the signature. The report's config digest and parameters hash are taken from the committee
    ///      blob's header and its block hash from blockhash(), so a report signed under another config, parameters
    ///      or block is refused as a wrong signature (`InvalidFrostSignature(5)`). Reads only the blob's four header
    ///      words, so the cost does not depend on n. `signerBitmap` names the quorum whose matching ECDSA reports the
    ///      transmitter holds: it is stored (a non-zero bitmap marks a standing round) but is not authenticated by
    ///      the signature, so a fraud proof never slashes it (see `slashFrostSigner`).
    /// @param report The report's own fields (see `FrostReport`).
    /// @param signerBitmap The quorum whose ECDSA reports agreed (bit i: member i), at least `quorum` bits.
    /// @param rx The group commitment R's x-coordinate.
    /// @param ry The group commitment R's y-coordinate.
    /// @param z The signature's scalar (0 < z < n).
    function attestFrost(FrostReport calldata report, uint256 signerBitmap, uint256 rx, uint256 ry, uint256 z)
        external
    {
        uint64 blockNumber = report.blockNumber; // read through the ABI decoder: checked below 2**64
        (bytes memory header, uint8 parity) = _checkFrostRound(blockNumber, signerBitmap);
        bytes32 digest = _frostReportDigest(report, blockNumber, header);
        FrostVerifier.Verdict verdict = FrostVerifier.tryVerify(_groupKeyXOf(header), parity, digest, rx, ry, z);
        if (verdict != FrostVerifier.Verdict.Valid) revert InvalidFrostSignature(uint8(verdict));
        _storeFrostRound(report, blockNumber, header, digest, signerBitmap);
    }

    /// @dev `attestFrost`'s checks before the signature, on the committee blob's header only (one EXTCODECOPY of
    ///      four words, whatever n). Return the header and the group key's parity.
    function _checkFrostRound(uint64 blockNumber, uint256 signerBitmap)
        internal
        view
        returns (bytes memory header, uint8 parity)
    {
        // `State` in one SLOAD, unpacked by hand (`State memory` would copy its five fields to memory): committeeData
        // bits 0-159, lastBlockNumber 160-223, quorum 224-231, committeeSize 232-239, groupKeyParity 240-247
        uint256 word;
        assembly ("memory-safe") {
            word := sload(_state.slot)
        }
        address data = address(uint160(word));
        if (data == address(0)) revert NoCommittee();
        header = _fetchCommitteeHeader(data);
        if (_groupKeyXOf(header) == 0) {
            (, uint64 version) = _committeeHeader(header);
            revert NoGroupKey(version);
        }
        uint64 last = uint64(word >> 160);
        if (blockNumber <= last) revert StaleBlockNumber(blockNumber, last);
        if (blockhash(blockNumber) == bytes32(0)) revert BlockHashUnknown(blockNumber);
        uint8 size = uint8(word >> 232);
        if (signerBitmap >> size != 0) revert SignerOutOfRange(signerBitmap, size);
        // the member list is read only to name an ejected signer in the revert
        if (signerBitmap & _ejectedOf(header) != 0) _checkNotEjected(signerBitmap, Clones.fetchCloneArgs(data));
        uint256 count = _countBits(signerBitmap);
        uint8 quorum_ = uint8(word >> 224);
        if (count < quorum_) revert BelowQuorum(count, quorum_);
        parity = uint8(word >> 240);
    }

    /// @dev The EIP-712 digest of the `Report` made of `report`'s fields, the header's config digest and parameters
    ///      hash and blockhash(report.blockNumber): what `reportDigest` returns for that report. hashStruct's nine
    ///      words are written past the free memory pointer (never allocated; abi.encode would cost ~1,300 gas more).
    function _frostReportDigest(FrostReport calldata report, uint64 blockNumber, bytes memory header)
        internal
        view
        returns (bytes32)
    {
        bytes32 typehash = REPORT_TYPEHASH;
        uint32 accountCount = report.accountCount; // likewise below 2**32
        bytes32 structHash;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, typehash)
            mstore(add(m, 0x20), mload(add(header, 0x20))) // configDigest
            mstore(add(m, 0x40), blockNumber)
            mstore(add(m, 0x60), blockhash(blockNumber))
            mstore(add(m, 0x80), mload(add(header, 0x60))) // paramsHash
            mstore(add(m, 0xa0), calldataload(add(report, 0x20))) // accountsRoot
            mstore(add(m, 0xc0), accountCount)
            calldatacopy(add(m, 0xe0), add(report, 0x60), 0x40) // riskArraysRoot, marketHash
            structHash := keccak256(m, 0x120)
        }
        return _hashTypedDataV4(structHash);
    }

    /// @dev Store a certified round in the ring and advance `lastBlockNumber` (the caller emits `RoundAttested`).
    ///      The three slots are written whole: `Round`'s third slot packs blockNumber (bits 0-63), attestedAt (64-95),
    ///      accountCount (96-127), configVersion (128-183), scheme (184-191) and signerBitmap (192-255), the order
    ///      Solidity lays the struct out in (the views read it back through `Round`).
    function _storeRound(
        uint64 blockNumber,
        bytes32 accountsRoot,
        uint32 accountCount,
        bytes32 digest,
        uint64 version,
        uint8 scheme,
        uint256 signerBitmap
    ) internal {
        Round storage r = _rounds[blockNumber % historyBlocks];
        // version < 2**56 (checked by `setCommittee`), signerBitmap < 2**64 (checked against the committee size)
        uint256 packed = uint256(blockNumber) | (uint256(uint32(block.timestamp)) << 64) | (uint256(accountCount) << 96)
            | (uint256(version) << 128) | (uint256(scheme) << 184) | (signerBitmap << 192);
        assembly ("memory-safe") {
            sstore(r.slot, accountsRoot)
            sstore(add(r.slot, 1), digest)
            sstore(add(r.slot, 2), packed)
        }
        _state.lastBlockNumber = blockNumber;
    }

    /// @notice Record the block hash of an attested round from its report, so `roundBlockHash` (the canonical hash a
    ///         deviation report must carry) still knows it once blockhash() has forgotten the block (256 blocks).
    ///         Anyone may call it, any time while the ring holds the round; the report must be the attested one.
    /// @param report The round's report (its digest must be the stored one).
    function recordRoundBlockHash(Report calldata report) external {
        uint64 blockNumber = report.blockNumber;
        Round storage r = _roundOf(blockNumber);
        bytes32 digest = reportDigest(report);
        if (digest != r.reportDigest) revert ReportMismatch(blockNumber, digest, r.reportDigest);
        _recordedBlockHash[blockNumber] = report.blockHash;
    }

    /// @notice Set the ledger fraud proofs read positions from; once, called by SolverRegistry.setLedger.
    /// @param ledger_ The MarginAccounts ledger.
    function setLedger(address ledger_) external {
        if (msg.sender != registry) revert NotRegistry(msg.sender);
        if (address(ledger) != address(0)) revert LedgerAlreadySet(address(ledger));
        if (ledger_ == address(0)) revert InvalidParameter("ledger", 0);
        ledger = IFraudLedger(ledger_);
    }

    /// @notice Prove that the round of `report.blockNumber` understates an account's maintenance margin: its
    ///         positions and collateral at B (the ledger's history at the end of block B) lose, in scenario `scenario` of the
    ///         committed risk arrays, more than the attested MM covers. On success the round is invalidated and
    ///         every signer slashed (the prover is the reporter: rewarded if it operates another staked node).
    /// @dev Check order: round found and not invalidated, report digest, account leaf, ledger set, cover row, rows (strictly increasing keys, each held, each proven), completeness,
    ///      the margin. A committed row whose length is not the cover row's is itself proof of fraud (an honest
    ///      tree never has one). The bound: MM >= max(0, ceil(-sum size x R[s] x c_s)) + sum_short |size| x addon.
    /// @param report The attested report (its digest must be the stored one).
    /// @param account The account whose leaf is wrong.
    /// @param leaf Its attested values.
    /// @param accountProof The leaf's proof under `report.accountsRoot`.
    /// @param cover The cover row (key `COVER_KEY`) with its proof.
    /// @param rows One row per open position and non-zero collateral balance, by strictly increasing key.
    /// @param scenario The scenario (column) whose loss the attested MM does not cover.
    function proveFraud(
        Report calldata report,
        address account,
        AttestedMargin calldata leaf,
        bytes32[] calldata accountProof,
        RiskRow calldata cover,
        RiskRow[] calldata rows,
        uint256 scenario
    ) external {
        (Round storage r, bytes32 digest) = _checkAttestedLeaf(report, account, leaf, accountProof);
        // 5. the scenario's counted loss and add-ons exceed the attested MM (or a committed row is malformed)
        (bool malformed, uint256 required) =
            _requiredMargin(report.riskArraysRoot, report.blockNumber, account, cover, rows, scenario);
        if (!malformed && leaf.maintenanceMargin >= required) {
            revert NotFraudulent(account, scenario, leaf.maintenanceMargin, required);
        }
        _invalidate(r, digest, account);
    }

    /// @notice Slash a member who signed (ECDSA, its individual report) the report of a FROST-attested round that was
    ///         proven fraudulent: a FROST certificate does not say who signed, the member's own signature does.
    /// @param report The round's report (its digest must be the stored one).
    /// @param memberIndex The signer's index in the round's committee.
    /// @param signature The member's 65-byte EIP-712 signature of `report`.
    function slashFrostSigner(Report calldata report, uint256 memberIndex, bytes calldata signature) external {
        uint64 blockNumber = report.blockNumber;
        Round storage r = _roundOf(blockNumber);
        if (r.scheme != SCHEME_FROST || r.signerBitmap != 0) revert NotFraudulentFrostRound(blockNumber);
        bytes32 digest = reportDigest(report);
        if (digest != r.reportDigest) revert ReportMismatch(blockNumber, digest, r.reportDigest);
        uint64 version = r.configVersion;
        bytes memory committee = Clones.fetchCloneArgs(_committeeAt[version]);
        uint256 size = (committee.length - 0x80) >> 5;
        if (memberIndex >= size) revert SignerOutOfRange(1 << memberIndex, uint8(size));
        (address recovered, ECDSA.RecoverError err, bytes32 errArg) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(memberIndex, uint8(err), errArg);
        address member = _memberOf(committee, memberIndex);
        if (recovered != member) revert SignerMismatch(memberIndex, member, recovered);
        bytes32 key = keccak256(abi.encode(digest, member));
        if (frostSignerSlashed[key]) revert FrostSignerAlreadySlashed(blockNumber, member);
        frostSignerSlashed[key] = true;
        address[] memory signers = new address[](1);
        signers[0] = member;
        IFraudSlasher(registry).slashFraud(signers, configDigestOf[version], blockNumber, msg.sender);
    }

    /// @notice Prove that one committed instrument entry R[i, s] of the round of `report.blockNumber` is wrong: its
    ///         P&L R x QUANTUM differs from the recomputation V_s - V_0 (EntryPricer: Black-76 for an option) by more than
    ///         `Black76.pnlTolerance`. The recomputation reads the option's terms from the ledger, the market snapshot
    ///         the report's marketHash commits to, and the underlying's committed scenario row. On success the round
    ///         is invalidated and every signer slashed, exactly as by `proveFraud` (the prover is the reporter).
    /// @dev Check order: round found and not invalidated, report digest, market hash, instrument row proof, scenario
    ///      row proof, ledger set, the key is a ledger instrument's, its underlying is in the market, the scenario row
    ///      is that underlying's, the scenario is a column, then the gap. A live option is recomputed with Black-76;
    ///      a perpetual, a future or an expired option from its level (index or forward) times the multiplier. A committed row that cannot be the engine's
    ///      (instrument row width not a multiple of 8, scenario row of another width than 2 S + 6 words, a NaN or
    ///      infinite float, a negative power) is itself proof of fraud.
    /// @param report The attested report (its digest must be the stored one).
    /// @param market The market snapshot at B; with `policyHash`, it must hash to `report.marketHash`.
    /// @param policyHash The adaptive policy's states hash at B (zero without a policy).
    /// @param row The option's committed row (key: its ledger instrument id) with its proof.
    /// @param scenarioRow The committed scenario row of the option's underlying with its proof.
    /// @param scenario The column s of the challenged entry.
    function challengePricing(
        Report calldata report,
        MarketSnapshot calldata market,
        bytes32 policyHash,
        RiskRow calldata row,
        RiskRow calldata scenarioRow,
        uint256 scenario
    ) external {
        (Round storage r, bytes32 digest) = _checkAttestedReport(report);
        // 3. the market is the committed one
        bytes32 marketHash = keccak256(abi.encode(market, policyHash));
        if (marketHash != report.marketHash) revert MarketMismatch(report.blockNumber, marketHash, report.marketHash);
        // 4. both rows are committed
        _checkRow(report.riskArraysRoot, row);
        _checkRow(report.riskArraysRoot, scenarioRow);
        // 5. the entry is farther from the recomputation than the tolerance (or a committed row is malformed)
        (bool malformed, int256 recomputed, uint256 tolerance) = _priceEntry(market, row, scenarioRow, scenario);
        int256 attested = malformed ? int256(0) : _valueAt(row.values, scenario) * QUANTUM;
        uint256 gap = attested > recomputed ? uint256(attested - recomputed) : uint256(recomputed - attested);
        if (!malformed && gap <= tolerance) {
            revert EntryWithinTolerance(row.key, scenario, attested, recomputed, tolerance);
        }
        emit PricingChallenged(report.blockNumber, row.key, scenario, attested, recomputed, tolerance);
        _invalidate(r, digest, address(0));
    }

    /// @dev Checks 5-8 of `challengePricing`: recompute the entry (or report the rows malformed): a live option with
    ///      Black-76 (`EntryPricer.optionPnl`), anything else from its level (`EntryPricer.levelPnl`).
    function _priceEntry(
        MarketSnapshot calldata market,
        RiskRow calldata row,
        RiskRow calldata scenarioRow,
        uint256 scenario
    ) internal view returns (bool, int256, uint256) {
        (bool malformed, uint256 column, EntryPricer.LevelEntry memory entry) =
            _instrumentEntry(market, row, scenarioRow.key, scenario);
        if (malformed) return (true, 0, 0);
        if (entry.kind < 2 || entry.expiry <= entry.time) {
            return pricer.levelPnl(market.underlyings[column], entry, scenarioRow.values);
        }
        EntryPricer.OptionEntry memory option =
            EntryPricer.OptionEntry(entry.kind == 2, entry.strike, entry.expiry, entry.time, scenario, entry.scenarios);
        return pricer.optionPnl(market.underlyings[column], option, scenarioRow.base, scenarioRow.addon, scenarioRow.values);
    }

    /// @dev The instrument of `row` (ledger set, an instrument key, its underlying's scenario row, a column), or
    ///      `malformed` for a row width that is not a multiple of 8 bytes.
    function _instrumentEntry(MarketSnapshot calldata market, RiskRow calldata row, uint256 scenarioKey, uint256 scenario)
        internal
        view
        returns (bool malformed, uint256 column, EntryPricer.LevelEntry memory entry)
    {
        if (address(ledger) == address(0)) revert NoLedger();
        uint256 key = row.key;
        if (key == 0 || key > type(uint32).max) revert NotAnInstrument(key);
        LedgerInstrument memory inst = IInstrumentRegistry(address(ledger)).instrument(uint32(key));
        column = _columnOf(market, inst.underlying);
        if (scenarioKey != SCENARIO_FLAG | column) revert InvalidScenarioRow(scenarioKey, SCENARIO_FLAG | column);
        if (row.values.length % 8 != 0) return (true, column, entry);
        entry.scenarios = row.values.length / 8;
        if (scenario >= entry.scenarios) revert ScenarioOutOfRange(scenario, entry.scenarios);
        entry.kind = inst.kind;
        entry.strike = inst.strike;
        entry.expiry = inst.expiry;
        entry.time = market.time;
        entry.scenario = scenario;
    }

    /// @dev The scenario column of an underlying: its index in the market snapshot.
    function _columnOf(MarketSnapshot calldata market, bytes32 underlying) internal pure returns (uint256) {
        for (uint256 u = 0; u < market.underlyings.length; ++u) {
            if (market.underlyings[u].symbol == underlying) return u;
        }
        revert UnknownUnderlying(underlying);
    }

    /// @dev Checks 1-2 of `proveFraud` and `challengePricing`: the round stands and the report is the attested one;
    ///      return the round and the report digest.
    function _checkAttestedReport(Report calldata report) internal view returns (Round storage r, bytes32 digest) {
        uint64 blockNumber = report.blockNumber;
        r = _roundOf(blockNumber);
        // 1. the round stands
        if (r.signerBitmap == 0) revert RoundProvenFraudulent(blockNumber);
        // 2. the report passed back is the attested one (its riskArraysRoot and marketHash are not stored)
        digest = reportDigest(report);
        if (digest != r.reportDigest) revert ReportMismatch(blockNumber, digest, r.reportDigest);
    }

    /// @dev Checks 1-4 of `proveFraud`; return the round and the report digest.
    function _checkAttestedLeaf(
        Report calldata report,
        address account,
        AttestedMargin calldata leaf,
        bytes32[] calldata accountProof
    ) internal view returns (Round storage r, bytes32 digest) {
        uint64 blockNumber = report.blockNumber;
        (r, digest) = _checkAttestedReport(report);
        // 3. the leaf is the attested one
        bytes32 leafHash = computeLeaf(account, leaf.initialMargin, leaf.maintenanceMargin, leaf.equity);
        if (!MerkleProof.verifyCalldata(accountProof, report.accountsRoot, leafHash)) {
            revert InvalidMarginProof(account, blockNumber, report.accountsRoot);
        }
        // 4. the ledger whose history gives the holdings at B
        if (address(ledger) == address(0)) revert NoLedger();
    }

    /// @notice Return the EIP-712 digest of `report` in this contract's domain (what members sign).
    /// @param report The report.
    /// @return The digest keccak256(0x1901 || domainSeparator || hashStruct(report)).
    function reportDigest(Report calldata report) public view returns (bytes32) {
        return _hashTypedDataV4(keccak256(abi.encode(REPORT_TYPEHASH, report)));
    }

    /// @notice Return hashStruct(report) of EIP-712 (keccak256(abi.encode(REPORT_TYPEHASH, report fields))).
    /// @param report The report.
    function hashReport(Report calldata report) external pure returns (bytes32) {
        return keccak256(abi.encode(REPORT_TYPEHASH, report));
    }

    /// @notice Return the Merkle leaf of an account's attested values (double keccak of the ABI encoding).
    /// @param account The account.
    /// @param initialMargin Initial margin (USD, 18 decimals).
    /// @param maintenanceMargin Maintenance margin (USD, 18 decimals).
    /// @param equity Equity (USD, 18 decimals, signed).
    function computeLeaf(address account, uint256 initialMargin, uint256 maintenanceMargin, int256 equity)
        public
        pure
        returns (bytes32)
    {
        return keccak256(bytes.concat(keccak256(abi.encode(account, initialMargin, maintenanceMargin, equity))));
    }

    /// @notice Check if (account, values) is a leaf under `root` with `proof` (no round, no age check).
    /// @param root A Merkle root.
    /// @param account The account.
    /// @param initialMargin Initial margin (USD, 18 decimals).
    /// @param maintenanceMargin Maintenance margin (USD, 18 decimals).
    /// @param equity Equity (USD, 18 decimals, signed).
    /// @param proof Sibling hashes from the leaf to the root.
    function isLeafOf(
        bytes32 root,
        address account,
        uint256 initialMargin,
        uint256 maintenanceMargin,
        int256 equity,
        bytes32[] calldata proof
    ) external pure returns (bool) {
        return MerkleProof.verifyCalldata(proof, root, computeLeaf(account, initialMargin, maintenanceMargin, equity));
    }

    /// @notice Return the EIP-712 domain separator.
    function domainSeparator() external view returns (bytes32) {
        return _domainSeparatorV4();
    }

    /// @notice Revert unless (account, values) is a leaf of the latest round and the round is fresh enough.
    /// @param account The account.
    /// @param initialMargin Attested initial margin (USD, 18 decimals).
    /// @param maintenanceMargin Attested maintenance margin (USD, 18 decimals).
    /// @param equity Attested equity (USD, 18 decimals, signed).
    /// @param proof Sibling hashes from the leaf to the root (sorted-pair, OpenZeppelin MerkleProof).
    /// @return blockNumber The block of the round the values were proven against.
    function verifyMargin(
        address account,
        uint256 initialMargin,
        uint256 maintenanceMargin,
        int256 equity,
        bytes32[] calldata proof
    ) external view returns (uint64 blockNumber) {
        blockNumber = _state.lastBlockNumber;
        if (blockNumber == 0) revert NoAttestedRound();
        _verifyMargin(blockNumber, account, initialMargin, maintenanceMargin, equity, proof);
    }

    /// @notice Like `verifyMargin`, against the round of block `blockNumber` (still within the max age).
    /// @param blockNumber The round's block.
    /// @param account The account.
    /// @param initialMargin Attested initial margin (USD, 18 decimals).
    /// @param maintenanceMargin Attested maintenance margin (USD, 18 decimals).
    /// @param equity Attested equity (USD, 18 decimals, signed).
    /// @param proof Sibling hashes from the leaf to the root.
    function verifyMarginAt(
        uint64 blockNumber,
        address account,
        uint256 initialMargin,
        uint256 maintenanceMargin,
        int256 equity,
        bytes32[] calldata proof
    ) external view {
        _verifyMargin(blockNumber, account, initialMargin, maintenanceMargin, equity, proof);
    }

    /// @inheritdoc IPortfolioMarginOracle
    function paramsHash() external view returns (bytes32 paramsHash_) {
        address data = _state.committeeData;
        if (data != address(0)) paramsHash_ = _paramsHashOf(Clones.fetchCloneArgs(data));
    }

    /// @inheritdoc IPortfolioMarginOracle
    function publishParams(bytes calldata document) external {
        bytes32 hash = keccak256(document);
        if (!_paramsKnown[hash]) revert UnknownParams(hash);
        paramsPublishedAt[hash] = uint64(block.number);
        emit ParamsPublished(hash, document);
    }

    /// @inheritdoc IPortfolioMarginOracle
    function latestRoot() external view returns (uint64 blockNumber, uint64 attestedAt, bytes32 accountsRoot) {
        blockNumber = _state.lastBlockNumber;
        if (blockNumber == 0) revert NoAttestedRound();
        Round storage r = _roundOf(blockNumber);
        if (r.signerBitmap == 0) revert RoundProvenFraudulent(blockNumber);
        return (blockNumber, r.attestedAt, r.accountsRoot);
    }

    /// @inheritdoc IPortfolioMarginOracle
    function marginOf(address account, AttestedMargin calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (uint256 initialMargin, uint256 maintenanceMargin, int256 equity, uint64 blockNumber)
    {
        blockNumber = _verifyLatest(account, leaf, proof);
        return (leaf.initialMargin, leaf.maintenanceMargin, leaf.equity, blockNumber);
    }

    /// @inheritdoc IPortfolioMarginOracle
    function isLiquidatable(address account, AttestedMargin calldata leaf, bytes32[] calldata proof)
        external
        view
        returns (bool)
    {
        _verifyLatest(account, leaf, proof);
        // maintenanceMargin < 2**255 for any leaf a committee signs; above it no equity could cover it
        return leaf.maintenanceMargin > uint256(type(int256).max) || leaf.equity < int256(leaf.maintenanceMargin);
    }

    /// @notice Return the latest attested round.
    function latestRound() external view returns (RoundView memory) {
        uint64 blockNumber = _state.lastBlockNumber;
        if (blockNumber == 0) revert NoAttestedRound();
        return _roundView(blockNumber);
    }

    /// @notice Return the round attested for block `blockNumber`.
    /// @param blockNumber The round's block.
    function roundAt(uint64 blockNumber) external view returns (RoundView memory) {
        return _roundView(blockNumber);
    }

    /// @notice Return the config digest, report digest and attestation time of the round at `blockNumber`
    ///         (slashing evidence; the registry's deviation window runs from the attestation time).
    /// @param blockNumber The round's block.
    function roundDigests(uint64 blockNumber) external view returns (bytes32, bytes32, uint64) {
        Round storage r = _roundOf(blockNumber);
        // deviation from a report proven wrong is no offence
        if (r.signerBitmap == 0) revert RoundProvenFraudulent(blockNumber);
        return (configDigestOf[r.configVersion], r.reportDigest, r.attestedAt);
    }

    /// @inheritdoc IMarginOracle
    function roundBlockHash(uint64 blockNumber) external view returns (bytes32 blockHash) {
        _roundOf(blockNumber);
        blockHash = _blockHashOf(blockNumber);
        if (blockHash == bytes32(0)) revert RoundBlockHashNotRecorded(blockNumber);
    }

    /// @dev The hash recorded from the attested report, else blockhash(blockNumber) (zero past 256 blocks): the same
    ///      canonical hash, the one `attest` checked (a reorg deeper than the block also replaces the attestation).
    function _blockHashOf(uint64 blockNumber) internal view returns (bytes32 blockHash) {
        blockHash = _recordedBlockHash[blockNumber];
        if (blockHash == bytes32(0)) blockHash = blockhash(blockNumber);
    }

    /// @notice Return the digest of the current committee config (zero before the first committee).
    function configDigest() external view returns (bytes32 digest) {
        address data = _state.committeeData;
        if (data != address(0)) (digest,) = _committeeHeader(Clones.fetchCloneArgs(data));
    }

    /// @notice Return the current config digest and the bitmap of its members the registry ejected (bit i: member
    ///         i), whose signatures `attest` refuses (zeros before the first committee).
    function ejectedMembers() external view returns (bytes32 digest, uint256 ejected) {
        address data = _state.committeeData;
        if (data == address(0)) return (digest, ejected);
        bytes memory committee = Clones.fetchCloneArgs(data);
        (digest,) = _committeeHeader(committee);
        ejected = _ejectedOf(committee);
    }

    /// @notice Return the current committee members in bitmap order (ejected ones included).
    function members() external view returns (address[] memory result) {
        State memory s = _state;
        result = new address[](s.committeeSize);
        if (s.committeeData == address(0)) return result;
        bytes memory committee = Clones.fetchCloneArgs(s.committeeData);
        for (uint256 i = 0; i < s.committeeSize; ++i) {
            result[i] = _memberOf(committee, i);
        }
    }

    /// @notice Return the address holding the current committee as code (zero before the first committee).
    function committeeData() external view returns (address) {
        return _state.committeeData;
    }

    /// @notice Return the current quorum.
    function quorum() external view returns (uint8) {
        return _state.quorum;
    }

    /// @notice Return the current config version (0 before the first committee).
    function configVersion() external view returns (uint64 version) {
        address data = _state.committeeData;
        if (data != address(0)) (, version) = _committeeHeader(Clones.fetchCloneArgs(data));
    }

    /// @notice Return the block of the latest attested round (0 before the first).
    function lastBlockNumber() external view returns (uint64) {
        return _state.lastBlockNumber;
    }

    function _verifyLatest(address account, AttestedMargin calldata leaf, bytes32[] calldata proof)
        internal
        view
        returns (uint64 blockNumber)
    {
        blockNumber = _state.lastBlockNumber;
        if (blockNumber == 0) revert NoAttestedRound();
        _verifyMargin(blockNumber, account, leaf.initialMargin, leaf.maintenanceMargin, leaf.equity, proof);
    }

    /// @dev Return the least MM (leaf units) the rule allows for the account's holdings in `scenario`, or
    ///      `malformed` when a proven row has another length than the cover row or the cover row is unusable.
    function _requiredMargin(
        bytes32 root,
        uint64 blockNumber,
        address account,
        RiskRow calldata cover,
        RiskRow[] calldata rows,
        uint256 scenario
    ) internal view returns (bool malformed, uint256 required) {
        if (cover.key != COVER_KEY) revert InvalidCoverRow(cover.key, scenario);
        _checkRow(root, cover);
        uint256 width = cover.values.length;
        if (width % 8 != 0 || cover.base <= 0) return (true, 0);
        if (scenario >= width / 8) revert InvalidCoverRow(cover.key, scenario);
        int256 coverNum = _valueAt(cover.values, scenario);
        if (coverNum <= 0) return (true, 0);
        (int256 pnl, int256 addons, bool bad) = _sumRows(root, blockNumber, account, rows, width, scenario);
        if (bad) return (true, 0);
        int256 counted = 0;
        if (pnl < 0) {
            int256 den = cover.base;
            counted = (-pnl * coverNum + den - 1) / den; // ceil of a positive quotient
        }
        int256 total = counted + addons;
        required = total > 0 ? uint256(total) * MONEY_TO_LEAF : 0;
    }

    /// @dev Sum size x R[s] and the short add-ons over `rows`, checking each is held at the end of block
    ///      `blockNumber`, proven, and that together they are every open position and non-zero collateral balance
    ///      `account` had then.
    function _sumRows(
        bytes32 root,
        uint64 blockNumber,
        address account,
        RiskRow[] calldata rows,
        uint256 width,
        uint256 scenario
    ) internal view returns (int256, int256, bool) {
        Sum memory sum;
        sum.blockNumber = blockNumber;
        for (uint256 j = 0; j < rows.length; ++j) {
            _addRow(sum, root, account, rows[j], width, scenario);
        }
        _checkComplete(account, blockNumber, sum.positions, rows.length - sum.positions);
        return (sum.pnl, sum.addons, sum.malformed);
    }

    /// @dev Add one row's P&L in `scenario` and short add-on for the account's holding, after checking its key is
    ///      above the previous one, held and proven; a width other than the cover row's marks the sum malformed.
    function _addRow(
        Sum memory sum,
        bytes32 root,
        address account,
        RiskRow calldata row,
        uint256 width,
        uint256 scenario
    ) internal view {
        uint256 key = row.key;
        if (key <= sum.previousKey || key == COVER_KEY) revert RowNotHeld(account, key);
        sum.previousKey = key;
        if (key & COLLATERAL_FLAG == 0) ++sum.positions;
        (bool held, int256 size) = _holdingOf(ledger, account, key, sum.blockNumber);
        if (!held) revert RowNotHeld(account, key);
        _checkRow(root, row);
        if (row.values.length != width) {
            sum.malformed = true;
            return;
        }
        sum.pnl += size * _valueAt(row.values, scenario);
        if (size < 0) sum.addons += -size * row.addon;
    }

    /// @dev Revert unless the rows named every open position and every non-zero collateral balance at B.
    function _checkComplete(address account, uint64 blockNumber, uint256 positions, uint256 balances) internal view {
        IFraudLedger ledger_ = ledger;
        uint256 heldPositions = ledger_.openPositionCountAt(account, blockNumber);
        uint256 heldBalances = _nonZeroBalances(ledger_, account, blockNumber);
        if (positions != heldPositions || balances != heldBalances) {
            revert IncompleteHoldings(account, positions + balances, heldPositions + heldBalances);
        }
    }

    /// @dev Whether an account held a row's key (a non-zero position or balance) at the end of block B, and the SIZE
    ///      units it held: its position, or its balance converted as the chain snapshot does (floored to 4 decimals;
    ///      dust is 0).
    function _holdingOf(IFraudLedger ledger_, address account, uint256 key, uint64 blockNumber)
        internal
        view
        returns (bool held, int256 size)
    {
        if (key & COLLATERAL_FLAG == 0) {
            if (key > type(uint32).max) return (false, 0);
            size = ledger_.positionAt(account, uint32(key), blockNumber);
            return (size != 0, size);
        }
        uint256 decimals = uint8(key >> 160);
        uint256 balance = ledger_.balanceAt(account, address(uint160(key)), blockNumber);
        uint256 units = decimals >= SIZE_DECIMALS
            ? balance / 10 ** (decimals - SIZE_DECIMALS)
            : balance * 10 ** (SIZE_DECIMALS - decimals);
        return (balance != 0, SafeCast.toInt256(units));
    }

    function _nonZeroBalances(IFraudLedger ledger_, address account, uint64 blockNumber)
        internal
        view
        returns (uint256 count)
    {
        address[] memory tokens = ledger_.collateralTokens(); // a token listed after B had no balance at B
        for (uint256 i = 0; i < tokens.length; ++i) {
            if (ledger_.balanceAt(account, tokens[i], blockNumber) != 0) ++count;
        }
    }

    function _checkRow(bytes32 root, RiskRow calldata row) internal pure {
        bytes32 leafHash = keccak256(bytes.concat(keccak256(abi.encodePacked(row.key, row.base, row.addon, row.values))));
        if (!MerkleProof.verifyCalldata(row.proof, root, leafHash)) revert InvalidRowProof(row.key, root);
    }

    function _valueAt(bytes calldata values, uint256 scenario) internal pure returns (int256) {
        uint256 offset = scenario * 8;
        return int64(uint64(bytes8(values[offset:offset + 8])));
    }

    /// @dev Clear the round's signer bitmap (every read of it reverts from now on), then slash its signers.
    function _invalidate(Round storage r, bytes32 digest, address account) internal {
        uint256 bitmap = r.signerBitmap;
        uint64 version = r.configVersion;
        uint64 blockNumber = r.blockNumber;
        r.signerBitmap = 0;
        emit RoundInvalidated(blockNumber, digest, bitmap, account, msg.sender);
        // a FROST certificate does not say who signed: its signers are slashed one by one (`slashFrostSigner`)
        if (r.scheme == SCHEME_FROST) return;
        bytes memory committee = Clones.fetchCloneArgs(_committeeAt[version]);
        address[] memory signers = new address[](_countBits(bitmap));
        uint256 k = 0;
        for (uint256 i = 0; bitmap >> i != 0; ++i) {
            if ((bitmap >> i) & 1 == 1) signers[k++] = _memberOf(committee, i);
        }
        IFraudSlasher(registry).slashFraud(signers, configDigestOf[version], blockNumber, msg.sender);
    }

    function _verifyMargin(
        uint64 blockNumber,
        address account,
        uint256 initialMargin,
        uint256 maintenanceMargin,
        int256 equity,
        bytes32[] calldata proof
    ) internal view {
        Round storage r = _roundOf(blockNumber);
        if (r.signerBitmap == 0) revert RoundProvenFraudulent(blockNumber);
        uint256 age = block.number - blockNumber;
        if (age > maxRoundAge) revert RoundTooOld(blockNumber, age, maxRoundAge);
        bytes32 root = r.accountsRoot;
        bytes32 leaf = computeLeaf(account, initialMargin, maintenanceMargin, equity);
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert InvalidMarginProof(account, blockNumber, root);
    }

    function _roundOf(uint64 blockNumber) internal view returns (Round storage r) {
        r = _rounds[blockNumber % historyBlocks];
        if (blockNumber == 0 || r.blockNumber != blockNumber) revert RoundNotFound(blockNumber);
    }

    function _roundView(uint64 blockNumber) internal view returns (RoundView memory) {
        Round storage r = _roundOf(blockNumber);
        return RoundView({
            blockNumber: r.blockNumber,
            accountsRoot: r.accountsRoot,
            reportDigest: r.reportDigest,
            configDigest: configDigestOf[r.configVersion],
            configVersion: r.configVersion,
            accountCount: r.accountCount,
            attestedAt: r.attestedAt,
            blockHash: _blockHashOf(blockNumber),
            signerBitmap: r.signerBitmap
        });
    }

    /// @dev The committee blob is abi.encodePacked(bytes32 digest, uint256(ejected << 64 | version), bytes32
    ///      paramsHash, uint256 groupKeyX, address[] members): four 32-byte header words, then one word per member.
    function _configDigestOf(bytes memory committee) internal pure returns (bytes32 digest) {
        assembly ("memory-safe") {
            digest := mload(add(committee, 0x20))
        }
    }

    function _committeeHeader(bytes memory committee) internal pure returns (bytes32 digest, uint64 version) {
        uint256 word;
        assembly ("memory-safe") {
            digest := mload(add(committee, 0x20))
            word := mload(add(committee, 0x40))
        }
        version = uint64(word);
    }

    function _paramsHashOf(bytes memory committee) internal pure returns (bytes32 paramsHash_) {
        assembly ("memory-safe") {
            paramsHash_ := mload(add(committee, 0x60))
        }
    }

    function _ejectedOf(bytes memory committee) internal pure returns (uint256 ejected) {
        assembly ("memory-safe") {
            ejected := shr(64, mload(add(committee, 0x40)))
        }
    }

    function _checkNotEjected(uint256 signerBitmap, bytes memory committee) internal pure {
        uint256 refused = signerBitmap & _ejectedOf(committee);
        if (refused == 0) return;
        uint256 index = 0;
        while (refused & (1 << index) == 0) ++index;
        revert EjectedSigner(index, _memberOf(committee, index));
    }

    function _groupKeyXOf(bytes memory committee) internal pure returns (uint256 x) {
        assembly ("memory-safe") {
            x := mload(add(committee, 0x80))
        }
    }

    /// @dev The committee blob's four header words only (one EXTCODECOPY of 128 bytes, whatever n): the args start
    ///      after the clone's 0x2d bytes of code (OpenZeppelin Clones.cloneWithImmutableArgs).
    function _fetchCommitteeHeader(address data) internal view returns (bytes memory header) {
        assembly ("memory-safe") {
            // allocated without zeroing (new bytes would clear the four words EXTCODECOPY then writes)
            header := mload(0x40)
            mstore(header, 0x80)
            extcodecopy(data, add(header, 0x20), 0x2d, 0x80)
            mstore(0x40, add(header, 0xa0))
        }
    }

    function _memberOf(bytes memory committee, uint256 index) internal pure returns (address member) {
        // index < committeeSize is checked by the caller (signer range); the blob holds committeeSize words
        assembly ("memory-safe") {
            member := mload(add(committee, add(0xa0, shl(5, index))))
        }
    }

    /// @dev In its own frame: the event's ten fields do not fit `attest`'s stack.
    function _emitAttested(Report calldata report, bytes32 digest, uint256 signerBitmap, uint8 scheme) internal {
        emit RoundAttested(
            report.blockNumber,
            report.configDigest,
            digest,
            report.accountsRoot,
            report.accountCount,
            signerBitmap,
            msg.sender,
            report.riskArraysRoot,
            report.marketHash,
            scheme
        );
    }

    /// @dev `attestFrost`'s store and `RoundAttested` (scheme FROST), in their own frame. The event is the one
    ///      `attest` emits, encoded here past the free memory pointer (Solidity's encoder cost ~550 gas more).
    function _storeFrostRound(
        FrostReport calldata report,
        uint64 blockNumber,
        bytes memory header,
        bytes32 digest,
        uint256 signerBitmap
    ) internal {
        (bytes32 current, uint64 version) = _committeeHeader(header);
        uint32 accountCount = report.accountCount;
        _storeRound(blockNumber, report.accountsRoot, accountCount, digest, version, SCHEME_FROST, signerBitmap);
        bytes32 topic = RoundAttested.selector;
        uint8 scheme = SCHEME_FROST;
        assembly ("memory-safe") {
            let m := mload(0x40)
            mstore(m, digest)
            mstore(add(m, 0x20), calldataload(add(report, 0x20))) // accountsRoot
            mstore(add(m, 0x40), accountCount)
            mstore(add(m, 0x60), signerBitmap)
            mstore(add(m, 0x80), caller()) // transmitter
            calldatacopy(add(m, 0xa0), add(report, 0x60), 0x40) // riskArraysRoot, marketHash
            mstore(add(m, 0xe0), scheme)
            log3(m, 0x100, topic, blockNumber, current)
        }
    }

    function _checkSignatures(
        bytes32 digest,
        uint256 signerBitmap,
        bytes[] calldata signatures,
        bytes memory committee
    ) internal pure {
        uint256 bitmap = signerBitmap;
        uint256 k = 0;
        for (uint256 i = 0; bitmap != 0; ++i) {
            if (bitmap & 1 == 1) {
                (address recovered, ECDSA.RecoverError err, bytes32 errArg) =
                    ECDSA.tryRecoverCalldata(digest, signatures[k]);
                if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(i, uint8(err), errArg);
                address expected = _memberOf(committee, i);
                if (recovered != expected) revert SignerMismatch(i, expected, recovered);
                ++k;
            }
            bitmap >>= 1;
        }
    }

    /// @dev Population count of a bitmap below 2**64 (every caller checked it against the committee size): SWAR, a
    ///      constant ~40 gas, so a FROST round at n = 64 costs what one at n = 4 does.
    function _countBits(uint256 x) internal pure returns (uint256 count) {
        assembly ("memory-safe") {
            x := sub(x, and(shr(1, x), 0x5555555555555555))
            x := add(and(x, 0x3333333333333333), and(shr(2, x), 0x3333333333333333))
            x := and(add(x, shr(4, x)), 0x0f0f0f0f0f0f0f0f)
            count := and(shr(56, mul(x, 0x0101010101010101)), 0xff)
        }
    }
}
