// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {SolverRegistry} from "../../contracts/SolverRegistry.sol";
import {IPortfolioMarginOracle} from "../../contracts/IPortfolioMarginOracle.sol";
import {FrostVerifier} from "../../contracts/FrostVerifier.sol";
import {VmWallet} from "./FrostAttest.t.sol";
import {Report, AttestedMargin, RiskRow, IFraudLedger} from "../../contracts/PmoracleTypes.sol";

/// @dev A ledger's history of one position of one account: held from the end of block `opened` until the end of
///      the block before `closed` (0: never closed).
contract MockLedger is IFraudLedger {
    address public holder;
    uint32 public instrumentId;
    int128 public size;
    uint64 public opened;
    uint64 public closed;

    function set(address holder_, uint32 instrumentId_, int128 size_, uint64 opened_) external {
        (holder, instrumentId, size, opened, closed) = (holder_, instrumentId_, size_, opened_, 0);
    }

    function close(uint64 closed_) external {
        closed = closed_;
    }

    function positionAt(address account, uint32 id, uint64 blockNumber) public view returns (int128) {
        bool held = blockNumber >= opened && (closed == 0 || blockNumber < closed);
        return account == holder && id == instrumentId && held ? size : int128(0);
    }

    function openPositionCountAt(address account, uint64 blockNumber) external view returns (uint256) {
        return positionAt(account, instrumentId, blockNumber) != 0 ? 1 : 0;
    }

    function collateralTokens() external pure returns (address[] memory) {
        return new address[](0);
    }

    function balanceAt(address, address, uint64) external pure returns (uint256) {
        return 0;
    }
}

