// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {EIP712} from "@openzeppelin/contracts/utils/cryptography/EIP712.sol";
import {SignatureChecker} from "@openzeppelin/contracts/utils/cryptography/SignatureChecker.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MarginAccounts} from "./MarginAccounts.sol";
import {MarketFeeds} from "./MarketFeeds.sol";

/// @title Exchange
/// @notice Consented, priced trades: both parties sign EIP-712 orders; the matcher only pairs them. A match is
///         applied to the ledger only if both signatures, both limits, both orders' remaining size, expiry and
///         nonce, and the price band around the instrument's mark hold (docs/protocol.md, "Orders").
/// @dev An order can be filled in parts up to its size; it is identified by its EIP-712 digest, so the same
///      order can never be replayed past its size, on another chain, or on another Exchange. `cancel` kills one
///      order, `cancelUpTo` every order of the caller below a nonce.
contract Exchange is AccessControl, EIP712 {
    /// @notice Role allowed to submit matches.
    bytes32 public constant MATCHER_ROLE = keccak256("MATCHER_ROLE");
    /// @notice Role allowed to post marks.
    bytes32 public constant FEEDER_ROLE = keccak256("FEEDER_ROLE");
    /// @notice keccak256 of the EIP-712 Order type (ORDER_TYPE in src/pmoracle/chain/orders.py).
    bytes32 public constant ORDER_TYPEHASH = keccak256(
        "Order(address account,uint32 instrumentId,bool isBuy,uint128 size,uint128 limitPrice,uint64 nonce,uint64 expiry)"
    );
    /// @notice 1e18.
    uint256 public constant WAD = 1e18;
    /// @notice Widest band an admin can set: 50% of the mark, or of the index.
    uint64 public constant MAX_BAND = 0.5e18;

    /// @notice An order: buy or sell up to `size` (1e-4 units) at `limitPrice` (USD 1e8) or better, until `expiry`.
    struct Order {
        address account;
        uint32 instrumentId;
        bool isBuy;
        uint128 size;
        uint128 limitPrice;
        uint64 nonce;
        uint64 expiry;
    }

    /// @notice An instrument's mark price (USD 1e8) and when it was posted.
    struct Mark {
        uint128 price;
        uint64 updatedAt;
    }

    /// @notice The ledger trades are applied to.
    MarginAccounts public immutable ledger;
    /// @notice The market feeds (index prices for the band).
    MarketFeeds public immutable feeds;

    /// @notice Size filled (or cancelled) of an order, by digest.
    mapping(bytes32 digest => uint128) public filled;
    /// @notice Orders of an account with a nonce below this are cancelled.
    mapping(address account => uint64) public minNonce;
    /// @notice Mark of an instrument.
    mapping(uint32 instrumentId => Mark) public marks;
    /// @notice Half-width of the band as a fraction of the mark (WAD).
    uint64 public bandOfMark;
    /// @notice Least half-width of the band as a fraction of the underlying's index (WAD): cheap options trade
    ///         in a band that does not vanish with their mark.
    uint64 public bandOfIndex;
    /// @notice A mark older than this (seconds) cannot price a trade.
    uint64 public markMaxAge;

    /// @notice Two orders were matched for `size` at `price`.
    event OrdersMatched(
        bytes32 indexed buyDigest, bytes32 indexed sellDigest, uint32 indexed instrumentId, uint128 size, uint128 price
    );
    /// @notice An order was cancelled by its account.
    event OrderCancelled(address indexed account, bytes32 indexed digest);
    /// @notice An account cancelled every order with a nonce below `nonce`.
    event NoncesCancelled(address indexed account, uint64 nonce);
    /// @notice Marks were posted.
    event MarksSet(uint32[] instrumentIds, uint128[] prices);
    /// @notice The band or the marks' maximum age was set.
    event BandSet(uint64 bandOfMark, uint64 bandOfIndex, uint64 markMaxAge);

    /// @notice The first order is not a buy or the second not a sell.
    error OrderSides(bool buyIsBuy, bool sellIsBuy);
    /// @notice The two orders are for different instruments.
    error InstrumentMismatch(uint32 buyInstrument, uint32 sellInstrument);
    /// @notice The signature is not the order account's.
    error InvalidOrderSignature(address account, bytes32 digest);
    /// @notice The order expired.
    error OrderExpired(bytes32 digest, uint64 expiry, uint64 now);
    /// @notice The order's nonce was cancelled.
    error OrderNonceCancelled(address account, uint64 nonce, uint64 minNonce);
    /// @notice The match exceeds what is left of the order (a replay of a filled order lands here).
    error OrderOverfilled(bytes32 digest, uint128 remaining, uint128 size);
    /// @notice The price is worse than the order's limit.
    error PriceBeyondLimit(bytes32 digest, uint128 limitPrice, uint128 price);
    /// @notice The price is outside the band around the mark.
    error PriceOutsideBand(uint32 instrumentId, uint128 price, uint128 mark, uint256 halfWidth);
    /// @notice The instrument has no mark, or it is older than `markMaxAge`.
    error StaleMark(uint32 instrumentId, uint64 updatedAt);
    /// @notice Only the order's account can cancel it.
    error NotOrderAccount(address caller, address account);
    /// @notice A cancel-up-to nonce not above the current one.
    error NonceNotIncreasing(uint64 current, uint64 nonce);
    /// @notice A band above MAX_BAND, or a zero maximum mark age.
    error InvalidBand(uint64 bandOfMark, uint64 bandOfIndex, uint64 markMaxAge);
    /// @notice The arrays' lengths differ.
    error LengthMismatch(uint256 ids, uint256 prices);

    /// @param admin Holds DEFAULT_ADMIN_ROLE (sets the band, grants roles).
    /// @param matcher Initial holder of MATCHER_ROLE.
    /// @param feeder Initial holder of FEEDER_ROLE.
    /// @param ledger_ The ledger (grant this contract its EXCHANGE_ROLE).
    /// @param feeds_ The market feeds.
    constructor(address admin, address matcher, address feeder, MarginAccounts ledger_, MarketFeeds feeds_)
        EIP712("pmoracle Exchange", "1")
    {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MATCHER_ROLE, matcher);
        _grantRole(FEEDER_ROLE, feeder);
        ledger = ledger_;
        feeds = feeds_;
        _setBand(0.05e18, 0.002e18, 1 hours);
    }

    /// @notice Match a buy and a sell order for `size` at `price` and apply the trade to the ledger.
    /// @param buy The buy order.
    /// @param buySignature Its account's signature of `orderDigest(buy)` (65-byte ECDSA, or ERC-1271).
    /// @param sell The sell order.
    /// @param sellSignature Its account's signature.
    /// @param size Size in 1e-4 units, at most what is left of each order.
    /// @param price USD 1e8, within both limits and the band.
    function matchOrders(
        Order calldata buy,
        bytes calldata buySignature,
        Order calldata sell,
        bytes calldata sellSignature,
        uint128 size,
        uint128 price
    ) external onlyRole(MATCHER_ROLE) {
        if (!buy.isBuy || sell.isBuy) revert OrderSides(buy.isBuy, sell.isBuy);
        if (buy.instrumentId != sell.instrumentId) revert InstrumentMismatch(buy.instrumentId, sell.instrumentId);
        bytes32 buyDigest = _take(buy, buySignature, size);
        bytes32 sellDigest = _take(sell, sellSignature, size);
        if (price > buy.limitPrice) revert PriceBeyondLimit(buyDigest, buy.limitPrice, price);
        if (price < sell.limitPrice) revert PriceBeyondLimit(sellDigest, sell.limitPrice, price);
        _checkBand(buy.instrumentId, price);
        ledger.applyTrade(buy.account, sell.account, buy.instrumentId, size, price);
        emit OrdersMatched(buyDigest, sellDigest, buy.instrumentId, size, price);
    }

    /// @notice Cancel one of the caller's orders (what is left of it can no longer fill).
    /// @param order The order.
    function cancel(Order calldata order) external {
        if (msg.sender != order.account) revert NotOrderAccount(msg.sender, order.account);
        bytes32 digest = orderDigest(order);
        filled[digest] = order.size;
        emit OrderCancelled(msg.sender, digest);
    }

    /// @notice Cancel every order of the caller with a nonce below `nonce`.
    /// @param nonce The new lowest valid nonce, above the current one.
    function cancelUpTo(uint64 nonce) external {
        uint64 current = minNonce[msg.sender];
        if (nonce <= current) revert NonceNotIncreasing(current, nonce);
        minNonce[msg.sender] = nonce;
        emit NoncesCancelled(msg.sender, nonce);
    }

    /// @notice Post mark prices (USD 1e8), e.g. from the feeder's pricing of each instrument.
    /// @param instrumentIds Instruments.
    /// @param prices Their marks, in the same order.
    function setMarks(uint32[] calldata instrumentIds, uint128[] calldata prices) external onlyRole(FEEDER_ROLE) {
        if (instrumentIds.length != prices.length) revert LengthMismatch(instrumentIds.length, prices.length);
        uint64 now_ = SafeCast.toUint64(block.timestamp);
        for (uint256 i = 0; i < instrumentIds.length; ++i) {
            marks[instrumentIds[i]] = Mark(prices[i], now_);
        }
        emit MarksSet(instrumentIds, prices);
    }

    /// @notice Set the price band and the marks' maximum age.
    /// @param bandOfMark_ Half-width as a fraction of the mark (WAD), <= MAX_BAND.
    /// @param bandOfIndex_ Least half-width as a fraction of the index (WAD), <= MAX_BAND.
    /// @param markMaxAge_ Seconds, > 0.
    function setBand(uint64 bandOfMark_, uint64 bandOfIndex_, uint64 markMaxAge_)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        _setBand(bandOfMark_, bandOfIndex_, markMaxAge_);
    }

    /// @notice Return the EIP-712 digest an order's account signs.
    /// @param order The order.
    function orderDigest(Order calldata order) public view returns (bytes32) {
        return _hashTypedDataV4(
            keccak256(
                abi.encode(
                    ORDER_TYPEHASH,
                    order.account,
                    order.instrumentId,
                    order.isBuy,
                    order.size,
                    order.limitPrice,
                    order.nonce,
                    order.expiry
                )
            )
        );
    }

    /// @notice Return the band around an instrument's mark: [mark - halfWidth, mark + halfWidth].
    /// @param instrumentId A listed instrument with a fresh mark.
    function band(uint32 instrumentId) public view returns (uint128 mark, uint256 halfWidth) {
        Mark memory m = marks[instrumentId];
        if (m.updatedAt == 0 || block.timestamp > m.updatedAt + markMaxAge) revert StaleMark(instrumentId, m.updatedAt);
        (uint256 index,) = feeds.indexOf(ledger.instrument(instrumentId).underlying);
        uint256 ofMark = Math.mulDiv(m.price, bandOfMark, WAD);
        uint256 ofIndex = Math.mulDiv(index, bandOfIndex, WAD);
        return (m.price, Math.max(ofMark, ofIndex));
    }

    /// @dev Check an order's signature, expiry and nonce; record `size` more filled; return its digest.
    function _take(Order calldata order, bytes calldata signature, uint128 size) internal returns (bytes32 digest) {
        digest = orderDigest(order);
        if (!SignatureChecker.isValidSignatureNow(order.account, digest, signature)) {
            revert InvalidOrderSignature(order.account, digest);
        }
        if (block.timestamp > order.expiry) {
            revert OrderExpired(digest, order.expiry, SafeCast.toUint64(block.timestamp));
        }
        uint64 lowest = minNonce[order.account];
        if (order.nonce < lowest) revert OrderNonceCancelled(order.account, order.nonce, lowest);
        uint128 done = filled[digest];
        uint128 remaining = order.size > done ? order.size - done : 0;
        if (size == 0 || size > remaining) revert OrderOverfilled(digest, remaining, size);
        filled[digest] = done + size;
    }

    function _checkBand(uint32 instrumentId, uint128 price) internal view {
        (uint128 mark, uint256 halfWidth) = band(instrumentId);
        if (price > mark + halfWidth || price + halfWidth < mark) {
            revert PriceOutsideBand(instrumentId, price, mark, halfWidth);
        }
    }

    function _setBand(uint64 bandOfMark_, uint64 bandOfIndex_, uint64 markMaxAge_) internal {
        if (bandOfMark_ > MAX_BAND || bandOfIndex_ > MAX_BAND || markMaxAge_ == 0) {
            revert InvalidBand(bandOfMark_, bandOfIndex_, markMaxAge_);
        }
        bandOfMark = bandOfMark_;
        bandOfIndex = bandOfIndex_;
        markMaxAge = markMaxAge_;
        emit BandSet(bandOfMark_, bandOfIndex_, markMaxAge_);
    }
}
