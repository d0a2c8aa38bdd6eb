"""Rounds: anchor blocks, readiness, round keys and the per-round transmission schedule. PURE."""

from __future__ import annotations

from eth_abi import encode as abi_encode
from eth_utils import keccak

from pmoracle.consensus.committee import CommitteeConfig
from pmoracle.errors import InputError

RoundKey = tuple[bytes, int]  # (configDigest, anchor block number B)


def is_anchor_block(block_number: int, round_period: int) -> bool:
    """Check if ``block_number`` starts a round (``B % period == 0``)."""
    return block_number >= 0 and block_number % round_period == 0


def is_round_ready(block_number: int, head: int, finality_depth: int) -> bool:
    """Check if block ``block_number`` is buried ``finality_depth`` blocks deep under ``head``."""
    return head - block_number >= finality_depth


def compute_latest_ready_anchor(head: int, committee: CommitteeConfig) -> int | None:
    """Return the newest anchor block that is final under ``head``, or None if there is none yet."""
    final = head - committee.finality_depth
    if final < 0:
        return None
    return final - final % committee.round_period


def compute_window_floor(head: int, forgotten_through: int, window_rounds: int, period: int) -> int:
    """Return the newest forgotten round: ``forgotten_through`` or ``window_rounds`` periods behind ``head``."""
    return max(forgotten_through, head - window_rounds * period)


def is_in_round_window(block_number: int, head: int, forgotten_through: int, window_rounds: int, period: int) -> bool:
    """Check if round ``block_number`` is neither forgotten (at or below the window floor) nor more than one period
    ahead of ``head``."""
    return compute_window_floor(head, forgotten_through, window_rounds, period) < block_number <= head + period


def is_after_attested(block_number: int, latest_attested: int | None) -> bool:
    """Check if round ``block_number`` can still be attested: newer than the latest attested round, if any."""
    return latest_attested is None or block_number > latest_attested


def compute_round_key(config_digest: bytes, block_number: int) -> RoundKey:
    """Return the round key ``(configDigest, B)``."""
    if len(config_digest) != 32:
        raise InputError("config_digest", f"expected 32 bytes, got {config_digest!r}")
    if block_number < 0:
        raise InputError("block_number", f"must be >= 0, got {block_number}")
    return (config_digest, block_number)


def compute_round_seed(round_key: RoundKey) -> bytes:
    """Return keccak256(abi.encode(configDigest, B)), the seed of the round's schedule."""
    return keccak(abi_encode(["bytes32", "uint64"], [round_key[0], round_key[1]]))


def compute_transmission_schedule(round_key: RoundKey, committee: CommitteeConfig) -> tuple[bytes, ...]:
    """Return the committee members in transmission order for ``round_key`` (Fisher-Yates over keccak draws)."""
    seed = compute_round_seed(round_key)
    order = list(committee.members)
    for i in range(len(order) - 1, 0, -1):
        # a 256-bit draw reduced mod (i + 1) <= 64: the modulo bias is below 2**-249
        draw = int.from_bytes(keccak(seed + i.to_bytes(32, "big")), "big")
        j = draw % (i + 1)
        order[i], order[j] = order[j], order[i]
    return tuple(order)


def get_schedule_position(schedule: tuple[bytes, ...], member: bytes) -> int | None:
    """Return ``member``'s position in ``schedule``, or None if it is not scheduled."""
    try:
        return schedule.index(member)
    except ValueError:
        return None


def compute_transmit_delay(position: int, stage_delay: float) -> float:
    """Return how long the member at ``position`` waits before transmitting: ``position * stage_delay``."""
    if position < 0:
        raise InputError("position", f"must be >= 0, got {position}")
    if stage_delay < 0:
        raise InputError("stage_delay", f"must be >= 0, got {stage_delay}")
    return position * stage_delay
