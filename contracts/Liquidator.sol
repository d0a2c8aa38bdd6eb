// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ReentrancyGuard} from "@openzeppelin/contracts/utils/ReentrancyGuard.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {MarginAccounts} from "./MarginAccounts.sol";
import {AttestedMargin} from "./PmoracleTypes.sol";

/// @title Liquidator
/// @notice One-step liquidation: a fractional Dutch auction on an account whose attested equity E is below its
///         attested maintenance margin M, and the insurance fund (this contract's own cash in the ledger).
/// @dev Portfolio margin is positively homogeneous, so a bid takes a fraction f of every position, balance and the
///      cash of the account and the rest carries (1 - f) M. The bidder pays the account f (E - d M), d the discount
///      at the bid's time, and the fund a fee: a share of its gain f d M. The bid may take at most
///      f* = ((1 + b) M - E) / ((1 + b - d) M) (rounded up), which leaves the account at E - f d M >= (1 + b)(1 - f) M;
///      f = 1 when E < d M, and then the fund pays what the account's equity cannot (an insolvent account's |E|
///      and the bidder's d M). What the fund cannot pay leaves its cash negative: the socialized loss, carried by
///      every cash holder, and withdrawals pause while insolvent shortfall exceeds the fund (docs/liquidation.md).
///      Every bid is judged on the latest attested round, anchored at R, for an account unchanged since R; the
///      account cannot trade while its auction is open (the ledger freezes it), so no trade can make bids wait.
///      The bidder must end up (1 + b) above its new maintenance margin: a cash-only bidder on its cash, a bidder with
///      a book on its own leaf in the same round (margin is subadditive: MM(book + f x A) <= MM(book) + f M).
contract Liquidator is AccessControl, ReentrancyGuard {
    using SafeERC20 for IERC20;

    /// @notice 1e18.
    uint256 public constant WAD = 1e18;
    /// @notice Highest buffer above maintenance margin a bid restores: 100%.
    uint64 public constant MAX_BUFFER = 1e18;
    /// @notice Highest discount: 50% of maintenance margin.
    uint64 public constant MAX_DISCOUNT = 0.5e18;
    /// @notice Longest phase of the discount schedule.
    uint32 public constant MAX_PHASE = 7 days;
    /// @notice A bid's `fraction` that takes the largest fraction allowed at the bid's block (f*, or the whole book).
    uint256 public constant TAKE_MAX = type(uint256).max;

    /// @notice The auction's parameters (WAD fractions, seconds).
    /// @param buffer b: a bid restores equity to (1 + b) x the remaining maintenance margin.
    /// @param fastDiscount d1: the discount reached at the end of the fast phase.
    /// @param maxDiscount d_max: the discount reached at the end of the slow phase.
    /// @param fastPhase T1: seconds of the fast phase (0 to d1).
    /// @param slowPhase T2: seconds of the slow phase (d1 to d_max).
    /// @param feeShare The share of the bidder's gain f d M paid to the insurance fund.
    /// @param minFraction The smallest fraction a bid may take (unless the allowed maximum is smaller).
    struct Params {
        uint64 buffer;
        uint64 fastDiscount;
        uint64 maxDiscount;
        uint32 fastPhase;
        uint32 slowPhase;
        uint64 feeShare;
        uint64 minFraction;
    }

    /// @notice An open auction: when it started, the anchor of the round that started it, and the account's
    ///         insolvent shortfall (-E when E < 0) in the latest round a call judged it on.
    struct Auction {
        uint64 startedAt;
        uint64 roundBlock;
        uint128 shortfall;
    }

    /// @notice What a bid moved (USD WAD): `payment` > 0 from the bidder to the account, < 0 from the fund to the
    ///         bidder; `fee` from the bidder to the fund.
    struct BidResult {
        uint256 fraction;
        uint256 maxFraction;
        uint256 discount;
        int256 payment;
        uint256 fee;
    }

    /// @notice The ledger.
    MarginAccounts public immutable ledger;
    /// @notice The auction's parameters.
    Params public params;
    /// @notice Open auctions by account.
    mapping(address account => Auction) public auctions;
    /// @notice Sum of the shortfalls of open auctions (USD WAD).
    uint256 public totalShortfall;
    /// @notice Subsidies the fund paid to bidders, in total (USD WAD).
    uint256 public insurancePaid;
    /// @notice Fees the fund received, in total (USD WAD).
    uint256 public feesReceived;

    /// @notice An auction started on an account attested below maintenance margin in the round at `roundBlock`.
    event AuctionStarted(address indexed account, uint64 roundBlock, int256 equity, uint256 maintenanceMargin);
    /// @notice A bid took `fraction` of the account's book; `restored`: the auction ended with it.
    event Bid(
        address indexed account,
        address indexed bidder,
        uint256 fraction,
        uint256 discount,
        int256 payment,
        uint256 fee,
        bool restored
    );
    /// @notice An auction ended without a bid: the round at `roundBlock` attests equity >= maintenance margin.
    event AuctionEnded(address indexed account, uint64 roundBlock);
    /// @notice The parameters were set.
    event ParamsSet(Params params);
    /// @notice Someone paid `amount` (settlement token units) into the insurance fund.
    event FundDeposited(address indexed from, uint256 amount);

    /// @notice The account's attested equity is not below its maintenance margin.
    error NotLiquidatable(address account, int256 equity, uint256 maintenanceMargin);
    /// @notice The account has no open auction.
    error NoAuction(address account);
    /// @notice The account already has an open auction.
    error AuctionOpen(address account, uint64 startedAt);
    /// @notice The account's positions changed (a trade, a settlement, a bid) after the anchor of the round the call
    ///         is judged on.
    error AccountChangedSinceRound(address account, uint64 tradedAt, uint64 roundBlock);
    /// @notice The fund's own account cannot be auctioned.
    error FundNotLiquidatable();
    /// @notice The bidder is the liquidated account.
    error SelfLiquidation(address account);
    /// @notice A fraction above the allowed maximum.
    error FractionAboveMax(uint256 fraction, uint256 maxFraction);
    /// @notice A fraction below the minimum: zero, under min(minFraction, maxFraction), or under WAD when E < d M.
    error FractionBelowMin(uint256 fraction, uint256 minFraction);
    /// @notice The bid would cost the bidder more than its limit (USD WAD; negative: the fund pays it).
    error PaymentAboveLimit(int256 payment, int256 maxPayment);
    /// @notice The bidder's own account is under a liquidation auction.
    error BidderInAuction(address bidder);
    /// @notice The bidder's equity after the bid would be below (1 + buffer) x the margin it takes on.
    error BidderUnderMargin(address bidder, int256 equityAfter, uint256 required);
    /// @notice A parameter outside its bounds.
    error InvalidParameter(string name, uint256 value);

    /// @param admin Holds DEFAULT_ADMIN_ROLE (sets the parameters).
    /// @param ledger_ The ledger (grant this contract its LIQUIDATOR_ROLE).
    /// @param params_ The initial parameters.
    constructor(address admin, MarginAccounts ledger_, Params memory params_) {
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        ledger = ledger_;
        _setParams(params_);
    }

    /// @notice Set the auction's parameters (open auctions continue under them).
    /// @param params_ buffer <= MAX_BUFFER, fastDiscount <= maxDiscount <= MAX_DISCOUNT, phases in (0, MAX_PHASE],
    ///        feeShare <= WAD, minFraction <= WAD.
    function setParams(Params calldata params_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setParams(params_);
    }

    /// @notice Start an auction on an account whose attested equity is below its maintenance margin in the latest
    ///         round, and which has not changed since the round's anchor. Anyone may call it.
    /// @param account The account.
    /// @param m Its attested margin in the latest round.
    /// @param proof The Merkle proof of its leaf.
    function startAuction(address account, AttestedMargin calldata m, bytes32[] calldata proof) external {
        if (account == address(this)) revert FundNotLiquidatable();
        Auction storage a = auctions[account];
        if (a.startedAt != 0) revert AuctionOpen(account, a.startedAt);
        uint64 roundBlock = _judge(account, m, proof);
        a.startedAt = SafeCast.toUint64(block.timestamp);
        a.roundBlock = roundBlock;
        _setShortfall(a, m.equity);
        ledger.setFrozen(account, true);
        emit AuctionStarted(account, roundBlock, m.equity, m.maintenanceMargin);
        _syncPause();
    }

    /// @notice End an auction whose account the latest round attests at or above maintenance margin.
    /// @param account The account.
    /// @param m Its attested margin in the latest round.
    /// @param proof The Merkle proof of its leaf.
    function endAuction(address account, AttestedMargin calldata m, bytes32[] calldata proof) external {
        Auction storage a = auctions[account];
        if (a.startedAt == 0) revert NoAuction(account);
        uint64 roundBlock = ledger.oracle().verifyMargin(
            account, m.initialMargin, m.maintenanceMargin, m.equity, proof
        );
        if (m.equity < SafeCast.toInt256(m.maintenanceMargin)) {
            revert NotLiquidatable(account, m.equity, m.maintenanceMargin);
        }
        _close(account, a);
        emit AuctionEnded(account, roundBlock);
        _syncPause();
    }

    /// @notice Bid on an open auction: take `fraction` of the account's whole book, pay the account
    ///         f (E - d M) (the fund pays the bidder when it is negative) and the fund the fee. The bidder's equity
    ///         after the bid must be at least (1 + buffer) x its maintenance margin after it: for a cash-only bidder
    ///         cash - cost + f E >= (1 + b) f M; for a bidder with a book, from its own leaf in the same latest round
    ///         (anchor R, unchanged since R), E_B - withdrawn - cost + f E >= (1 + b)(M_B + f M).
    /// @param account The account under auction.
    /// @param fraction WAD; at most `maxFraction`, at least min(minFraction, maxFraction); exactly WAD when
    ///        E < d M (an insolvent account included); TAKE_MAX: the largest fraction allowed at the bid's block.
    /// @param maxPayment The most the bid may cost the bidder, payment + fee (USD WAD; negative: the least
    ///        subsidy it accepts).
    /// @param m The account's attested margin in the latest round.
    /// @param proof The Merkle proof of its leaf.
    /// @param bidderMargin The bidder's attested margin in the latest round (ignored for a cash-only bidder).
    /// @param bidderProof The Merkle proof of the bidder's leaf (ignored for a cash-only bidder).
    /// @return r What the bid moved.
    function bid(
        address account,
        uint256 fraction,
        int256 maxPayment,
        AttestedMargin calldata m,
        bytes32[] calldata proof,
        AttestedMargin calldata bidderMargin,
        bytes32[] calldata bidderProof
    ) external nonReentrant returns (BidResult memory r) {
        Auction storage a = auctions[account];
        if (a.startedAt == 0) revert NoAuction(account);
        if (msg.sender == account) revert SelfLiquidation(account);
        _judge(account, m, proof);
        r = quote(account, fraction, m.equity, m.maintenanceMargin);
        int256 cost = r.payment + SafeCast.toInt256(r.fee);
        if (cost > maxPayment) revert PaymentAboveLimit(cost, maxPayment);
        _checkBidder(msg.sender, r, m, bidderMargin, bidderProof);
        ledger.transferBook(account, msg.sender, r.fraction);
        if (r.payment > 0) {
            ledger.transferCash(msg.sender, account, uint256(r.payment));
        } else if (r.payment < 0) {
            ledger.transferCash(address(this), msg.sender, uint256(-r.payment));
            insurancePaid += uint256(-r.payment);
        }
        ledger.transferCash(msg.sender, address(this), r.fee);
        feesReceived += r.fee;
        bool restored = r.fraction == r.maxFraction;
        if (restored) _close(account, a);
        else _setShortfall(a, m.equity);
        emit Bid(account, msg.sender, r.fraction, r.discount, r.payment, r.fee, restored);
        _syncPause();
    }

    /// @notice Pay `amount` of the settlement token into the insurance fund (approve this contract first).
    /// @param amount Settlement token units.
    function depositFund(uint256 amount) external nonReentrant {
        IERC20 token = IERC20(ledger.settlementToken());
        token.safeTransferFrom(msg.sender, address(this), amount);
        token.forceApprove(address(ledger), amount);
        ledger.deposit(address(token), amount);
        emit FundDeposited(msg.sender, amount);
        _syncPause();
    }

    /// @notice Return what a bid of `fraction` on `account` would move now, for attested equity and maintenance
    ///         margin (`equity`, `mm`, USD WAD); reverts with the bid's fraction errors.
    /// @param account An account with an open auction.
    /// @param fraction WAD, or TAKE_MAX for the largest allowed now (`r.fraction` is then that fraction).
    /// @param equity Attested equity E, < mm.
    /// @param mm Attested maintenance margin M.
    function quote(address account, uint256 fraction, int256 equity, uint256 mm)
        public
        view
        returns (BidResult memory r)
    {
        Auction storage a = auctions[account];
        if (a.startedAt == 0) revert NoAuction(account);
        Params memory p = params;
        r.fraction = fraction;
        r.discount = discountAt(block.timestamp - a.startedAt);
        r.maxFraction = maxFraction(equity, mm, r.discount);
        if (fraction == TAKE_MAX) fraction = r.fraction = r.maxFraction;
        if (fraction > r.maxFraction) revert FractionAboveMax(fraction, r.maxFraction);
        // E < d M (insolvent included): only the whole book; otherwise at least min(minFraction, f*)
        bool whole = equity < 0 || uint256(equity) * WAD < r.discount * mm;
        uint256 least = whole ? WAD : Math.max(1, Math.min(p.minFraction, r.maxFraction));
        if (fraction < least) revert FractionBelowMin(fraction, least);
        // payment = f (E - d M), rounded up: the account gets, and the fund pays, no less than the exact amount
        int256 value = equity * int256(WAD) - SafeCast.toInt256(r.discount * mm);
        r.payment = _ceilDiv(value * SafeCast.toInt256(fraction), int256(WAD * WAD));
        // the bidder's gain f d M, of which the fund's share, rounded up
        r.fee = Math.mulDiv(fraction * r.discount, mm * p.feeShare, WAD * WAD * WAD, Math.Rounding.Ceil);
    }

    /// @notice Return the discount (WAD of maintenance margin) `elapsed` seconds into an auction: linear from 0 to
    ///         fastDiscount over fastPhase, then to maxDiscount over slowPhase, then constant (rounded down).
    /// @param elapsed Seconds since the auction started.
    function discountAt(uint256 elapsed) public view returns (uint256) {
        Params memory p = params;
        if (elapsed < p.fastPhase) return uint256(p.fastDiscount) * elapsed / p.fastPhase;
        elapsed -= p.fastPhase;
        if (elapsed >= p.slowPhase) return p.maxDiscount;
        return p.fastDiscount + uint256(p.maxDiscount - p.fastDiscount) * elapsed / p.slowPhase;
    }

    /// @notice Return the largest fraction (WAD) a bid may take: f* = ((1 + b) M - E) / ((1 + b - d) M) rounded
    ///         up, or WAD when E < d M, or 0 when E >= (1 + b) M.
    /// @param equity E (USD WAD).
    /// @param mm M (USD WAD).
    /// @param discount d (WAD).
    function maxFraction(int256 equity, uint256 mm, uint256 discount) public view returns (uint256) {
        uint256 b = params.buffer;
        // E < d M: the whole book (also when E < 0)
        if (equity < 0 || uint256(equity) * WAD < discount * mm) return WAD;
        if (uint256(equity) * WAD >= (WAD + b) * mm) return 0;
        uint256 num = (WAD + b) * mm - uint256(equity) * WAD;
        uint256 den = (WAD + b - discount) * mm;
        return Math.min(WAD, Math.mulDiv(num, WAD, den, Math.Rounding.Ceil));
    }

    /// @notice Return the insurance fund's cash in the ledger (USD WAD; negative: the socialized loss).
    function fundBalance() public view returns (int256) {
        return ledger.cashOf(address(this));
    }

    /// @notice Return the loss socialized over cash holders: what the fund paid beyond its balance (USD WAD).
    function socializedLoss() external view returns (uint256) {
        int256 balance = fundBalance();
        return balance < 0 ? uint256(-balance) : 0;
    }

    /// @notice Return whether withdrawals should be paused: open insolvent shortfall exceeds the fund's balance.
    function shortfallExceedsFund() public view returns (bool) {
        return SafeCast.toInt256(totalShortfall) > fundBalance();
    }

    /// @dev Verify the account's leaf in the latest round (anchor R): E < M, and no trade, settlement or bid of the
    ///      account, nor funding payment of its perpetuals, after R (the ledger's withdrawal rule). A deposit or a
    ///      realized funding after R does not disqualify the round: neither lowers the equity (docs/liquidation.md,
    ///      "Which round"). Returns R.
    function _judge(address account, AttestedMargin calldata m, bytes32[] calldata proof)
        internal
        view
        returns (uint64 roundBlock)
    {
        roundBlock = ledger.oracle().verifyMargin(account, m.initialMargin, m.maintenanceMargin, m.equity, proof);
        if (m.equity >= SafeCast.toInt256(m.maintenanceMargin)) {
            revert NotLiquidatable(account, m.equity, m.maintenanceMargin);
        }
        uint64 traded = ledger.tradedAt(account);
        if (traded > roundBlock) revert AccountChangedSinceRound(account, traded, roundBlock);
        ledger.checkNoFundingSince(account, roundBlock);
    }

    /// @dev Revert unless the bidder's equity after the bid, base - payment - fee + f E, is at least
    ///      (1 + b)(M_B + f M): base = cash and M_B = 0 for a cash-only bidder; otherwise its leaf in the latest
    ///      round (anchor R, no trade, bid or funding payment since R, like the account's) gives base =
    ///      `withdrawableEquity` (E_B less what it withdrew since R) and M_B. Margin is subadditive (the scenario
    ///      loss of a sum is at most the sum of the losses, the add-ons are linear in |size|), so the bidder's
    ///      maintenance margin after the bid is at most M_B + f M (docs/liquidation.md, "The bidder").
    function _checkBidder(
        address bidder,
        BidResult memory r,
        AttestedMargin calldata m,
        AttestedMargin calldata bm,
        bytes32[] calldata bproof
    ) internal view {
        if (auctions[bidder].startedAt != 0) revert BidderInAuction(bidder);
        int256 base = ledger.cashOf(bidder);
        uint256 bidderMargin = 0;
        if (!_cashOnly(bidder)) {
            uint64 roundBlock =
                ledger.oracle().verifyMargin(bidder, bm.initialMargin, bm.maintenanceMargin, bm.equity, bproof);
            uint64 traded = ledger.tradedAt(bidder);
            if (traded > roundBlock) revert AccountChangedSinceRound(bidder, traded, roundBlock);
            ledger.checkNoFundingSince(bidder, roundBlock);
            base = ledger.withdrawableEquity(bidder, bm.equity, roundBlock);
            bidderMargin = bm.maintenanceMargin;
        }
        // the book's value f E rounded down, the margin (1 + b)(M_B + f M) rounded up
        int256 after_ = base - r.payment - SafeCast.toInt256(r.fee)
            + _floorDiv(m.equity * SafeCast.toInt256(r.fraction), int256(WAD));
        uint256 required = Math.mulDiv(
            WAD + params.buffer, bidderMargin * WAD + r.fraction * m.maintenanceMargin, WAD * WAD, Math.Rounding.Ceil
        );
        if (after_ < SafeCast.toInt256(required)) revert BidderUnderMargin(bidder, after_, required);
    }

    /// @dev Whether `account` holds no position and no collateral balance (its equity is its cash).
    function _cashOnly(address account) internal view returns (bool) {
        if (ledger.openPositionCount(account) != 0) return false;
        address[] memory tokens = ledger.collateralTokens();
        for (uint256 i = 0; i < tokens.length; ++i) {
            if (ledger.balanceOf(account, tokens[i]) != 0) return false;
        }
        return true;
    }

    function _setShortfall(Auction storage a, int256 equity) internal {
        uint256 shortfall = equity < 0 ? uint256(-equity) : 0;
        totalShortfall = totalShortfall - a.shortfall + shortfall;
        a.shortfall = SafeCast.toUint128(shortfall);
    }

    function _close(address account, Auction storage a) internal {
        totalShortfall -= a.shortfall;
        delete auctions[account];
        ledger.setFrozen(account, false);
    }

    /// @dev Pause withdrawals while open insolvent shortfall exceeds the fund (a negative fund included).
    function _syncPause() internal {
        bool paused = shortfallExceedsFund();
        if (paused != ledger.withdrawalsPaused()) ledger.setWithdrawalsPaused(paused);
    }

    function _setParams(Params memory p) internal {
        if (p.buffer > MAX_BUFFER) revert InvalidParameter("buffer", p.buffer);
        if (p.maxDiscount > MAX_DISCOUNT) revert InvalidParameter("maxDiscount", p.maxDiscount);
        if (p.fastDiscount > p.maxDiscount) revert InvalidParameter("fastDiscount", p.fastDiscount);
        if (p.fastPhase == 0 || p.fastPhase > MAX_PHASE) revert InvalidParameter("fastPhase", p.fastPhase);
        if (p.slowPhase == 0 || p.slowPhase > MAX_PHASE) revert InvalidParameter("slowPhase", p.slowPhase);
        if (p.feeShare > WAD) revert InvalidParameter("feeShare", p.feeShare);
        if (p.minFraction > WAD) revert InvalidParameter("minFraction", p.minFraction);
        params = p;
        emit ParamsSet(p);
    }

    function _ceilDiv(int256 x, int256 d) internal pure returns (int256 q) {
        q = x / d;
        if (q * d < x) ++q;
    }

    function _floorDiv(int256 x, int256 d) internal pure returns (int256 q) {
        q = x / d;
        if (q * d > x) --q;
    }
}
