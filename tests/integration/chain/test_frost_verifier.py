"""FrostVerifier.sol on anvil gives the verdict of ``frost_evm.is_valid_evm_signature`` on every shared vector and on
fresh t-of-n signatures of the pure FROST code (keys from the pure DKG), refuses each tampering, and costs a flat
amount of gas.

The library's functions are internal: ``tests/foundry/FrostVerifierHarness.sol`` exposes them and is compiled here
with the pinned solc (``collect_sources(units=...)``), so no test contract enters the committed artifacts.
"""

from __future__ import annotations

import enum
import hashlib
import json
import pathlib
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from eth_utils import to_checksum_address

from pmoracle.chain.compile import collect_sources, run_solc
from pmoracle.chain.deploy import connect, open_transmitter
from pmoracle.consensus import frost, frost_dkg
from pmoracle.consensus.frost_evm import EvmGroupKey, EvmSignature, is_on_curve, is_valid_evm_signature
from pmoracle.devnet.devchain import Devchain
from pmoracle.testing.frost import run_test_dkg, sign_in_process
from tests.integration.chain.contracts_support import dev_key

VECTORS = json.loads((pathlib.Path(__file__).resolve().parents[2] / "vectors" / "frost_evm.json").read_text())
HARNESS_UNIT = "tests/foundry/FrostVerifierHarness.sol"
WORD = 2**256


class Verdict(enum.IntEnum):
    """FrostVerifier.Verdict, in declaration order."""

    VALID = 0
    INVALID_GROUP_KEY = 1
    NON_CANONICAL_Z = 2
    COMMITMENT_OFF_CURVE = 3
    ZERO_CHALLENGE = 4
    WRONG_COMMITMENT = 5


# The rule each invalid vector breaks first (tests/vectors/generate.py names the change in `note`).
VECTOR_VERDICTS = {
    "valid 2-of-3 signature": Verdict.VALID,
    "another message": Verdict.WRONG_COMMITMENT,
    "z + 1": Verdict.WRONG_COMMITMENT,
    "-R": Verdict.WRONG_COMMITMENT,
    "-P": Verdict.WRONG_COMMITMENT,
    "R off the curve": Verdict.COMMITMENT_OFF_CURVE,
    "z = n, not a scalar": Verdict.NON_CANONICAL_Z,
    "z = 0": Verdict.NON_CANONICAL_Z,
}


@pytest.fixture(scope="module")
def harness(anvil: Devchain) -> Any:
    """FrostVerifierHarness, compiled with the pinned solc and deployed on the module's anvil."""
    compiled = run_solc(collect_sources(units=(HARNESS_UNIT,)))["contracts"][HARNESS_UNIT]["FrostVerifierHarness"]
    receipt = open_transmitter(anvil.url, dev_key(0)).transact(
        None, bytes.fromhex(compiled["evm"]["bytecode"]["object"])
    )
    assert receipt.contract_address is not None
    return connect(anvil.url).eth.contract(address=to_checksum_address(receipt.contract_address), abi=compiled["abi"])


@dataclass(frozen=True, slots=True)
class Case:
    """One verification: the group key as stored, the message, the signature as calldata."""

    key: EvmGroupKey
    message: bytes
    signature: EvmSignature

    def args(self) -> tuple[int, int, bytes, int, int, int]:
        """Return the arguments of FrostVerifier.verify."""
        return (self.key.x, self.key.parity, self.message, *self.signature.to_words())


def _on_chain(harness: Any, case: Case) -> tuple[bool, Verdict]:
    return harness.functions.verify(*case.args()).call(), Verdict(harness.functions.tryVerify(*case.args()).call())


def _vector_cases() -> Iterator[tuple[dict[str, Any], Case]]:
    for entry in VECTORS["cases"]:
        key = EvmGroupKey(int(entry["groupKeyX"], 16), entry["groupKeyParity"])
        signature = EvmSignature(int(entry["rx"], 16), int(entry["ry"], 16), int(entry["z"], 16))
        yield entry, Case(key, bytes.fromhex(entry["message"][2:]), signature)


