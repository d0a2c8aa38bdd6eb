"""The node's own DKG (node/dkg_service.py) over in-memory gossip with the real topic validators, on virtual time:
the members of a keyless committee agree on one key, store their shares encrypted in their data directories and
confirm once; a member that starts late joins the run the others reached; a dealer sending a bad share draws
complaints that every honest member archives as evidence and the run is retried; a restarted member confirms the
share it already stored without running again."""

from __future__ import annotations

import json
import random
from pathlib import Path

import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.consensus import frost_dkg_wire as wire
from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.consensus.frost_dkg import DkgParameters, DkgResult, Round2Share, is_valid_complaint
from pmoracle.errors import PmoracleError
from pmoracle.node.datadir import frost_share_path
from pmoracle.node.dkg_service import DkgService, dkg_evidence_dir
from pmoracle.node.frost_dkg_gossip import GossipDkgTransport, run_gossip_dkg
from pmoracle.node.frost_keys import unlock_frost_share
from pmoracle.node.keys import KeyFileError
from pmoracle.node.metrics import NodeMetrics, create_node_metrics
from pmoracle.p2p.codec import DkgMessage, decode_message
from pmoracle.p2p.memory import MemoryNetwork
from pmoracle.p2p.reports import ReportGossip
from pmoracle.p2p.validator import ReportValidator
from pmoracle.testing.committees import make_test_committee
from pmoracle.testing.frost import sign_in_process
from tests.unit.node.dkg_support import GarblingTransport

N = 4
TC = make_test_committee(N)
DOMAIN = TC.network.domain
PASSWORD = b"correct horse"
TIMEOUT = 10.0
BACKOFF = (2.0, 8.0)


class _BadShareTransport(GossipDkgTransport):
    """A dealer whose share to member 1 is not on its commitment (member 1 complains and publishes the share)."""

    async def send_share(self, share: Round2Share) -> None:
        if share.recipient == 1:
            share = Round2Share(share.dealer, share.recipient, (share.share + 1) % frost.ORDER)
        await super().send_share(share)


class _Member:
    def __init__(self, net: MemoryNetwork, i: int, data_dir: Path, failing_confirmations: int = 0) -> None:
        self.validator = ReportValidator(TC.network, TC.config)
        self.gossip = ReportGossip(net.create_endpoint(f"m{i}", self.validator), TC.network)
        self.metrics: NodeMetrics = create_node_metrics()
        self.confirmed: list[tuple[CommitteeConfig, DkgResult]] = []
        self.data_dir = data_dir

        failures = [failing_confirmations]

        async def confirm(committee: CommitteeConfig, result: DkgResult) -> None:
            await trio.lowlevel.checkpoint()
            if failures[0] > 0:  # as a transaction reverting out of gas does
                failures[0] -= 1
                raise PmoracleError("transaction 0x00 failed in block 51")
            self.confirmed.append((committee, result))

        self.service = DkgService(
            DOMAIN, self.gossip, self.validator, TC.signing_keys[i - 1], PASSWORD, data_dir, confirm, self.metrics,
            timeout=TIMEOUT, backoff=BACKOFF, linger=2.0, random_bytes=random.Random(i).randbytes,
        )  # fmt: skip

    @property
    def result(self) -> DkgResult | None:
        """Return the result this member confirmed last (None: none)."""
        return self.confirmed[-1][1] if self.confirmed else None

    async def run(self, delay: float = 0.0) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.gossip.run)
            await trio.sleep(delay)
            await self.service.run_for(TC.config)  # listens for later runs until cancelled
            nursery.cancel_scope.cancel()

    def runs(self, result: str) -> int:
        return int(self.metrics.registry.get_sample_value("pmoracle_dkg_runs_total", {"result": result}) or 0)


def _run_members(
    tmp_path: Path, delays: dict[int, float], *, limit: float = 200.0, failing: dict[int, int] | None = None
) -> dict[int, _Member]:
    members: dict[int, _Member] = {}

    async def main() -> None:
        async with MemoryNetwork(7, min_delay=0.01, max_delay=0.2) as net:
            for i in range(1, N + 1):
                members[i] = _Member(net, i, tmp_path / f"node-{i}", (failing or {}).get(i, 0))
            with trio.move_on_after(limit):
                async with trio.open_nursery() as nursery:
                    for i, member in members.items():
                        nursery.start_soon(member.run, delays.get(i, 0.0))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return members


def _assert_one_key_stored_and_confirmed(members: dict[int, _Member]) -> DkgResult:
    results = {i: m.result for i, m in members.items()}
    assert all(r is not None for r in results.values())
    keys = {r.group_public_key for r in results.values() if r is not None}
    transcripts = {r.transcript_digest for r in results.values() if r is not None}
    assert len(keys) == 1 and len(transcripts) == 1
    for i, member in members.items():
        result = results[i]
        assert result is not None
        assert member.confirmed == [(TC.config, result)]  # confirmed once
        stored = unlock_frost_share(frost_share_path(member.data_dir, result.parameters.context), PASSWORD,
                                    context=result.parameters.context)  # fmt: skip
        assert stored.signing_share == result.signing_share and stored.identifier == i
        # once done, only later runs' messages pass the validator (to rejoin if members start another run)
        assert result.parameters.context not in member.validator.dkg_contexts
    first = results[1]
    assert first is not None
    shares = {i: r for i, r in results.items() if r is not None}
    signature = sign_in_process(shares, (1, 2, 4), b"margin", b"\x02" * 32)
    assert frost.verify(first.group_public_key, b"margin", signature)
    return first


