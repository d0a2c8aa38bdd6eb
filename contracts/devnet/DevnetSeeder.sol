// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Exchange} from "../Exchange.sol";
import {MarginAccounts} from "../MarginAccounts.sol";

/// @title DevnetSeeder
/// @notice Devnet-only: applies many deposits and many matches in one transaction, so that the devnet's world
///         (src/pmoracle/devnet/world.py) seeds 100,000 accounts in minutes. Never part of the protocol's
///         deployment (chain/deploy.py): the devnet world deploys it and grants it the Exchange's MATCHER_ROLE.
/// @dev Every action goes through the protocol's own entry points, so the book is the one the same deposits and
///      matches sent one transaction each would give: a match is `Exchange.matchOrders` with both accounts'
///      signed orders; a deposit is `MarginAccounts.deposit` called by the account itself, which the world makes
///      possible by installing `DevnetDepositor`'s code at the account (anvil_setCode) for the deposits, and
///      removing it before any order of the account is matched (a signer with code is checked by ERC-1271).
contract DevnetSeeder {
    /// @notice A deposit of `amount` of `token` by `account` (holding DevnetDepositor's code, tokens approved).
    struct Deposit {
        address account;
        address token;
        uint256 amount;
    }

    /// @notice The arguments of one `Exchange.matchOrders`.
    struct Match {
        Exchange.Order buy;
        bytes buySignature;
        Exchange.Order sell;
        bytes sellSignature;
        uint128 size;
        uint128 price;
    }

    /// @notice The only caller (the devnet world's admin).
    address public immutable admin;
    /// @notice The ledger deposits go to.
    MarginAccounts public immutable ledger;
    /// @notice The Exchange matches go to (grant this contract its MATCHER_ROLE).
    Exchange public immutable exchange;
    /// @notice A DevnetDepositor deployed by this contract: the world copies its code to the accounts.
    address public immutable depositor;

    /// @notice A batch of `count` deposits or matches was applied (the world confirms its transactions by logs).
    event Seeded(uint256 count);

    /// @notice The caller is not the admin.
    error NotSeederAdmin(address caller);

    /// @param admin_ The only caller.
    /// @param exchange_ The Exchange (its ledger receives the deposits).
    constructor(address admin_, Exchange exchange_) {
        admin = admin_;
        exchange = exchange_;
        ledger = exchange_.ledger();
        depositor = address(new DevnetDepositor());
    }

    /// @notice Deposit for each account, in order.
    /// @param deposits The deposits; each account holds DevnetDepositor's code.
    function deposit(Deposit[] calldata deposits) external {
        if (msg.sender != admin) revert NotSeederAdmin(msg.sender);
        for (uint256 i = 0; i < deposits.length; ++i) {
            Deposit calldata d = deposits[i];
            DevnetDepositor(d.account).deposit(ledger, d.token, d.amount);
        }
        emit Seeded(deposits.length);
    }

    /// @notice Match each pair of orders, in order (a failing match reverts the whole batch with its error).
    /// @param matches The matches.
    function matchOrders(Match[] calldata matches) external {
        if (msg.sender != admin) revert NotSeederAdmin(msg.sender);
        for (uint256 i = 0; i < matches.length; ++i) {
            Match calldata m = matches[i];
            exchange.matchOrders(m.buy, m.buySignature, m.sell, m.sellSignature, m.size, m.price);
        }
        emit Seeded(matches.length);
    }
}

/// @title DevnetDepositor
/// @notice Devnet-only code installed at an account's address while the world deposits for it: lets the seeder
///         (and no one else) make the account call `MarginAccounts.deposit`, so that msg.sender is the account.
contract DevnetDepositor {
    /// @notice The only caller: the DevnetSeeder that deployed the code (an immutable, so copies keep it).
    address public immutable seeder;

    /// @notice The caller is not the seeder.
    error NotSeeder(address caller);

    constructor() {
        seeder = msg.sender;
    }

    /// @notice Deposit `amount` of `token` into `ledger` as this account (which approved the ledger).
    /// @param ledger The ledger.
    /// @param token The token.
    /// @param amount The amount.
    function deposit(MarginAccounts ledger, address token, uint256 amount) external {
        if (msg.sender != seeder) revert NotSeeder(msg.sender);
        ledger.deposit(token, amount);
    }
}