def test_every_vector_gets_the_python_verdict_and_challenge(harness: Any) -> None:
    seen = set()
    for entry, case in _vector_cases():
        valid, verdict = _on_chain(harness, case)
        assert valid is entry["valid"] is is_valid_evm_signature(case.key, case.message, case.signature), entry["note"]
        assert verdict == VECTOR_VERDICTS[entry["note"]], entry["note"]
        if "challenge" in entry:  # R on the curve and z a scalar: the vector carries c = H2(...)
            challenge = harness.functions.challenge(*case.args()[:5]).call()
            assert challenge == int(entry["challenge"], 16), entry["note"]
        seen.add(entry["note"])
    assert seen == set(VECTOR_VERDICTS)


# --- fresh t-of-n signatures -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Committee:
    """The outcome of one pure DKG run, as every member holds it."""

    threshold: int
    results: dict[int, frost_dkg.DkgResult]

    @property
    def group_public_key(self) -> bytes:
        """Return the group key (33 bytes)."""
        return self.results[1].group_public_key


def _run_dkg(threshold: int, n: int, rng: random.Random) -> Committee:
    """Return the result of a DKG run among 1..n (the pure state machine, every message delivered once)."""
    return Committee(threshold, run_test_dkg(threshold, n, rng.randbytes(32)))


def _sign(committee: Committee, signers: list[int], message: bytes, rng: random.Random) -> frost.Signature:
    """Return the aggregate of ``signers``' shares (unchecked: below the threshold it is not a valid signature)."""
    return sign_in_process(committee.results, signers, message, rng.randbytes(32))


def _case(committee: Committee, message: bytes, signature: frost.Signature) -> Case:
    key = EvmGroupKey.from_compressed(committee.group_public_key)
    return Case(key, message, EvmSignature.from_signature(signature))


def _tamperings(case: Case, other_key: EvmGroupKey) -> Iterator[tuple[str, Case, Verdict]]:
    """Yield each change of a valid case, named, with the rule that must refuse it."""
    key, message, (rx, ry, z) = case.key, case.message, case.signature.to_words()
    yield "message", Case(key, hashlib.sha256(message).digest(), case.signature), Verdict.WRONG_COMMITMENT
    z_plus_one = EvmSignature(rx, ry, (z + 1) % frost.ORDER)
    yield "z + 1", Case(key, message, z_plus_one), Verdict.WRONG_COMMITMENT if z_plus_one.z else Verdict.NON_CANONICAL_Z
    # z + n is a word only for z < 2^256 - n (probability 2^-128); the refusal of every z >= n stands for it
    yield (
        "z >= n",
        Case(key, message, EvmSignature(rx, ry, frost.ORDER + z % (WORD - frost.ORDER))),
        Verdict.NON_CANONICAL_Z,
    )
    yield "-R", Case(key, message, EvmSignature(rx, frost.FIELD_PRIME - ry, z)), Verdict.WRONG_COMMITMENT
    yield "-P", Case(EvmGroupKey(key.x, 1 - key.parity), message, case.signature), Verdict.WRONG_COMMITMENT
    yield (
        "R off the curve",
        Case(key, message, EvmSignature(rx, (ry + 1) % frost.FIELD_PRIME, z)),
        Verdict.COMMITMENT_OFF_CURVE,
    )
    yield "another key", Case(other_key, message, case.signature), Verdict.WRONG_COMMITMENT


COMMITTEES = ((2, 3), (3, 4), (5, 7), (11, 16))


