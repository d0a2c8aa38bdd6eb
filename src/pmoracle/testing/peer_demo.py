"""A runnable committee member for real-network tests and the gossip benchmark (test keys, never production).

``python -m pmoracle.testing.peer_demo --n 4 --index 0 --port 9000 --peer-port 1=9001 ...`` joins the committee of
:func:`pmoracle.testing.committees.make_test_committee`, and for each round signs the honest test report, gossips
it over real libp2p (re-publishing until it holds every member's signature, asking for catch-up if late), and prints one
JSON line per event on stdout:

- ``{"event": "connected", ...}`` once it is subscribed with its peers (or gave up waiting);
- ``{"event": "round", "block": B, "digest": ..., "certificate": {...}, "signers": [...], "t_sign", "t_cert",
  "t_complete", "cpu_s", "tcp_bytes_sent"}`` when it holds all n signatures of round B (the certificate is the first
  quorum it saw, in the layout ``MarginOracle.attest`` takes: signer bitmap + signatures by committee index);
- ``{"event": "stats", ...}`` before it exits (after ``--linger`` seconds or on SIGTERM).

With ``--wait-start`` it reads ``start <unix time>`` from stdin before the first round so that a parent can start
every process's rounds at the same wall-clock instant; round r starts ``r * --round-interval`` seconds later.

With ``--frost --data-dir DIR`` the committee is :func:`pmoracle.testing.frost.make_frost_test_committee`'s (its
group key in the config) and each round is also signed with FROST: each member commits one round ahead (the
first round's commitments before ``--wait-start``), the members of the first signing set sign their share and
publish it just before their report, and every member aggregates once it holds the certificate: the member's
:class:`~pmoracle.node.frost_participant.FrostParticipant` with a :class:`~pmoracle.node.frost_signer.FrostSigner`
whose nonce store and slashing protection live in ``DIR/member-<index>``; it prints
``{"event": "frost", "block": B, "signature": ..., "signers": bitmap, "attempt", "t_cert", "t_frost"}`` when the
shares of a signing set aggregate (or ``"signature": null`` if none did within ``--frost-timeout``).

With ``--dkg --data-dir DIR`` the member runs no rounds: it joins the DKG of the test committee over real libp2p
(:func:`pmoracle.node.frost_dkg_gossip.join_dkg_over_libp2p`, the code ``pmoracle frost dkg`` runs), writes its
share encrypted (password ``peer-demo``) to ``DIR/member-<index>/frost-share.json`` and prints ``{"event": "dkg",
"ok", "group_key", "transcript", "missing", "disqualified", "accused", "seconds", "share_file"}`` (``seconds``:
from joining to the session's end); the member ``--dkg-silent`` names joins the topic but sends nothing.
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

import trio

from pmoracle.consensus import frost_round as fr
from pmoracle.consensus.certificate import QuorumCertificate, build_certificate
from pmoracle.consensus.report import Report, SignedReport, compute_report_digest, sign_report
from pmoracle.node.frost_participant import FrostParticipant
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.p2p.libp2p_gossip import GossipConfig, Libp2pGossip, load_peer_key, peer_id_of
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.storage.frost_nonces import FrostNonceDB
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.testing.committees import TestCommittee, make_test_committee
from pmoracle.testing.frost import make_frost_test_committee
from pmoracle.trio_types import TaskStatus

FIRST_BLOCK = 1000
BLOCK_STEP = 10


def peer_addr(committee: TestCommittee, index: int, port: int) -> str:
    """Return the dialable multiaddr of member ``index`` listening on 127.0.0.1:``port``."""
    return f"/ip4/127.0.0.1/tcp/{port}/p2p/{peer_id_of(load_peer_key(committee.peer_secrets[index]))}"


def read_cpu_seconds() -> float:
    """Return this process's user + system CPU time in seconds."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


_tcp_bytes_sent = 0


