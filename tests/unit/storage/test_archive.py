"""The signed-report archive: every valid signed report kept, queried by round and signer, equivocations found."""

from __future__ import annotations

import pathlib

from pmoracle.consensus.evidence import is_equivocation
from pmoracle.consensus.report import compute_report_digest
from pmoracle.storage.archive import ReportArchive
from tests.unit.consensus.factories import DOMAIN, make_committee, make_signed

N = 4


def _add(archive: ReportArchive, member: int, block: int, variant: int = 0, seen_at: float = 1.0) -> bool:
    signed = make_signed(N, member, block, variant)
    return archive.add(signed, compute_report_digest(DOMAIN, signed.report), seen_at)


def test_queries_by_round_and_signer_survive_reopen(tmp_path: pathlib.Path) -> None:
    committee = make_committee(N)
    with ReportArchive(tmp_path / "archive.db") as archive:
        assert _add(archive, 0, 10)
        assert not _add(archive, 0, 10, seen_at=5.0)  # same signer, round, digest: kept once
        _add(archive, 1, 10)
        _add(archive, 1, 20)
    with ReportArchive(tmp_path / "archive.db") as archive:
        round_10 = archive.get_by_round((committee.digest(), 10))
        assert [a.signed for a in round_10] == sorted(
            [make_signed(N, 0, 10), make_signed(N, 1, 10)], key=lambda s: s.signer
        )
        assert round_10[0].seen_at == 1.0
        by_signer = archive.get_by_signer(committee.members[1])
        assert [a.signed.report.block_number for a in by_signer] == [10, 20]
        assert [a.signed for a in archive.get_by_signer(committee.members[1], (committee.digest(), 20))] == [
            make_signed(N, 1, 20)
        ]
        assert archive.get_by_round((committee.digest(), 30)) == []


def test_find_equivocations(tmp_path: pathlib.Path) -> None:
    committee = make_committee(N)
    with ReportArchive(tmp_path / "archive.db") as archive:
        _add(archive, 2, 10, 0)
        _add(archive, 2, 10, 1)
        _add(archive, 3, 10, 0)
        [evidence] = archive.find_equivocations((committee.digest(), 10))
        assert evidence.a.signer == committee.members[2]
        assert is_equivocation(DOMAIN, committee, evidence)
