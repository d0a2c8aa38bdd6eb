"""Gas of the on-chain protocol, measured on a fresh anvil (cancun): attest, verifyMargin, slashing.

``pmoracle bench gas [--write docs/gas.md]`` deploys everything, registers 16 nodes and measures:

- ``attest`` for committees n = 4, 7, 16 at the Byzantine quorum q = (n + f) // 2 + 1, in steady state (the
  round's ring slot already used once, as after the first ``historyBlocks`` blocks) and once on a fresh slot;
  then a least-squares fit of gas against the number of signatures (n = 16, q..16 signers);
- ``recordRoundBlockHash`` of that fresh round (the block hash a round no longer stores);
- ``attestFrost`` for committees n = 4, 7, 16, 64 registered with a FROST group key (shares of a dealt key, the
  signature a real q-of-n aggregate of the pure FROST code), steady state;
- ``verifyMargin`` with proofs from a real 1,000-account tree and from a 2^20-leaf (1,048,576-account) tree of
  which only the proven path is computed (a proof depends only on the path), via eth_estimateGas;
- ``slashEquivocation`` and ``slashDeviation``;
- the ledger's state changes (``ledger``, ``LEDGER_CASES``): WETH deposits, ``matchOrders`` opening, growing,
  shrinking and closing positions, a WETH withdrawal, a settlement, each in its own block (so every holding it changes
  takes a new checkpoint of the holdings history: the worst case per call);
- ``proveFraud`` (``fraud_proof``) and ``challengePricing`` (``pricing_challenge``: a BTC call's committed row and
  scenario row from a real engine round, one entry 100 quanta off, in a tree of ``FRAUD_TREE_ROWS`` rows);
- ``Liquidator.startAuction`` and ``bid`` on an account holding ``LIQUIDATION_POSITIONS`` positions (one perpetual,
  futures of successive expiries), taking the largest fraction f* < 1 into a fresh, cash-only bidder
  (``bid``), then the same on a second such account into that bidder, which now holds the instruments and proves
  its own leaf (``bid_into_book``).

"execution" = total - 21,000 (intrinsic) - calldata (4 gas per zero byte, 16 per non-zero byte).
"""

from __future__ import annotations

import argparse
import itertools
import json
import pathlib
import random
from typing import Any

from eth_account import Account
from eth_typing import HexStr
from eth_utils import keccak, to_checksum_address

from pmoracle.chain.compile import SETTINGS, SOLC_VERSION
from pmoracle.chain.deploy import (
    DEVIATION_DELAY,
    Deployment,
    NodeSpec,
    connect,
    decode_committee_view,
    deploy,
    open_transmitter,
    set_committee,
    transact_fn,
)
from pmoracle.chain.orders import Order, sign_order
from pmoracle.config.params import default_params
from pmoracle.consensus import frost
from pmoracle.consensus.commitments import (
    COVER_KEY,
    NO_POLICY,
    FraudProof,
    RiskArrayTree,
    RiskRow,
    compute_cover_row,
    compute_market_hash,
    compute_pricing_challenge,
    compute_risk_rows,
    instrument_key,
)
from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.frost_evm import EvmGroupKey, EvmSignature
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, compute_leaf_hash, hash_pair
from pmoracle.consensus.report import Domain, Report, compute_report_digest, sign_report
from pmoracle.devnet.devchain import DEV_MNEMONIC, start_devchain
from pmoracle.node.dispute import challenge_pricing_call, prove_fraud_call
from pmoracle.risk.inputs import Instrument, InstrumentKind, MarketSnapshot, Smile, UnderlyingMarket
from pmoracle.risk.margin import compute_risk_arrays
from pmoracle.risk.params import COVER_SCALE
from pmoracle.risk.scenarios import compute_scenarios
from pmoracle.risk.version import ENGINE_VERSION

INTRINSIC_GAS = 21_000
COMMITTEE_SIZES = (4, 7, 16)
FROST_COMMITTEE_SIZES = (4, 7, 16, 64)
NODES = 64  # registered nodes: the largest committee
HISTORY_BLOCKS = 8  # small ring so the bench reaches steady state (slot reuse) after a few rounds
PARAMS_HASH = keccak(text="pmoracle-gas-bench")
LIQUIDATION_POSITIONS = 20
FRAUD_SCENARIOS = 29  # the default parameters' scenario count (27 + 2 extremes)
FRAUD_TREE_ROWS = 256  # rows of the synthetic risk-array tree (proof depth 8)
TAKE_MAX = 2**256 - 1  # Liquidator.TAKE_MAX: the largest fraction allowed at the bid's block
BTC = b"BTC".ljust(32, b"\x00")
LEDGER_CASES = {  # the rows of ``_ledger_gas``, each call in its own block
    "deposit_new": "MarginAccounts.deposit, WETH, opens the balance",
    "deposit": "MarginAccounts.deposit, WETH, adds to the balance",
    "matchOrders_open": "Exchange.matchOrders, a perpetual, both sides open a position",
    "matchOrders_grow": "Exchange.matchOrders, a perpetual, both positions grow",
    "matchOrders_shrink": "Exchange.matchOrders, a perpetual, both positions shrink",
    "matchOrders_close": "Exchange.matchOrders, a perpetual, both positions close",
    "matchOrders_future": "Exchange.matchOrders, a future, both sides open a position",
    "withdraw": "MarginAccounts.withdraw, WETH, against an attested round",
    "settle": "MarginAccounts.settle, an expired future, 2 accounts",
}
USD = 10**18