def install_tcp_byte_counter() -> None:
    """Count every byte libp2p writes to its TCP sockets (noise + yamux + pubsub: what goes on the wire).

    Measurement only, for this demo: wraps ``libp2p.io.trio.TrioTCPStream.write`` of libp2p 0.8.1 (socket
    ``send`` does not show in /proc/self/io's ``wchar``).
    """
    from libp2p.io.trio import TrioTCPStream

    original = TrioTCPStream.write
    if getattr(original, "_pmoracle_counted", False):
        return

    async def counted_write(self: TrioTCPStream, data: bytes) -> None:
        global _tcp_bytes_sent
        _tcp_bytes_sent += len(data)
        await original(self, data)

    counted_write._pmoracle_counted = True  # type: ignore[attr-defined]
    TrioTCPStream.write = counted_write  # type: ignore[method-assign]


def read_write_bytes() -> int:
    """Return the bytes this process has written to libp2p TCP connections so far."""
    return _tcp_bytes_sent


def _emit(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, **fields}, sort_keys=True), flush=True)


class RoundCollector:
    """Signatures of one round grouped by report digest; notes the first quorum and the complete set."""

    def __init__(self, committee: TestCommittee, report: Report) -> None:
        self.committee = committee
        self.report = report
        self.domain = committee.network.domain
        self.digest = compute_report_digest(self.domain, report)
        self.by_digest: dict[bytes, dict[bytes, bytes]] = {}
        self.certificate: dict[str, Any] | None = None
        self.quorum_certificate: QuorumCertificate | None = None
        self.t_cert: float | None = None

    def add(self, signed: SignedReport) -> bool:
        """Record a signature (already validated by the topic validator) and build the certificate at quorum;
        return True when this signature completed the first quorum."""
        digest = compute_report_digest(self.domain, signed.report)
        self.by_digest.setdefault(digest, {}).setdefault(signed.signer, signed.signature)
        signatures = self.by_digest[digest]
        if self.certificate is None and len(signatures) >= self.committee.config.quorum:
            self.certificate = compute_certificate(self.committee, digest, signatures)
            self.quorum_certificate = build_certificate(self.committee.config, signed.report, signatures)
            self.t_cert = time.time()
            return True
        return False

    def is_complete(self) -> bool:
        """Check if every member's signature of our report's digest is here."""
        return len(self.by_digest.get(self.digest, {})) == self.committee.config.n


def compute_certificate(committee: TestCommittee, digest: bytes, signatures: dict[bytes, bytes]) -> dict[str, Any]:
    """Return the quorum certificate as JSON: digest, signer bitmap and signatures ordered by committee index."""
    indexed = sorted((committee.config.members.index(signer), sig) for signer, sig in signatures.items())
    bitmap = sum(1 << index for index, _ in indexed)
    return {"digest": "0x" + digest.hex(), "signer_bitmap": bitmap, "signatures": ["0x" + s.hex() for _, s in indexed]}


DEMO_PASSWORD = b"peer-demo"


async def run_dkg_member(args: argparse.Namespace) -> int:
    """Run this member's side of the test committee's DKG over libp2p (``--dkg``); exit 1 if it did not finish."""
    from pmoracle.node.frost_dkg_gossip import join_dkg_over_libp2p
    from pmoracle.node.frost_keys import write_frost_share

    committee = make_test_committee(args.n)
    ports = dict(args.peer_port)
    bootstrap = tuple(peer_addr(committee, index, port) for index, port in sorted(ports.items()) if index != args.index)
    config = GossipConfig(committee.network, listen=f"/ip4/127.0.0.1/tcp/{args.port}", bootstrap=bootstrap)
    started = time.time()
    ended: list[float] = []
    outcome, transport = await join_dkg_over_libp2p(
        config, load_peer_key(committee.peer_secrets[args.index]), committee.config, committee.signing_keys[args.index],
        timeout=args.dkg_timeout, silent=args.index == args.dkg_silent, on_outcome=lambda _: ended.append(time.time()),
    )  # fmt: skip
    if outcome is None:  # the silent member
        _emit("dkg", index=args.index, ok=False, silent=True)
        return 0
    # seconds: from joining (endpoint not yet started) to the session's end, without the linger after it
    fields: dict[str, Any] = {"seconds": round(ended[0] - started, 3), "stats": dict(transport.stats)}
    if outcome.result is None:
        _emit("dkg", index=args.index, ok=False, missing=list(outcome.missing),
              disqualified=list(outcome.disqualified), accused=sorted({c.dealer for c in outcome.complaints}),
              timed_out=outcome.timed_out, **fields)  # fmt: skip
        return 1
    out = Path(args.data_dir) / f"member-{args.index}" / "frost-share.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_frost_share(out, outcome.result, DEMO_PASSWORD, kdf_iterations=2)
    _emit("dkg", index=args.index, ok=True, group_key="0x" + outcome.result.group_public_key.hex(),
          transcript="0x" + outcome.result.transcript_digest.hex(), share_file=str(out), **fields)  # fmt: skip
    return 0


