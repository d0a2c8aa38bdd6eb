"""Compile ``contracts/*.sol``, ``contracts/devnet/*.sol`` and ``examples/contracts/*.sol`` with the pinned solcjs
(npm ``solc``) through solc's standard-JSON interface.

Every imported source (``@openzeppelin/...`` and ``solady/...`` from ``node_modules``, relative imports) is resolved
here and inlined into the standard-JSON input, so the compiler never touches the file system and the input hash
covers every byte that reaches it. ``python -m pmoracle.chain.compile`` rewrites the committed artifacts under
``src/pmoracle/chain/artifacts/``: one ``<Contract>.json`` (abi, bytecode, deployedBytecode) per contract and
``build-info.json`` (compiler version, settings, per-source keccak, and ``inputHash`` over all of it).
"""

from __future__ import annotations

import json
import pathlib
import posixpath
import re
import subprocess
import tempfile
from collections.abc import Sequence
from typing import Any

from eth_utils import keccak

from pmoracle.errors import PmoracleError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
CONTRACTS_DIR = REPO_ROOT / "contracts"
# Directories whose ``*.sol`` files are compiled: the system, the devnet's tools (never deployed by chain/deploy.py),
# and the example consumers of its interfaces.
SOURCE_DIRS = ("contracts", "contracts/devnet", "examples/contracts")
ARTIFACTS_DIR = pathlib.Path(__file__).resolve().parent / "artifacts"
BUILD_INFO = ARTIFACTS_DIR / "build-info.json"
SOLC_VERSION = "0.8.37"
# solc 0.8.37 defaults to osaka; anvil runs cancun (devchain.py), so the target is explicit.
SETTINGS: dict[str, Any] = {
    "evmVersion": "cancun",
    "optimizer": {"enabled": True, "runs": 200},
    "viaIR": False,
    "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"]}},
}
# Contracts whose artifacts are written (the rest are interfaces and libraries).
CONTRACTS = (
    "MarginAccounts",
    "MarginAccountsReader",
    "Exchange",
    "Liquidator",
    "MarketFeeds",
    "SolverRegistry",
    "MarginOracle",
    "EntryPricer",
    "MockERC20",
    "MarginGatedLender",
    "DevnetSeeder",
    "DevnetDepositor",
)

# Import prefixes resolved under node_modules (the npm packages of package.json): scoped ones such as
# ``@openzeppelin/`` and solady (``solady/src/utils/FixedPointMathLib.sol``).
NPM_IMPORT_PREFIXES = ("@", "solady/")

_IMPORT_RE = re.compile(r'^\s*import\s+(?:[^"\']*\s+from\s+)?["\']([^"\']+)["\'];', re.MULTILINE)


class CompileError(PmoracleError):
    """Raised when solc is missing, fails, or reports errors; carries solc's messages."""


def _solc_js(root: pathlib.Path) -> pathlib.Path:
    path = root / "node_modules" / "solc" / "solc.js"
    if not path.is_file():
        raise CompileError(f"solcjs not found at {path}: run `npm ci`")
    return path


def _read_source(unit: str, root: pathlib.Path) -> str:
    path = root / "node_modules" / unit if unit.startswith(NPM_IMPORT_PREFIXES) else root / unit
    if not path.is_file():
        raise CompileError(f"cannot resolve import {unit!r} (looked at {path})")
    return path.read_text()


def collect_sources(root: pathlib.Path = REPO_ROOT, units: Sequence[str] = ()) -> dict[str, str]:
    """Return every source unit reachable from ``units`` (default: ``SOURCE_DIRS``' ``*.sol``), keyed and sorted.

    The keys are solc source unit names (paths relative to ``root``); a test compiles a harness under ``tests/``
    by naming it in ``units``, without it entering the committed artifacts.
    """
    pending = list(units) or [f"{d}/{p.name}" for d in SOURCE_DIRS for p in sorted((root / d).glob("*.sol"))]
    sources: dict[str, str] = {}
    while pending:
        unit = pending.pop()
        if unit in sources:
            continue
        text = _read_source(unit, root)
        sources[unit] = text
        for target in _IMPORT_RE.findall(text):
            if target.startswith("."):
                target = posixpath.normpath(posixpath.join(posixpath.dirname(unit), target))
            pending.append(target)
    return dict(sorted(sources.items()))


