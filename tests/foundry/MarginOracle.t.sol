// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {IPortfolioMarginOracle} from "../../contracts/IPortfolioMarginOracle.sol";
import {Report} from "../../contracts/PmoracleTypes.sol";

/// @notice Fuzz tests of the MarginOracle invariants of docs/contracts.md ("Invariants", "MarginOracle").
contract MarginOracleFuzzTest is Base {
    function setUp() public {
        uint256[] memory stakes = new uint256[](N);
        for (uint256 i = 0; i < N; ++i) {
            stakes[i] = 2 * MIN_STAKE;
        }
        deploy(1_000, 5_000, stakes);
    }

    /// Every stored round was signed by at least `quorum` distinct members, and records the canonical hash.
    function testFuzz_attestStoresARoundOnlyWithAQuorumOfMembers(uint256 bitmap, uint64 blockNumber, bytes32 root)
        public
    {
        blockNumber = uint64(bound(blockNumber, 1, type(uint32).max));
        bitmap = bitmap & ((1 << N) - 1);
        Report memory report = anchor(blockNumber, root);
        bytes[] memory sigs = certificate(report, bitmap);
        uint256 signers = popcount(bitmap);
        if (signers < QUORUM) {
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.BelowQuorum.selector, signers, QUORUM));
            oracle.attest(report, bitmap, sigs);
            assertEq(oracle.lastBlockNumber(), 0, "no round without a quorum");
            return;
        }
        oracle.attest(report, bitmap, sigs);
        MarginOracle.RoundView memory round = oracle.roundAt(blockNumber);
        assertEq(round.accountsRoot, root, "root");
        assertEq(round.reportDigest, oracle.reportDigest(report), "the stored digest is the signed one");
        (bytes32 configDigest, bytes32 digest, uint64 attestedAt) = oracle.roundDigests(blockNumber);
        assertEq(configDigest, report.configDigest, "roundDigests config");
        assertEq(digest, oracle.reportDigest(report), "roundDigests digest");
        assertEq(attestedAt, block.timestamp, "roundDigests attestation time");
        assertEq(round.blockHash, blockhash(blockNumber), "the canonical hash is recorded");
        assertEq(oracle.lastBlockNumber(), blockNumber, "lastBlockNumber");
    }

    /// A signature by a key outside the committee never counts, whatever bit it claims.
    function testFuzz_aNonMemberSignatureIsRefused(uint256 outsiderKey, uint8 index) public {
        outsiderKey = bound(outsiderKey, 1, 2 ** 128);
        index = uint8(bound(index, 0, N - 1));
        vmNewer.assume(vm.addr(outsiderKey) != signers[index]);
        Report memory report = anchor(50, keccak256("root"));
        uint256 bitmap = (1 << N) - 1;
        bytes[] memory sigs = certificate(report, bitmap);
        sigs[index] = sign(outsiderKey, oracle.reportDigest(report));
        vm.expectRevert(
            abi.encodeWithSelector(
                MarginOracle.SignerMismatch.selector, index, signers[index], vm.addr(outsiderKey)
            )
        );
        oracle.attest(report, bitmap, sigs);
    }

    /// `lastBlockNumber` only increases, and only to a block whose hash the report carries.
    function testFuzz_onlyNewerRoundsAboutTheChainsBlockAreAttested(uint64 first, uint64 second, bytes32 wrongHash)
        public
    {
        first = uint64(bound(first, 1, 1e9));
        second = uint64(bound(second, 1, 1e9));
        Report memory report = anchor(first, keccak256("a"));
        oracle.attest(report, 7, certificate(report, 7));
        Report memory next = anchor(second > first ? second : first, keccak256("b"));
        bytes[] memory sigs = certificate(next, 7);
        if (second <= first) {
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.StaleBlockNumber.selector, first, first));
            oracle.attest(next, 7, sigs);
            return;
        }
        vmNewer.assume(wrongHash != next.blockHash);
        bytes32 actual = next.blockHash;
        next.blockHash = wrongHash;
        bytes[] memory wrongSigs = certificate(next, 7);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.BlockHashMismatch.selector, second, wrongHash, actual));
        oracle.attest(next, 7, wrongSigs);
        next.blockHash = actual;
        oracle.attest(next, 7, sigs);
        assertEq(oracle.lastBlockNumber(), second, "lastBlockNumber moved forward");
    }

    /// A report must carry the paramsHash its config commits to, so the stored round determines its digest.
    function testFuzz_aReportUnderOtherParamsIsRefused(bytes32 paramsHash) public {
        vmNewer.assume(paramsHash != PARAMS);
        Report memory report = anchor(60, keccak256("root"));
        report.paramsHash = paramsHash;
        bytes[] memory sigs = certificate(report, 15);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.ParamsHashMismatch.selector, paramsHash, PARAMS));
        oracle.attest(report, 15, sigs);
    }

    /// A stored round is found only under its own block number; the last `historyBlocks` blocks stay readable.
    function testFuzz_aRoundIsFoundOnlyUnderItsOwnBlock(uint64 blockNumber, uint64 other) public {
        blockNumber = uint64(bound(blockNumber, 1, 1e9));
        Report memory report = anchor(blockNumber, keccak256("root"));
        oracle.attest(report, 7, certificate(report, 7));
        assertEq(oracle.roundAt(blockNumber).blockNumber, blockNumber, "found");
        vmNewer.assume(other != blockNumber);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.RoundNotFound.selector, other));
        oracle.roundAt(other);
    }

    /// A round's block hash is not stored: blockhash() gives it for 256 blocks, then only the hash recorded from the
    /// attested report (any other report is refused) until the ring drops the round.
    function testFuzz_theBlockHashOfARoundIsRecordedFromItsReport(uint64 blockNumber, uint16 later, bytes32 other)
        public
    {
        blockNumber = uint64(bound(blockNumber, 1, 1e9));
        Report memory report = anchor(blockNumber, keccak256("root"));
        oracle.attest(report, 7, certificate(report, 7));
        assertEq(oracle.roundBlockHash(blockNumber), report.blockHash, "blockhash() while the EVM keeps it");
        vm.roll(uint256(blockNumber) + 1 + bound(later, 256, HISTORY - 1));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.RoundBlockHashNotRecorded.selector, blockNumber));
        oracle.roundBlockHash(blockNumber);
        assertEq(oracle.roundAt(blockNumber).blockHash, bytes32(0), "the view says it is unknown");
        vmNewer.assume(other != report.blockHash);
        Report memory forged = makeReport(blockNumber, other, keccak256("root"), 7);
        vm.expectRevert(
            abi.encodeWithSelector(
                MarginOracle.ReportMismatch.selector, blockNumber, oracle.reportDigest(forged), oracle.reportDigest(report)
            )
        );
        oracle.recordRoundBlockHash(forged);
        oracle.recordRoundBlockHash(report);
        assertEq(oracle.roundBlockHash(blockNumber), report.blockHash, "recorded");
        assertEq(oracle.roundAt(blockNumber).blockHash, report.blockHash, "the view returns it");
        Report memory absent = makeReport(blockNumber + 1, report.blockHash, keccak256("root"), 7);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.RoundNotFound.selector, blockNumber + 1));
        oracle.recordRoundBlockHash(absent);
    }

    /// `verifyMargin` succeeds iff the leaf is under the latest round's root and the round is fresh enough.
    function testFuzz_verifyMarginAcceptsExactlyTheAttestedLeaf(
        address account,
        uint128 im,
        uint128 mm,
        int128 equity,
        bytes32 sibling,
        uint128 tamper,
        uint16 age
    ) public {
        bytes32 leaf = oracle.computeLeaf(account, im, mm, equity);
        bytes32 root = _hashPair(leaf, sibling);
        Report memory report = anchor(1_000, root);
        oracle.attest(report, 7, certificate(report, 7));
        bytes32[] memory proof = new bytes32[](1);
        proof[0] = sibling;
        vm.roll(1_000 + uint256(age));
        if (age > 256) {
            vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundTooOld.selector, 1_000, age, 256));
            oracle.verifyMargin(account, im, mm, equity, proof);
            return;
        }
        assertEq(oracle.verifyMargin(account, im, mm, equity, proof), 1_000, "the attested leaf verifies");
        vmNewer.assume(tamper != 0);
        uint256 wrongMm = uint256(mm) + tamper;
        vm.expectRevert(
            abi.encodeWithSelector(IPortfolioMarginOracle.InvalidMarginProof.selector, account, 1_000, root)
        );
        oracle.verifyMargin(account, im, wrongMm, equity, proof);
    }

    /// Only the registry installs committees and ejects members.
    function testFuzz_onlyTheRegistryChangesTheCommittee(address caller) public {
        vmNewer.assume(caller != address(registry));
        address[] memory members = new address[](1);
        members[0] = caller;
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NotRegistry.selector, caller));
        oracle.setCommittee(bytes32(0), 9, bytes32(0), members, 1, 0, 0);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NotRegistry.selector, caller));
        oracle.ejectMember(1, 0);
    }

    /// An ejection flips one bit of the ejected bitmap of the current version and changes nothing else.
    function testFuzz_anEjectionChangesOnlyItsBit(uint256 index) public {
        index = bound(index, 0, N - 1);
        bytes32 digest = oracle.configDigest();
        vm.prank(address(registry));
        oracle.ejectMember(1, index);
        (bytes32 current, uint256 ejected) = oracle.ejectedMembers();
        assertEq(ejected, 1 << index, "one bit");
        assertEq(current, digest, "of the current config");
        assertEq(oracle.configDigest(), digest, "same digest");
        assertEq(oracle.configVersion(), 1, "same version");
        address[] memory members = oracle.members();
        for (uint256 i = 0; i < N; ++i) {
            assertEq(uint256(uint160(members[i])), uint256(uint160(signers[i])), "same members");
        }
        vm.prank(address(registry));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidEjection.selector, 2, index));
        oracle.ejectMember(2, index);
    }

    function _hashPair(bytes32 a, bytes32 b) internal pure returns (bytes32) {
        return a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
    }
}
