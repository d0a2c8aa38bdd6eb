"""The node's HTTP API: ``/metrics``, ``/health``, ``GET /v1/margin/{account}``, ``/v1/leaves/{block}``,
``/v1/policy/{block}`` and ``/v1/risk-arrays/{block}``, on h11 over trio sockets.

Requests are untrusted: each is bounded in size and time, answered with a JSON error when malformed, and no
request (or provider failure) can stop the server. Routes:

- ``GET /metrics``: Prometheus text format of the node's registry.
- ``GET /health``: JSON health; 200 when ok, 503 when degraded (load balancers read the status code).
- ``GET /v1/margin/{account}``: the account's leaf in the latest attested round with its Merkle proof; 404 when
  the account is not in that round or no round is attested yet; 400 for a malformed address.
- ``GET /v1/leaves/{block|latest}``: every leaf of a kept round (the node's recent rounds and the round it last saw
  attested), in the tree's order, with the root they rebuild, in one compact response (``RoundLeaves``); 404
  naming the round when the node does not keep it; 400 for a malformed round.
- ``GET /v1/policy/{block|latest}``: the adaptive policy's states of a kept round.
- ``GET /v1/risk-arrays/{block|latest}``: the risk-array rows the node committed to in a kept round (instrument,
  collateral, cover and scenario rows; the format ``dispute prove --rows`` reads); 404 naming the round when the
  node does not keep it; 400 for a malformed round.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import h11
import trio
from eth_utils import is_checksum_address, is_hex_address, to_canonical_address, to_checksum_address
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from pmoracle.consensus.commitments import RiskRow
from pmoracle.consensus.merkle import AccountLeaf
from pmoracle.node.metrics import NodeMetrics
from pmoracle.trio_types import TaskStatus

log = logging.getLogger(__name__)

SERVER_NAME = b"pmoracle"
_DRAIN_LIMIT = 1 << 20  # bytes read and discarded after an error response before closing
_BUSY_BODY = b'{"error":"too many connections"}\n'
# Sent without reading the request: the server is at its connection limit.
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\n"
    b"content-length: %d\r\n\r\n%s" % (len(_BUSY_BODY), _BUSY_BODY)
)


@dataclass(frozen=True, slots=True)
class HealthReport:
    """What ``/health`` returns."""

    head_block: int | None  # latest block seen, None before the first
    last_attested_round: int | None  # anchor block of the latest attested round, None before the first
    peers: int  # connected libp2p peers
    lag: int | None  # head_block - last_attested_round, in blocks
    status: str  # "ok" | "degraded"
    reasons: tuple[str, ...] = ()  # why degraded

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body."""
        return {
            "status": self.status,
            "headBlock": self.head_block,
            "lastAttestedRound": self.last_attested_round,
            "peers": self.peers,
            "lag": self.lag,
            "reasons": list(self.reasons),
        }


def assess_health(
    head_block: int | None,
    last_attested_round: int | None,
    peers: int,
    *,
    min_peers: int,
    max_lag_blocks: int,
    balance_wei: int | None = None,
    min_balance_wei: int = 0,
) -> HealthReport:
    """Return the health report: degraded when something keeps the node from doing its job.

    That is: no head seen, fewer than ``min_peers`` peers, no attested round or one more than ``max_lag_blocks``
    behind the head, or the transmitter's last known balance (``balance_wei``; None: not read yet) below
    ``min_balance_wei``.
    """
    reasons = []
    lag = None
    if head_block is None:
        reasons.append("no chain head seen")
    if peers < min_peers:
        reasons.append(f"{peers} peers < {min_peers}")
    if last_attested_round is None:
        reasons.append("no attested round yet")
    elif head_block is not None:
        lag = head_block - last_attested_round
        if lag > max_lag_blocks:
            reasons.append(f"last attested round is {lag} blocks behind the head (> {max_lag_blocks})")
    if balance_wei is not None and balance_wei < min_balance_wei:
        reasons.append(f"transmitter balance {balance_wei / 10**18:.6g} ETH < {min_balance_wei / 10**18:.6g} ETH")
    return HealthReport(head_block, last_attested_round, peers, lag, "degraded" if reasons else "ok", tuple(reasons))