/// @notice Fuzz tests of the aggregation fraud proof (docs/contracts.md, "MarginOracle", fraud proof invariants):
///         a leaf whose MM is the rule's exact value is never provable in any scenario; one unit less is, in its
///         worst scenario, and then the round is refused everywhere and exactly its signers are slashed.
contract FraudProofFuzzTest is Base {
    VmWallet internal constant wallets = VmWallet(address(uint160(uint256(keccak256("hevm cheat code")))));
    uint256 internal constant ORDER = FrostVerifier.ORDER;
    uint256 internal constant FROST_SECRET = 0x51a5;
    uint256 internal constant S = 3;
    uint32 internal constant ID = 7;
    address internal constant ACCOUNT = address(0xACC);
    uint64 internal constant BLOCK = 40;
    uint256 internal constant SIGNERS = 7; // members 0, 1, 2

    MockLedger internal ledger;

    struct Book {
        int64[S] r;
        int64 addon;
        int128 size;
        int64 extremeCover;
    }

    function setUp() public {
        uint256[] memory stakes = new uint256[](N);
        for (uint256 i = 0; i < N; ++i) {
            stakes[i] = 2 * MIN_STAKE;
        }
        deploy(1_000, 5_000, stakes);
        ledger = new MockLedger();
        vm.prank(owner);
        registry.setLedger(address(ledger));
    }

    function _book(int64[S] memory r, int64 addon, int128 size, uint32 cover) internal pure returns (Book memory b) {
        for (uint256 s = 0; s < S; ++s) {
            b.r[s] = int64(int256(bound(uint256(uint64(r[s])), 0, 2e9))) - 1e9;
        }
        b.addon = int64(int256(bound(uint256(uint64(addon)), 0, 1e6)));
        b.size = int128(int256(bound(uint256(uint128(size)), 1, 2e6))) - 1e6;
        if (b.size == 0) b.size = 1;
        b.extremeCover = int64(int256(bound(cover, 1, 1e6)));
    }

    function _row(uint256 key, int64 base, int64 addon, int64[S] memory values) internal pure returns (RiskRow memory) {
        bytes memory packed;
        for (uint256 s = 0; s < S; ++s) {
            packed = bytes.concat(packed, bytes8(uint64(values[s])));
        }
        return RiskRow(key, base, addon, packed, new bytes32[](1));
    }

    function _leafHash(RiskRow memory row) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encodePacked(row.key, row.base, row.addon, row.values))));
    }

    /// @dev The rule's MM in leaf units, and its worst scenario.
    function _honestMargin(Book memory b) internal pure returns (uint256 mm, uint256 worst) {
        int256 best = 0;
        for (uint256 s = 0; s < S; ++s) {
            int256 pnl = int256(b.size) * b.r[s];
            int256 c = s == S - 1 ? int256(b.extremeCover) : int256(1e6);
            int256 counted = pnl < 0 ? (-pnl * c + 1e6 - 1) / 1e6 : int256(0);
            if (counted > best) (best, worst) = (counted, s);
        }
        int256 add = b.size < 0 ? -int256(b.size) * b.addon : int256(0);
        mm = uint256(best + add) * 1e10;
    }

    /// @dev Attest a round whose account tree is the one leaf (ACCOUNT, mm) and whose risk tree holds the book's
    ///      row and the cover row; return the report and the two rows with their proofs.
    function _attest(Book memory b, uint256 mm)
        internal
        returns (Report memory report, RiskRow memory cover, RiskRow[] memory rows)
    {
        return _attest(b, mm, false);
    }

    /// @dev `_attest`, with one FROST signature under a freshly registered group key when `frost` is set.
    function _attest(Book memory b, uint256 mm, bool frost)
        internal
        returns (Report memory report, RiskRow memory cover, RiskRow[] memory rows)
    {
        int64[S] memory covers = [int64(1e6), int64(1e6), b.extremeCover];
        cover = _row(type(uint256).max, 1e6, 0, covers);
        rows = new RiskRow[](1);
        rows[0] = _row(ID, 0, b.addon, b.r);
        bytes32 a = _leafHash(cover);
        bytes32 c = _leafHash(rows[0]);
        cover.proof[0] = c;
        rows[0].proof[0] = a;
        bytes32 riskRoot = a < c ? keccak256(abi.encode(a, c)) : keccak256(abi.encode(c, a));
        report = anchor(BLOCK, oracle.computeLeaf(ACCOUNT, mm, mm, 0));
        report.riskArraysRoot = riskRoot;
        if (frost) {
            report = _attestFrost(report);
        } else {
            oracle.attest(report, SIGNERS, certificate(report, SIGNERS));
        }
        ledger.set(ACCOUNT, ID, b.size, BLOCK);
    }

    /// @dev Register the committee with the group key of FROST_SECRET, then attest `report` (under the new config
    ///      digest) with one Schnorr signature naming SIGNERS.
    function _attestFrost(Report memory report) internal returns (Report memory) {
        VmWallet.Wallet memory key = wallets.createWallet(FROST_SECRET);
        uint8 parity = uint8(key.publicKeyY & 1);
        vm.prank(owner);
        registry.setFrostCommittee(signers, QUORUM, 1, 0, PARAMS, 1, key.publicKeyX, parity);
        report.configDigest = registry.configDigest();
        bytes32 digest = oracle.reportDigest(report);
        VmWallet.Wallet memory nonce = wallets.createWallet(uint256(keccak256(abi.encode(digest))) % (ORDER - 1) + 1);
        uint256 c = FrostVerifier.challenge(key.publicKeyX, parity, digest, nonce.publicKeyX, nonce.publicKeyY);
        uint256 z = addmod(nonce.privateKey, mulmod(c, FROST_SECRET, ORDER), ORDER);
        MarginOracle.FrostReport memory fields = MarginOracle.FrostReport(
            report.blockNumber, report.accountsRoot, report.accountCount, report.riskArraysRoot, report.marketHash
        );
        oracle.attestFrost(fields, SIGNERS, nonce.publicKeyX, nonce.publicKeyY, z);
        return report;
    }

    /// A FROST round proven fraudulent is refused like any other, but its unauthenticated bitmap slashes nobody:
    /// each member is slashed once, by its own ECDSA signature of the report; a non-member's signature never counts.
    function testFuzz_aFrostRoundIsSlashedSignerBySigner(int64[S] memory r, int64 addon, int128 size, uint32 c)
        public
    {
        Book memory b = _book(r, addon, size, c);
        (uint256 mm, uint256 worst) = _honestMargin(b);
        vmNewer.assume(mm > 0);
        uint256 lie = mm - 1;
        (Report memory report, RiskRow memory cover, RiskRow[] memory rows) = _attest(b, lie, true);
        bytes memory sig0 = sign(signerKeys[0], oracle.reportDigest(report));
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.NotFraudulentFrostRound.selector, BLOCK));
        oracle.slashFrostSigner(report, 0, sig0);
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(lie, lie, 0), new bytes32[](0), cover, rows, worst);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, 0, "invalidated");
        for (uint256 i = 0; i < N; ++i) {
            assertEq(registry.offences(signers[i]), 0, "the FROST bitmap slashes nobody");
        }
        oracle.slashFrostSigner(report, 0, sig0);
        assertEq(registry.offences(signers[0]), 1, "member 0 slashed by its signature");
        assertEq(registry.nodeOf(signers[0]).stake, 2 * MIN_STAKE * 9 / 10, "stake");
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.FrostSignerAlreadySlashed.selector, BLOCK, signers[0]));
        oracle.slashFrostSigner(report, 0, sig0);
        vm.expectRevert(abi.encodeWithSelector(MarginOracle.SignerMismatch.selector, 3, signers[3], signers[0]));
        oracle.slashFrostSigner(report, 3, sig0);
        assertEq(registry.offences(signers[3]), 0, "a member who did not sign keeps its stake");
    }

    /// The exact MM of the rule is never provable, in any scenario: an honest committee is never slashed.
    function testFuzz_anHonestLeafIsNeverProvable(int64[S] memory r, int64 addon, int128 size, uint32 c, uint8 s)
        public
    {
        Book memory b = _book(r, addon, size, c);
        (uint256 mm,) = _honestMargin(b);
        (Report memory report, RiskRow memory cover, RiskRow[] memory rows) = _attest(b, mm);
        uint256 scenario = bound(s, 0, S - 1);
        vmNewer.expectPartialRevert(MarginOracle.NotFraudulent.selector);
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(mm, mm, 0), new bytes32[](0), cover, rows, scenario);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, SIGNERS, "the round stands");
    }

    /// One unit of MM less is provable in the worst scenario, even after the account closed the position (the proof
    /// reads the holdings at B): the round is refused from then on, exactly its signers lose `slashBps` of their
    /// stake, and the non-signer keeps its own.
    function testFuzz_anUnderstatedLeafIsProvenAndItsSignersSlashed(
        int64[S] memory r,
        int64 addon,
        int128 size,
        uint32 c
    ) public {
        Book memory b = _book(r, addon, size, c);
        (uint256 mm, uint256 worst) = _honestMargin(b);
        vmNewer.assume(mm > 0);
        uint256 lie = mm - 1;
        (Report memory report, RiskRow memory cover, RiskRow[] memory rows) = _attest(b, lie);
        ledger.close(BLOCK + 1);
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(lie, lie, 0), new bytes32[](0), cover, rows, worst);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, 0, "invalidated");
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        oracle.verifyMarginAt(BLOCK, ACCOUNT, lie, lie, 0, new bytes32[](0));
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        oracle.roundDigests(BLOCK);
        for (uint256 i = 0; i < N; ++i) {
            uint256 stake = registry.nodeOf(signers[i]).stake;
            assertEq(stake, SIGNERS & (1 << i) != 0 ? 2 * MIN_STAKE * 9 / 10 : 2 * MIN_STAKE, "stake");
            assertEq(registry.offences(signers[i]), SIGNERS & (1 << i) != 0 ? 1 : 0, "offences");
        }
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(lie, lie, 0), new bytes32[](0), cover, rows, worst);
    }

    /// The slashing race (docs/dispute.md): as soon as the lie is attested, its signers post the honest member's
    /// correct report as deviation evidence. Within the deviation window it is refused; the fraud proof lands within
    /// the window; from then on the evidence is refused for good. The honest member is never slashed.
    function testFuzz_theHonestMemberIsNotSlashedBeforeTheProofLands(
        int64[S] memory r,
        int64 addon,
        int128 size,
        uint32 c,
        uint32 early,
        uint32 late
    ) public {
        Book memory b = _book(r, addon, size, c);
        (uint256 mm, uint256 worst) = _honestMargin(b);
        vmNewer.assume(mm > 0);
        uint256 lie = mm - 1;
        (Report memory report, RiskRow memory cover, RiskRow[] memory rows) = _attest(b, lie);
        uint64 attestedAt = uint64(block.timestamp);
        bytes32 lieRoot = report.accountsRoot;
        report.accountsRoot = oracle.computeLeaf(ACCOUNT, mm, mm, 0); // what member 3 signed
        bytes memory honestSig = sign(signerKeys[3], oracle.reportDigest(report));
        vm.warp(attestedAt + bound(early, 0, DEVIATION_DELAY - 1));
        vm.expectRevert(
            abi.encodeWithSelector(
                SolverRegistry.DeviationWindowNotOpen.selector, BLOCK, attestedAt, attestedAt + DEVIATION_DELAY
            )
        );
        vm.prank(operators[0]);
        registry.slashDeviation(report, honestSig);
        report.accountsRoot = lieRoot;
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(lie, lie, 0), new bytes32[](0), cover, rows, worst);
        report.accountsRoot = oracle.computeLeaf(ACCOUNT, mm, mm, 0);
        vm.warp(attestedAt + DEVIATION_DELAY + bound(late, 0, 30 days));
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        vm.prank(operators[0]);
        registry.slashDeviation(report, honestSig);
        assertEq(registry.offences(signers[3]), 0, "the honest member has no offence");
        assertEq(registry.nodeOf(signers[3]).stake, 2 * MIN_STAKE, "the honest member keeps its stake");
        uint256 staked = 0;
        for (uint256 i = 0; i < N; ++i) {
            staked += registry.nodeOf(signers[i]).stake;
        }
        assertEq(address(registry).balance, staked + registry.slashedPool(), "balance == stakes + slashed pool");
    }

    /// A position opened after B, a tampered row or a report other than the attested one is refused and slashes
    /// nobody.
    function testFuzz_badProofsRevertAndSlashNobody(int64[S] memory r, int64 addon, int128 size, uint32 c, uint8 kind)
        public
    {
        Book memory b = _book(r, addon, size, c);
        (uint256 mm, uint256 worst) = _honestMargin(b);
        vmNewer.assume(mm > 0);
        uint256 lie = mm - 1;
        (Report memory report, RiskRow memory cover, RiskRow[] memory rows) = _attest(b, lie);
        kind = uint8(bound(kind, 0, 3));
        if (kind == 0) {
            ledger.set(ACCOUNT, ID, b.size, BLOCK + 1); // not held at the end of block B
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.RowNotHeld.selector, ACCOUNT, uint256(ID)));
        } else if (kind == 1) {
            rows[0].addon += 1;
            vmNewer.expectPartialRevert(MarginOracle.InvalidRowProof.selector);
        } else if (kind == 2) {
            report.marketHash = keccak256("another market");
            vmNewer.expectPartialRevert(MarginOracle.ReportMismatch.selector);
        } else {
            ledger.set(ACCOUNT, ID, 0, BLOCK);
            vm.expectRevert(abi.encodeWithSelector(MarginOracle.RowNotHeld.selector, ACCOUNT, uint256(ID)));
        }
        oracle.proveFraud(report, ACCOUNT, AttestedMargin(lie, lie, 0), new bytes32[](0), cover, rows, worst);
        for (uint256 i = 0; i < N; ++i) {
            assertEq(registry.offences(signers[i]), 0, "nobody slashed");
        }
    }
}
