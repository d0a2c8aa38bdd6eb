"""``pmoracle params``: check a parameters document against its JSON Schema and the engine's parser, or print the
schema (docs/parameters.md).

``pmoracle params check FILE.toml`` prints the document's ``paramsHash`` and its canonical bytes (with ``--json``, one
JSON object); a document with any problem exits with status 2 and one message listing every problem with its path
(the parser's, then the schema's on fields the parser did not name). ``pmoracle params schema`` prints the JSON Schema.
``pmoracle params canonical FILE.toml`` writes exactly the document's canonical bytes (no newline), whose keccak256
is its ``paramsHash``: what ``MarginOracle.publishParams`` takes (docs/contracts.md).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the params sub-command's arguments."""
    parser.add_argument(
        "action",
        choices=("check", "schema", "canonical"),
        help="check a document, print the JSON Schema, or write a document's canonical bytes",
    )
    parser.add_argument("file", type=pathlib.Path, nargs="?", metavar="FILE.toml", help="the document")
    parser.add_argument("--json", action="store_true", help="check: print one JSON object")


def run(args: argparse.Namespace) -> int:
    """Check a document, print the schema, or write a document's canonical bytes.

    Args:
        args: ``action`` (``check``, ``schema`` or ``canonical``), ``file`` (for ``check`` and ``canonical``),
            ``json``.

    Returns:
        0 on success.

    Errors:
        ``InputError`` (exit status 2) when ``check`` or ``canonical`` has no file or the file cannot be read;
        ``ParamsError`` listing every problem of the schema and of the parser, each prefixed with the file's path.
    """
    from pmoracle.config.params import check_params_schema, params_schema
    from pmoracle.errors import InputError
    from pmoracle.files import read_text
    from pmoracle.risk.errors import ParamsError
    from pmoracle.risk.params import parse_params

    if args.action == "schema":
        sys.stdout.write(json.dumps(params_schema(), indent=2) + "\n")
        return 0
    if args.file is None:
        raise InputError("FILE.toml", f"params {args.action} needs the document")
    text = read_text(args.file, "FILE.toml")
    schema_problems = check_params_schema(text)
    problems: list[str] = []
    params = None
    try:
        params = parse_params(text)
    except ParamsError as exc:
        problems = list(exc.problems)
    named = {_field_of(p) for p in problems}
    problems += [p for p in schema_problems if _field_of(p) not in named]  # one line per field: the parser's
    if problems or params is None:
        raise ParamsError([f"{args.file}: {problem}" for problem in problems])
    if args.action == "canonical":
        sys.stdout.flush()
        sys.stdout.buffer.write(params.canonical_bytes)
        sys.stdout.buffer.flush()
        return 0
    result = {"params_hash": "0x" + params.params_hash.hex(), "canonical": params.canonical_bytes.decode()}
    if args.json:
        sys.stdout.write(json.dumps(result, indent=2) + "\n")
    else:
        sys.stdout.write(f"{args.file}: valid\nparamsHash {result['params_hash']}\ncanonical {result['canonical']}\n")
    return 0


def _field_of(problem: str) -> str:
    """Return the field a ``path: message`` problem names, without its list index (``joint.modes[0]``)."""
    return problem.split(":", 1)[0].split("[", 1)[0]
