"""The HTTP API on a real 127.0.0.1 socket: routes, status codes, and bad requests that never stop it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace
from typing import Any

import h11
import pytest
import trio
from eth_utils import to_checksum_address
from prometheus_client.parser import text_string_to_metric_families

from pmoracle.consensus.commitments import COVER_KEY, RiskArrayTree, RiskRow, scenario_key
from pmoracle.consensus.merkle import AccountLeaf, MerkleTree, verify_proof
from pmoracle.node.api import (
    ApiLimits,
    HealthReport,
    MarginProof,
    RiskArrays,
    RoundLeaves,
    assess_health,
    run_api,
)
from pmoracle.node.dispute import leaves_prove_root, parse_leaves_document, parse_rows_document
from pmoracle.node.metrics import NodeMetrics, create_node_metrics

LEAVES = [
    AccountLeaf(bytes([i]) * 20, initial_margin=i * 10**21, maintenance_margin=i * 10**20, equity=(5 - i) * 10**21)
    for i in range(1, 8)
]
TREE = MerkleTree(LEAVES)
ANCHOR_BLOCK = 120
# an instrument row, the cover row and a scenario row, as a round commits them
RISK_TREE = RiskArrayTree(
    [RiskRow(3, 25_000, 40, (-1_200, 0, 2**63 - 1)), RiskRow(COVER_KEY, 10**6, 0, (10**6,) * 3),
     RiskRow(scenario_key(0), 10**9, 0, (-5, 0, 5))]
)  # fmt: skip


@dataclass
class NodeState:
    attested: bool = True
    fail: bool = False
    head: int = 125
    peers: int = 3
    tree: MerkleTree = TREE  # the round's tree /v1/leaves serves

    def health(self) -> HealthReport:
        if self.fail:
            raise RuntimeError("provider bug")
        return assess_health(
            self.head, ANCHOR_BLOCK if self.attested else None, self.peers, min_peers=2, max_lag_blocks=20
        )

    def policy(self, block: int | None) -> dict[str, Any] | None:
        return {"blockNumber": ANCHOR_BLOCK} if block in (None, ANCHOR_BLOCK) else None

    def risk_arrays(self, block: int | None) -> RiskArrays | None:
        if block not in (None, ANCHOR_BLOCK):
            return None
        return RiskArrays(ANCHOR_BLOCK, RISK_TREE.root, tuple(RISK_TREE.rows))

    async def leaves(self, block: int | None) -> RoundLeaves | None:
        await trio.sleep(0)  # async providers are awaited
        if block not in (None, ANCHOR_BLOCK):
            return None
        return RoundLeaves(ANCHOR_BLOCK, self.tree.root, tuple(self.tree.leaves))

    async def margin(self, account: bytes) -> MarginProof | None:
        await trio.sleep(0)  # async providers are awaited
        if not self.attested or account not in {leaf.account for leaf in LEAVES}:
            return None
        return MarginProof(TREE.leaf_of(account), ANCHOR_BLOCK, TREE.root, tuple(TREE.proof(account)))


@dataclass
class Server:
    port: int
    state: NodeState
    metrics: NodeMetrics


async def start(nursery: trio.Nursery, limits: ApiLimits | None = None) -> Server:
    state, metrics = NodeState(), create_node_metrics()
    port = await nursery.start(
        lambda task_status: run_api(
            "127.0.0.1",
            0,
            metrics=metrics,
            health=state.health,
            margin=state.margin,
            policy=state.policy,
            risk_arrays=state.risk_arrays,
            leaves=state.leaves,
            limits=limits or ApiLimits(),
            task_status=task_status,
        )
    )
    return Server(port, state, metrics)


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    async with trio.open_nursery() as nursery:
        yield await start(nursery)
        nursery.cancel_scope.cancel()


async def exchange(port: int, raw: bytes, *, eof: bool = True) -> bytes:
    """Send raw bytes (then EOF unless told not to), return everything the server sends until it closes."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(raw)
        if eof:
            await stream.send_eof()
        chunks = []
        with trio.fail_after(5):
            while chunk := await stream.receive_some(65536):
                chunks.append(chunk)
    return b"".join(chunks)


