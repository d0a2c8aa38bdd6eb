// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Black76} from "../../contracts/Black76.sol";

/// @title Black76Harness
/// @notice Exposes the internal Black76 library for tests: the Foundry fuzz tests (Black76.t.sol) and the anvil
///         differential tests (tests/integration/chain/test_black76.py), which compile it with the pinned solc at
///         test time (`collect_sources(units=...)`): it is a test tool, not a committed artifact.
contract Black76Harness {
    /// @notice Black76.price.
    function price(bool isCall, uint256 forward, uint256 strike, uint256 stdDev, uint256 discount)
        external
        pure
        returns (uint256)
    {
        return Black76.price(isCall, forward, strike, stdDev, discount);
    }

    /// @notice Black76.price of every element (one eth_call for a batch of the differential test).
    function priceBatch(
        bool[] calldata isCall,
        uint256[] calldata forward,
        uint256[] calldata strike,
        uint256[] calldata stdDev,
        uint256[] calldata discount
    ) external pure returns (uint256[] memory values) {
        values = new uint256[](isCall.length);
        for (uint256 i = 0; i < isCall.length; ++i) {
            values[i] = Black76.price(isCall[i], forward[i], strike[i], stdDev[i], discount[i]);
        }
    }

    /// @notice Black76.price and the gas it used (gasleft() before and after the library call).
    function measurePrice(bool isCall, uint256 forward, uint256 strike, uint256 stdDev, uint256 discount)
        external
        view
        returns (uint256 value, uint256 gasUsed)
    {
        uint256 before = gasleft();
        value = Black76.price(isCall, forward, strike, stdDev, discount);
        gasUsed = before - gasleft();
    }

    /// @notice Black76.priceOnSmile and the gas it used.
    function measurePriceOnSmile(
        bool isCall,
        uint256 forward,
        uint256 strike,
        Black76.Smile calldata smile,
        uint256 discount
    ) external view returns (uint256 value, uint256 gasUsed) {
        Black76.Smile memory copy = smile;
        uint256 before = gasleft();
        value = Black76.priceOnSmile(isCall, forward, strike, copy, discount);
        gasUsed = before - gasleft();
    }

    /// @notice Black76.priceWithVol.
    function priceWithVol(bool isCall, uint256 forward, uint256 strike, uint256 vol, uint256 tau, uint256 discount)
        external
        pure
        returns (uint256)
    {
        return Black76.priceWithVol(isCall, forward, strike, vol, tau, discount);
    }

    /// @notice Black76.priceOnSmile.
    function priceOnSmile(bool isCall, uint256 forward, uint256 strike, Black76.Smile calldata smile, uint256 discount)
        external
        pure
        returns (uint256)
    {
        return Black76.priceOnSmile(isCall, forward, strike, smile, discount);
    }

    /// @notice Black76.sviTotalVariance.
    function sviTotalVariance(Black76.Smile calldata smile, int256 logMoneyness) external pure returns (int256) {
        return Black76.sviTotalVariance(smile, logMoneyness);
    }

    /// @notice Black76.smileStdDev.
    function smileStdDev(Black76.Smile calldata smile, uint256 forward, uint256 strike)
        external
        pure
        returns (uint256)
    {
        return Black76.smileStdDev(smile, forward, strike);
    }

    /// @notice Black76.normCdf of every element.
    function normCdfBatch(int256[] calldata x) external pure returns (uint256[] memory values) {
        values = new uint256[](x.length);
        for (uint256 i = 0; i < x.length; ++i) {
            values[i] = Black76.normCdf(x[i]);
        }
    }

    /// @notice Black76.erfc of every element.
    function erfcBatch(int256[] calldata x) external pure returns (uint256[] memory values) {
        values = new uint256[](x.length);
        for (uint256 i = 0; i < x.length; ++i) {
            values[i] = Black76.erfc(x[i]);
        }
    }

    /// @notice Black76.discountFactor.
    function discountFactor(int256 rate, uint256 tau) external pure returns (uint256) {
        return Black76.discountFactor(rate, tau);
    }

    /// @notice Black76.yearFraction.
    function yearFraction(uint256 secondsToExpiry) external pure returns (uint256) {
        return Black76.yearFraction(secondsToExpiry);
    }

    /// @notice Black76.valueScale.
    function valueScale(uint256 forward, uint256 strike, uint256 discount) external pure returns (uint256) {
        return Black76.valueScale(forward, strike, discount);
    }

    /// @notice Black76.pnlTolerance.
    function pnlTolerance(uint256 baseScale, uint256 scenarioScale) external pure returns (uint256) {
        return Black76.pnlTolerance(baseScale, scenarioScale);
    }

    /// @notice Black76.priceOnSmile of every element, each with its smile (a batch of the differential test).
    function priceOnSmileBatch(
        bool[] calldata isCall,
        uint256[] calldata forward,
        uint256[] calldata strike,
        Black76.Smile[] calldata smiles,
        uint256[] calldata discount
    ) external pure returns (uint256[] memory values) {
        values = new uint256[](isCall.length);
        for (uint256 i = 0; i < isCall.length; ++i) {
            values[i] = Black76.priceOnSmile(isCall[i], forward[i], strike[i], smiles[i], discount[i]);
        }
    }
}