@dataclass(frozen=True, slots=True)
class MarginProof:
    """One account's attested values with the proof against the attested accounts root."""

    leaf: AccountLeaf
    block_number: int  # anchor block of the attested round
    accounts_root: bytes
    proof: tuple[bytes, ...]

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body; amounts are the on-chain integers (USD, 18 decimals) as decimal strings."""
        return {
            "account": to_checksum_address(self.leaf.account),
            "initialMargin": str(self.leaf.initial_margin),
            "maintenanceMargin": str(self.leaf.maintenance_margin),
            "equity": str(self.leaf.equity),
            "decimals": 18,
            "blockNumber": self.block_number,
            "accountsRoot": "0x" + self.accounts_root.hex(),
            "proof": ["0x" + node.hex() for node in self.proof],
        }


def row_to_json(row: RiskRow) -> dict[str, Any]:
    """Return a risk-array row as the JSON object a rows file holds (key as 0x-hex, integers as numbers)."""
    return {"key": hex(row.key), "base": row.base, "addon": row.addon, "values": list(row.values)}


@dataclass(frozen=True, slots=True)
class RiskArrays:
    """The risk-array rows a node committed to in one round (its report's ``riskArraysRoot``), all of them."""

    block_number: int  # anchor block of the round
    risk_arrays_root: bytes  # the root the rows rebuild
    rows: tuple[RiskRow, ...]  # sorted by key

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body: a rows document (``{"rows": [...]}``) with the round and the root."""
        return {
            "blockNumber": self.block_number,
            "riskArraysRoot": "0x" + self.risk_arrays_root.hex(),
            "rows": [row_to_json(row) for row in self.rows],
        }


@dataclass(frozen=True, slots=True)
class RoundLeaves:
    """Every leaf of one round's tree as the node computed it (or, for the round it attested, the attested one)."""

    block_number: int  # anchor block of the round
    accounts_root: bytes  # the root the leaves rebuild
    leaves: tuple[AccountLeaf, ...]  # in the tree's order (ascending account)

    def to_json(self) -> dict[str, Any]:
        """Return the JSON body: the round, the root, the leaf count, and each leaf as a compact array
        ``[account (0x-hex, lower case), initialMargin, maintenanceMargin, equity]``, amounts as decimal strings (USD,
        18 decimals). ``dispute check/prove --leaves`` read it as it is."""
        return {
            "blockNumber": self.block_number,
            "accountsRoot": "0x" + self.accounts_root.hex(),
            "count": len(self.leaves),
            "fields": list(LEAF_FIELDS),
            "leaves": [
                ["0x" + leaf.account.hex(), str(leaf.initial_margin), str(leaf.maintenance_margin), str(leaf.equity)]
                for leaf in self.leaves
            ],
        }


LEAF_FIELDS = ("account", "initialMargin", "maintenanceMargin", "equity")  # a /v1/leaves leaf array, in order

HealthProvider = Callable[[], HealthReport | Awaitable[HealthReport]]
MarginProvider = Callable[[bytes], MarginProof | Awaitable[MarginProof | None] | None]
# The adaptive policy's published JSON at an anchor block (None: the latest round), or None when not kept.
PolicyProvider = Callable[[int | None], dict[str, Any] | None]
# The risk-array rows of the round at an anchor block (None: the latest kept), or None when not kept.
RiskArraysProvider = Callable[[int | None], RiskArrays | None]
# Every leaf of the round at an anchor block (None: the latest kept), or None when not kept.
LeavesProvider = Callable[[int | None], RoundLeaves | None]


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Bounds that keep one client from exhausting the server."""

    max_request_bytes: int = 8192  # request line + headers (and any body) of one request
    request_timeout: float = 10.0  # seconds to receive one whole request, and to send its response
    idle_timeout: float = 30.0  # seconds a keep-alive connection may wait for its next request
    max_connections: int = 128  # beyond this, new connections get 503 and are closed
    # A response gets request_timeout to go out, or longer for a large one: this many bytes per second at least
    # (a 100k-account /v1/leaves body, 12.8 MB, gets 49 s).
    min_send_rate: int = 256 * 1024
    leaves_bodies_cached: int = 2  # encoded /v1/leaves bodies kept (12.8 MB each at 100k accounts)


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    body: bytes
    content_type: bytes = b"application/json"
    extra_headers: tuple[tuple[bytes, bytes], ...] = ()


def _encode_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode() + b"\n"


def _json(status: int, obj: Any) -> _Response:
    return _Response(status, _encode_json(obj))


def _error(status: int, message: str) -> _Response:
    return _json(status, {"error": message})


async def _call(provider: Callable[..., Any], *args: Any) -> Any:
    result = provider(*args)
    if inspect.isawaitable(result):
        result = await result
    return result


class _Router:
    def __init__(
        self,
        registry: CollectorRegistry,
        health: HealthProvider,
        margin: MarginProvider,
        policy: PolicyProvider | None = None,
        risk_arrays: RiskArraysProvider | None = None,
        leaves: LeavesProvider | None = None,
        leaves_bodies_cached: int = 2,
    ) -> None:
        self.registry = registry
        self.health = health
        self.margin = margin
        self.policy = policy
        self.risk_arrays = risk_arrays
        self.leaves = leaves
        self._leaves_bodies: dict[tuple[int, bytes], bytes] = {}  # (block, root) -> encoded body, oldest first
        self._leaves_bodies_cached = leaves_bodies_cached
        self._leaves_encoding = trio.Lock()

    async def respond(self, method: bytes, target: bytes) -> _Response:
        if method not in (b"GET", b"HEAD"):
            return _Response(405, b'{"error":"method not allowed"}\n', extra_headers=((b"allow", b"GET, HEAD"),))
        path = target.split(b"?", 1)[0].decode("ascii", errors="replace")
        try:
            if path == "/metrics":
                return _Response(200, generate_latest(self.registry), CONTENT_TYPE_LATEST.encode())
            if path == "/health":
                report: HealthReport = await _call(self.health)
                return _json(200 if report.status == "ok" else 503, report.to_json())
            if path.startswith("/v1/margin/"):
                return await self._margin(path.removeprefix("/v1/margin/"))
            if path.startswith("/v1/policy/") and self.policy is not None:
                return _round_response(self.policy, path.removeprefix("/v1/policy/"), "policy")
            if path.startswith("/v1/risk-arrays/") and self.risk_arrays is not None:
                return _round_response(self._risk_arrays_json, path.removeprefix("/v1/risk-arrays/"), "risk arrays")
            if path.startswith("/v1/leaves/") and self.leaves is not None:
                return await self._leaves(path.removeprefix("/v1/leaves/"))
        except Exception:
            # A provider bug must cost one request, not the server.
            log.exception("API handler failed", extra={"path": path[:200]})
            return _error(500, "internal error")
        return _error(404, "not found")

    def _risk_arrays_json(self, block: int | None) -> dict[str, Any] | None:
        kept = None if self.risk_arrays is None else self.risk_arrays(block)
        return None if kept is None else kept.to_json()

    async def _leaves(self, block_text: str) -> _Response:
        """Answer ``/v1/leaves/{block|latest}``: the encoded body is cached per (round, root), and encoded in a
        worker thread (100k leaves take a while), so neither a large book nor repeated requests hold the node's
        event loop."""
        assert self.leaves is not None
        block = _parse_round(block_text)
        if isinstance(block, _Response):
            return block
        kept: RoundLeaves | None = await _call(self.leaves, block)
        if kept is None:
            return _not_kept(block, "leaves")
        key = (kept.block_number, kept.accounts_root)
        async with self._leaves_encoding:  # concurrent first requests wait for one encoding
            body = self._leaves_bodies.get(key)
            if body is None:
                body = await trio.to_thread.run_sync(lambda: _encode_json(kept.to_json()))
                self._leaves_bodies[key] = body
                while len(self._leaves_bodies) > self._leaves_bodies_cached:
                    del self._leaves_bodies[next(iter(self._leaves_bodies))]
        return _Response(200, body)

    async def _margin(self, account_text: str) -> _Response:
        if not _is_account_text(account_text):
            return _error(
                400, "malformed account address: expected 0x followed by 40 hex digits (EIP-55 if mixed case)"
            )
        proof: MarginProof | None = await _call(self.margin, to_canonical_address(account_text))
        if proof is None:
            return _error(404, "account not in the latest attested round, or no round attested yet")
        return _json(200, proof.to_json())


def _parse_round(block_text: str) -> int | _Response | None:
    """Return the anchor block a ``/v1/{what}/{block|latest}`` path names (None: latest), or the 400 response."""
    if block_text != "latest" and not (block_text.isascii() and block_text.isdigit() and len(block_text) < 20):
        return _error(400, "malformed round: expected an anchor block number or latest")
    return None if block_text == "latest" else int(block_text)


def _not_kept(block: int | None, what: str) -> _Response:
    which = "the latest round" if block is None else f"round {block}"
    return _error(404, f"no {what} kept for {which} (not computed, or too old)")


def _round_response(kept: Callable[[int | None], dict[str, Any] | None], block_text: str, what: str) -> _Response:
    """Answer a ``/v1/{what}/{block|latest}`` route with the JSON ``kept`` returns for the round (None: not kept)."""
    block = _parse_round(block_text)
    if isinstance(block, _Response):
        return block
    body = kept(block)
    return _not_kept(block, what) if body is None else _json(200, body)


def _is_account_text(text: str) -> bool:
    """Check if ``text`` is 0x + 40 hex digits, all lower, all upper, or mixed with a valid EIP-55 checksum."""
    if not (text.startswith("0x") and len(text) == 42 and is_hex_address(text)):
        return False
    digits = text[2:]
    return digits == digits.lower() or digits == digits.upper() or is_checksum_address(text)


async def _send(stream: trio.SocketStream, conn: h11.Connection, event: Any) -> None:
    data = conn.send(event)
    if data:
        await stream.send_all(data)


async def _send_response(
    stream: trio.SocketStream, conn: h11.Connection, response: _Response, *, head: bool = False
) -> None:
    headers = [
        (b"content-type", response.content_type),
        (b"content-length", str(len(response.body)).encode()),
        (b"server", SERVER_NAME),
        (b"cache-control", b"no-store"),
        *response.extra_headers,
    ]
    await _send(stream, conn, h11.Response(status_code=response.status, headers=headers))
    if response.body and not head:  # h11 frames a HEAD response as empty; only its headers go out
        await _send(stream, conn, h11.Data(data=response.body))
    await _send(stream, conn, h11.EndOfMessage())


async def _read_request(
    stream: trio.SocketStream, conn: h11.Connection, limits: ApiLimits
) -> tuple[h11.Request, int] | _Response | None:
    """Return (request, body size), an error response to send, or None when the client went away."""
    request: h11.Request | None = None
    body_bytes = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(4096)
            conn.receive_data(data)  # b"" marks EOF; h11 turns it into ConnectionClosed or an error
            continue
        if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None
        if isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.Data):
            body_bytes += len(event.data)
            if body_bytes > limits.max_request_bytes:
                return _error(413, "request body too large")
        elif isinstance(event, h11.EndOfMessage) and request is not None:
            return request, body_bytes


async def _close_gently(stream: trio.SocketStream) -> None:
    """Half-close and drain what the client is still sending, so the kernel does not reset the connection
    (which can destroy the error response before the client reads it)."""
    await stream.send_eof()
    drained = 0
    with trio.move_on_after(1.0):
        while drained < _DRAIN_LIMIT and (chunk := await stream.receive_some(65536)):
            drained += len(chunk)


async def _serve_connection(stream: trio.SocketStream, router: _Router, limits: ApiLimits) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_request_bytes)
    first = True
    while True:
        timeout = limits.request_timeout if first else limits.idle_timeout
        first = False
        outcome: tuple[h11.Request, int] | _Response | None = None
        with trio.move_on_after(timeout) as scope:
            try:
                outcome = await _read_request(stream, conn, limits)
            except h11.RemoteProtocolError as exc:
                status = exc.error_status_hint
                outcome = _error(status, "request header too large" if status == 431 else "malformed HTTP request")
        if scope.cancelled_caught:
            if conn.their_state is h11.IDLE and not conn.trailing_data[0]:
                return  # an idle keep-alive connection (or one that never spoke): close quietly
            outcome = _error(408, "request timeout")
        if outcome is None:
            return
        if isinstance(outcome, _Response):
            if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with trio.move_on_after(limits.request_timeout):
                    await _send_response(stream, conn, outcome)
                    await _close_gently(stream)
            return  # after a framing error the stream position is unknown: close
        request, _ = outcome
        response = await router.respond(request.method, request.target)
        send_timeout = max(limits.request_timeout, len(response.body) / limits.min_send_rate)
        with trio.move_on_after(send_timeout) as send_scope:
            await _send_response(stream, conn, response, head=request.method == b"HEAD")
        if send_scope.cancelled_caught or conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
            return
        conn.start_next_cycle()


async def run_api(
    host: str,
    port: int,
    *,
    metrics: NodeMetrics | CollectorRegistry,
    health: HealthProvider,
    margin: MarginProvider,
    policy: PolicyProvider | None = None,
    risk_arrays: RiskArraysProvider | None = None,
    leaves: LeavesProvider | None = None,
    limits: ApiLimits = ApiLimits(),
    task_status: TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the API until cancelled.

    Args:
        host: address to bind (e.g. "127.0.0.1").
        port: TCP port; 0 picks a free one.
        metrics: the node's metrics (or a bare registry) exported on /metrics.
        health: returns the current :class:`HealthReport` (sync or async).
        margin: returns the latest attested :class:`MarginProof` of a 20-byte account, or None (sync or async).
        policy: returns the adaptive policy's JSON at an anchor block (None: latest) for /v1/policy/{block|latest},
            or None when not kept; without it the route answers 404.
        risk_arrays: returns the :class:`RiskArrays` of a round (None: the latest kept) for
            /v1/risk-arrays/{block|latest}, or None when not kept; without it the route answers 404.
        leaves: returns the :class:`RoundLeaves` of a round (None: the latest kept) for /v1/leaves/{block|latest},
            or None when not kept; without it the route answers 404 (``not found``, as any unknown path).
        limits: request size, timeouts and connection bounds.
        task_status: receives the bound port once the server accepts connections.

    Errors:
        OSError when the address cannot be bound (reported before ``task_status.started``).
    """
    registry = metrics.registry if isinstance(metrics, NodeMetrics) else metrics
    router = _Router(registry, health, margin, policy, risk_arrays, leaves, limits.leaves_bodies_cached)
    listeners = await trio.open_tcp_listeners(port, host=host)
    if port == 0 and len(listeners) > 1:
        # With port 0 each resolved address would get its own random port; serve the first only.
        for extra in listeners[1:]:
            await extra.aclose()
        listeners = listeners[:1]
    bound_port = listeners[0].socket.getsockname()[1]
    limiter = trio.CapacityLimiter(limits.max_connections)

    async def handle(stream: trio.SocketStream) -> None:
        try:
            try:
                limiter.acquire_nowait()
            except trio.WouldBlock:
                with trio.move_on_after(1.0):
                    await stream.send_all(_BUSY_RESPONSE)
                    await _close_gently(stream)
                return
            try:
                await _serve_connection(stream, router, limits)
            finally:
                limiter.release()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away mid-response
        except Exception:
            log.exception("API connection failed")
        finally:
            with trio.move_on_after(1.0):
                await stream.aclose()

    log.info("API listening", extra={"host": host, "port": bound_port})
    task_status.started(bound_port)
    await trio.serve_listeners(handle, listeners)
