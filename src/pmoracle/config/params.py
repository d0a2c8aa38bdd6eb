"""The risk parameters as the shell reads them: the bundled default document and operators' files.

``pmoracle.risk.params`` only parses text; reading package data and files happens here, so the engine stays free
of I/O. The default document (``default_params.toml`` next to this module) documents every field.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from pmoracle.files import read_text
from pmoracle.risk.errors import ParamsError
from pmoracle.risk.params import RiskParams, parse_params

DEFAULT_PARAMS_RESOURCE = "default_params.toml"


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
