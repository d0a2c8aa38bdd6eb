// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {ECDSA} from "@openzeppelin/contracts/utils/cryptography/ECDSA.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {Report, IMarginOracle} from "./PmoracleTypes.sol";

/// @title SolverRegistry
/// @notice Solver nodes register here with a native-ETH stake, their report-signing key (with a proof of
///         possession) and their libp2p endpoints; the owner sets the committee; anyone can submit slashing
///         evidence (equivocation, deviation from the attested report about the canonical block); the oracle
///         slashes every signer of a round proven fraudulent (`slashFraud`, after `MarginOracle.proveFraud`).
/// @dev Slashing rules (docs/contracts.md, "SolverRegistry"): deviation is judged against the canonical block hash
///      only, and only once the round's deviation window (`deviationDelay` seconds after its attestation, time for
///      a fraud proof to invalidate a wrong round) has passed; the reporter's reward is paid only to the operator of another active, staked node (the offender and
///      mempool copiers get nothing); a committee member left below `minStake` is ejected (the oracle refuses its
///      signatures) and `MemberEjected` asks the owner to re-key the committee; a slash never reverts for lack of
///      stake and every offence is counted; slashed wei not paid as rewards is swept to `slashRecipient`.
///      Proof of possession: the signing key signs, EIP-191 ("\x19Ethereum Signed Message:\n32"), the hash
///      keccak256(abi.encode("pmoracle-pop", registrant, block.chainid, address(this))) (see `popHash`).
///      FROST key confirmation (`confirmFrostKey`): after their DKG, the members of a committee without a group key
///      each sign (EIP-191, their report-signing key) `frostConfirmationHash` of the group key and the DKG transcript
///      digest; anyone relays it, and a member's later confirmation replaces its earlier one. When every member
///      (n of n: a FROST key needs every dealer) confirmed the same key and transcript, the registry installs the key
///      as a new committee version, as `setFrostCommittee` does; a member confirming another key or transcript
///      blocks that until it confirms again (`FrostKeyConflict`; the owner can still install one).
contract SolverRegistry is Ownable, ReentrancyGuard {
    /// @notice Largest committee (signer bitmaps of MarginOracle).
    uint256 public constant MAX_COMMITTEE = 64;
    /// @notice Basis-point denominator.
    uint256 public constant BPS = 10_000;
    /// @notice Longest deviation window the owner may set (seconds; also at most `unbondingDelay`).
    uint64 public constant MAX_DEVIATION_DELAY = 1 days;
    /// @notice secp256k1's group order (a group key's x-coordinate must be below it: MarginOracle's rule).
    uint256 internal constant SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;

    /// @notice Life cycle of a node.
    enum NodeStatus {
        None,
        Active,
        Unbonding,
        Exited
    }

    /// @notice A registered node.
    struct Node {
        address operator;
        address signer;
        uint256 stake;
        uint64 unbondingEndsAt;
        NodeStatus status;
        bytes peerId;
        string[] multiaddrs;
    }

    /// @notice The current committee config.
    struct CommitteeView {
        uint256 chainId;
        address registry;
        uint64 version;
        address[] members;
        uint8 quorum;
        uint64 roundPeriod;
        uint64 finalityDepth;
        bytes32 paramsHash;
        uint32 engineVersion;
        uint256 groupKeyX;
        uint8 groupKeyParity;
        bytes32 configDigest;
    }

    /// @notice Kinds of slashing evidence.
    enum Offence {
        Equivocation,
        Deviation,
        Fraud
    }

    /// @notice Minimum stake (wei) to register and to be put in a committee.
    uint256 public immutable minStake;
    /// @notice Seconds between `requestUnbond` and `withdrawStake`.
    uint64 public immutable unbondingDelay;
    /// @notice Fraction of the stake slashed per offence, in basis points.
    uint256 public immutable slashBps;
    /// @notice Fraction of the slashed amount paid to the reporter, in basis points.
    uint256 public immutable rewardBps;

    /// @notice The MarginOracle whose committee this registry sets (set once).
    IMarginOracle public oracle;
    /// @notice Slashed wei not paid to reporters, held until `sweepSlashed` (never returned to the node).
    uint256 public slashedPool;
    /// @notice Where `sweepSlashed` sends the slashed pool: the insurance fund's treasury (set by the owner).
    address public slashRecipient;
    /// @notice Seconds after a round's attestation before deviation evidence against it is accepted (the challenge
    ///         window in which a wrong round is proven and invalidated first; owner-set, at most
    ///         `MAX_DEVIATION_DELAY` and `unbondingDelay`).
    uint64 public deviationDelay;

    uint64 internal _version;
    uint8 internal _quorum;
    uint64 internal _roundPeriod;
    uint64 internal _finalityDepth;
    uint32 internal _engineVersion;
    /// @dev The current committee's FROST group key x-coordinate (0: none) and y-parity.
    uint256 internal _groupKeyX;
    uint8 internal _groupKeyParity;
    bytes32 internal _paramsHash;
    address[] internal _members;
    mapping(address signer => uint256 indexPlusOne) internal _committeeIndex;

    mapping(address signer => Node) internal _nodes;
    /// @notice The signing address registered by an operator (zero if none).
    mapping(address operator => address signer) public signerOf;
    address[] internal _signers;
    /// @notice Whether a signer was already slashed for a round key keccak256(abi.encode(signer, configDigest, blockNumber)).
    mapping(bytes32 offenceKey => bool) public slashed;
    /// @notice Offences proven against a signer (each counts, whether or not stake was left to slash).
    mapping(address signer => uint256 count) public offences;
    /// @notice The config version a signer was ejected from (0: never); ejection lasts until the next committee.
    mapping(address signer => uint64 version) public ejectedFrom;
    /// @notice Per committee version: what each member confirmed with `confirmFrostKey`, as
    ///         keccak256(abi.encode(groupKeyX, groupKeyParity, transcriptDigest)) (zero: nothing yet).
    mapping(uint64 version => mapping(address member => bytes32 confirmed)) public frostConfirmations;

    /// @notice The oracle was set.
    event OracleSet(address oracle);
    /// @notice A node registered.
    event NodeRegistered(address indexed operator, address indexed signer, uint256 stake, bytes peerId, string[] multiaddrs);
    /// @notice A node added stake.
    event StakeAdded(address indexed signer, uint256 amount, uint256 stake);
    /// @notice A node changed its libp2p endpoints.
    event EndpointsUpdated(address indexed signer, bytes peerId, string[] multiaddrs);
    /// @notice A node started unbonding.
    event UnbondRequested(address indexed signer, uint64 unbondingEndsAt);
    /// @notice A node withdrew its stake and left.
    event StakeWithdrawn(address indexed signer, address indexed operator, uint256 amount);
    /// @notice The owner set a new committee config.
    event CommitteeSet(
        uint64 indexed version,
        bytes32 indexed configDigest,
        address[] members,
        uint8 quorum,
        uint64 roundPeriod,
        uint64 finalityDepth,
        bytes32 paramsHash,
        uint32 engineVersion
    );
    /// @notice A member of committee `version` confirmed the group key and transcript digest of its DKG.
    event FrostKeyConfirmed(
        uint64 indexed version, address indexed member, uint256 groupKeyX, uint8 groupKeyParity, bytes32 transcriptDigest
    );
    /// @notice `member` confirmed another key or transcript than `other` did for `version`: no key is installed by
    ///         confirmations until one of them confirms again (the owner can still install one with `setFrostCommittee`).
    event FrostKeyConflict(uint64 indexed version, address indexed member, address indexed other);
    /// @notice Every member of committee `version` confirmed one group key: it is installed as `newVersion`.
    event FrostKeyInstalled(
        uint64 indexed version, uint64 indexed newVersion, uint256 groupKeyX, uint8 groupKeyParity, bytes32 transcriptDigest
    );
    /// @notice A committee member was slashed below the minimum stake: the oracle refuses its signatures from now
    ///         on, and the owner should install a committee without it (the re-keying signal).
    event MemberEjected(address indexed signer, uint64 indexed version, uint256 stake);
    /// @notice The owner set where slashed stake is swept.
    event SlashRecipientSet(address recipient);
    /// @notice The owner set the deviation window.
    event DeviationDelaySet(uint64 previous, uint64 delay);
    /// @notice The slashed pool was sent to the recipient (the bridge to the insurance fund).
    event SlashedSwept(address indexed recipient, uint256 amount);
    /// @notice A signer was slashed (amount 0 once no stake is left; `reward` 0 unless the reporter is eligible).
    event Slashed(
        address indexed signer,
        Offence indexed offence,
        bytes32 configDigest,
        uint64 blockNumber,
        uint256 amount,
        address reporter,
        uint256 reward
    );

    /// @notice The caller is not the oracle.
    error NotOracle(address caller);
    /// @notice A constructor argument is out of range.
    error InvalidParameter(string name, uint256 value);
    /// @notice The oracle was already set, or is zero.
    error OracleAlreadySet(address oracle);
    /// @notice The oracle is not set yet.
    error OracleNotSet();
    /// @notice The stake sent is below the minimum.
    error InsufficientStake(uint256 given, uint256 minimum);
    /// @notice The operator already registered a node.
    error OperatorAlreadyRegistered(address operator, address signer);
    /// @notice The signing address is already registered (or zero).
    error SignerAlreadyRegistered(address signer);
    /// @notice The proof of possession does not recover to the signing address.
    error InvalidProofOfPossession(address signer, address recovered);
    /// @notice The caller has no node.
    error NotRegistered(address operator);
    /// @notice The node is not in the state the call needs.
    error InvalidNodeStatus(address signer, NodeStatus status);
    /// @notice The node is a member of the current committee.
    error MemberOfCommittee(address signer, uint64 version);
    /// @notice The unbonding delay has not passed.
    error StillUnbonding(address signer, uint64 unbondingEndsAt, uint256 now_);
    /// @notice A committee of this size cannot be set.
    error InvalidCommitteeSize(uint256 size);
    /// @notice The quorum is outside [byzantineQuorum, n].
    error InvalidQuorum(uint8 quorum, uint256 minimum, uint256 maximum);
    /// @notice The round period is zero.
    error InvalidRoundPeriod(uint64 roundPeriod);
    /// @notice The engine version is zero (versions start at 1).
    error InvalidEngineVersion(uint32 engineVersion);
    /// @notice A member is not an active node with the minimum stake.
    error IneligibleMember(address member, NodeStatus status, uint256 stake);
    /// @notice A member appears twice.
    error DuplicateMember(address member);
    /// @notice The evidence is not an offence (same digest, different round key, or matches the attested report).
    error NotAnOffence(bytes32 digestA, bytes32 digestB);
    /// @notice Two pieces of evidence name different round keys.
    error RoundKeyMismatch(bytes32 configDigestA, uint64 blockNumberA, bytes32 configDigestB, uint64 blockNumberB);
    /// @notice The two signatures come from different signers.
    error SignerMismatch(address signerA, address signerB);
    /// @notice A signature is malformed or malleable (OpenZeppelin ECDSA.RecoverError, with its argument).
    error InvalidSignature(uint8 recoverError, bytes32 errorArg);
    /// @notice The evidence is signed by a key no node ever registered.
    error UnknownSigner(address signer);
    /// @notice The report names another block hash than the canonical one of its block (a reorged fork).
    error NotCanonicalBlockHash(uint64 blockNumber, bytes32 given, bytes32 canonical);
    /// @notice No slash recipient is set (or the zero address was given).
    error NoSlashRecipient();
    /// @notice The slashed pool is empty.
    error NothingToSweep();
    /// @notice This signer was already slashed for this round key.
    error AlreadySlashed(address signer, bytes32 configDigest, uint64 blockNumber);
    /// @notice Deviation evidence against round `blockNumber` (attested at `attestedAt`) is accepted from `opensAt`.
    error DeviationWindowNotOpen(uint64 blockNumber, uint64 attestedAt, uint64 opensAt);
    /// @notice A confirmation for another committee version than the current one.
    error NotCurrentVersion(uint64 given, uint64 current);
    /// @notice The current committee already has a group key.
    error CommitteeHasGroupKey(uint64 version);
    /// @notice The signer of a confirmation is not a member of the current committee.
    error NotCommitteeMember(address signer, uint64 version);
    /// @notice The member already confirmed these values for this committee version.
    error AlreadyConfirmed(address member, uint64 version);

    /// @param owner_ Sets the oracle and committees.
    /// @param minStake_ Minimum stake in wei.
    /// @param unbondingDelay_ Seconds a leaving node stays slashable.
    /// @param slashBps_ Fraction of the stake slashed per offence (basis points, 1..10000).
    /// @param rewardBps_ Fraction of the slashed amount paid to the reporter (basis points, 0..10000).
    /// @param deviationDelay_ The deviation window in seconds (at most `MAX_DEVIATION_DELAY` and `unbondingDelay_`).
    constructor(
        address owner_,
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint256 slashBps_,
        uint256 rewardBps_,
        uint64 deviationDelay_
    ) Ownable(owner_) {
        if (minStake_ == 0) revert InvalidParameter("minStake", minStake_);
        if (slashBps_ == 0 || slashBps_ > BPS) revert InvalidParameter("slashBps", slashBps_);
        if (rewardBps_ > BPS) revert InvalidParameter("rewardBps", rewardBps_);
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        slashBps = slashBps_;
        rewardBps = rewardBps_;
        _setDeviationDelay(deviationDelay_);
    }

    /// @notice Set the MarginOracle once (its constructor names this registry).
    /// @param oracle_ The oracle.
    function setOracle(IMarginOracle oracle_) external onlyOwner {
        if (address(oracle) != address(0) || address(oracle_) == address(0)) revert OracleAlreadySet(address(oracle));
        oracle = oracle_;
        emit OracleSet(address(oracle_));
    }

    /// @notice Set where `sweepSlashed` sends slashed stake (the insurance fund's treasury).
    /// @param recipient A non-zero address.
    function setSlashRecipient(address recipient) external onlyOwner {
        if (recipient == address(0)) revert NoSlashRecipient();
        slashRecipient = recipient;
        emit SlashRecipientSet(recipient);
    }

    /// @notice Set the deviation window: deviation evidence against a round is refused until `delay` seconds after
    ///         its attestation (it applies at once, to rounds already attested too).
    /// @param delay Seconds, at most `MAX_DEVIATION_DELAY` and `unbondingDelay` (a deviator rotated out of the
    ///        committee must still be slashable when the window opens).
    function setDeviationDelay(uint64 delay) external onlyOwner {
        _setDeviationDelay(delay);
    }

    function _setDeviationDelay(uint64 delay) internal {
        if (delay > MAX_DEVIATION_DELAY || delay > unbondingDelay) revert InvalidParameter("deviationDelay", delay);
        emit DeviationDelaySet(deviationDelay, delay);
        deviationDelay = delay;
    }

    /// @notice Send the whole slashed pool to `slashRecipient` (anyone may call: the recipient is fixed).
    function sweepSlashed() external nonReentrant {
        address recipient = slashRecipient;
        if (recipient == address(0)) revert NoSlashRecipient();
        uint256 amount = slashedPool;
        if (amount == 0) revert NothingToSweep();
        slashedPool = 0;
        emit SlashedSwept(recipient, amount);
        Address.sendValue(payable(recipient), amount);
    }

    /// @notice Return the hash a signing key signs (EIP-191) to prove possession for `registrant`.
    /// @param registrant The operator address that will call `register`.
    function popHash(address registrant) public view returns (bytes32) {
        return keccak256(abi.encode("pmoracle-pop", registrant, block.chainid, address(this)));
    }

    /// @notice Register the caller's node with a stake (msg.value), its signing key and its libp2p endpoints.
    /// @param signer The report-signing address.
    /// @param proofOfPossession The signer's EIP-191 signature of `popHash(msg.sender)`.
    /// @param peerId The libp2p peer id (binary multihash).
    /// @param multiaddrs The libp2p multiaddrs (text form).
    function register(
        address signer,
        bytes calldata proofOfPossession,
        bytes calldata peerId,
        string[] calldata multiaddrs
    ) external payable {
        if (msg.value < minStake) revert InsufficientStake(msg.value, minStake);
        address existing = signerOf[msg.sender];
        if (existing != address(0)) revert OperatorAlreadyRegistered(msg.sender, existing);
        if (signer == address(0) || _nodes[signer].status != NodeStatus.None) revert SignerAlreadyRegistered(signer);
        bytes32 digest = MessageHashUtils.toEthSignedMessageHash(popHash(msg.sender));
        (address recovered, ECDSA.RecoverError err,) = ECDSA.tryRecoverCalldata(digest, proofOfPossession);
        if (err != ECDSA.RecoverError.NoError || recovered != signer) {
            revert InvalidProofOfPossession(signer, recovered);
        }
        Node storage node = _nodes[signer];
        node.operator = msg.sender;
        node.signer = signer;
        node.stake = msg.value;
        node.status = NodeStatus.Active;
        _setEndpoints(node, peerId, multiaddrs);
        signerOf[msg.sender] = signer;
        _signers.push(signer);
        emit NodeRegistered(msg.sender, signer, msg.value, peerId, multiaddrs);
    }

    /// @notice Add msg.value to the caller's active node's stake.
    function addStake() external payable {
        Node storage node = _activeNodeOf(msg.sender);
        node.stake += msg.value;
        emit StakeAdded(node.signer, msg.value, node.stake);
    }

    /// @notice Replace the caller's libp2p peer id and multiaddrs.
    /// @param peerId The libp2p peer id (binary multihash).
    /// @param multiaddrs The libp2p multiaddrs (text form).
    function updateEndpoints(bytes calldata peerId, string[] calldata multiaddrs) external {
        Node storage node = _activeNodeOf(msg.sender);
        _setEndpoints(node, peerId, multiaddrs);
        emit EndpointsUpdated(node.signer, peerId, multiaddrs);
    }

    /// @notice Start unbonding the caller's node; it stays slashable until `withdrawStake`.
    function requestUnbond() external {
        Node storage node = _activeNodeOf(msg.sender);
        if (_committeeIndex[node.signer] != 0) revert MemberOfCommittee(node.signer, _version);
        uint64 endsAt = uint64(block.timestamp) + unbondingDelay;
        node.status = NodeStatus.Unbonding;
        node.unbondingEndsAt = endsAt;
        emit UnbondRequested(node.signer, endsAt);
    }

    /// @notice Withdraw the caller's remaining stake once the unbonding delay has passed.
    function withdrawStake() external nonReentrant {
        address signer = signerOf[msg.sender];
        if (signer == address(0)) revert NotRegistered(msg.sender);
        Node storage node = _nodes[signer];
        if (node.status != NodeStatus.Unbonding) revert InvalidNodeStatus(signer, node.status);
        if (block.timestamp < node.unbondingEndsAt) {
            revert StillUnbonding(signer, node.unbondingEndsAt, block.timestamp);
        }
        uint256 amount = node.stake;
        node.stake = 0;
        node.status = NodeStatus.Exited;
        emit StakeWithdrawn(signer, msg.sender, amount);
        Address.sendValue(payable(msg.sender), amount);
    }

    /// @notice Set the committee config (new version) without a FROST group key and install it in the oracle: its
    ///         rounds are attested with ECDSA certificates only (`MarginOracle.attest`).
    /// @param members Report-signing addresses of active nodes with the minimum stake, in bitmap order.
    /// @param quorum At least the Byzantine quorum (n + f) / 2 + 1 with f = (n - 1) / 3, at most n.
    /// @param roundPeriod Blocks between anchor blocks (>= 1).
    /// @param finalityDepth Blocks an anchor block must be buried under before its round starts.
    /// @param paramsHash keccak256 of the canonical risk parameters.
    /// @param engineVersion The risk engine version every member runs (>= 1): nodes of another engine refuse to
    ///        start, and their reports could never match this config's digest.
    function setCommittee(
        address[] calldata members,
        uint8 quorum,
        uint64 roundPeriod,
        uint64 finalityDepth,
        bytes32 paramsHash,
        uint32 engineVersion
    ) external onlyOwner {
        _groupKeyX = 0;
        _groupKeyParity = 0;
        _setCommittee(members, quorum, roundPeriod, finalityDepth, paramsHash, engineVersion);
    }

    /// @notice Like `setCommittee`, with the committee's FROST group key (from its DKG over these members): the
    ///         config digest covers it and `MarginOracle.attestFrost` verifies certificates under it.
    /// @param groupKeyX The group key's x-coordinate, 0 < x < n (secp256k1's order; the oracle refuses others).
    /// @param groupKeyParity The group key's y-parity, 0 or 1.
    function setFrostCommittee(
        address[] calldata members,
        uint8 quorum,
        uint64 roundPeriod,
        uint64 finalityDepth,
        bytes32 paramsHash,
        uint32 engineVersion,
        uint256 groupKeyX,
        uint8 groupKeyParity
    ) external onlyOwner {
        if (groupKeyX == 0) revert InvalidParameter("groupKeyX", groupKeyX);
        _groupKeyX = groupKeyX;
        _groupKeyParity = groupKeyParity;
        _setCommittee(members, quorum, roundPeriod, finalityDepth, paramsHash, engineVersion);
    }

    /// @notice Return the hash a member's report-signing key signs (EIP-191) to confirm its DKG's result for the
    ///         current committee: keccak256(abi.encode("pmoracle-frost-confirm", chainId, registry, configDigest,
    ///         version, groupKeyX, groupKeyParity, transcriptDigest)). The configDigest binds it to this committee
    ///         epoch: a confirmation never counts for another version, chain or registry.
    function frostConfirmationHash(uint256 groupKeyX, uint8 groupKeyParity, bytes32 transcriptDigest)
        public
        view
        returns (bytes32)
    {
        return keccak256(
            abi.encode(
                "pmoracle-frost-confirm",
                block.chainid,
                address(this),
                configDigest(),
                _version,
                groupKeyX,
                groupKeyParity,
                transcriptDigest
            )
        );
    }

    /// @notice Record a member's confirmation of its DKG result for the current committee (relayed by anyone),
    ///         replacing its earlier one (a later DKG run's); when every member's confirmation is the same, the key is
    ///         installed as a new committee version with the same members and parameters, exactly as
    ///         `setFrostCommittee` would (the configDigest covers the key).
    /// @param version The current committee version (a confirmation racing a committee change fails clearly).
    /// @param groupKeyX The group key's x-coordinate, 0 < x < secp256k1's order.
    /// @param groupKeyParity The group key's y-parity, 0 or 1.
    /// @param transcriptDigest The DKG's transcript digest (SHA-256 over every round-1 package).
    /// @param signature The member's report-signing key's EIP-191 signature of `frostConfirmationHash(...)`.
    function confirmFrostKey(
        uint64 version,
        uint256 groupKeyX,
        uint8 groupKeyParity,
        bytes32 transcriptDigest,
        bytes calldata signature
    ) external {
        if (version != _version) revert NotCurrentVersion(version, _version);
        if (_groupKeyX != 0) revert CommitteeHasGroupKey(version);
        if (groupKeyX == 0 || groupKeyX >= SECP256K1_ORDER) revert InvalidParameter("groupKeyX", groupKeyX);
        if (groupKeyParity > 1) revert InvalidParameter("groupKeyParity", groupKeyParity);
        bytes32 message = frostConfirmationHash(groupKeyX, groupKeyParity, transcriptDigest);
        address member = _recover(MessageHashUtils.toEthSignedMessageHash(message), signature);
        if (_committeeIndex[member] == 0) revert NotCommitteeMember(member, version);
        bytes32 confirmed = keccak256(abi.encode(groupKeyX, groupKeyParity, transcriptDigest));
        if (frostConfirmations[version][member] == confirmed) revert AlreadyConfirmed(member, version);
        frostConfirmations[version][member] = confirmed; // a later DKG run's result replaces an earlier one
        emit FrostKeyConfirmed(version, member, groupKeyX, groupKeyParity, transcriptDigest);
        uint256 n = _members.length;
        uint256 matching = 0;
        for (uint256 i = 0; i < n; ++i) {
            bytes32 other = frostConfirmations[version][_members[i]];
            if (other == confirmed) {
                ++matching;
            } else if (other != bytes32(0)) {
                emit FrostKeyConflict(version, member, _members[i]);
            }
        }
        if (matching == n) {
            _groupKeyX = groupKeyX;
            _groupKeyParity = groupKeyParity;
            _setCommittee(_members, _quorum, _roundPeriod, _finalityDepth, _paramsHash, _engineVersion);
            emit FrostKeyInstalled(version, _version, groupKeyX, groupKeyParity, transcriptDigest);
        }
    }

    /// @notice Return the current committee's FROST group key (x, parity); (0, 0) when it has none.
    function groupKey() external view returns (uint256 x, uint8 parity) {
        return (_groupKeyX, _groupKeyParity);
    }

    function _setCommittee(
        address[] memory members,
        uint8 quorum,
        uint64 roundPeriod,
        uint64 finalityDepth,
        bytes32 paramsHash,
        uint32 engineVersion
    ) internal {
        if (address(oracle) == address(0)) revert OracleNotSet();
        uint256 n = members.length;
        if (n == 0 || n > MAX_COMMITTEE) revert InvalidCommitteeSize(n);
        uint256 minimum = (n + (n - 1) / 3) / 2 + 1;
        if (quorum < minimum || quorum > n) revert InvalidQuorum(quorum, minimum, n);
        if (roundPeriod == 0) revert InvalidRoundPeriod(roundPeriod);
        if (engineVersion == 0) revert InvalidEngineVersion(engineVersion);
        for (uint256 i = 0; i < _members.length; ++i) {
            delete _committeeIndex[_members[i]];
        }
        for (uint256 i = 0; i < n; ++i) {
            address member = members[i];
            Node storage node = _nodes[member];
            if (node.status != NodeStatus.Active || node.stake < minStake) {
                revert IneligibleMember(member, node.status, node.stake);
            }
            if (_committeeIndex[member] != 0) revert DuplicateMember(member);
            _committeeIndex[member] = i + 1;
        }
        uint64 version = _version + 1;
        _version = version;
        _members = members;
        _quorum = quorum;
        _roundPeriod = roundPeriod;
        _finalityDepth = finalityDepth;
        _paramsHash = paramsHash;
        _engineVersion = engineVersion;
        bytes32 digest = configDigest();
        emit CommitteeSet(version, digest, members, quorum, roundPeriod, finalityDepth, paramsHash, engineVersion);
        oracle.setCommittee(digest, version, paramsHash, members, quorum, _groupKeyX, _groupKeyParity);
    }

    /// @notice Return keccak256(abi.encode(chainId, registry, version, members, quorum, roundPeriod,
    ///         finalityDepth, paramsHash, engineVersion)) of the current config (CommitteeConfig.digest() in
    ///         Python), with groupKeyX and groupKeyParity appended to the encoding when the committee has a FROST
    ///         group key (a committee without one keeps the digest it always had; the two encodings differ in
    ///         length and in the members array's offset, so they never collide). Every report signs this digest, so
    ///         a report binds the whole config, engine version and group key included.
    function configDigest() public view returns (bytes32) {
        if (_groupKeyX != 0) {
            return keccak256(
                abi.encode(
                    block.chainid,
                    address(this),
                    _version,
                    _members,
                    _quorum,
                    _roundPeriod,
                    _finalityDepth,
                    _paramsHash,
                    _engineVersion,
                    _groupKeyX,
                    _groupKeyParity
                )
            );
        }
        return keccak256(
            abi.encode(
                block.chainid,
                address(this),
                _version,
                _members,
                _quorum,
                _roundPeriod,
                _finalityDepth,
                _paramsHash,
                _engineVersion
            )
        );
    }

    /// @notice Return the current committee config and its digest.
    function committee() external view returns (CommitteeView memory) {
        return CommitteeView({
            chainId: block.chainid,
            registry: address(this),
            version: _version,
            members: _members,
            quorum: _quorum,
            roundPeriod: _roundPeriod,
            finalityDepth: _finalityDepth,
            paramsHash: _paramsHash,
            engineVersion: _engineVersion,
            groupKeyX: _groupKeyX,
            groupKeyParity: _groupKeyParity,
            configDigest: configDigest()
        });
    }

    /// @notice Return the number of nodes ever registered.
    function nodeCount() external view returns (uint256) {
        return _signers.length;
    }

    /// @notice Return up to `limit` nodes from registration index `offset`.
    /// @param offset First registration index.
    /// @param limit Maximum number of nodes.
    function nodesPage(uint256 offset, uint256 limit) external view returns (Node[] memory page) {
        uint256 total = _signers.length;
        uint256 end = offset >= total ? offset : (total - offset < limit ? total : offset + limit);
        page = new Node[](end - offset);
        for (uint256 i = offset; i < end; ++i) {
            page[i - offset] = _nodes[_signers[i]];
        }
    }

    /// @notice Return the node whose signing address is `signer` (status None if unknown).
    /// @param signer The report-signing address.
    function nodeOf(address signer) external view returns (Node memory) {
        return _nodes[signer];
    }

    /// @notice Set the ledger the oracle's fraud proofs read positions from (once; MarginAccounts).
    /// @param ledger The ledger.
    function setLedger(address ledger) external onlyOwner {
        _oracle().setLedger(ledger);
    }

    /// @notice Slash every signer of a round the oracle found fraudulent (`MarginOracle.proveFraud`); the prover is
    ///         the reporter, rewarded per signer under the same rule as other evidence.
    /// @dev Called once per round (the oracle invalidates it first), so the once-per-round-key rule of the other
    ///      offences does not apply: a signer who also equivocated in that round pays for both.
    /// @param signers The round's signers.
    /// @param configDigest_ The round's config digest.
    /// @param blockNumber The round's block.
    /// @param reporter Who proved the fraud.
    function slashFraud(address[] calldata signers, bytes32 configDigest_, uint64 blockNumber, address reporter)
        external
        nonReentrant
    {
        if (msg.sender != address(oracle)) revert NotOracle(msg.sender);
        uint256 reward = 0;
        for (uint256 i = 0; i < signers.length; ++i) {
            reward += _penalize(signers[i], Offence.Fraud, configDigest_, blockNumber, reporter);
        }
        if (reward != 0) Address.sendValue(payable(reporter), reward);
    }

    /// @notice Slash a signer who signed two different reports for the same round key.
    /// @param reportA The first report.
    /// @param sigA The signer's EIP-712 signature of `reportA` (oracle domain).
    /// @param reportB The second report (same configDigest and blockNumber, different digest).
    /// @param sigB The same signer's signature of `reportB`.
    function slashEquivocation(
        Report calldata reportA,
        bytes calldata sigA,
        Report calldata reportB,
        bytes calldata sigB
    ) external nonReentrant {
        IMarginOracle oracle_ = _oracle();
        if (reportA.configDigest != reportB.configDigest || reportA.blockNumber != reportB.blockNumber) {
            revert RoundKeyMismatch(reportA.configDigest, reportA.blockNumber, reportB.configDigest, reportB.blockNumber);
        }
        bytes32 digestA = oracle_.reportDigest(reportA);
        bytes32 digestB = oracle_.reportDigest(reportB);
        if (digestA == digestB) revert NotAnOffence(digestA, digestB);
        address signerA = _recover(digestA, sigA);
        address signerB = _recover(digestB, sigB);
        if (signerA != signerB) revert SignerMismatch(signerA, signerB);
        _slash(signerA, Offence.Equivocation, reportA.configDigest, reportA.blockNumber);
    }

    /// @notice Slash a signer who signed a report about the canonical block of an attested round key whose
    ///         attested digest differs, once the round's deviation window has passed without the round being
    ///         proven fraudulent. A report about another block hash (a fork reorged out) is no offence: an honest
    ///         node may have signed it before the reorg.
    /// @dev The window closes the slashing race: a colluding quorum that attests a wrong round cannot slash the
    ///      honest minority's correct reports before a fraud proof invalidates the round (docs/dispute.md).
    /// @param report The deviating report.
    /// @param sig The signer's EIP-712 signature of `report` (oracle domain).
    function slashDeviation(Report calldata report, bytes calldata sig) external nonReentrant {
        IMarginOracle oracle_ = _oracle();
        // the round key is kept in the oracle's ring (RoundNotFound otherwise) and was not proven fraudulent
        // (RoundProvenFraudulent), in the report's config
        (bytes32 attestedConfig, bytes32 attestedDigest, uint64 attestedAt) = oracle_.roundDigests(report.blockNumber);
        // the window for a fraud proof has passed
        uint64 opensAt = attestedAt + deviationDelay;
        if (block.timestamp < opensAt) revert DeviationWindowNotOpen(report.blockNumber, attestedAt, opensAt);
        if (attestedConfig != report.configDigest) {
            revert RoundKeyMismatch(report.configDigest, report.blockNumber, attestedConfig, report.blockNumber);
        }
        // the report is about the canonical block: blockhash() while the EVM keeps it (256 blocks), then the hash
        // the oracle checked against blockhash() when it attested the round
        bytes32 canonical = blockhash(report.blockNumber);
        if (canonical == bytes32(0)) canonical = oracle_.roundBlockHash(report.blockNumber);
        if (report.blockHash != canonical) revert NotCanonicalBlockHash(report.blockNumber, report.blockHash, canonical);
        // it differs from the attested report
        bytes32 digest = oracle_.reportDigest(report);
        if (digest == attestedDigest) revert NotAnOffence(digest, attestedDigest);
        address signer = _recover(digest, sig);
        _slash(signer, Offence.Deviation, report.configDigest, report.blockNumber);
    }

    /// @dev Never reverts for lack of stake (a 100% slash leaves 0, and later offences still count); the reward is
    ///      paid last (checks-effects-interactions; the oracle call is to the trusted, registry-set oracle).
    function _slash(address signer, Offence offence, bytes32 configDigest_, uint64 blockNumber) internal {
        bytes32 key = keccak256(abi.encode(signer, configDigest_, blockNumber));
        if (slashed[key]) revert AlreadySlashed(signer, configDigest_, blockNumber);
        slashed[key] = true;
        uint256 reward = _penalize(signer, offence, configDigest_, blockNumber, msg.sender);
        if (reward != 0) Address.sendValue(payable(msg.sender), reward);
    }

    /// @dev Take `slashBps` of the signer's stake, count the offence, eject below the minimum; return the reward
    ///      owed to `reporter` (the caller pays it last).
    function _penalize(address signer, Offence offence, bytes32 configDigest_, uint64 blockNumber, address reporter)
        internal
        returns (uint256 reward)
    {
        Node storage node = _nodes[signer];
        if (node.status == NodeStatus.None) revert UnknownSigner(signer);
        ++offences[signer];
        uint256 amount = node.stake * slashBps / BPS;
        reward = _isRewardedReporter(reporter, signer) ? amount * rewardBps / BPS : 0;
        node.stake -= amount;
        slashedPool += amount - reward;
        emit Slashed(signer, offence, configDigest_, blockNumber, amount, reporter, reward);
        if (node.stake < minStake) _eject(signer, node.stake);
    }

    /// @dev A reward goes only to the operator of another active node holding the minimum stake: the offender's
    ///      own operator and unregistered accounts (a bot copying evidence from the mempool) get nothing, so
    ///      front-running a report pays only a bonded, identified watcher, and self-reporting through a second
    ///      node costs a second minimum stake and still loses slash - reward.
    function _isRewardedReporter(address reporter, address offender) internal view returns (bool) {
        address reporterSigner = signerOf[reporter];
        if (reporterSigner == address(0) || reporterSigner == offender) return false;
        Node storage node = _nodes[reporterSigner];
        return node.status == NodeStatus.Active && node.stake >= minStake;
    }

    /// @dev Eject a member of the current committee once (per config version): the oracle refuses its signatures
    ///      at once, and `MemberEjected` tells the owner to install a committee without it.
    function _eject(address signer, uint256 stake) internal {
        uint256 indexPlusOne = _committeeIndex[signer];
        uint64 version = _version;
        if (indexPlusOne == 0 || ejectedFrom[signer] == version) return;
        ejectedFrom[signer] = version;
        emit MemberEjected(signer, version, stake);
        oracle.ejectMember(version, indexPlusOne - 1);
    }

    function _setEndpoints(Node storage node, bytes calldata peerId, string[] calldata multiaddrs) internal {
        node.peerId = peerId;
        delete node.multiaddrs;
        for (uint256 i = 0; i < multiaddrs.length; ++i) {
            node.multiaddrs.push(multiaddrs[i]);
        }
    }

    function _recover(bytes32 digest, bytes calldata signature) internal pure returns (address recovered) {
        ECDSA.RecoverError err;
        bytes32 errArg;
        (recovered, err, errArg) = ECDSA.tryRecoverCalldata(digest, signature);
        if (err != ECDSA.RecoverError.NoError) revert InvalidSignature(uint8(err), errArg);
    }

    function _oracle() internal view returns (IMarginOracle oracle_) {
        oracle_ = oracle;
        if (address(oracle_) == address(0)) revert OracleNotSet();
    }

    function _activeNodeOf(address operator) internal view returns (Node storage node) {
        address signer = signerOf[operator];
        if (signer == address(0)) revert NotRegistered(operator);
        node = _nodes[signer];
        if (node.status != NodeStatus.Active) revert InvalidNodeStatus(signer, node.status);
    }
}
