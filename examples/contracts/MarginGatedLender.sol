// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {IPortfolioMarginOracle} from "../../contracts/IPortfolioMarginOracle.sol";
import {AttestedMargin} from "../../contracts/PmoracleTypes.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";

/// @title MarginGatedLender
/// @notice Example consumer of IPortfolioMarginOracle: a credit line (accounting only, no token moves) that lets an
///         account borrow only while its attested free margin, equity - initial margin, covers its whole debt, and
///         only while the oracle computes margins with the risk parameters the lender chose to trust.
/// @dev Uses nothing but the standard interface, so any oracle implementing it can back the lender. Debt is in USD
///      with 18 decimals, like the oracle's margins.
contract MarginGatedLender {
    /// @notice The oracle the lender reads margins from.
    IPortfolioMarginOracle public immutable oracle;
    /// @notice The risk parameters hash the lender trusts (keccak256 of the document's canonical bytes).
    bytes32 public immutable trustedParamsHash;

    /// @notice Each account's outstanding debt (USD, 18 decimals).
    mapping(address account => uint256 amount) public debtOf;

    /// @notice `account` borrowed `amount`, proven against the round of block `roundBlock`.
    event Borrowed(address indexed account, uint256 amount, uint256 debt, uint64 roundBlock);
    /// @notice `account` repaid `amount`.
    event Repaid(address indexed account, uint256 amount, uint256 debt);

    /// @notice The oracle's current parameters are not the ones the lender trusts.
    error UntrustedParams(bytes32 current, bytes32 trusted);
    /// @notice The account's attested free margin (equity - IM, signed) does not cover its debt after the loan.
    error InsufficientFreeMargin(address account, int256 freeMargin, uint256 debtAfter);
    /// @notice The account is liquidatable in the latest round (equity below maintenance margin).
    error AccountLiquidatable(address account);
    /// @notice More repaid than owed.
    error RepayExceedsDebt(address account, uint256 amount, uint256 debt);

    /// @param oracle_ The margin oracle.
    /// @param trustedParamsHash_ The parameters hash margins must be computed under.
    constructor(IPortfolioMarginOracle oracle_, bytes32 trustedParamsHash_) {
        oracle = oracle_;
        trustedParamsHash = trustedParamsHash_;
    }

    /// @notice Borrow `amount` against the caller's attested margin in the oracle's latest round.
    /// @param amount The amount to add to the caller's debt.
    /// @param leaf The caller's attested values in the latest round.
    /// @param proof The leaf's Merkle proof.
    function borrow(uint256 amount, AttestedMargin calldata leaf, bytes32[] calldata proof) external {
        bytes32 current = oracle.paramsHash();
        if (current != trustedParamsHash) revert UntrustedParams(current, trustedParamsHash);
        if (oracle.isLiquidatable(msg.sender, leaf, proof)) revert AccountLiquidatable(msg.sender);
        (uint256 initialMargin,, int256 equity, uint64 roundBlock) = oracle.marginOf(msg.sender, leaf, proof);
        uint256 debtAfter = debtOf[msg.sender] + amount;
        int256 freeMargin = equity - SafeCast.toInt256(initialMargin);
        if (freeMargin < 0 || uint256(freeMargin) < debtAfter) {
            revert InsufficientFreeMargin(msg.sender, freeMargin, debtAfter);
        }
        debtOf[msg.sender] = debtAfter;
        emit Borrowed(msg.sender, amount, debtAfter, roundBlock);
    }

    /// @notice Repay `amount` of the caller's debt (no proof needed).
    /// @param amount The amount repaid.
    function repay(uint256 amount) external {
        uint256 debt = debtOf[msg.sender];
        if (amount > debt) revert RepayExceedsDebt(msg.sender, amount, debt);
        debtOf[msg.sender] = debt - amount;
        emit Repaid(msg.sender, amount, debt - amount);
    }
}
