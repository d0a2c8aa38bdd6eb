"""The FROST signer's nonce discipline with real stores: shares sign, a nonce signs once across restarts and crashes,
concurrent requests get one share, and the secret nonces never reach the disk or a repr."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from pmoracle.consensus import frost
from pmoracle.node.frost_signer import FrostSigner
from pmoracle.storage.frost_nonces import FrostNonceDB, FrostNonceError, NonceReuseError, NotSignedReportError
from pmoracle.storage.protection_db import ProtectionDB
from pmoracle.testing.frost import run_test_dkg

SEED = b"frost-signer-test-committee"
RESULTS = run_test_dkg(3, 4, SEED)
CONFIG = b"\xc0" * 32
ROUND = (CONFIG, 40)
MESSAGE = hashlib.sha256(b"report of round 40").digest()
REPO = pathlib.Path(__file__).resolve().parents[3]


class Member:
    """One member's data directory: slashing protection (which signed MESSAGE for ROUND) and its FROST signer."""

    def __init__(self, tmp_path: pathlib.Path, identifier: int, seed: int = 0) -> None:
        self.path = tmp_path / f"member-{identifier}" / "protection.sqlite"
        self.path.parent.mkdir(exist_ok=True)
        with ProtectionDB(self.path) as protection:
            protection.record_and_check(ROUND, MESSAGE)
        self.store = FrostNonceDB(self.path)
        self.signer = FrostSigner(
            RESULTS[identifier], self.store, random_bytes=random.Random(seed + identifier).randbytes
        )

    def restart(self) -> FrostSigner:
        """Close the store and return a fresh signer on the same data directory (its nonces are gone)."""
        self.store.close()
        self.store = FrostNonceDB(self.path)
        self.signer = FrostSigner(RESULTS[self.signer.identifier], self.store)
        return self.signer


@pytest.fixture
def members(tmp_path: pathlib.Path) -> Iterator[dict[int, Member]]:
    """Members 1..4 of a 3-of-4 committee."""
    created = {i: Member(tmp_path, i) for i in RESULTS}
    yield created
    for member in created.values():
        member.store.close()


def _package(commitments: list[frost.SigningCommitment]) -> frost.SigningPackage:
    return frost.compute_signing_package(RESULTS[1].group_public_key, commitments, MESSAGE)


def test_a_quorum_signs_and_the_nonces_are_deleted(members: dict[int, Member]) -> None:
    signers = (1, 2, 4)
    commitments = [members[i].signer.commit(ROUND) for i in signers]
    assert all(members[i].signer.held_count == 1 for i in signers)
    shares = [members[i].signer.sign(ROUND, MESSAGE, commitments) for i in signers]
    signature = frost.aggregate_verified(_package(commitments), shares, RESULTS[1].verification_shares)
    assert frost.verify(RESULTS[1].group_public_key, MESSAGE, signature)
    assert all(members[i].signer.held_count == 0 for i in signers)
    for i, commitment in zip(signers, commitments, strict=True):
        record = members[i].store.get(commitment)
        assert record is not None and record.is_used and record.message == MESSAGE


def test_a_restart_refuses_a_second_use_and_forgets_unused_commitments(members: dict[int, Member]) -> None:
    first = [members[i].signer.commit(ROUND) for i in (1, 2, 3)]
    share = members[1].signer.sign(ROUND, MESSAGE, first)
    unused = members[1].signer.commit(ROUND)
    restarted = members[1].restart()
    # the identical request: the recorded share, no nonces needed
    assert restarted.sign(ROUND, MESSAGE, first) == share
    # the same commitment in another aggregator's package: refused
    other = [first[0], members[2].signer.commit(ROUND), members[4].signer.commit(ROUND)]
    with pytest.raises(NonceReuseError):
        restarted.sign(ROUND, MESSAGE, other)
    # issued before the restart and never used: its nonces died with the process
    with pytest.raises(FrostNonceError, match="not held"):
        restarted.sign(ROUND, MESSAGE, [unused, other[1], other[2]])
    # a fresh commitment signs
    fresh = [restarted.commit(ROUND), other[1], other[2]]
    assert frost.is_valid_signature_share(
        _package(fresh), restarted.sign(ROUND, MESSAGE, fresh), RESULTS[1].verification_share
    )


