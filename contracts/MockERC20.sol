// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";

/// @title MockERC20
/// @notice Devnet collateral token (USDC 6, WBTC 8, WETH 18 decimals) that anyone can mint. Never deploy on a real chain.
contract MockERC20 is ERC20 {
    uint8 internal immutable _decimals;

    /// @param name_ Token name.
    /// @param symbol_ Token symbol.
    /// @param decimals_ Token decimals.
    constructor(string memory name_, string memory symbol_, uint8 decimals_) ERC20(name_, symbol_) {
        _decimals = decimals_;
    }

    /// @notice Mint `amount` to `to` (devnet faucet; emits Transfer from zero).
    /// @param to Recipient.
    /// @param amount Amount in the token's units.
    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    /// @notice Return the token's decimals.
    function decimals() public view override returns (uint8) {
        return _decimals;
    }
}
