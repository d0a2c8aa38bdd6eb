"""Reorg scenarios: ``anvil_reorg`` shallower than the finality depth before an anchor is final, deeper after."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pmoracle.devnet.cluster import Devnet
from pmoracle.devnet.scenarios.common import (
    ROUND_TIMEOUT,
    ScenarioResult,
    attested_digest,
    run_scenario,
)


def mine_blocks(devnet: Devnet, count: int, interval: float = 0.4) -> None:
    """Mine ``count`` empty blocks, ``interval`` seconds apart, running the devnet loop in between (world paused)."""
    for _ in range(count):
        devnet.chain.rpc("evm_mine")
        until = time.monotonic() + interval
        while time.monotonic() < until:
            devnet.advance()
            time.sleep(0.02)


def mine_until(devnet: Devnet, done: Callable[[Devnet], bool], timeout: float, what: str) -> None:
    """Mine empty blocks until ``done(devnet)`` holds."""
    started = time.monotonic()
    while not done(devnet):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out waiting for {what}; logs in {devnet.run_dir}")
        mine_blocks(devnet, 1)


def block_hash(devnet: Devnet, number: int) -> bytes:
    """Return the canonical hash of block ``number``."""
    return devnet.client.get_block(number).hash


def signed_hashes(devnet: Devnet) -> dict[int, set[bytes]]:
    """Return round block -> block hashes of every signed report in every node's archive."""
    from pmoracle.node.datadir import archive_db_path
    from pmoracle.storage.archive import ReportArchive

    out: dict[int, set[bytes]] = {}
    for node in devnet.nodes:
        archive = ReportArchive(archive_db_path(node.home / "data"))
        try:
            for member in devnet.committee.members:
                for item in archive.get_by_signer(member):
                    out.setdefault(item.signed.report.block_number, set()).add(item.signed.report.block_hash)
        finally:
            archive.close()
    return out


def scenario_reorg(run_dir: Path, n: int = 4) -> ScenarioResult:
    """``anvil_reorg`` shallower than the finality depth around an anchor, then deeper than it after attestation.

    Shallow: nobody signs the replaced hash of a not-yet-final anchor; the round is attested with the new hash.
    Deep: the attested round and its attestation are reorged out; re-submitting its certificate reverts with
    BlockHashMismatch; slashing protection stops anyone signing the round again with the new hash; later rounds
    resume. Afterwards every signed report of a later round carries a canonical hash.
    """
    from eth_account import Account

    from pmoracle.chain.errors import ContractError
    from pmoracle.chain.transmitter import Transmitter
    from pmoracle.consensus.certificate import build_certificate
    from pmoracle.node.daemon import OFFLINE_W3

    period, depth = 5, 2

    def body(devnet: Devnet, result: ScenarioResult) -> None:
        devnet.run_rounds(1, ROUND_TIMEOUT * 2)
        devnet.mine_blocks = False  # the world's own transactions must not be reorged out from under it
        # shallow: reorg the anchor while it is one block short of final
        head = int(devnet.client.block_number())
        anchor = (head // period + 2) * period
        mine_until(devnet, lambda d: int(d.client.block_number()) >= anchor + depth - 1, ROUND_TIMEOUT, "anchor")
        old_hash = block_hash(devnet, anchor)
        devnet.chain.rpc("anvil_reorg", depth, [])
        shallow_replaced = block_hash(devnet, anchor) != old_hash
        mine_until(devnet, lambda d: bool(d.attested) and d.attested[-1].block_number >= anchor, ROUND_TIMEOUT,
                   "the shallow-reorged round")  # fmt: skip
        shallow = signed_hashes(devnet).get(anchor, set())
        result.extra["shallow"] = {"depth": depth, "anchor": anchor, "hash_replaced": shallow_replaced,
                                   "signed_old_hash": old_hash in shallow,
                                   "attested": attested_digest(devnet, anchor) is not None}  # fmt: skip
        # deep: let a round be attested, then replace it and its attestation
        target = (int(devnet.client.block_number()) // period + 1) * period
        mine_until(devnet, lambda d: attested_digest(d, target) is not None, ROUND_TIMEOUT, "the round to reorg")
        signatures = {}
        report = None
        from pmoracle.node.datadir import archive_db_path
        from pmoracle.storage.archive import ReportArchive

        archive = ReportArchive(archive_db_path(devnet.nodes[0].home / "data"))
        try:
            for item in archive.get_by_round((devnet.committee.digest(), target)):
                report = item.signed.report
                signatures[item.signed.signer] = item.signed.signature
        finally:
            archive.close()
        mine_blocks(devnet, 1)
        head = int(devnet.client.block_number())
        deep = head - target + 1
        old_hash = block_hash(devnet, target)
        devnet.chain.rpc("anvil_reorg", deep, [])
        mine_blocks(devnet, 1)
        outcome = "accepted"
        if report is not None and len(signatures) >= devnet.committee.quorum:
            cert = build_certificate(devnet.committee, report, signatures)
            key = "0x" + bytes(31).hex() + "77"
            devnet.chain.rpc("anvil_setBalance", Account.from_key(key).address, hex(10**20))
            oracle = devnet.deployment.contract(OFFLINE_W3, "MarginOracle")
            fn = oracle.functions.attest(cert.report.as_tuple(), cert.signer_bitmap, list(cert.signatures))
            try:
                Transmitter(devnet.client, key).transact_call(fn)
            except ContractError as exc:
                outcome = exc.name
        else:
            outcome = f"no certificate in the archive ({len(signatures)} signatures)"
        reorged_at = time.monotonic()
        seen = len(devnet.attested)
        mine_until(devnet, lambda d: len(d.attested) > seen, ROUND_TIMEOUT * 2, "a round after the deep reorg")
        result.recover_seconds = time.monotonic() - reorged_at
        mine_until(devnet, lambda d: len(d.attested) > seen + 1, ROUND_TIMEOUT * 2, "a second round")
        hashes = signed_hashes(devnet)
        later_bad = sum(1 for b, hs in hashes.items() if b > target for h in hs if h != block_hash(devnet, b))
        result.extra["deep"] = {"depth": deep, "anchor": target, "old_cert_attest": outcome,
                                "reattested": attested_digest(devnet, target) is not None,
                                "signed_new_hash": block_hash(devnet, target) in hashes.get(target, set()),
                                "signed_old_hash": old_hash in hashes.get(target, set()),
                                "later_rounds_noncanonical_signatures": later_bad,
                                "next_attested": devnet.attested[seen].block_number}  # fmt: skip

    return run_scenario("reorg", n,
                        "anvil_reorg depth 2 (= finality) before an anchor is final; depth >2 after attestation",
                        run_dir, (), body)  # fmt: skip