def compute_calldata_gas(data: bytes) -> int:
    """Return the EIP-2028 calldata gas of ``data`` (4 per zero byte, 16 per non-zero byte)."""
    zeros = data.count(0)
    return 4 * zeros + 16 * (len(data) - zeros)


def _dev_key(index: int) -> bytes:
    Account.enable_unaudited_hdwallet_features()
    return bytes(Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{index}").key)


def _report(
    config_digest: bytes,
    block: int,
    block_hash: bytes,
    root: bytes,
    count: int,
    risk_root: bytes | None = None,
    market_hash: bytes | None = None,
) -> Report:
    """Return a report of the bench's parameters (risk-array root and market hash unless given: fixed words)."""
    return Report(config_digest, block, block_hash, PARAMS_HASH, root, count, risk_root or keccak(text="risk arrays"),
                  market_hash or keccak(text="market"))  # fmt: skip


class _Bench:
    def __init__(self, url: str, chain: Any) -> None:
        self.chain = chain
        self.w3 = connect(url)
        self.signing_keys = [keccak(text=f"gas-bench-signer-{i}") for i in range(NODES)]
        # member 15 (the slashed one) holds twice the minimum, so its slashes measure no ejection
        nodes = [
            NodeSpec(_dev_key(1 + i), self.signing_keys[i], b"\x00\x24" + bytes(36), (f"/ip4/127.0.0.1/tcp/{i}",),
                     10**18 * (2 if i == 15 else 1))
            for i in range(NODES)
        ]  # fmt: skip
        self.deployment: Deployment = deploy(
            url, _dev_key(0), params_hash=PARAMS_HASH, round_period=1, finality_depth=0, nodes=nodes,
            history_blocks=HISTORY_BLOCKS, max_round_age=HISTORY_BLOCKS,
        )  # fmt: skip
        self.owner = open_transmitter(url, _dev_key(0))
        self.oracle = self.deployment.contract(self.w3, "MarginOracle")
        self.registry = self.deployment.contract(self.w3, "SolverRegistry")
        self.domain = Domain.from_address(self.deployment.chain_id, self.oracle.address)
        self.n = NODES  # deploy makes every registered node the committee

    def use_committee(self, n: int, group_key: EvmGroupKey | None = None) -> None:
        members = [Account.from_key(k).address for k in self.signing_keys[:n]]
        set_committee(self.owner, self.deployment, members, quorum=compute_byzantine_quorum(n), round_period=1,
                      finality_depth=0, params_hash=PARAMS_HASH, engine_version=ENGINE_VERSION,
                      group_key=group_key)  # fmt: skip
        self.n = n

    def frost_attest(self, root: bytes, shares: dict[int, int], group_key: bytes, signers: list[int]) -> dict[str, int]:
        """Attest with one FROST signature aggregated from the shares of DKG identifiers ``signers`` (1-based)."""
        self.chain.rpc("evm_mine")
        block = int(self.w3.eth.block_number)
        block_hash = bytes(self.w3.eth.get_block(block)["hash"])
        report = _report(self.config().digest(), block, block_hash, root, 1000)
        message = compute_report_digest(self.domain, report)
        signature = EvmSignature.from_signature(_frost_sign(shares, group_key, signers, message))
        bitmap = sum(1 << (i - 1) for i in signers)
        fn = self.oracle.functions.attestFrost(report.as_frost_tuple(), bitmap, *signature.to_words())
        receipt = transact_fn(self.owner, fn, label="attestFrost")
        return _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:])) | {"block": block}

    def record_block_hash(self, root: bytes, count: int, block: int) -> dict[str, int]:
        """Record the block hash of the round ``attest(root, count, ...)`` stored at ``block``."""
        block_hash = bytes(self.w3.eth.get_block(block)["hash"])
        report = _report(self.config().digest(), block, block_hash, root, count)
        fn = self.oracle.functions.recordRoundBlockHash(report.as_tuple())
        receipt = transact_fn(self.owner, fn, label="recordRoundBlockHash")
        return _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:]))

    def config(self) -> CommitteeConfig:
        return decode_committee_view(self.registry.functions.committee().call())[0]

    def attest(
        self,
        root: bytes,
        count: int,
        signers: list[int],
        risk_root: bytes | None = None,
        market_hash: bytes | None = None,
    ) -> dict[str, int]:
        self.chain.rpc("evm_mine")
        block = int(self.w3.eth.block_number)
        block_hash = bytes(self.w3.eth.get_block(block)["hash"])
        report = _report(self.config().digest(), block, block_hash, root, count, risk_root, market_hash)
        bitmap = sum(1 << i for i in signers)
        sigs = [sign_report(self.domain, report, self.signing_keys[i]).signature for i in sorted(signers)]
        fn = self.oracle.functions.attest(report.as_tuple(), bitmap, sigs)
        receipt = transact_fn(self.owner, fn, label="attest")
        data = bytes.fromhex(fn._encode_transaction_data()[2:])
        return _split(receipt.gas_used, data) | {"block": block}

    def steady_attest(self, signers: list[int]) -> dict[str, int]:
        """Attest until a round lands on a ring slot that was used before; return that round's gas."""
        result: dict[str, int] = {}
        for i in range(HISTORY_BLOCKS + 1):
            result = self.attest(keccak(text=f"root-{i}"), 1000, signers)
        return result


