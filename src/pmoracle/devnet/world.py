"""The simulated protocol around a devnet: a seeded market, realistic accounts, a feeder and a trader.

This is devnet-only tooling: it drives the protocol's contracts the way a matching engine, a price feeder and
traders would, so that the solver nodes have a moving book to attest. Every simulated account has a private key
(derived from the seed) and signs its orders; the house (every trade's counterparty) signs too, and the admin
matches them on the Exchange at the feeder's mark. Deposits and matches go through the devnet-only DevnetSeeder
(contracts/devnet/), hundreds per transaction; tokens are minted and approved by writing the mock tokens' storage,
calldata and order signatures are computed here, transactions go in JSON-RPC batches of at most 1 MiB and are mined
in as few blocks as the gas limit allows (docs/performance-devnet.md, "Seeding"). Nothing here is used by a
production node.
"""

from __future__ import annotations

import functools
import json
import math
import random
import re
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from coincurve import PrivateKey
from eth_abi import encode as abi_encode
from eth_utils import (
    function_abi_to_4byte_selector,
    get_abi_input_types,
    keccak,
    to_checksum_address,
)
from web3 import Web3

from pmoracle.chain.contracts import CONTRACT_NAMES, load_artifact
from pmoracle.chain.deploy import Deployment
from pmoracle.chain.orders import Order, exchange_domain_separator
from pmoracle.chain.revert import ErrorDecoder
from pmoracle.consensus.hashing import keccak as keccak_bytes
from pmoracle.errors import PmoracleError
from pmoracle.risk.inputs import PRICE_SCALE, SIZE_SCALE, WAD, InstrumentKind

DAY = 86400
TX_GAS = 3_000_000  # explicit gas: skips one estimate per simulated transaction
ORDER_LIFETIME = 3_600  # seconds a simulated order stays valid
RECEIPT_TIMEOUT = 120.0  # seconds for anvil to mine a batch of simulated transactions
BLOCK_GAS_LIMIT = 6_000_000_000
LOG_SPAN = 4  # blocks per eth_getLogs while confirming a batch (up to 2,000 transactions each)
HTTP_BATCH_BYTES = 1 << 20  # JSON-RPC body per HTTP request: anvil refuses bodies over 2 MiB (axum's default limit)
SEED_BATCH = 250  # deposits or matches per DevnetSeeder transaction (a match's calldata is 864 bytes: 216 kB)
DEPOSIT_GAS = 200_000  # gas reserved per deposit through the seeder (82,000-122,000 used, measured)
MATCH_GAS = 400_000  # gas reserved per match through the seeder (235,000-248,000 used on average, measured)
SEEDER_TX_GAS = 1_000_000  # gas reserved per seeder transaction besides its items (calldata: 16 gas a byte)
MATCHER_ROLE = keccak(b"MATCHER_ROLE")


class WorldError(PmoracleError):
    """Raised when a simulated protocol transaction fails on the devnet chain."""


def encode_symbol(symbol: str) -> bytes:
    """Return a symbol as the left-aligned bytes32 the contracts use."""
    return symbol.encode().ljust(32, b"\x00")


def compute_expiries(now: int) -> list[int]:
    """Return option expiries (08:00 UTC Fridays) after ``now``: a weekly, then about 1, 3 and 6 months out."""
    expiries = []
    for horizon_days in (3, 30, 90, 180):
        day = (now + horizon_days * DAY) // DAY
        while (day + 3) % 7 != 4:  # 1970-01-01 was a Thursday; (day + 3) % 7 == 4 is a Friday
            day += 1
        expiries.append(day * DAY + 8 * 3600)
    return expiries


@dataclass(frozen=True, slots=True)
class UnderlyingSpec:
    """How the devnet market of one underlying looks: price, ATM vol, skew, strike grid."""

    symbol: str
    token: str  # the collateral token that tracks it
    price: float
    atm_vol: float
    rho: float
    strike_step: float


UNDERLYINGS = (
    UnderlyingSpec("BTC", "WBTC", 95_000.0, 0.55, -0.35, 5_000.0),
    UnderlyingSpec("ETH", "WETH", 3_000.0, 0.70, -0.25, 100.0),
)
HAIRCUTS = {"USDC": 0.0, "WBTC": 0.10, "WETH": 0.15}
TOKEN_DECIMALS = {"USDC": 6, "WBTC": 8, "WETH": 18}


@functools.cache
def _function(contract: str, name: str) -> tuple[bytes, tuple[str, ...]]:
    """Return the selector and ABI input types of a contract's (not overloaded) function."""
    for entry in load_artifact(contract).abi:
        if entry.get("type") == "function" and entry.get("name") == name:
            return function_abi_to_4byte_selector(entry), tuple(get_abi_input_types(entry))  # type: ignore[arg-type]
    raise WorldError(f"{contract} has no function {name!r}")


def encode_call(contract: str, name: str, *args: Any) -> str:
    """Return the 0x-hex calldata of ``contract.name(*args)``.

    web3's ``encode_abi`` looks the function up in the ABI on every call (~6 ms, 37 of the 64 s it took to seed
    1,000 accounts); this caches the selector and types, packs the words of functions whose arguments are all
    one-word values itself, and leaves the others to eth_abi.
    """
    selector, types = _function(contract, name)
    if len(args) == len(types) and all(t in _WORD_TYPES for t in types):
        return "0x" + (selector + b"".join(_encode_word(t, a) for t, a in zip(types, args, strict=True))).hex()
    return "0x" + (selector + abi_encode(list(types), list(args))).hex()


_WORD_TYPES = frozenset(
    ["address", "bool", "bytes32"] + [f"uint{b}" for b in range(8, 257, 8)] + [f"int{b}" for b in range(8, 257, 8)]
)