CRASH_SCRIPT = textwrap.dedent(
    """
    import json, os, pathlib, sys
    from pmoracle.consensus import frost
    from pmoracle.node.frost_signer import FrostSigner
    from pmoracle.storage.frost_nonces import FrostNonceDB
    from pmoracle.storage.protection_db import ProtectionDB
    from pmoracle.testing.frost import run_test_dkg

    path, seed, config, block, message = sys.argv[1:]
    round_key, message = (bytes.fromhex(config), int(block)), bytes.fromhex(message)
    results = run_test_dkg(3, 4, seed.encode())
    ProtectionDB(path).record_and_check(round_key, message)
    signer = FrostSigner(results[1], FrostNonceDB(path))
    commitments = [signer.commit(round_key)] + [
        frost.commit(i, results[i].signing_share, bytes([i]) * 32, bytes([i + 8]) * 32)[1] for i in (2, 3)
    ]
    print(json.dumps([[c.identifier, c.hiding.hex(), c.binding.hex()] for c in commitments]), flush=True)
    record_used = FrostNonceDB.record_used

    def record_then_crash(self, *args):
        record_used(self, *args)
        os._exit(70)  # the use is committed; the process dies before the share is returned

    FrostNonceDB.record_used = record_then_crash
    signer.sign(round_key, message, commitments)
    print("released", flush=True)
    """
)


