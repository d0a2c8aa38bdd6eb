// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base, FuzzSelector} from "./Base.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {Report} from "../../contracts/PmoracleTypes.sol";

/// @notice Drives the registry and oracle with random attestations, slashes (honest, forged, on reorged hashes),
///         top-ups and sweeps, and keeps ghost values the invariants compare with (Chronicle Scribe's handler
///         pattern: the handler records the state before each call, the invariants check the state after it).
contract RegistryOracleHandler is Base {
    address internal constant RECIPIENT = address(0xF00D);

    // ghost values
    uint64 public lastBlockBefore; // oracle.lastBlockNumber() before the latest call
    uint64[] public attestedBlocks;
    mapping(uint64 blockNumber => bytes32) public canonicalHashOf;
    mapping(address signer => uint256) public ghostOffences;
    uint256 public rewardsToIneligible; // wei paid to a reporter that is not another staked node (must stay 0)
    uint256 public attestsWithEjectedSigner; // successful attests naming an ejected member (must stay 0)
    uint256 public attestsBelowQuorum; // successful attests with fewer than QUORUM signers (must stay 0)
    uint256 public nonCanonicalSlashes; // successful deviation slashes about a non-canonical hash (must stay 0)
    uint256 public earlyDeviationSlashes; // successful deviation slashes before the round's window (must stay 0)
    uint256 public openDeviationsRefused; // deviations refused as DeviationWindowNotOpen once it is open (must stay 0)
    uint256 public earlyDeviationsRefused; // deviations refused as DeviationWindowNotOpen (inside the window)
    uint256 public swept;
    uint64 internal nextRound = 1;

    constructor() {
        uint256[] memory stakes = new uint256[](N + 1);
        for (uint256 i = 0; i <= N; ++i) {
            stakes[i] = MIN_STAKE + i * (MIN_STAKE / 4); // member 0 holds exactly the minimum
        }
        deploy(2_500, 5_000, stakes);
        vm.prank(owner);
        registry.setSlashRecipient(RECIPIENT);
    }

    function nodes() external view returns (address[] memory) {
        return signers;
    }

    function attestedCount() external view returns (uint256) {
        return attestedBlocks.length;
    }

    function contracts() external view returns (SolverRegistry, MarginOracle) {
        return (registry, oracle);
    }

    modifier recordBefore() {
        lastBlockBefore = oracle.lastBlockNumber();
        _;
    }

    /// Attest the next round with the members in `bitmap` (possibly too few, possibly ejected ones).
    function attest(uint256 bitmap, bytes32 root, uint8 gap) external recordBefore {
        bitmap &= (1 << N) - 1;
        uint64 blockNumber = nextRound + gap % 8;
        nextRound = blockNumber + 1;
        Report memory report = anchor(blockNumber, root);
        bytes[] memory sigs = certificate(report, bitmap);
        try oracle.attest(report, bitmap, sigs) {
            attestedBlocks.push(blockNumber);
            canonicalHashOf[blockNumber] = report.blockHash;
            // the round keeps its hash past blockhash()'s window once recorded from its report (forge also resets
            // the hashes set by setBlockhash between calls: the invariants read the recorded one)
            oracle.recordRoundBlockHash(report);
            (, uint256 ejected) = oracle.ejectedMembers();
            if (bitmap & ejected != 0) ++attestsWithEjectedSigner;
            if (popcount(bitmap) < QUORUM) ++attestsBelowQuorum;
        } catch {}
    }

    /// Member `member % (N + 1)` equivocates at a fresh block; `reporter` picks who reports it.
    function equivocate(uint256 member, uint256 reporter) external recordBefore {
        member %= N + 1;
        uint64 blockNumber = nextRound++;
        Report memory a = makeReport(blockNumber, keccak256("h"), keccak256("a"), 1);
        Report memory b = makeReport(blockNumber, keccak256("h"), keccak256("b"), 1);
        bytes memory sigA = sign(signerKeys[member], oracle.reportDigest(a));
        bytes memory sigB = sign(signerKeys[member], oracle.reportDigest(b));
        address from = _reporter(reporter);
        bool eligible = _eligible(from, signers[member]);
        uint256 before = from.balance;
        vm.prank(from);
        registry.slashEquivocation(a, sigA, b, sigB);
        ++ghostOffences[signers[member]];
        if (!eligible) rewardsToIneligible += from.balance - before;
    }

    /// Member `member % N` deviates from the latest attested round, about the canonical hash or another one.
    function deviate(uint256 member, uint256 reporter, bytes32 otherHash, bool canonical) external recordBefore {
        uint64 blockNumber = oracle.lastBlockNumber();
        if (blockNumber == 0) return;
        member %= N;
        bytes32 hash_ = canonical ? canonicalHashOf[blockNumber] : otherHash;
        Report memory report =
            makeReport(blockNumber, hash_, keccak256(abi.encode(otherHash)), 3);
        bytes memory sig = sign(signerKeys[member], oracle.reportDigest(report));
        address from = _reporter(reporter);
        bool eligible = _eligible(from, signers[member]);
        uint256 before = from.balance;
        bool open = block.timestamp >= oracle.roundAt(blockNumber).attestedAt + registry.deviationDelay();
        vm.prank(from);
        try registry.slashDeviation(report, sig) {
            ++ghostOffences[signers[member]];
            if (hash_ != canonicalHashOf[blockNumber]) ++nonCanonicalSlashes;
            if (!open) ++earlyDeviationSlashes;
            if (!eligible) rewardsToIneligible += from.balance - before;
        } catch (bytes memory reason) {
            if (bytes4(reason) == SolverRegistry.DeviationWindowNotOpen.selector) {
                if (open) ++openDeviationsRefused;
                else ++earlyDeviationsRefused;
            }
        }
    }

    /// Time passes (sometimes past the deviation window, 1 hour).
    function warp(uint16 seconds_) external recordBefore {
        vm.warp(block.timestamp + uint256(seconds_) % 7_200);
    }

    /// An operator tops its node up.
    function addStake(uint256 node, uint96 amount) external recordBefore {
        node %= N + 1;
        vm.deal(operators[node], amount);
        vm.prank(operators[node]);
        registry.addStake{value: amount}();
    }

    /// Anyone sweeps the slashed pool to the recipient.
    function sweep() external recordBefore {
        uint256 pool = registry.slashedPool();
        if (pool == 0) return;
        registry.sweepSlashed();
        swept += pool;
    }

    /// Blocks pass (past blockhash()'s window sometimes).
    function roll(uint16 blocks) external recordBefore {
        nextRound += blocks;
        vm.roll(nextRound);
    }

    function _reporter(uint256 seed) internal view returns (address) {
        // an operator of some node (maybe the offender's own), or an account running no node
        return seed % (N + 2) <= N ? operators[seed % (N + 2)] : address(0xC0FFEE);
    }

    function _eligible(address reporter, address offender) internal view returns (bool) {
        address own = registry.signerOf(reporter);
        return own != address(0) && own != offender && registry.nodeOf(own).stake >= MIN_STAKE;
    }
}