def _frost_committee(n: int, threshold: int) -> tuple[bytes, dict[int, int]]:
    """Return a group key the contract can hold (x < n) and its ``threshold``-of-``n`` shares (dealt, seeded)."""
    for attempt in itertools.count():
        seed = keccak(text=f"gas-bench-frost-{n}-{attempt}")
        secret = int.from_bytes(seed, "big") % (frost.ORDER - 1) + 1
        group_key = frost.serialize_element(frost.scalar_base_mult(secret))
        if int.from_bytes(group_key[1:], "big") < frost.ORDER:
            coefficients = [
                int.from_bytes(keccak(seed + bytes([j])), "big") % frost.ORDER for j in range(threshold - 1)
            ]
            return group_key, frost.split_secret(secret, coefficients, n)
    raise AssertionError("unreachable")


def _frost_sign(shares: dict[int, int], group_key: bytes, signers: list[int], message: bytes) -> frost.Signature:
    """Return the aggregate of ``signers``' FROST shares of ``message`` (deterministic nonces: a bench only)."""
    rounds = {i: frost.commit(i, shares[i], keccak(message + b"h" + bytes([i])), keccak(message + b"b" + bytes([i])))
              for i in signers}  # fmt: skip
    commitments = [rounds[i][1] for i in sorted(signers)]
    sig_shares = [frost.sign(i, shares[i], group_key, rounds[i][0], message, commitments) for i in sorted(signers)]
    signature = frost.aggregate(commitments, message, group_key, sig_shares)
    if not frost.verify(group_key, message, signature):
        raise AssertionError("the bench's FROST signature does not verify")
    return signature


def compute_json_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """Return one object per attest row: call, scheme (ecdsa or frost), n, signatures, total_gas."""
    rows = [{"call": "attest", "scheme": "ecdsa", "n": r["n"], "signatures": r["quorum"], "total_gas": r["total"]}
            for r in result["attest"]]  # fmt: skip
    rows += [{"call": "attest", "scheme": "frost", "n": r["n"], "signatures": 1, "total_gas": r["total"]}
             for r in result["attest_frost"]]  # fmt: skip
    return rows


def _split(total: int, data: bytes) -> dict[str, int]:
    calldata = compute_calldata_gas(data)
    return {"total": total, "calldata": calldata, "execution": total - INTRINSIC_GAS - calldata}


def _fit(points: list[tuple[int, int]]) -> tuple[float, float]:
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    slope = sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)
    return slope, my - slope * mx


def _synthetic_path(depth: int, rng: random.Random) -> tuple[AccountLeaf, list[bytes], bytes]:
    """Return a leaf, its proof and the root of a 2**depth-leaf tree whose other nodes are random hashes."""
    leaf = AccountLeaf(rng.randbytes(20), 2_000 * 10**18, 1_000 * 10**18, 9_000 * 10**18)
    proof = [rng.randbytes(32) for _ in range(depth)]
    node = compute_leaf_hash(leaf)
    for sibling in proof:
        node = hash_pair(node, sibling)
    return leaf, proof, node


def _deposit_usdc(bench: _Bench, key: bytes, amount: int) -> None:
    trader = open_transmitter(bench.owner.client, key)
    usdc = bench.deployment.contract(bench.w3, "USDC").functions
    ledger = bench.deployment.contracts["MarginAccounts"]
    transact_fn(trader, usdc.mint(trader.address, amount), label="mint")
    transact_fn(trader, usdc.approve(ledger, amount), label="approve")
    fn = bench.deployment.contract(bench.w3, "MarginAccounts").functions.deposit(
        bench.deployment.contracts["USDC"], amount
    )
    transact_fn(trader, fn, label="deposit")