async def get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request with an h11 client; return (status, headers, body)."""
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method=method, target=path, headers=[("host", "127.0.0.1"), ("connection", "close")])
    raw = await exchange(port, conn.send(request) + conn.send(h11.EndOfMessage()))
    conn.receive_data(raw)
    conn.receive_data(b"")
    status, headers, body = 0, {}, b""
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            headers = {k.decode(): v.decode() for k, v in event.headers}
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            return status, headers, body


async def get_json(port: int, path: str) -> tuple[int, Any]:
    status, headers, body = await get(port, path)
    assert headers["content-type"] == "application/json"
    return status, json.loads(body)


async def test_metrics_in_prometheus_text_format(server: Server) -> None:
    server.metrics.rounds_signed.inc(3)
    server.metrics.gossip_messages_rejected.labels(reason="wrong_round").inc()
    status, headers, body = await get(server.port, "/metrics")
    assert status == 200 and headers["content-type"].startswith("text/plain; version=")
    values = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }
    assert values[("pmoracle_rounds_signed_total", ())] == 3
    assert values[("pmoracle_gossip_messages_rejected_total", (("reason", "wrong_round"),))] == 1


async def test_health_ok_and_degraded(server: Server) -> None:
    assert await get_json(server.port, "/health") == (
        200,
        {"status": "ok", "headBlock": 125, "lastAttestedRound": 120, "peers": 3, "lag": 5, "reasons": []},
    )
    server.state.peers, server.state.head = 1, 200
    status, body = await get_json(server.port, "/health")
    assert status == 503 and body["status"] == "degraded" and body["lag"] == 80
    assert body["reasons"] == ["1 peers < 2", "last attested round is 80 blocks behind the head (> 20)"]


async def test_margin_returns_values_and_a_proof_that_verifies(server: Server) -> None:
    leaf = LEAVES[5]  # equity negative: an insolvent account
    for spelling in (to_checksum_address(leaf.account), "0x" + leaf.account.hex(), "0x" + leaf.account.hex().upper()):
        status, body = await get_json(server.port, f"/v1/margin/{spelling}?fresh=1")
        assert status == 200
        assert body["account"] == to_checksum_address(leaf.account)
        assert (body["initialMargin"], body["maintenanceMargin"], body["equity"]) == (
            str(6 * 10**21),
            str(6 * 10**20),
            str(-(10**21)),
        )
        assert body["blockNumber"] == ANCHOR_BLOCK and body["accountsRoot"] == "0x" + TREE.root.hex()
        served = AccountLeaf(
            bytes.fromhex(body["account"][2:]),
            int(body["initialMargin"]),
            int(body["maintenanceMargin"]),
            int(body["equity"]),
        )
        assert verify_proof(
            bytes.fromhex(body["accountsRoot"][2:]), served, [bytes.fromhex(p[2:]) for p in body["proof"]]
        )


async def test_margin_errors(server: Server) -> None:
    assert (await get_json(server.port, "/v1/margin/0x" + "99" * 20))[0] == 404
    checksum = to_checksum_address(b"\xab" * 20)
    bad_checksum = checksum[:2] + checksum[2:].swapcase()
    for bad in ("0x1234", "zz" * 21, "0x" + "g1" * 20, bad_checksum, "0x" + "01" * 20 + "/extra", "%00"):
        status, body = await get_json(server.port, f"/v1/margin/{bad}")
        assert status == 400, bad
        assert "malformed account address" in body["error"]
    server.state.attested = False
    status, body = await get_json(server.port, "/v1/margin/" + to_checksum_address(LEAVES[0].account))
    assert status == 404 and "no round attested yet" in body["error"]


async def test_bad_requests_get_errors_and_the_server_keeps_serving(server: Server) -> None:
    assert (await get_json(server.port, "/nope"))[0] == 404
    status, headers, _ = await get(server.port, "/health", method="POST")
    assert status == 405 and headers["allow"] == "GET, HEAD"
    status, headers, body = await get(server.port, "/health", method="HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert (await exchange(server.port, b"\x16\x03\x01 garbage\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
    huge_header = b"GET /health HTTP/1.1\r\nhost: x\r\nx-big: " + b"a" * 20000 + b"\r\n\r\n"
    assert (await exchange(server.port, huge_header)).startswith(b"HTTP/1.1 431 ")
    big_body = b"GET /health HTTP/1.1\r\nhost: x\r\ncontent-length: 100000\r\n\r\n" + b"x" * 100000
    assert (await exchange(server.port, big_body)).startswith(b"HTTP/1.1 413 ")
    assert await exchange(server.port, b"") == b""  # connect and close without a word
    server.state.fail = True
    status, body = await get_json(server.port, "/health")
    assert status == 500 and body == {"error": "internal error"}
    server.state.fail = False
    assert (await get_json(server.port, "/health"))[0] == 200


async def test_keep_alive_serves_several_requests_on_one_connection(server: Server) -> None:
    request = b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n"
    last = (
        b"GET /v1/margin/0x" + LEAVES[0].account.hex().encode() + b" HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"
    )
    raw = await exchange(server.port, request + request + last)
    assert raw.count(b"HTTP/1.1 200 ") == 3


async def test_slow_clients_time_out_and_connections_are_bounded() -> None:
    limits = ApiLimits(request_timeout=0.3, idle_timeout=0.3, max_connections=1)
    async with trio.open_nursery() as nursery:
        server = await start(nursery, limits)
        # A partial request is answered with 408 once the request timeout passes.
        assert (await exchange(server.port, b"GET /hea", eof=False)).startswith(b"HTTP/1.1 408 ")
        # While one connection is held, a second one is refused with 503 rather than queued.
        held = await trio.open_tcp_stream("127.0.0.1", server.port)
        await trio.sleep(0.05)
        assert (await exchange(server.port, b"GET /health HTTP/1.1\r\nhost: x\r\n\r\n")).startswith(b"HTTP/1.1 503 ")
        # The silent connection is closed after the timeout, freeing the slot.
        with trio.fail_after(5):
            assert await held.receive_some(100) == b""
        await held.aclose()
        assert (await get_json(server.port, "/health"))[0] == 200
        nursery.cancel_scope.cancel()


def test_assess_health_without_head_or_round() -> None:
    report: Callable[..., HealthReport] = assess_health
    r = report(None, None, 0, min_peers=1, max_lag_blocks=10)
    assert r.status == "degraded" and r.lag is None
    assert r.reasons == ("no chain head seen", "0 peers < 1", "no attested round yet")


def test_assess_health_names_a_transmitter_balance_below_the_minimum() -> None:
    ok = assess_health(100, 95, 3, min_peers=1, max_lag_blocks=10, balance_wei=10**17, min_balance_wei=10**17)
    assert ok.status == "ok" and ok.reasons == ()
    unread = assess_health(100, 95, 3, min_peers=1, max_lag_blocks=10, balance_wei=None, min_balance_wei=10**17)
    assert unread.status == "ok"  # not read yet: no verdict
    low = assess_health(100, 95, 3, min_peers=1, max_lag_blocks=10, balance_wei=5 * 10**16, min_balance_wei=10**17)
    assert low.status == "degraded"
    assert low.reasons == ("transmitter balance 0.05 ETH < 0.1 ETH",)


async def test_policy_of_a_kept_round_or_the_latest(server: Server) -> None:
    assert await get_json(server.port, "/v1/policy/latest") == (200, {"blockNumber": ANCHOR_BLOCK})
    assert await get_json(server.port, f"/v1/policy/{ANCHOR_BLOCK}") == (200, {"blockNumber": ANCHOR_BLOCK})
    status, body = await get_json(server.port, "/v1/policy/7")
    assert status == 404 and "no policy kept" in body["error"]
    for bad in ("abc", "-1", "1" * 30, ""):
        status, body = await get_json(server.port, f"/v1/policy/{bad}")
        assert status == 400 and "malformed round" in body["error"], bad


async def test_policy_route_is_absent_without_a_provider() -> None:
    async with trio.open_nursery() as nursery:
        metrics = create_node_metrics()
        port = await nursery.start(
            lambda task_status: run_api(
                "127.0.0.1",
                0,
                metrics=metrics,
                health=NodeState().health,
                margin=NodeState().margin,
                task_status=task_status,
            )
        )
        assert (await get_json(port, "/v1/policy/latest"))[0] == 404
        assert (await get_json(port, "/v1/risk-arrays/latest"))[0] == 404
        # a node without the leaves route answers as for any unknown path: what a prover's fallback looks for
        assert await get_json(port, f"/v1/leaves/{ANCHOR_BLOCK}") == (404, {"error": "not found"})
        nursery.cancel_scope.cancel()


async def test_risk_arrays_of_a_kept_round_rebuild_its_root(server: Server) -> None:
    for which in ("latest", str(ANCHOR_BLOCK)):
        status, body = await get_json(server.port, f"/v1/risk-arrays/{which}")
        assert status == 200 and body["blockNumber"] == ANCHOR_BLOCK
        assert body["riskArraysRoot"] == "0x" + RISK_TREE.root.hex()
        rows = parse_rows_document(body)  # exactly what `dispute prove --rows` reads
        assert rows == RISK_TREE.rows and RiskArrayTree(rows).root == RISK_TREE.root
    await check_round_route_errors(server, "risk-arrays", "risk arrays")


async def check_round_route_errors(server: Server, route: str, what: str) -> None:
    """A ``/v1/{route}/{block|latest}`` route: 404 naming a round not kept, 400 for a malformed one, HEAD sizes."""
    status, body = await get_json(server.port, f"/v1/{route}/7")
    assert status == 404 and body["error"] == f"no {what} kept for round 7 (not computed, or too old)"
    for bad in ("abc", "-1", "1" * 30, "", "0x10"):
        status, body = await get_json(server.port, f"/v1/{route}/{bad}")
        assert status == 400 and "malformed round" in body["error"], bad
    status, headers, raw = await get(server.port, f"/v1/{route}/{ANCHOR_BLOCK}", method="HEAD")
    assert status == 200 and raw == b"" and int(headers["content-length"]) > 0


async def test_leaves_of_a_kept_round_rebuild_its_root_in_one_response(server: Server) -> None:
    for which in ("latest", str(ANCHOR_BLOCK)):
        status, headers, raw = await get(server.port, f"/v1/leaves/{which}")
        assert status == 200 and headers["content-type"] == "application/json"
        assert b" " not in raw  # compact
        body = json.loads(raw)
        assert body["blockNumber"] == ANCHOR_BLOCK and body["count"] == len(LEAVES)
        assert body["accountsRoot"] == "0x" + TREE.root.hex()
        assert body["fields"] == ["account", "initialMargin", "maintenanceMargin", "equity"]
        claimed = parse_leaves_document(body)  # exactly what `dispute prove --leaves` reads
        assert [c.leaf for c in claimed] == TREE.leaves  # in the tree's order
        assert all(c.proof is None for c in claimed) and leaves_prove_root(TREE.root, claimed)
    await check_round_route_errors(server, "leaves", "leaves")


async def test_leaves_of_a_round_recomputed_with_another_tree_are_not_served_from_the_cache(server: Server) -> None:
    # the encoded body is kept per (round, root): the same block with another tree (a reorged B) is encoded anew
    first = (await get_json(server.port, f"/v1/leaves/{ANCHOR_BLOCK}"))[1]
    other = MerkleTree([dataclass_replace(leaf, equity=leaf.equity + 1) for leaf in LEAVES])
    server.state.tree = other
    status, body = await get_json(server.port, f"/v1/leaves/{ANCHOR_BLOCK}")
    assert status == 200 and body["accountsRoot"] == "0x" + other.root.hex() != first["accountsRoot"]
    assert leaves_prove_root(other.root, parse_leaves_document(body))
    assert not leaves_prove_root(TREE.root, parse_leaves_document(body))


def test_policy_gauges() -> None:
    from pmoracle.node.metrics import export_policy
    from pmoracle.risk.policy import PolicyRound
    from tests.unit.risk.test_policy import round_states

    metrics = create_node_metrics()
    btc, eth = round_states()
    export_policy(metrics, PolicyRound(64, (btc, dataclass_replace(eth, stressed=True, vol_shift=123_000_000))))
    samples = {
        (s.name, s.labels.get("underlying")): s.value
        for family in text_string_to_metric_families(metrics.exposition().decode())
        for s in family.samples
    }
    assert samples[("pmoracle_policy_round", None)] == 64
    assert samples[("pmoracle_policy_scan_range", "BTC")] == btc.scan_range / 10**9
    assert samples[("pmoracle_policy_stressed", "ETH")] == 1
    assert samples[("pmoracle_policy_stressed", "BTC")] == (1 if btc.stressed else 0)
    assert samples[("pmoracle_policy_vol_shift", "ETH")] == 0.123
    assert samples[("pmoracle_policy_vol_shift", "BTC")] == 0  # no [policy.vol]: the document's shift