def _encode_word(abi_type: str, value: Any) -> bytes:
    """Return one ABI word (what eth_abi's encoder gives for these types), checking the value's range."""
    if abi_type == "address":
        try:
            raw = bytes.fromhex(value[2:]) if isinstance(value, str) else bytes(value)
        except (TypeError, ValueError):
            raw = b""
        if len(raw) != 20:
            raise WorldError(f"not a 20-byte address: {value!r}")
        return raw.rjust(32, b"\0")
    if abi_type == "bytes32":
        if not isinstance(value, bytes) or len(value) > 32:
            raise WorldError(f"not a bytes32 value: {value!r}")
        return value.ljust(32, b"\0")
    if abi_type == "bool":
        return int(bool(value)).to_bytes(32, "big")
    signed = abi_type.startswith("int")
    bits = int(abi_type[3 if signed else 4 :])
    low, high = (-(1 << (bits - 1)), 1 << (bits - 1)) if signed else (0, 1 << bits)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value < high:
        raise WorldError(f"{value!r} is not a {abi_type}")
    return (value % (1 << 256)).to_bytes(32, "big")  # two's complement of a negative int


_ORDER_TYPES = ("address", "uint32", "bool", "uint128", "uint128", "uint64", "uint64")  # Exchange.Order
_MATCH_HEAD = 18 * 32  # a DevnetSeeder.Match's head: two orders (7 words each), two offsets, size, price


def encode_deposits(deposits: Sequence[tuple[str, str, int]]) -> str:
    """Return the calldata of ``DevnetSeeder.deposit`` for (account, token, amount) deposits.

    Packed here rather than by eth_abi, which took 23 of the 73 s of a profiled 10,000-account seeding (its
    checksummed-address validation above all); a test compares both.
    """
    selector, _ = _function("DevnetSeeder", "deposit")
    words = [selector, _encode_word("uint256", 32), _encode_word("uint256", len(deposits))]
    for account, token, amount in deposits:
        words += [_encode_word("address", account), _encode_word("address", token), _encode_word("uint256", amount)]
    return "0x" + b"".join(words).hex()


def encode_matches(matches: Sequence[tuple[Order, bytes, Order, bytes, int, int]]) -> str:
    """Return the calldata of ``DevnetSeeder.matchOrders`` for (buy, buy signature, sell, sell signature, size,
    price) matches, packed here like ``encode_deposits``."""
    selector, _ = _function("DevnetSeeder", "matchOrders")
    elements = []
    for buy, buy_signature, sell, sell_signature, size, price in matches:
        buy_tail, sell_tail = _encode_bytes(buy_signature), _encode_bytes(sell_signature)
        elements.append(
            _encode_order(buy) + _encode_word("uint256", _MATCH_HEAD)
            + _encode_order(sell) + _encode_word("uint256", _MATCH_HEAD + len(buy_tail))
            + _encode_word("uint128", size) + _encode_word("uint128", price) + buy_tail + sell_tail
        )  # fmt: skip
    offsets, at = [], 32 * len(elements)  # each element's offset from the first offset word
    for element in elements:
        offsets.append(_encode_word("uint256", at))
        at += len(element)
    head = selector + _encode_word("uint256", 32) + _encode_word("uint256", len(elements))
    return "0x" + (head + b"".join(offsets) + b"".join(elements)).hex()


def _encode_order(order: Order) -> bytes:
    values = (
        order.account,
        order.instrument_id,
        order.is_buy,
        order.size,
        order.limit_price,
        order.nonce,
        order.expiry,
    )
    return b"".join(_encode_word(t, v) for t, v in zip(_ORDER_TYPES, values, strict=True))


def _encode_bytes(value: bytes) -> bytes:
    return len(value).to_bytes(32, "big") + value + bytes(-len(value) % 32)


def _block_chunks(txs: Sequence[tuple[str, list[Any]]], limit: int) -> list[Sequence[tuple[str, list[Any]]]]:
    """Return ``txs`` cut, in order, into chunks of at most ``limit`` calls whose transactions' gas fits one block."""
    chunks: list[Sequence[tuple[str, list[Any]]]] = []
    start, gas = 0, 0
    for i, (method, params) in enumerate(txs):
        need = int(params[0]["gas"], 16) if method == "eth_sendTransaction" else 0
        if i > start and (i - start == limit or gas + need > BLOCK_GAS_LIMIT):
            chunks.append(txs[start:i])
            start, gas = i, 0
        gas += need
    if start < len(txs):
        chunks.append(txs[start:])
    return chunks


def checksum_address(raw: bytes) -> str:
    """Return the EIP-55 checksummed hex of a 20-byte address: ``eth_utils.to_checksum_address`` with the project's
    faster keccak (seeding 100,000 accounts derives 100,000 addresses)."""
    hex_address = raw.hex()
    digest = keccak_bytes(hex_address.encode()).hex()
    return "0x" + "".join(c.upper() if int(d, 16) >= 8 else c for c, d in zip(hex_address, digest, strict=False))


def _http_batches(body: Sequence[dict[str, Any]]) -> list[bytes]:
    """Return ``body``'s JSON-RPC calls as HTTP request bodies of at most HTTP_BATCH_BYTES (a larger call alone)."""
    requests: list[bytes] = []
    part: list[bytes] = []
    size = 2
    for call in body:
        item = json.dumps(call).encode()
        if part and size + len(item) + 1 > HTTP_BATCH_BYTES:
            requests.append(b"[" + b",".join(part) + b"]")
            part, size = [], 2
        part.append(item)
        size += len(item) + 1
    if part:
        requests.append(b"[" + b",".join(part) + b"]")
    return requests


