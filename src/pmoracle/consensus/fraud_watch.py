"""When a node tries to prove an attested round wrong (issue 14 item 5): the pure decision. PURE.

The node compares each round attested on chain with the report it computed itself for the same round. Only a
digest that differs at the same (configDigest, B) *and* the same canonical block hash means that the quorum signed
something this node's recomputation does not give; a round attested at another hash of B is one this node computed
on a fork that a reorg replaced, and proving it would prove nothing (the proof recomputes from the canonical chain
and the contract would refuse it, after gas). Each round is handed to the prover at most once.

The shell (``pmoracle.node.fraud_prover``) feeds ``on_attested_round`` each time it sees an attested round and has
(or later gets) its own report of it; it carries out ``ProveRound`` in the background.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from pmoracle.consensus.rounds import RoundKey

ROUNDS_REMEMBERED = 64  # rounds whose decision is kept: a round older than all of these is never offered again


class ProofDecision(Enum):
    """What the node does about one attested round."""

    PROVE = "prove"  # its digest differs from ours at the canonical hash: try to prove it
    AGREES = "agrees"  # the attested digest is the one we computed: nothing to prove
    OTHER_CONFIG = "other config"  # attested under another committee: our report is not of that round
    OTHER_BLOCK_HASH = "other block hash"  # we computed another hash of B (a fork a reorg replaced): never prove
    ALREADY_DECIDED = "already decided"  # handed to the prover (or found agreeing) before: at most once per round


@dataclass(frozen=True, slots=True)
class AttestedDigest:
    """What the chain attested for one round: its key, the report digest and the (canonical) block hash of B."""

    key: RoundKey
    report_digest: bytes
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class FraudWatchState:
    """The rounds already decided (PROVE or AGREES), newest last, at most ``ROUNDS_REMEMBERED``."""

    decided: tuple[RoundKey, ...] = ()


def on_attested_round(
    state: FraudWatchState, attested: AttestedDigest, own_key: RoundKey, own_digest: bytes, own_block_hash: bytes
) -> tuple[FraudWatchState, ProofDecision]:
    """Return the state after seeing ``attested`` against this node's own report of the round, and the decision.

    ``own_key``, ``own_digest`` and ``own_block_hash`` are the round key, EIP-712 digest and block hash of the
    report this node computed for B. A rejection (any decision but PROVE and AGREES) leaves the state unchanged.
    """
    if attested.key in state.decided:
        return state, ProofDecision.ALREADY_DECIDED  # at most once per round
    if attested.key != own_key:
        return state, ProofDecision.OTHER_CONFIG  # another committee (or round) than the report we have
    if attested.block_hash != own_block_hash:
        return state, ProofDecision.OTHER_BLOCK_HASH  # our report is about a replaced hash of B: not evidence
    decided = replace(state, decided=(*state.decided, attested.key)[-ROUNDS_REMEMBERED:])
    if attested.report_digest == own_digest:
        return decided, ProofDecision.AGREES
    return decided, ProofDecision.PROVE
