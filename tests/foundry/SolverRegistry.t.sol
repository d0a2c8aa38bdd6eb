// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {Report} from "../../contracts/PmoracleTypes.sol";

/// @notice Fuzz tests of the SolverRegistry invariants of docs/contracts.md ("Invariants", "SolverRegistry") and of
///         its slashing rules ("SolverRegistry: slashing").
contract SolverRegistryFuzzTest is Base {
    uint256 internal constant OFFENDER = 3;

    function setUp() public {
        _deployWith(1_000, 5_000, 2 * MIN_STAKE);
    }

    function _deployWith(uint256 slashBps, uint256 rewardBps, uint256 stake) internal {
        uint256[] memory stakes = new uint256[](N + 1); // node N: registered and staked, not in the committee
        for (uint256 i = 0; i <= N; ++i) {
            stakes[i] = stake;
        }
        deploy(slashBps, rewardBps, stakes);
    }

    function _equivocate(uint256 member, uint64 blockNumber, address reporter) internal {
        Report memory a = makeReport(blockNumber, keccak256("h"), keccak256("a"), 1);
        Report memory b = makeReport(blockNumber, keccak256("h"), keccak256("b"), 1);
        bytes memory sigA = sign(signerKeys[member], oracle.reportDigest(a));
        bytes memory sigB = sign(signerKeys[member], oracle.reportDigest(b));
        vm.prank(reporter);
        registry.slashEquivocation(a, sigA, b, sigB);
    }

    function _solvent() internal view {
        uint256 staked = 0;
        for (uint256 i = 0; i < signers.length; ++i) {
            staked += registry.nodeOf(signers[i]).stake;
        }
        assertEq(address(registry).balance, staked + registry.slashedPool(), "balance == stakes + slashed pool");
    }

    /// Each slash takes slashBps of what is left, never reverts for lack of stake, and counts; the registry stays
    /// solvent; a member left below the minimum stake is ejected in the oracle.
    function testFuzz_slashesTakeAFractionOfWhatIsLeftAndAlwaysCount(
        uint256 slashBps,
        uint256 rewardBps,
        uint256 stake,
        uint8 offences
    ) public {
        slashBps = bound(slashBps, 1, 10_000);
        rewardBps = bound(rewardBps, 0, 10_000);
        stake = bound(stake, MIN_STAKE, 1_000 ether);
        offences = uint8(bound(offences, 1, 12));
        _deployWith(slashBps, rewardBps, stake);
        uint256 expected = stake;
        for (uint64 k = 0; k < offences; ++k) {
            _equivocate(OFFENDER, 100 + k, operators[N]);
            expected -= expected * slashBps / 10_000;
            assertEq(registry.nodeOf(signers[OFFENDER]).stake, expected, "stake after each slash");
            assertEq(registry.offences(signers[OFFENDER]), k + 1, "every offence counts");
            _solvent();
        }
        bool below = expected < MIN_STAKE;
        (, uint256 ejected) = oracle.ejectedMembers();
        assertEq(ejected, below ? 1 << OFFENDER : 0, "ejected iff below the minimum stake");
        assertEq(registry.ejectedFrom(signers[OFFENDER]), below ? 1 : 0, "ejectedFrom");
    }

    /// The reward goes only to the operator of another active node holding the minimum stake.
    function testFuzz_onlyAnotherStakedNodeIsRewarded(uint256 reporterSeed, address stranger) public {
        vmNewer.assume(stranger.code.length == 0 && uint160(stranger) > 0xFFFF && registry.signerOf(stranger) == address(0));
        address reporter = reporterSeed % 2 == 0 ? operators[bound(reporterSeed, 0, N)] : stranger;
        bool eligible = registry.signerOf(reporter) != address(0) && reporter != operators[OFFENDER];
        uint256 before = reporter.balance;
        _equivocate(OFFENDER, 100, reporter);
        uint256 amount = 2 * MIN_STAKE / 10;
        uint256 reward = eligible ? amount / 2 : 0;
        assertEq(reporter.balance - before, reward, "reward");
        assertEq(registry.slashedPool(), amount - reward, "the rest stays in the pool");
    }

    /// Deviation evidence must name the canonical hash of its block: blockhash() while the EVM keeps it, then the
    /// hash the oracle recorded from the attested report (`recordRoundBlockHash`, refused until then).
    function testFuzz_deviationOnlyAboutTheCanonicalBlock(bytes32 otherHash, uint16 later) public {
        Report memory attested = anchor(1_000, keccak256("honest"));
        oracle.attest(attested, 7, certificate(attested, 7));
        vm.roll(1_001 + uint256(later)); // past 256 blocks blockhash() reads 0: the recorded hash decides
        vm.warp(block.timestamp + DEVIATION_DELAY); // the deviation window has passed
        Report memory deviant = makeReport(attested.blockNumber, attested.blockHash, keccak256("deviant"), 7);
        vmNewer.assume(otherHash != attested.blockHash);
        deviant.blockHash = otherHash;
        bytes memory sig = sign(signerKeys[OFFENDER], oracle.reportDigest(deviant));
        if (later >= 256) {
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.RoundBlockHashNotRecorded.selector, 1_000));
            registry.slashDeviation(deviant, sig);
            oracle.recordRoundBlockHash(attested);
        }
        vm.expectRevert(
            abi.encodeWithSelector(SolverRegistry.NotCanonicalBlockHash.selector, 1_000, otherHash, attested.blockHash)
        );
        registry.slashDeviation(deviant, sig);
        deviant.blockHash = attested.blockHash;
        sig = sign(signerKeys[OFFENDER], oracle.reportDigest(deviant));
        registry.slashDeviation(deviant, sig);
        assertEq(registry.offences(signers[OFFENDER]), 1, "the canonical deviation is slashed");
    }

    /// Deviation evidence is refused until `deviationDelay` seconds after the round's attestation, naming the round,
    /// the attestation time and when the window opens; from then on it slashes (the round was not invalidated).
    /// Equivocation needs no window: it is slashed at once.
    function testFuzz_deviationWaitsForTheWindowEquivocationDoesNot(uint32 elapsed, uint64 start) public {
        start = uint64(bound(start, 1, type(uint32).max - 3 days)); // the oracle keeps uint32 seconds (until 2106)
        vm.warp(start);
        Report memory attested = anchor(1_000, keccak256("honest"));
        oracle.attest(attested, 7, certificate(attested, 7));
        uint64 attestedAt = uint64(block.timestamp);
        uint64 opensAt = attestedAt + DEVIATION_DELAY;
        Report memory deviant = makeReport(attested.blockNumber, attested.blockHash, keccak256("deviant"), 7);
        bytes memory sig = sign(signerKeys[OFFENDER], oracle.reportDigest(deviant));
        uint256 wait = bound(elapsed, 0, 2 * uint256(DEVIATION_DELAY));
        vm.warp(attestedAt + wait);
        if (wait < DEVIATION_DELAY) {
            vm.expectRevert(
                abi.encodeWithSelector(SolverRegistry.DeviationWindowNotOpen.selector, 1_000, attestedAt, opensAt)
            );
            registry.slashDeviation(deviant, sig);
            assertEq(registry.offences(signers[OFFENDER]), 0, "no slash before the window opens");
            _equivocate(OFFENDER, 1_000, operators[N]);
            assertEq(registry.offences(signers[OFFENDER]), 1, "equivocation is slashed at once");
            return;
        }
        registry.slashDeviation(deviant, sig);
        assertEq(registry.offences(signers[OFFENDER]), 1, "slashed once the window is open");
        assertEq(registry.nodeOf(signers[OFFENDER]).stake, 2 * MIN_STAKE * 9 / 10, "stake");
        _solvent();
    }

    /// Evidence is judged only against the round it names: once the oracle's ring overwrote that round (a round
    /// `HISTORY` blocks later in its slot), the evidence is refused `RoundNotFound`, window open or not.
    function testFuzz_deviationFromARoundTheRingOverwroteIsRefused(uint32 wait) public {
        Report memory attested = anchor(1_000, keccak256("honest"));
        oracle.attest(attested, 7, certificate(attested, 7));
        Report memory deviant = makeReport(attested.blockNumber, attested.blockHash, keccak256("deviant"), 7);
        bytes memory sig = sign(signerKeys[OFFENDER], oracle.reportDigest(deviant));
        Report memory later = anchor(1_000 + HISTORY, keccak256("later"));
        oracle.attest(later, 7, certificate(later, 7));
        vm.warp(block.timestamp + bound(wait, 0, 2 * uint256(DEVIATION_DELAY)));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.RoundNotFound.selector, 1_000));
        registry.slashDeviation(deviant, sig);
        assertEq(registry.offences(signers[OFFENDER]), 0, "nobody slashed");
    }

    /// Only the owner sets the window, within `MAX_DEVIATION_DELAY` and `unbondingDelay`; it applies at once, to
    /// rounds already attested too.
    function testFuzz_theOwnerSetsTheWindowWithinItsBounds(uint64 delay, address caller) public {
        vmNewer.assume(caller != owner);
        vm.prank(caller);
        vm.expectRevert(abi.encodeWithSignature("OwnableUnauthorizedAccount(address)", caller));
        registry.setDeviationDelay(delay);
        uint64 limit = registry.MAX_DEVIATION_DELAY() < registry.unbondingDelay()
            ? registry.MAX_DEVIATION_DELAY()
            : registry.unbondingDelay();
        if (delay > limit) {
            vm.prank(owner);
            vm.expectRevert(abi.encodeWithSelector(SolverRegistry.InvalidParameter.selector, "deviationDelay", delay));
            registry.setDeviationDelay(delay);
            assertEq(registry.deviationDelay(), DEVIATION_DELAY, "unchanged");
            return;
        }
        Report memory attested = anchor(1_000, keccak256("honest"));
        oracle.attest(attested, 7, certificate(attested, 7));
        uint64 attestedAt = uint64(block.timestamp);
        vm.prank(owner);
        registry.setDeviationDelay(delay);
        assertEq(registry.deviationDelay(), delay, "set");
        Report memory deviant = makeReport(attested.blockNumber, attested.blockHash, keccak256("deviant"), 7);
        bytes memory sig = sign(signerKeys[OFFENDER], oracle.reportDigest(deviant));
        if (delay > 0) {
            vm.warp(attestedAt + delay - 1);
            vm.expectRevert(
                abi.encodeWithSelector(SolverRegistry.DeviationWindowNotOpen.selector, 1_000, attestedAt, attestedAt + delay)
            );
            registry.slashDeviation(deviant, sig);
        }
        vm.warp(attestedAt + delay);
        registry.slashDeviation(deviant, sig);
        assertEq(registry.offences(signers[OFFENDER]), 1, "slashed when the new window opens");
    }

    /// A committee is distinct, active, staked members under a Byzantine quorum; anything else is refused.
    function testFuzz_committeeRules(uint8 n, uint8 quorum, bool duplicate) public {
        n = uint8(bound(n, 1, N + 1));
        address[] memory members = new address[](n);
        for (uint256 i = 0; i < n; ++i) {
            members[i] = signers[i];
        }
        if (duplicate && n > 1) members[n - 1] = members[0];
        uint256 minimum = (uint256(n) + (uint256(n) - 1) / 3) / 2 + 1;
        vm.prank(owner);
        if (duplicate && n > 1) {
            vm.expectRevert(abi.encodeWithSelector(SolverRegistry.DuplicateMember.selector, members[0]));
            registry.setCommittee(members, uint8(minimum), 1, 0, PARAMS, 1);
            return;
        }
        if (quorum < minimum || quorum > n) {
            vm.expectRevert(abi.encodeWithSelector(SolverRegistry.InvalidQuorum.selector, quorum, minimum, n));
            registry.setCommittee(members, quorum, 1, 0, PARAMS, 1);
            return;
        }
        registry.setCommittee(members, quorum, 1, 0, PARAMS, 1);
        assertEq(oracle.configDigest(), registry.configDigest(), "the oracle holds the registry's digest");
        assertEq(oracle.configDigestOf(2), registry.configDigest(), "configDigestOf[version]");
        (, uint256 ejected) = oracle.ejectedMembers();
        assertEq(ejected, 0, "a new config starts with nobody ejected");
    }

    /// Registration needs a proof of possession by the signing key for the calling operator.
    function testFuzz_registrationNeedsAProofOfPossession(uint256 wrongKey, address operator) public {
        uint256 key = 0xBEEF;
        wrongKey = bound(wrongKey, 1, 2 ** 128);
        vmNewer.assume(wrongKey != key && operator != address(0) && registry.signerOf(operator) == address(0));
        vmNewer.assume(operator.code.length == 0);
        bytes32 pop = keccak256(abi.encodePacked("\x19Ethereum Signed Message:\n32", registry.popHash(operator)));
        bytes memory bad = sign(wrongKey, pop);
        vm.deal(operator, MIN_STAKE);
        vm.prank(operator);
        vm.expectRevert(
            abi.encodeWithSelector(SolverRegistry.InvalidProofOfPossession.selector, vm.addr(key), vm.addr(wrongKey))
        );
        registry.register{value: MIN_STAKE}(vm.addr(key), bad, hex"00", new string[](0));
    }

    /// Slashed stake leaves only to the recipient the owner set, all of it.
    function testFuzz_sweepSendsThePoolToTheRecipient(address recipient, uint8 offences) public {
        vmNewer.assume(recipient.code.length == 0 && uint160(recipient) > 0xFFFF && recipient.balance == 0);
        offences = uint8(bound(offences, 1, 5));
        for (uint64 k = 0; k < offences; ++k) {
            _equivocate(k % N, 100 + k, address(0xC0FFEE)); // no node: unrewarded, all to the pool
        }
        uint256 pool = registry.slashedPool();
        vm.prank(owner);
        registry.setSlashRecipient(recipient);
        registry.sweepSlashed();
        assertEq(recipient.balance, pool, "the whole pool");
        assertEq(registry.slashedPool(), 0, "pool emptied");
        _solvent();
        vm.expectRevert(SolverRegistry.NothingToSweep.selector);
        registry.sweepSlashed();
    }
}
