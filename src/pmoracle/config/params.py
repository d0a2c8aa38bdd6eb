"""The risk parameters as the shell reads them: the bundled default document, operators' files, the JSON Schema.

``pmoracle.risk.params`` only parses text; reading package data and files happens here, so the engine stays free
of I/O. The default document (``default_params.toml`` next to this module) documents every field, and
``params.schema.json`` describes the document for other tools (docs/parameters.md); a test keeps the schema and the
parser in agreement on every field.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

from pmoracle.files import read_text
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import RiskParams, parse_params

DEFAULT_PARAMS_RESOURCE = "default_params.toml"
SCHEMA_RESOURCE = "params.schema.json"


def default_params_text() -> str:
    """Return the text of the bundled default parameters document."""
    return resources.files("pmoracle.config").joinpath(DEFAULT_PARAMS_RESOURCE).read_text(encoding="utf-8")


def default_params() -> RiskParams:
    """Return the bundled default parameters (parsed from :func:`default_params_text`)."""
    return parse_params(default_params_text())


def load_params_file(path: Path, field: str = "risk.params_file") -> RiskParams:
    """Return the validated parameters of the TOML file at ``path``.

    Args:
        path: the parameters document.
        field: the config field or option that named the file (used in error messages).

    Errors:
        InputError (field ``field``) when the file cannot be read; ParamsError listing every problem of the
        document, prefixed with the path.
    """
    text = read_text(path, field)
    try:
        return parse_params(text)
    except ParamsError as exc:
        raise ParamsError([f"{path}: {problem}" for problem in exc.problems]) from None


def params_schema() -> dict[str, Any]:
    """Return the JSON Schema (draft 2020-12) of the parameters document."""
    text = resources.files("pmoracle.config").joinpath(SCHEMA_RESOURCE).read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


def _schema_path(parts: Iterable[str | int]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def check_params_schema(text: str) -> tuple[str, ...]:
    """Return every problem the JSON Schema finds in a TOML parameters document, sorted, each ``path: message``.

    The paths are the parser's (``price.moves[2]``); an empty result means the document satisfies the schema. Rules
    across fields (``x-rule`` in the schema) and the bounds of rational strings (``x-range``) are the parser's.

    Errors:
        ParamsError when the text is not TOML.
    """
    from jsonschema import Draft202012Validator

    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ParamsError([f"malformed TOML: {exc}"]) from exc
    problems = []
    for error in Draft202012Validator(params_schema()).iter_errors(doc):
        path = _schema_path(error.absolute_path)
        if error.validator == "required":
            missing = [name for name in error.validator_value if name not in error.instance]
            problems += [f"{_schema_path([*error.absolute_path, name])}: missing" for name in missing]
        elif error.validator == "additionalProperties" and error.validator_value is False:
            unknown = [name for name in error.instance if name not in error.schema.get("properties", {})]
            problems += [f"{_schema_path([*error.absolute_path, name])}: unknown field" for name in unknown]
        else:
            problems.append(f"{path or '(document)'}: {error.message}")
    return tuple(sorted(set(problems)))