def _ledger_gas(bench: _Bench) -> dict[str, dict[str, int]]:
    """Measure the ledger's state-changing calls, each in its own block (anvil mines one per transaction, so every
    holding a call changes is a first change in its block): a WETH deposit opening a balance and one adding to it;
    matchOrders of a perpetual opening both sides' positions, growing both, closing both; a WETH withdrawal against
    an attested round; the settlement of an expired future held by the two accounts (two derived keys)."""
    d = bench.deployment
    feeds = d.contract(bench.w3, "MarketFeeds").functions
    ledger = d.contract(bench.w3, "MarginAccounts").functions
    exchange = d.contract(bench.w3, "Exchange").functions
    weth = d.contract(bench.w3, "WETH").functions
    keys = [keccak(text=f"pmoracle-bench-gas-ledger-{i}") for i in range(2)]
    a, b = (Account.from_key(k).address for k in keys)
    traders = []
    for key in keys:
        bench.chain.rpc("anvil_setBalance", Account.from_key(key).address, hex(10**21))
        _deposit_usdc(bench, key, 1_000_000 * 10**6)
        traders.append(open_transmitter(bench.owner.client, key))
    price = 100_000 * 10**8
    transact_fn(bench.owner, feeds.setIndex(BTC, price, 0), label="setIndex")
    transact_fn(bench.owner, feeds.setAssetPrice(d.contracts["WETH"], 3_000 * 10**8, 10**17, b"ETH".ljust(32, b"\x00")),
                label="setAssetPrice")  # fmt: skip
    result: dict[str, dict[str, int]] = {}

    def measure(name: str, sender: Any, fn: Any) -> None:
        receipt = transact_fn(sender, fn, label=name)
        result[name] = _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:]))

    transact_fn(traders[0], weth.mint(a, 10 * 10**18), label="mint")
    transact_fn(traders[0], weth.approve(d.contracts["MarginAccounts"], 10 * 10**18), label="approve")
    measure("deposit_new", traders[0], ledger.deposit(d.contracts["WETH"], 5 * 10**18))
    measure("deposit", traders[0], ledger.deposit(d.contracts["WETH"], 5 * 10**18))
    now = int(bench.w3.eth.get_block("latest")["timestamp"])
    expiry = (now // 86_400 + 2) * 86_400 + 8 * 3_600
    transact_fn(bench.owner, ledger.listInstrument(BTC, 0, 0, 0), label="list")
    perp = int(ledger.instrumentCount().call())
    transact_fn(bench.owner, ledger.listInstrument(BTC, 1, expiry, 0), label="list")
    future = perp + 1
    transact_fn(bench.owner, exchange.setMarks([perp, future], [price, price]), label="setMarks")
    nonces = itertools.count(1_000_000)

    def trade(name: str, iid: int, buyer: int) -> None:
        nonce = next(nonces)
        orders = [Order(bytes.fromhex(x[2:]), iid, buy, 1_000, price, nonce, now + 86_400)
                  for x, buy in (((a, b)[buyer], True), ((a, b)[1 - buyer], False))]  # fmt: skip
        signers = (keys[buyer], keys[1 - buyer])
        sigs = [sign_order(d.chain_id, d.contracts["Exchange"], o, k) for o, k in zip(orders, signers, strict=True)]
        measure(name, bench.owner, exchange.matchOrders(orders[0].as_tuple(), sigs[0], orders[1].as_tuple(), sigs[1],
                                                         1_000, price))  # fmt: skip

    trade("matchOrders_open", perp, 0)
    trade("matchOrders_grow", perp, 0)
    trade("matchOrders_shrink", perp, 1)
    trade("matchOrders_close", perp, 1)
    trade("matchOrders_future", future, 0)
    tree = MerkleTree([AccountLeaf(bytes.fromhex(a[2:]), 0, 0, 10**6 * USD), AccountLeaf(b"\x01" * 20, 1, 1, 1)])
    bench.attest(tree.root, len(tree.leaves), list(range(bench.n)))
    measure("withdraw", traders[0], ledger.withdraw(d.contracts["WETH"], 10**18, (0, 0, 10**6 * USD),
                                                    tree.proof(bytes.fromhex(a[2:]))))  # fmt: skip
    bench.chain.rpc("evm_increaseTime", expiry - now + 60)
    bench.chain.rpc("evm_mine")
    transact_fn(bench.owner, feeds.setSettlementPrice(BTC, expiry, price), label="setSettlementPrice")
    measure("settle", bench.owner, ledger.settle(future, [a, b]))
    return result


def _fraud_proof_gas(bench: _Bench, account: str, instrument_ids: range) -> dict[str, int]:
    """Measure proveFraud against a round understating the MM of ``account`` (its positions in ``instrument_ids``;
    its USDC is settlement cash, no collateral row), with a risk-array tree of FRAUD_TREE_ROWS synthetic rows of
    FRAUD_SCENARIOS scenarios."""
    rng = random.Random(14)
    held = [instrument_key(i) for i in instrument_ids]
    others = [instrument_key(10_000 + i) for i in range(FRAUD_TREE_ROWS - len(held) - 1)]
    rows = [RiskRow(k, rng.randrange(10**9), rng.randrange(10**6), tuple(-rng.randrange(10**8) for _ in
                    range(FRAUD_SCENARIOS))) for k in held + others]  # fmt: skip
    cover = compute_cover_row([COVER_SCALE] * (FRAUD_SCENARIOS - 2) + [COVER_SCALE // 3] * 2, COVER_SCALE)
    risk_tree = RiskArrayTree([*rows, cover])
    lie = AccountLeaf(bytes.fromhex(account[2:]), 0, 0, 0)  # every long position loses: any MM > 0 is owed
    tree = MerkleTree([lie, AccountLeaf(b"\x01" * 20, 1, 1, 1)])
    bench.use_committee(4)  # a quorum of 3 lies, each staked twice the minimum: slashed, not ejected
    for i in range(3):
        operator = open_transmitter(bench.chain.url, _dev_key(1 + i))
        transact_fn(operator, bench.registry.functions.addStake(), label="addStake", value=10**18)
    attested = bench.attest(tree.root, len(tree.leaves), [0, 1, 2], risk_tree.root)
    block = attested["block"]
    report = _report(bench.config().digest(), block, bytes(bench.w3.eth.get_block(block)["hash"]), tree.root,
                     len(tree.leaves), risk_tree.root)  # fmt: skip
    proof = FraudProof(lie, tuple(tree.proof(lie.account)), cover, tuple(risk_tree.proof(COVER_KEY)),
                       tuple((risk_tree.row_of(k), tuple(risk_tree.proof(k))) for k in sorted(held)), 0, 1)  # fmt: skip
    fn = bench.oracle.functions.proveFraud(*prove_fraud_call(bench.deployment, report, proof).args)
    receipt = transact_fn(bench.owner, fn, label="proveFraud")
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    depth = len(risk_tree.proof(held[0]))
    return _split(receipt.gas_used, data) | {"positions": len(instrument_ids), "rows": len(risk_tree), "depth": depth,
                                             "scenarios": FRAUD_SCENARIOS, "signers": 3}  # fmt: skip


def _pricing_challenge_gas(bench: _Bench) -> dict[str, int]:
    """Measure challengePricing of one entry of a listed 30-day BTC call, 100 quanta off (a real engine round of
    the default parameters on a one-underlying market: its option, cover and scenario rows, padded with synthetic rows
    to FRAUD_TREE_ROWS), against a round signed by 3 members staked above the minimum (slashed, not ejected)."""
    ledger = bench.deployment.contract(bench.w3, "MarginAccounts").functions
    now = int(bench.w3.eth.get_block("latest")["timestamp"])
    expiry = (now // 86_400 + 30) * 86_400 + 8 * 3_600
    strike = 105_000 * 10**8
    transact_fn(bench.owner, ledger.listInstrument(BTC, 2, expiry, strike), label="list")
    iid = int(ledger.instrumentCount().call())
    option = Instrument("BTC", InstrumentKind.CALL, expiry, strike)
    smile = Smile(expiry, a=2 * 10**16, b=10**17, rho=-3 * 10**17, m=0, sigma=10**17)
    market = MarketSnapshot(now, (UnderlyingMarket("BTC", 100_000 * 10**8, 5 * 10**16, (smile,), updated_at=now),))
    params = default_params()
    arrays = compute_risk_arrays(market, params, [option], compute_scenarios(params, market))
    rows = compute_risk_rows(arrays, {option: [iid]}, ())
    key = instrument_key(iid)
    honest = next(row for row in rows if row.key == key)
    wrong = RiskRow(key, honest.base, honest.addon, (honest.values[0] + 100, *honest.values[1:]))
    rng = random.Random(15)
    width = len(honest.values)
    padding = [RiskRow(instrument_key(20_000 + i), rng.randrange(10**9), 0, tuple(-rng.randrange(10**8)
               for _ in range(width))) for i in range(FRAUD_TREE_ROWS - len(rows))]  # fmt: skip
    tree = RiskArrayTree([*(wrong if row.key == key else row for row in rows), *padding])
    market_hash = compute_market_hash(market)
    root = keccak(text="pricing challenge accounts")
    attested = bench.attest(root, 1, [0, 1, 2], tree.root, market_hash)
    block = attested["block"]
    report = _report(bench.config().digest(), block, bytes(bench.w3.eth.get_block(block)["hash"]), root, 1,
                     tree.root, market_hash)  # fmt: skip
    challenge = compute_pricing_challenge(tree, market, NO_POLICY, key, "BTC", 0)
    fn = bench.oracle.functions.challengePricing(*challenge_pricing_call(bench.deployment, report, challenge).args)
    receipt = transact_fn(bench.owner, fn, label="challengePricing")
    data = bytes.fromhex(fn._encode_transaction_data()[2:])
    return _split(receipt.gas_used, data) | {"scenarios": width, "rows": len(tree), "depth": len(tree.proof(key)),
                                             "signers": 3}  # fmt: skip


def _liquidation_gas(bench: _Bench) -> dict[str, dict[str, int]]:
    """Measure startAuction and bids of f* on two accounts of LIQUIDATION_POSITIONS positions: into a fresh
    cash-only bidder, then into the same bidder holding the instruments (dev keys 17-19 and one derived key); then
    the fraud proof of a round understating the bidder's MM (``fraud_proof``)."""
    victim_keys = [_dev_key(17), keccak(text="pmoracle-bench-gas-second-victim")]
    maker_key, bidder_key = _dev_key(18), _dev_key(19)
    victims = [Account.from_key(k).address for k in victim_keys]
    maker, bidder = Account.from_key(maker_key).address, Account.from_key(bidder_key).address
    bench.chain.rpc("anvil_setBalance", victims[1], hex(10**21))
    d = bench.deployment
    feeds = d.contract(bench.w3, "MarketFeeds").functions
    ledger = d.contract(bench.w3, "MarginAccounts").functions
    exchange = d.contract(bench.w3, "Exchange").functions
    liquidator = d.contract(bench.w3, "Liquidator").functions
    price = 100_000 * 10**8
    transact_fn(bench.owner, feeds.setIndex(BTC, price, 0), label="setIndex")
    now = int(bench.w3.eth.get_block("latest")["timestamp"])
    first = ledger.instrumentCount().call() + 1
    transact_fn(bench.owner, ledger.listInstrument(BTC, 0, 0, 0), label="list")
    for k in range(LIQUIDATION_POSITIONS - 1):
        expiry = (now // 86_400 + 30 + k) * 86_400 + 8 * 3_600
        transact_fn(bench.owner, ledger.listInstrument(BTC, 1, expiry, 0), label="list")
    for key in (*victim_keys, maker_key, bidder_key):
        _deposit_usdc(bench, key, 1_000_000 * 10**6)
    nonces = itertools.count()
    for victim_key, victim in zip(victim_keys, victims, strict=True):
        for iid in range(first, first + LIQUIDATION_POSITIONS):
            transact_fn(bench.owner, exchange.setMarks([iid], [price]), label="setMarks")
            nonce = next(nonces)
            orders = [
                Order(bytes.fromhex(a[2:]), iid, buy, 1_000, price, nonce, now + 86_400)
                for a, buy in ((victim, True), (maker, False))
            ]
            keys = (victim_key, maker_key)
            sigs = [sign_order(d.chain_id, d.contracts["Exchange"], o, k) for o, k in zip(orders, keys, strict=True)]
            fn = exchange.matchOrders(orders[0].as_tuple(), sigs[0], orders[1].as_tuple(), sigs[1], 1_000, price)
            transact_fn(bench.owner, fn, label="matchOrders")
    # leaves under maintenance margin (the gas does not depend on the values)
    equity, mm = 1_900 * USD, 2_000 * USD
    margin = (3_000 * USD, mm, equity)
    tree = MerkleTree([AccountLeaf(bytes.fromhex(v[2:]), *margin) for v in victims])
    bench.attest(tree.root, len(tree.leaves), list(range(bench.n)))
    result: dict[str, dict[str, int]] = {}
    for victim in victims:
        fn = liquidator.startAuction(victim, margin, tree.proof(bytes.fromhex(victim[2:])))
        receipt = transact_fn(bench.owner, fn, label="startAuction")
        result.setdefault("startAuction", _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:])))
    params = liquidator.params().call()
    bench.chain.rpc("evm_increaseTime", params[3] + params[4])  # the discount's plateau
    bench.chain.rpc("evm_mine")
    bidder_tx = open_transmitter(bench.owner.client, bidder_key)
    no_leaf: tuple[tuple[int, int, int], list[bytes]] = ((0, 0, 0), [])
    fn = liquidator.bid(victims[0], TAKE_MAX, 2**255 - 1, margin, tree.proof(bytes.fromhex(victims[0][2:])), *no_leaf)
    receipt = transact_fn(bidder_tx, fn, label="bid")
    result["bid"] = _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:]))
    # a round that proves the bidder's new book, then the second account's fraction joins it position by position
    own = (0, 0, 1_000_000 * USD)
    tree = MerkleTree(
        [AccountLeaf(bytes.fromhex(victims[1][2:]), *margin), AccountLeaf(bytes.fromhex(bidder[2:]), *own)]
    )
    bench.attest(tree.root, len(tree.leaves), list(range(bench.n)))
    fn = liquidator.bid(victims[1], TAKE_MAX, 2**255 - 1, margin, tree.proof(bytes.fromhex(victims[1][2:])),
                        own, tree.proof(bytes.fromhex(bidder[2:])))  # fmt: skip
    receipt = transact_fn(bidder_tx, fn, label="bid")
    result["bid_into_book"] = _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:]))
    # last (it slashes members): a round understating the bidder's MM, now that it holds the instruments
    result["fraud_proof"] = _fraud_proof_gas(bench, bidder, range(first, first + LIQUIDATION_POSITIONS))
    return result


