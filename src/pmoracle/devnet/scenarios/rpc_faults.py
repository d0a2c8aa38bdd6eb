"""RPC fault scenarios: node 0's primary endpoint errors, hangs and lags behind a proxy; anvil is its fallback."""

from __future__ import annotations

import re
import signal
import time
from pathlib import Path

from pmoracle.devnet.cluster import Devnet, NodeProcess
from pmoracle.devnet.rpc_proxy import RpcFaultProxy
from pmoracle.devnet.scenarios.common import (
    ROUND_TIMEOUT,
    ScenarioResult,
    attested_digest,
    protection_records,
    read_metrics,
    restart,
    run_scenario,
)


def reconfigure_rpc(devnet: Devnet, node: NodeProcess, urls: list[str], timeout: float, probe: float = 2.0) -> None:
    """Stop ``node``, point its config at ``urls`` (in preference order) with ``timeout``, and start it again."""
    node.kill(signal.SIGTERM)
    path = node.home / "node.toml"
    text = path.read_text()
    text = re.sub(r"rpc_urls = \[.*\]", "rpc_urls = [" + ", ".join(f'"{u}"' for u in urls) + "]", text)
    text = re.sub(r"probe_interval = .*\n", "", text)
    text = re.sub(r"rpc_timeout = .*", f"rpc_timeout = {timeout}\nprobe_interval = {probe}", text)
    path.write_text(text)
    restart(devnet, node)


def scenario_rpc_faults(run_dir: Path, n: int = 4, phase_rounds: int = 2, phase_seconds: float = 8.0
                        ) -> ScenarioResult:  # fmt: skip
    """Node 0's primary RPC (a proxy) returns errors, hangs, lags, then heals; anvil is its fallback URL.

    Measures, per phase, the rounds node 0 signed, the RPC errors it counted for the proxy, the requests it sent to
    the proxy and the proxy's lag at its last endpoint probe (every 2 s); afterwards checks that every digest in node
    0's slashing-protection store for an attested round is the attested one.
    """

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        node = devnet.nodes[0]
        proxy = RpcFaultProxy(devnet.chain.url)
        try:
            reconfigure_rpc(devnet, node, [proxy.url, devnet.chain.url], timeout=1.0)
            devnet.run_rounds(1, ROUND_TIMEOUT)
            phases = {}
            for mode in ("error", "hang", "lag", "ok"):
                proxy.mode = mode
                before = read_metrics(node)
                started = time.monotonic()
                seen = len(devnet.attested)
                served_before = proxy.requests[mode]

                def phase_done(d: Devnet, t: float = started, k: int = seen) -> bool:
                    return time.monotonic() - t >= phase_seconds and len(d.attested) >= k + phase_rounds

                what = f"{phase_rounds} rounds in the {mode} phase"
                devnet.run_until(phase_done, ROUND_TIMEOUT * phase_rounds, what=what)
                after = read_metrics(node)
                served = proxy.requests[mode] - served_before
                host = proxy.url.split("//")[1]
                errors = sum(v - before.get(k, 0) for k, v in after.items()
                             if k.startswith("pmoracle_rpc_errors_total") and host in k)  # fmt: skip
                phases[mode] = {
                    "signed": after.get("pmoracle_rounds_signed_total", 0)
                    - before.get("pmoracle_rounds_signed_total", 0),
                    "computed": after.get("pmoracle_rounds_computed_total", 0)
                    - before.get("pmoracle_rounds_computed_total", 0),
                    "proxy_errors": errors,
                    "seconds": round(time.monotonic() - started, 1),
                    "rounds_attested": len(devnet.attested) - seen,
                    # requests node 0 sent to the proxy in this phase, and the proxy's lag at node 0's last probe
                    "proxy_requests": served,
                    "proxy_lag_probed": max((v for k, v in after.items()
                                             if k.startswith("pmoracle_rpc_endpoint_lag_blocks") and host in k),
                                            default=None),
                }  # fmt: skip
            if phases["ok"]["signed"] == 0:  # recovery: wait for node 0 to sign again on its primary
                signed = read_metrics(node).get("pmoracle_rounds_signed_total", 0)
                devnet.run_until(lambda d: read_metrics(node).get("pmoracle_rounds_signed_total", 0) > signed,
                                 ROUND_TIMEOUT * 2, what="node 0 signing after the proxy healed")  # fmt: skip
                phases["ok"]["signed"] = 1
            result.extra["phases"] = phases
            result.extra["proxy_requests"] = dict(proxy.requests)
        finally:
            proxy.close()

    def check_digests(devnet: Devnet, result: ScenarioResult) -> None:
        wrong = 0
        for block, digests in protection_records(devnet.nodes[0]).items():
            attested = attested_digest(devnet, block)
            wrong += sum(1 for d in digests if attested is not None and d != attested)
        result.extra["wrong_digests"] = wrong
        result.extra["signed_rounds_node0"] = len(protection_records(devnet.nodes[0]))

    def body_and_check(devnet: Devnet, result: ScenarioResult) -> None:
        body(devnet, result)
        check_digests(devnet, result)

    return run_scenario("rpc-faults", n,
                        "node 0: primary RPC errors, hangs (1 s timeout), lags 8 blocks; anvil fallback", run_dir, (),
                        body_and_check)  # fmt: skip
