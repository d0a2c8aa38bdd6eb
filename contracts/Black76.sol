// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {FixedPointMathLib} from "solady/src/utils/FixedPointMathLib.sol";

/// @title Black76
/// @notice Black-76 values of European calls and puts on a forward, the SVI smile's total variance, and the standard
///         normal CDF, in 18-decimal fixed point: what a pricing challenge recomputes a risk-array entry from
///         (docs/dispute.md, "Pricing challenge: the on-chain pricer").
/// @dev Every quantity is a WAD (1e18 = 1.0): prices in USD per unit, the discount factor, the total standard
///      deviation sigma sqrt(T), years, rates and the SVI parameters (as `MarketFeeds` and the report's market hash
///      hold them). `exp`, `ln` and `sqrt` are solady's FixedPointMathLib (`expWad`, `lnWad`, `sqrt`); the normal CDF
///      is W. J. Cody's rational Chebyshev approximation of erfc ("Rational Chebyshev approximations for the error
///      function", Math. Comp. 23 (1969) 631-637; the coefficients of netlib specfun `calerf`, March 1990, copied
///      digit for digit as the engine's `risk/detmath.py` does, not refitted), whose rational functions approximate
///      erf and erfc to at least 18 significant digits. The rational parts run at 27 decimals, `exp(-y^2)` at 18,
///      so Phi is within a few 1e-18 of the exact value (tests/integration/chain/test_black76.py measures it).
///      Calls and puts use their own formulas (no put-call parity), like the engine's `risk/pricing.py`.
library Black76 {
    /// @notice 1.0 in 18-decimal fixed point.
    int256 internal constant WAD = 1e18;
    /// @notice The engine's year (`risk/inputs.py` SECONDS_PER_YEAR): tau = seconds / SECONDS_PER_YEAR.
    uint256 internal constant SECONDS_PER_YEAR = 365 days;
    /// @notice The largest forward or strike: the engine's MAX_PRICE, 1e12 USD per unit.
    uint256 internal constant MAX_PRICE = 1e12 * 1e18;
    /// @notice The largest discount factor: exp(-rate x tau) for the engine's |rate| <= 1 over 13 years is below it.
    uint256 internal constant MAX_DISCOUNT = 1e6 * 1e18;
    /// @notice The largest total standard deviation sigma sqrt(T) (1000: far beyond any smile the engine accepts).
    uint256 internal constant MAX_STD_DEV = 1e3 * 1e18;

    /// @notice The engine's P&L unit, 1e-4 USD per unit (WAD): a risk-array entry R is worth R x QUANTUM.
    uint256 internal constant QUANTUM = 1e14;
    /// @notice The relative bound (WAD: 1e-12) on how far the engine's binary64 value and this library's can be
    ///         apart, as a fraction of the value's scale df (F + K): the largest errors measured against a 50-digit
    ///         reference are 2.7e-16 (the engine) and 6e-17 (this library), so it leaves a factor of 3000, room for
    ///         the engine's rounded inputs (the forward from exp, the smile's vol) that the measurement covers in part.
    uint256 internal constant RELATIVE_TOLERANCE = 1e6;

    /// @dev 1.0 in the 27-decimal fixed point of the rational approximations.
    int256 private constant RAY = 1e27;
    /// @dev RAY / WAD.
    int256 private constant WAD_TO_RAY = 1e9;
    /// @dev 1 / sqrt(2) at 27 decimals (0.707106781186547524400844362104...).
    int256 private constant INV_SQRT2 = 707106781186547524400844362;
    /// @dev 1 / sqrt(pi) at 27 decimals (0.564189583547756286948079451560...).
    int256 private constant INV_SQRT_PI = 564189583547756286948079452;

    // Cody's three intervals of y = |x| for erfc(x): [0, 0.46875], (0.46875, 4], (4, 26.543); beyond, erfc = 0
    // in double precision (and below 1e-300: far below 1e-18).
    int256 private constant ERF_THRESH = 0.46875e27;
    int256 private constant ERFC_NEAR_LIMIT = 4e27;
    int256 private constant ERFC_XBIG = 26.543e27;
    // |x| (WAD) from which erfc and Phi are returned as their limits: beyond Cody's 26.543 (and its sqrt 2 multiple)
    int256 private constant ERFC_LIMIT = 27e18;
    int256 private constant CDF_LIMIT = 38e18;

    // erf(y) = y P(y^2) / Q(y^2) on the first interval (calerf's A and B).
    int256 private constant A0 = 3.16112374387056560e27;
    int256 private constant A1 = 1.13864154151050156e29;
    int256 private constant A2 = 3.77485237685302021e29;
    int256 private constant A3 = 3.20937758913846947e30;
    int256 private constant A4 = 1.85777706184603153e26;
    int256 private constant B0 = 2.36012909523441209e28;
    int256 private constant B1 = 2.44024637934444173e29;
    int256 private constant B2 = 1.28261652607737228e30;
    int256 private constant B3 = 2.84423683343917062e30;
    // erfc(y) = exp(-y^2) P(y) / Q(y) on the second interval (calerf's C and D).
    int256 private constant C0 = 5.64188496988670089e26;
    int256 private constant C1 = 8.88314979438837594e27;
    int256 private constant C2 = 6.61191906371416295e28;
    int256 private constant C3 = 2.98635138197400131e29;
    int256 private constant C4 = 8.81952221241769090e29;
    int256 private constant C5 = 1.71204761263407058e30;
    int256 private constant C6 = 2.05107837782607147e30;
    int256 private constant C7 = 1.23033935479799725e30;
    int256 private constant C8 = 2.15311535474403846e19;
    int256 private constant D0 = 1.57449261107098347e28;
    int256 private constant D1 = 1.17693950891312499e29;
    int256 private constant D2 = 5.37181101862009858e29;
    int256 private constant D3 = 1.62138957456669019e30;
    int256 private constant D4 = 3.29079923573345963e30;
    int256 private constant D5 = 4.36261909014324716e30;
    int256 private constant D6 = 3.43936767414372164e30;
    int256 private constant D7 = 1.23033935480374942e30;
    // erfc(y) = exp(-y^2) / y (1 / sqrt(pi) - P(1/y^2) / (y^2 Q(1/y^2))) on the third interval (calerf's P and Q).
    int256 private constant P0 = 3.05326634961232344e26;
    int256 private constant P1 = 3.60344899949804439e26;
    int256 private constant P2 = 1.25781726111229246e26;
    int256 private constant P3 = 1.60837851487422766e25;
    int256 private constant P4 = 6.58749161529837803e23;
    int256 private constant P5 = 1.63153871373020978e25;
    int256 private constant Q0 = 2.56852019228982242e27;
    int256 private constant Q1 = 1.87295284992346047e27;
    int256 private constant Q2 = 5.27905102951428412e26;
    int256 private constant Q3 = 6.05183413124413191e25;
    int256 private constant Q4 = 2.33520497626869185e24;

    /// @notice SVI raw parameters of one expiry's smile (WAD, signed), as `MarketFeeds` stores them:
    ///         w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)) with k = ln(K / F).
    struct Smile {
        int256 a;
        int256 b;
        int256 rho;
        int256 m;
        int256 sigma;
    }

    /// @notice The forward is 0 or above `MAX_PRICE`.
    error InvalidForward(uint256 forward);
    /// @notice The strike is 0 or above `MAX_PRICE`.
    error InvalidStrike(uint256 strike);
    /// @notice The discount factor is 0 or above `MAX_DISCOUNT`.
    error InvalidDiscount(uint256 discount);
    /// @notice The total standard deviation is above `MAX_STD_DEV`.
    error InvalidStdDev(uint256 stdDev);
    /// @notice The smile's total variance at the strike is not positive (the engine refuses such a smile too).
    error NonPositiveVariance(int256 variance);

    /// @notice Return the Black-76 value of a call or a put: df (F N(d1) - K N(d2)) for a call,
    ///         df (K N(-d2) - F N(-d1)) for a put, d1,2 = ln(F / K) / s +- s / 2.
    /// @dev s = 0 gives the discounted intrinsic value. A value the rounding would make negative is 0.
    /// @param isCall True for a call, false for a put.
    /// @param forward The forward F (WAD USD per unit), 0 < F <= MAX_PRICE.
    /// @param strike The strike K (WAD USD per unit), 0 < K <= MAX_PRICE.
    /// @param stdDev The total standard deviation s = sigma sqrt(T) (WAD), s <= MAX_STD_DEV.
    /// @param discount The discount factor df (WAD), 0 < df <= MAX_DISCOUNT.
    /// @return The option's value per unit (WAD USD).
    function price(bool isCall, uint256 forward, uint256 strike, uint256 stdDev, uint256 discount)
        internal
        pure
        returns (uint256)
    {
        if (forward == 0 || forward > MAX_PRICE) revert InvalidForward(forward);
        if (strike == 0 || strike > MAX_PRICE) revert InvalidStrike(strike);
        if (discount == 0 || discount > MAX_DISCOUNT) revert InvalidDiscount(discount);
        if (stdDev > MAX_STD_DEV) revert InvalidStdDev(stdDev);
        int256 f = int256(forward);
        int256 k = int256(strike);
        int256 df = int256(discount);
        if (stdDev == 0) {
            int256 intrinsic = isCall ? f - k : k - f; // WAD
            return intrinsic > 0 ? uint256(intrinsic * df / WAD) : 0;
        }
        int256 s = int256(stdDev);
        // ln F - ln K, not ln(F / K): a quotient rounded to 18 decimals loses digits when K is far above F
        int256 d1 = (FixedPointMathLib.lnWad(f) - FixedPointMathLib.lnWad(k)) * WAD / s + s / 2;
        int256 d2 = d1 - s;
        int256 undiscounted = isCall // WAD^2: one rounding at the end
            ? f * int256(normCdf(d1)) - k * int256(normCdf(d2))
            : k * int256(normCdf(-d2)) - f * int256(normCdf(-d1));
        return undiscounted > 0 ? uint256(undiscounted * df / (WAD * WAD)) : 0;
    }

    /// @notice Return the Black-76 value from the annual volatility and the time to expiry: `price` with
    ///         s = sigma sqrt(tau).
    /// @param vol The annual implied volatility sigma (WAD; 1e18 = 100 vol points).
    /// @param tau The time to expiry in years (WAD; see `yearFraction`).
    function priceWithVol(bool isCall, uint256 forward, uint256 strike, uint256 vol, uint256 tau, uint256 discount)
        internal
        pure
        returns (uint256)
    {
        return price(isCall, forward, strike, vol * FixedPointMathLib.sqrtWad(tau) / 1e18, discount);
    }

    /// @notice Return the Black-76 value with the smile's volatility at the strike: `price` with s = sqrt(w(ln(K/F))).
    /// @dev sigma sqrt(T) = sqrt(w / T) sqrt(T) = sqrt(w): the smile's total variance gives s without T.
    function priceOnSmile(bool isCall, uint256 forward, uint256 strike, Smile memory smile, uint256 discount)
        internal
        pure
        returns (uint256)
    {
        return price(isCall, forward, strike, smileStdDev(smile, forward, strike), discount);
    }

    /// @notice Return the SVI raw total implied variance w(k) = a + b (rho (k - m) + sqrt((k - m)^2 + sigma^2)).
    /// @param smile The SVI raw parameters (WAD).
    /// @param logMoneyness k = ln(K / F) (WAD).
    /// @return w The total variance sigma^2 T (WAD); not checked to be positive.
    function sviTotalVariance(Smile memory smile, int256 logMoneyness) internal pure returns (int256 w) {
        int256 d = logMoneyness - smile.m;
        // sqrt of the WAD^2 sum is the WAD root, rounded down
        int256 root = int256(FixedPointMathLib.sqrt(uint256(d * d + smile.sigma * smile.sigma)));
        w = smile.a + smile.b * (smile.rho * d / WAD + root) / WAD;
    }

    /// @notice Return the total standard deviation sqrt(w(ln(K / F))) the smile gives at the strike.
    /// @dev Reverts `NonPositiveVariance` when w <= 0, and `InvalidForward`/`InvalidStrike` for a zero price.
    function smileStdDev(Smile memory smile, uint256 forward, uint256 strike) internal pure returns (uint256) {
        if (forward == 0 || forward > MAX_PRICE) revert InvalidForward(forward);
        if (strike == 0 || strike > MAX_PRICE) revert InvalidStrike(strike);
        int256 k = FixedPointMathLib.lnWad(int256(strike)) - FixedPointMathLib.lnWad(int256(forward));
        int256 w = sviTotalVariance(smile, k);
        if (w <= 0) revert NonPositiveVariance(w);
        return FixedPointMathLib.sqrtWad(uint256(w));
    }

    /// @notice Return the scale df (F + K) of a value (WAD USD), against which its rounding error is bounded.
    function valueScale(uint256 forward, uint256 strike, uint256 discount) internal pure returns (uint256) {
        return (forward + strike) * discount / 1e18;
    }

    /// @notice Return how far an honest risk-array entry's P&L R x QUANTUM can be from the P&L V_s - V_0 this
    ///         library recomputes: QUANTUM (half of it the engine's round-half-even, half slack) plus
    ///         RELATIVE_TOLERANCE of both values' scales (`valueScale`). A pricing challenge proves an entry wrong only
    ///         beyond it: at most 1.1 quanta while the scales add up to 1e7 USD or less.
    /// @param baseScale The unshocked value's scale (0 for the base (mark) entry itself).
    /// @param scenarioScale The scenario value's scale.
    function pnlTolerance(uint256 baseScale, uint256 scenarioScale) internal pure returns (uint256) {
        return QUANTUM + (baseScale + scenarioScale) * RELATIVE_TOLERANCE / 1e18;
    }

    /// @notice Return the discount factor exp(-rate x tau) (WAD) for a continuously compounded annual rate (WAD).
    function discountFactor(int256 rate, uint256 tau) internal pure returns (uint256) {
        return uint256(FixedPointMathLib.expWad(-rate * int256(tau) / WAD));
    }

    /// @notice Return tau = seconds / SECONDS_PER_YEAR in years (WAD, rounded down).
    function yearFraction(uint256 secondsToExpiry) internal pure returns (uint256) {
        return secondsToExpiry * 1e18 / SECONDS_PER_YEAR;
    }

    /// @notice Return the standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 (WAD in, WAD out, rounded to nearest).
    /// @dev Each tail is computed directly (no 1 - p cancellation); |Phi - exact| stays within a few 1e-18.
    function normCdf(int256 x) internal pure returns (uint256) {
        if (x <= -CDF_LIMIT) return 0;
        if (x >= CDF_LIMIT) return 1e18;
        int256 y = (x < 0 ? -x : x) * WAD_TO_RAY; // |x| at 27 decimals
        int256 z = y * INV_SQRT2 / RAY;
        int256 phi; // RAY
        if (z <= ERF_THRESH) {
            int256 halfErf = _erfSmall(z) / 2;
            phi = x < 0 ? RAY / 2 - halfErf : RAY / 2 + halfErf;
        } else {
            int256 halfTail = _erfcTail(z) / 2;
            phi = x < 0 ? halfTail : RAY - halfTail;
        }
        return uint256((phi + WAD_TO_RAY / 2) / WAD_TO_RAY);
    }

    /// @notice Return the complementary error function erfc(x) in [0, 2] (WAD in, WAD out, rounded to nearest).
    function erfc(int256 x) internal pure returns (uint256) {
        if (x <= -ERFC_LIMIT) return 2e18;
        if (x >= ERFC_LIMIT) return 0;
        int256 y = (x < 0 ? -x : x) * WAD_TO_RAY;
        int256 value; // RAY
        if (y <= ERF_THRESH) {
            value = x < 0 ? RAY + _erfSmall(y) : RAY - _erfSmall(y);
        } else {
            value = x < 0 ? 2 * RAY - _erfcTail(y) : _erfcTail(y);
        }
        return uint256((value + WAD_TO_RAY / 2) / WAD_TO_RAY);
    }

    /// @dev erf(y) for 0 <= y <= 0.46875 (RAY), Cody's first interval.
    function _erfSmall(int256 y) private pure returns (int256) {
        int256 ysq = y * y / RAY;
        int256 num = A4 * ysq / RAY;
        int256 den = ysq;
        num = (num + A0) * ysq / RAY;
        den = (den + B0) * ysq / RAY;
        num = (num + A1) * ysq / RAY;
        den = (den + B1) * ysq / RAY;
        num = (num + A2) * ysq / RAY;
        den = (den + B2) * ysq / RAY;
        return y * (num + A3) / (den + B3);
    }

    /// @dev erfc(y) = exp(-y^2) R(y) for y > 0.46875 (RAY), Cody's second and third intervals; 0 from 26.543.
    function _erfcTail(int256 y) private pure returns (int256) {
        if (y >= ERFC_XBIG) return 0;
        int256 rational;
        if (y <= ERFC_NEAR_LIMIT) {
            int256 num = C8 * y / RAY;
            int256 den = y;
            num = (num + C0) * y / RAY;
            den = (den + D0) * y / RAY;
            num = (num + C1) * y / RAY;
            den = (den + D1) * y / RAY;
            num = (num + C2) * y / RAY;
            den = (den + D2) * y / RAY;
            num = (num + C3) * y / RAY;
            den = (den + D3) * y / RAY;
            num = (num + C4) * y / RAY;
            den = (den + D4) * y / RAY;
            num = (num + C5) * y / RAY;
            den = (den + D5) * y / RAY;
            num = (num + C6) * y / RAY;
            den = (den + D6) * y / RAY;
            rational = (num + C7) * RAY / (den + D7);
        } else {
            int256 ysq = RAY * RAY / y * RAY / y; // 1 / y^2
            int256 num = P5 * ysq / RAY;
            int256 den = ysq;
            num = (num + P0) * ysq / RAY;
            den = (den + Q0) * ysq / RAY;
            num = (num + P1) * ysq / RAY;
            den = (den + Q1) * ysq / RAY;
            num = (num + P2) * ysq / RAY;
            den = (den + Q2) * ysq / RAY;
            num = (num + P3) * ysq / RAY;
            den = (den + Q3) * ysq / RAY;
            int256 r = ysq * (num + P4) / (den + Q4);
            rational = (INV_SQRT_PI - r) * RAY / y;
        }
        // exp(-y^2) at 18 decimals: the exponent is exact to 1e-18, so the factor is too (relatively)
        int256 gauss = FixedPointMathLib.expWad(-(y * y / RAY / WAD_TO_RAY));
        return gauss * WAD_TO_RAY * rational / RAY;
    }
}
