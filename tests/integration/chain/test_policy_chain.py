"""The adaptive policy from a real chain: IndexSet logs on anvil -> samples -> states, as the CLI and the node see
them; the node's checkpoint resumed, refused when corrupt or foreign, and always equal to a recomputation."""

from __future__ import annotations

import dataclasses
import http.server
import json
import pathlib
import random
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import trio
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address

from pmoracle.chain.client import ChainClient
from pmoracle.chain.contracts import load_artifact
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.chain.index_history import read_index_updates
from pmoracle.chain.transmitter import Transmitter
from pmoracle.cli import main
from pmoracle.commands.policy import format_fraction
from pmoracle.config.params import default_params_text
from pmoracle.devnet.devchain import Devchain
from pmoracle.node.policy import (
    PolicyCheckpointStore,
    PolicyHistoryError,
    PolicyTracker,
    decode_checkpoint,
    encode_checkpoint,
    policy_round_to_json,
    read_policy_round,
)
from pmoracle.risk.params import RiskParams, parse_params
from pmoracle.risk.policy import (
    RANGE_SCALE,
    PolicyRound,
    Sample,
    SmileQuote,
    compute_effective_params,
    compute_iv_tenor_seconds,
    compute_policy_hash,
    compute_policy_state,
    compute_reference_iv,
)

from .helpers import DEV_KEYS, contract_at

HOUR = 3600
POLICY = """
[policy]
sample_interval_seconds = 3600
horizon_seconds = 3600
decay = "0.9"
sigmas = "5"
seed_vol = "0.6"
min_scan_range = "0.01"
max_scan_range = "0.6"
max_step_up = "0.1"
max_step_down = "0.05"

[policy.buffer]
size = "0.25"
stress_ratio = "1.5"
slow_decay = "0.98"
rebuild_samples = 10
"""


def policy_document(max_age: int = 2 * HOUR, decay: str = "0.9") -> str:
    text = default_params_text().replace("max_feed_age_seconds = 300", f"max_feed_age_seconds = {max_age}")
    return text + POLICY.replace('decay = "0.9"', f'decay = "{decay}"')


def sym(text: str) -> bytes:
    return text.encode().ljust(32, b"\0")


@dataclass
class Feeds:
    anvil: Devchain
    client: ChainClient
    admin: Transmitter
    deployment: Deployment
    deployment_file: pathlib.Path
    contract: Any
    first_point: int  # the first sampling point; BTC update h is written 10 s after point h - 1
    prices: list[int]  # BTC's prices in order, one per hour

    def mine_hours(self, hours: int) -> None:
        self.anvil.rpc("evm_increaseTime", hours * HOUR)
        self.anvil.rpc("evm_mine")

    def set_index(self, symbol: str, price: int) -> None:
        self.admin.transact_call(self.contract.functions.setIndex(sym(symbol), price, 0))