def compute_option_mark(is_call: bool, forward: float, strike: float, years: float, vol: float) -> float:
    """Return the undiscounted Black-76 price (USD per unit) the feeder marks an option at; intrinsic at expiry."""
    if years <= 0.0 or vol <= 0.0:
        return max(forward - strike, 0.0) if is_call else max(strike - forward, 0.0)
    s = vol * math.sqrt(years)
    d1 = (math.log(forward / strike) + 0.5 * s * s) / s
    if is_call:
        return forward * _normal_cdf(d1) - strike * _normal_cdf(d1 - s)
    return strike * _normal_cdf(s - d1) - forward * _normal_cdf(-d1)


def _normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def compute_svi(atm_vol: float, rho: float, years: float) -> tuple[int, int, int, int, int]:
    """Return WAD SVI raw parameters (a, b, rho, m, sigma) with the given ATM vol and skew at tenor ``years``."""
    w_atm = atm_vol * atm_vol * years
    sigma = 0.15
    b = 0.3 * atm_vol * years**0.5
    a = w_atm - b * sigma  # w(0) = a + b * sigma when m = 0
    return (int(a * WAD), int(b * WAD), int(rho * WAD), 0, int(sigma * WAD))


@dataclass
class Instrument:
    """An instrument listed on the devnet."""

    id: int
    underlying: str
    kind: InstrumentKind
    expiry: int
    strike: int  # PRICE_SCALE


