// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";
import {FrostVerifier} from "../../contracts/FrostVerifier.sol";
import {Report} from "../../contracts/PmoracleTypes.sol";

/// @dev forge 1.7.1's `createWallet` (forge-std 1.1.2's `Vm` does not declare it): k G's affine coordinates.
interface VmWallet {
    struct Wallet {
        address addr;
        uint256 publicKeyX;
        uint256 publicKeyY;
        uint256 privateKey;
    }

    function createWallet(uint256 privateKey) external returns (Wallet memory);
}

/// @notice Fuzz tests of `MarginOracle.attestFrost` and the FROST group key of a committee (docs/contracts.md).
/// @dev The group key is a single secret here and signatures are single-party Schnorr signatures z = k + c x with
///      FrostVerifier's challenge: exactly what a t-of-n FROST aggregate is (the anvil tests use real t-of-n ones).
contract FrostAttestTest is Base {
    VmWallet internal constant wallets = VmWallet(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant ORDER = FrostVerifier.ORDER;
    uint256 internal constant GROUP_SECRET = 0x9f0a2b4c6d8e1f3a5b7c9d0e2f4a6b8c0d1e3f5a7b9c1d2e4f6a8b0c2d3e5f7a;

    uint256 internal px;
    uint8 internal parity;

    function setUp() public {
        uint256[] memory stakes = new uint256[](N);
        for (uint256 i = 0; i < N; ++i) {
            stakes[i] = 2 * MIN_STAKE;
        }
        deploy(1_000, 5_000, stakes);
        VmWallet.Wallet memory key = wallets.createWallet(GROUP_SECRET);
        px = key.publicKeyX;
        parity = uint8(key.publicKeyY & 1);
        vm.prank(owner);
        registry.setFrostCommittee(signers, QUORUM, 1, 0, PARAMS, 1, px, parity);
    }

    /// @dev The fields of `report` that `attestFrost` takes.
    function fields(Report memory report) internal pure returns (MarginOracle.FrostReport memory) {
        return MarginOracle.FrostReport(
            report.blockNumber, report.accountsRoot, report.accountCount, report.riskArraysRoot, report.marketHash
        );
    }

    /// @dev A Schnorr signature (R, z) of `digest` under the group key with nonce `nonce`.
    function frostSign(bytes32 digest, uint256 nonce) internal returns (uint256 rx, uint256 ry, uint256 z) {
        VmWallet.Wallet memory r = wallets.createWallet(nonce % (ORDER - 1) + 1);
        rx = r.publicKeyX;
        ry = r.publicKeyY;
        uint256 c = FrostVerifier.challenge(px, parity, digest, rx, ry);
        z = addmod(r.privateKey, mulmod(c, GROUP_SECRET, ORDER), ORDER);
    }

    /// A valid FROST certificate stores the round as `attest` does, marked FROST, with the quorum bitmap, and emits
    /// the `RoundAttested` event `attest` emits.
    function testFuzz_aValidFrostSignatureAttests(uint64 blockNumber, bytes32 root, uint256 nonce, uint32 count)
        public
    {
        blockNumber = uint64(bound(blockNumber, 1, type(uint32).max));
        Report memory report = anchor(blockNumber, root);
        report.accountCount = count;
        report.riskArraysRoot = keccak256(abi.encode("risk", nonce));
        report.marketHash = keccak256(abi.encode("market", nonce));
        bytes32 digest = oracle.reportDigest(report);
        (uint256 rx, uint256 ry, uint256 z) = frostSign(digest, nonce);
        vm.warp(1_700_000_000 + uint256(count % 1_000_000));
        vm.expectEmit(true, true, false, true, address(oracle));
        emit MarginOracle.RoundAttested(
            blockNumber, report.configDigest, digest, root, count, 0x7, address(this), report.riskArraysRoot,
            report.marketHash, 1
        );
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
        MarginOracle.RoundView memory round = oracle.roundAt(blockNumber);
        assertEq(round.blockNumber, blockNumber, "blockNumber");
        assertEq(round.accountsRoot, root, "root");
        assertEq(round.reportDigest, digest, "digest");
        assertEq(round.configDigest, report.configDigest, "configDigest");
        assertEq(round.configVersion, 2, "configVersion");
        assertEq(round.accountCount, count, "accountCount");
        assertEq(round.attestedAt, 1_700_000_000 + uint256(count % 1_000_000), "attestedAt");
        assertEq(round.blockHash, report.blockHash, "blockHash");
        assertEq(round.signerBitmap, 0x7, "bitmap");
        assertEq(oracle.lastBlockNumber(), blockNumber, "lastBlockNumber");
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.StaleBlockNumber.selector, blockNumber, blockNumber));
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
    }

    /// A signature of another message, a tampered z or R are refused with the verifier's verdict.
    function testFuzz_aWrongSignatureIsRefused(uint256 nonce, uint256 tamper) public {
        Report memory report = anchor(40, keccak256("root"));
        bytes32 digest = oracle.reportDigest(report);
        (uint256 rx, uint256 ry, uint256 z) = frostSign(keccak256(abi.encode(digest)), nonce);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidFrostSignature.selector, 5));
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
        (rx, ry, z) = frostSign(digest, nonce);
        uint256 delta = bound(tamper, 1, ORDER - 1);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidFrostSignature.selector, 5));
        oracle.attestFrost(fields(report), 0x7, rx, ry, addmod(z, delta, ORDER) == 0 ? 1 : addmod(z, delta, ORDER));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidFrostSignature.selector, 2));
        oracle.attestFrost(fields(report), 0x7, rx, ry, ORDER); // z = n, not canonical
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidFrostSignature.selector, 3));
        oracle.attestFrost(fields(report), 0x7, rx, ry ^ 1, z);
    }

    /// The stored checks of `attest` apply: quorum, signer range, a known block hash.
    function test_theRoundChecksOfAttestApply() public {
        Report memory report = anchor(40, keccak256("root"));
        (uint256 rx, uint256 ry, uint256 z) = frostSign(oracle.reportDigest(report), 1);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.BelowQuorum.selector, 2, QUORUM));
        oracle.attestFrost(fields(report), 0x3, rx, ry, z);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.SignerOutOfRange.selector, 0x17, uint8(N)));
        oracle.attestFrost(fields(report), 0x17, rx, ry, z);
        Report memory future = makeReport(41, keccak256("a block not mined yet"), keccak256("root"), 7);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.BlockHashUnknown.selector, 41));
        oracle.attestFrost(fields(future), 0x7, rx, ry, z);
        vm.roll(40 + 257); // blockhash(40) is forgotten
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.BlockHashUnknown.selector, 40));
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
    }

    /// The config digest, parameters hash and block hash are not sent: a report signed with another one than the
    /// current config's, or than blockhash(), is refused as a wrong signature; `attest` names the field instead.
    function testFuzz_aReportOfAnotherConfigParamsOrBlockIsAWrongSignature(bytes32 other, uint256 nonce) public {
        Report memory report = anchor(40, keccak256("root"));
        vmNewer.assume(other != report.configDigest && other != report.paramsHash && other != report.blockHash);
        for (uint256 field = 0; field < 3; ++field) {
            Report memory signed = anchor(40, keccak256("root"));
            if (field == 0) signed.configDigest = other;
            if (field == 1) signed.paramsHash = other;
            if (field == 2) signed.blockHash = other;
            (uint256 rx, uint256 ry, uint256 z) = frostSign(oracle.reportDigest(signed), nonce);
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidFrostSignature.selector, 5));
            oracle.attestFrost(fields(signed), 0x7, rx, ry, z);
        }
        (uint256 rx_, uint256 ry_, uint256 z_) = frostSign(oracle.reportDigest(report), nonce);
        oracle.attestFrost(fields(report), 0x7, rx_, ry_, z_);
    }

    /// A committee installed without a key has its old digest and refuses FROST; a key changes the digest.
    function test_aKeylessCommitteeRefusesFrost() public {
        bytes32 keyed = registry.configDigest();
        (uint256 x, uint8 p) = registry.groupKey();
        assertEq(x, px, "registry key");
        assertEq(p, parity, "registry parity");
        vm.prank(owner);
        registry.setCommittee(signers, QUORUM, 1, 0, PARAMS, 1);
        assertTrue(registry.configDigest() != keyed, "the key is in the digest");
        Report memory report = anchor(40, keccak256("root"));
        (uint256 rx, uint256 ry, uint256 z) = frostSign(oracle.reportDigest(report), 1);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NoGroupKey.selector, 3));
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
        oracle.attest(report, 0x7, certificate(report, 0x7)); // the ECDSA fallback
    }

    /// Only (0, 0) or 0 < x < n with parity 0 or 1 can be installed.
    function testFuzz_anInvalidGroupKeyIsRefused(uint256 x, uint8 p) public {
        vmNewer.assume(x >= ORDER || p > 1);
        vmNewer.assume(x != 0 || p != 0);
        vm.prank(owner);
        if (x == 0) {
            vm.expectRevert(abi.encodeWithSelector(SolverRegistry.InvalidParameter.selector, "groupKeyX", 0));
        } else {
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.InvalidGroupKey.selector, x, p));
        }
        registry.setFrostCommittee(signers, QUORUM, 1, 0, PARAMS, 1, x, p);
    }

    /// The ejected-signer check of `attest` applies to the bitmap a FROST certificate names.
    function test_anEjectedSignerIsRefused() public {
        vm.prank(address(registry));
        oracle.ejectMember(2, 1);
        Report memory report = anchor(40, keccak256("root"));
        (uint256 rx, uint256 ry, uint256 z) = frostSign(oracle.reportDigest(report), 1);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.EjectedSigner.selector, 1, signers[1]));
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
        oracle.attestFrost(fields(report), 0xd, rx, ry, z);
    }

    /// `slashFrostSigner` refuses a standing round and an ECDSA round.
    function test_slashFrostSignerNeedsAFraudulentFrostRound() public {
        Report memory report = anchor(40, keccak256("root"));
        bytes32 digest = oracle.reportDigest(report);
        (uint256 rx, uint256 ry, uint256 z) = frostSign(digest, 1);
        oracle.attestFrost(fields(report), 0x7, rx, ry, z);
        bytes memory sig = sign(signerKeys[0], digest);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NotFraudulentFrostRound.selector, 40));
        oracle.slashFrostSigner(report, 0, sig);
        Report memory ecdsa = anchor(41, keccak256("root"));
        oracle.attest(ecdsa, 0x7, certificate(ecdsa, 0x7));
        sig = sign(signerKeys[0], oracle.reportDigest(ecdsa));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NotFraudulentFrostRound.selector, 41));
        oracle.slashFrostSigner(ecdsa, 0, sig);
    }
}
