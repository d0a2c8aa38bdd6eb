// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Vm} from "forge-std/Vm.sol";
import {FixedPointMathLib} from "solady/src/utils/FixedPointMathLib.sol";
import {Black76} from "../../contracts/Black76.sol";
import {Black76Harness} from "./Black76Harness.sol";

/// @notice Fuzz tests of Black76's no-arbitrage properties (docs/dispute.md, "Pricing challenge: the on-chain
///         pricer"): bounds, put-call parity, monotonicity in forward, strike and volatility, and the named errors.
/// @dev The anvil differential tests (tests/integration/chain/test_black76.py) measure the error against a 50-digit
///      reference: below 6e-17 of the value's scale df (F + K). Each property holds exactly in real arithmetic, so
///      here it is checked up to `slack`, 1e-15 of the scale (over 8 times the measured error of two values) plus
///      2 wei, over the range the engine prices: F, K in [1e-2, 1e9] USD, s = sigma sqrt(T) in [5e-4, 5],
///      df in [0.5, 1.2].
contract Black76Test {
    Vm internal constant vm = Vm(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 internal constant WAD = 1e18;
    uint256 internal constant MIN_PRICE = 1e16; // 0.01 USD
    uint256 internal constant MAX_PRICE = 1e27; // 1e9 USD
    uint256 internal constant MIN_STD_DEV = 5e14;
    uint256 internal constant MAX_STD_DEV = 5e18;

    Black76Harness internal harness = new Black76Harness();

    error Unexpected(string what, uint256 got, uint256 expected);

    struct Option {
        uint256 forward;
        uint256 strike;
        uint256 stdDev;
        uint256 discount;
    }

    /// @dev `value` mapped into [lo, hi] (forge-std 1.1.2 from npm has no StdUtils.bound).
    function bound(uint256 value, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + value % (hi - lo + 1);
    }

    /// @dev A price spread over orders of magnitude: 10^(2..27) scaled by a mantissa, kept in [MIN_PRICE, MAX_PRICE].
    function priceOf(uint256 seed) internal pure returns (uint256) {
        uint256 magnitude = 10 ** bound(seed >> 128, 16, 26);
        return bound(magnitude + (seed & type(uint128).max) % (9 * magnitude), MIN_PRICE, MAX_PRICE);
    }

    function option(uint256 forwardSeed, uint256 strikeSeed, uint256 stdDevSeed, uint256 discountSeed)
        internal
        pure
        returns (Option memory)
    {
        return Option(
            priceOf(forwardSeed),
            priceOf(strikeSeed),
            bound(stdDevSeed, MIN_STD_DEV, MAX_STD_DEV),
            bound(discountSeed, WAD / 2, 12 * WAD / 10)
        );
    }

    function slack(Option memory o) internal pure returns (uint256) {
        return Black76.valueScale(o.forward, o.strike, o.discount) / 1e15 + 2;
    }

    function call(Option memory o) internal view returns (uint256) {
        return harness.price(true, o.forward, o.strike, o.stdDev, o.discount);
    }

    function put(Option memory o) internal view returns (uint256) {
        return harness.price(false, o.forward, o.strike, o.stdDev, o.discount);
    }

    function expectAtMost(uint256 got, uint256 limit, string memory what) internal pure {
        if (got > limit) revert Unexpected(what, got, limit);
    }

    function testFuzz_valuesLieBetweenIntrinsicAndTheDiscountedUnderlying(uint256 f, uint256 k, uint256 s, uint256 d)
        public
        view
    {
        Option memory o = option(f, k, s, d);
        uint256 c = call(o);
        uint256 p = put(o);
        // max(F - K, 0) df <= C <= F df and max(K - F, 0) df <= P <= K df (the upper bounds hold exactly)
        expectAtMost(c, o.forward * o.discount / WAD, "call above F df");
        expectAtMost(p, o.strike * o.discount / WAD, "put above K df");
        uint256 callIntrinsic = o.forward > o.strike ? (o.forward - o.strike) * o.discount / WAD : 0;
        uint256 putIntrinsic = o.strike > o.forward ? (o.strike - o.forward) * o.discount / WAD : 0;
        expectAtMost(callIntrinsic, c + slack(o), "call below its discounted intrinsic value");
        expectAtMost(putIntrinsic, p + slack(o), "put below its discounted intrinsic value");
    }

    function testFuzz_putCallParity(uint256 f, uint256 k, uint256 s, uint256 d) public view {
        Option memory o = option(f, k, s, d);
        // C - P = df (F - K), both sides shifted by K df to stay unsigned
        uint256 left = call(o) + o.strike * o.discount / WAD;
        uint256 right = put(o) + o.forward * o.discount / WAD;
        uint256 gap = left > right ? left - right : right - left;
        expectAtMost(gap, slack(o) + 1, "put-call parity");
    }

    function testFuzz_callRisesWithTheForwardAndPutFalls(uint256 f, uint256 k, uint256 s, uint256 d, uint256 step)
        public
        view
    {
        Option memory low = option(f, k, s, d);
        Option memory high = option(f, k, s, d);
        high.forward = low.forward + low.forward / bound(step, 1, 1e9) + 1; // up to twice the range's top: still valid
        uint256 tolerance = slack(high);
        expectAtMost(call(low), call(high) + tolerance, "call fell when the forward rose");
        expectAtMost(put(high), put(low) + tolerance, "put rose when the forward rose");
    }

    function testFuzz_callFallsWithTheStrikeAndPutRises(uint256 f, uint256 k, uint256 s, uint256 d, uint256 step)
        public
        view
    {
        Option memory low = option(f, k, s, d);
        Option memory high = option(f, k, s, d);
        high.strike = low.strike + low.strike / bound(step, 1, 1e9) + 1; // up to twice the range's top: still valid
        uint256 tolerance = slack(high);
        expectAtMost(call(high), call(low) + tolerance, "call rose when the strike rose");
        expectAtMost(put(low), put(high) + tolerance, "put fell when the strike rose");
    }

    function testFuzz_bothRiseWithVolatility(uint256 f, uint256 k, uint256 s, uint256 d, uint256 step) public view {
        Option memory low = option(f, k, s, d);
        Option memory high = option(f, k, s, d);
        high.stdDev = low.stdDev + low.stdDev / bound(step, 1, 1e9) + 1; // up to twice the range's top: still valid
        uint256 tolerance = slack(low);
        expectAtMost(call(low), call(high) + tolerance, "call fell when the volatility rose");
        expectAtMost(put(low), put(high) + tolerance, "put fell when the volatility rose");
    }

    function testFuzz_zeroVolatilityIsTheDiscountedIntrinsicValue(uint256 f, uint256 k, uint256 d) public view {
        Option memory o = option(f, k, 0, d);
        o.stdDev = 0;
        uint256 callIntrinsic = o.forward > o.strike ? (o.forward - o.strike) * o.discount / WAD : 0;
        uint256 putIntrinsic = o.strike > o.forward ? (o.strike - o.forward) * o.discount / WAD : 0;
        if (call(o) != callIntrinsic) revert Unexpected("call at s = 0", call(o), callIntrinsic);
        if (put(o) != putIntrinsic) revert Unexpected("put at s = 0", put(o), putIntrinsic);
    }

    function testFuzz_normCdfIsMonotoneAndSymmetric(int256 x, uint256 step) public view {
        x = int256(bound(uint256(x), 0, 80e18)) - 40e18;
        int256 y = x + int256(bound(step, 1, 1e18));
        int256[] memory xs = new int256[](3);
        (xs[0], xs[1], xs[2]) = (x, y, -x);
        uint256[] memory phi = harness.normCdfBatch(xs);
        expectAtMost(phi[0], phi[1], "Phi fell");
        expectAtMost(phi[1], WAD, "Phi above 1");
        uint256 sum = phi[0] + phi[2];
        expectAtMost(sum > WAD ? sum - WAD : WAD - sum, 1, "Phi(x) + Phi(-x) != 1");
    }

    function testFuzz_smileGivesTheSquareRootOfItsVariance(uint256 f, uint256 k, uint256 seed) public view {
        Black76.Smile memory smile = Black76.Smile({
            a: int256(bound(seed, 0, 0.1e18)),
            b: int256(bound(seed >> 64, 0.01e18, 1e18)),
            rho: int256(bound(seed >> 128, 0, 1.8e18)) - 0.9e18,
            m: int256(bound(seed >> 160, 0, 0.6e18)) - 0.3e18,
            sigma: int256(bound(seed >> 192, 0.01e18, 1e18))
        });
        uint256 forward = priceOf(f);
        uint256 strike = priceOf(k);
        uint256 stdDev = harness.smileStdDev(smile, forward, strike);
        // sqrtWad rounds down: s^2 <= w < (s + 1e-18)^2
        int256 logMoneyness = FixedPointMathLib.lnWad(int256(strike)) - FixedPointMathLib.lnWad(int256(forward));
        int256 w = harness.sviTotalVariance(smile, logMoneyness); // k = ln(K / F) as smileStdDev computes it
        expectAtMost(stdDev * stdDev / WAD, uint256(w), "s^2 above w");
        expectAtMost(uint256(w), (stdDev + 1) * (stdDev + 1) / WAD + 1, "s^2 far below w");
        uint256 value = harness.priceOnSmile(true, forward, strike, smile, WAD);
        if (value != harness.price(true, forward, strike, stdDev, WAD)) {
            revert Unexpected("priceOnSmile is not price at the smile's s", value, stdDev);
        }
    }

    function test_invalidInputsRevertWithTheirValue() public {
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidForward.selector, 0));
        harness.price(true, 0, WAD, WAD, WAD);
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidForward.selector, Black76.MAX_PRICE + 1));
        harness.price(true, Black76.MAX_PRICE + 1, WAD, WAD, WAD);
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidStrike.selector, 0));
        harness.price(false, WAD, 0, WAD, WAD);
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidDiscount.selector, 0));
        harness.price(true, WAD, WAD, WAD, 0);
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidDiscount.selector, Black76.MAX_DISCOUNT + 1));
        harness.price(true, WAD, WAD, WAD, Black76.MAX_DISCOUNT + 1);
        vm.expectRevert(abi.encodeWithSelector(Black76.InvalidStdDev.selector, Black76.MAX_STD_DEV + 1));
        harness.price(true, WAD, WAD, Black76.MAX_STD_DEV + 1, WAD);
        // w(k) = a + b sigma at k = m: -0.2 + 0.5 x 0.1 < 0
        Black76.Smile memory negative = Black76.Smile({a: -0.2e18, b: 0.5e18, rho: 0, m: 0, sigma: 0.1e18});
        vm.expectRevert(abi.encodeWithSelector(Black76.NonPositiveVariance.selector, int256(-0.15e18)));
        harness.smileStdDev(negative, WAD, WAD);
    }

    function test_limitsOfTheNormalCdf() public view {
        int256[] memory xs = new int256[](4);
        (xs[0], xs[1], xs[2], xs[3]) = (type(int256).min, -38e18, 38e18, type(int256).max);
        uint256[] memory phi = harness.normCdfBatch(xs);
        if (phi[0] != 0 || phi[1] != 0) revert Unexpected("Phi of a large negative x", phi[0] + phi[1], 0);
        if (phi[2] != WAD || phi[3] != WAD) revert Unexpected("Phi of a large x", phi[2] + phi[3], 2 * WAD);
        uint256[] memory half = harness.normCdfBatch(new int256[](1));
        if (half[0] != WAD / 2) revert Unexpected("Phi(0)", half[0], WAD / 2);
    }
}