def test_the_members_agree_store_their_shares_and_confirm_once(tmp_path: Path) -> None:
    members = _run_members(tmp_path, {}, limit=60.0)
    result = _assert_one_key_stored_and_confirmed(members)
    assert result.parameters.context == wire.compute_dkg_context(DOMAIN, TC.config, 0)  # run 0
    assert all(m.runs("ok") == 1 and m.runs("failed") == m.runs("timed_out") == 0 for m in members.values())


def test_a_failed_confirmation_is_retried(tmp_path: Path) -> None:
    members = _run_members(tmp_path, {}, limit=60.0, failing={3: 2})
    _assert_one_key_stored_and_confirmed(members)
    assert members[3].runs("error") == 2 and members[3].runs("ok") == 1
    assert members[3].metrics.registry.get_sample_value("pmoracle_dkg_confirmations_total") == 1


def test_a_member_starting_late_joins_the_run_the_others_reached(tmp_path: Path) -> None:
    # members 1-3 time out in run 0 (member 4 is not there), back off, time out in run 1, back off, ...; member 4
    # starts in run 0 long after and joins the run they are in when it sees one of their messages
    late = 2 * TIMEOUT + BACKOFF[0] + 3.0
    members = _run_members(tmp_path, {4: late})
    result = _assert_one_key_stored_and_confirmed(members)
    run = next(r for r in range(wire.MAX_RUN + 1) if wire.compute_dkg_context(DOMAIN, TC.config, r)
               == result.parameters.context)  # fmt: skip
    assert run >= 2
    assert members[1].runs("timed_out") == run
    assert members[4].runs("superseded") == 1 and members[4].runs("timed_out") == 0


def test_a_bad_share_draws_complaints_archived_by_every_honest_member(tmp_path: Path) -> None:
    members: dict[int, _Member] = {}

    async def dishonest(net: MemoryNetwork) -> None:  # dealer 4 runs run 0 only, with a bad share to member 1
        context = wire.compute_dkg_context(DOMAIN, TC.config, 0)
        validator = ReportValidator(TC.network, TC.config)
        validator.set_dkg_context(context)
        gossip = ReportGossip(net.create_endpoint("m4", validator), TC.network)
        transport = _BadShareTransport(gossip, DOMAIN, TC.config, context, TC.signing_keys[3])
        parameters = DkgParameters(context, (1, 2, 3, 4), TC.config.quorum, 4)
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            await run_gossip_dkg(transport, parameters, b"\x04" * 32, timeout=TIMEOUT, linger=2.0)
            await trio.sleep_forever()

    async def main() -> None:
        async with MemoryNetwork(8, min_delay=0.01, max_delay=0.2) as net:
            for i in (1, 2, 3):
                members[i] = _Member(net, i, tmp_path / f"node-{i}")
            with trio.move_on_after(2 * TIMEOUT + BACKOFF[0] + 4.0):  # run 0, then run 1 without dealer 4
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(dishonest, net)
                    for member in members.values():
                        nursery.start_soon(member.run)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert members[1].runs("failed") == 1  # its own complaint ended run 0 at once
    assert members[1].result is None
    # members 2 and 3 finished run 0 (their shares from dealer 4 were good) and confirmed it; member 1's run 1 made
    # them join it, which times out without dealer 4: no key gets every member's confirmation
    assert members[1].runs("timed_out") >= 1
    for i in (2, 3):
        assert len(members[i].confirmed) == 1 and members[i].runs("ok") == 1
        assert members[i].runs("timed_out") == members[1].runs("timed_out")  # in the same later runs
    for i, member in members.items():
        files = sorted(dkg_evidence_dir(member.data_dir).glob("dkg-*.json"))
        assert len(files) == 1, i  # member 1's own complaint; the one members 2 and 3 received
        assert member.metrics.registry.get_sample_value("pmoracle_dkg_complaints_total") == 1
        record = json.loads(files[0].read_text())
        assert (record["kind"], record["run"], record["accuser"], record["dealer"]) == ("dkg-complaint", 0, 1, 4)
        message = decode_message(bytes.fromhex(record["message"][2:]))
        assert isinstance(message, DkgMessage) and isinstance(message.signed, wire.SignedDkgComplaint)
        assert wire.is_valid_dkg_signature(DOMAIN, message.signed)  # signed by member 1
        assert message.signed.signer == TC.config.members[0]
    # anyone re-checks it against dealer 4's package of run 0 (deterministic from its seed)
    from pmoracle.consensus.frost_dkg import start_dkg

    context = wire.compute_dkg_context(DOMAIN, TC.config, 0)
    _, package = start_dkg(DkgParameters(context, (1, 2, 3, 4), TC.config.quorum, 4), b"\x04" * 32)
    record = json.loads(next(dkg_evidence_dir(members[2].data_dir).glob("dkg-*.json")).read_text())
    signed = decode_message(bytes.fromhex(record["message"][2:])).signed
    assert isinstance(signed, wire.SignedDkgComplaint) and is_valid_complaint(package, signed.complaint)


