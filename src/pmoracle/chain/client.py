"""A synchronous JSON-RPC client over web3.py's HTTPProvider with fallback endpoints, run from trio in threads.

Why synchronous: web3.py's async providers do not run under trio (they need asyncio), and ``AsyncHTTPProvider``
hangs after a cancelled request. The node therefore calls this client through :func:`run_sync`, which runs it in
a worker thread (``trio.to_thread.run_sync``) under ``trio.fail_after``. Requests go straight to the provider's
``make_request``: no middleware (web3's default stack costs three HTTP requests per call; measured ~3.6 ms against
~1.4 ms per call without it) and only chain-id-like answers are cached (block answers are never cached, so a reorg
is always seen).

Fallback: every request tries the endpoints in preference order. A transport failure (connection refused, timeout,
bad HTTP status, not JSON-RPC) or a transient JSON-RPC error (rate limit, internal error) is retried on the same
endpoint with exponential backoff, then the next endpoint is used; an endpoint that does not know the requested
block (it lags) is skipped at once. Any other JSON-RPC error (a revert, invalid params) is the node's answer and is
raised. Each failure is counted by (endpoint, kind) for metrics. :meth:`ChainClient.head` asks every endpoint and
demotes one that lags, so a stale endpoint is never trusted silently.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import requests
import trio
from eth_abi import decode as abi_decode
from eth_utils import get_abi_output_types
from web3 import HTTPProvider

from pmoracle.chain.blocks import BlockHeader, parse_block_header
from pmoracle.chain.errors import (
    ChainCallTimeoutError,
    ChainError,
    ContractError,
    RpcError,
    RpcResponseError,
    RpcTransportError,
    RpcUnavailableError,
)
from pmoracle.chain.revert import ErrorDecoder, revert_data_of

T = TypeVar("T")

BlockId = int | str | bytes  # a number, a tag ("latest", "pending", ...) or a 32-byte block hash (EIP-1898)

# JSON-RPC error codes that say "try again / elsewhere" rather than "this request is wrong".
TRANSIENT_RPC_CODES = frozenset({-32603, -32005, -32002, 429})
# Messages of nodes that do not (yet) have the requested block or state: a lagging or pruned endpoint.
LAGGING_MESSAGES = ("header not found", "unknown block", "block not found", "blockoutofrange", "missing trie node")
# Only answers that never change for an endpoint are cached; blocks are not (they change under a reorg).
CACHEABLE_METHODS = {"eth_chainId", "net_version", "web3_clientVersion"}


def encode_block_id(block: BlockId, *, for_call: bool = False) -> Any:
    """Return the JSON-RPC form of a block identifier (a hash pins an ``eth_call`` to that exact block, EIP-1898)."""
    if isinstance(block, bool):
        raise ChainError(f"invalid block identifier {block!r}")
    if isinstance(block, int):
        if block < 0:
            raise ChainError(f"negative block number {block}")
        return hex(block)
    if isinstance(block, bytes):
        if len(block) != 32:
            raise ChainError(f"a block hash has 32 bytes, got {len(block)}")
        if not for_call:
            raise ChainError("use get_block(hash) for a block by hash")
        return {"blockHash": "0x" + block.hex(), "requireCanonical": True}
    if block in ("latest", "pending", "earliest", "safe", "finalized"):
        return block
    raise ChainError(f"invalid block identifier {block!r}")


class ChainClient:
    """JSON-RPC over a list of fallback HTTP endpoints; thread-safe, blocking (call it from trio via run_sync)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        timeout: float = 5.0,
        retries: int = 2,
        backoff: float = 0.05,
        max_lag_blocks: int = 2,
        error_decoder: ErrorDecoder | None = None,
    ) -> None:
        """Create a client; no request is made until the first call.

        Args:
            urls: HTTP JSON-RPC endpoints in preference order (at least one).
            timeout: seconds per HTTP request.
            retries: extra attempts on one endpoint after a transport or transient failure.
            backoff: seconds before the first retry; doubled on each further retry.
            max_lag_blocks: how far behind the best endpoint one may be before ``head`` demotes it.
            error_decoder: decodes revert data into ``ContractError`` (the artifacts' custom errors by default).

        Errors:
            ChainError when no URL is given or a setting is out of range.
        """
        if not urls:
            raise ChainError("at least one RPC URL is required")
        if timeout <= 0 or retries < 0 or backoff < 0 or max_lag_blocks < 0:
            raise ChainError(f"invalid client settings: {timeout=} {retries=} {backoff=} {max_lag_blocks=}")
        self.urls = tuple(urls)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_lag_blocks = max_lag_blocks
        self._decoder = error_decoder
        self._providers = {
            url: HTTPProvider(
                url,
                request_kwargs={"timeout": timeout},
                exception_retry_configuration=None,  # retries are ours, across endpoints
                cache_allowed_requests=True,
                cacheable_requests=CACHEABLE_METHODS,
            )
            for url in self.urls
        }
        self._lock = threading.Lock()
        self._preferred: list[str] = list(self.urls)
        self._chain_id: int | None = None
        self._verified: set[str] = set()
        self._errors: dict[tuple[str, str], int] = {}
        self._requests: dict[str, int] = {}
        self._lag: dict[str, int] = {}

    # ----- metrics -----

    def error_counts(self) -> dict[tuple[str, str], int]:
        """Return the number of failed requests by (endpoint, kind) since the client was created."""
        with self._lock:
            return dict(self._errors)

    def request_counts(self) -> dict[str, int]:
        """Return the number of requests sent by endpoint."""
        with self._lock:
            return dict(self._requests)

    def endpoint_lag(self) -> dict[str, int]:
        """Return how many blocks each endpoint was behind the best one at the last ``head()``."""
        with self._lock:
            return dict(self._lag)

    def preferred_endpoints(self) -> tuple[str, ...]:
        """Return the endpoints in the order requests try them now."""
        with self._lock:
            return tuple(self._preferred)

    def _count_error(self, endpoint: str, kind: str) -> None:
        with self._lock:
            self._errors[(endpoint, kind)] = self._errors.get((endpoint, kind), 0) + 1

    @property
    def error_decoder(self) -> ErrorDecoder:
        """Return the decoder of revert data (built from the contract artifacts on first use)."""
        if self._decoder is None:
            self._decoder = ErrorDecoder.from_artifacts()
        return self._decoder

    # ----- raw requests -----

    def _request_once(self, endpoint: str, method: str, params: list[Any]) -> Any:
        with self._lock:
            self._requests[endpoint] = self._requests.get(endpoint, 0) + 1
        try:
            response = self._providers[endpoint].make_request(method, params)
        except requests.Timeout as exc:
            raise RpcTransportError(endpoint, method, "timeout", str(exc)) from exc
        except requests.ConnectionError as exc:
            raise RpcTransportError(endpoint, method, "connection", str(exc)) from exc
        except requests.HTTPError as exc:
            raise RpcTransportError(endpoint, method, "http", str(exc)) from exc
        except (requests.RequestException, ValueError) as exc:
            raise RpcTransportError(endpoint, method, "malformed", str(exc)) from exc
        if not isinstance(response, dict):
            raise RpcTransportError(endpoint, method, "malformed", f"not a JSON-RPC response: {response!r}")
        error = response.get("error")
        if error is not None:
            if not isinstance(error, dict):
                raise RpcTransportError(endpoint, method, "malformed", f"error is not an object: {error!r}")
            code = error.get("code")
            raise RpcResponseError(
                endpoint, method, code if isinstance(code, int) else 0, str(error.get("message", "")), error.get("data")
            )
        if "result" not in response:
            raise RpcTransportError(endpoint, method, "malformed", f"no result in {response!r}")
        return response["result"]

    def _verify_chain(self, endpoint: str) -> None:
        """Check that an endpoint serves the same chain as the first one that answered (once per endpoint)."""
        if endpoint in self._verified:
            return
        chain_id = int(self._request_once(endpoint, "eth_chainId", []), 16)
        with self._lock:
            if self._chain_id is None:
                self._chain_id = chain_id
            expected = self._chain_id
        if chain_id != expected:
            raise RpcTransportError(endpoint, "eth_chainId", "wrong-chain", f"chain id {chain_id} != {expected}")
        self._verified.add(endpoint)

    def _demote(self, endpoint: str) -> None:
        with self._lock:
            self._preferred = [u for u in self._preferred if u != endpoint] + [endpoint]

    @staticmethod
    def _classify(error: RpcError) -> str | None:
        """Return the failure kind that justifies a retry or failover, or None for a final answer."""
        if isinstance(error, RpcTransportError):
            return error.kind
        if isinstance(error, RpcResponseError):
            message = error.rpc_message.lower()
            if any(m in message for m in LAGGING_MESSAGES):
                return "lagging"
            if error.code in TRANSIENT_RPC_CODES and revert_data_of(error) is None:
                return "transient"
        return None

    def request(self, method: str, params: Sequence[Any] = ()) -> Any:
        """Send one JSON-RPC request with retries and endpoint failover; return its ``result``.

        Args:
            method: the JSON-RPC method.
            params: its parameters (already in JSON-RPC form).

        Returns:
            The ``result`` member of the first successful answer.

        Errors:
            RpcResponseError for a node's final JSON-RPC error (e.g. a revert, invalid params);
            RpcUnavailableError when every endpoint failed with transport, transient or lagging errors.
        """
        failures: list[RpcError] = []
        for endpoint in self.preferred_endpoints():
            for attempt in range(self.retries + 1):
                try:
                    self._verify_chain(endpoint)
                    return self._request_once(endpoint, method, list(params))
                except RpcError as exc:
                    kind = self._classify(exc)
                    if kind is None:
                        raise
                    self._count_error(endpoint, kind)
                    failures.append(exc)
                    if kind == "wrong-chain":
                        self._demote(endpoint)
                    if kind in ("lagging", "wrong-chain"):
                        break
                    if attempt == self.retries:
                        # out of retries: later requests try the other endpoints first (circuit breaking), so a
                        # failing primary costs one failover, not a timeout on every call
                        if len(self.urls) > 1:
                            self._demote(endpoint)
                        break
                    time.sleep(self.backoff * 2**attempt)
        raise RpcUnavailableError(method, tuple(failures))

    # ----- typed reads -----

    @property
    def chain_id(self) -> int:
        """Return the chain id (asked once, then cached)."""
        if self._chain_id is None:
            self.request("eth_chainId")
        if self._chain_id is None:  # pragma: no cover - request() verified an endpoint or raised
            raise ChainError("chain id unknown")
        return self._chain_id

    def block_number(self) -> int:
        """Return the latest block number of the preferred endpoint."""
        return int(self.request("eth_blockNumber"), 16)

    def get_block(self, block: BlockId = "latest") -> BlockHeader:
        """Return the header of a block by number, tag or 32-byte hash.

        Errors:
            ChainError when the block does not exist on any endpoint; RpcError as for ``request``.
        """
        if isinstance(block, bytes):
            if len(block) != 32:
                raise ChainError(f"a block hash has 32 bytes, got {len(block)}")
            raw = self.request("eth_getBlockByHash", ["0x" + block.hex(), False])
        else:
            raw = self.request("eth_getBlockByNumber", [encode_block_id(block), False])
        if raw is None:
            raise ChainError(f"block {block!r} not found")
        return parse_block_header(raw)

    def head(self) -> BlockHeader:
        """Ask every endpoint for its latest block; return the highest and demote endpoints that lag.

        An endpoint more than ``max_lag_blocks`` behind the best answer (or failing) moves behind the up-to-date
        ones in the preference order and is counted as ``lagging``, so later requests do not read stale state; one
        at the same height with another hash is counted as ``fork``. Calls that must see exactly block B pin it by
        hash (``call_raw(..., block=hash)``), which an endpoint on another fork refuses.

        Errors:
            RpcUnavailableError when no endpoint answers.
        """
        answers: dict[str, BlockHeader] = {}
        failures: list[RpcError] = []
        for endpoint in self.urls:
            try:
                self._verify_chain(endpoint)
                raw = self._request_once(endpoint, "eth_getBlockByNumber", ["latest", False])
                answers[endpoint] = parse_block_header(raw)
            except RpcError as exc:
                self._count_error(endpoint, self._classify(exc) or "error")
                failures.append(exc)
            except ChainError:
                self._count_error(endpoint, "malformed")
        if not answers:
            raise RpcUnavailableError("eth_getBlockByNumber", tuple(failures))
        best = max(answers.values(), key=lambda h: h.number)
        lag = {url: best.number - answers[url].number if url in answers else -1 for url in self.urls}
        for url, behind in lag.items():
            if behind > self.max_lag_blocks:
                self._count_error(url, "lagging")
            elif behind == 0 and answers[url].hash != best.hash:
                self._count_error(url, "fork")  # same height, other block: a reorg in flight or a forked node
        fresh = [u for u in self.urls if 0 <= lag[u] <= self.max_lag_blocks]
        stale = [u for u in self.urls if u not in fresh]
        with self._lock:
            self._lag = lag
            self._preferred = fresh + stale
        return best

    def call_raw(
        self,
        to: str,
        data: bytes,
        block: BlockId = "latest",
        *,
        sender: str | None = None,
        value: int = 0,
        code_override: bytes | None = None,
    ) -> bytes:
        """Run ``eth_call`` pinned to a block (a number, a tag, or a hash for an exact pin); return the output.

        ``code_override`` runs that runtime code at ``to`` instead of its own, over its own storage (the state
        override set of geth and anvil, ``{to: {"code": ...}}``); a node without state overrides refuses the call
        with an ``RpcResponseError``.

        Errors:
            ContractError when the call reverts (decoded custom error); RpcError as for ``request``.
        """
        tx: dict[str, Any] = {"to": to, "data": "0x" + data.hex()}
        if sender is not None:
            tx["from"] = sender
        if value:
            tx["value"] = hex(value)
        params: list[Any] = [tx, encode_block_id(block, for_call=True)]
        if code_override is not None:
            params.append({to: {"code": "0x" + code_override.hex()}})
        try:
            result = self.request("eth_call", params)
        except RpcResponseError as exc:
            revert = revert_data_of(exc)
            if revert is None:
                raise
            raise self.error_decoder.decode(revert) from exc
        return bytes.fromhex(result[2:])

    def call(self, contract_fn: Any, block: BlockId = "latest") -> Any:
        """Call a bound web3 contract function (``contract.functions.f(args)``) at a block; return its outputs.

        Returns:
            The decoded output (a single value for one output, else a tuple); structs are tuples in ABI order.

        Errors:
            ContractError on a revert; RpcError as for ``request``; ChainError if the output does not decode.
        """
        data = bytes.fromhex(contract_fn._encode_transaction_data()[2:])
        output = self.call_raw(contract_fn.address, data, block)
        types = get_abi_output_types(contract_fn.abi)
        try:
            values = abi_decode(types, output)
        except Exception as exc:  # eth_abi raises several unrelated types for short or malformed data
            raise ChainError(f"cannot decode {contract_fn.abi.get('name')} output {output.hex()!r}: {exc}") from exc
        return values[0] if len(values) == 1 else tuple(values)


async def run_sync(fn: Callable[..., T], *args: Any, timeout: float) -> T:
    """Run a blocking chain call in a worker thread from trio, bounded by ``timeout`` seconds.

    The thread is abandoned on timeout or cancellation (the HTTP request itself ends at the client's own timeout),
    which is why blocking calls are used at all: web3's async providers don't run under trio.

    Errors:
        ChainCallTimeoutError when the call does not finish in time; whatever ``fn`` raises otherwise.
    """
    name = getattr(fn, "__qualname__", repr(fn))
    try:
        with trio.fail_after(timeout):
            # trio-typing's stubs of trio 0.21 predate abandon_on_cancel (see pyproject.toml's [tool.mypy])
            return await trio.to_thread.run_sync(
                functools.partial(fn, *args),
                abandon_on_cancel=True,  # type: ignore[call-arg]
            )
    except trio.TooSlowError as exc:
        raise ChainCallTimeoutError(name, timeout) from exc


__all__ = ["BlockId", "ChainClient", "ContractError", "encode_block_id", "run_sync"]
