// SPDX-License-Identifier: MIT
pragma solidity 0.8.37;

/// @title MarginAccountsReader
/// @notice Reads MarginAccounts' books into one packed byte string. Never deployed: a snapshot runs it with
///         `eth_call` at the ledger's address with this code put there by a state override, so it reads the
///         ledger's own storage at the pinned block, and does in one call, without ABI-encoding nested arrays,
///         what `accountsPage` / `accountsChangedSince` do.
/// @dev Its state variables repeat MarginAccounts' (with AccessControl's mapping first) in order and type up to
///      `_held`; a test compares the two storage layouts that solc reports. The output, all integers big-endian:
///
///      header:     sinceHash (32: blockhash(sinceBlock), zero for a full read), next (32: the first index not
///                  read), total (32: the number of accounts)
///      account:    address (20), cash (32: int256), position count (2), positions, collateral count (2), balances
///      position:   instrument id (4), the position's first slot (32: cost int128 high, size int128 low),
///                  funding index (32: int256)
///      balance:    token (20), amount (32), for each collateral token with a non-zero balance, in listing order
///
///      A call stops before an account when less than `ACCOUNT_GAS` is left, so a node's `eth_call` gas cap
///      bounds a call, not the page asked for: the reader calls again from `next`.
contract MarginAccountsReader {
    struct Listing {
        uint32 id;
        bytes32 underlying;
        uint8 kind;
        uint64 expiry;
        uint128 strike;
    }

    struct Funding {
        int256 cumulative;
        int128 ratePerDay;
        uint64 paidAt;
        uint64 paidBlock;
    }

    struct AccountMeta {
        bool known;
        uint64 changedAt;
        uint64 tradedAt;
        bool frozen;
    }

    struct PositionState {
        int128 size;
        int128 cost;
        int256 fundingIndex;
    }

    /// @dev Enough gas for the costliest account: 256 positions (two cold slots each, and their ids' slots) and
    ///      a balance per collateral token, with room for the memory they take.
    uint256 public constant ACCOUNT_GAS = 2_000_000;

    // MarginAccounts' storage, slot by slot (immutables and constants take none)
    mapping(bytes32 => bytes32) private _roles; // AccessControl._roles
    address private _oracle;
    bool private _withdrawalsPaused;
    Listing[] internal _instruments;
    mapping(uint32 instrumentId => Funding) internal _funding;
    address[] internal _collateralTokens;
    mapping(address token => bool) internal _isCollateral;
    address[] internal _accounts;
    mapping(address account => AccountMeta) internal _meta;
    mapping(address account => mapping(address token => uint256)) internal _balanceOf;
    mapping(address account => int256) internal _cashOf;
    mapping(address account => mapping(uint32 instrumentId => PositionState)) internal _positions;
    uint256 private _feesCollected;
    int256 private _fundingPool;
    uint64 private _feeRate;
    uint64 private _lastFundingBlock;
    mapping(address account => uint32[]) internal _held;

    /// @notice Return the accounts of indices [`offset`, `offset` + `limit`), packed (see the contract's notes).
    /// @param offset First account index.
    /// @param limit Maximum number of accounts.
    function accountsPacked(uint256 offset, uint256 limit) external view returns (bytes memory) {
        return _read(false, 0, offset, limit);
    }

    /// @notice Return the accounts among indices [`offset`, `offset` + `limit`) whose positions or balances
    ///         changed after block `sinceBlock`, packed, with `blockhash(sinceBlock)` (as `accountsChangedSince`).
    /// @param sinceBlock The block of the reader's book.
    /// @param offset First account index scanned.
    /// @param limit Maximum number of account indices scanned.
    function accountsChangedSincePacked(uint256 sinceBlock, uint256 offset, uint256 limit)
        external
        view
        returns (bytes memory)
    {
        return _read(true, sinceBlock, offset, limit);
    }

    /// @notice Return the given accounts, packed, with `blockhash(sinceBlock)`: `next` is the index in `accounts` of
    ///         the first one not read, `total` the ledger's number of accounts. An address the ledger does not know
    ///         comes back empty (no cash, position or balance).
    /// @param sinceBlock The block of the reader's book.
    /// @param accounts The accounts to read, e.g. those its logs after `sinceBlock` name.
    function accountsOfPacked(uint256 sinceBlock, address[] calldata accounts)
        external
        view
        returns (bytes memory out)
    {
        address[] memory tokens = _collateralTokens;
        uint256 ptr;
        assembly {
            out := mload(0x40)
            ptr := add(out, 128)
        }
        uint256 i = 0;
        for (; i < accounts.length; ++i) {
            if (i > 0 && gasleft() < ACCOUNT_GAS) break;
            ptr = _putAccount(ptr, accounts[i], tokens);
        }
        bytes32 sinceHash = blockhash(sinceBlock);
        uint256 total = _accounts.length;
        assembly {
            mstore(add(out, 32), sinceHash)
            mstore(add(out, 64), i)
            mstore(add(out, 96), total)
            mstore(out, sub(ptr, add(out, 32)))
            mstore(0x40, and(add(ptr, 31), not(31)))
        }
    }

    function _read(bool changedOnly, uint256 sinceBlock, uint256 offset, uint256 limit)
        internal
        view
        returns (bytes memory out)
    {
        uint256 total = _accounts.length;
        uint256 start = offset < total ? offset : total;
        uint256 end = total - start < limit ? total : start + limit;
        address[] memory tokens = _collateralTokens;
        bytes32 sinceHash = changedOnly ? blockhash(sinceBlock) : bytes32(0);
        uint256 ptr;
        assembly {
            out := mload(0x40)
            ptr := add(out, 128) // length word, then the header's three words
        }
        uint256 i = start;
        for (; i < end; ++i) {
            if (i > start && gasleft() < ACCOUNT_GAS) break;
            address account = _accounts[i];
            if (changedOnly && _meta[account].changedAt <= sinceBlock) continue;
            ptr = _putAccount(ptr, account, tokens);
        }
        assembly {
            mstore(add(out, 32), sinceHash)
            mstore(add(out, 64), i)
            mstore(add(out, 96), total)
            mstore(out, sub(ptr, add(out, 32)))
            mstore(0x40, and(add(ptr, 31), not(31)))
        }
    }

    /// @dev Write one account's record at `ptr` (see the contract's notes); return the position after it.
    function _putAccount(uint256 ptr, address account, address[] memory tokens) private view returns (uint256) {
        ptr = _put(ptr, uint160(account), 20);
        ptr = _put(ptr, uint256(_cashOf[account]), 32);
        uint32[] storage held = _held[account];
        uint256 count = held.length;
        ptr = _put(ptr, count, 2);
        mapping(uint32 => PositionState) storage positions = _positions[account];
        for (uint256 j = 0; j < count; ++j) {
            uint32 id = held[j];
            PositionState storage p = positions[id];
            uint256 first;
            uint256 fundingIndex;
            assembly {
                first := sload(p.slot)
                fundingIndex := sload(add(p.slot, 1))
            }
            ptr = _put(ptr, id, 4);
            ptr = _put(ptr, first, 32);
            ptr = _put(ptr, fundingIndex, 32);
        }
        uint256 countAt = ptr;
        ptr += 2;
        count = 0;
        mapping(address => uint256) storage balances = _balanceOf[account];
        for (uint256 j = 0; j < tokens.length; ++j) {
            uint256 amount = balances[tokens[j]];
            if (amount == 0) continue;
            ptr = _put(ptr, uint160(tokens[j]), 20);
            ptr = _put(ptr, amount, 32);
            ++count;
        }
        assembly {
            // two bytes in place: a whole-word write would erase the balances just written
            mstore8(countAt, shr(8, count))
            mstore8(add(countAt, 1), count)
        }
        return ptr;
    }

    /// @dev Write the low `size` bytes of `value` at `ptr` (the 32 - `size` bytes after them are zeroed, and
    ///      written again by what follows); return the position after them. The output grows past the free memory
    ///      pointer, which `_read` moves once at the end: nothing in its loop allocates memory.
    function _put(uint256 ptr, uint256 value, uint256 size) private pure returns (uint256) {
        assembly {
            mstore(ptr, shl(mul(8, sub(32, size)), value))
        }
        return ptr + size;
    }
}