def test_a_crash_between_persist_and_release_consumes_the_nonce(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "protection.sqlite"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO / "src"), os.environ.get("PYTHONPATH", "")])}
    args = [str(path), SEED.decode(), CONFIG.hex(), str(ROUND[1]), MESSAGE.hex()]
    proc = subprocess.run(
        [sys.executable, "-c", CRASH_SCRIPT, *args], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 70, proc.stderr
    assert "released" not in proc.stdout
    commitments = [
        frost.SigningCommitment(i, bytes.fromhex(d), bytes.fromhex(e)) for i, d, e in json.loads(proc.stdout)
    ]
    with FrostNonceDB(path) as store:
        record = store.get(commitments[0])
        assert record is not None and record.is_used and record.share is not None
        restarted = FrostSigner(RESULTS[1], store)
        # the share that never left is the recorded one, and a valid one
        share = restarted.sign(ROUND, MESSAGE, commitments)
        assert share.share == record.share
        assert frost.is_valid_signature_share(_package(commitments), share, RESULTS[1].verification_share)
        # the nonce is consumed: no other package gets a share from it
        _, fourth = frost.commit(4, RESULTS[4].signing_share, b"\x04" * 32, b"\x0c" * 32)
        with pytest.raises(NonceReuseError):
            restarted.sign(ROUND, MESSAGE, [commitments[0], commitments[1], fourth])


def test_concurrent_requests_from_two_aggregators_get_one_share(members: dict[int, Member]) -> None:
    """Aggregators race to use member 1's commitment in different packages: one package gets shares, every
    repetition of it the same share, every other package a refusal."""
    own = members[1].signer.commit(ROUND)
    packages = [[own, members[i].signer.commit(ROUND), members[4].signer.commit(ROUND)] for i in (2, 3)]
    outcomes: list[tuple[int, frost.SignatureShare | NonceReuseError]] = []

    async def request(index: int, delay: float) -> None:
        await trio.sleep(delay)
        try:
            outcomes.append((index, members[1].signer.sign(ROUND, MESSAGE, packages[index])))
        except NonceReuseError as exc:
            outcomes.append((index, exc))

    async def main() -> None:
        rng = random.Random(3)
        async with trio.open_nursery() as nursery:
            for k in range(12):
                nursery.start_soon(request, k % 2, rng.choice((0.0, 0.001, 0.002)))

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    shares = {(index, o.share) for index, o in outcomes if isinstance(o, frost.SignatureShare)}
    refused = [index for index, o in outcomes if isinstance(o, NonceReuseError)]
    assert len(outcomes) == 12 and len(shares) == 1
    ((winner, _),) = shares
    assert refused == [1 - winner] * 6
    assert members[1].signer.held_count == 0


def test_a_commitment_signs_only_its_round_and_the_ecdsa_signed_digest(members: dict[int, Member]) -> None:
    signer = members[1].signer
    commitments = [signer.commit(ROUND), members[2].signer.commit(ROUND), members[3].signer.commit(ROUND)]
    with pytest.raises(NotSignedReportError):
        signer.sign(ROUND, hashlib.sha256(b"another report").digest(), commitments)
    with ProtectionDB(members[1].path) as protection:
        protection.record_and_check((CONFIG, 44), MESSAGE)
    with pytest.raises(FrostNonceError, match="is bound to round"):
        signer.sign((CONFIG, 44), MESSAGE, commitments)
    assert signer.held_count == 1  # nothing left the node: the nonces still sign the right request
    assert frost.is_valid_signature_share(
        _package(commitments), signer.sign(ROUND, MESSAGE, commitments), RESULTS[1].verification_share
    )
    with pytest.raises(frost.FrostError, match="not among the signers"):
        signer.sign(ROUND, MESSAGE, commitments[1:])


def test_forgotten_rounds_cannot_sign(members: dict[int, Member]) -> None:
    signer = members[1].signer
    old = signer.commit((CONFIG, 36))
    signer.commit(ROUND)
    assert signer.forget_through(39) == 1 and signer.held_count == 1
    with ProtectionDB(members[1].path) as protection:
        protection.record_and_check((CONFIG, 36), MESSAGE)
    others = [members[2].signer.commit((CONFIG, 36)), members[3].signer.commit((CONFIG, 36))]
    with pytest.raises(FrostNonceError, match="not held"):
        signer.sign((CONFIG, 36), MESSAGE, [old, *others])
    assert signer.forget_through(40) == 1 and signer.held_count == 0


def test_a_repeating_random_source_is_refused(members: dict[int, Member]) -> None:
    signer = FrostSigner(RESULTS[1], members[1].store, random_bytes=lambda size: b"\x07" * size)
    with pytest.raises(FrostNonceError, match="are equal"):  # both nonces of the pair from the same bytes
        signer.commit(ROUND)
    counter = iter(range(1000))
    repeating = [b"\x01" * 32, b"\x02" * 32]
    signer = FrostSigner(RESULTS[1], members[1].store, random_bytes=lambda size: repeating[next(counter) % 2])
    signer.commit(ROUND)
    with pytest.raises(FrostNonceError, match="random source repeats"):
        signer.commit(ROUND)
    assert signer.held_count == 1


def test_secret_nonces_never_reach_the_disk_or_a_repr(members: dict[int, Member]) -> None:
    signer = members[1].signer
    commitments = [signer.commit(ROUND), members[2].signer.commit(ROUND), members[3].signer.commit(ROUND)]
    (_, nonces), *_ = signer._held.values()
    secrets = [frost.serialize_scalar(v) for v in (nonces.hiding, nonces.binding, RESULTS[1].signing_share)]
    signer.sign(ROUND, MESSAGE, commitments)
    signer.commit(ROUND)  # one more held, unused
    members[1].store.close()
    files = [p for p in members[1].path.parent.iterdir() if p.is_file()]
    data = b"".join(p.read_bytes() for p in files)
    assert data and not any(secret in data for secret in secrets)
    text = repr(signer) + repr(nonces) + repr(RESULTS[1])
    assert not any(secret.hex() in text or str(int.from_bytes(secret, "big")) in text for secret in secrets)
    members[1].store = FrostNonceDB(members[1].path)  # reopened for the fixture's teardown
