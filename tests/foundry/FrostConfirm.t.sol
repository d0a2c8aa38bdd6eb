// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {Base} from "./Base.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";

/// @notice `SolverRegistry.confirmFrostKey` (docs/contracts.md): n of n identical confirmations by the members'
///         report-signing keys install the group key as a new committee version, as `setFrostCommittee` does; one
///         different confirmation blocks it until its member confirms again; strangers, replays and repeats are refused.
contract FrostConfirmTest is Base {
    uint256 internal constant ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141;
    uint256 internal constant KEY_X = 0x1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF1234567890ABCDEF;
    uint8 internal constant PARITY = 1;
    bytes32 internal constant TRANSCRIPT = keccak256("transcript");

    function setUp() public {
        uint256[] memory stakes = new uint256[](N + 1); // node N: registered and staked, not in the committee
        for (uint256 i = 0; i <= N; ++i) {
            stakes[i] = 2 * MIN_STAKE;
        }
        deploy(1_000, 5_000, stakes);
    }

    function _signature(uint256 key, uint256 x, uint8 parity, bytes32 transcript) internal returns (bytes memory) {
        return sign(key, MessageHashUtils.toEthSignedMessageHash(registry.frostConfirmationHash(x, parity, transcript)));
    }

    function _confirm(address relayer, uint256 member, uint256 x, uint8 parity, bytes32 transcript) internal {
        bytes memory sig = _signature(signerKeys[member], x, parity, transcript);
        uint64 version = registry.committee().version;
        vm.prank(relayer);
        registry.confirmFrostKey(version, x, parity, transcript, sig);
    }

    /// Every member confirming one key installs it (relayed by anyone), as a new version the oracle holds.
    function testFuzz_everyMemberConfirmingInstallsTheKey(address relayer, uint8 order) public {
        uint64 version = registry.committee().version;
        bytes32 before = registry.configDigest();
        for (uint256 k = 0; k < N; ++k) {
            uint256 member = (k + order) % N; // any order
            _confirm(relayer, member, KEY_X, PARITY, TRANSCRIPT);
            (uint256 x,) = registry.groupKey();
            if (k + 1 < N) {
                assertEq(x, 0, "no key before the last member confirmed");
                assertEq(registry.committee().version, version, "no new version before the last");
                assertEq(registry.configDigest(), before, "the digest stays before the last");
            }
        }
        (uint256 keyX, uint8 parity) = registry.groupKey();
        assertEq(keyX, KEY_X, "the confirmed key is installed");
        assertEq(parity, PARITY, "with its parity");
        assertEq(registry.committee().version, version + 1, "as a new committee version");
        assertEq(
            registry.frostConfirmations(version, signers[0]),
            keccak256(abi.encode(KEY_X, PARITY, TRANSCRIPT)),
            "the confirmation is recorded"
        );
        assertEq(oracle.configDigest(), registry.configDigest(), "the oracle holds the keyed digest");
        assertTrue(registry.configDigest() != before, "the digest covers the key");
        for (uint256 i = 0; i < N; ++i) {
            assertTrue(registry.committee().members[i] == signers[i], "the same members, in the same order");
        }
        assertEq(registry.committee().quorum, QUORUM, "the same quorum");
        // the new version has a key: nothing more to confirm
        bytes memory late = _signature(signerKeys[0], KEY_X, PARITY, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.CommitteeHasGroupKey.selector, version + 1));
        registry.confirmFrostKey(version + 1, KEY_X, PARITY, TRANSCRIPT, late);
    }

    /// One member confirming another key or transcript blocks installation until it confirms the others' values (a
    /// later DKG run's); the owner can still install one.
    function testFuzz_aDifferentConfirmationBlocksInstallation(uint8 dissenter, bool otherKey, uint256 x, bool resolve)
        public
    {
        dissenter = uint8(bound(dissenter, 0, N - 1));
        x = bound(x, 1, ORDER - 1);
        vmNewer.assume(x != KEY_X);
        uint64 version = registry.committee().version;
        for (uint256 i = 0; i < N; ++i) {
            if (i == dissenter) {
                _confirm(address(this), i, otherKey ? x : KEY_X, PARITY, otherKey ? TRANSCRIPT : keccak256("other"));
            } else {
                _confirm(address(this), i, KEY_X, PARITY, TRANSCRIPT);
            }
        }
        (uint256 keyX,) = registry.groupKey();
        assertEq(keyX, 0, "no key installed after a conflict");
        assertEq(registry.committee().version, version, "no new version");
        if (resolve) {
            _confirm(address(this), dissenter, KEY_X, PARITY, TRANSCRIPT); // its confirmation replaced
            assertEq(registry.committee().version, version + 1, "installed once every confirmation matches");
        } else {
            vm.prank(owner);
            registry.setFrostCommittee(signers4(), QUORUM, 1, 0, PARAMS, 1, KEY_X, PARITY);
        }
        (keyX,) = registry.groupKey();
        assertEq(keyX, KEY_X, "the key is installed");
    }

    /// A stranger's, a repeated, a stale or a malformed confirmation is refused with the reason.
    function testFuzz_refusals(uint256 strangerKey, uint256 badX) public {
        strangerKey = bound(strangerKey, 1, 2 ** 128);
        vmNewer.assume(strangerKey < 0x5EC0 || strangerKey > 0x5EC0 + N);
        uint64 version = registry.committee().version;
        // not a member: a stranger, and the registered node outside the committee
        bytes memory sig = _signature(strangerKey, KEY_X, PARITY, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.NotCommitteeMember.selector, vm.addr(strangerKey), version));
        registry.confirmFrostKey(version, KEY_X, PARITY, TRANSCRIPT, sig);
        sig = _signature(signerKeys[N], KEY_X, PARITY, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.NotCommitteeMember.selector, signers[N], version));
        registry.confirmFrostKey(version, KEY_X, PARITY, TRANSCRIPT, sig);
        // a member's signature of other values recovers to someone else
        sig = _signature(signerKeys[0], KEY_X, PARITY, TRANSCRIPT);
        vmNewer.expectPartialRevert(SolverRegistry.NotCommitteeMember.selector);
        registry.confirmFrostKey(version, KEY_X, PARITY, keccak256("edited"), sig);
        // the same values twice
        registry.confirmFrostKey(version, KEY_X, PARITY, TRANSCRIPT, sig);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.AlreadyConfirmed.selector, signers[0], version));
        registry.confirmFrostKey(version, KEY_X, PARITY, TRANSCRIPT, sig);
        // another version
        sig = _signature(signerKeys[1], KEY_X, PARITY, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.NotCurrentVersion.selector, version + 1, version));
        registry.confirmFrostKey(version + 1, KEY_X, PARITY, TRANSCRIPT, sig);
        // a key the oracle could not store
        badX = badX == 0 ? 0 : bound(badX, ORDER, type(uint256).max);
        sig = _signature(signerKeys[1], badX, PARITY, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.InvalidParameter.selector, "groupKeyX", badX));
        registry.confirmFrostKey(version, badX, PARITY, TRANSCRIPT, sig);
        sig = _signature(signerKeys[1], KEY_X, 2, TRANSCRIPT);
        vm.expectRevert(abi.encodeWithSelector(SolverRegistry.InvalidParameter.selector, "groupKeyParity", 2));
        registry.confirmFrostKey(version, KEY_X, 2, TRANSCRIPT, sig);
    }

    /// A confirmation signed for one committee version never counts for the next (the hash covers the digest).
    function test_aConfirmationIsNotReplayedIntoTheNextVersion() public {
        uint64 version = registry.committee().version;
        bytes memory sig = _signature(signerKeys[0], KEY_X, PARITY, TRANSCRIPT);
        vm.prank(owner);
        registry.setCommittee(signers4(), QUORUM, 1, 0, PARAMS, 1); // the same members, a new version
        vmNewer.expectPartialRevert(SolverRegistry.NotCommitteeMember.selector);
        registry.confirmFrostKey(version + 1, KEY_X, PARITY, TRANSCRIPT, sig);
        assertEq(registry.frostConfirmations(version + 1, signers[0]), bytes32(0), "nothing recorded");
    }

    function signers4() internal view returns (address[] memory members) {
        members = new address[](N);
        for (uint256 i = 0; i < N; ++i) {
            members[i] = signers[i];
        }
    }
}
