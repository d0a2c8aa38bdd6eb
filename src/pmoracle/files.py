"""Reading the files users hand to pmoracle: every failure is one ``InputError`` naming the file and the reason.

JSON objects that repeat a key are refused: parsers silently keep one of the values, and a margin, an evidence file
or a protection record must not mean something other than what its author saw.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pmoracle.errors import InputError


def read_text(path: Path, field: str | None = None) -> str:
    """Return the UTF-8 text of ``path``.

    Errors:
        InputError (field ``field``, default the path) when the file cannot be read or is not UTF-8.
    """
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise _error(path, field, f"cannot read file: {reason}") from None


class _DuplicateKeyError(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _reject_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise _DuplicateKeyError(key)
        obj[key] = value
    return obj


def read_json(path: Path, field: str | None = None) -> Any:
    """Return the parsed JSON document of ``path``.

    Errors:
        InputError (field ``field``, default the path) when the file cannot be read, is not JSON (with the line and
        column of the first error), or an object repeats a key.
    """
    text = read_text(path, field)
    try:
        return json.loads(text, object_pairs_hook=_reject_duplicate_keys)
    except json.JSONDecodeError as exc:
        message = f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        raise _error(path, field, message) from None
    except _DuplicateKeyError as exc:
        raise _error(path, field, f"key {exc.key!r} appears twice in one JSON object") from None


def _error(path: Path, field: str | None, message: str) -> InputError:
    # "<path>: <message>", or "<field>: <path>: <message>" when the file stands for a named input
    if field is None:
        return InputError(str(path), message)
    return InputError(field, f"{path}: {message}")