/// @notice The registry and oracle invariants of docs/contracts.md, checked after every handler call.
contract RegistryOracleInvariantTest is Base {
    RegistryOracleHandler internal handler;
    address[] internal targets;
    FuzzSelector[] internal selectors;

    function setUp() public {
        handler = new RegistryOracleHandler();
        (registry, oracle) = handler.contracts();
        targets.push(address(handler));
        bytes4[] memory fns = new bytes4[](7);
        fns[0] = RegistryOracleHandler.attest.selector;
        fns[1] = RegistryOracleHandler.equivocate.selector;
        fns[2] = RegistryOracleHandler.deviate.selector;
        fns[3] = RegistryOracleHandler.addStake.selector;
        fns[4] = RegistryOracleHandler.sweep.selector;
        fns[5] = RegistryOracleHandler.roll.selector;
        fns[6] = RegistryOracleHandler.warp.selector;
        selectors.push(FuzzSelector(address(handler), fns));
    }

    /// @dev Read by forge (forge-std's StdInvariant.targetContracts / targetSelectors).
    function targetContracts() public view returns (address[] memory) {
        return targets;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return selectors;
    }

    /// MarginOracle: lastBlockNumber never decreases.
    function invariant_lastBlockNumberNeverDecreases() public view {
        assertTrue(handler.lastBlockBefore() <= oracle.lastBlockNumber(), "lastBlockNumber decreased");
    }

    /// MarginOracle: every round was attested by a quorum of non-ejected members and records the canonical hash;
    /// a kept round is found under its own block number.
    function invariant_roundsHaveAQuorumAndTheCanonicalHash() public view {
        assertEq(handler.attestsBelowQuorum(), 0, "a round attested below quorum");
        assertEq(handler.attestsWithEjectedSigner(), 0, "a round attested with an ejected signer");
        uint256 count = handler.attestedCount();
        for (uint256 i = count > 8 ? count - 8 : 0; i < count; ++i) {
            uint64 b = handler.attestedBlocks(i);
            if (oracle.lastBlockNumber() - b >= HISTORY) continue;
            assertEq(oracle.roundBlockHash(b), handler.canonicalHashOf(b), "recorded hash");
            assertEq(oracle.roundAt(b).blockNumber, b, "round under its own block");
        }
    }

    /// The oracle holds the registry's config digest.
    function invariant_oracleHoldsTheRegistrysConfig() public view {
        assertEq(oracle.configDigest(), registry.configDigest(), "configDigest");
        assertEq(oracle.configDigestOf(oracle.configVersion()), registry.configDigest(), "configDigestOf");
    }

    /// SolverRegistry solvency: the balance is the stakes plus the slashed pool; what left went to the recipient.
    function invariant_registryIsSolvent() public view {
        address[] memory nodes = handler.nodes();
        uint256 staked = 0;
        for (uint256 i = 0; i < nodes.length; ++i) {
            staked += registry.nodeOf(nodes[i]).stake;
        }
        assertEq(address(registry).balance, staked + registry.slashedPool(), "balance == stakes + pool");
        assertEq(address(0xF00D).balance, handler.swept(), "only the recipient received swept stake");
    }

    /// SolverRegistry: every proven offence counts, and only canonical deviations are offences.
    function invariant_everyOffenceCountsAndOnlyCanonicalDeviations() public view {
        address[] memory nodes = handler.nodes();
        for (uint256 i = 0; i < nodes.length; ++i) {
            assertEq(registry.offences(nodes[i]), handler.ghostOffences(nodes[i]), "offences");
        }
        assertEq(handler.nonCanonicalSlashes(), 0, "a deviation about a non-canonical hash was slashed");
    }

    /// SolverRegistry: deviation evidence never slashes before the round's deviation window has passed, and the
    /// window never refuses evidence after it (`SolverRegistry.t.sol` and `FraudProof.t.sol` fuzz what follows:
    /// a slash unless the round was invalidated).
    function invariant_deviationsSlashOnlyAfterTheWindow() public view {
        assertEq(handler.earlyDeviationSlashes(), 0, "a deviation was slashed inside the window");
        assertEq(handler.openDeviationsRefused(), 0, "a deviation was refused after the window");
    }

    /// SolverRegistry: rewards go only to another staked node.
    function invariant_rewardsOnlyToAnotherStakedNode() public view {
        assertEq(handler.rewardsToIneligible(), 0, "reward to the offender or an unregistered reporter");
    }

    /// SolverRegistry: a member slashed below the minimum stake is ejected in the oracle; nobody else is.
    function invariant_membersBelowTheMinimumAreEjected() public view {
        address[] memory nodes = handler.nodes();
        (, uint256 ejected) = oracle.ejectedMembers();
        for (uint256 i = 0; i < N; ++i) {
            bool slashedBelow = registry.offences(nodes[i]) > 0 && registry.ejectedFrom(nodes[i]) == 1;
            assertEq(ejected >> i & 1, slashedBelow ? 1 : 0, "ejected bit");
            // a member slashed below the minimum (even if topped up since) stays ejected in this config
            if (registry.offences(nodes[i]) > 0 && registry.nodeOf(nodes[i]).stake < MIN_STAKE) {
                assertEq(ejected >> i & 1, 1, "below the minimum but not ejected");
            }
        }
    }
}
