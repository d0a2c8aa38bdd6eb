// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {Checkpoints} from "@openzeppelin/contracts/utils/structs/Checkpoints.sol";
import {MarketFeeds} from "./MarketFeeds.sol";
import {AttestedMargin, IMarginOracle} from "./PmoracleTypes.sol";

/// @title MarginAccounts
/// @notice The derivatives protocol's ledger: a signed cash balance in the settlement token, collateral in other
///         ERC20s, an instrument registry, positions with their cost basis, perpetual funding and expiry
///         settlement. Trades arrive from the Exchange (orders both parties signed); withdrawals and liquidation
///         flags consume the margin attested by MarginOracle.
/// @dev Money is USD with 18 decimals (WAD), exact: a trade's value is size (1e-4 units) x price (USD 1e8) x
///      VALUE_SCALE. For every account, cash - sum(cost) moves on a trade by minus the traded value, so over all
///      accounts it is conserved (docs/protocol.md, "Cash flows", states the whole identity).
///      A withdrawal is judged on the latest attested round, anchored at block R (docs/protocol.md, Withdrawals):
///      no trade, settlement or funding payment of the account after R; every amount it withdrew after R (and
///      this one) is charged at R's collateral price; every balance it keeps is charged for a fall of its
///      collateral price since R. What is left of the attested equity must stay >= the attested initial margin.
contract MarginAccounts is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;
    using Checkpoints for Checkpoints.Trace208;

    /// @notice Role of the Exchange contract: applies trades whose orders it verified.
    bytes32 public constant EXCHANGE_ROLE = keccak256("EXCHANGE_ROLE");
    /// @notice Role allowed to set perpetual funding rates.
    bytes32 public constant FEEDER_ROLE = keccak256("FEEDER_ROLE");
    /// @notice Role of the Liquidator contract: moves a fraction of a liquidated book, moves cash between accounts,
    ///         pauses withdrawals.
    bytes32 public constant LIQUIDATOR_ROLE = keccak256("LIQUIDATOR_ROLE");
    /// @notice 1e18.
    uint256 public constant WAD = 1e18;
    /// @notice Price decimals of MarketFeeds (USD 1e8).
    uint256 public constant PRICE_SCALE = 1e8;
    /// @notice Sizes are in 1e-4 units of the underlying.
    int256 public constant SIZE_SCALE = 1e4;
    /// @notice size (1e-4) x price (1e-8 USD) is 1e-12 USD; times VALUE_SCALE it is USD WAD.
    int256 public constant VALUE_SCALE = 1e6;
    /// @notice Most open (non-zero) positions an account can have (bounds the page view).
    uint256 public constant MAX_HELD_INSTRUMENTS = 256;
    /// @notice Highest trading fee: 1% of the traded value.
    uint64 public constant MAX_FEE_RATE = 0.01e18;
    /// @notice Highest perpetual funding rate: 1% of the index per day.
    int128 public constant MAX_FUNDING_RATE = 0.01e18;
    /// @notice Shortest time between two funding payments of a perpetual.
    uint64 public constant FUNDING_PERIOD = 1 hours;

    /// @notice An instrument; `cumulativeFunding` (perpetuals) is the USD WAD paid per unit long since listing.
    struct InstrumentView {
        uint32 id;
        bytes32 underlying;
        uint8 kind;
        uint64 expiry;
        uint128 strike;
        int256 cumulativeFunding;
    }

    /// @notice A non-zero position: `cost` is its cost basis (size x average entry price, USD WAD; futures and
    ///         perpetuals), `fundingIndex` the instrument's cumulative funding when it last paid funding.
    struct PositionView {
        uint32 instrumentId;
        int128 size;
        int128 cost;
        int256 fundingIndex;
    }

    /// @notice A non-zero collateral balance.
    struct CollateralView {
        address token;
        uint256 amount;
    }

    /// @notice An account with its cash (USD WAD, signed), non-zero positions and balances.
    struct AccountView {
        address account;
        int256 cash;
        PositionView[] positions;
        CollateralView[] collateral;
    }

    /// @dev One slot per account: opened, the block of the last change of its positions or balances, the block
    ///      of the last change of its positions, and whether a liquidation auction holds it (no trade).
    struct AccountMeta {
        bool known;
        uint64 changedAt;
        uint64 tradedAt;
        bool frozen;
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

    /// @dev An instrument as listed.
    struct Listing {
        uint32 id;
        bytes32 underlying;
        uint8 kind;
        uint64 expiry;
        uint128 strike;
    }

    /// @dev A position (two slots).
    struct PositionState {
        int128 size;
        int128 cost;
        int256 fundingIndex;
    }

    /// @dev A perpetual's funding: the rate in force, the cumulative payment per unit long, the last payment.
    struct Funding {
        int256 cumulative;
        int128 ratePerDay;
        uint64 paidAt;
        uint64 paidBlock;
    }

    /// @notice The market feeds (collateral prices and haircuts, indices, settlement prices).
    MarketFeeds public immutable feeds;
    /// @notice The settlement token: its deposits are cash, and every cash flow is in it.
    address public immutable settlementToken;
    /// @notice 10^(18 - decimals of the settlement token): token units to USD WAD.
    uint256 public immutable cashScale;
    /// @notice The oracle whose attested margin this ledger consumes.
    IMarginOracle public oracle;
    /// @notice Withdrawals are refused (set by the Liquidator while insolvent shortfall exceeds its fund). Shares
    ///         the oracle's slot, which every withdrawal reads.
    bool public withdrawalsPaused;

    Listing[] internal _instruments;
    mapping(uint32 instrumentId => Funding) internal _funding;
    address[] internal _collateralTokens;
    /// @notice Whether a token is enabled as collateral.
    mapping(address token => bool) public isCollateral;
    address[] internal _accounts;
    mapping(address account => AccountMeta) internal _meta;
    /// @notice Collateral balance of an account in a token, in the token's units.
    mapping(address account => mapping(address token => uint256)) public balanceOf;
    /// @notice Cash of an account in the settlement asset, USD WAD, signed (negative: it owes).
    mapping(address account => int256) public cashOf;
    mapping(address account => mapping(uint32 instrumentId => PositionState)) internal _positions;
    /// @notice Trading fees collected, USD WAD.
    uint256 public feesCollected;
    /// @notice Funding paid in by payers minus paid out to receivers, USD WAD. It goes negative when receivers
    ///         realize before payers; pool + the funding still owed by all positions is >= 0 (owed rounds up).
    int256 public fundingPool;
    /// @notice Fee charged to each side of a trade, WAD of the traded value.
    uint64 public feeRate;
    /// @notice The last block in which any perpetual paid funding (0: never).
    uint64 public lastFundingBlock;
    /// @dev The instruments of an account's open positions, in no particular order (closing one searches it from
    ///      the end: 8 ids a slot, so a position opens without a slot of its own for an index).
    mapping(address account => uint32[]) internal _held;
    mapping(address account => mapping(address token => PendingWithdrawals)) internal _pending;
    /// @notice The round block at which an account was last flagged liquidatable (0 if not flagged).
    mapping(address account => uint64) public liquidatableAt;
    /// @dev The holdings' history a fraud proof reads at a round's block (`positionAt`, `balanceAt`,
    ///      `openPositionCountAt`): one checkpoint per block in which the holding changed, keyed by block number, the
    ///      value at the end of that block (a later change in the same block overwrites it). A position's int128 size
    ///      is stored as its 128-bit two's complement.
    mapping(address account => mapping(uint32 instrumentId => Checkpoints.Trace208)) internal _sizeHistory;
    mapping(address account => mapping(address token => Checkpoints.Trace208)) internal _balanceHistory;
    mapping(address account => Checkpoints.Trace208) internal _countHistory;

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
    /// @notice A trade moved `size` of an instrument from seller to buyer at `price` (USD 1e8); each side paid
    ///         `fee` (USD WAD).
    event Traded(
        address indexed buyer,
        address indexed seller,
        uint32 indexed instrumentId,
        uint128 size,
        uint128 price,
        int128 buyerPosition,
        int128 sellerPosition,
        uint256 fee
    );
    /// @notice An expired position was settled into cash at the expiry's settlement price.
    event Settled(address indexed account, uint32 indexed instrumentId, int128 size, uint256 price, int256 cashDelta);
    /// @notice A position paid (`amount` > 0) or received funding (USD WAD).
    event FundingRealized(address indexed account, uint32 indexed instrumentId, int256 amount);
    /// @notice A perpetual's funding rate was set (WAD of the index per day; positive: longs pay shorts).
    event FundingRateSet(uint32 indexed instrumentId, int128 ratePerDay);
    /// @notice A perpetual's funding payment: `perUnit` USD WAD per unit long added to its cumulative funding.
    event FundingPaid(uint32 indexed instrumentId, int256 perUnit, int256 cumulative, uint256 index);
    /// @notice The trading fee rate was set.
    event FeeRateSet(uint64 feeRate);
    /// @notice Collected fees were paid out in the settlement token.
    event FeesWithdrawn(address indexed to, uint256 amount);
    /// @notice An account was flagged liquidatable (attested equity < maintenance margin).
    event LiquidatableFlagged(address indexed account, uint64 roundBlock, int256 equity, uint256 maintenanceMargin);
    /// @notice An account's liquidatable flag was cleared (attested equity >= maintenance margin).
    event LiquidatableCleared(address indexed account, uint64 roundBlock);
    /// @notice The Liquidator moved `fraction` (WAD) of every position, balance and the cash (`cash`) of `from`
    ///         to `to`.
    event BookTransferred(address indexed from, address indexed to, uint256 fraction, int256 cash);
    /// @notice The Liquidator moved `amount` (USD WAD) of cash between two accounts.
    event CashTransferred(address indexed from, address indexed to, uint256 amount);
    /// @notice Withdrawals were paused or resumed.
    event WithdrawalsPausedSet(bool paused);
    /// @notice An account's trading was frozen (its liquidation auction opened) or released (it closed).
    event AccountFrozen(address indexed account, bool frozen);

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
    /// @notice A trade's size or price is zero.
    error InvalidTrade(uint128 size, uint128 price);
    /// @notice The instrument has expired: it no longer trades (settle it).
    error InstrumentExpired(uint32 instrumentId, uint64 expiry);
    /// @notice The instrument has not expired yet.
    error InstrumentNotExpired(uint32 instrumentId, uint64 expiry);
    /// @notice The expiry's settlement price is not fixed yet.
    error SettlementPriceMissing(bytes32 underlying, uint64 expiry);
    /// @notice A perpetual was expected.
    error NotPerpetual(uint32 instrumentId);
    /// @notice A perpetual's funding was paid less than FUNDING_PERIOD ago.
    error FundingTooSoon(uint32 instrumentId, uint64 nextAt);
    /// @notice A funding rate above MAX_FUNDING_RATE in magnitude.
    error InvalidFundingRate(int128 ratePerDay);
    /// @notice A fee rate above MAX_FEE_RATE.
    error InvalidFeeRate(uint64 feeRate);
    /// @notice The settlement token cannot be added as collateral: its deposits are cash.
    error SettlementTokenIsCash(address token);
    /// @notice The account's cash is below the amount (USD WAD).
    error InsufficientCash(address account, int256 cash, uint256 amount);
    /// @notice Collected fees are below the amount (USD WAD).
    error InsufficientFees(uint256 collected, uint256 amount);
    /// @notice A perpetual the account holds paid funding after the anchor of the round the withdrawal is judged on.
    error FundingSinceRound(address account, uint32 instrumentId, uint64 paidBlock, uint64 roundBlock);
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
    /// @notice Withdrawals are paused: insolvent accounts' shortfall exceeds the insurance fund.
    error WithdrawalsPaused();
    /// @notice A book fraction outside (0, WAD].
    error InvalidFraction(uint256 fraction);
    /// @notice The account is under a liquidation auction: it cannot trade until the auction closes.
    error AccountInLiquidation(address account);

    /// @param admin Holds DEFAULT_ADMIN_ROLE (lists instruments and collateral, sets the oracle, grants roles: the
    ///        Exchange contract EXCHANGE_ROLE, the feeder FEEDER_ROLE).
    /// @param feeds_ The market feeds.
    /// @param oracle_ The margin oracle.
    /// @param settlementToken_ The settlement token (at most 18 decimals), e.g. USDC.
    constructor(address admin, MarketFeeds feeds_, IMarginOracle oracle_, address settlementToken_) {
        if (address(feeds_) == address(0)) revert ZeroAddress("feeds");
        if (settlementToken_ == address(0)) revert ZeroAddress("settlementToken");
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        feeds = feeds_;
        oracle = oracle_;
        settlementToken = settlementToken_;
        cashScale = 10 ** (18 - uint256(IERC20Metadata(settlementToken_).decimals()));
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
        if (token == settlementToken) revert SettlementTokenIsCash(token);
        if (isCollateral[token]) revert CollateralAlreadyAdded(token);
        isCollateral[token] = true;
        _collateralTokens.push(token);
        emit CollateralAdded(token);
    }

    /// @notice List an instrument; ids are 1, 2, 3, ... A dated instrument must expire in the future.
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
        if (!valid || (kind != 0 && expiry <= block.timestamp)) revert InvalidInstrument(kind, expiry, strike);
        id = SafeCast.toUint32(_instruments.length + 1);
        _instruments.push(Listing(id, underlying, kind, expiry, strike));
        if (kind == 0) _funding[id] = Funding(0, 0, SafeCast.toUint64(block.timestamp), SafeCast.toUint64(block.number));
        emit InstrumentListed(id, underlying, kind, expiry, strike);
    }

    /// @notice Set the trading fee rate charged to each side of a trade (WAD of the traded value).
    /// @param feeRate_ At most MAX_FEE_RATE.
    function setFeeRate(uint64 feeRate_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (feeRate_ > MAX_FEE_RATE) revert InvalidFeeRate(feeRate_);
        feeRate = feeRate_;
        emit FeeRateSet(feeRate_);
    }

    /// @notice Pay collected fees out in the settlement token.
    /// @param to The recipient.
    /// @param amount Amount in the settlement token's units.
    function withdrawFees(address to, uint256 amount) external onlyRole(DEFAULT_ADMIN_ROLE) nonReentrant {
        if (to == address(0)) revert ZeroAddress("to");
        uint256 value = amount * cashScale;
        if (value > feesCollected) revert InsufficientFees(feesCollected, value);
        feesCollected -= value;
        emit FeesWithdrawn(to, amount);
        IERC20(settlementToken).safeTransfer(to, amount);
    }

    /// @notice Set a perpetual's funding rate; the funding accrued at the old rate is paid first when due.
    /// @param instrumentId A perpetual.
    /// @param ratePerDay WAD of the index per day, |rate| <= MAX_FUNDING_RATE; positive: longs pay shorts.
    function setFundingRate(uint32 instrumentId, int128 ratePerDay) external onlyRole(FEEDER_ROLE) {
        Listing storage inst = _listing(instrumentId);
        if (inst.kind != 0) revert NotPerpetual(instrumentId);
        if (ratePerDay > MAX_FUNDING_RATE || ratePerDay < -MAX_FUNDING_RATE) revert InvalidFundingRate(ratePerDay);
        Funding storage f = _funding[instrumentId];
        if (block.timestamp >= f.paidAt + FUNDING_PERIOD) _payFunding(instrumentId, inst.underlying);
        f.ratePerDay = ratePerDay;
        emit FundingRateSet(instrumentId, ratePerDay);
    }

    /// @notice Pay a perpetual's funding for the time since its last payment, at its rate and the current index:
    ///         every unit long owes rate x index x elapsed / 1 day to the shorts. Anyone may call it, at most
    ///         once per FUNDING_PERIOD. Each position pays what it owes when it next trades (or `realizeFunding`).
    /// @param instrumentId A perpetual.
    function payFunding(uint32 instrumentId) external {
        Listing storage inst = _listing(instrumentId);
        if (inst.kind != 0) revert NotPerpetual(instrumentId);
        uint64 nextAt = _funding[instrumentId].paidAt + FUNDING_PERIOD;
        if (block.timestamp < nextAt) revert FundingTooSoon(instrumentId, nextAt);
        _payFunding(instrumentId, inst.underlying);
    }

    /// @notice Move the funding an account's perpetual positions owe (or are owed) into its cash.
    /// @param account The account.
    /// @param instrumentIds Perpetuals; a position of zero is skipped.
    function realizeFunding(address account, uint32[] calldata instrumentIds) external {
        bool changed = false;
        for (uint256 i = 0; i < instrumentIds.length; ++i) {
            uint32 id = instrumentIds[i];
            if (_listing(id).kind != 0) revert NotPerpetual(id);
            PositionState storage p = _positions[account][id];
            if (p.size != 0) {
                _realizeFunding(account, id, p);
                changed = true;
            }
        }
        if (changed) _touch(account);
    }

    /// @notice Settle expired positions of one instrument into cash at its expiry's settlement price: an option
    ///         pays size x intrinsic value, a future size x price - cost. Anyone may call it; accounts without a
    ///         position are skipped, so a batch can be retried.
    /// @param instrumentId An expired option or future whose settlement price is fixed.
    /// @param accounts The accounts to settle.
    function settle(uint32 instrumentId, address[] calldata accounts) external {
        Listing memory inst = _listing(instrumentId);
        if (inst.kind == 0 || block.timestamp < inst.expiry) revert InstrumentNotExpired(instrumentId, inst.expiry);
        (uint256 price, uint64 fixedAt) = feeds.settlementPrice(inst.underlying, inst.expiry);
        if (fixedAt == 0) revert SettlementPriceMissing(inst.underlying, inst.expiry);
        int256 perUnit = inst.kind == 1 ? SafeCast.toInt256(price) : _intrinsic(inst.kind, price, inst.strike);
        for (uint256 i = 0; i < accounts.length; ++i) {
            address account = accounts[i];
            PositionState storage p = _positions[account][instrumentId];
            int128 size = p.size;
            if (size == 0) continue;
            int256 cashDelta = int256(size) * perUnit * VALUE_SCALE - p.cost;
            cashOf[account] += cashDelta;
            _touch(account).tradedAt = SafeCast.toUint64(block.number);
            _close(account, instrumentId);
            emit Settled(account, instrumentId, size, price, cashDelta);
        }
    }

    /// @notice Deposit `amount` of `token` (approve first): the settlement token is credited to cash, any other
    ///         enabled collateral to its balance.
    /// @param token The settlement token or an enabled collateral token.
    /// @param amount Amount in the token's units.
    function deposit(address token, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _touch(msg.sender);
        uint256 balance;
        if (token == settlementToken) {
            int256 cash = cashOf[msg.sender] + SafeCast.toInt256(amount * cashScale);
            cashOf[msg.sender] = cash;
            balance = cash > 0 ? uint256(cash) / cashScale : 0;
        } else {
            if (!isCollateral[token]) revert UnsupportedCollateral(token);
            balance = balanceOf[msg.sender][token] + amount;
            _setBalance(msg.sender, token, balance);
        }
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
        if (withdrawalsPaused) revert WithdrawalsPaused();
        if (token == settlementToken) {
            int256 cash = cashOf[msg.sender];
            uint256 value = amount * cashScale;
            if (cash < SafeCast.toInt256(value)) revert InsufficientCash(msg.sender, cash, value);
            cashOf[msg.sender] = cash - int256(value);
        } else {
            uint256 balance = balanceOf[msg.sender][token];
            if (balance < amount) revert InsufficientBalance(msg.sender, token, balance, amount);
            _setBalance(msg.sender, token, balance - amount);
        }
        uint64 roundBlock = oracle.verifyMargin(msg.sender, m.initialMargin, m.maintenanceMargin, m.equity, proof);
        int256 initialMargin = SafeCast.toInt256(m.initialMargin);
        uint64 lastTrade = _meta[msg.sender].tradedAt;
        if (lastTrade > roundBlock) revert TradedSinceRound(msg.sender, lastTrade, roundBlock);
        checkNoFundingSince(msg.sender, roundBlock);
        _touch(msg.sender);
        uint256 value = _recordWithdrawal(msg.sender, token, amount, roundBlock);
        int256 equityAfter = withdrawableEquity(msg.sender, m.equity, roundBlock);
        if (equityAfter < initialMargin) revert WithdrawalExceedsMargin(msg.sender, equityAfter, m.initialMargin);
        emit Withdrawn(msg.sender, token, amount, value, roundBlock);
        IERC20(token).safeTransfer(msg.sender, amount);
    }

    /// @notice Apply a trade whose orders the Exchange verified: `size` of an instrument moves from seller to buyer
    ///         at `price`. An option's premium moves in cash; a future's or perpetual's cost basis grows when the
    ///         position grows and is realized into cash, pro rata, when it shrinks; a perpetual first pays its
    ///         funding. Each side pays the fee.
    /// @param buyer The buying account.
    /// @param seller The selling account.
    /// @param instrumentId A listed, unexpired instrument.
    /// @param size Size in 1e-4 units of the underlying, > 0.
    /// @param price USD 1e8 per unit, > 0.
    function applyTrade(address buyer, address seller, uint32 instrumentId, uint128 size, uint128 price)
        external
        onlyRole(EXCHANGE_ROLE)
    {
        if (size == 0 || price == 0) revert InvalidTrade(size, price);
        if (buyer == seller) revert SelfTrade(buyer);
        if (buyer == address(0)) revert ZeroAddress("buyer");
        if (seller == address(0)) revert ZeroAddress("seller");
        if (_meta[buyer].frozen) revert AccountInLiquidation(buyer);
        if (_meta[seller].frozen) revert AccountInLiquidation(seller);
        Listing storage inst = _listing(instrumentId);
        if (inst.kind != 0 && block.timestamp >= inst.expiry) revert InstrumentExpired(instrumentId, inst.expiry);
        int256 delta = SafeCast.toInt256(uint256(size));
        int256 value = delta * SafeCast.toInt256(uint256(price)) * VALUE_SCALE;
        uint256 fee = Math.mulDiv(uint256(value), feeRate, WAD, Math.Rounding.Ceil);
        int128 buyerPosition = _fill(buyer, instrumentId, inst.kind, delta, value, fee);
        int128 sellerPosition = _fill(seller, instrumentId, inst.kind, -delta, -value, fee);
        feesCollected += 2 * fee;
        emit Traded(buyer, seller, instrumentId, size, price, buyerPosition, sellerPosition, fee);
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

    /// @notice Move `fraction` (WAD) of `from`'s whole book to `to`: every position (a perpetual's funding realized
    ///         first) with its cost basis pro rata, every collateral balance and the cash. Each moved amount is
    ///         `amount x fraction / WAD` rounded toward zero, so `to` never gets more than the fraction and `from`
    ///         keeps the rest (docs/liquidation.md, "Rounding"). `to` may hold a book: a moved position joins its
    ///         position in the instrument as a fee-free trade at the moved cost basis (`_fill`), so a position it held
    ///         the other way is closed with its profit or loss realized into cash.
    /// @dev Keeps the money identity: sizes, costs, balances and cash move between two accounts; funding moves
    ///      from owed to the pool as in a trade. Both accounts' `tradedAt` become this block.
    /// @param from The liquidated account.
    /// @param to The bidder.
    /// @param fraction WAD, in (0, WAD].
    /// @return cash The cash moved (USD WAD, signed).
    function transferBook(address from, address to, uint256 fraction)
        external
        onlyRole(LIQUIDATOR_ROLE)
        returns (int256 cash)
    {
        if (fraction == 0 || fraction > WAD) revert InvalidFraction(fraction);
        if (from == to) revert SelfTrade(from);
        uint64 blockNumber = SafeCast.toUint64(block.number);
        _touch(from).tradedAt = blockNumber;
        _touch(to).tradedAt = blockNumber;
        uint32[] storage held = _held[from];
        // backwards: closing swaps the last entry, already moved, into the closed one's place
        for (uint256 i = held.length; i > 0; --i) {
            _movePosition(from, to, held[i - 1], int256(fraction));
        }
        for (uint256 j = 0; j < _collateralTokens.length; ++j) {
            address token = _collateralTokens[j];
            uint256 balance = balanceOf[from][token];
            uint256 amount = balance * fraction / WAD;
            if (amount == 0) continue;
            _setBalance(from, token, balance - amount);
            _setBalance(to, token, balanceOf[to][token] + amount);
        }
        cash = cashOf[from] * int256(fraction) / int256(WAD);
        cashOf[from] -= cash;
        cashOf[to] += cash;
        emit BookTransferred(from, to, fraction, cash);
    }

    /// @notice Move `amount` (USD WAD) of cash from one account to another (either may go negative); both
    ///         accounts' `tradedAt` become this block.
    /// @param from The paying account.
    /// @param to The receiving account.
    /// @param amount USD WAD.
    function transferCash(address from, address to, uint256 amount) external onlyRole(LIQUIDATOR_ROLE) {
        if (amount == 0) return;
        uint64 blockNumber = SafeCast.toUint64(block.number);
        _touch(from).tradedAt = blockNumber;
        _touch(to).tradedAt = blockNumber;
        int256 value = SafeCast.toInt256(amount);
        cashOf[from] -= value;
        cashOf[to] += value;
        emit CashTransferred(from, to, amount);
    }

    /// @notice Pause or resume withdrawals.
    /// @param paused Whether withdrawals are refused.
    function setWithdrawalsPaused(bool paused) external onlyRole(LIQUIDATOR_ROLE) {
        withdrawalsPaused = paused;
        emit WithdrawalsPausedSet(paused);
    }

    /// @notice Freeze an account's trading while its liquidation auction is open, or release it.
    /// @param account The account.
    /// @param frozen Whether `applyTrade` refuses it.
    function setFrozen(address account, bool frozen) external onlyRole(LIQUIDATOR_ROLE) {
        _meta[account].frozen = frozen;
        emit AccountFrozen(account, frozen);
    }

    /// @notice Return the block of the last change of an account's positions, balances or cash (0: never).
    /// @param account The account.
    function changedAt(address account) external view returns (uint64) {
        return _meta[account].changedAt;
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
        // cash is the numeraire: what left is charged at par, and it has no price to fall
        int256 bound = equity - SafeCast.toInt256(_unseen(_pending[account][settlementToken], roundBlock) * cashScale);
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

    /// @notice Return an account's position in an instrument, in 1e-4 units of the underlying (signed).
    /// @param account The account.
    /// @param instrumentId The instrument.
    function positionOf(address account, uint32 instrumentId) external view returns (int128) {
        return _positions[account][instrumentId].size;
    }

    /// @notice Return an account's position in an instrument at the end of block `blockNumber` (the state a round
    ///         anchored at B reads at B; for the current block, the value so far).
    /// @param account The account.
    /// @param instrumentId The instrument.
    /// @param blockNumber The block.
    function positionAt(address account, uint32 instrumentId, uint64 blockNumber) external view returns (int128) {
        return int128(uint128(_at(_sizeHistory[account][instrumentId], blockNumber)));
    }

    /// @notice Return an account's balance of a collateral token (token units) at the end of block `blockNumber`.
    /// @param account The account.
    /// @param token The token.
    /// @param blockNumber The block.
    function balanceAt(address account, address token, uint64 blockNumber) external view returns (uint256) {
        return _at(_balanceHistory[account][token], blockNumber);
    }

    /// @notice Return the number of an account's open positions at the end of block `blockNumber`.
    /// @param account The account.
    /// @param blockNumber The block.
    function openPositionCountAt(address account, uint64 blockNumber) external view returns (uint256) {
        return _at(_countHistory[account], blockNumber);
    }

    /// @notice Return an account's position with its cost basis and the funding it owes now (USD WAD, > 0: owes).
    /// @param account The account.
    /// @param instrumentId The instrument.
    function positionState(address account, uint32 instrumentId)
        external
        view
        returns (int128 size, int128 cost, int256 fundingOwed)
    {
        PositionState memory p = _positions[account][instrumentId];
        fundingOwed = _owed(p, _funding[instrumentId].cumulative);
        return (p.size, p.cost, fundingOwed);
    }

    /// @notice Return an instrument with its cumulative funding.
    /// @param instrumentId A listed instrument.
    function instrument(uint32 instrumentId) public view returns (InstrumentView memory) {
        Listing memory l = _listing(instrumentId);
        return InstrumentView(l.id, l.underlying, l.kind, l.expiry, l.strike, _funding[instrumentId].cumulative);
    }

    /// @notice Return a perpetual's funding rate (WAD per day), cumulative funding and last payment (time, block).
    /// @param instrumentId A perpetual.
    function fundingOf(uint32 instrumentId)
        external
        view
        returns (int128 ratePerDay, int256 cumulative, uint64 paidAt, uint64 paidBlock)
    {
        Funding memory f = _funding[instrumentId];
        return (f.ratePerDay, f.cumulative, f.paidAt, f.paidBlock);
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
            page[i - start] = instrument(SafeCast.toUint32(i + 1));
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
        v.cash = cashOf[account];
        v.positions = new PositionView[](held.length);
        for (uint256 j = 0; j < held.length; ++j) {
            PositionState storage p = _positions[account][held[j]];
            v.positions[j] = PositionView(held[j], p.size, p.cost, p.fundingIndex);
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

    /// @dev One side of a trade: move the position by `delta` != 0 bought for `value` (USD WAD, signed like
    ///      `delta`) and charge `fee`. Cash moves by -value + (new cost - old cost) - fee, so cash - cost moves by
    ///      -value - fee on every trade (options have no cost: the premium is the whole cash flow). Keeps `_held`
    ///      to the open positions (swap-and-pop on close).
    function _fill(address account, uint32 instrumentId, uint8 kind, int256 delta, int256 value, uint256 fee)
        internal
        returns (int128 position)
    {
        _touch(account).tradedAt = SafeCast.toUint64(block.number);
        PositionState storage p = _positions[account][instrumentId];
        int256 before = p.size;
        if (kind == 0 && before != 0) _realizeFunding(account, instrumentId, p);
        int256 size = before + delta;
        int256 cost = p.cost;
        int256 newCost = 0;
        if (kind <= 1) {
            if (before == 0 || (before > 0) == (delta > 0)) {
                newCost = cost + value; // opens or grows at the trade's price
            } else if (size == 0 || (size > 0) != (before > 0)) {
                newCost = value / delta * size; // closes (0) or flips: the rest opens at the trade's price
            } else {
                newCost = cost * size / before; // shrinks: the cost of what remains, pro rata (toward zero)
            }
        }
        cashOf[account] += newCost - cost - value - SafeCast.toInt256(fee);
        position = SafeCast.toInt128(size);
        if (size == 0) {
            _close(account, instrumentId);
            return position;
        }
        p.size = position;
        p.cost = SafeCast.toInt128(newCost);
        _recordSize(account, instrumentId, position);
        if (before == 0) {
            uint32[] storage held = _held[account];
            if (held.length >= MAX_HELD_INSTRUMENTS) revert TooManyInstruments(account, held.length);
            held.push(instrumentId);
            _recordCount(account, held.length);
            if (kind == 0) p.fundingIndex = _funding[instrumentId].cumulative;
        }
    }

    /// @dev Move `fraction` (WAD) of `from`'s position in an instrument, rounded toward zero, with its cost pro rata
    ///      (toward zero) to `to`, where it joins `to`'s position as a fee-free trade at the moved cost; a perpetual
    ///      realizes `from`'s funding first (and `_fill` realizes `to`'s).
    function _movePosition(address from, address to, uint32 id, int256 fraction) internal {
        PositionState storage p = _positions[from][id];
        int256 size = p.size;
        int256 moved = size * fraction / int256(WAD);
        if (moved == 0) return;
        uint8 kind = _instruments[id - 1].kind;
        if (kind == 0) _realizeFunding(from, id, p);
        int256 cost = p.cost;
        int256 movedCost = cost * moved / size;
        if (moved == size) {
            _close(from, id);
        } else {
            int128 left = SafeCast.toInt128(size - moved);
            (p.size, p.cost) = (left, SafeCast.toInt128(cost - movedCost));
            _recordSize(from, id, left);
        }
        _fill(to, id, kind, moved, movedCost, 0);
    }

    /// @dev Remove a position (zero size, no cost) and its entry in `_held`, searched from the end (swap-and-pop).
    function _close(address account, uint32 instrumentId) internal {
        delete _positions[account][instrumentId];
        uint32[] storage held = _held[account];
        uint256 last = held.length - 1;
        uint256 index = last;
        while (held[index] != instrumentId) --index;
        if (index != last) held[index] = held[last];
        held.pop();
        _recordSize(account, instrumentId, 0);
        _recordCount(account, last);
    }

    /// @dev Set a collateral balance and record it in its history.
    function _setBalance(address account, address token, uint256 balance) internal {
        balanceOf[account][token] = balance;
        _balanceHistory[account][token].push(SafeCast.toUint48(block.number), SafeCast.toUint208(balance));
    }

    /// @dev Record a position's new size in its history.
    function _recordSize(address account, uint32 instrumentId, int128 size) internal {
        _sizeHistory[account][instrumentId].push(SafeCast.toUint48(block.number), uint208(uint128(size)));
    }

    /// @dev Record an account's new number of open positions in its history.
    function _recordCount(address account, uint256 count) internal {
        _countHistory[account].push(SafeCast.toUint48(block.number), uint208(count));
    }

    /// @dev Move what a perpetual position owes (or is owed) since its last payment between its cash and the pool.
    function _realizeFunding(address account, uint32 instrumentId, PositionState storage p) internal {
        int256 cumulative = _funding[instrumentId].cumulative;
        int256 owed = _owed(p, cumulative);
        p.fundingIndex = cumulative;
        if (owed == 0) return;
        cashOf[account] -= owed;
        fundingPool += owed;
        emit FundingRealized(account, instrumentId, owed);
    }

    /// @dev Add rate x index x elapsed / 1 day (USD WAD per unit, toward zero) to a perpetual's cumulative funding.
    function _payFunding(uint32 instrumentId, bytes32 underlying) internal {
        Funding storage f = _funding[instrumentId];
        (uint256 index,) = feeds.indexOf(underlying);
        int256 elapsed = SafeCast.toInt256(block.timestamp - f.paidAt);
        int256 perUnit = int256(f.ratePerDay) * SafeCast.toInt256(index) * elapsed / (1 days * int256(PRICE_SCALE));
        f.cumulative += perUnit;
        f.paidAt = SafeCast.toUint64(block.timestamp);
        f.paidBlock = SafeCast.toUint64(block.number);
        lastFundingBlock = f.paidBlock;
        emit FundingPaid(instrumentId, perUnit, f.cumulative, index);
    }

    /// @notice Revert with `FundingSinceRound` if a perpetual the account holds paid funding after `roundBlock`
    ///         (its equity moved since the round's anchor without a change of the account).
    /// @param account The account.
    /// @param roundBlock A round's anchor block.
    function checkNoFundingSince(address account, uint64 roundBlock) public view {
        if (lastFundingBlock <= roundBlock) return; // no perpetual paid since: nothing to look at
        uint32[] storage held = _held[account];
        for (uint256 i = 0; i < held.length; ++i) {
            uint32 id = held[i];
            if (_instruments[id - 1].kind != 0) continue;
            uint64 paidBlock = _funding[id].paidBlock;
            if (paidBlock > roundBlock) revert FundingSinceRound(account, id, paidBlock, roundBlock);
        }
    }

    /// @dev The funding a position owes at `cumulative`: size x (cumulative - its index) / SIZE_SCALE, rounded up
    ///      (a payer pays at least, a receiver receives at most, the exact amount).
    function _owed(PositionState memory p, int256 cumulative) internal pure returns (int256) {
        int256 x = int256(p.size) * (cumulative - p.fundingIndex);
        int256 q = x / SIZE_SCALE;
        return q * SIZE_SCALE < x ? q + 1 : q;
    }

    /// @dev An option's intrinsic value per unit at `price` (USD 1e8): max(price - strike, 0) or max(strike - price, 0).
    function _intrinsic(uint8 kind, uint256 price, uint256 strike) internal pure returns (int256) {
        if (kind == 2) return price > strike ? SafeCast.toInt256(price - strike) : int256(0);
        return strike > price ? SafeCast.toInt256(strike - price) : int256(0);
    }

    function _listing(uint32 instrumentId) internal view returns (Listing storage) {
        if (instrumentId == 0 || instrumentId > _instruments.length) revert UnknownInstrument(instrumentId);
        return _instruments[instrumentId - 1];
    }

    /// @dev Add `amount` of `token` withdrawn now to the account's pending buckets, first dropping the buckets the
    ///      round anchored at `roundBlock` has seen (the recent bucket of an earlier block merges into the older
    ///      one); return the amount's value at the round's collateral price.
    function _recordWithdrawal(address account, address token, uint256 amount, uint64 roundBlock)
        internal
        returns (uint256 value)
    {
        if (token == settlementToken) {
            value = amount * cashScale; // cash leaves at par
        } else {
            (uint8 decimals,, uint256 anchored) = feeds.collateralPriceAt(token, roundBlock);
            value = _valueOf(amount, decimals, anchored);
        }
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

    /// @dev The value of a history at the end of block `blockNumber` (0 before its first checkpoint): a binary search
    ///      of the checkpoints, first narrowed to the last sqrt(n) when the block is among them (recent rounds).
    function _at(Checkpoints.Trace208 storage history, uint64 blockNumber) internal view returns (uint208) {
        return history.upperLookupRecent(uint48(Math.min(blockNumber, type(uint48).max)));
    }

    function _window(uint256 offset, uint256 limit, uint256 total) internal pure returns (uint256, uint256) {
        if (offset >= total) return (total, total);
        uint256 end = total - offset < limit ? total : offset + limit;
        return (offset, end);
    }
}