def test_fresh_threshold_signatures_verify_and_every_tampering_is_refused(harness: Any) -> None:
    rng = random.Random(16)
    committees = [_run_dkg(t, n, rng) for t, n in COMMITTEES for _ in range(2)]
    parities = set()
    refused: dict[str, int] = {}
    for index, committee in enumerate(committees):
        n = len(committee.results)
        other_key = EvmGroupKey.from_compressed(committees[index - 1].group_public_key)
        for size in (committee.threshold, n):  # a bare quorum and the whole committee
            message = rng.randbytes(32)
            case = _case(committee, message, _sign(committee, rng.sample(range(1, n + 1), size), message, rng))
            parities.add((case.key.parity, case.signature.ry % 2))
            assert _on_chain(harness, case) == (True, Verdict.VALID)
            assert is_valid_evm_signature(case.key, case.message, case.signature)
            for name, tampered, expected in _tamperings(case, other_key):
                valid, verdict = _on_chain(harness, tampered)
                assert verdict == expected, name
                assert (
                    valid
                    is (expected == Verdict.VALID)
                    is is_valid_evm_signature(tampered.key, tampered.message, tampered.signature)
                ), name
                refused[name] = refused.get(name, 0) + (not valid)
        # t - 1 members cannot sign: their aggregate is not a signature under the group key
        message = rng.randbytes(32)
        short = _case(
            committee, message, _sign(committee, rng.sample(range(1, n + 1), committee.threshold - 1), message, rng)
        )
        assert _on_chain(harness, short) == (False, Verdict.WRONG_COMMITMENT)
        refused["t - 1 signers"] = refused.get("t - 1 signers", 0) + 1
    assert parities == {(0, 0), (0, 1), (1, 0), (1, 1)}  # group keys and commitments of both parities
    assert len(refused) == 8 and min(refused.values()) >= 8, refused


# Curve points with a small coordinate: the only ones whose coordinate + p still fits in a word.
POINT_WITH_X_1 = (1, 0x4218F20AE6C646B363DB68605822FB14264CA8D2587FDD6FBC750D587E76A7EE)
POINT_WITH_Y_1 = (0x1FE1E5EF3FCEB5C135AB7741333CE5A6E80D68167653F6B2B24BCBCFAAAFF507, 1)


def test_coordinates_must_be_reduced(harness: Any) -> None:
    """(x + p, y) and (x, y + p) satisfy the curve equation mod p but are not field elements: refused (rule 2)."""
    (_, case), *_ = _vector_cases()
    (x1, y1), (x2, y2) = POINT_WITH_X_1, POINT_WITH_Y_1
    for point, unreduced in (((x1, y1), (x1 + frost.FIELD_PRIME, y1)), ((x2, y2), (x2, y2 + frost.FIELD_PRIME))):
        assert is_on_curve(*point) and harness.functions.isOnCurve(*point).call() is True
        assert not is_on_curve(*unreduced) and harness.functions.isOnCurve(*unreduced).call() is False
        tampered = Case(case.key, case.message, EvmSignature(*unreduced, case.signature.z))
        assert _on_chain(harness, tampered) == (False, Verdict.COMMITMENT_OFF_CURVE)


# --- gas ---------------------------------------------------------------------------------------------------------


def _calldata_gas(words: tuple[int, ...]) -> int:
    """Return the intrinsic calldata gas of ``words`` (16 per non-zero byte, 4 per zero byte)."""
    data = b"".join(w.to_bytes(32, "big") for w in words)
    return sum(16 if b else 4 for b in data)


def test_verification_costs_a_flat_amount_of_gas(harness: Any) -> None:
    """The library's execution gas is the same for every valid signature, whatever the committee (docs/frost.md)."""
    rng = random.Random(7)
    cases = [case for entry, case in _vector_cases() if entry["valid"]]
    for t, n in ((3, 4), (11, 16)):
        committee = _run_dkg(t, n, rng)
        message = rng.randbytes(32)
        cases.append(_case(committee, message, _sign(committee, list(range(1, n + 1)), message, rng)))
    measured = set()
    for case in cases:
        valid, gas_used = harness.functions.measureVerify(*case.args()).call()
        assert valid is True
        measured.add(gas_used)
    assert len(measured) == 1, measured  # no branch, loop or memory growth depends on the signature
    (execution,) = measured
    assert 4_000 < execution < 8_000, execution  # one ecrecover (3,000), three sha256 calls, one keccak
    signature_calldata = max(_calldata_gas(case.signature.to_words()) for case in cases)
    assert signature_calldata <= 96 * 16
    call_gas = harness.functions.verify(*cases[0].args()).estimate_gas()
    assert call_gas < 21_000 + 6 * 32 * 16 + 4 * 16 + execution + 1_000  # intrinsic, calldata, dispatch
    print(
        f"FrostVerifier.verify: {execution} gas executed; (Rx, Ry, z) calldata <= {signature_calldata} gas;"
        f" a whole eth_call through the harness {call_gas} gas"
    )
