"""A colluding quorum on a real devnet: 3 of 4 nodes attest a root that understates one account's maintenance margin;
the honest node proves it by itself (an aggregation fraud proof from the colluders' own API) and the colluders are
slashed (issue 14 item 6, docs/dispute.md "A colluding quorum").

One ``pmoracle devnet --faulty 0,1,2:collude --summary`` run per certificate scheme (module fixture, FROST and
``--ecdsa``, about 30 s each) answers every test.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tests.e2e.devnet_run import run_devnet_summary

# In `make test` (about 30 s): every wrong round is provable however the understated account moved after B (the
# ledger's holdings history) and while the colluders' nodes keep the round (the prover fetches it whole by block,
# /v1/leaves/B); the honest node's proof lands inside the deviation window (docs/dispute.md, "A colluding quorum").

STAKE, SLASH_BPS = 10**19, 1_000  # the devnet's deployment parameters
PERIOD = 5  # blocks between the devnet's round anchors
COLLUDERS, HONEST = ("0", "1", "2"), "3"


@pytest.fixture(scope="module", params=["frost", "ecdsa"])
def summary(request: pytest.FixtureRequest) -> dict[str, Any]:
    # FROST (the devnet's default): the proof slashes nobody from the round's bitmap; the honest node slashes each
    # colluder by its own ECDSA report of the wrong digest (slashFrostSigner). ECDSA: the proof slashes the bitmap.
    # exit 1: a wrong round the prover could not prove (e.g. the last, attested as the run stops) stays unverified
    scheme = ["--ecdsa"] if request.param == "ecdsa" else []
    summary = run_devnet_summary(
        ["--nodes", "4", "--accounts", "60", "--faulty", "0,1,2:collude", "--rounds", "6", *scheme],
        timeout=280, name=f"collusion-{request.param}", returncodes=(0, 1),
    )  # fmt: skip
    assert summary[f"rounds_{request.param}"] == summary["rounds_attested"], summary["schemes"]
    return summary


@pytest.mark.timeout(300)
def test_the_honest_node_proves_the_wrong_round_and_the_colluders_are_slashed(summary: dict[str, Any]) -> None:
    assert summary["rounds_attested"] == 6
    assert summary["rounds_verified"] == 0  # every attested round is the colluders' wrong one
    assert summary["fraud_proofs"] >= 1 and summary["rounds_invalidated"] >= 1
    assert summary["rounds_invalidated"] == len(summary["invalidated_rounds"]) <= summary["fraud_proofs"]
    # within 2 rounds: the first or the second wrong round is proven, each proof within 2 round periods
    assert min(summary["invalidated_rounds"]) in summary["attested_rounds"][:2], summary["invalidated_rounds"]
    for proof in summary["invalidated"]:
        assert proof["prover_node"] == int(HONEST)  # a colluder never proves its own round
        assert proof["attested_block"] < proof["proven_block"] <= proof["attested_block"] + 2 * PERIOD, proof
    # every proof slashed the three signers once (fraud: 10% of the stake left)
    for node in COLLUDERS:
        slashed = summary["slashed"][node]
        assert slashed["count"] >= summary["fraud_proofs"], (node, slashed)
        assert slashed["amount"] >= STAKE * SLASH_BPS // 10_000, (node, slashed)


@pytest.mark.timeout(300)
def test_the_honest_node_is_not_slashed_for_a_proven_round(summary: dict[str, Any]) -> None:
    # the colluders' deviation evidence waits for the round's deviation window (4 s on the devnet); the honest
    # node's proof lands first, and the evidence is dropped (docs/dispute.md, "Slashing race")
    assert summary["invalidated_rounds"]
    assert not set(summary["invalidated_rounds"]) & set(summary["deviation_slashed_rounds"][HONEST])


@pytest.mark.timeout(300)
def test_the_honest_node_is_never_slashed(summary: dict[str, Any]) -> None:
    assert summary["slashed"][HONEST] == {"count": 0, "amount": 0}


def test_a_bad_faulty_node_list_exits_2_naming_faulty() -> None:
    for bad in ("0,4:collude", "0,0:collude", "0,x:collude", "0,1:byzantine"):
        done = subprocess.run(
            [sys.executable, "-m", "pmoracle.cli", "devnet", "--nodes", "4", "--faulty", bad, "--duration", "1"],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 2 and "--faulty" in done.stderr, (bad, done.stderr)
