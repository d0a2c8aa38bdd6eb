// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

import {Base} from "./Base.sol";
import {MarginAccounts} from "../../contracts/MarginAccounts.sol";
import {MarketFeeds} from "../../contracts/MarketFeeds.sol";
import {MockERC20} from "../../contracts/MockERC20.sol";
import {IMarginOracle} from "../../contracts/PmoracleTypes.sol";

/// @notice Fuzz test of MarginAccounts' holdings history (docs/contracts.md, "MarginAccounts", holdings history), the
///         values a fraud proof reads at a round's block: after random trades, deposits and book transfers spread
///         over blocks (several in one block, blocks skipped), `positionAt`, `openPositionCountAt` and `balanceAt`
///         at every block equal the live values recorded at the end of that block, and at the current block the live
///         `positionOf`, `openPositionCount` and `balanceOf`.
contract HoldingsHistoryFuzzTest is Base {
    uint256 internal constant A = 3; // accounts
    uint256 internal constant I = 3; // perpetuals, ids 1..I
    uint256 internal constant STEPS = 16;
    uint64 internal constant START = 100;

    MarginAccounts internal ledger;
    MockERC20 internal weth;
    address[A] internal accounts = [address(0xA1), address(0xA2), address(0xA3)];

    /// @dev The live holdings at the end of a step, with the step's block.
    struct Seen {
        uint64 blockNumber;
        int128[I][A] sizes;
        uint256[A] counts;
        uint256[A] balances;
    }

    function setUp() public {
        MarketFeeds feeds = new MarketFeeds(address(this), address(this));
        MockERC20 usdc = new MockERC20("USD Coin", "USDC", 6);
        weth = new MockERC20("Wrapped Ether", "WETH", 18);
        ledger = new MarginAccounts(address(this), feeds, IMarginOracle(address(0)), address(usdc));
        ledger.grantRole(ledger.EXCHANGE_ROLE(), address(this));
        ledger.grantRole(ledger.LIQUIDATOR_ROLE(), address(this));
        ledger.addCollateral(address(weth));
        for (uint256 i = 0; i < I; ++i) {
            ledger.listInstrument(bytes32("BTC"), 0, 0, 0);
        }
        for (uint256 a = 0; a < A; ++a) {
            weth.mint(accounts[a], 1e30);
            vm.prank(accounts[a]);
            weth.approve(address(ledger), type(uint256).max);
        }
        vm.roll(START);
    }

    function testFuzz_historyEqualsTheValuesAtEachBlock(uint256[STEPS] memory ops) public {
        Seen[] memory seen = new Seen[](STEPS);
        for (uint256 k = 0; k < STEPS; ++k) {
            uint256 op = ops[k];
            vm.roll(block.number + op % 3); // 0: same block (the checkpoint is overwritten), 2: a block skipped
            op /= 3;
            _apply(op);
            seen[k] = _live();
        }
        Seen memory none;
        _check(START - 1, none); // before any change: nothing held
        for (uint256 k = 0; k < STEPS; ++k) {
            uint64 b = seen[k].blockNumber;
            uint64 next = k + 1 < STEPS ? seen[k + 1].blockNumber : uint64(block.number) + 1;
            if (next == b) continue; // a later step of the same block holds the block's final values
            _check(b, seen[k]);
            if (next > b + 1) _check(b + 1, seen[k]); // a block without a change reads the last change
        }
        // at the current block: the live values
        _check(uint64(block.number), _live());
    }

    /// @dev One random change: a trade between two accounts, a WETH deposit, or a book transfer.
    function _apply(uint256 op) internal {
        uint256 kind = op % 5;
        op /= 5;
        uint256 xi = op % A;
        address x = accounts[xi];
        address y = accounts[(xi + 1 + (op / A) % (A - 1)) % A]; // another account
        op /= A * A;
        if (kind <= 2) {
            uint32 id = uint32(op % I) + 1;
            uint128 size = uint128(bound(op / I, 1, 50));
            ledger.applyTrade(x, y, id, size, 100e8);
        } else if (kind == 3) {
            vm.prank(x);
            ledger.deposit(address(weth), bound(op, 1, 1e21));
        } else {
            ledger.transferBook(x, y, bound(op, 1, 1e18));
        }
    }

    function _live() internal view returns (Seen memory s) {
        s.blockNumber = uint64(block.number);
        for (uint256 a = 0; a < A; ++a) {
            for (uint256 i = 0; i < I; ++i) {
                s.sizes[a][i] = ledger.positionOf(accounts[a], uint32(i + 1));
            }
            s.counts[a] = ledger.openPositionCount(accounts[a]);
            s.balances[a] = ledger.balanceOf(accounts[a], address(weth));
        }
    }

    function _check(uint64 b, Seen memory s) internal view {
        for (uint256 a = 0; a < A; ++a) {
            for (uint256 i = 0; i < I; ++i) {
                int128 size = ledger.positionAt(accounts[a], uint32(i + 1), b);
                assertEq(uint256(int256(size)), uint256(int256(s.sizes[a][i])), "positionAt");
            }
            assertEq(ledger.openPositionCountAt(accounts[a], b), s.counts[a], "openPositionCountAt");
            assertEq(ledger.balanceAt(accounts[a], address(weth), b), s.balances[a], "balanceAt");
        }
    }
}