def start_feeds(anvil: Devchain, tmp_path_factory: pytest.TempPathFactory, name: str, params_hash: bytes) -> Feeds:
    """Deploy the contracts and move chain time to 10 s before a sampling point (the next write lands 10 s after
    the point before it)."""
    deployment = deploy(anvil.url, bytes.fromhex(DEV_KEYS[0][2:]), params_hash=params_hash, round_period=10,
                        finality_depth=2)  # fmt: skip
    path = tmp_path_factory.mktemp(name) / "deployment.json"
    deployment.save(path)
    client = ChainClient([anvil.url])
    contract = contract_at(list(load_artifact("MarketFeeds").abi), deployment.contracts["MarketFeeds"])
    now = client.get_block("latest").timestamp
    first = (now // HOUR + 2) * HOUR
    anvil.rpc("evm_increaseTime", first - HOUR + 10 - now)  # the first update lands 10 s after a point
    anvil.rpc("evm_mine")
    return Feeds(anvil, client, Transmitter(client, DEV_KEYS[0]), deployment, path, contract, first, [])


@pytest.fixture(scope="module")
def feeds(anvil: Devchain, tmp_path_factory: pytest.TempPathFactory) -> Feeds:
    """BTC set 12 times, once an hour 10 s after each sampling point; ETH set every other hour."""
    f = start_feeds(anvil, tmp_path_factory, "policy", b"\1" * 32)
    rng = random.Random(18)
    price = 60_000 * 10**8
    for hour in range(12):
        price = price * (1000 + rng.randint(-60, 60)) // 1000
        f.prices.append(price)
        f.set_index("BTC", price)
        if hour % 2 == 0:
            f.set_index("ETH", 3_000 * 10**8 + hour * 10**8)
        f.mine_hours(1)
    return f


def test_index_updates_in_chain_order_and_paged(feeds: Feeds) -> None:
    head = feeds.client.block_number()
    address = feeds.deployment.contracts["MarketFeeds"]
    everything = read_index_updates(feeds.client, address, head)
    assert [u.underlying for u in everything[:3]] == ["BTC", "ETH", "BTC"]
    btc = read_index_updates(feeds.client, address, head, underlying="BTC")
    assert [u.price for u in btc] == feeds.prices
    assert [u for u in everything if u.underlying == "BTC"] == btc
    assert read_index_updates(feeds.client, address, head, page_blocks=3) == everything  # paging changes nothing
    times = [u.time for u in everything]
    assert times == sorted(times)
    assert all(0 < u.time - (feeds.first_point - HOUR) - HOUR * i < 60 for i, u in enumerate(btc))  # hourly


def test_cli_rpc_equals_history(feeds: Feeds, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    params_file = tmp_path / "params.toml"
    params_file.write_text(policy_document())
    common = ["--params", str(params_file), "--underlying", "BTC", "--json"]
    rpc = ["policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file), *common]
    assert main(rpc) == 0
    from_chain = json.loads(capsys.readouterr().out)
    # the point (first + h hours) samples the update written 10 s after (first + (h - 1) hours)
    rows = [f"{feeds.first_point + h * HOUR},{p // 10**8}.{p % 10**8:08d}" for h, p in enumerate(feeds.prices)]
    history = tmp_path / "history.csv"
    history.write_text("time,price\n" + "\n".join(rows) + "\n")
    assert main(["policy", "--history", str(history), *common]) == 0
    from_csv = json.loads(capsys.readouterr().out)
    assert len(from_chain["samples"]) == len(feeds.prices)
    assert from_chain == from_csv  # the same samples, the same states, the same checkpoint


def test_cli_rpc_to_block_is_the_round_at_that_block(
    feeds: Feeds, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "params.toml"
    params_file.write_text(policy_document())
    btc = read_index_updates(feeds.client, feeds.deployment.contracts["MarketFeeds"], feeds.client.block_number(),
                             underlying="BTC")  # fmt: skip
    block = btc[5].block_number  # the 6th update's block: its time is 10 s after the 5th point
    argv = ["policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file), "--params",
            str(params_file), "--to-block", str(block), "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert [s["time"] for s in out["samples"]] == [feeds.first_point + h * HOUR for h in range(5)]
    params = parse_params(policy_document())
    state = read_policy_round(feeds.client, feeds.deployment, params, block).state_of("BTC")
    assert state is not None and out["checkpoint"] == "0x" + state.canonical_bytes.hex()  # the node's state at B


def test_cli_rpc_refuses_a_stale_index_naming_the_point(
    feeds: Feeds, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    params_file = tmp_path / "params.toml"
    params_file.write_text(policy_document())
    # ETH is written every other hour: with a one-hour limit its index is stale at every second point
    argv = ["policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file), "--params",
            str(params_file), "--underlying", "ETH", "--max-age", str(HOUR)]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    stale_point = feeds.first_point + HOUR  # ETH's second point: its last update is then 2 h old
    assert f"no fresh index at sampling point {stale_point}" in err
    assert main([*argv[:-2], "--underlying", "SOL"]) == 2
    assert "SOL has no IndexSet log" in capsys.readouterr().err


# --- the node's tracker -------------------------------------------------------------------------------------------


def blocks_of(feeds: Feeds) -> list[int]:
    """Return the block of every BTC update (each a possible anchor)."""
    updates = read_index_updates(feeds.client, feeds.deployment.contracts["MarketFeeds"], feeds.client.block_number(),
                                 underlying="BTC")  # fmt: skip
    return [u.block_number for u in updates]


async def tracker_at(tracker: PolicyTracker, client: ChainClient, block: int) -> Any:
    header = client.get_block(block)
    return await tracker.at(block, header.hash, header.timestamp)


def test_tracker_resumes_to_the_recomputed_states(feeds: Feeds, tmp_path: pathlib.Path) -> None:
    params = parse_params(policy_document(max_age=3 * HOUR))
    anchors = blocks_of(feeds)[2::3]
    db = tmp_path / "policy.sqlite"

    async def run() -> list[Any]:
        tracker = PolicyTracker(feeds.client, feeds.deployment, params, db)
        rounds = [await tracker_at(tracker, feeds.client, b) for b in anchors[:2]]
        tracker.close()
        restarted = PolicyTracker(feeds.client, feeds.deployment, params, db)  # a restart resumes from the file
        rounds += [await tracker_at(restarted, feeds.client, b) for b in anchors[2:]]
        assert restarted.refused_checkpoints == 0
        restarted.close()
        return rounds

    rounds = trio.run(run)
    for block, got in zip(anchors, rounds, strict=True):
        fresh = read_policy_round(feeds.client, feeds.deployment, params, block)
        assert got == fresh  # resuming equals recomputing, bit for bit
        assert got.policy_hash == compute_policy_hash(fresh.states)
        assert {s.underlying for s in got.states} == {"BTC", "ETH"}
    assert rounds[-1].state_of("BTC").count > rounds[0].state_of("BTC").count  # type: ignore[union-attr]


@pytest.mark.parametrize("damage", ["garbage", "other-params", "other-block-hash", "truncated", "bit-flip"])
def test_tracker_refuses_a_bad_checkpoint_and_recomputes(feeds: Feeds, tmp_path: pathlib.Path, damage: str) -> None:
    params = parse_params(policy_document(max_age=3 * HOUR))
    anchors = blocks_of(feeds)
    db = tmp_path / "policy.sqlite"

    async def first() -> None:
        tracker = PolicyTracker(feeds.client, feeds.deployment, params, db)
        await tracker_at(tracker, feeds.client, anchors[4])
        tracker.close()

    trio.run(first)
    with PolicyCheckpointStore(db) as store:
        data = store.load()
        assert data is not None
        checkpoint = decode_checkpoint(params, data)
        if damage == "garbage":
            data = b"\x07" * 200
        elif damage == "truncated":
            data = data[:-32]
        elif damage == "other-params":
            other = parse_params(policy_document(max_age=3 * HOUR, decay="0.91"))
            data = encode_checkpoint(dataclasses.replace(checkpoint, params_hash=other.params_hash))
        elif damage == "other-block-hash":  # a checkpoint of a history the chain no longer has (a reorg, another anvil)
            data = encode_checkpoint(dataclasses.replace(checkpoint, block_hash=b"\x42" * 32))
        store.save(data)
        if damage == "bit-flip":  # the disk flips a bit of BTC's last price: still a canonical encoding
            btc = checkpoint.tracks[0]
            assert btc.underlying == "BTC" and btc.last_update is not None
            last = dataclasses.replace(btc.last_update, price=btc.last_update.price ^ 1)
            tracks = (dataclasses.replace(btc, last_update=last), *checkpoint.tracks[1:])
            flipped = encode_checkpoint(dataclasses.replace(checkpoint, tracks=tracks))
            assert len(flipped) == len(data) and decode_checkpoint(params, flipped)  # only the digest catches it
            store._db.execute("UPDATE policy_checkpoint SET data = ? WHERE id = 1", (flipped,))

    async def resume() -> Any:
        tracker = PolicyTracker(feeds.client, feeds.deployment, params, db)
        got = await tracker_at(tracker, feeds.client, anchors[9])
        assert tracker.refused_checkpoints == 1
        tracker.close()
        return got

    got = trio.run(resume)
    assert got == read_policy_round(feeds.client, feeds.deployment, params, anchors[9])
    with PolicyCheckpointStore(db) as store:  # the refused checkpoint was replaced by a good one
        data = store.load()
        assert data is not None and decode_checkpoint(params, data).block_number == anchors[9]


def test_a_stale_index_refuses_the_round_naming_the_underlying(feeds: Feeds) -> None:
    params: RiskParams = parse_params(policy_document(max_age=HOUR))  # ETH is stale at every other point
    with pytest.raises(PolicyHistoryError, match=r"policy\.ETH: no fresh index at sampling point"):
        read_policy_round(feeds.client, feeds.deployment, params, feeds.client.block_number())


# --- pmoracle dispute policy ----------------------------------------------------------------------------------


class NodeStub:
    """A node's /v1/policy on a real socket, serving whatever JSON the test sets (honest or not)."""

    def __init__(self) -> None:
        self.bodies: dict[int, dict[str, Any]] = {}
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                block = self.path.removeprefix("/v1/policy/")
                body = stub.bodies.get(int(block)) if block.isdigit() else None
                data = json.dumps(body if body is not None else {"error": "not kept"}).encode()
                self.send_response(200 if body is not None else 404)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def node_stub() -> Iterator[NodeStub]:
    stub = NodeStub()
    yield stub
    stub.close()


def test_dispute_policy_recomputes_and_names_the_underlying(
    feeds: Feeds, node_stub: NodeStub, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = policy_document(max_age=3 * HOUR)
    params_file = tmp_path / "params.toml"
    params_file.write_text(text)
    params = parse_params(text)
    block = blocks_of(feeds)[8]
    honest = read_policy_round(feeds.client, feeds.deployment, params, block)
    argv = ["dispute", "policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file),
            "--params", str(params_file), "--round", str(block)]  # fmt: skip

    assert main(argv) == 0  # without a node: the recomputed policy
    assert f"round {block}: policy hash 0x{honest.policy_hash.hex()}" in capsys.readouterr().out

    node_stub.bodies[block] = policy_round_to_json(honest)
    assert main([*argv, "--node", node_stub.url]) == 0
    assert "the policy holds" in capsys.readouterr().out

    btc = honest.state_of("BTC")
    assert btc is not None
    lied = dataclasses.replace(btc, scan_range=btc.scan_range + 1)  # one part in 1e9, still within the bounds
    tampered = PolicyRound(block, tuple(lied if s.underlying == "BTC" else s for s in honest.states))
    node_stub.bodies[block] = {**policy_round_to_json(tampered), "policyHash": "0x" + honest.policy_hash.hex()}
    assert main([*argv, "--node", node_stub.url]) == 1
    out = capsys.readouterr().out
    assert f"MISMATCH BTC: recomputed range {btc.scan_range}" in out and "MISMATCH ETH" not in out

    without_eth = PolicyRound(block, tuple(s for s in honest.states if s.underlying != "ETH"))
    node_stub.bodies[block] = policy_round_to_json(without_eth)
    assert main([*argv, "--node", node_stub.url, "--json"]) == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["holds"] is False
    assert [d["underlying"] for d in verdict["differences"]] == ["ETH"]
    assert verdict["differences"][0]["publishedStateHash"] is None

    node_stub.bodies[block] = {**policy_round_to_json(honest), "policyHash": "0x" + "11" * 32}  # states right
    assert main([*argv, "--node", node_stub.url]) == 1
    assert "MISMATCH policy hash" in capsys.readouterr().out

    assert main([*argv[:-1], str(block - 1), "--node", node_stub.url]) == 2  # a round the node does not keep
    assert "--node" in capsys.readouterr().err


ETH_OVERRIDE = '\n[policy.underlying.ETH]\nsigmas = "3"\nmin_scan_range = "0.04"\n'


def test_per_underlying_overrides_in_the_tracker_the_tool_and_the_dispute(
    feeds: Feeds, node_stub: NodeStub, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """ETH's [policy.underlying.ETH] drives ETH's state (as if the section had its values) and leaves BTC's as it
    was; the node's tracker, `pmoracle policy --underlying` and `dispute policy` all apply it."""
    plain = parse_params(policy_document(max_age=3 * HOUR))
    text = policy_document(max_age=3 * HOUR) + ETH_OVERRIDE
    params = parse_params(text)
    as_section = parse_params(
        policy_document(max_age=3 * HOUR).replace('sigmas = "5"', 'sigmas = "3"').replace(
            'min_scan_range = "0.01"', 'min_scan_range = "0.04"')
    )  # fmt: skip
    block = blocks_of(feeds)[8]
    got = read_policy_round(feeds.client, feeds.deployment, params, block)
    assert got.state_of("BTC") == read_policy_round(feeds.client, feeds.deployment, plain, block).state_of("BTC")
    assert got.state_of("ETH") == read_policy_round(feeds.client, feeds.deployment, as_section, block).state_of("ETH")
    assert got.policy_hash != read_policy_round(feeds.client, feeds.deployment, plain, block).policy_hash

    async def tracked() -> Any:
        tracker = PolicyTracker(feeds.client, feeds.deployment, params, tmp_path / "policy.sqlite")
        try:
            return await tracker_at(tracker, feeds.client, block)
        finally:
            tracker.close()

    assert trio.run(tracked) == got  # the node's shell

    params_file = tmp_path / "params.toml"
    params_file.write_text(text)
    argv = ["policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file), "--params",
            str(params_file), "--to-block", str(block), "--underlying", "ETH", "--json"]  # fmt: skip
    assert main(argv) == 0
    eth = got.state_of("ETH")
    assert eth is not None and json.loads(capsys.readouterr().out)["checkpoint"] == "0x" + eth.canonical_bytes.hex()

    dispute = ["dispute", "policy", "--rpc", feeds.anvil.url, "--deployment", str(feeds.deployment_file),
               "--params", str(params_file), "--round", str(block), "--node", node_stub.url]  # fmt: skip
    node_stub.bodies[block] = policy_round_to_json(got)
    assert main(dispute) == 0
    assert "the policy holds" in capsys.readouterr().out
    # a node that ignored the override publishes ETH's state under the section's parameters: refused, naming ETH
    node_stub.bodies[block] = policy_round_to_json(read_policy_round(feeds.client, feeds.deployment, plain, block))
    assert main(dispute) == 2
    assert "is not the hash of these parameters for ETH" in capsys.readouterr().err


# --- [policy.vol]: the vol shift from the SmileSet logs -------------------------------------------------------

VOL_SECTION = '\n[policy.vol]\ndecay = "0.9"\nsigmas = "3"\nseed_vol = "1.5"\nmin_shift = "0.05"\nmax_shift = "0.9"\n'
VOL_HOURS = 10


@dataclass
class VolFeeds:
    feeds: Feeds
    quotes: list[list[SmileQuote]]  # the smiles written in each hour, with their blocks' timestamps


def vol_document() -> str:
    return policy_document(max_age=2 * HOUR) + VOL_SECTION


@pytest.fixture(scope="module")
def vol_feeds(anvil: Devchain, tmp_path_factory: pytest.TempPathFactory) -> VolFeeds:
    """Another MarketFeeds: BTC's index and two smiles (7 and 60 days, around the 30-day tenor) every hour, 10 s
    after each sampling point; the implied vol doubles from the 5th hour."""
    f = start_feeds(anvil, tmp_path_factory, "policy-vol", b"\2" * 32)
    client, contract, first = f.client, f.contract, f.first_point
    quotes: list[list[SmileQuote]] = []
    expiry_short, expiry_long = first + 7 * 86400, first + 60 * 86400
    rng = random.Random(19)
    price = 60_000 * 10**8
    for hour in range(VOL_HOURS):
        price = price * (1000 + rng.randint(-30, 30)) // 1000
        f.prices.append(price)
        f.set_index("BTC", price)
        vol = (0.6 if hour < 5 else 1.2) * (1 + rng.uniform(-0.05, 0.05))
        written = []
        for expiry, skew in ((expiry_short, 0.9), (expiry_long, 1.1)):
            a = round(vol * vol * skew * (expiry - first) / (365 * 86400) * 10**18)
            args = (expiry, a, 5 * 10**16, -3 * 10**17, 10**16, 2 * 10**17)
            receipt = f.admin.transact_call(contract.functions.setSmile(sym("BTC"), *args))
            time = client.get_block(receipt.block_number).timestamp
            written.append(SmileQuote(*args, time))
        quotes.append(written)
        f.mine_hours(1)
    return VolFeeds(f, quotes)


def expected_vol_states(vf: VolFeeds, params: RiskParams, block: int) -> Any:
    """Return BTC's state at ``block`` from what the fixture wrote: point h samples hour h's index and smiles."""
    assert params.policy is not None
    until = vf.feeds.client.get_block(block).timestamp
    tenor = compute_iv_tenor_seconds(params.vol_tenor_days)
    samples = []
    for h in range(VOL_HOURS):
        point = vf.feeds.first_point + h * HOUR
        if point >= until:
            break
        iv = compute_reference_iv(vf.quotes[h], point, tenor, params.max_feed_age_seconds)
        samples.append(Sample(point, vf.feeds.prices[h], iv))
    return compute_policy_state(params.policy, "BTC", samples)


def test_vol_policy_gives_the_shift_the_state_machine_computes_from_the_smiles(vol_feeds: VolFeeds) -> None:
    f = vol_feeds.feeds
    params = parse_params(vol_document())
    blocks = blocks_of(f)
    got = read_policy_round(f.client, f.deployment, params, blocks[-1])
    btc = got.state_of("BTC")
    assert btc is not None and btc == expected_vol_states(vol_feeds, params, blocks[-1])
    assert btc.count == VOL_HOURS - 1 and btc.iv > 0
    earlier = read_policy_round(f.client, f.deployment, params, blocks[4]).state_of("BTC")
    assert earlier is not None and btc.vol_shift > earlier.vol_shift  # the doubled implied vol raised the shift
    effective = compute_effective_params(params, got.states)
    assert effective.vol_shift_of("BTC") == btc.vol_shift / RANGE_SCALE != params.vol_shift
    assert effective.params_hash != params.params_hash and effective.vol_shift_of("ETH") == params.vol_shift


def test_vol_policy_refuses_a_stale_smile_naming_the_underlying(vol_feeds: VolFeeds) -> None:
    f = vol_feeds.feeds
    text = vol_document().replace("max_feed_age_seconds = 7200", "max_feed_age_seconds = 5")
    params = parse_params(text)  # the index is 10 s old at each point (written just after the previous one)
    with pytest.raises(PolicyHistoryError, match=r"policy\.BTC: "):
        read_policy_round(f.client, f.deployment, params, blocks_of(f)[3])


def test_vol_tracker_resumes_and_refuses_a_version_1_checkpoint(vol_feeds: VolFeeds, tmp_path: pathlib.Path) -> None:
    f = vol_feeds.feeds
    params = parse_params(vol_document())
    anchors = blocks_of(f)[2::3]
    db = tmp_path / "policy.sqlite"

    async def run() -> list[Any]:
        tracker = PolicyTracker(f.client, f.deployment, params, db)
        rounds = [await tracker_at(tracker, f.client, b) for b in anchors[:2]]
        tracker.close()
        restarted = PolicyTracker(f.client, f.deployment, params, db)
        rounds += [await tracker_at(restarted, f.client, b) for b in anchors[2:]]
        assert restarted.refused_checkpoints == 0
        restarted.close()
        return rounds

    rounds = trio.run(run)
    for block, got in zip(anchors, rounds, strict=True):
        assert got == read_policy_round(f.client, f.deployment, params, block)  # resuming equals recomputing
    with PolicyCheckpointStore(db) as store:
        data = store.load()
        assert data is not None
        checkpoint = decode_checkpoint(params, data)
        assert checkpoint.tracks[0].smiles  # the live smiles travel in the checkpoint
        # the checkpoint as version 1 wrote it: no smiles; a node upgraded in place must not resume from it
        tracks = []
        for t in checkpoint.tracks:
            assert t.last_update is not None
            state = b"" if t.state is None else t.state.canonical_bytes
            tracks.append((t.underlying, t.next_point, t.last_update.time, t.last_update.price, state))
        old = abi_encode(
            ("uint256", "uint256", "address", "bytes32", "uint256", "bytes32",
             "(string,uint256,uint256,uint256,bytes)[]"),
            (1, checkpoint.chain_id, to_checksum_address(checkpoint.feeds), checkpoint.params_hash,
             checkpoint.block_number, checkpoint.block_hash, tracks),
        )  # fmt: skip
        store.save(old)

    async def resume() -> Any:
        tracker = PolicyTracker(f.client, f.deployment, params, db)
        got = await tracker_at(tracker, f.client, blocks_of(f)[-1])
        assert tracker.refused_checkpoints == 1
        tracker.close()
        return got

    assert trio.run(resume) == read_policy_round(f.client, f.deployment, params, blocks_of(f)[-1])


def test_vol_policy_in_the_cli_and_the_dispute_tool(
    vol_feeds: VolFeeds, node_stub: NodeStub, tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    f = vol_feeds.feeds
    text = vol_document()
    params_file = tmp_path / "params.toml"
    params_file.write_text(text)
    params = parse_params(text)
    block = blocks_of(f)[-1]
    honest = read_policy_round(f.client, f.deployment, params, block)
    btc = honest.state_of("BTC")
    assert btc is not None

    argv = ["policy", "--rpc", f.anvil.url, "--deployment", str(f.deployment_file), "--params", str(params_file),
            "--to-block", str(block), "--json"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["checkpoint"] == "0x" + btc.canonical_bytes.hex()  # the node's state, vol shift included
    shifts = [s["state"]["vol_shift"] for s in out["samples"]]
    assert shifts[-1] == format_fraction(btc.vol_shift) and len(set(shifts)) > 1
    assert main(argv[:-1]) == 0
    assert "vol shift" in capsys.readouterr().out
    policy_only = tmp_path / "policy.toml"
    policy_only.write_text(POLICY + VOL_SECTION)  # no vol.tenor_days: the IV's tenor is unknown
    assert main([*argv[:5], "--params", str(policy_only)]) == 2
    assert "vol.tenor_days" in capsys.readouterr().err

    dispute = ["dispute", "policy", "--rpc", f.anvil.url, "--deployment", str(f.deployment_file),
               "--params", str(params_file), "--round", str(block), "--node", node_stub.url]  # fmt: skip
    node_stub.bodies[block] = policy_round_to_json(honest)
    assert main(dispute) == 0
    out = capsys.readouterr().out
    assert "the policy holds" in out and f"vol shift {btc.vol_shift / 1e9:.4%}" in out
    lied = dataclasses.replace(btc, vol_shift=btc.vol_shift + 1)  # one part in 1e9 more vol shock
    node_stub.bodies[block] = {**policy_round_to_json(PolicyRound(block, (lied,))),
                               "policyHash": "0x" + honest.policy_hash.hex()}  # fmt: skip
    assert main(dispute) == 1
    assert f"MISMATCH BTC: recomputed range {btc.scan_range}, vol shift {btc.vol_shift}," in capsys.readouterr().out
    assert main([*dispute, "--json"]) == 1
    (difference,) = json.loads(capsys.readouterr().out)["differences"]
    assert difference["recomputedVolShift"] == str(btc.vol_shift)
    assert difference["publishedVolShift"] == str(btc.vol_shift + 1)