@dataclass
class World:
    """The simulated protocol state the devnet drives (prices, instruments, accounts)."""

    rpc_url: str
    deployment: Deployment
    admin: str  # admin, feeder and matcher of the devnet contracts
    seed: int = 1
    prices: dict[str, float] = field(default_factory=dict)
    vols: dict[str, float] = field(default_factory=dict)
    expiries: list[int] = field(default_factory=list)
    instruments: list[Instrument] = field(default_factory=list)
    accounts: list[str] = field(default_factory=list)
    house: str = ""
    trades: int = 0
    feed_updates: int = 0
    keys: dict[str, bytes] = field(default_factory=dict, repr=False)  # checksum address -> private key
    now: int = 0  # chain time of the latest feed update
    frozen: set[str] = field(default_factory=set)  # accounts under liquidation auction: no trades
    seeder: str = ""  # the DevnetSeeder (deployed on first use, holds the Exchange's MATCHER_ROLE)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)
        self._w3 = Web3()
        self._abi = {
            name: self._w3.eth.contract(abi=load_artifact(name).abi)
            for name in ("MarketFeeds", "MarginAccounts", "Exchange", "MockERC20")
        }
        self._id = 0
        self._depositor_code = ""  # DevnetDepositor's runtime code, installed at accounts while they deposit
        self._nonces: dict[str, int] = {}
        devnet_abis = (load_artifact(name).abi for name in (*CONTRACT_NAMES, "DevnetSeeder", "DevnetDepositor"))
        self._errors = ErrorDecoder(devnet_abis)
        self._order_nonce = 0
        self._signers: dict[bytes, PrivateKey] = {}

    # --- JSON-RPC -------------------------------------------------------------------------------------------------

    def rpc(self, method: str, params: list[Any]) -> Any:
        """Call one JSON-RPC method; raise WorldError on an error answer."""
        return self.batch([(method, params)])[0]

    def batch(self, calls: Sequence[tuple[str, list[Any]]]) -> list[Any]:
        """Send JSON-RPC calls as one batch; return their results in order."""
        if not calls:
            return []
        body: list[dict[str, Any]] = []
        for method, params in calls:
            self._id += 1
            body.append({"jsonrpc": "2.0", "id": self._id, "method": method, "params": params})
        replies: dict[int, Any] = {}
        for request_body in _http_batches(body):
            request = urllib.request.Request(self.rpc_url, request_body, {"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                answer = json.loads(response.read())
            if not isinstance(answer, list):  # the whole batch refused (anvil: an error object, e.g. too large)
                raise WorldError(f"batch of {len(body)} {body[0]['method']} refused: {answer}")
            replies.update((r["id"], r) for r in answer)
        results = []
        for item in body:
            reply = replies[item["id"]]
            if "error" in reply:
                raise WorldError(f"{item['method']}: {reply['error']}")
            results.append(reply["result"])
        return results

    def _tx(self, sender: str, contract: str, fn: str, *args: Any) -> tuple[str, list[Any]]:
        data = encode_call("MockERC20" if contract in TOKEN_DECIMALS else contract, fn, *args)
        to = self.deployment.contracts[contract]
        return ("eth_sendTransaction", [{"from": sender, "to": to, "data": data, "gas": hex(TX_GAS)}])

    def _seeder_txs(
        self, encode: Callable[[Sequence[Any]], str], items: Sequence[Any], gas: int
    ) -> list[tuple[str, list[Any]]]:
        """Return the DevnetSeeder transactions applying ``items`` in order, SEED_BATCH each (``encode``:
        ``encode_deposits`` or ``encode_matches``)."""
        seeder = self._ensure_seeder()
        txs = []
        for i in range(0, len(items), SEED_BATCH):
            part = items[i : i + SEED_BATCH]
            data = encode(part)
            tx = {"from": self.admin, "to": seeder, "data": data, "gas": hex(SEEDER_TX_GAS + gas * len(part))}
            txs.append(("eth_sendTransaction", [tx]))
        return txs

    def _ensure_seeder(self) -> str:
        """Deploy the DevnetSeeder and grant it the Exchange's MATCHER_ROLE, once; return its address.

        The devnet world is the only place that deploys it: the protocol's deployment (chain/deploy.py) never does.
        """
        if self.seeder:
            return self.seeder
        artifact = load_artifact("DevnetSeeder")
        exchange = self.deployment.contracts["Exchange"]
        code = artifact.bytecode + abi_encode(["address", "address"], [self.admin, exchange])
        create = {"from": self.admin, "data": "0x" + code.hex(), "gas": hex(TX_GAS)}
        receipt = self._wait_receipt(self.rpc("eth_sendTransaction", [create]))
        if receipt["status"] != "0x1" or not receipt.get("contractAddress"):
            raise WorldError(f"DevnetSeeder deployment failed: {receipt['transactionHash']}")
        seeder = to_checksum_address(receipt["contractAddress"])
        grant = encode_call("Exchange", "grantRole", MATCHER_ROLE, seeder)
        tx = {"from": self.admin, "to": exchange, "data": grant, "gas": hex(TX_GAS)}
        receipt = self._wait_receipt(self.rpc("eth_sendTransaction", [tx]))
        if receipt["status"] != "0x1":
            reason = self._revert_reason(receipt["transactionHash"])
            raise WorldError(f"Exchange.grantRole(MATCHER_ROLE, seeder) failed: {reason}")
        depositor = self.rpc("eth_call", [{"to": seeder, "data": encode_call("DevnetSeeder", "depositor")}, "latest"])
        self._depositor_code = self.rpc("eth_getCode", ["0x" + depositor[-40:], "latest"])
        self.seeder = seeder
        self._nonces.pop(self.admin, None)  # sent outside send_all: read the admin's nonce again
        return seeder

    def _wait_receipt(self, tx_hash: str) -> dict[str, Any]:
        """Return a transaction's receipt, mining a block if automine left it pending."""
        deadline = time.monotonic() + RECEIPT_TIMEOUT
        while (receipt := self.rpc("eth_getTransactionReceipt", [tx_hash])) is None:
            if time.monotonic() > deadline:
                raise WorldError(f"{tx_hash} not mined within {RECEIPT_TIMEOUT:.0f} s")
            self.rpc("evm_mine", [])
        result: dict[str, Any] = receipt
        return result

    def send_all(self, txs: Sequence[tuple[str, list[Any]]], *, chunk: int = 2_000) -> list[str]:
        """Send simulated transactions, mine them in as few blocks as the gas limit allows, check each succeeded;
        return their hashes.

        Automine is paused while they are sent. Under automine anvil 1.7.1 queues one mining job per received
        transaction and works through that queue long after the transactions themselves were mined in bulk:
        2,000 transactions sent in batches left ~2,000 empty blocks behind, mined at 200-400 a second, and a
        node's transaction sent meanwhile waited behind them. Paused, each chunk of at most ``chunk`` transactions
        and one block's gas (2,000 plain transactions, 59 seeder batches of matches) is mined in one block as soon
        as it is sent, and the head then moves only when something is sent or mined. Few, large blocks: anvil's
        work per block grows with the state (an empty block took 0.14 s after seeding 4,000 accounts, 0.75-0.93 s
        after 10,000); and one block per call: mining a 100,000-account seeding's 640 match batches at once took
        anvil more than the 60 s an RPC waits.

        Success is read from the mined blocks' logs (every transaction the world sends emits one), and receipts
        are asked only for the few hashes without a log: anvil 1.7.1 answers ``eth_getTransactionReceipt`` in
        5-25 ms, growing with the chain (measured: 500 receipts 13 s after 4,000 transactions), and one
        ``eth_getLogs`` over those 4,000 transactions in 0.2 s. Nonces are counted here, each sender's read once.
        """
        self._assign_nonces(txs)
        first_block = int(self.rpc("eth_blockNumber", []), 16) + 1
        hashes: list[str] = []
        self.rpc("evm_setAutomine", [False])
        try:
            for part in _block_chunks(txs, chunk):
                # batch() splits the HTTP bodies: anvil refuses large ones ("Invalid request" for 2,000 matches)
                results = self.batch(part)
                sent = [h for (method, _), h in zip(part, results, strict=True) if method == "eth_sendTransaction"]
                hashes += sent
                # mined as each chunk arrives: anvil's pool slows down with its size (10,000 accounts seeded in
                # 291 s with whole batches in the pool, in 127 s chunk by chunk; measured under a load of 4-7)
                if sent:
                    self.rpc("anvil_mine", ["0x1"])
            # the pool may also hold a node's transaction; only ours are waited for
            targets = sorted({params[0]["to"] for method, params in txs if method == "eth_sendTransaction"})
            self._confirm(hashes, first_block, targets)
        finally:
            self.rpc("evm_setAutomine", [True])
        return hashes

    def _assign_nonces(self, txs: Sequence[tuple[str, list[Any]]]) -> None:
        """Number each sender's transactions from its next nonce (read once per sender, then counted here).

        Explicit nonces: anvil handles a batch's transactions concurrently, so one sender's would collide.
        """
        senders = sorted({tx[1][0]["from"] for tx in txs if tx[0] == "eth_sendTransaction"} - self._nonces.keys())
        for i in range(0, len(senders), 1_000):
            part = senders[i : i + 1_000]
            counts = self.batch([("eth_getTransactionCount", [s, "pending"]) for s in part])
            self._nonces.update({s: int(c, 16) for s, c in zip(part, counts, strict=True)})
        for method, params in txs:
            if method == "eth_sendTransaction":
                params[0]["nonce"] = hex(self._nonces[params[0]["from"]])
                self._nonces[params[0]["from"]] += 1

    def _confirm(self, hashes: Sequence[str], first_block: int, targets: Sequence[str]) -> None:
        """Wait until every transaction of ``hashes`` (sent after block ``first_block`` - 1) is mined and succeeded.

        Only the logs of the contracts the transactions called (``targets``) are read: a seeder transaction's
        matches emit about a thousand logs from the Exchange and the ledger, the seeder one.

        Errors:
            WorldError naming the first reverted transaction and its error, or the count not mined in time.
        """
        pending = {h.lower() for h in hashes}
        deadline = time.monotonic() + RECEIPT_TIMEOUT
        while pending:
            head = int(self.rpc("eth_blockNumber", []), 16)
            for start in range(first_block, head + 1, LOG_SPAN):
                span = {"fromBlock": hex(start), "toBlock": hex(min(start + LOG_SPAN - 1, head)), "address": targets}
                pending -= {log["transactionHash"].lower() for log in self.rpc("eth_getLogs", [span])}
            first_block = max(first_block, head + 1)
            unseen = sorted(pending)  # no log (yet): a receipt says whether it reverted, or is not mined
            for i in range(0, len(unseen), 200):
                part = unseen[i : i + 200]
                receipts = self.batch([("eth_getTransactionReceipt", [h]) for h in part])
                failed = [h for h, r in zip(part, receipts, strict=True) if r is not None and r["status"] != "0x1"]
                if failed:
                    reason = self._revert_reason(failed[0])
                    raise WorldError(f"{len(failed)} simulated transactions reverted, first {failed[0]}: {reason}")
                pending -= {h for h, r in zip(part, receipts, strict=True) if r is not None}
            if pending and time.monotonic() > deadline:
                raise WorldError(f"{len(pending)} simulated transactions not mined within {RECEIPT_TIMEOUT:.0f} s")
            if pending:
                self.rpc("evm_mine", [])

    def simulate(self, txs: Sequence[tuple[str, list[Any]]]) -> list[str | None]:
        """Return, per transaction, None if it would succeed now, else the name of the custom error it reverts with."""
        calls = [("eth_call", [params[0], "latest"]) for _, params in txs]
        outcomes: list[str | None] = []
        for method, params in calls:
            try:
                self.rpc(method, params)
                outcomes.append(None)
            except WorldError as exc:
                outcomes.append(self._error_name(str(exc)))
        return outcomes

    def send_tolerant(self, txs: Sequence[tuple[str, list[Any]]]) -> list[str | None]:
        """Send transactions that may revert (mined in as few blocks as possible); return None per success, else
        the name of the custom error (read back by replaying the call on the block before)."""
        hashes: list[str] = []
        self.rpc("evm_setAutomine", [False])
        try:
            for tx in txs:
                sender = tx[1][0]["from"]
                if sender not in self._nonces:
                    self._nonces[sender] = int(self.rpc("eth_getTransactionCount", [sender, "pending"]), 16)
                tx[1][0]["nonce"] = hex(self._nonces[sender])
                self._nonces[sender] += 1
                hashes.append(self.rpc(tx[0], tx[1]))
            self.rpc("evm_mine", [])
        finally:
            self.rpc("evm_setAutomine", [True])
        outcomes: list[str | None] = []
        for tx, h in zip(txs, hashes, strict=True):
            receipt = self.rpc("eth_getTransactionReceipt", [h])
            if receipt is not None and receipt["status"] == "0x1":
                outcomes.append(None)
                continue
            block = hex(int(receipt["blockNumber"], 16) - 1) if receipt is not None else "latest"
            call = {k: v for k, v in tx[1][0].items() if k != "nonce"}
            try:
                self.rpc("eth_call", [call, block])
                outcomes.append("reverted")
            except WorldError as exc:
                outcomes.append(self._error_name(str(exc)))
        return outcomes

    def _revert_reason(self, tx_hash: str) -> str:
        """Return the custom error a mined, reverted transaction raised (replayed on the block before it)."""
        tx = self.rpc("eth_getTransactionByHash", [tx_hash])
        call = {"from": tx["from"], "to": tx["to"], "data": tx["input"], "gas": tx["gas"]}
        try:
            self.rpc("eth_call", [call, hex(int(tx["blockNumber"], 16) - 1)])
        except WorldError as exc:
            names = {v.lower(): k for k, v in self.deployment.contracts.items()}
            return f"{names.get(tx['to'].lower(), tx['to'])} {tx['input'][:10]}: {self._error_name(str(exc))}"
        names = {v.lower(): k for k, v in self.deployment.contracts.items()}
        target = f"{names.get(tx['to'].lower(), tx['to'])} selector {tx['input'][:10]}"
        return f"{target} reverted (it succeeds on the block before: an earlier transaction of its block broke it)"

    def _error_name(self, message: str) -> str:
        """Return the custom error named by an eth_call error message (its selector decoded), or 'reverted'."""
        match = re.search(r"0x[0-9a-fA-F]{8,}", message)
        if match is not None:
            data = bytes.fromhex(match.group(0)[2:])
            spec = self._errors.spec(data[:4])
            if spec is not None:
                return spec.name
        return "reverted"

    def cash_of(self, accounts: Sequence[str]) -> list[int]:
        """Return the accounts' cash in whole USD (rounded down)."""
        ledger = self.deployment.contracts["MarginAccounts"]
        calls = [
            ("eth_call", [{"to": ledger, "data": encode_call("MarginAccounts", "cashOf", a)}, "latest"])
            for a in accounts
        ]
        return [int.from_bytes(bytes.fromhex(r[2:]), "big", signed=True) // 10**18 for r in self.batch(calls)]

    @property
    def ledger_events(self) -> Any:
        """Return the MarginAccounts events (for decoding logs)."""
        return self._abi["MarginAccounts"].events

    # --- setup ----------------------------------------------------------------------------------------------------

    def setup(self, accounts: int, expiries: Sequence[int] | None = None) -> None:
        """Seed the market, list instruments and open ``accounts`` accounts with collateral and positions.

        ``expiries`` (default: a weekly, then about 1, 3 and 6 months out) are listed with futures and options.
        """
        self.rpc("anvil_autoImpersonateAccount", [True])
        # every simulated transaction reserves TX_GAS: a block takes a whole chunk of send_all (2,000 of them)
        self.rpc("evm_setBlockGasLimit", [hex(BLOCK_GAS_LIMIT)])
        now = int(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        self.expiries = list(expiries) if expiries is not None else compute_expiries(now)
        for spec in UNDERLYINGS:
            self.prices[spec.symbol] = spec.price
            self.vols[spec.symbol] = spec.atm_vol
        self.send_all(self._feed_txs(now))
        self._list_instruments()
        self.send_all([self._marks_tx()])
        self._ensure_seeder()
        self.house = self._account_address(0)
        self._open([self.house], {"USDC": 10**10, "WBTC": 1_000, "WETH": 20_000})
        users = [self._account_address(i + 1) for i in range(accounts)]
        self.accounts = users
        self._open_users(users)

    def _account_address(self, index: int) -> str:
        """Return simulated account ``index``'s address; its key (derived from the seed) signs its orders."""
        key = keccak_bytes(f"pmoracle-devnet-account-{self.seed}-{index}".encode())
        signer = PrivateKey(key)
        raw = keccak_bytes(signer.public_key.format(compressed=False)[1:])[12:]
        address = checksum_address(raw)
        self.keys[address] = key
        self._signers[raw] = signer  # kept: seeding signs its orders next
        return address

    def _feed_txs(self, now: int) -> list[tuple[str, list[Any]]]:
        self.now = now
        txs = []
        for spec in UNDERLYINGS:
            symbol = encode_symbol(spec.symbol)
            price = int(self.prices[spec.symbol] * PRICE_SCALE)
            txs.append(self._tx(self.admin, "MarketFeeds", "setIndex", symbol, price, 0))
            for expiry in self.expiries:
                if expiry <= now:
                    continue  # expired: its smile is no longer quoted (settlement removes it)
                years = max(expiry - now, DAY) / (365 * DAY)
                txs.append(
                    self._tx(
                        self.admin, "MarketFeeds", "setSmile", symbol, expiry,
                        *compute_svi(self.vols[spec.symbol], spec.rho, years),
                    )
                )  # fmt: skip
        for token, haircut in HAIRCUTS.items():
            underlying = next((s.symbol for s in UNDERLYINGS if s.token == token), None)
            usd = self.prices[underlying] if underlying else 1.0
            txs.append(
                self._tx(
                    self.admin, "MarketFeeds", "setAssetPrice", self.deployment.contracts[token],
                    int(usd * PRICE_SCALE), int(haircut * WAD),
                    encode_symbol(underlying) if underlying else bytes(32),
                )
            )  # fmt: skip
        self.feed_updates += 1
        return txs

    def _list_instruments(self) -> None:
        specs: list[tuple[str, InstrumentKind, int, int]] = []
        for spec in UNDERLYINGS:
            specs.append((spec.symbol, InstrumentKind.PERPETUAL, 0, 0))
            specs += self._expiry_specs(spec, self.expiries[1:], futures_only=True)
            specs += self._expiry_specs(spec, self.expiries, options_only=True)
        self._list(specs)

    def _expiry_specs(
        self, spec: UnderlyingSpec, expiries: Sequence[int], *, futures_only: bool = False, options_only: bool = False
    ) -> list[tuple[str, InstrumentKind, int, int]]:
        """Return a future and ten options (five strikes around the money, calls and puts) per expiry."""
        specs: list[tuple[str, InstrumentKind, int, int]] = []
        atm = round(self.prices.get(spec.symbol, spec.price) / spec.strike_step) * spec.strike_step
        for expiry in expiries:
            if not options_only:
                specs.append((spec.symbol, InstrumentKind.FUTURE, expiry, 0))
            if not futures_only:
                for step in (-2, -1, 0, 1, 2):
                    strike = int((atm + step * spec.strike_step) * PRICE_SCALE)
                    specs.append((spec.symbol, InstrumentKind.CALL, expiry, strike))
                    specs.append((spec.symbol, InstrumentKind.PUT, expiry, strike))
        return specs

    def _list(self, specs: Sequence[tuple[str, InstrumentKind, int, int]]) -> list[Instrument]:
        first = len(self.instruments) + 1
        txs = [
            self._tx(self.admin, "MarginAccounts", "listInstrument", encode_symbol(u), int(k), e, s)
            for u, k, e, s in specs
        ]
        self.send_all(txs)
        listed = [Instrument(first + i, u, k, e, s) for i, (u, k, e, s) in enumerate(specs)]
        self.instruments += listed
        return listed

    def list_expiries(self, expiries: Sequence[int]) -> list[Instrument]:
        """List a future and options around the current price for each new expiry; quote their smiles and marks."""
        new = [e for e in expiries if e not in self.expiries]
        if not new:
            return []
        self.expiries = sorted([*self.expiries, *new])
        listed = self._list([s for spec in UNDERLYINGS for s in self._expiry_specs(spec, new)])
        self.send_all([*self._feed_txs(self.now), self._marks_tx()])
        return listed

    def _open(self, accounts: Sequence[str], collateral: dict[str, float]) -> None:
        """Fund ``accounts`` with ether for gas and deposit ``collateral`` (whole tokens) for each into the ledger."""
        self._open_groups([(accounts, collateral)])

    def _open_groups(self, groups: Sequence[tuple[Sequence[str], dict[str, float]]]) -> None:
        """Fund each group's accounts with ether for gas and deposit its collateral (whole tokens) for each.

        The tokens are minted and approved by writing the mock tokens' storage (``_fund``), and each account makes
        its deposits itself (msg.sender) through the seeder: DevnetDepositor's code is installed at the accounts for
        the deposits and removed after them (an account with code would be an ERC-1271 signer to the Exchange). The
        ledger's book, and every token balance after the deposits, are those of minting, approving and depositing
        by transaction (a test pins the seeded book).
        """
        accounts = list(dict.fromkeys(a for group, _ in groups for a in group))
        self._ensure_seeder()
        for i in range(0, len(accounts), 2_000):
            self.batch([("anvil_setBalance", [a, hex(10**21)]) for a in accounts[i : i + 2_000]])
        margin_accounts = self.deployment.contracts["MarginAccounts"]
        deposits: list[tuple[str, str, int]] = []
        for group, collateral in groups:
            for token, amount in collateral.items():
                units = int(amount * 10 ** TOKEN_DECIMALS[token])
                self._fund(token, group, units, margin_accounts)
                deposits += [(a, self.deployment.contracts[token], units) for a in group]
        self._set_code(accounts, self._depositor_code)
        try:
            self.send_all(self._seeder_txs(encode_deposits, deposits, DEPOSIT_GAS))
        finally:
            self._set_code(accounts, "0x")

    def _set_code(self, accounts: Sequence[str], code: str) -> None:
        for i in range(0, len(accounts), 2_000):
            self.batch([("anvil_setCode", [a, code]) for a in accounts[i : i + 2_000]])

    def _fund(self, token: str, accounts: Sequence[str], units: int, spender: str) -> None:
        """Mint ``units`` of a mock token to each account and raise its allowance to ``spender`` by as much.

        One write per slot instead of two transactions per account (``mint``, ``approve``: 46% of the seeding's
        transactions): OpenZeppelin 5's ERC20 keeps ``_balances`` in slot 0, ``_allowances`` in slot 1 and
        ``_totalSupply`` in slot 2. Balances and allowances are read first and added to, so funding an account
        twice adds up as minting twice does.
        """
        address = self.deployment.contracts[token]
        spender_word = bytes.fromhex(spender[2:]).rjust(32, b"\0")
        for i in range(0, len(accounts), 1_000):
            part = accounts[i : i + 1_000]
            slots: list[str] = []
            for account in part:
                owner_word = bytes.fromhex(account[2:]).rjust(32, b"\0")
                slots.append("0x" + keccak_bytes(owner_word + bytes(32)).hex())  # _balances[account]
                inner = keccak_bytes(owner_word + (1).to_bytes(32, "big"))  # _allowances[account]
                slots.append("0x" + keccak_bytes(spender_word + inner).hex())  # _allowances[account][spender]
            values = self.batch([("eth_getStorageAt", [address, slot, "latest"]) for slot in slots])
            self.batch([
                ("anvil_setStorageAt", [address, slot, "0x" + (int(value, 16) + units).to_bytes(32, "big").hex()])
                for slot, value in zip(slots, values, strict=True)
            ])  # fmt: skip
        supply_slot = "0x" + (2).to_bytes(32, "big").hex()
        supply = int(self.rpc("eth_getStorageAt", [address, supply_slot, "latest"]), 16) + units * len(accounts)
        self.rpc("anvil_setStorageAt", [address, supply_slot, "0x" + supply.to_bytes(32, "big").hex()])

    def _pick(self, underlying: str, kind: InstrumentKind, moneyness: int = 0, expiry_index: int = 1) -> Instrument:
        spec = next(s for s in UNDERLYINGS if s.symbol == underlying)
        atm = round(spec.price / spec.strike_step) * spec.strike_step
        strike = int((atm + moneyness * spec.strike_step) * PRICE_SCALE)
        expiry = self.expiries[expiry_index] if kind != InstrumentKind.PERPETUAL else 0
        for inst in self.instruments:
            is_option = kind in (InstrumentKind.CALL, InstrumentKind.PUT)
            same = inst.underlying == underlying and inst.kind == kind and inst.expiry == expiry
            if same and (not is_option or inst.strike == strike):
                return inst
        raise WorldError(f"no instrument {underlying} {kind.name} {moneyness} {expiry_index}")

    def mark(self, inst: Instrument) -> int:
        """Return the feeder's mark of ``inst`` (USD 1e8 per unit, at least 1): index, forward or Black-76."""
        spot = self.prices[inst.underlying]
        years = max(inst.expiry - self.now, 0) / (365 * DAY)
        if inst.kind in (InstrumentKind.PERPETUAL, InstrumentKind.FUTURE):
            value = spot
        else:
            strike = inst.strike / PRICE_SCALE
            value = compute_option_mark(
                inst.kind == InstrumentKind.CALL, spot, strike, years, self.vols[inst.underlying]
            )
        return max(round(value * float(PRICE_SCALE)), 1)

    def _marks_tx(self) -> tuple[str, list[Any]]:
        """Return the Exchange transaction posting every live instrument's mark."""
        live = [inst for inst in self.instruments if inst.kind == InstrumentKind.PERPETUAL or inst.expiry > self.now]
        return self._tx(self.admin, "Exchange", "setMarks", [i.id for i in live], [self.mark(i) for i in live])

    def _order(self, account: str, inst: Instrument, is_buy: bool, units: int, price: int) -> tuple[Order, bytes]:
        self._order_nonce += 1
        order = Order(
            bytes.fromhex(account[2:]), inst.id, is_buy, units, price, self._order_nonce, self.now + ORDER_LIFETIME
        )
        return order, self.sign_order(order)

    def sign_order(self, order: Order) -> bytes:
        """Return ``order`` signed by its account's simulated key: ``chain.orders.sign_order`` with the key's context
        kept (seeding signs two orders per trade)."""
        signer = self._signers.get(order.account)
        if signer is None:
            key = self.keys[to_checksum_address(order.account)]
            signer = self._signers[order.account] = PrivateKey(key)
        exchange = bytes.fromhex(self.deployment.contracts["Exchange"][2:])
        # chain.orders.order_digest, without its per-call address conversion (two orders a trade)
        digest = keccak_bytes(b"\x19\x01" + exchange_domain_separator(self.deployment.chain_id, exchange)
                              + order.struct_hash())  # fmt: skip
        raw = signer.sign_recoverable(digest, hasher=None)
        return raw[:64] + bytes([raw[64] + 27])

    def _trade(self, account: str, inst: Instrument, size: float) -> tuple[str, list[Any]]:
        """Return the admin's ``Exchange.matchOrders`` transaction of ``_match(account, inst, size)``."""
        buy, buy_sig, sell, sell_sig, units, price = self._match(account, inst, size)
        args = (buy.as_tuple(), buy_sig, sell.as_tuple(), sell_sig, units, price)
        return self._tx(self.admin, "Exchange", "matchOrders", *args)

    def _match(self, account: str, inst: Instrument, size: float) -> tuple[Order, bytes, Order, bytes, int, int]:
        """Return the ``matchOrders`` arguments that move ``account``'s position by ``size`` units against the house,
        at the mark.

        Both sides sign an order limited at the mark; the matcher (the admin, or the seeder for it) pairs them.
        """
        units = max(round(abs(size) * SIZE_SCALE), 1)
        buyer, seller = (account, self.house) if size > 0 else (self.house, account)
        price = self.mark(inst)
        buy, buy_sig = self._order(buyer, inst, True, units, price)
        sell, sell_sig = self._order(seller, inst, False, units, price)
        self.trades += 1
        return (buy, buy_sig, sell, sell_sig, units, price)

    def _match_txs(self, matches: Sequence[tuple[Order, bytes, Order, bytes, int, int]]) -> list[tuple[str, list[Any]]]:
        """Return the seeder transactions applying ``matches`` in order."""
        return self._seeder_txs(encode_matches, matches, MATCH_GAS)

    def _open_users(self, users: Sequence[str]) -> None:
        """Give each user one of the archetypal books: market maker, covered call, buyer, naked short, two-asset."""
        rng = self._rng
        books: dict[str, list[tuple[Instrument, float]]] = {}
        deposits: dict[str, dict[str, float]] = {}
        for i, user in enumerate(users):
            u = rng.choice(("BTC", "ETH"))
            scale = rng.choice((0.5, 1, 2, 5)) * (1 if u == "BTC" else 10)
            expiry = rng.randrange(0, len(self.expiries))
            kind = i % 5
            if kind == 0:  # delta-hedged short straddle: the market maker
                books[user] = [
                    (self._pick(u, InstrumentKind.CALL, 0, expiry), -scale),
                    (self._pick(u, InstrumentKind.PUT, 0, expiry), -scale),
                    (self._pick(u, InstrumentKind.PERPETUAL), 0.1 * scale),
                ]
                deposits[user] = {"USDC": 0.25 * scale * self.prices[u]}
            elif kind == 1:  # covered call: the asset as collateral, an OTM call sold against it
                token = "WBTC" if u == "BTC" else "WETH"
                books[user] = [(self._pick(u, InstrumentKind.CALL, 2, expiry), -scale)]
                deposits[user] = {token: scale, "USDC": 0.02 * scale * self.prices[u]}
            elif kind == 2:  # directional option buyer
                opt = InstrumentKind.CALL if rng.random() < 0.5 else InstrumentKind.PUT
                books[user] = [(self._pick(u, opt, rng.choice((-1, 0, 1)), expiry), scale)]
                deposits[user] = {"USDC": 0.1 * scale * self.prices[u]}
            elif kind == 3:  # naked short put
                books[user] = [(self._pick(u, InstrumentKind.PUT, -1, expiry), -scale)]
                deposits[user] = {"USDC": 0.3 * scale * self.prices[u]}
            else:  # two assets: ETH collateral against BTC options and a BTC future
                books[user] = [
                    (self._pick("BTC", InstrumentKind.CALL, 1, expiry), -0.5),
                    (self._pick("BTC", InstrumentKind.FUTURE, 0, 2), 0.2),
                ]
                deposits[user] = {"WETH": 20.0, "USDC": 5_000.0}
        by_collateral: dict[tuple[tuple[str, float], ...], list[str]] = {}
        for user in users:
            by_collateral.setdefault(tuple(sorted(deposits[user].items())), []).append(user)
        self._open_groups([(group, dict(collateral)) for collateral, group in by_collateral.items()])
        self.send_all(self._match_txs([self._match(user, inst, size) for user in users for inst, size in books[user]]))

    # --- the moving market ----------------------------------------------------------------------------------------

    def move_market(self, now: int) -> None:
        """Move index prices (a seeded random walk) and vols, and publish every feed again."""
        for spec in UNDERLYINGS:
            self.prices[spec.symbol] *= 1.0 + self._rng.gauss(0.0, 0.002)
            self.vols[spec.symbol] = min(max(self.vols[spec.symbol] * (1 + self._rng.gauss(0, 0.01)), 0.2), 1.5)
        self.send_all([*self._feed_txs(now), self._marks_tx()])

    def trade_randomly(self, count: int) -> None:
        """Change ``count`` random accounts' positions by small trades."""
        if not self.accounts:
            return
        # chain time may have moved on (a warp): orders and marks are dated from the latest block
        self.now = max(self.now, int(self.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16))
        live = [i for i in self.instruments if i.kind == InstrumentKind.PERPETUAL or i.expiry > self.now + 60]
        frozen = {a.lower() for a in self.frozen}  # accounts under auction cannot trade (AccountInLiquidation)
        tradable = [a for a in self.accounts if a.lower() not in frozen]
        matches = []
        for _ in range(count if tradable else 0):
            user = self._rng.choice(tradable)
            inst = self._rng.choice(live)
            matches.append(self._match(user, inst, self._rng.choice((-1, 1)) * self._rng.choice((0.1, 0.5, 1.0))))
        self.send_all([self._marks_tx(), *self._match_txs(matches)])  # one sender: the marks are posted first
