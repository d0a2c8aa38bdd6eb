// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {MarginOracle} from "../../contracts/MarginOracle.sol";
import {EntryPricer} from "../../contracts/EntryPricer.sol";
import {IPortfolioMarginOracle} from "../../contracts/IPortfolioMarginOracle.sol";
import {
    Report,
    RiskRow,
    MarketSnapshot,
    UnderlyingQuote,
    SmileQuote,
    PricePoint,
    AssetQuote,
    LedgerInstrument,
    IFraudLedger,
    IInstrumentRegistry
} from "../../contracts/PmoracleTypes.sol";

/// @dev A ledger listing one option (id `ID`) and holding nothing.
contract MockOptionLedger is IFraudLedger, IInstrumentRegistry {
    LedgerInstrument internal listed;

    function list(LedgerInstrument memory inst) external {
        listed = inst;
    }

    function instrument(uint32 id) external view returns (LedgerInstrument memory) {
        require(id == listed.id, "unknown instrument");
        return listed;
    }

    function positionAt(address, uint32, uint64) external pure returns (int128) {
        return 0;
    }

    function openPositionCountAt(address, uint64) external pure returns (uint256) {
        return 0;
    }

    function collateralTokens() external pure returns (address[] memory) {
        return new address[](0);
    }

    function balanceAt(address, address, uint64) external pure returns (uint256) {
        return 0;
    }
}