def run_gas_bench() -> dict[str, Any]:
    """Deploy on a fresh anvil, measure every figure of the table and return them (gas units)."""
    chain = start_devchain(accounts=NODES + 4)
    try:
        bench = _Bench(chain.url, chain)
        result: dict[str, Any] = {"solc": SOLC_VERSION, "evmVersion": SETTINGS["evmVersion"], "attest": []}
        bench.use_committee(4)
        result["attest_fresh_slot"] = bench.attest(keccak(text="fresh"), 1000, [0, 1, 2]) | {"n": 4, "signers": 3}
        result["record_block_hash"] = bench.record_block_hash(keccak(text="fresh"), 1000,
                                                              result["attest_fresh_slot"]["block"])  # fmt: skip
        for n in COMMITTEE_SIZES:
            bench.use_committee(n)
            q = compute_byzantine_quorum(n)
            result["attest"].append(bench.steady_attest(list(range(q))) | {"n": n, "quorum": q})
        # gas against the number of signatures (n = 16, q..16 signers), steady state
        points = []
        for k in range(compute_byzantine_quorum(16), 17):
            gas = bench.steady_attest(list(range(k)))
            points.append((k, gas["total"]))
        slope, intercept = _fit(points)
        exec_points = [(k, g - INTRINSIC_GAS) for k, g in points]
        result["attest_fit"] = {
            "per_signature": round(slope),
            "base_total": round(intercept),
            "base_without_intrinsic": round(_fit(exec_points)[1]),
            "points": points,
        }
        # one FROST signature under each committee's group key, steady state; then back to the ECDSA n = 16
        result["attest_frost"] = []
        for n in FROST_COMMITTEE_SIZES:
            q = compute_byzantine_quorum(n)
            group_key, shares = _frost_committee(n, q)
            bench.use_committee(n, EvmGroupKey.from_compressed(group_key))
            signers = list(range(1, q + 1))
            for i in range(HISTORY_BLOCKS + 1):
                gas = bench.frost_attest(keccak(text=f"frost-{n}-{i}"), shares, group_key, signers)
            result["attest_frost"].append(gas | {"n": n, "quorum": q})
        bench.use_committee(16)
        # verifyMargin against real (1,000) and path-only (2^20) trees
        rng = random.Random(20)
        real_leaves = [AccountLeaf(rng.randbytes(20), i * 10**18, i * 10**17, 10**22) for i in range(1000)]
        real = MerkleTree(real_leaves)
        synthetic_leaf, synthetic_proof, synthetic_root = _synthetic_path(20, rng)
        result["verify_margin"] = []
        cases = [
            (1000, real.root, real.leaves[417], real.proof(real.leaves[417].account)),
            (2**20, synthetic_root, synthetic_leaf, synthetic_proof),
        ]
        for accounts, root, leaf, proof in cases:
            bench.attest(root, accounts, list(range(bench.n)))
            fn = bench.oracle.functions.verifyMargin(
                to_checksum_address(leaf.account), leaf.initial_margin, leaf.maintenance_margin, leaf.equity, proof
            )
            fn.call()  # proves the proof is valid
            data = bytes.fromhex(fn._encode_transaction_data()[2:])
            estimate = int(bench.w3.eth.estimate_gas({"from": bench.owner.address, "to": bench.oracle.address,
                                                       "data": HexStr("0x" + data.hex())}))  # fmt: skip
            result["verify_margin"].append(_split(estimate, data) | {"accounts": accounts, "depth": len(proof)})
        # slashing: member 15 equivocates, then deviates from an attested round; node 0's operator reports (a
        # registered node: rewarded)
        reporter = open_transmitter(bench.chain.url, _dev_key(1))
        bench.chain.rpc("evm_mine")
        config = bench.config()
        block = int(bench.w3.eth.block_number)
        block_hash = bytes(bench.w3.eth.get_block(block)["hash"])
        a = _report(config.digest(), block, block_hash, keccak(text="a"), 1)
        b = _report(config.digest(), block, block_hash, keccak(text="b"), 1)
        evil = bench.signing_keys[15]
        fn = bench.registry.functions.slashEquivocation(
            a.as_tuple(), sign_report(bench.domain, a, evil).signature,
            b.as_tuple(), sign_report(bench.domain, b, evil).signature,
        )  # fmt: skip
        receipt = transact_fn(reporter, fn, label="slashEquivocation")
        result["slashing"] = {
            "slashEquivocation": _split(receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:]))
        }
        attested = bench.attest(keccak(text="attested"), 1, list(range(config.quorum)))
        attested_hash = bytes(bench.w3.eth.get_block(attested["block"])["hash"])
        deviant = _report(config.digest(), attested["block"], attested_hash, keccak(text="deviant"), 1)
        fn = bench.registry.functions.slashDeviation(
            deviant.as_tuple(), sign_report(bench.domain, deviant, evil).signature
        )
        bench.chain.rpc("evm_increaseTime", DEVIATION_DELAY)  # the deviation window passes (docs/dispute.md)
        bench.chain.rpc("evm_mine")
        receipt = transact_fn(reporter, fn, label="slashDeviation")
        result["slashing"]["slashDeviation"] = _split(
            receipt.gas_used, bytes.fromhex(fn._encode_transaction_data()[2:])
        )
        result["ledger"] = _ledger_gas(bench)
        result["liquidation"] = _liquidation_gas(bench)
        result["fraud_proof"] = result["liquidation"].pop("fraud_proof")
        result["pricing_challenge"] = _pricing_challenge_gas(bench)  # after proveFraud: its members, slashed again
        result["rows"] = compute_json_rows(result)
        return result
    finally:
        chain.stop()


