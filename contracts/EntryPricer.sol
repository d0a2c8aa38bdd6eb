// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {FixedPointMathLib} from "solady/src/utils/FixedPointMathLib.sol";
import {Black76} from "./Black76.sol";
import {UnderlyingQuote, SmileQuote} from "./PmoracleTypes.sol";

/// @title EntryPricer
/// @notice Recomputes one option entry R[i, s] of a round's risk arrays in fixed point (Black76.sol) from the
///         committed market snapshot and the underlying's committed scenario row, as the engine's kernel computes it
///         (`risk/kernel.py`, European option branch): the P&L V_s - V_0 of one unit and the tolerance within which an
///         honest entry lies (`Black76.pnlTolerance`). Stateless; MarginOracle deploys one in its constructor and
///         calls it from `challengePricing` (a separate contract keeps MarginOracle under the code size limit).
/// @dev The scenario row (docs/protocol.md, "Commitments of a report") holds the engine's binary64 floats bit for bit:
///      base = horizon (years), addon = the vol shift's power in eighths, values = S price multipliers, S vol
///      shocks, then shift, tenor_days, min_dte_days, max_shift, min_vol, max_vol. Each float becomes a WAD here
///      (truncated toward zero: at most 1e-18 off). A NaN, an infinity or a negative power cannot come from the
///      engine: such a row is malformed, which is itself proof of fraud.
///      The engine, for an option expiring at T (years from the snapshot's time) with forward F (quoted, or
///      index x exp(rate T)), df = exp(-rate T), vol = sqrt(w(ln(K / F)) / T):
///        shift = min(vol_shift x (tenor_days / max(365 T, min_dte_days))^(power / 8), max_shift)
///        vol_s = vol_shock_s == 0 ? vol : clamp(vol x (1 + vol_shock_s x shift), min_vol, max_vol)
///        V_0 = B76(F, K, T, vol, df), V_s = B76(F x mult_s, K, T_s, vol_s, exp(-rate T_s)), T_s = T - horizon
///      (T_s <= 0: the intrinsic value, undiscounted). Every step is continuous in its inputs except at vol_shock = 0
///      and T_s = 0, where both sides decide alike (exact bits, exact seconds), so the engine's binary64 rounding and
///      this fixed point stay within `Black76.pnlTolerance` of each other.
contract EntryPricer {
    /// @notice The market's prices (forwards, index, strikes) are USD with 8 decimals: x 1e10 is WAD.
    uint256 public constant PRICE_TO_WAD = 1e10;
    /// @notice The number of vol parameters after the multipliers and shocks of a scenario row.
    uint256 public constant VOL_PARAMS = 6;

    int256 internal constant WAD = 1e18;

    /// @notice What one entry of an option is recomputed from, besides the underlying and the scenario row.
    struct OptionEntry {
        bool isCall;
        uint256 strike; // USD 1e8, as the ledger lists it
        uint64 expiry; // unix seconds, after `time`
        uint64 time; // the market snapshot's time
        uint256 scenario; // the column s
        uint256 scenarios; // S, the number of columns of the instrument's row
    }

    /// @notice What one entry of a perpetual (kind 0), a future (1) or an expired option (2 call, 3 put) is
    ///         recomputed from, besides the underlying and the scenario row's values.
    struct LevelEntry {
        uint8 kind;
        uint256 strike; // USD 1e8 (options)
        uint64 expiry; // unix seconds (0 for a perpetual)
        uint64 time; // the market snapshot's time
        uint256 scenario; // the column s
        uint256 scenarios; // S, the number of columns of the instrument's row
    }

    /// @dev The scenario's inputs as WADs.
    struct Scenario {
        int256 horizon;
        int256 mult;
        int256 shock;
        int256 volShift;
        int256 tenorDays;
        int256 minDteDays;
        int256 maxShift;
        int256 minVol;
        int256 maxVol;
        uint256 power;
    }

    /// @dev The unshocked valuation.
    struct Valuation {
        uint256 forward;
        uint256 strike;
        uint256 tau;
        uint256 discount;
        uint256 stdDev;
        uint256 value;
    }

    /// @notice The market has no smile for the option's expiry (the engine refuses to value such an option).
    error MissingSmile(bytes32 underlying, uint64 expiry);
    /// @notice The option has expired at the snapshot's time (only live options are recomputed here).
    error OptionExpired(uint64 expiry, uint64 time);

    /// @notice Return the recomputed P&L V_s - V_0 of one unit (WAD USD), its tolerance (WAD USD), or `malformed`
    ///         when the scenario row cannot be the engine's (a width other than 8 (2 S + 6) bytes, a NaN or
    ///         infinity, a negative power).
    /// @param und The option's underlying in the committed market snapshot.
    /// @param entry The option and the scenario.
    /// @param horizonBits The scenario row's base: the horizon in years (binary64 bits).
    /// @param power The scenario row's addon: the vol shift's power in eighths.
    /// @param values The scenario row's values.
    function optionPnl(
        UnderlyingQuote calldata und,
        OptionEntry calldata entry,
        int64 horizonBits,
        int64 power,
        bytes calldata values
    ) external pure returns (bool malformed, int256 pnl, uint256 tolerance) {
        if (entry.expiry <= entry.time) revert OptionExpired(entry.expiry, entry.time);
        Scenario memory sc;
        (malformed, sc) = _scenario(entry, horizonBits, power, values);
        if (malformed) return (true, 0, 0);
        Valuation memory v0 = _unshocked(und, entry);
        Valuation memory vs = _shocked(und.rate, v0, sc, entry);
        pnl = int256(vs.value) - int256(v0.value);
        tolerance = Black76.pnlTolerance(
            Black76.valueScale(v0.forward, v0.strike, v0.discount), Black76.valueScale(vs.forward, vs.strike, vs.discount)
        );
    }

    /// @notice Return the recomputed P&L (WAD USD per unit) and tolerance of an entry the engine computes without a
    ///         pricer (`risk/kernel.py`): a perpetual's index L, a live future's forward L (quoted, or
    ///         index x exp(rate T)), or an expired future's index L move to L x mult_s (P&L L x mult_s - L); an
    ///         expired option is worth its intrinsic value on the index (P&L intrinsic(index x mult_s) - intrinsic(index));
    ///         an expired instrument whose settlement price is fixed is a constant (P&L 0). `malformed` as in
    ///         `optionPnl` (a width other than 8 (2 S + 6) bytes, a NaN, an infinite or non-positive multiplier).
    /// @param und The instrument's underlying in the committed market snapshot.
    /// @param entry The instrument and the scenario.
    /// @param values The scenario row's values.
    function levelPnl(UnderlyingQuote calldata und, LevelEntry calldata entry, bytes calldata values)
        external
        pure
        returns (bool malformed, int256 pnl, uint256 tolerance)
    {
        if (values.length != 8 * (2 * entry.scenarios + VOL_PARAMS)) return (true, 0, 0);
        (bool ok, int256 mult) = wadOfDouble(_word(values, entry.scenario));
        if (!ok || mult <= 0) return (true, 0, 0);
        bool expired = entry.kind != 0 && entry.expiry <= entry.time;
        if (expired && _isSettled(und, entry.expiry)) return (false, 0, Black76.pnlTolerance(0, 0));
        uint256 level = und.index * PRICE_TO_WAD;
        if (entry.kind == 1 && !expired) {
            level = _forward(und, entry.expiry, Black76.yearFraction(entry.expiry - entry.time));
        }
        uint256 levelS = level * uint256(mult) / 1e18;
        if (entry.kind < 2) {
            return (false, int256(levelS) - int256(level), Black76.pnlTolerance(level, levelS));
        }
        uint256 strike = entry.strike * PRICE_TO_WAD;
        bool isCall = entry.kind == 2;
        pnl = int256(_intrinsic(isCall, levelS, strike)) - int256(_intrinsic(isCall, level, strike));
        tolerance = Black76.pnlTolerance(level + strike, levelS + strike);
    }

    /// @notice Return the WAD value of a binary64 number given by its bits (truncated toward zero), and false for a
    ///         NaN or an infinity.
    function wadOfDouble(int64 bits) public pure returns (bool ok, int256 wad) {
        uint256 word = uint64(bits);
        uint256 exponent = (word >> 52) & 0x7ff;
        if (exponent == 0x7ff) return (false, 0);
        uint256 mantissa = word & ((1 << 52) - 1);
        if (exponent == 0) exponent = 1; // subnormal: no implicit bit
        else mantissa |= 1 << 52;
        // value = mantissa x 2^(exponent - 1075); mantissa x 1e18 < 2^113
        uint256 scaled = mantissa * 1e18;
        uint256 magnitude;
        if (exponent >= 1075) {
            if (exponent - 1075 > 130) return (false, 0); // beyond 2^183: no engine float is that large
            magnitude = scaled << (exponent - 1075);
        } else {
            uint256 shift = 1075 - exponent;
            magnitude = shift >= 256 ? 0 : scaled >> shift;
        }
        wad = word >> 63 == 1 ? -int256(magnitude) : int256(magnitude);
        ok = true;
    }

    /// @dev Decode the scenario's multiplier, shock and the row's global inputs.
    function _scenario(OptionEntry calldata entry, int64 horizonBits, int64 power, bytes calldata values)
        internal
        pure
        returns (bool malformed, Scenario memory sc)
    {
        uint256 n = entry.scenarios;
        if (values.length != 8 * (2 * n + VOL_PARAMS) || power < 0) return (true, sc);
        sc.power = uint256(int256(power));
        bool ok;
        bool all = true;
        (ok, sc.horizon) = wadOfDouble(horizonBits);
        all = all && ok;
        (ok, sc.mult) = wadOfDouble(_word(values, entry.scenario));
        all = all && ok && sc.mult > 0;
        (ok, sc.shock) = wadOfDouble(_word(values, n + entry.scenario));
        all = all && ok;
        int256[VOL_PARAMS] memory p;
        for (uint256 j = 0; j < VOL_PARAMS; ++j) {
            (ok, p[j]) = wadOfDouble(_word(values, 2 * n + j));
            all = all && ok;
        }
        (sc.volShift, sc.tenorDays, sc.minDteDays, sc.maxShift, sc.minVol, sc.maxVol) = (p[0], p[1], p[2], p[3], p[4], p[5]);
        return (!all, sc);
    }

    /// @dev Forward, time, discount, smile deviation and value of the option at the snapshot (V_0).
    function _unshocked(UnderlyingQuote calldata und, OptionEntry calldata entry)
        internal
        pure
        returns (Valuation memory v)
    {
        v.strike = entry.strike * PRICE_TO_WAD;
        v.tau = Black76.yearFraction(entry.expiry - entry.time);
        v.forward = _forward(und, entry.expiry, v.tau);
        v.discount = Black76.discountFactor(und.rate, v.tau);
        v.stdDev = Black76.smileStdDev(_smile(und, entry.expiry), v.forward, v.strike);
        v.value = Black76.price(entry.isCall, v.forward, v.strike, v.stdDev, v.discount);
    }

    /// @dev The option in the scenario (V_s): the forward times the multiplier, the shocked vol over T - horizon.
    function _shocked(int256 rate, Valuation memory v0, Scenario memory sc, OptionEntry calldata entry)
        internal
        pure
        returns (Valuation memory v)
    {
        uint256 vol = v0.stdDev * 1e18 / FixedPointMathLib.sqrtWad(v0.tau);
        uint256 volS = sc.shock == 0 ? vol : _shockedVol(vol, sc, entry);
        v.strike = v0.strike;
        v.forward = v0.forward * uint256(sc.mult) / 1e18;
        int256 tauS = int256(v0.tau) - sc.horizon;
        v.discount = 1e18;
        if (tauS > 0) {
            v.tau = uint256(tauS);
            v.discount = Black76.discountFactor(rate, v.tau);
            v.stdDev = volS * FixedPointMathLib.sqrtWad(v.tau) / 1e18;
        }
        v.value = Black76.price(entry.isCall, v.forward, v.strike, v.stdDev, v.discount);
    }

    /// @dev The scenario's vol: vol (1 + shock x shift) within [min_vol, max_vol].
    function _shockedVol(uint256 vol, Scenario memory sc, OptionEntry calldata entry) internal pure returns (uint256) {
        int256 dte = int256(uint256(entry.expiry - entry.time) * 1e18 / 1 days);
        int256 ratio = sc.tenorDays * WAD / (dte > sc.minDteDays ? dte : sc.minDteDays);
        int256 scaled = sc.power == 0 ? WAD : FixedPointMathLib.expWad(FixedPointMathLib.lnWad(ratio) * int256(sc.power) / 8);
        int256 shift = sc.volShift * scaled / WAD;
        if (shift > sc.maxShift) shift = sc.maxShift;
        int256 shocked = int256(vol) * (WAD + sc.shock * shift / WAD) / WAD;
        if (shocked < sc.minVol) shocked = sc.minVol;
        if (shocked > sc.maxVol) shocked = sc.maxVol;
        return shocked > 0 ? uint256(shocked) : 0;
    }

    /// @dev The quoted forward of the expiry, or index x exp(rate x tau).
    function _forward(UnderlyingQuote calldata und, uint64 expiry, uint256 tau) internal pure returns (uint256) {
        for (uint256 j = 0; j < und.forwards.length; ++j) {
            if (und.forwards[j].expiry == expiry && und.forwards[j].price > 0) {
                return und.forwards[j].price * PRICE_TO_WAD;
            }
        }
        uint256 growth = uint256(FixedPointMathLib.expWad(und.rate * int256(tau) / WAD));
        return und.index * PRICE_TO_WAD * growth / 1e18;
    }

    /// @dev Whether the expiry's settlement price is fixed in the market snapshot.
    function _isSettled(UnderlyingQuote calldata und, uint64 expiry) internal pure returns (bool) {
        for (uint256 j = 0; j < und.settlements.length; ++j) {
            if (und.settlements[j].expiry == expiry) return true;
        }
        return false;
    }

    function _intrinsic(bool isCall, uint256 level, uint256 strike) internal pure returns (uint256) {
        if (isCall) return level > strike ? level - strike : 0;
        return strike > level ? strike - level : 0;
    }

    function _smile(UnderlyingQuote calldata und, uint64 expiry) internal pure returns (Black76.Smile memory) {
        for (uint256 j = 0; j < und.smiles.length; ++j) {
            SmileQuote calldata q = und.smiles[j];
            if (q.expiry == expiry) return Black76.Smile(q.a, q.b, q.rho, q.m, q.sigma);
        }
        revert MissingSmile(und.symbol, expiry);
    }

    function _word(bytes calldata values, uint256 index) internal pure returns (int64) {
        uint256 offset = index * 8;
        return int64(uint64(bytes8(values[offset:offset + 8])));
    }
}
