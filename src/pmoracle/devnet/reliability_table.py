"""The Markdown table of ``docs/reliability.md``: one row per scenario run, and the page's header."""

from __future__ import annotations

from collections import Counter

from pmoracle.devnet.scenarios.common import ScenarioResult


def summarize(r: ScenarioResult) -> str:
    """Return the scenario-specific figures of ``r`` in one table cell."""
    x = r.extra
    parts = []
    if r.rewards:
        parts.append(f"reporter rewards {sum(r.rewards.values()) / 10**18:g} ETH")
    if r.stake_after and r.slashes:
        parts.append("stake after " + ", ".join(f"{r.stake_after[s] / 10**18:g}" for s in r.slashes) + " ETH of 10")
    if "late_releases" in x:
        parts.append(f"{x['late_releases']} late signature(s) released after attestation")
    if "killed" in x:
        parts.append("recoveries " + "/".join(f"{v:g}" for v in x["recoveries"]) + " s; two digests for one round: "
                     f"{sum(x['double_digests'].values())}")  # fmt: skip
    if "rejected" in x:
        totals: Counter[str] = Counter()
        for reasons in x["rejected"].values():
            totals.update(reasons)
        parts.append("rejected " + ", ".join(f"{k} {int(v)}" for k, v in sorted(totals.items())))
        parts.append(f"RSS first/last {x['rss_mib'][0]}/{x['rss_mib'][-1]} MiB")
    if "phases" in x:
        parts.append("node 0 signed/computed per phase " + ", ".join(
            f"{m} {int(p['signed'])}/{int(p['computed'])}" for m, p in x["phases"].items()) +
            f"; wrong digests {x['wrong_digests']}")  # fmt: skip
        parts.append("requests to the primary per phase " + ", ".join(
            f"{m} {p['proxy_requests']}" for m, p in x["phases"].items()) + "; its lag at the last probe " +
            ", ".join(f"{m} {'-' if p['proxy_lag_probed'] is None else int(p['proxy_lag_probed'])}"
                      for m, p in x["phases"].items()))  # fmt: skip
    if "deep" in x:
        sh, dp = x["shallow"], x["deep"]
        parts.append(f"shallow: old hash signed {sh['signed_old_hash']}, attested {sh['attested']}; deep (depth "
                     f"{dp['depth']}): old certificate -> {dp['old_cert_attest']}, re-signed {dp['signed_new_hash']}, "
                     f"next round {dp['next_attested']}")  # fmt: skip
    if "partition" in x:
        p = x["partition"]
        if "minority_messages_in" in p:  # cut in the kernel
            seen = f"reports reaching the minority {p['minority_messages_in']:.0f}"
        else:
            seen = f"minority peers {p['minority_peers']}"
        parts.append(f"during the cut: {p['rounds_attested']} rounds by the majority, {seen}, minority certificates "
                     f"{p['minority_certificates']}")  # fmt: skip
        if "after_heal_seconds_to_a_minority_signature" in x:
            parts.append(f"a round signed by the minority {x['after_heal_seconds_to_a_minority_signature']} s "
                         "after the heal")  # fmt: skip
    return "; ".join(parts) or "-"


def format_table(results: list[ScenarioResult]) -> str:
    """Return the Markdown reliability table."""
    lines = [
        "| scenario | n | injected | rounds attested (verified) | duplicate attestations | evidence posted "
        "| slashes | time to recover | wall time | measured details |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        slashes = ", ".join(f"{s[:8]}..: {c}" for s, c in r.slashes.items()) or "0"
        recover = f"{r.recover_seconds:.1f} s" if r.recover_seconds is not None else "-"
        if r.evidence_rounds is not None:
            recover += f" (evidence within {r.evidence_rounds} round(s))"
        lines.append(
            f"| {r.name} | {r.n} | {r.injected} | {r.rounds_attested} ({r.rounds_verified}) | "
            f"{r.duplicate_attestations} | {r.evidence_posted} | {slashes} | {recover} | {r.wall_seconds:.0f} s | "
            f"{summarize(r)} |"
        )
    return "\n".join(lines)


HEADER = """# Reliability: survival scenarios on a real devnet

Produced by `PYTHONPATH=src python -m pmoracle.devnet.reliability --out docs/reliability.md` (scenario code in
`src/pmoracle/devnet/scenarios/`, asserted by `tests/e2e/`). Each row is one run: anvil, `n` real node processes
talking libp2p on 127.0.0.1 (partition: each in a network namespace of its own), 20 trader accounts, a round
every 5 blocks (1 block/s), finality depth 2, stage delay 1 s. Faulty nodes run the TEST-ONLY
`python -m pmoracle.devnet.faults --mode MODE` entry point.

- *rounds attested (verified)*: `RoundAttested` events, and how many of them the devnet recomputed independently
  from chain state with the same root. *duplicate attestations*: rounds attested more than once (must be 0).
- *evidence posted*: successful slashing transactions (`Slashed` events); *slashes*: per signer.
- *time to recover*: crash: the longest time from a `kill -9` to the next attested round; partition: from the
  heal to the minority receiving the majority's reports again; reorg: from the deep reorg to the next attested
  round; Byzantine rows: how many later rounds were attested before the evidence landed (0 = before the next).

How each fault is made:

- Byzantine nodes: TEST-ONLY fault modes (`src/pmoracle/devnet/faults.py`), started only by these scenarios
  and `pmoracle devnet --faulty K:MODE` (a hidden flag), never by `node.toml` or `pmoracle node`.
- crash: `kill -9` of (1) a node right after an anchor became final, (2) position 0 of the round's transmission
  schedule, (3) f nodes at once; each restarts on its data directory. The slashing-protection SQLite of every node
  and every node's archive are checked afterwards for two digests of one signer in one round.
- partition: in the kernel. The scenario re-runs itself under `unshare --user --map-root-user --net --mount` (no
  privilege needed) and `pmoracle.devnet.netlab` puts every node in a network namespace of its own, linked by a veth
  pair to the devnet's namespace, which routes between the nodes and runs anvil. The cut is an `ip rule ...
  prohibit` for every pair of subnets in different groups: the kernel refuses every packet between the majority
  and the minority, while each node keeps its chain endpoint; healing deletes the rules. On a machine without
  unprivileged user namespaces it falls back to restarting the minority on new libp2p ports in the TEST-ONLY
  `partitioned` mode (no on-chain peer discovery), and says why.
- reorg: `anvil_reorg` of depth = finality depth while an anchor is one block short of final, then of a depth
  covering an attested anchor and its attestation; the old certificate is re-submitted to `attest`.
- RPC: node 0 is given a 127.0.0.1 JSON-RPC proxy as primary and anvil as fallback (1 s timeout); the proxy answers
  -32603 errors, then hangs, then serves a head 8 blocks behind, then heals (8 s per phase).

The chain client retries a failing endpoint (twice, with backoff), then tries it last for later requests (a
circuit breaker); the node's endpoint probe (`chain.probe_interval`, 2 s here) asks every endpoint for its head,
keeps a failing or lagging one last (`-1` or its lag on the gauge `pmoracle_rpc_endpoint_lag_blocks`) and gives
the primary its place back once it serves the current head again. A lagging endpoint that still answers is only
demoted at the next probe: reads in between are pinned to the anchor's hash, so they fail on it and fail over,
and never mix two states.

Tests: `pytest -m "not slow" tests/e2e` runs wrong-value, equivocate and crash at n = 4; `make test-long`
(`pytest -m slow`) runs the rest (n = 7 variants, silent/slow, spam, reorg, RPC faults, partition).

"""