/// @notice Fuzz tests of the pricing challenge (docs/contracts.md, "MarginOracle", pricing challenge invariants): an
///         option entry within half a quantum of the fixed-point recomputation (what the engine's round-half-even
///         quantization of a value within the tolerance gives) is never provable, whatever the market, the option
///         and the scenario; an entry beyond the tolerance always is, and then the round is refused and exactly
///         its signers are slashed. The engine's own entries are checked against the contract on anvil
///         (tests/integration/chain/test_pricing_challenge.py).
contract PricingChallengeFuzzTest is Base {
    uint32 internal constant ID = 9;
    uint64 internal constant BLOCK = 40;
    uint256 internal constant SIGNERS = 7; // members 0, 1, 2
    uint256 internal constant S = 2;
    int256 internal constant QUANTUM = 1e14;
    bytes32 internal constant BTC = "BTC";
    uint256 internal constant SCENARIO_KEY = 1 << 254; // the first underlying's scenario row
    // the default parameters' horizon (1 day in years), power (4 eighths) and vol parameters, as binary64 bits
    uint64 internal constant HORIZON = 0x3f66719f3601671a;
    int64 internal constant POWER = 4;
    uint64 internal constant SHIFT = 0x3fd0000000000000; // 0.25
    uint64 internal constant TENOR_DAYS = 0x403e000000000000; // 30
    uint64 internal constant MIN_DTE_DAYS = 0x3ff0000000000000; // 1
    uint64 internal constant MAX_SHIFT = 0x3feccccccccccccd; // 0.9
    uint64 internal constant MIN_VOL = 0x3f847ae147ae147b; // 0.01
    uint64 internal constant MAX_VOL = 0x4014000000000000; // 5

    MockOptionLedger internal ledger;

    /// @dev One fuzzed case: the market, the option and the scenario (bounded in `_case`).
    struct Case {
        uint256 index; // USD 1e8
        uint256 strike; // USD 1e8
        int256 rate;
        uint64 expiresIn; // seconds
        bool isCall;
        int256 a;
        int256 b;
        int256 rho;
        int256 m;
        int256 sigma;
        uint64 multBits;
        uint64 shockBits;
        uint256 scenario;
        uint8 kind; // the ledger's: 0 perpetual, 1 future, 2 call, 3 put
        uint64 expiry; // the instrument's (0 for a perpetual)
    }

    function setUp() public {
        uint256[] memory stakes = new uint256[](N);
        for (uint256 i = 0; i < N; ++i) {
            stakes[i] = 2 * MIN_STAKE;
        }
        deploy(1_000, 5_000, stakes);
        ledger = new MockOptionLedger();
        vm.prank(owner);
        registry.setLedger(address(ledger));
    }

    function _case(uint256[8] memory seed, bool isCall, uint8 shockKind) internal pure returns (Case memory c) {
        c.index = bound(seed[0], 100, 1e6) * 1e8;
        c.strike = c.index * bound(seed[1], 50, 200) / 100;
        c.rate = int256(bound(seed[2], 0, 30e16)) - 5e16;
        c.expiresIn = uint64(bound(seed[3], 1 hours, 730 days));
        c.isCall = isCall;
        c.a = int256(bound(seed[4], 1e15, 2e17));
        c.b = int256(bound(seed[5] % 1e18, 0, 5e17));
        c.rho = int256(bound(seed[5] >> 128, 0, 18e17)) - 9e17;
        c.m = int256(bound(seed[6] % 1e18, 0, 4e17)) - 2e17;
        c.sigma = int256(bound(seed[6] >> 128, 1e16, 5e17));
        // a multiplier in [0.5, 2): binary64 exponent -1 or 0, any mantissa
        c.multBits = (uint64(seed[7] & 1 == 0 ? 0x3fe : 0x3ff) << 52) | uint64((seed[7] >> 1) & ((1 << 52) - 1));
        // a vol shock: none, or +-[0.5, 1) (any mantissa), or +-1
        uint256 kind = shockKind % 3;
        uint64 sign = uint64((seed[7] >> 60) & 1) << 63;
        c.shockBits = kind == 0 ? 0 : kind == 1 ? sign | (0x3fe << 52) | uint64((seed[7] >> 64) & ((1 << 52) - 1)) : sign | (0x3ff << 52);
        c.scenario = (seed[7] >> 200) % S;
        c.kind = isCall ? 2 : 3;
        c.expiry = 1_700_000_000 + c.expiresIn;
    }

    /// @dev A case of a perpetual, a live future or an expired option (valued from the index, no smile).
    function _levelCase(uint256[8] memory seed, uint8 kind, uint8 shockKind) internal pure returns (Case memory c) {
        c = _case(seed, kind % 2 == 0, shockKind);
        c.kind = kind % 4;
        if (c.kind == 0) (c.expiry, c.strike) = (0, 0);
        if (c.kind == 1) c.strike = 0;
        if (c.kind >= 2) c.expiry = 1_700_000_000 - uint64(bound(seed[3] >> 64, 0, 30 days)); // expired, unsettled
    }

    function _market(Case memory c) internal pure returns (MarketSnapshot memory market) {
        uint64 time = 1_700_000_000;
        SmileQuote[] memory smiles = new SmileQuote[](1);
        smiles[0] = SmileQuote(time + c.expiresIn, c.a, c.b, c.rho, c.m, c.sigma);
        market.time = time;
        market.underlyings = new UnderlyingQuote[](1);
        market.underlyings[0] =
            UnderlyingQuote(BTC, c.index, c.rate, smiles, new PricePoint[](0), time, new PricePoint[](0));
        market.assets = new AssetQuote[](0);
    }

    /// @dev The scenario row: the case's multiplier and shock in column `scenario`, 1.0 and no shock elsewhere.
    function _scenarioRow(Case memory c) internal pure returns (RiskRow memory row) {
        bytes memory values;
        for (uint256 s = 0; s < S; ++s) {
            values = bytes.concat(values, bytes8(s == c.scenario ? c.multBits : uint64(0x3ff0000000000000)));
        }
        for (uint256 s = 0; s < S; ++s) {
            values = bytes.concat(values, bytes8(s == c.scenario ? c.shockBits : uint64(0)));
        }
        values = bytes.concat(values, bytes8(SHIFT), bytes8(TENOR_DAYS), bytes8(MIN_DTE_DAYS), bytes8(MAX_SHIFT));
        values = bytes.concat(values, bytes8(MIN_VOL), bytes8(MAX_VOL));
        row = RiskRow(SCENARIO_KEY, int64(HORIZON), POWER, values, new bytes32[](1));
    }

    function _leafHash(RiskRow memory row) internal pure returns (bytes32) {
        return keccak256(bytes.concat(keccak256(abi.encodePacked(row.key, row.base, row.addon, row.values))));
    }

    /// @dev The pricer's P&L and tolerance of the case (WAD USD per unit).
    function _recompute(Case memory c, MarketSnapshot memory market, RiskRow memory scenarioRow)
        internal
        view
        returns (int256 pnl, uint256 tolerance)
    {
        bool malformed;
        if (c.kind < 2 || c.expiry <= market.time) {
            EntryPricer.LevelEntry memory level =
                EntryPricer.LevelEntry(c.kind, c.strike, c.expiry, market.time, c.scenario, S);
            (malformed, pnl, tolerance) = oracle.pricer().levelPnl(market.underlyings[0], level, scenarioRow.values);
            assertTrue(!malformed, "a well-formed scenario row");
            return (pnl, tolerance);
        }
        EntryPricer.OptionEntry memory entry =
            EntryPricer.OptionEntry(c.isCall, c.strike, c.expiry, market.time, c.scenario, S);
        (malformed, pnl, tolerance) =
            oracle.pricer().optionPnl(market.underlyings[0], entry, scenarioRow.base, scenarioRow.addon, scenarioRow.values);
        assertTrue(!malformed, "a well-formed scenario row");
    }

    /// @dev List the option, attest a round committing to the market and to the option row whose entry `scenario` is
    ///      `entry` (other columns 0) and the scenario row; return the report and both rows with their proofs.
    function _attest(Case memory c, MarketSnapshot memory market, RiskRow memory scenarioRow, int64 entry)
        internal
        returns (Report memory, RiskRow memory)
    {
        return _attestAt(c, market, scenarioRow, entry, BLOCK);
    }

    /// @dev `_attest` for the round of `blockNumber`.
    function _attestAt(
        Case memory c,
        MarketSnapshot memory market,
        RiskRow memory scenarioRow,
        int64 entry,
        uint64 blockNumber
    ) internal returns (Report memory report, RiskRow memory row) {
        ledger.list(LedgerInstrument(ID, BTC, c.kind, c.expiry, uint128(c.strike), 0));
        bytes memory values;
        for (uint256 s = 0; s < S; ++s) {
            values = bytes.concat(values, bytes8(uint64(s == c.scenario ? entry : int64(0))));
        }
        row = RiskRow(ID, 0, 0, values, new bytes32[](1));
        bytes32 a = _leafHash(row);
        bytes32 b = _leafHash(scenarioRow);
        row.proof[0] = b;
        scenarioRow.proof[0] = a;
        report = anchor(blockNumber, keccak256("accounts"));
        report.riskArraysRoot = a < b ? keccak256(abi.encode(a, b)) : keccak256(abi.encode(b, a));
        report.marketHash = keccak256(abi.encode(market, bytes32(0)));
        oracle.attest(report, SIGNERS, certificate(report, SIGNERS));
    }

    /// An entry within half a quantum of the recomputation is never provable: the round stands, nobody is slashed.
    function testFuzz_anHonestEntryIsNeverProvable(uint256[8] memory seed, bool isCall, uint8 shockKind) public {
        Case memory c = _case(seed, isCall, shockKind);
        MarketSnapshot memory market = _market(c);
        RiskRow memory scenarioRow = _scenarioRow(c);
        (int256 pnl, uint256 tolerance) = _recompute(c, market, scenarioRow);
        assertTrue(tolerance >= uint256(QUANTUM), "the tolerance is at least one quantum");
        int256 honest = (pnl + (pnl >= 0 ? QUANTUM / 2 : -QUANTUM / 2)) / QUANTUM; // nearest, as the engine rounds
        (Report memory report, RiskRow memory row) = _attest(c, market, scenarioRow, int64(honest));
        vm.expectRevert(
            abi.encodeWithSelector(
                MarginOracle.EntryWithinTolerance.selector, uint256(ID), c.scenario, honest * QUANTUM, pnl, tolerance
            )
        );
        oracle.challengePricing(report, market, bytes32(0), row, scenarioRow, c.scenario);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, SIGNERS, "the round stands");
        for (uint256 i = 0; i < N; ++i) {
            assertEq(registry.offences(signers[i]), 0, "nobody slashed");
        }
    }

    /// An entry beyond the tolerance is proven: the round is refused from then on and exactly its signers lose
    /// `slashBps` of their stake (the registry's slashing path: the stake taken goes to its pool or the reporter).
    function testFuzz_anEntryBeyondTheToleranceIsProvenAndItsSignersSlashed(
        uint256[8] memory seed,
        bool isCall,
        uint8 shockKind,
        bool above
    ) public {
        Case memory c = _case(seed, isCall, shockKind);
        MarketSnapshot memory market = _market(c);
        RiskRow memory scenarioRow = _scenarioRow(c);
        (Report memory report, RiskRow memory row) = _attest(c, market, scenarioRow, _wrongEntry(c, market, scenarioRow, above));
        uint256 poolBefore = registry.slashedPool();
        oracle.challengePricing(report, market, bytes32(0), row, scenarioRow, c.scenario);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, 0, "invalidated");
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        oracle.roundDigests(BLOCK);
        uint256 taken = 0;
        for (uint256 i = 0; i < N; ++i) {
            uint256 stake = registry.nodeOf(signers[i]).stake;
            assertEq(stake, SIGNERS & (1 << i) != 0 ? 2 * MIN_STAKE * 9 / 10 : 2 * MIN_STAKE, "stake");
            taken += 2 * MIN_STAKE - stake;
        }
        // the prover (this contract) operates no node: no reward, every wei taken is in the pool
        assertEq(registry.slashedPool(), poolBefore + taken, "conserved");
        vm.expectRevert(abi.encodeWithSelector(IPortfolioMarginOracle.RoundProvenFraudulent.selector, BLOCK));
        oracle.challengePricing(report, market, bytes32(0), row, scenarioRow, c.scenario);
    }

    /// A perpetual's, a future's or an expired option's entry within half a quantum of the recomputation is never
    /// provable; one beyond the tolerance is.
    function testFuzz_aLevelEntryIsProvableOnlyBeyondTheTolerance(uint256[8] memory seed, uint8 kind, bool above)
        public
    {
        Case memory c = _levelCase(seed, kind, 0);
        MarketSnapshot memory market = _market(c);
        RiskRow memory scenarioRow = _scenarioRow(c);
        _challengeLevel(c, market, scenarioRow, _nearestEntry(c, market, scenarioRow), BLOCK, false);
        // the next round, the entry beyond the tolerance: proven
        _challengeLevel(c, market, scenarioRow, _wrongEntry(c, market, scenarioRow, above), BLOCK + 1, true);
        assertEq(oracle.roundAt(BLOCK + 1).signerBitmap, 0, "invalidated");
        assertEq(oracle.roundAt(BLOCK).signerBitmap, SIGNERS, "the honest round stands");
    }

    /// @dev Attest the round of `blockNumber` with `entry` and challenge it, expecting a refusal unless `provable`.
    function _challengeLevel(
        Case memory c,
        MarketSnapshot memory market,
        RiskRow memory scenarioRow,
        int64 entry,
        uint64 blockNumber,
        bool provable
    ) internal {
        (Report memory report, RiskRow memory row) = _attestAt(c, market, scenarioRow, entry, blockNumber);
        if (!provable) vmNewer.expectPartialRevert(MarginOracle.EntryWithinTolerance.selector);
        oracle.challengePricing(report, market, bytes32(0), row, scenarioRow, c.scenario);
    }

    /// @dev The entry nearest the recomputation (what the engine's rounding of a value within the tolerance gives).
    function _nearestEntry(Case memory c, MarketSnapshot memory market, RiskRow memory scenarioRow)
        internal
        view
        returns (int64)
    {
        (int256 pnl,) = _recompute(c, market, scenarioRow);
        return int64((pnl + (pnl >= 0 ? QUANTUM / 2 : -QUANTUM / 2)) / QUANTUM);
    }

    /// @dev An entry beyond the tolerance by more than the rounding: the nearest quantum +- (tolerance / QUANTUM + 1).
    function _wrongEntry(Case memory c, MarketSnapshot memory market, RiskRow memory scenarioRow, bool above)
        internal
        view
        returns (int64)
    {
        (int256 pnl, uint256 tolerance) = _recompute(c, market, scenarioRow);
        int256 off = int256(tolerance) / QUANTUM + 1;
        int256 nearest = (pnl + (pnl >= 0 ? QUANTUM / 2 : -QUANTUM / 2)) / QUANTUM;
        return int64(above ? nearest + off : nearest - off);
    }

    /// binary64 bits become WADs exactly (truncated toward zero); NaN and infinities are refused.
    function test_wadOfDouble() public view {
        EntryPricer pricer = oracle.pricer();
        (bool ok, int256 wad) = pricer.wadOfDouble(int64(uint64(0x3ff0000000000000)));
        assertTrue(ok && wad == 1e18, "1.0");
        (ok, wad) = pricer.wadOfDouble(int64(uint64(MAX_SHIFT | (1 << 63))));
        assertTrue(ok && wad == -900000000000000022, "-0.9 (the double is 0.90000000000000002220...)");
        (ok, wad) = pricer.wadOfDouble(int64(uint64(MIN_VOL)));
        assertTrue(ok && wad == 1e16, "0.01");
        (ok, wad) = pricer.wadOfDouble(int64(HORIZON));
        assertTrue(ok && wad == 2739726027397260, "1/365");
        (ok, wad) = pricer.wadOfDouble(0);
        assertTrue(ok && wad == 0, "0");
        (ok,) = pricer.wadOfDouble(int64(uint64(0x7ff0000000000000)));
        assertTrue(!ok, "inf");
        (ok,) = pricer.wadOfDouble(int64(uint64(0x7ff8000000000000)));
        assertTrue(!ok, "NaN");
    }

    /// A committed scenario row that cannot be the engine's (a NaN multiplier) is itself proof of fraud.
    function test_aMalformedScenarioRowIsProvable() public {
        uint256[8] memory seed;
        seed[0] = 1e5;
        Case memory c = _case(seed, true, 0);
        MarketSnapshot memory market = _market(c);
        c.multBits = 0x7ff8000000000000;
        RiskRow memory scenarioRow = _scenarioRow(c);
        (Report memory report, RiskRow memory row) = _attest(c, market, scenarioRow, 0);
        oracle.challengePricing(report, market, bytes32(0), row, scenarioRow, c.scenario);
        assertEq(oracle.roundAt(BLOCK).signerBitmap, 0, "invalidated");
    }
}
