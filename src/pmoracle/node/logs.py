"""Logging set-up: human-readable text by default, JSON lines for log shippers; secrets are redacted.

Redaction works two ways: every secret the node unlocks is registered (:func:`register_secret`) and any
occurrence of it (hex with or without ``0x``, any case) is replaced; and ``password=...``/``private_key: ...``
style pairs and ``extra`` fields with secret-sounding names are masked whatever their value. Hashes, roots and
addresses stay readable: they are public and operators need them.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import IO, Any

REDACTED = "[REDACTED]"
_SECRET_NAME = r"(?:private[_ -]?key|secret(?:[_ -]?key)?|password|passphrase|passwd|mnemonic|seed)"
_SECRET_PAIR = re.compile(rf"(?i)(\b\w*{_SECRET_NAME}\w*[\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s\"',;}}]+)")
_SECRET_FIELD = re.compile(rf"(?i)^\w*{_SECRET_NAME}\w*$")
_MIN_SECRET_LEN = 6  # registering a trivially short string would redact common words

_secrets_lock = threading.Lock()
_secrets: set[str] = set()
_secret_pattern: re.Pattern[str] | None = None

# Attributes every LogRecord has; anything else on a record came from ``extra=`` and is emitted as a field.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}


def register_secret(secret: bytes | str) -> None:
    """Redact ``secret`` from every log line from now on (bytes also in their hex forms)."""
    global _secret_pattern
    forms = {secret.hex(), "0x" + secret.hex()} if isinstance(secret, bytes) else {secret}
    forms = {f for f in forms if len(f) >= _MIN_SECRET_LEN}
    if not forms:
        return
    with _secrets_lock:
        _secrets.update(forms)
        # Longest first so "0x<key>" is replaced whole rather than leaving a dangling "0x".
        alternatives = sorted(_secrets, key=len, reverse=True)
        _secret_pattern = re.compile("|".join(re.escape(s) for s in alternatives), re.IGNORECASE)


def redact(text: str) -> str:
    """Return ``text`` with registered secrets and ``name=value`` secret pairs masked."""
    pattern = _secret_pattern
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return _SECRET_PAIR.sub(_mask_pair, text)


def _mask_pair(match: re.Match[str]) -> str:
    value = match.group(2)
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match.group(1)}{quote}{REDACTED}{quote}"


def _redact_value(name: str, value: Any) -> Any:
    if _SECRET_FIELD.match(name):
        return REDACTED
    if isinstance(value, bytes):
        return redact("0x" + value.hex())
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    return redact(str(value))


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z INFO pmoracle.node: message key=value``, redacted."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        parts = [f"{ts} {record.levelname:<7} {record.name}: {record.getMessage()}"]
        extras = {k: v for k, v in vars(record).items() if k not in _RECORD_ATTRS and not k.startswith("_")}
        parts.extend(f"{k}={_redact_value(k, v)}" for k, v in extras.items())
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return redact(line)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the ``extra`` fields, and exc when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_") and key not in obj:
                obj[key] = _redact_value(key, value)
        if record.exc_info:
            obj["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(obj, default=str, separators=(",", ":"))


def configure_logging(log_format: str = "text", level: str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Install one redacting handler on the root logger (replacing earlier ones from this function).

    Args:
        log_format: "text" or "json".
        level: logging level name.
        stream: where lines go (default stderr).

    Returns:
        The installed handler.

    Errors:
        ValueError for an unknown format or level (the config loader validates both first).
    """
    if log_format not in ("text", "json"):
        raise ValueError(f"unknown log format {log_format!r}")
    numeric_level = logging.getLevelName(level.upper())
    if not isinstance(numeric_level, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler._pmoracle = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_pmoracle", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric_level)
    return handler
