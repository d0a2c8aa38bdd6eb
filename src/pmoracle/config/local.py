"""``LocalConfig``: what one operator chooses for one node (files, endpoints, ports, timings).

The shared, on-chain config (committee, quorum, round period, paramsHash) lives in :mod:`pmoracle.config.network`;
nothing here can change what the node signs, only where it reads, listens and writes.

Sources, highest precedence first: CLI overrides (a ``{"section.key": value}`` dict), ``PMORACLE_<SECTION>_<KEY>``
environment variables, the TOML file, the defaults below. Validation collects every problem before raising one
:class:`ConfigError`, so an operator fixes a bad file in one pass (libocr's ``SanityCheck`` style).
"""

from __future__ import annotations

import logging
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pmoracle.errors import PmoracleError

ENV_PREFIX = "PMORACLE_"
DEFAULT_PASSWORD_ENV = "PMORACLE_PASSWORD"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One thing wrong with the config: the dotted key, what is wrong, and where the value came from."""

    key: str
    message: str
    source: str = ""

    def __str__(self) -> str:
        suffix = f" (from {self.source})" if self.source else ""
        return f"{self.key}: {self.message}{suffix}"


class ConfigError(PmoracleError):
    """Raised when the local config has one or more problems; ``problems`` lists every one of them."""

    def __init__(self, problems: tuple[ConfigProblem, ...]) -> None:
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{len(problems)} config problem(s):\n{lines}")
        self.problems = problems


# --- the typed config -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NodeSection:
    """Where the node keeps its state and how it logs."""

    # SQLite files (slashing protection, report archive, last block) live here; losing it loses the
    # never-sign-twice guarantee, so it must be on durable storage and never shared between two nodes.
    data_dir: Path
    # "text" for people at a terminal, "json" (one object per line) for log shippers.
    log_format: str
    # Python logging level name; DEBUG logs every gossip message and is meant for short investigations.
    log_level: str


@dataclass(frozen=True, slots=True)
class ChainSection:
    """How the node reaches the chain."""

    # First is the primary; the others are tried in order when it fails, so one provider outage does not
    # stop the node. All must serve the same chain (the follower checks the chain id).
    rpc_urls: tuple[str, ...]
    # Seconds before one JSON-RPC call is abandoned and counted as an error; keep well under the round period.
    rpc_timeout: float
    # Seconds between polls for a new head; a fraction of the block time keeps anchor-to-report latency low.
    poll_interval: float
    # Seconds between probes of every endpoint's head (with two or more URLs): a lagging or failing endpoint moves
    # behind the others, and one that recovered gets its configured place back.
    probe_interval: float
    # Every round reads the previous round's book plus the accounts changed since (every account only when there
    # is no book to extend); every full_snapshot_every-th incremental snapshot is checked by a full read of the
    # same block in the background (node/snapshots.py), so no round waits on a full read it does not need.
    # 1 reads every account every round and checks nothing: the fallback if a check ever fails.
    full_snapshot_every: int
    # JSON file with the deployed contract addresses (written by deploy); the addresses are not secret but
    # must match what the committee uses, or the node's reports are bound to the wrong domain.
    deployment: Path


@dataclass(frozen=True, slots=True)
class KeysSection:
    """Key files and where their password comes from (never from the config itself)."""

    # Encrypted V3 keystore of the report-signing key registered in the committee.
    signing_keystore: Path
    # Encrypted V3 keystore of the account paying gas for attest and evidence transactions; separate from
    # the signing key so a drained gas account cannot sign reports and vice versa.
    transmitter_keystore: Path
    # Encrypted libp2p identity key; the peer id other nodes bootstrap to is derived from it.
    p2p_key: Path
    # File holding the keystore password (first line); takes precedence over password_env when set.
    password_file: Path | None
    # Name of the environment variable holding the password when no password_file is set.
    password_env: str
    # Encrypted FROST key share of the installed committee (node/frost_keys.py; same password). With it, and a
    # committee with a group key, the node signs each round with FROST (docs/frost.md); without it, ECDSA only.
    frost_share: Path | None = None


@dataclass(frozen=True, slots=True)
class P2PSection:
    """libp2p endpoint."""

    # Multiaddr the node listens on, e.g. /ip4/0.0.0.0/tcp/9000.
    listen: str
    # Multiaddrs with /p2p/<peer id> of nodes to dial first; other peers are found through them.
    bootstrap: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ApiSection:
    """HTTP API (/metrics, /health, /v1/margin)."""

    # 127.0.0.1 by default: expose the API through a reverse proxy rather than directly.
    host: str
    # TCP port; 0 picks a free port (tests, devnets).
    port: int


@dataclass(frozen=True, slots=True)
class RiskSection:
    """The risk model's parameters."""

    # Canonical parameters document; it must hash to the committee's on-chain paramsHash or the node
    # refuses to start (its reports could never join a quorum).
    params_file: Path


