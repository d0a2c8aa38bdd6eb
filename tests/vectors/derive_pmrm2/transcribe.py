"""Transcribe Derive's published PMRM_2 portfolio cases into this project's vector format (one JSON file per case).

Usage: python tests/vectors/derive_pmrm2/transcribe.py CASES_DIR COMMIT [OUT_DIR]

CASES_DIR holds ``test_*.json`` of derivexyz/v2-core ``test/risk-managers/unit-tests/PMRM_2/portfolio_cases/`` at
COMMIT. Each vector keeps the inputs ``pmoracle import derive-pmrm2`` reads, under Derive's own field names so the
importer reads the vector as it reads a case, and the three expected numbers (``IM``, ``MM``, ``PortfolioMTM``);
intermediate results and fields derived from the inputs are left out. Numbers are copied exactly as published.
"""

from __future__ import annotations

import json
import pathlib
import sys

REPOSITORY = "derivexyz/v2-core"
CASES_PATH = "test/risk-managers/unit-tests/PMRM_2/portfolio_cases"
SCENARIO_FIELDS = ("Cash", "SpotPrice", "SpotConfidence", "NumPerps", "PerpPrice", "PerpConfidence",
                   "UnrealisedPerpPNL", "UnrealisedFunding", "StablePrice", "StableConfidence")  # fmt: skip
COLLATERAL_FIELDS = ("Name", "Amount", "Price", "Confidence", "IsRiskCancelling", "IMHaircut", "MMHaircut")
OPTION_FIELDS = ("Expiry", "Strike", "IsCall", "Amount", "MarkVol")
FEED_FIELDS = ("FeedExpiry", "Forward", "ForwardConfidence", "Rate", "RateConfidence", "OptionVolConfidences")
EXPECTED_FIELDS = ("IM", "MM", "PortfolioMTM")


def case_number(path: pathlib.Path) -> int:
    """Return the number of ``test_<n>_<name>.json``."""
    return int(path.stem.split("_")[1])


def transcribe(case: dict, name: str, commit: str) -> dict:
    """Return the vector of one published case."""
    scenario = case["Scenario"]
    return {
        "source": {"repository": REPOSITORY, "path": f"{CASES_PATH}/{name}.json", "commit": commit},
        "name": name,
        "Scenario": {
            **{key: scenario[key] for key in SCENARIO_FIELDS},
            "Collaterals": [{key: c[key] for key in COLLATERAL_FIELDS} for c in scenario["Collaterals"]],
            "Options": [{key: o[key] for key in OPTION_FIELDS} for o in scenario["Options"]],
            "OptionFeeds": [{key: f[key] for key in FEED_FIELDS} for f in scenario["OptionFeeds"]],
        },
        "Parameters": case["Parameters"],
        "expected": {key: case["Result"][key] for key in EXPECTED_FIELDS},
    }


def main(argv: list[str]) -> int:
    """Write one vector per case; return the process exit status."""
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    source, commit = pathlib.Path(argv[0]), argv[1]
    out = pathlib.Path(argv[2]) if len(argv) == 3 else pathlib.Path(__file__).parent
    cases = sorted(source.glob("test_*.json"), key=case_number)
    for path in cases:
        vector = transcribe(json.loads(path.read_text()), path.stem, commit)
        (out / f"{path.stem}.json").write_text(json.dumps(vector, indent=1) + "\n")
    print(f"wrote {len(cases)} vectors to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
