// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MarketFeeds} from "./MarketFeeds.sol";
import {AttestedMargin, IMarginOracle} from "./PmoracleTypes.sol";

/// @title MarginAccounts
/// @notice The derivatives protocol's ledger: collateral in several ERC20s, an instrument registry, positions
///         changed by matched trades; withdrawals and liquidation flags consume the margin attested by MarginOracle.
/// @dev A withdrawal is judged on the latest attested round, anchored at block R (docs/protocol.md, Withdrawals):
///      no trade of the account after R; every amount it withdrew after R (and this one) is charged at R's
///      collateral price; every balance it keeps is charged for a fall of its collateral price since R. What is
///      left of the attested equity must stay >= the attested initial margin.
contract MarginAccounts is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice Role allowed to submit trades.
    bytes32 public constant MATCHER_ROLE = keccak256("MATCHER_ROLE");
    /// @notice 1e18.
    uint256 public constant WAD = 1e18;
    /// @notice Price decimals of MarketFeeds (USD 1e8).
    uint256 public constant PRICE_SCALE = 1e8;
    /// @notice Most open (non-zero) positions an account can have (bounds the page view).
    uint256 public constant MAX_HELD_INSTRUMENTS = 256;

    /// @notice An instrument.
    struct InstrumentView {
        uint32 id;
        bytes32 underlying;
        uint8 kind;
        uint64 expiry;
        uint128 strike;
    }

    /// @notice A non-zero position.
    struct PositionView {
        uint32 instrumentId;
        int128 size;
    }

    /// @notice A non-zero collateral balance.
    struct CollateralView {
        address token;
        uint256 amount;
    }

    /// @notice An account with its non-zero positions and balances.
    struct AccountView {
        address account;
        PositionView[] positions;
        CollateralView[] collateral;
    }

    /// @dev One slot per account: opened, the block of the last change of its positions or balances, and the block
    ///      of the last change of its positions.
    struct AccountMeta {
        bool known;
        uint64 changedAt;
        uint64 tradedAt;
    }

    /// @dev Amounts of one token an account withdrew that a later-anchored round may not have seen, in two buckets:
    ///      `recent` was withdrawn in block `recentBlock`, `older` in blocks up to `olderBlock`. A round anchored
    ///      at R has seen a bucket iff its block <= R (two slots).
    struct PendingWithdrawals {
        uint64 olderBlock;
        uint64 recentBlock;
        uint128 older;
        uint128 recent;
    }

    /// @notice The market feeds (collateral prices and haircuts).
    MarketFeeds public immutable feeds;
    /// @notice The oracle whose attested margin this ledger consumes.
    IMarginOracle public oracle;

    InstrumentView[] internal _instruments;
    address[] internal _collateralTokens;
    /// @notice Whether a token is enabled as collateral.
    mapping(address token => bool) public isCollateral;
    address[] internal _accounts;
    mapping(address account => AccountMeta) internal _meta;
    /// @notice Collateral balance of an account in a token, in the token's units.
    mapping(address account => mapping(address token => uint256)) public balanceOf;
    /// @notice Position of an account in an instrument, in 1e-4 units of the underlying (signed).
    mapping(address account => mapping(uint32 instrumentId => int128)) public positionOf;
    /// @dev The instruments of an account's open positions, in no particular order.
    mapping(address account => uint32[]) internal _held;
    /// @dev 1 + the index of an open position's instrument in `_held` (0: not open).
    mapping(address account => mapping(uint32 instrumentId => uint256)) internal _heldIndex;
    mapping(address account => mapping(address token => PendingWithdrawals)) internal _pending;
    /// @notice The round block at which an account was last flagged liquidatable (0 if not flagged).
    mapping(address account => uint64) public liquidatableAt;

    /// @notice The oracle was set.
    event OracleSet(address oracle);
    /// @notice A collateral token was enabled.
    event CollateralAdded(address indexed token);
    /// @notice An instrument was listed.
    event InstrumentListed(uint32 indexed id, bytes32 indexed underlying, uint8 kind, uint64 expiry, uint128 strike);
    /// @notice An account appeared for the first time (appended to the account list).
    event AccountOpened(address indexed account, uint256 index);
    /// @notice Collateral was deposited.
    event Deposited(address indexed account, address indexed token, uint256 amount, uint256 balance);
    /// @notice Collateral was withdrawn against attested margin (`value`: at the round's collateral price).
    event Withdrawn(
        address indexed account, address indexed token, uint256 amount, uint256 value, uint64 roundBlock
    );
    /// @notice A trade moved `size` of an instrument from seller to buyer.
    event Traded(
        address indexed buyer,
        address indexed seller,
        uint32 indexed instrumentId,
        int128 size,
        int128 buyerPosition,
        int128 sellerPosition
    );
    /// @notice An account was flagged liquidatable (attested equity < maintenance margin).
    event LiquidatableFlagged(address indexed account, uint64 roundBlock, int256 equity, uint256 maintenanceMargin);
    /// @notice An account's liquidatable flag was cleared (attested equity >= maintenance margin).
    event LiquidatableCleared(address indexed account, uint64 roundBlock);

    /// @notice The address is zero.
    error ZeroAddress(string name);
    /// @notice The token is not enabled as collateral.
    error UnsupportedCollateral(address token);
    /// @notice The token is already enabled.
    error CollateralAlreadyAdded(address token);
    /// @notice An amount is zero.
    error ZeroAmount();
    /// @notice The instrument's fields are inconsistent with its kind.
    error InvalidInstrument(uint8 kind, uint64 expiry, uint128 strike);
    /// @notice No instrument has this id.
    error UnknownInstrument(uint32 instrumentId);
    /// @notice A trade's size is not positive.
    error InvalidTradeSize(int128 size);
    /// @notice A trade's buyer and seller are the same account.
    error SelfTrade(address account);
    /// @notice The account has too many open positions.
    error TooManyInstruments(address account, uint256 count);
    /// @notice The balance is below the amount.
    error InsufficientBalance(address account, address token, uint256 balance, uint256 amount);
    /// @notice The withdrawal would leave the account's equity bound (`withdrawableEquity`) below its attested initial
    ///         margin.
    error WithdrawalExceedsMargin(address account, int256 equityAfter, uint256 initialMargin);
    /// @notice The account's positions changed after the anchor of the round the withdrawal is judged on.
    error TradedSinceRound(address account, uint64 tradedAt, uint64 roundBlock);
    /// @notice Attested equity is not below maintenance margin.
    error NotLiquidatable(address account, int256 equity, uint256 maintenanceMargin);
    /// @notice The account is flagged and still under maintenance margin, or not flagged.
    error NotFlagged(address account);

    /// @param admin Holds DEFAULT_ADMIN_ROLE (lists instruments and collateral, sets the oracle, grants roles).
    /// @param matcher Initial holder of MATCHER_ROLE.
    /// @param feeds_ The market feeds.
    /// @param oracle_ The margin oracle.
    constructor(address admin, address matcher, MarketFeeds feeds_, IMarginOracle oracle_) {
        if (address(feeds_) == address(0)) revert ZeroAddress("feeds");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(MATCHER_ROLE, matcher);
        feeds = feeds_;
        oracle = oracle_;
        emit OracleSet(address(oracle_));
    }

    /// @notice Set the margin oracle.
    /// @param oracle_ The oracle.
    function setOracle(IMarginOracle oracle_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (address(oracle_) == address(0)) revert ZeroAddress("oracle");
        oracle = oracle_;
        emit OracleSet(address(oracle_));
    }

    /// @notice Enable an ERC20 as collateral (price it in MarketFeeds first: a round cannot value an unpriced balance).
    /// @param token The token.
    function addCollateral(address token) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (token == address(0)) revert ZeroAddress("token");
        if (isCollateral[token]) revert CollateralAlreadyAdded(token);
        isCollateral[token] = true;
        _collateralTokens.push(token);
        emit CollateralAdded(token);
    }

    /// @notice List an instrument; ids are 1, 2, 3, ...
    /// @param underlying Left-aligned ASCII symbol.
    /// @param kind 0 perpetual, 1 future, 2 call, 3 put.
    /// @param expiry Unix seconds (0 for a perpetual).
    /// @param strike USD 1e8 (options only; 0 otherwise).
    /// @return id The new instrument id.
    function listInstrument(bytes32 underlying, uint8 kind, uint64 expiry, uint128 strike)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
        returns (uint32 id)
    {
        bool valid = underlying != bytes32(0)
            && (kind == 0 ? expiry == 0 && strike == 0 : kind == 1 ? expiry != 0 && strike == 0 : kind <= 3 && expiry != 0 && strike != 0);
        if (!valid) revert InvalidInstrument(kind, expiry, strike);
        id = SafeCast.toUint32(_instruments.length + 1);
        _instruments.push(InstrumentView(id, underlying, kind, expiry, strike));
        emit InstrumentListed(id, underlying, kind, expiry, strike);
    }

    /// @notice Deposit `amount` of collateral `token` (approve first).
    /// @param token An enabled collateral token.
    /// @param amount Amount in the token's units.
    function deposit(address token, uint256 amount) external nonReentrant {
        if (!isCollateral[token]) revert UnsupportedCollateral(token);
        if (amount == 0) revert ZeroAmount();
        _touch(msg.sender);
        uint256 balance = balanceOf[msg.sender][token] + amount;
        balanceOf[msg.sender][token] = balance;
        emit Deposited(msg.sender, token, amount, balance);
        IERC20(token).safeTransferFrom(msg.sender, address(this), amount);
    }

    /// @notice Withdraw collateral against the latest attested round, anchored at block R: the caller must not
    ///         have traded after R, and `withdrawableEquity` after the withdrawal must stay >= the attested
    ///         initial margin.
    /// @param token The collateral token.
    /// @param amount Amount in the token's units.
    /// @param m The caller's attested margin in the latest round.
    /// @param proof The Merkle proof of the caller's leaf.
    function withdraw(address token, uint256 amount, AttestedMargin calldata m, bytes32[] calldata proof)
        external
        nonReentrant
    {
        if (amount == 0) revert ZeroAmount();
        uint256 balance = balanceOf[msg.sender][token];
        if (balance < amount) revert InsufficientBalance(msg.sender, token, balance, amount);
        uint64 roundBlock = oracle.verifyMargin(msg.sender, m.initialMargin, m.maintenanceMargin, m.equity, proof);
        int256 initialMargin = SafeCast.toInt256(m.initialMargin);
        uint64 lastTrade = _meta[msg.sender].tradedAt;
        if (lastTrade > roundBlock) revert TradedSinceRound(msg.sender, lastTrade, roundBlock);
        _touch(msg.sender);
        balanceOf[msg.sender][token] = balance - amount;
        uint256 value = _recordWithdrawal(msg.sender, token, amount, roundBlock);
        int256 equityAfter = withdrawableEquity(msg.sender, m.equity, roundBlock);
        if (equityAfter < initialMargin) revert WithdrawalExceedsMargin(msg.sender, equityAfter, m.initialMargin);
        emit Withdrawn(msg.sender, token, amount, value, roundBlock);
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    /// @notice Submit a matched trade: the buyer's position grows by `size`, the seller's shrinks by `size`.
    /// @param buyer The buying account.
    /// @param seller The selling account.
    /// @param instrumentId A listed instrument.
    /// @param size Size in 1e-4 units of the underlying, > 0.
    function trade(address buyer, address seller, uint32 instrumentId, int128 size) external onlyRole(MATCHER_ROLE) {
        if (size <= 0) revert InvalidTradeSize(size);
        if (buyer == seller) revert SelfTrade(buyer);
        if (buyer == address(0)) revert ZeroAddress("buyer");
        if (seller == address(0)) revert ZeroAddress("seller");
        if (instrumentId == 0 || instrumentId > _instruments.length) revert UnknownInstrument(instrumentId);
        int128 buyerPosition = _move(buyer, instrumentId, size);
        int128 sellerPosition = _move(seller, instrumentId, -size);
        emit Traded(buyer, seller, instrumentId, size, buyerPosition, sellerPosition);
    }

    /// @notice Flag an account liquidatable: its attested equity is below its attested maintenance margin.
    /// @param account The account.
    /// @param m Its attested margin in the latest round.
    /// @param proof The Merkle proof of its leaf.
    function flagLiquidatable(address account, AttestedMargin calldata m, bytes32[] calldata proof) external {
        uint64 roundBlock = oracle.verifyMargin(account, m.initialMargin, m.maintenanceMargin, m.equity, proof);
        int256 maintenanceMargin = SafeCast.toInt256(m.maintenanceMargin);
        if (m.equity >= maintenanceMargin) revert NotLiquidatable(account, m.equity, m.maintenanceMargin);
        liquidatableAt[account] = roundBlock;
        emit LiquidatableFlagged(account, roundBlock, m.equity, m.maintenanceMargin);
    }

    /// @notice Clear an account's liquidatable flag: its attested equity is back at or above maintenance margin.
    /// @param account The account.
    /// @param m Its attested margin in the latest round.
    /// @param proof The Merkle proof of its leaf.
    function clearLiquidatable(address account, AttestedMargin calldata m, bytes32[] calldata proof) external {
        uint64 roundBlock = oracle.verifyMargin(account, m.initialMargin, m.maintenanceMargin, m.equity, proof);
        int256 maintenanceMargin = SafeCast.toInt256(m.maintenanceMargin);
        if (liquidatableAt[account] == 0 || m.equity < maintenanceMargin) revert NotFlagged(account);
        liquidatableAt[account] = 0;
        emit LiquidatableCleared(account, roundBlock);
    }

    /// @notice Return a lower bound of an account's equity now, from its attested equity in the round anchored at
    ///         `roundBlock` (USD 18 decimals): less every amount it withdrew after the anchor, at the anchor's
    ///         collateral price, and less, for every balance it holds, the fall of the collateral price since.
    /// @dev Exact when the account neither traded nor deposited after the anchor; deposits are not credited.
    ///      Charges round up. Meant for the latest round: withdrawals it has seen are dropped from the ledger.
    /// @param account The account.
    /// @param equity Its attested equity in the round.
    /// @param roundBlock The round's anchor block.
    function withdrawableEquity(address account, int256 equity, uint64 roundBlock) public view returns (int256) {
        int256 bound = equity;
        for (uint256 i = 0; i < _collateralTokens.length; ++i) {
            address token = _collateralTokens[i];
            uint256 balance = balanceOf[account][token];
            uint256 unseen = _unseen(_pending[account][token], roundBlock);
            if (balance == 0 && unseen == 0) continue;
            (uint8 decimals, uint256 current, uint256 anchored) = feeds.collateralPriceAt(token, roundBlock);
            uint256 charge = _valueOf(unseen, decimals, anchored);
            if (anchored > current) charge += _valueOf(balance, decimals, anchored - current);
            bound -= SafeCast.toInt256(charge);
        }
        return bound;
    }

    /// @notice Return the block of the last change of an account's positions (0: never traded).
    /// @param account The account.
    function tradedAt(address account) external view returns (uint64) {
        return _meta[account].tradedAt;
    }

    /// @notice Return the number of an account's open (non-zero) positions.
    /// @param account The account.
    function openPositionCount(address account) external view returns (uint256) {
        return _held[account].length;
    }

    /// @notice Return the USD value (18 decimals) counted for `amount` of `token` at its latest price:
    ///         price x (1 - haircut).
    /// @param token A priced collateral token.
    /// @param amount Amount in the token's units.
    function collateralValue(address token, uint256 amount) public view returns (uint256) {
        MarketFeeds.AssetView memory a = feeds.asset(token);
        // amount / 10^decimals tokens x price / 1e8 USD x (1 - haircut), scaled to 1e18
        return amount * a.price * (WAD - a.haircut) / (10 ** a.decimals) / PRICE_SCALE;
    }

    /// @notice Return the number of listed instruments.
    function instrumentCount() external view returns (uint256) {
        return _instruments.length;
    }

    /// @notice Return up to `limit` instruments from index `offset` (id = index + 1).
    /// @param offset First index.
    /// @param limit Maximum number of instruments.
    function instrumentsPage(uint256 offset, uint256 limit) external view returns (InstrumentView[] memory page) {
        (uint256 start, uint256 end) = _window(offset, limit, _instruments.length);
        page = new InstrumentView[](end - start);
        for (uint256 i = start; i < end; ++i) {
            page[i - start] = _instruments[i];
        }
    }

    /// @notice Return the enabled collateral tokens.
    function collateralTokens() external view returns (address[] memory) {
        return _collateralTokens;
    }

    /// @notice Return the number of accounts that ever held a position or collateral.
    function accountCount() external view returns (uint256) {
        return _accounts.length;
    }

    /// @notice Return up to `limit` accounts from index `offset` with their non-zero positions and balances.
    /// @param offset First index in the account list.
    /// @param limit Maximum number of accounts.
    function accountsPage(uint256 offset, uint256 limit) external view returns (AccountView[] memory page) {
        (uint256 start, uint256 end) = _window(offset, limit, _accounts.length);
        page = new AccountView[](end - start);
        for (uint256 i = start; i < end; ++i) {
            page[i - start] = _accountView(_accounts[i]);
        }
    }

    /// @notice Return the accounts among indices [`offset`, `offset` + `limit`) whose positions or balances changed
    ///         after block `sinceBlock`, and the hash of block `sinceBlock` as seen from this block.
    /// @dev An incremental snapshot: a reader holding the book at block `sinceBlock` with hash H calls this at a
    ///      later block B (pinned by hash) and replaces the returned accounts. `sinceHash` == H proves that its
    ///      book is an ancestor of B's state; it is zero when `sinceBlock` is not one of the 256 previous blocks,
    ///      and the reader must then read every account (`accountsPage`).
    /// @param sinceBlock The block of the reader's book.
    /// @param offset First account index scanned.
    /// @param limit Maximum number of account indices scanned.
    /// @return sinceHash `blockhash(sinceBlock)`.
    /// @return changed The changed accounts of the window, in index order.
    function accountsChangedSince(uint256 sinceBlock, uint256 offset, uint256 limit)
        external
        view
        returns (bytes32 sinceHash, AccountView[] memory changed)
    {
        sinceHash = blockhash(sinceBlock);
        (uint256 start, uint256 end) = _window(offset, limit, _accounts.length);
        uint256 n = 0;
        for (uint256 i = start; i < end; ++i) {
            if (_meta[_accounts[i]].changedAt > sinceBlock) ++n;
        }
        changed = new AccountView[](n);
        n = 0;
        for (uint256 i = start; i < end; ++i) {
            address account = _accounts[i];
            if (_meta[account].changedAt > sinceBlock) changed[n++] = _accountView(account);
        }
    }

    function _accountView(address account) internal view returns (AccountView memory v) {
        uint32[] storage held = _held[account];
        v.account = account;
        v.positions = new PositionView[](held.length);
        for (uint256 j = 0; j < held.length; ++j) {
            v.positions[j] = PositionView(held[j], positionOf[account][held[j]]);
        }
        uint256 c = 0;
        for (uint256 j = 0; j < _collateralTokens.length; ++j) {
            if (balanceOf[account][_collateralTokens[j]] != 0) ++c;
        }
        v.collateral = new CollateralView[](c);
        c = 0;
        for (uint256 j = 0; j < _collateralTokens.length; ++j) {
            address token = _collateralTokens[j];
            uint256 amount = balanceOf[account][token];
            if (amount != 0) v.collateral[c++] = CollateralView(token, amount);
        }
    }

    /// @dev Move a position by `delta` != 0; keep `_held` to the open positions (swap-and-pop on close).
    function _move(address account, uint32 instrumentId, int128 delta) internal returns (int128 position) {
        _touch(account).tradedAt = SafeCast.toUint64(block.number);
        int128 before = positionOf[account][instrumentId];
        position = before + delta;
        positionOf[account][instrumentId] = position;
        uint32[] storage held = _held[account];
        if (before == 0) {
            if (held.length >= MAX_HELD_INSTRUMENTS) revert TooManyInstruments(account, held.length);
            held.push(instrumentId);
            _heldIndex[account][instrumentId] = held.length;
        } else if (position == 0) {
            uint256 index = _heldIndex[account][instrumentId] - 1;
            uint32 last = held[held.length - 1];
            held[index] = last;
            _heldIndex[account][last] = index + 1;
            held.pop();
            delete _heldIndex[account][instrumentId];
        }
    }

    /// @dev Add `amount` of `token` withdrawn now to the account's pending buckets, first dropping the buckets the
    ///      round anchored at `roundBlock` has seen (the recent bucket of an earlier block merges into the older
    ///      one); return the amount's value at the round's collateral price.
    function _recordWithdrawal(address account, address token, uint256 amount, uint64 roundBlock)
        internal
        returns (uint256 value)
    {
        (uint8 decimals,, uint256 anchored) = feeds.collateralPriceAt(token, roundBlock);
        value = _valueOf(amount, decimals, anchored);
        PendingWithdrawals storage pending = _pending[account][token];
        PendingWithdrawals memory p = pending;
        uint64 blockNumber = SafeCast.toUint64(block.number);
        if (p.olderBlock <= roundBlock) p.older = 0;
        if (p.recentBlock <= roundBlock) p.recent = 0;
        if (p.recentBlock != blockNumber) {
            if (p.recent != 0) {
                p.older += p.recent;
                p.olderBlock = p.recentBlock;
            }
            p.recent = 0;
            p.recentBlock = blockNumber;
        }
        p.recent = SafeCast.toUint128(p.recent + amount);
        pending.olderBlock = p.olderBlock;
        pending.recentBlock = p.recentBlock;
        pending.older = p.older;
        pending.recent = p.recent;
    }

    /// @dev Open the account on its first change, and record the block of this change (the incremental
    ///      snapshot's key: see `accountsChangedSince`). Shares the slot read to know the account, so a change
    ///      costs one warm SSTORE more. Returns the slot for callers that record more.
    function _touch(address account) internal returns (AccountMeta storage meta) {
        meta = _meta[account];
        if (!meta.known) {
            meta.known = true;
            _accounts.push(account);
            emit AccountOpened(account, _accounts.length - 1);
        }
        meta.changedAt = SafeCast.toUint64(block.number);
    }

    /// @dev The amount of a token's pending buckets that the round anchored at `roundBlock` has not seen.
    function _unseen(PendingWithdrawals storage pending, uint64 roundBlock) internal view returns (uint256) {
        PendingWithdrawals memory p = pending;
        uint256 older = p.olderBlock > roundBlock ? p.older : 0;
        return older + (p.recentBlock > roundBlock ? p.recent : 0);
    }

    /// @dev USD 18 decimals of `amount` token units at collateral price `price` (USD 1e8 x WAD), rounded up.
    function _valueOf(uint256 amount, uint8 decimals, uint256 price) internal pure returns (uint256) {
        return Math.mulDiv(amount, price, 10 ** decimals * PRICE_SCALE, Math.Rounding.Ceil);
    }

    function _window(uint256 offset, uint256 limit, uint256 total) internal pure returns (uint256, uint256) {
        if (offset >= total) return (total, total);
        uint256 end = total - offset < limit ? total : offset + limit;
        return (offset, end);
    }
}