def format_gas_table(result: dict[str, Any]) -> str:
    """Return the measured figures as a Markdown table."""
    lines = [
        f"Measured on anvil 1.7.1 (--hardfork cancun), solc {result['solc']} (optimizer 200 runs, "
        f"evmVersion {result['evmVersion']}). execution = total - 21,000 intrinsic - calldata.",
        "",
        "| call | case | total gas | calldata | execution |",
        "|---|---|---:|---:|---:|",
    ]
    for row in result["attest"]:
        lines.append(f"| attest | n={row['n']}, q={row['quorum']} signatures, steady state | {row['total']:,} | "
                     f"{row['calldata']:,} | {row['execution']:,} |")  # fmt: skip
    for row in result["attest_frost"]:
        lines.append(f"| attestFrost | n={row['n']}, one FROST signature ({row['quorum']}-of-{row['n']} shares), "
                     f"steady state | {row['total']:,} | {row['calldata']:,} | {row['execution']:,} |")  # fmt: skip
    fresh = result["attest_fresh_slot"]
    lines.append(f"| attest | n=4, 3 signatures, fresh ring slot (first {HISTORY_BLOCKS} blocks' rounds) | "
                 f"{fresh['total']:,} | {fresh['calldata']:,} | {fresh['execution']:,} |")  # fmt: skip
    record = result.get("record_block_hash")
    if record is not None:
        lines.append(f"| recordRoundBlockHash | a round's block hash from its report (deviation evidence older than "
                     f"256 blocks needs it; once per round) | {record['total']:,} | {record['calldata']:,} | "
                     f"{record['execution']:,} |")  # fmt: skip
    for row in result["verify_margin"]:
        lines.append(f"| verifyMargin | {row['accounts']:,} accounts (proof depth {row['depth']}) | {row['total']:,} | "
                     f"{row['calldata']:,} | {row['execution']:,} |")  # fmt: skip
    for name, row in result["slashing"].items():
        lines.append(f"| {name} | 10% of stake, 50% to reporter | {row['total']:,} | {row['calldata']:,} | "
                     f"{row['execution']:,} |")  # fmt: skip
    for name, row in result.get("liquidation", {}).items():
        case = f"{LIQUIDATION_POSITIONS} positions" + {
            "bid": ", f* < 1 into a fresh cash-only bidder",
            "bid_into_book": ", f* < 1 into a bidder holding the 20 instruments (proves its own leaf)",
        }.get(name, "")
        lines.append(f"| {name} | {case} | {row['total']:,} | {row['calldata']:,} | {row['execution']:,} |")
    for name, row in result.get("ledger", {}).items():
        lines.append(f"| {name} | {LEDGER_CASES[name]} | {row['total']:,} | {row['calldata']:,} | "
                     f"{row['execution']:,} |")  # fmt: skip
    fraud = result["fraud_proof"]
    lines.append(f"| proveFraud | {fraud['positions']} positions, {fraud['scenarios']} scenarios, "
                 f"{fraud['rows']}-row risk tree (depth {fraud['depth']}), {fraud['signers']} signers slashed | "
                 f"{fraud['total']:,} | {fraud['calldata']:,} | {fraud['execution']:,} |")  # fmt: skip
    pricing = result.get("pricing_challenge")
    if pricing is not None:
        lines.append(f"| challengePricing | one call entry, {pricing['scenarios']} scenarios, {pricing['rows']}-row "
                     f"risk tree (depth {pricing['depth']}), {pricing['signers']} signers slashed | "
                     f"{pricing['total']:,} | {pricing['calldata']:,} | {pricing['execution']:,} |")  # fmt: skip
    fit = result["attest_fit"]
    frost_totals = [row["total"] for row in result["attest_frost"]]
    lines += [
        "",
        f"attestFrost (one RFC 9591 signature, FrostVerifier ~5.3k gas): {min(frost_totals):,} to "
        f"{max(frost_totals):,} gas total at n = {', '.join(str(r['n']) for r in result['attest_frost'])} "
        f"(spread {(max(frost_totals) - min(frost_totals)) / min(frost_totals):.2%}); `--json` lists every attest row "
        "under `rows` as {call, scheme, n, signatures, total_gas}.",
        "",
        f"attest, least-squares fit over n=16 with {fit['points'][0][0]}..{fit['points'][-1][0]} signatures "
        f"(steady state): {fit['per_signature']:,} gas per signature; fixed base {fit['base_total']:,} gas "
        f"including the 21,000 intrinsic ({fit['base_without_intrinsic']:,} without).",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the gas benchmark's options to ``parser``."""
    parser.add_argument("--write", type=pathlib.Path, help="also write the table (Markdown) to this file")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object instead")


def run(args: argparse.Namespace) -> int:
    """Run the bench, print the table (or the JSON figures), optionally write the table to a file."""
    result = run_gas_bench()
    table = format_gas_table(result)
    print(json.dumps(result, indent=2) if args.json else table, end="\n" if args.json else "")
    if args.write:
        args.write.write_text("# Gas of the pmoracle contracts\n\n" + table)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m pmoracle.bench.gas``."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.bench.gas", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
