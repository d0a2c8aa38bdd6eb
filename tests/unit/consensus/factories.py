"""Small factories for consensus tests: deterministic keys, committees, reports and signed reports."""

from __future__ import annotations

from functools import cache

from eth_utils import keccak

from pmoracle.consensus.committee import CommitteeConfig, compute_byzantine_quorum
from pmoracle.consensus.report import Domain, Report, SignedReport, address_of, sign_report
from pmoracle.risk.version import ENGINE_VERSION

DOMAIN = Domain(chain_id=31337, verifying_contract=b"\x0a" * 20)
PERIOD = 10
DEPTH = 2


@cache
def make_key(index: int) -> bytes:
    """Return the deterministic private key of test member ``index``."""
    return keccak(b"pmoracle test member " + index.to_bytes(4, "big"))


@cache
def make_committee(n: int, quorum: int | None = None) -> CommitteeConfig:
    """Return a committee of the first ``n`` test members (Byzantine quorum unless given)."""
    return CommitteeConfig(
        chain_id=31337,
        registry=b"\x01" * 20,
        version=1,
        members=tuple(address_of(make_key(i)) for i in range(n)),
        quorum=compute_byzantine_quorum(n) if quorum is None else quorum,
        round_period=PERIOD,
        finality_depth=DEPTH,
        params_hash=b"\x09" * 32,
        engine_version=ENGINE_VERSION,
    )


def make_report(committee: CommitteeConfig, block: int, variant: int = 0) -> Report:
    """Return the report of round ``block``; variant 0 is the honest one, others are wrong values."""
    return Report(
        config_digest=committee.digest(),
        block_number=block,
        block_hash=keccak(b"block" + block.to_bytes(8, "big")),
        params_hash=committee.params_hash,
        accounts_root=keccak(b"root" + block.to_bytes(8, "big") + variant.to_bytes(4, "big")),
        account_count=7,
        risk_arrays_root=keccak(b"risk arrays" + block.to_bytes(8, "big")),
        market_hash=keccak(b"market" + block.to_bytes(8, "big")),
    )


@cache
def make_signed(n: int, member: int, block: int, variant: int = 0) -> SignedReport:
    """Return member ``member``'s signature of report ``(block, variant)`` in the committee of size ``n``."""
    return sign_report(DOMAIN, make_report(make_committee(n), block, variant), make_key(member))