@dataclass(frozen=True, slots=True)
class TransmitSection:
    """Posting quorum certificates on-chain."""

    # Seconds between transmission stages: the node at schedule position p waits p * stage_delay before
    # posting, so normally one transaction per round is sent. Larger wastes less gas, smaller recovers faster.
    stage_delay: float
    # The node never bids more than this for gas (gwei); a fee spike then delays attestation instead of
    # draining the transmitter account.
    gas_price_cap_gwei: Decimal
    # Below this transmitter balance (ETH) the node reports itself degraded: it may soon be unable to pay for an
    # attestation or an evidence transaction.
    min_balance_eth: Decimal

    @property
    def gas_price_cap_wei(self) -> int:
        """Return the cap in wei (rounded down)."""
        return int(self.gas_price_cap_gwei * 10**9)

    @property
    def min_balance_wei(self) -> int:
        """Return the minimum balance in wei (rounded down)."""
        return int(self.min_balance_eth * 10**18)


@dataclass(frozen=True, slots=True)
class DisputeSection:
    """Proving wrong attested rounds (node/fraud_prover.py, docs/dispute.md)."""

    # Base URLs of other committee members' APIs (http://host:port). The chain holds only a round's roots; a proof
    # needs the attested leaves and risk-array rows, which only the members that signed the round serve. When a
    # round is attested with a digest this node did not compute, it fetches them from these, in order, keeps the
    # first whose tree is the attested one, and posts the proof with its transmitter. Empty: the node only logs
    # and counts such a round as "unprovable" (run `pmoracle dispute prove` by hand).
    peer_apis: tuple[str, ...]
    # Seconds one round's proof may take (fetching from the peers, recomputing the round, the transaction); the
    # proof runs beside the rounds, so this bounds only how long a stuck peer or RPC holds the prover.
    prove_timeout: float


@dataclass(frozen=True, slots=True)
class FrostSection:
    """The node's own FROST DKG (node/dkg_service.py, docs/frost.md)."""

    # Run the DKG over gossip by itself when this node is a member of an installed committee without a group key,
    # store the share encrypted in <data_dir>/frost/ and confirm the key on chain (SolverRegistry.confirmFrostKey);
    # the registry installs it once every member confirmed the same one. Off: the node stays on ECDSA until an
    # operator runs `pmoracle frost dkg` and the owner registers a key.
    auto_dkg: bool = True
    # Seconds one DKG run may take before it is counted as failed and retried (with backoff, under a new run number).
    dkg_timeout: float = 60.0


@dataclass(frozen=True, slots=True)
class LocalConfig:
    """The config of this node, fully validated."""

    node: NodeSection
    chain: ChainSection
    keys: KeysSection
    p2p: P2PSection
    api: ApiSection
    risk: RiskSection
    transmit: TransmitSection
    dispute: DisputeSection
    frost: FrostSection = FrostSection()


# --- schema ----------------------------------------------------------------------------------------------------