async def run_member(args: argparse.Namespace) -> int:
    """Run one committee member until its rounds are done and ``--linger`` has passed (or SIGTERM)."""
    install_tcp_byte_counter()
    frost_committee = make_frost_test_committee(args.n) if args.frost else None
    committee = frost_committee.committee if frost_committee is not None else make_test_committee(args.n)
    ports = dict(args.peer_port)
    bootstrap = tuple(peer_addr(committee, index, port) for index, port in sorted(ports.items()) if index != args.index)
    gossip = Libp2pGossip(
        GossipConfig(committee.network, listen=f"/ip4/127.0.0.1/tcp/{args.port}", bootstrap=bootstrap),
        load_peer_key(committee.peer_secrets[args.index]),
        ReportValidator(committee.network, committee.config),
    )
    reports = ReportGossip(gossip, committee.network, republish_interval=args.republish_interval)
    key = committee.signing_keys[args.index]
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:

            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()

            nursery.start_soon(stop_on_signal)
            await nursery.start(gossip.run)
            await nursery.start(reports.run)
            with trio.move_on_after(args.connect_timeout):
                while len(gossip.peers()) < args.n - 1:
                    await trio.sleep(0.05)
            signing = None
            if args.frost:
                signing = FrostSigning(args, committee, key, reports)
                await nursery.start(signing.run)
                await signing.participant.open_round(FIRST_BLOCK)  # the first round's commitments go out ahead
            _emit("connected", index=args.index, peer_id=gossip.peer_id, peers=len(gossip.peers()), t=time.time())
            t0 = time.time()
            if args.wait_start:
                line = await trio.to_thread.run_sync(sys.stdin.readline)
                t0 = float(line.split()[1])
            pending: dict[tuple[bytes, int], list[SignedReport]] = {}
            for r in range(args.rounds):
                block, start = FIRST_BLOCK + r * BLOCK_STEP, t0 + r * args.round_interval
                await _run_round(args, committee, key, reports, pending, block, start, signing)
            await trio.sleep(args.linger)
            nursery.cancel_scope.cancel()
            if signing is not None:
                signing.close()
    _emit(
        "stats",
        index=args.index,
        cpu_s=read_cpu_seconds(),
        tcp_bytes_sent=read_write_bytes(),
        max_rss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        rejections=dict(gossip.rejections),
        accepted=gossip.accepted,
        report_stats=dict(reports.stats),
    )
    return 0


