"""The keeper's config file (``keeper.toml``): chain, key, policy, metrics and logs; validated at load."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from pmoracle.errors import InputError
from pmoracle.risk.inputs import WAD

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class KeeperConfig:
    """A validated keeper config; paths are absolute (relative ones resolved against the file's directory)."""

    rpc_urls: tuple[str, ...]
    deployment: Path
    keystore: Path  # the keeper account's V3 keystore: a dedicated account funded with cash in the ledger
    password_file: Path | None
    password_env: str | None
    params_file: Path | None  # the committee's risk parameters (None: the built-in defaults)
    margin_api: str | None  # a node's API base URL for leaves and proofs (None: the keeper's own recomputation)
    poll_interval: float  # seconds between evaluations of the latest attested round
    block_time: int  # seconds added to the latest block's time to date a bid (0: the safe choice)
    min_profit: int  # USD WAD: the least gain after gas for which it bids
    gas_cost: int  # USD WAD: the estimated cost of one bid's gas
    wait_for_plateau: bool  # bid only once the discount stops moving (decision.Policy)
    metrics_host: str
    metrics_port: int  # 0: no metrics server
    log_format: str
    log_level: str


def _section(doc: dict[str, Any], name: str) -> dict[str, Any]:
    value = doc.get(name, {})
    if not isinstance(value, dict):
        raise InputError(name, f"must be a table, got {value!r}")
    return value


def _usd(field: str, value: Any) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise InputError(field, f"not a number: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise InputError(field, f"must be a finite amount >= 0, got {value!r}")
    return int(amount * WAD)


def _path(base: Path, value: Any, field: str) -> Path:
    if not isinstance(value, str) or not value:
        raise InputError(field, f"must be a non-empty path, got {value!r}")
    path = Path(value)
    return path if path.is_absolute() else base / path


def parse_keeper_config(text: str, base: Path) -> KeeperConfig:
    """Return the config in TOML ``text`` with relative paths resolved against ``base``.

    Errors:
        InputError naming the offending key (``section.key``) and value.
    """
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError("keeper.toml", str(exc)) from None
    unknown = set(doc) - {"chain", "keeper", "metrics", "log"}
    if unknown:
        raise InputError(sorted(unknown)[0], "unknown section")
    chain, keeper, metrics, logs = (_section(doc, s) for s in ("chain", "keeper", "metrics", "log"))
    urls = chain.get("rpc_urls", [])
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u.startswith("http") for u in urls):
        raise InputError("chain.rpc_urls", f"must be a non-empty list of http(s) URLs, got {urls!r}")
    password_file = keeper.get("password_file")
    password_env = keeper.get("password_env")
    if password_file is None and not password_env:
        raise InputError("keeper.password_env", "give keeper.password_file or keeper.password_env")
    poll = keeper.get("poll_interval", 2.0)
    if not isinstance(poll, int | float) or poll <= 0:
        raise InputError("keeper.poll_interval", f"must be > 0 seconds, got {poll!r}")
    block_time = keeper.get("block_time", 0)
    if not isinstance(block_time, int) or block_time < 0:
        raise InputError("keeper.block_time", f"must be an integer >= 0, got {block_time!r}")
    port = metrics.get("port", 9109)
    if not isinstance(port, int) or not 0 <= port <= 65_535:
        raise InputError("metrics.port", f"must be 0-65535, got {port!r}")
    log_format = logs.get("format", "text")
    if log_format not in LOG_FORMATS:
        raise InputError("log.format", f"must be one of {LOG_FORMATS}, got {log_format!r}")
    level = str(logs.get("level", "INFO")).upper()
    if level not in LOG_LEVELS:
        raise InputError("log.level", f"must be one of {LOG_LEVELS}, got {level!r}")
    margin_api = keeper.get("margin_api") or None
    if margin_api is not None and not str(margin_api).startswith("http"):
        raise InputError("keeper.margin_api", f"must be an http(s) URL, got {margin_api!r}")
    params_file = keeper.get("params_file")
    wait = keeper.get("wait_for_plateau", False)
    if not isinstance(wait, bool):
        raise InputError("keeper.wait_for_plateau", f"must be true or false, got {wait!r}")
    return KeeperConfig(
        rpc_urls=tuple(urls),
        deployment=_path(base, chain.get("deployment"), "chain.deployment"),
        keystore=_path(base, keeper.get("keystore"), "keeper.keystore"),
        password_file=None if password_file is None else _path(base, password_file, "keeper.password_file"),
        password_env=password_env or None,
        params_file=None if params_file is None else _path(base, params_file, "keeper.params_file"),
        margin_api=margin_api,
        poll_interval=float(poll),
        block_time=block_time,
        min_profit=_usd("keeper.min_profit_usd", keeper.get("min_profit_usd", "10")),
        gas_cost=_usd("keeper.gas_cost_usd", keeper.get("gas_cost_usd", "1")),
        wait_for_plateau=wait,
        metrics_host=str(metrics.get("host", "127.0.0.1")),
        metrics_port=port,
        log_format=log_format,
        log_level=level,
    )


def load_keeper_config(path: Path) -> KeeperConfig:
    """Read and validate the config file at ``path``.

    Errors:
        InputError when it cannot be read or a value is invalid (naming the key).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(str(path), f"cannot read ({exc.strerror})") from None
    return parse_keeper_config(text, Path(path).resolve().parent)