_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class _Field:
    section: str
    key: str
    kind: str  # path | optional_path | str | float | int | decimal | str_list | bool
    default: Any
    check: Callable[[Any], str | None] | None = None

    @property
    def dotted(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env_name(self) -> str:
        return f"{ENV_PREFIX}{self.section.upper()}_{self.key.upper()}"


def _positive(value: Any) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def _non_negative(value: Any) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else f"{value} out of range [0, 65535]"


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value in choices else f"{value!r} is not one of {', '.join(choices)}"

    return check


def _check_multiaddr(value: str) -> str | None:
    from multiaddr import Multiaddr

    try:
        Multiaddr(value)
    except Exception:  # the multiaddr package raises several unrelated types for bad input
        return f"{value!r} is not a multiaddr"
    return None


def _check_bootstrap(values: tuple[str, ...]) -> str | None:
    problems = []
    for value in values:
        problem = _check_multiaddr(value)
        if problem is None and "/p2p/" not in value:
            problem = f"{value!r} lacks /p2p/<peer id>"
        if problem:
            problems.append(problem)
    return "; ".join(problems) or None


def _check_rpc_urls(values: tuple[str, ...]) -> str | None:
    if not values:
        return "empty: at least one JSON-RPC URL is needed"
    bad = [v for v in values if urlsplit(v).scheme not in ("http", "https", "ws", "wss") or not urlsplit(v).hostname]
    return f"not http(s)/ws(s) URLs: {', '.join(map(repr, bad))}" if bad else None


def _check_api_urls(values: tuple[str, ...]) -> str | None:
    bad = [v for v in values if urlsplit(v).scheme not in ("http", "https") or not urlsplit(v).hostname]
    return f"not http(s) URLs: {', '.join(map(repr, bad))}" if bad else None


def _check_env_name(value: str) -> str | None:
    return None if value and value.replace("_", "").isalnum() else f"{value!r} is not an environment variable name"


def _check_host(value: str) -> str | None:
    return None if value.strip() else "empty"


_FIELDS: tuple[_Field, ...] = (
    _Field("node", "data_dir", "path", _REQUIRED),
    _Field("node", "log_format", "str", "text", _one_of(LOG_FORMATS)),
    _Field("node", "log_level", "str", "INFO", _one_of(LOG_LEVELS)),
    _Field("chain", "rpc_urls", "str_list", _REQUIRED, _check_rpc_urls),
    _Field("chain", "rpc_timeout", "float", 10.0, _positive),
    _Field("chain", "poll_interval", "float", 0.5, _positive),
    _Field("chain", "probe_interval", "float", 15.0, _positive),
    _Field("chain", "full_snapshot_every", "int", 32, _positive),
    _Field("chain", "deployment", "path", _REQUIRED),
    _Field("keys", "signing_keystore", "path", _REQUIRED),
    _Field("keys", "transmitter_keystore", "path", _REQUIRED),
    _Field("keys", "p2p_key", "path", _REQUIRED),
    _Field("keys", "password_file", "optional_path", None),
    _Field("keys", "password_env", "str", DEFAULT_PASSWORD_ENV, _check_env_name),
    _Field("keys", "frost_share", "optional_path", None),
    _Field("p2p", "listen", "str", "/ip4/0.0.0.0/tcp/9000", _check_multiaddr),
    _Field("p2p", "bootstrap", "str_list", (), _check_bootstrap),
    _Field("api", "host", "str", "127.0.0.1", _check_host),
    _Field("api", "port", "int", 8700, _port),
    _Field("risk", "params_file", "path", _REQUIRED),
    _Field("transmit", "stage_delay", "float", 2.0, _non_negative),
    _Field("transmit", "gas_price_cap_gwei", "decimal", Decimal(500), _positive),
    _Field("transmit", "min_balance_eth", "decimal", Decimal("0.1"), _non_negative),
    _Field("dispute", "peer_apis", "str_list", (), _check_api_urls),
    _Field("dispute", "prove_timeout", "float", 300.0, _positive),
    _Field("frost", "auto_dkg", "bool", True),
    _Field("frost", "dkg_timeout", "float", 60.0, _positive),
)
_SECTIONS: dict[str, type] = {
    "node": NodeSection,
    "chain": ChainSection,
    "keys": KeysSection,
    "p2p": P2PSection,
    "api": ApiSection,
    "risk": RiskSection,
    "transmit": TransmitSection,
    "dispute": DisputeSection,
    "frost": FrostSection,
}
# Files the node reads at start-up; a missing one is reported with the rest when check_files is on.
_FILES_READ_AT_START = (
    "chain.deployment",
    "keys.signing_keystore",
    "keys.transmitter_keystore",
    "keys.p2p_key",
    "keys.password_file",
    "keys.frost_share",
    "risk.params_file",
)


def config_keys() -> tuple[str, ...]:
    """Return every dotted config key (``section.key``) in documentation order."""
    return tuple(f.dotted for f in _FIELDS)


# --- coercion --------------------------------------------------------------------------------------------------


class _BadValueError(Exception):
    pass


def _coerce(field: _Field, raw: Any, base_dir: Path) -> Any:
    """Return ``raw`` (a TOML value, or a string from env/CLI) converted to the field's type."""
    kind = field.kind
    if kind in ("path", "optional_path"):
        if kind == "optional_path" and raw in (None, ""):
            return None
        if not isinstance(raw, str | os.PathLike) or not str(raw):
            raise _BadValueError(f"expected a path string, got {raw!r}")
        path = Path(raw).expanduser()
        return path if path.is_absolute() else (base_dir / path)
    if kind == "str":
        if not isinstance(raw, str):
            raise _BadValueError(f"expected a string, got {raw!r}")
        return raw
    if kind == "str_list":
        if isinstance(raw, str):  # env/CLI: comma-separated
            return tuple(item.strip() for item in raw.split(",") if item.strip())
        if not isinstance(raw, list | tuple) or not all(isinstance(item, str) for item in raw):
            raise _BadValueError(f"expected a list of strings, got {raw!r}")
        return tuple(raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("true", "false", "1", "0"):  # env/CLI
            return raw.strip().lower() in ("true", "1")
        raise _BadValueError(f"expected true or false, got {raw!r}")
    if kind == "int":
        if isinstance(raw, bool):
            raise _BadValueError(f"expected an integer, got {raw!r}")
        if isinstance(raw, int):
            return raw
        if isinstance(raw, str) and raw.strip().lstrip("-").isdigit():
            return int(raw)
        raise _BadValueError(f"expected an integer, got {raw!r}")
    if kind == "float":
        if isinstance(raw, bool):
            raise _BadValueError(f"expected a number, got {raw!r}")
        if isinstance(raw, int | float):
            return float(raw)
        try:
            return float(str(raw))
        except ValueError:
            raise _BadValueError(f"expected a number, got {raw!r}") from None
    if kind == "decimal":
        if isinstance(raw, bool):
            raise _BadValueError(f"expected a number, got {raw!r}")
        try:
            value = Decimal(str(raw))
        except InvalidOperation:
            raise _BadValueError(f"expected a number, got {raw!r}") from None
        if not value.is_finite():
            raise _BadValueError(f"expected a finite number, got {raw!r}")
        return value
    raise AssertionError(f"unknown field kind {kind}")  # pragma: no cover - schema bug


# --- loading ---------------------------------------------------------------------------------------------------


def load_local_config(
    path: Path | str | None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    check_files: bool = True,
) -> LocalConfig:
    """Load, merge and validate the local config.

    Args:
        path: TOML file, or None to build the config from environment and overrides alone. Relative paths in
            the file are relative to the file's directory; relative paths from env/overrides to the working
            directory.
        environ: environment to read ``PMORACLE_<SECTION>_<KEY>`` from (default ``os.environ``).
        overrides: CLI flags as ``{"section.key": value}``; None values are ignored (flag not given).
        check_files: also report files the node reads at start-up that do not exist.

    Returns:
        The frozen :class:`LocalConfig`.

    Errors:
        ConfigError listing every problem: unreadable or invalid TOML, unknown sections and keys (in the file,
        the environment or the overrides), missing required keys, values of the wrong type or out of range.
    """
    environ = os.environ if environ is None else environ
    problems: list[ConfigProblem] = []
    fields = {f.dotted: f for f in _FIELDS}
    # dotted key -> (raw value, source description, directory relative paths resolve against)
    raw: dict[str, tuple[Any, str, Path]] = {}

    if path is not None:
        path = Path(path)
        file_data: dict[str, Any] = {}
        try:
            file_data = tomllib.loads(path.read_text(encoding="utf-8"))
        except OSError as exc:
            problems.append(ConfigProblem(str(path), f"cannot read config file: {exc.strerror or exc}"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            problems.append(ConfigProblem(str(path), f"invalid TOML: {exc}"))
        base_dir = path.resolve().parent
        for section, table in file_data.items():
            if section not in _SECTIONS:
                problems.append(ConfigProblem(section, "unknown section", str(path)))
                continue
            if not isinstance(table, dict):
                problems.append(ConfigProblem(section, f"expected a [{section}] table", str(path)))
                continue
            for key, value in table.items():
                dotted = f"{section}.{key}"
                if dotted not in fields:
                    problems.append(ConfigProblem(dotted, "unknown key", str(path)))
                    continue
                raw[dotted] = (value, str(path), base_dir)

    cwd = Path.cwd()
    env_names = {f.env_name: f.dotted for f in _FIELDS}
    section_prefixes = tuple(f"{ENV_PREFIX}{s.upper()}_" for s in _SECTIONS)
    unknown_env: list[str] = []
    for name, value in environ.items():
        if name in env_names:
            raw[env_names[name]] = (value, name, cwd)
        elif name.startswith(section_prefixes):
            unknown_env.append(name)

    for dotted, value in (overrides or {}).items():
        if value is None:
            continue
        if dotted not in fields:
            problems.append(ConfigProblem(dotted, "unknown key", "command line"))
            continue
        raw[dotted] = (value, "command line", cwd)

    values: dict[str, Any] = {}
    for field in _FIELDS:
        if field.dotted not in raw:
            if field.default is _REQUIRED:
                problems.append(ConfigProblem(field.dotted, f"missing (set it in the file or {field.env_name})"))
            else:
                values[field.dotted] = field.default
            continue
        value, source, base_dir = raw[field.dotted]
        try:
            coerced = _coerce(field, value, base_dir)
        except _BadValueError as exc:
            problems.append(ConfigProblem(field.dotted, str(exc), source))
            continue
        problem = field.check(coerced) if field.check else None
        if problem:
            problems.append(ConfigProblem(field.dotted, problem, source))
            continue
        values[field.dotted] = coerced

    # A typo like PMORACLE_API_PROT would otherwise be silently ignored; the password variable may look like
    # a config variable (its name is the operator's choice) and is exempt.
    problems.extend(
        ConfigProblem(name, "unknown config environment variable", "environment")
        for name in sorted(unknown_env)
        if name != values.get("keys.password_env")
    )

    if check_files:
        for dotted in _FILES_READ_AT_START:
            file_path = values.get(dotted)
            if file_path is not None and not file_path.is_file():
                problems.append(ConfigProblem(dotted, f"file not found: {file_path}", raw[dotted][1]))

    if problems:
        raise ConfigError(tuple(problems))

    sections = {}
    for name, cls in _SECTIONS.items():
        sections[name] = cls(**{f.key: values[f.dotted] for f in _FIELDS if f.section == name})
    config = LocalConfig(**sections)
    logging.getLogger(__name__).debug("config loaded from %s", path if path is not None else "environment")
    return config


# --- command-line flags ----------------------------------------------------------------------------------------

# Flags for the settings operators change most from the command line; anything else goes through --set.
_SHORTCUT_FLAGS = {
    "--data-dir": "node.data_dir",
    "--log-format": "node.log_format",
    "--log-level": "node.log_level",
    "--api-port": "api.port",
}


def add_config_arguments(parser: Any) -> None:
    """Add ``--config``, ``--set section.key=value`` (repeatable) and the shortcut flags to an argparse parser."""
    parser.add_argument("--config", type=Path, help="TOML config file (see examples/node.toml)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (highest precedence; repeatable; lists comma-separated)",
    )
    for flag, dotted in _SHORTCUT_FLAGS.items():
        parser.add_argument(flag, dest="config_" + dotted.replace(".", "_"), help=f"same as --set {dotted}=...")


def overrides_from_args(args: Any) -> dict[str, Any]:
    """Return the ``{"section.key": value}`` overrides given on the command line (shortcut flags win over --set).

    Errors:
        ConfigError for a ``--set`` item without ``=``.
    """
    overrides: dict[str, Any] = {}
    problems = []
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            problems.append(ConfigProblem(item, "expected --set SECTION.KEY=VALUE", "command line"))
            continue
        overrides[key.strip()] = value
    if problems:
        raise ConfigError(tuple(problems))
    for dotted in _SHORTCUT_FLAGS.values():
        value = getattr(args, "config_" + dotted.replace(".", "_"), None)
        if value is not None:
            overrides[dotted] = value
    return overrides