class FrostSigning:
    """This member's FROST signing in the round (``--frost``): participant, signer, stores, and its event loop."""

    def __init__(self, args: argparse.Namespace, committee: TestCommittee, key: bytes, reports: ReportGossip) -> None:
        data_dir = Path(args.data_dir) / f"member-{args.index}"
        data_dir.mkdir(parents=True, exist_ok=True)
        path = data_dir / "protection.sqlite"
        self.protection = ProtectionDB(path)
        self.nonces = FrostNonceDB(path)
        frost_committee = make_frost_test_committee(args.n)
        signer = FrostSigner(frost_committee.results[args.index + 1], self.nonces)
        self.reports = reports
        self.domain = committee.network.domain
        self.formed: dict[int, fr.FrostSignatureFormed] = {}
        self.events: dict[int, trio.Event] = {}
        self.formed_at: dict[int, float] = {}
        # every round of the run is in the machine's window from the start: a member whose round starts late here
        # still keeps the commitments and shares the others sent for it (the daemon follows the chain head instead)
        last_block = FIRST_BLOCK + (args.rounds - 1) * BLOCK_STEP
        self.participant = FrostParticipant(
            frost_committee.context(args.index + 1, stage_delay=args.frost_stage), committee.network, key, signer,
            publish=reports.publish_frost, on_signature=self._on_signature, head=last_block,
        )  # fmt: skip

    def _on_signature(self, formed: fr.FrostSignatureFormed) -> None:
        block = formed.round_key[1]
        self.formed[block] = formed
        self.formed_at[block] = time.time()
        self.event(block).set()

    def event(self, block: int) -> trio.Event:
        """Return the event set when round ``block``'s FROST signature aggregates here."""
        return self.events.setdefault(block, trio.Event())

    async def run(self, *, task_status: TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Feed received FROST messages and ticks to the participant until cancelled."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._tick)
            task_status.started()
            async for message in self.reports.frost_messages():
                await self.participant.receive(message)

    async def _tick(self) -> None:
        while True:
            await trio.sleep(0.05)
            await self.participant.tick()

    async def start_round(self, report: Report) -> None:
        """Record the round's ECDSA digest in slashing protection and commit to the round (if not done ahead)."""
        self.protection.record_and_check(report.round_key, compute_report_digest(self.domain, report))
        await self.participant.open_round(report.block_number)

    async def report_signed(self, signed: SignedReport) -> None:
        """Note the own report, signed (recorded in slashing protection): a member of the first signing set signs
        its share now and publishes it, just before the report goes out (as the daemon does)."""
        digest = compute_report_digest(self.domain, signed.report)
        await self.participant.report_signed(signed.report.block_number, digest)

    async def commit_ahead(self, block: int) -> None:
        """Commit to the round after ``block``, once this round's report and share are out (as the daemon does)."""
        await self.participant.open_round(block + BLOCK_STEP)

    def close(self) -> None:
        """Close the stores."""
        self.nonces.close()
        self.protection.close()


async def _run_round(
    args: argparse.Namespace,
    committee: TestCommittee,
    key: bytes,
    reports: ReportGossip,
    pending: dict[tuple[bytes, int], list[SignedReport]],
    block: int,
    start: float,
    signing: FrostSigning | None = None,
) -> None:
    await trio.sleep(max(0.0, start - time.time()))
    cpu0, bytes0 = read_cpu_seconds(), read_write_bytes()
    report = committee.report(block)
    collector = RoundCollector(committee, report)
    if signing is not None:
        await signing.start_round(report)
    quorum = False
    for early in pending.pop(report.round_key, []):  # reports of this round that arrived before it started here
        quorum |= collector.add(early)
    t_sign = time.time()
    signed = sign_report(committee.network.domain, report, key)
    quorum |= collector.add(signed)
    if signing is not None:
        await signing.report_signed(signed)
    await reports.publish_own(signed)
    if signing is not None and block < FIRST_BLOCK + (args.rounds - 1) * BLOCK_STEP:
        await signing.commit_ahead(block)
    if quorum and signing is not None and collector.quorum_certificate is not None:
        await signing.participant.certify(collector.quorum_certificate)
    # Silence longer than `quiet` means we (re)joined after the others stopped re-publishing: ask for a catch-up,
    # backing off (x2, up to 8x) so that n late nodes do not make n^2 answers a second.
    quiet = 2 * args.republish_interval
    with trio.move_on_after(args.round_timeout):
        while not collector.is_complete():
            with trio.move_on_after(quiet):
                other = await reports.reports().receive()
                if other.report.round_key == report.round_key:
                    if collector.add(other) and signing is not None and collector.quorum_certificate is not None:
                        await signing.participant.certify(collector.quorum_certificate)
                elif other.report.block_number > block:
                    # ReportGossip delivers each report once: keep the ones of rounds still to come
                    pending.setdefault(other.report.round_key, []).append(other)
                continue
            await reports.request_catch_up(report.round_key)
            quiet = min(2 * quiet, 8 * args.republish_interval)
    reports.mark_attested(report.round_key)
    signers = sorted("0x" + s.hex() for s in collector.by_digest.get(collector.digest, {}))
    _emit(
        "round",
        index=args.index,
        block=block,
        digest="0x" + collector.digest.hex(),
        complete=collector.is_complete(),
        certificate=collector.certificate,
        signers=signers,
        t_start=start,
        t_sign=t_sign,
        t_cert=collector.t_cert,
        t_complete=time.time(),
        cpu_s=read_cpu_seconds() - cpu0,
        tcp_bytes_sent=read_write_bytes() - bytes0,
    )
    if signing is not None:
        with trio.move_on_after(args.frost_timeout):
            await signing.event(block).wait()
        formed = signing.formed.get(block)
        _emit(
            "frost",
            index=args.index,
            block=block,
            signature=None if formed is None else "0x" + formed.signature.to_bytes().hex(),
            signers=None if formed is None else formed.signers,
            attempt=None if formed is None else formed.attempt,
            t_cert=collector.t_cert,
            t_frost=signing.formed_at.get(block),
            rejected=dict(signing.participant.rejected),
        )


def _index_port(text: str) -> tuple[int, int]:
    index, _, port = text.partition("=")
    return int(index), int(port)


def build_parser() -> argparse.ArgumentParser:
    """Return the command-line parser of the peer demo."""
    parser = argparse.ArgumentParser(prog="python -m pmoracle.testing.peer_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, required=True, help="committee size")
    parser.add_argument("--index", type=int, required=True, help="this member's committee index")
    parser.add_argument("--port", type=int, required=True, help="TCP port to listen on (127.0.0.1)")
    parser.add_argument(
        "--peer-port", type=_index_port, action="append", default=[], help="INDEX=PORT of another member (repeat)"
    )
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--round-interval", type=float, default=3.0, help="seconds between round starts")
    parser.add_argument("--round-timeout", type=float, default=30.0, help="give up a round after this many seconds")
    parser.add_argument("--republish-interval", type=float, default=1.0)
    parser.add_argument("--connect-timeout", type=float, default=20.0)
    parser.add_argument("--linger", type=float, default=0.0, help="seconds to keep serving after the last round")
    parser.add_argument("--wait-start", action="store_true", help="read 'start <unix time>' from stdin first")
    parser.add_argument("--frost", action="store_true", help="also sign each round with FROST (needs --data-dir)")
    parser.add_argument("--data-dir", help="with --frost: the directory of the members' nonce stores")
    parser.add_argument("--frost-stage", type=float, default=2.0, help="the FROST stage in seconds")
    parser.add_argument("--frost-timeout", type=float, default=10.0, help="seconds to wait for a FROST signature")
    parser.add_argument("--dkg", action="store_true", help="run the DKG over libp2p instead of rounds (--data-dir)")
    parser.add_argument("--dkg-timeout", type=float, default=60.0, help="seconds the DKG session may take")
    parser.add_argument(
        "--dkg-silent", type=int, default=-1, help="with --dkg: the index of a member that stays silent"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the peer demo (exit status 0 when every round completed or was reported)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    args = build_parser().parse_args(argv)
    if not 0 <= args.index < args.n:
        raise SystemExit(f"--index must be in [0, {args.n})")
    if (args.frost or args.dkg) and not args.data_dir:
        raise SystemExit("--frost and --dkg need --data-dir")
    return trio.run(run_dkg_member if args.dkg else run_member, args)


if __name__ == "__main__":
    sys.exit(main())
