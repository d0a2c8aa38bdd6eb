// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";

/// @title MarketFeeds
/// @notice Index prices, SVI volatility smiles and collateral prices/haircuts, written by the feeder role.
/// @dev Units: prices USD 1e8, rates/SVI/haircuts WAD 1e18; times unix seconds (docs/contracts.md, CHAIN_API.md).
///      Each collateral asset also keeps the history of its collateral price, price x (1 - haircut), by block:
///      MarginAccounts values a withdrawal against the price of the attested round's anchor block.
contract MarketFeeds is AccessControl {
    using Checkpoints for Checkpoints.Trace208;

    /// @notice Role allowed to write feeds.
    bytes32 public constant FEEDER_ROLE = keccak256("FEEDER_ROLE");
    /// @notice 1e18.
    uint256 public constant WAD = 1e18;
    /// @notice Most expiries kept per underlying (bounds the snapshot view); settled ones can be removed.
    uint256 public constant MAX_EXPIRIES = 64;
    /// @notice Longest settlement window an admin can set.
    uint64 public constant MAX_SETTLEMENT_WINDOW = 7 days;

    /// @notice One expiry's SVI smile (raw parameters of total implied variance, WAD).
    struct SmileView {
        uint64 expiry;
        int256 a;
        int256 b;
        int256 rho;
        int256 m;
        int256 sigma;
        uint64 updatedAt;
    }

    /// @notice An underlying with its index, rate and smiles (sorted by expiry).
    struct UnderlyingView {
        bytes32 symbol;
        uint256 index;
        int256 rate;
        uint64 updatedAt;
        SmileView[] smiles;
    }

    /// @notice A collateral asset's price and haircut.
    struct AssetView {
        address token;
        bytes32 symbol;
        uint8 decimals;
        uint256 price;
        uint256 haircut;
        bytes32 underlying;
        uint64 updatedAt;
    }

    /// @notice The settlement price of one (underlying, expiry) and when it was fixed (0: not yet).
    struct Settlement {
        uint128 price;
        uint64 fixedAt;
        bool byFeeder;
    }

    struct Underlying {
        uint256 index;
        int256 rate;
        uint64 updatedAt;
        bool listed;
        uint64[] expiries;
        mapping(uint64 expiry => SmileView) smiles;
    }

    bytes32[] internal _symbols;
    mapping(bytes32 symbol => Underlying) internal _underlyings;
    address[] internal _tokens;
    mapping(address token => AssetView) internal _assets;
    /// @dev price x (WAD - haircut) (USD 1e8 x WAD) from the block of each write on.
    mapping(address token => Checkpoints.Trace208) internal _collateralPrices;
    mapping(bytes32 underlying => mapping(uint64 expiry => Settlement)) internal _settlements;
    /// @notice Seconds after an expiry during which only the feeder may fix its settlement price; after it anyone
    ///         may fix it at the index (`fixSettlementPrice`), so every expiry settles within a bounded delay.
    uint64 public settlementWindow = 1 days;

    /// @notice An index price and rate were written.
    event IndexSet(bytes32 indexed underlying, uint256 price, int256 rate, uint64 updatedAt);
    /// @notice A smile was written.
    event SmileSet(
        bytes32 indexed underlying, uint64 indexed expiry, int256 a, int256 b, int256 rho, int256 m, int256 sigma
    );
    /// @notice The settlement price of an expiry was fixed (`byFeeder` false: at the index, after the window).
    event SettlementPriceFixed(bytes32 indexed underlying, uint64 indexed expiry, uint256 price, bool byFeeder);
    /// @notice A settled expiry's smile was removed.
    event SmileRemoved(bytes32 indexed underlying, uint64 indexed expiry);
    /// @notice The settlement window was set.
    event SettlementWindowSet(uint64 window);
    /// @notice A collateral price and haircut were written.
    event AssetPriceSet(address indexed token, uint256 price, uint256 haircut, bytes32 underlying, uint64 updatedAt);

    /// @notice The symbol is zero.
    error InvalidSymbol(bytes32 symbol);
    /// @notice A price is zero.
    error InvalidPrice(uint256 price);
    /// @notice The underlying has no index yet.
    error UnknownUnderlying(bytes32 underlying);
    /// @notice The expiry is zero.
    error InvalidExpiry(uint64 expiry);
    /// @notice Too many expiries for one underlying.
    error TooManyExpiries(bytes32 underlying, uint256 count);
    /// @notice An SVI parameter is out of range (b >= 0, |rho| < 1, sigma > 0).
    error InvalidSmile(string parameter, int256 value);
    /// @notice A haircut above 1 (WAD).
    error InvalidHaircut(uint256 haircut);
    /// @notice The token has no price.
    error UnpricedAsset(address token);
    /// @notice A settlement price was posted before its expiry.
    error SettlementBeforeExpiry(bytes32 underlying, uint64 expiry, uint64 now);
    /// @notice The expiry's settlement price is already fixed.
    error SettlementAlreadyFixed(bytes32 underlying, uint64 expiry, uint256 price);
    /// @notice The feeder's window to post this settlement price has closed (fix it at the index instead).
    error SettlementWindowClosed(bytes32 underlying, uint64 expiry, uint64 deadline);
    /// @notice The feeder's window is still open: only the feeder may fix the price yet.
    error SettlementWindowOpen(bytes32 underlying, uint64 expiry, uint64 deadline);
    /// @notice The index was last written at `updatedAt`, before `expiry`: it cannot settle that expiry.
    error StaleIndex(bytes32 underlying, uint64 updatedAt, uint64 expiry);
    /// @notice The expiry has no settlement price yet.
    error NotSettled(bytes32 underlying, uint64 expiry);
    /// @notice The underlying has no smile for this expiry.
    error UnknownSmile(bytes32 underlying, uint64 expiry);
    /// @notice A settlement window of zero or above MAX_SETTLEMENT_WINDOW.
    error InvalidSettlementWindow(uint64 window);

    /// @param admin Holds DEFAULT_ADMIN_ROLE (grants FEEDER_ROLE).
    /// @param feeder Initial holder of FEEDER_ROLE.
    constructor(address admin, address feeder) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(FEEDER_ROLE, feeder);
    }

    /// @notice Write the index price (USD 1e8) and rate (WAD) of an underlying; lists it on first write.
    /// @param underlying Left-aligned ASCII symbol, e.g. "BTC".
    /// @param price Index price, USD 1e8, > 0.
    /// @param rate Continuously compounded rate, WAD.
    function setIndex(bytes32 underlying, uint256 price, int256 rate) external onlyRole(FEEDER_ROLE) {
        if (underlying == bytes32(0)) revert InvalidSymbol(underlying);
        if (price == 0) revert InvalidPrice(price);
        Underlying storage u = _underlyings[underlying];
        if (!u.listed) {
            u.listed = true;
            _symbols.push(underlying);
        }
        u.index = price;
        u.rate = rate;
        uint64 updatedAt = SafeCast.toUint64(block.timestamp);
        u.updatedAt = updatedAt;
        emit IndexSet(underlying, price, rate, updatedAt);
    }

    /// @notice Write the SVI smile of one expiry of a listed underlying.
    /// @param underlying The underlying symbol.
    /// @param expiry Expiry, unix seconds.
    /// @param a SVI a (WAD).
    /// @param b SVI b (WAD, >= 0).
    /// @param rho SVI rho (WAD, |rho| < 1).
    /// @param m SVI m (WAD).
    /// @param sigma SVI sigma (WAD, > 0).
    function setSmile(bytes32 underlying, uint64 expiry, int256 a, int256 b, int256 rho, int256 m, int256 sigma)
        external
        onlyRole(FEEDER_ROLE)
    {
        Underlying storage u = _underlyings[underlying];
        if (!u.listed) revert UnknownUnderlying(underlying);
        if (expiry == 0) revert InvalidExpiry(expiry);
        if (b < 0) revert InvalidSmile("b", b);
        if (rho <= -int256(WAD) || rho >= int256(WAD)) revert InvalidSmile("rho", rho);
        if (sigma <= 0) revert InvalidSmile("sigma", sigma);
        if (u.smiles[expiry].expiry == 0) {
            uint64[] storage expiries = u.expiries;
            if (expiries.length >= MAX_EXPIRIES) revert TooManyExpiries(underlying, expiries.length);
            // insertion keeps expiries sorted ascending
            expiries.push(expiry);
            uint256 i = expiries.length - 1;
            while (i > 0 && expiries[i - 1] > expiry) {
                expiries[i] = expiries[i - 1];
                --i;
            }
            expiries[i] = expiry;
        }
        u.smiles[expiry] = SmileView(expiry, a, b, rho, m, sigma, SafeCast.toUint64(block.timestamp));
        emit SmileSet(underlying, expiry, a, b, rho, m, sigma);
    }

    /// @notice Write a collateral asset's price (USD 1e8) and haircut (WAD); lists it on first write.
    /// @param token The ERC20 token (its symbol and decimals are read once).
    /// @param price USD 1e8 per whole token, > 0.
    /// @param haircut Fraction of the value not counted as collateral, WAD, <= 1e18.
    /// @param underlying The underlying whose moves the asset follows (0 for a stablecoin).
    function setAssetPrice(address token, uint256 price, uint256 haircut, bytes32 underlying)
        external
        onlyRole(FEEDER_ROLE)
    {
        if (price == 0) revert InvalidPrice(price);
        if (haircut > WAD) revert InvalidHaircut(haircut);
        AssetView storage entry = _assets[token];
        if (entry.token == address(0)) {
            entry.token = token;
            entry.symbol = bytes32(bytes(IERC20Metadata(token).symbol()));
            entry.decimals = IERC20Metadata(token).decimals();
            _tokens.push(token);
        }
        entry.price = price;
        entry.haircut = haircut;
        entry.underlying = underlying;
        uint64 updatedAt = SafeCast.toUint64(block.timestamp);
        entry.updatedAt = updatedAt;
        _collateralPrices[token].push(SafeCast.toUint48(block.number), SafeCast.toUint208(price * (WAD - haircut)));
        emit AssetPriceSet(token, price, haircut, underlying, updatedAt);
    }

    /// @notice Post the settlement price (USD 1e8) of an expiry: the feeder's index at the expiry (08:00 UTC).
    ///         Refused before the expiry, after `settlementWindow`, and once fixed.
    /// @param underlying A listed underlying.
    /// @param expiry Expiry, unix seconds.
    /// @param price USD 1e8, > 0.
    function setSettlementPrice(bytes32 underlying, uint64 expiry, uint256 price) external onlyRole(FEEDER_ROLE) {
        if (!_underlyings[underlying].listed) revert UnknownUnderlying(underlying);
        if (price == 0) revert InvalidPrice(price);
        uint64 deadline = _checkUnfixed(underlying, expiry);
        if (block.timestamp > deadline) revert SettlementWindowClosed(underlying, expiry, deadline);
        _fix(underlying, expiry, price, true);
    }

    /// @notice Fix an expiry's settlement price at the current index once the feeder's window has passed without
    ///         a price: anyone may call it, so no expiry stays unsettled for longer than the window. The index must
    ///         have been written after the expiry (a feeder that stopped before it leaves nothing to settle on).
    /// @param underlying A listed underlying.
    /// @param expiry Expiry, unix seconds.
    function fixSettlementPrice(bytes32 underlying, uint64 expiry) external {
        Underlying storage u = _underlyings[underlying];
        if (!u.listed) revert UnknownUnderlying(underlying);
        uint64 deadline = _checkUnfixed(underlying, expiry);
        if (block.timestamp <= deadline) revert SettlementWindowOpen(underlying, expiry, deadline);
        if (u.updatedAt < expiry) revert StaleIndex(underlying, u.updatedAt, expiry);
        _fix(underlying, expiry, u.index, false);
    }

    /// @notice Remove the smile of an expiry whose settlement price is fixed (frees one of MAX_EXPIRIES).
    /// @param underlying The underlying symbol.
    /// @param expiry The settled expiry.
    function removeSmile(bytes32 underlying, uint64 expiry) external onlyRole(FEEDER_ROLE) {
        if (_settlements[underlying][expiry].fixedAt == 0) revert NotSettled(underlying, expiry);
        Underlying storage u = _underlyings[underlying];
        if (u.smiles[expiry].expiry == 0) revert UnknownSmile(underlying, expiry);
        delete u.smiles[expiry];
        uint64[] storage expiries = u.expiries;
        uint256 i = 0;
        while (expiries[i] != expiry) ++i;
        for (; i + 1 < expiries.length; ++i) {
            expiries[i] = expiries[i + 1];
        }
        expiries.pop();
        emit SmileRemoved(underlying, expiry);
    }

    /// @notice Set how long after an expiry only the feeder may post its settlement price.
    /// @param window Seconds, in (0, MAX_SETTLEMENT_WINDOW].
    function setSettlementWindow(uint64 window) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (window == 0 || window > MAX_SETTLEMENT_WINDOW) revert InvalidSettlementWindow(window);
        settlementWindow = window;
        emit SettlementWindowSet(window);
    }

    /// @notice Return the settlement price (USD 1e8) of an expiry and when it was fixed (both 0: not yet).
    /// @param underlying The underlying symbol.
    /// @param expiry Expiry, unix seconds.
    function settlementPrice(bytes32 underlying, uint64 expiry) external view returns (uint256 price, uint64 fixedAt) {
        Settlement memory s = _settlements[underlying][expiry];
        return (s.price, s.fixedAt);
    }

    /// @notice Return an underlying's index (USD 1e8) and the time it was written; reverts if it has none.
    /// @param underlying The underlying symbol.
    function indexOf(bytes32 underlying) external view returns (uint256 price, uint64 updatedAt) {
        Underlying storage u = _underlyings[underlying];
        if (!u.listed) revert UnknownUnderlying(underlying);
        return (u.index, u.updatedAt);
    }

    /// @notice Return a collateral asset's feed; reverts for an unpriced token.
    /// @param token The ERC20 token.
    function asset(address token) external view returns (AssetView memory) {
        AssetView memory a = _assets[token];
        if (a.token == address(0)) revert UnpricedAsset(token);
        return a;
    }

    /// @notice Return a collateral asset's collateral price, price x (1 - haircut) in USD 1e8 x WAD, now and at
    ///         the end of block `blockNumber`; all zero for an unpriced token, `atBlock` zero if not yet priced then.
    /// @param token The ERC20 token.
    /// @param blockNumber A past or the current block.
    /// @return decimals The token's decimals.
    /// @return current The latest collateral price.
    /// @return atBlock The collateral price in force at the end of block `blockNumber`.
    function collateralPriceAt(address token, uint64 blockNumber)
        external
        view
        returns (uint8 decimals, uint256 current, uint256 atBlock)
    {
        Checkpoints.Trace208 storage history = _collateralPrices[token];
        decimals = _assets[token].decimals;
        current = history.latest();
        atBlock = history.upperLookupRecent(SafeCast.toUint48(blockNumber));
    }

    /// @dev Revert unless `expiry` has passed and has no settlement price; return the end of the feeder's window.
    function _checkUnfixed(bytes32 underlying, uint64 expiry) internal view returns (uint64 deadline) {
        if (expiry == 0) revert InvalidExpiry(expiry);
        if (block.timestamp < expiry) {
            revert SettlementBeforeExpiry(underlying, expiry, SafeCast.toUint64(block.timestamp));
        }
        Settlement memory s = _settlements[underlying][expiry];
        if (s.fixedAt != 0) revert SettlementAlreadyFixed(underlying, expiry, s.price);
        deadline = expiry + settlementWindow;
    }

    function _fix(bytes32 underlying, uint64 expiry, uint256 price, bool byFeeder) internal {
        _settlements[underlying][expiry] = Settlement(SafeCast.toUint128(price), SafeCast.toUint64(block.timestamp), byFeeder);
        emit SettlementPriceFixed(underlying, expiry, price, byFeeder);
    }

    /// @notice Return the whole market: underlyings in listing order (smiles by expiry) and assets.
    function snapshot() external view returns (UnderlyingView[] memory underlyings, AssetView[] memory assets) {
        underlyings = new UnderlyingView[](_symbols.length);
        for (uint256 i = 0; i < _symbols.length; ++i) {
            Underlying storage u = _underlyings[_symbols[i]];
            SmileView[] memory smiles = new SmileView[](u.expiries.length);
            for (uint256 j = 0; j < smiles.length; ++j) {
                smiles[j] = u.smiles[u.expiries[j]];
            }
            underlyings[i] = UnderlyingView(_symbols[i], u.index, u.rate, u.updatedAt, smiles);
        }
        assets = new AssetView[](_tokens.length);
        for (uint256 i = 0; i < _tokens.length; ++i) {
            assets[i] = _assets[_tokens[i]];
        }
    }
}
