"""DKG sessions over an in-memory network on virtual time: a 3-of-4 run completes and signs, a bad proof is rejected
and counted, a withheld message times out, and garbage from outside is dropped without ending the run."""

from __future__ import annotations

import hashlib
import random
from dataclasses import replace

import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.consensus.frost_dkg import (
    Complaint,
    DkgParameters,
    DkgRejectReason,
    Round1Package,
    Round2Share,
    is_valid_complaint,
    start_dkg,
)
from pmoracle.consensus.frost_evm import EvmGroupKey, EvmSignature, is_valid_evm_signature
from pmoracle.node.frost_dkg_session import DkgMessage, DkgOutcome, run_dkg_session
from pmoracle.testing.frost import DkgTamper, InMemoryDkgNetwork, sign_in_process

IDS = (1, 2, 3, 4)
THRESHOLD = 3
CONTEXT = hashlib.sha256(b"committee epoch 9").digest()
TIMEOUT = 30.0


def _run(
    tamper: DkgTamper | None = None, seed: int = 0
) -> tuple[dict[int, DkgOutcome], dict[int, float], list[Complaint]]:
    """Run all four sessions concurrently from virtual time 0; return their outcomes, when each ended, and the
    complaints published."""
    network = InMemoryDkgNetwork(IDS, tamper=tamper)
    outcomes: dict[int, DkgOutcome] = {}
    ended: dict[int, float] = {}
    rng = random.Random(seed)
    seeds = {i: rng.randbytes(32) for i in IDS}

    async def member(i: int) -> None:
        parameters = DkgParameters(CONTEXT, IDS, THRESHOLD, i)
        outcomes[i] = await run_dkg_session(
            parameters, seeds[i], network.transport(i), network.incoming(i), timeout=TIMEOUT
        )
        ended[i] = trio.current_time()

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            for i in IDS:
                nursery.start_soon(member, i)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return outcomes, ended, network.complaints


def test_four_members_agree_on_a_3_of_4_key_that_signs() -> None:
    outcomes, ended, complaints = _run()
    assert max(ended.values()) < TIMEOUT and complaints == []
    results = {}
    for i, outcome in outcomes.items():
        assert outcome.result is not None and not outcome.timed_out and outcome.excluded == ()
        results[i] = outcome.result
    assert len({r.group_public_key for r in results.values()}) == 1
    assert len({r.transcript_digest for r in results.values()}) == 1
    message = hashlib.sha256(b"report digest").digest()
    for signers in ((1, 2, 3), (2, 3, 4), (1, 2, 3, 4)):
        signature = sign_in_process(results, signers, message, bytes(signers))
        assert frost.verify(results[1].group_public_key, message, signature)
        key = EvmGroupKey.from_compressed(results[1].group_public_key)
        assert is_valid_evm_signature(key, message, EvmSignature.from_signature(signature))


def _bad_proof_from_3(sender: int, recipient: int, message: DkgMessage) -> list[DkgMessage]:
    if sender == 3 and isinstance(message, Round1Package):
        return [replace(message, proof_response=(message.proof_response + 1) % frost.ORDER)]
    return [message]


def test_a_bad_proof_is_rejected_counted_and_named() -> None:
    outcomes, ended, _ = _run(_bad_proof_from_3)
    for i in (1, 2, 4):
        assert ended[i] < TIMEOUT  # a failed proof ends the run at once, no waiting for the deadline
        outcome = outcomes[i]
        assert outcome.result is None and not outcome.timed_out
        assert outcome.disqualified == (3,) and outcome.rejected == {DkgRejectReason.BAD_PROOF: 1}
        assert outcome.excluded == (3,)
    # member 3 itself sees honest packages but never gets the shares the others withhold from a failed run
    assert outcomes[3].result is None and outcomes[3].timed_out and outcomes[3].missing == (1, 2, 4)
    assert ended[3] == TIMEOUT


def _withhold_share_4_to_1(sender: int, recipient: int, message: DkgMessage) -> list[DkgMessage]:
    return [] if (sender, recipient) == (4, 1) and isinstance(message, Round2Share) else [message]


def test_a_withheld_share_times_out_naming_its_dealer() -> None:
    outcomes, ended, complaints = _run(_withhold_share_4_to_1)
    assert complaints == []
    assert ended[1] == TIMEOUT  # virtual time: exactly the deadline
    assert outcomes[1].result is None and outcomes[1].timed_out
    assert outcomes[1].missing == (4,) and outcomes[1].excluded == (4,)
    for i in (2, 3, 4):  # the others finish (and will learn from member 1 that the key is not confirmed)
        assert outcomes[i].result is not None and ended[i] < TIMEOUT


def _bad_share_2_to_4(sender: int, recipient: int, message: DkgMessage) -> list[DkgMessage]:
    if (sender, recipient) == (2, 4) and isinstance(message, Round2Share):
        return [replace(message, share=(message.share + 1) % frost.ORDER)]
    return [message]


def test_a_bad_share_draws_a_checkable_complaint() -> None:
    packages: dict[int, Round1Package] = {}

    def record_packages(sender: int, recipient: int, message: DkgMessage) -> list[DkgMessage]:
        if isinstance(message, Round1Package):
            packages[message.dealer] = message
        return _bad_share_2_to_4(sender, recipient, message)

    outcomes, ended, complaints = _run(record_packages)
    assert outcomes[4].result is None and not outcomes[4].timed_out and ended[4] < TIMEOUT
    (complaint,) = outcomes[4].complaints
    assert (complaint.accuser, complaint.dealer) == (4, 2) and outcomes[4].excluded == (2,)
    assert complaints == [complaint] and is_valid_complaint(packages[2], complaint)  # anyone can re-check it
    assert outcomes[4].rejected == {}


def test_junk_is_dropped_and_counted_without_ending_the_run() -> None:
    """A stranger's package, a wrong-degree package, a misrouted share: counted, and the run still finishes."""
    _, strange_package = start_dkg(DkgParameters(CONTEXT, (*IDS, 9), THRESHOLD, 9), b"\x09" * 32)
    _, low_degree = start_dkg(DkgParameters(CONTEXT, IDS, THRESHOLD - 1, 2), b"\x02" * 32)
    junk: list[DkgMessage] = [strange_package, low_degree, Round2Share(3, 2, 5)]

    def noisy(sender: int, recipient: int, message: DkgMessage) -> list[DkgMessage]:
        # member 1 gets the junk just before member 2's real package
        if (sender, recipient) == (2, 1) and isinstance(message, Round1Package):
            return [*junk, message]
        return [message]

    outcomes, ended, _ = _run(noisy)
    assert max(ended.values()) < TIMEOUT
    assert outcomes[1].rejected == {
        DkgRejectReason.NOT_A_PARTICIPANT: 1,  # dealer 9
        DkgRejectReason.WRONG_DEGREE: 1,  # member 2's polynomial of degree t - 2 (its real one is accepted after)
        DkgRejectReason.WRONG_RECIPIENT: 1,  # a share for member 2
    }
    results = [outcome.result for outcome in outcomes.values()]
    assert all(r is not None for r in results)
    assert len({r.group_public_key for r in results if r is not None}) == 1
