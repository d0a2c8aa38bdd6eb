"""Errors of the chain shell: RPC transport and node failures, reverts, fee and receipt limits, bad chain data."""

from __future__ import annotations

from pmoracle.errors import PmoracleError


class ChainError(PmoracleError):
    """Raised when reading from or writing to the chain fails."""


class RpcError(ChainError):
    """Raised when a JSON-RPC request fails; names the endpoint and the method."""

    def __init__(self, endpoint: str, method: str, message: str) -> None:
        super().__init__(f"{method} on {endpoint}: {message}")
        self.endpoint = endpoint
        self.method = method
        self.message = message


class RpcTransportError(RpcError):
    """Raised when an endpoint cannot be reached, times out, or answers with something that is not JSON-RPC."""

    def __init__(self, endpoint: str, method: str, kind: str, message: str) -> None:
        super().__init__(endpoint, method, f"{kind}: {message}")
        self.kind = kind


class RpcResponseError(RpcError):
    """Raised when a node answers a request with a JSON-RPC error object (code, message, data)."""

    def __init__(self, endpoint: str, method: str, code: int, message: str, data: object = None) -> None:
        super().__init__(endpoint, method, f"JSON-RPC error {code}: {message}")
        self.code = code
        self.rpc_message = message
        self.data = data


class RpcUnavailableError(RpcError):
    """Raised when every endpoint failed a request after its retries; carries each endpoint's last error."""

    def __init__(self, method: str, errors: tuple[RpcError, ...]) -> None:
        detail = "; ".join(str(e) for e in errors)
        super().__init__(",".join(e.endpoint for e in errors), method, f"all endpoints failed: {detail}")
        self.errors = errors


class ChainCallTimeoutError(ChainError):
    """Raised when a blocking chain call run from trio does not finish within its timeout."""

    def __init__(self, call: str, timeout: float) -> None:
        super().__init__(f"{call} did not finish within {timeout} s")
        self.call = call
        self.timeout = timeout


class ContractError(ChainError):
    """Raised when a contract call or transaction reverts; carries the decoded custom error's name and arguments.

    ``name`` is the Solidity error name (``Error`` for ``require`` strings, ``Panic`` for panics, ``UnknownError``
    when the selector matches no known ABI, ``EmptyRevert`` when the revert carried no data); ``data`` the raw revert
    bytes.
    """

    def __init__(self, name: str, args: tuple[object, ...], data: bytes, *, tx_hash: bytes | None = None) -> None:
        super().__init__(f"{name}({', '.join(repr(a) for a in args)})")
        self.name = name
        self.error_args = args
        self.data = data
        self.tx_hash = tx_hash


class FeeCapExceededError(ChainError):
    """Raised when the fee a transaction needs exceeds the configured maximum fee per gas (refused, not overpaid)."""

    def __init__(self, max_fee_per_gas: int, cap: int) -> None:
        super().__init__(f"max fee per gas {max_fee_per_gas} wei exceeds the cap {cap} wei")
        self.max_fee_per_gas = max_fee_per_gas
        self.cap = cap


class TransactionTimeoutError(ChainError):
    """Raised when a sent transaction has no receipt within the timeout (it may still be pending)."""

    def __init__(self, tx_hash: bytes, nonce: int, timeout: float) -> None:
        super().__init__(f"transaction 0x{tx_hash.hex()} (nonce {nonce}) not mined within {timeout} s")
        self.tx_hash = tx_hash
        self.nonce = nonce
        self.timeout = timeout


class TransactionFailedError(ChainError):
    """Raised when a mined transaction has status 0 and replaying it does not reveal a revert reason."""

    def __init__(self, tx_hash: bytes, block_number: int) -> None:
        super().__init__(f"transaction 0x{tx_hash.hex()} failed in block {block_number}")
        self.tx_hash = tx_hash
        self.block_number = block_number


class SnapshotError(ChainError):
    """Raised when chain data read for a snapshot is malformed; names the field and the offending value."""

    def __init__(self, field: str, value: object, message: str) -> None:
        super().__init__(f"{field}: {message} (got {value!r})")
        self.field = field
        self.value = value
        self.message = message