def test_a_restarted_member_confirms_its_stored_share_without_running(tmp_path: Path) -> None:
    members = _run_members(tmp_path, {})
    result = _assert_one_key_stored_and_confirmed(members)

    async def restart() -> _Member:
        async with MemoryNetwork(9) as net:
            member = _Member(net, 2, tmp_path / "node-2")  # the same data directory
            with trio.move_on_after(TIMEOUT):  # nobody else runs: only a stored share lets it confirm
                await member.run()
            return member

    again = trio.run(restart, clock=trio.testing.MockClock(autojump_threshold=0))
    assert again.result is not None and again.result.group_public_key == result.group_public_key
    assert len(again.confirmed) == 1 and again.runs("ok") == 0


def test_members_whose_run_finished_rejoin_a_later_run_and_confirm_its_key(tmp_path: Path) -> None:
    # dealer 4 sends member 1 a share that does not open in run 0 (members 2 and 3 finish and confirm run 0's key;
    # member 1 times out naming dealer 4), then takes part honestly in run 1, which member 1 starts after its
    # backoff: members 2 and 3 see it and rejoin, and every member's last confirmation is run 1's one key
    members: dict[int, _Member] = {}
    dealer: dict[int, DkgResult] = {}

    async def dealer_4(net: MemoryNetwork) -> None:
        validator = ReportValidator(TC.network, TC.config)
        gossip = ReportGossip(net.create_endpoint("m4", validator), TC.network)
        async with trio.open_nursery() as nursery:
            await nursery.start(gossip.run)
            for run, kind in ((0, GarblingTransport), (1, GossipDkgTransport)):
                context = wire.compute_dkg_context(DOMAIN, TC.config, run)
                validator.set_dkg_context(context)
                transport = kind(gossip, DOMAIN, TC.config, context, TC.signing_keys[3])
                parameters = DkgParameters(context, (1, 2, 3, 4), TC.config.quorum, 4)
                outcome = await run_gossip_dkg(transport, parameters, bytes([run]) * 32, timeout=TIMEOUT, linger=2.0)
                if outcome.result is not None:
                    dealer[run] = outcome.result
                await trio.sleep(TIMEOUT + BACKOFF[0])  # member 1 starts run 1 first
            nursery.cancel_scope.cancel()

    async def main() -> None:
        async with MemoryNetwork(10, min_delay=0.01, max_delay=0.2) as net:
            for i in (1, 2, 3):
                members[i] = _Member(net, i, tmp_path / f"node-{i}")
            with trio.move_on_after(4 * TIMEOUT):
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(dealer_4, net)
                    for member in members.values():
                        nursery.start_soon(member.run)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    assert 1 in dealer
    run_1 = wire.compute_dkg_context(DOMAIN, TC.config, 1)
    for i in (2, 3):
        assert [r.parameters.context for _, r in members[i].confirmed][-1] == run_1
        assert len(members[i].confirmed) == 2  # run 0's key, replaced by run 1's
    assert len(members[1].confirmed) == 1 and members[1].runs("timed_out") == 1
    assert members[1].service.outcomes[0][1] is not None and members[1].service.outcomes[0][1].missing == (4,)
    last = {m.confirmed[-1][1].group_public_key for m in members.values()}
    assert last == {dealer[1].group_public_key}
    assert {m.confirmed[-1][1].transcript_digest for m in members.values()} == {dealer[1].transcript_digest}


def _leaves(error: BaseException) -> list[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        return [leaf for inner in error.exceptions for leaf in _leaves(inner)]
    return [error]


def test_a_stored_share_that_does_not_open_is_an_error_named_for_the_node(tmp_path: Path) -> None:
    members = _run_members(tmp_path, {}, limit=60.0)
    result = _assert_one_key_stored_and_confirmed(members)
    path = frost_share_path(tmp_path / "node-2", result.parameters.context)
    path.write_text(path.read_text().replace('"ciphertext": "', '"ciphertext": "00', 1))  # corrupted on disk

    errors: list[BaseException] = []

    async def restart() -> None:
        try:
            async with MemoryNetwork(11) as net:
                await _Member(net, 2, tmp_path / "node-2").run()
        except* KeyFileError as group:  # raised by run_for itself (the member's nurseries wrap it)
            errors.extend(_leaves(group))

    trio.run(restart, clock=trio.testing.MockClock(autojump_threshold=0))
    assert len(errors) == 1 and isinstance(errors[0], KeyFileError) and str(path) in str(errors[0])
