// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {MessageHashUtils} from "@openzeppelin/contracts/utils/cryptography/MessageHashUtils.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";
import {Report} from "../../contracts/PmoracleTypes.sol";

/// @dev Cheatcodes forge 1.7.1 has that forge-std 1.1.2's `Vm` does not declare.
interface VmNewer {
    function setBlockhash(uint256 blockNumber, bytes32 blockHash) external;
    function assume(bool condition) external pure;
    function expectPartialRevert(bytes4 selector) external;
}

/// @notice What forge reads from `targetSelectors()` (forge-std's StdInvariant.FuzzSelector).
struct FuzzSelector {
    address addr;
    bytes4[] selectors;
}

/// @notice Cheatcodes, assertions that revert with the values, and a deployed registry + oracle + committee.
/// @dev forge-std 1.1.2 from npm ships `Vm.sol` but not the ds-test its `Test.sol` imports, so the tests use the
///      cheatcode interface directly and this small base (forge fails a test on any revert).
abstract contract Base {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));
    VmNewer internal constant vmNewer = VmNewer(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant N = 4;
    uint8 internal constant QUORUM = 3;
    uint256 internal constant MIN_STAKE = 1 ether;
    uint64 internal constant HISTORY = 1024;
    uint64 internal constant DEVIATION_DELAY = 1 hours; // the registry's deviation window
    bytes32 internal constant PARAMS = keccak256("pmoracle-forge-params");

    SolverRegistry internal registry;
    MarginOracle internal oracle;
    address internal owner = address(0xA11CE);
    uint256[] internal signerKeys;
    address[] internal signers;
    address[] internal operators;

    error AssertionFailed(string what, uint256 left, uint256 right);
    error AssertionFailedBytes32(string what, bytes32 left, bytes32 right);

    function assertEq(uint256 left, uint256 right, string memory what) internal pure {
        if (left != right) revert AssertionFailed(what, left, right);
    }

    function assertEq(bytes32 left, bytes32 right, string memory what) internal pure {
        if (left != right) revert AssertionFailedBytes32(what, left, right);
    }

    function assertTrue(bool condition, string memory what) internal pure {
        if (!condition) revert AssertionFailed(what, 0, 1);
    }

    /// @dev Deploy registry and oracle, register `N` nodes staked `stakes[i]` and make them the committee.
    function deploy(uint256 slashBps, uint256 rewardBps, uint256[] memory stakes) internal {
        registry = new SolverRegistry(owner, MIN_STAKE, 1 days, slashBps, rewardBps, DEVIATION_DELAY);
        oracle = new MarginOracle(address(registry), HISTORY, 256);
        vm.prank(owner);
        registry.setOracle(oracle);
        delete signerKeys;
        delete signers;
        delete operators;
        for (uint256 i = 0; i < stakes.length; ++i) {
            registerNode(0x5EC0 + i, address(uint160(0x0BE0 + i)), stakes[i]);
        }
        address[] memory members = new address[](N);
        for (uint256 i = 0; i < N; ++i) {
            members[i] = signers[i];
        }
        vm.prank(owner);
        registry.setCommittee(members, QUORUM, 1, 0, PARAMS, 1);
    }

    function registerNode(uint256 key, address operator, uint256 stake) internal {
        address signer = vm.addr(key);
        bytes32 pop = MessageHashUtils.toEthSignedMessageHash(registry.popHash(operator));
        vm.deal(operator, stake);
        vm.prank(operator);
        registry.register{value: stake}(signer, sign(key, pop), hex"0024", new string[](0));
        signerKeys.push(key);
        signers.push(signer);
        operators.push(operator);
    }

    function sign(uint256 key, bytes32 digest) internal returns (bytes memory) {
        (uint8 v, bytes32 r, bytes32 s) = vm.sign(key, digest);
        return abi.encodePacked(r, s, v);
    }

    /// @dev Mine to `blockNumber + 1` with a known hash for `blockNumber` and return the honest report of it.
    function anchor(uint64 blockNumber, bytes32 root) internal returns (Report memory report) {
        vm.roll(uint256(blockNumber) + 1);
        bytes32 hash_ = keccak256(abi.encode("block", blockNumber));
        vmNewer.setBlockhash(blockNumber, hash_);
        report = makeReport(blockNumber, hash_, root, 7);
    }

    /// @dev A report of the current config about (`blockNumber`, `blockHash`) with these accounts.
    function makeReport(uint64 blockNumber, bytes32 blockHash, bytes32 root, uint32 count)
        internal
        view
        returns (Report memory)
    {
        return Report(
            registry.configDigest(), blockNumber, blockHash, PARAMS, root, count, keccak256("risk"), keccak256("market")
        );
    }

    /// @dev The attest arguments signed by the members whose bits are set in `bitmap`.
    function certificate(Report memory report, uint256 bitmap) internal returns (bytes[] memory sigs) {
        bytes32 digest = oracle.reportDigest(report);
        uint256 count = 0;
        for (uint256 i = 0; i < N; ++i) {
            if (bitmap & (1 << i) != 0) ++count;
        }
        sigs = new bytes[](count);
        uint256 k = 0;
        for (uint256 i = 0; i < N; ++i) {
            if (bitmap & (1 << i) != 0) sigs[k++] = sign(signerKeys[i], digest);
        }
    }

    function bound(uint256 x, uint256 min, uint256 max) internal pure returns (uint256) {
        return min + x % (max - min + 1);
    }

    function popcount(uint256 x) internal pure returns (uint256 count) {
        for (; x != 0; x &= x - 1) {
            ++count;
        }
    }
}