def standard_json_input(sources: dict[str, str], settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """Return solc's standard-JSON input for ``sources`` with the pinned settings (or ``settings``)."""
    return {
        "language": "Solidity",
        "sources": {name: {"content": text} for name, text in sources.items()},
        "settings": SETTINGS if settings is None else settings,
    }


def compute_input_hash(sources: dict[str, str]) -> str:
    """Return keccak256 over the compiler version and the canonical JSON of the standard-JSON input."""
    canonical = json.dumps(
        {"solc": SOLC_VERSION, "input": standard_json_input(sources)}, sort_keys=True, separators=(",", ":")
    )
    return "0x" + keccak(text=canonical).hex()


def run_solc(
    sources: dict[str, str], root: pathlib.Path = REPO_ROOT, *, settings: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Compile ``sources`` with solcjs and return its standard-JSON output (``settings``: other than the pinned
    ones, e.g. to ask for storage layouts).

    Errors:
        CompileError when node or solcjs is missing, the version is not the pinned one, or solc reports errors.
    """
    solc = _solc_js(root)
    try:
        version = subprocess.run(
            ["node", str(solc), "--version"], capture_output=True, text=True, check=True, timeout=120
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        raise CompileError(f"cannot run solcjs: {exc}") from None
    if not version.strip().startswith(SOLC_VERSION):
        raise CompileError(f"solcjs is {version.strip()!r}, the build pins {SOLC_VERSION}")
    # solc.js reads stdin with readFileSync (EAGAIN on a non-blocking pipe) and exits before a piped stdout is
    # flushed (output cut at 64 KiB): both ends are files.
    with tempfile.TemporaryFile("w+") as stdin, tempfile.TemporaryFile("w+") as stdout:
        json.dump(standard_json_input(sources, settings), stdin)
        stdin.seek(0)
        proc = subprocess.run(
            ["node", str(solc), "--standard-json"],
            stdin=stdin,
            stdout=stdout,
            stderr=subprocess.PIPE,
            text=True,
            timeout=600,
        )
        stdout.seek(0)
        text = stdout.read()
    if proc.returncode != 0:
        raise CompileError(f"solcjs exited with {proc.returncode}: {proc.stderr.strip()}")
    # solc.js prints notes such as ">>> Cannot retry compilation with SMT ..." before the JSON on stdout.
    start = text.find("{")
    if start < 0:
        raise CompileError(f"solcjs printed no JSON: {text.strip()[:500]}")
    output: dict[str, Any] = json.loads(text[start:])
    errors = [e for e in output.get("errors", []) if e.get("severity") == "error"]
    if errors:
        raise CompileError("\n".join(e.get("formattedMessage", e.get("message", "")) for e in errors))
    return output


def build_artifacts(root: pathlib.Path = REPO_ROOT) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Compile the contracts and return (artifacts by contract name, build info)."""
    sources = collect_sources(root)
    output = run_solc(sources, root)
    artifacts: dict[str, dict[str, Any]] = {}
    for unit, contracts in output["contracts"].items():
        for name, compiled in contracts.items():
            if name not in CONTRACTS or posixpath.dirname(unit) not in SOURCE_DIRS:
                continue
            artifacts[name] = {
                "contractName": name,
                "sourceName": unit,
                "abi": compiled["abi"],
                "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
                "deployedBytecode": "0x" + compiled["evm"]["deployedBytecode"]["object"],
            }
    missing = set(CONTRACTS) - set(artifacts)
    if missing:
        raise CompileError(f"solc produced no artifact for {sorted(missing)}")
    build_info = {
        "solcVersion": SOLC_VERSION,
        "settings": SETTINGS,
        "sources": {name: "0x" + keccak(text=text).hex() for name, text in sources.items()},
        "inputHash": compute_input_hash(sources),
    }
    return artifacts, build_info


def write_artifacts(artifacts: dict[str, dict[str, Any]], build_info: dict[str, Any]) -> None:
    """Write the artifacts and build info under ``ARTIFACTS_DIR`` (replacing stale ones)."""
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS_DIR.glob("*.json"):
        stale.unlink()
    for name, artifact in artifacts.items():
        (ARTIFACTS_DIR / f"{name}.json").write_text(json.dumps(artifact, indent=1, sort_keys=True) + "\n")
    BUILD_INFO.write_text(json.dumps(build_info, indent=1, sort_keys=True) + "\n")


def main() -> int:
    """Recompile and rewrite the committed artifacts."""
    artifacts, build_info = build_artifacts()
    write_artifacts(artifacts, build_info)
    for name, artifact in sorted(artifacts.items()):
        size = (len(artifact["deployedBytecode"]) - 2) // 2
        print(f"{name:16s} {size:6d} bytes runtime")
    print(f"inputHash {build_info['inputHash']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
