"""``pmoracle keys``: create, import and inspect the node's key files; move slashing-protection records.

Passwords come from ``--password-file`` or the environment variable named by ``--password-env`` (default
PMORACLE_PASSWORD), never from a command-line value, which would end up in shell history and ``ps``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pmoracle.config.local import DEFAULT_PASSWORD_ENV

KINDS = ("signing", "transmitter", "p2p")


def _add_password_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--password-file", type=Path, help="file whose first line is the keystore password")
    parser.add_argument(
        "--password-env",
        default=DEFAULT_PASSWORD_ENV,
        help=f"environment variable holding the password when no --password-file (default {DEFAULT_PASSWORD_ENV})",
    )
    parser.add_argument(
        "--light-kdf",
        action="store_true",
        help="few KDF iterations: fast to unlock, weak against brute force (devnets and tests only)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the ``keys`` sub-commands."""
    sub = parser.add_subparsers(dest="keys_command", required=True, metavar="ACTION")

    new = sub.add_parser("new", help="create a new encrypted key file")
    new.add_argument("--kind", required=True, choices=KINDS)
    new.add_argument("--out", required=True, type=Path, help="key file to create (never overwritten)")
    new.add_argument("--json", action="store_true", help="print the public info as JSON")
    _add_password_arguments(new)

    imp = sub.add_parser("import", help="encrypt an existing private key into a key file")
    imp.add_argument("--kind", required=True, choices=KINDS)
    imp.add_argument("--private-key-file", required=True, type=Path, help="file holding the key as hex")
    imp.add_argument("--out", required=True, type=Path, help="key file to create (never overwritten)")
    imp.add_argument("--json", action="store_true", help="print the public info as JSON")
    _add_password_arguments(imp)

    show = sub.add_parser("show", help="print a key file's kind and address or peer id (no password needed)")
    show.add_argument("file", type=Path)
    show.add_argument("--json", action="store_true", help="print as JSON")


def _print_info(info: object, as_json: bool) -> None:
    from pmoracle.node.keys import KeyInfo

    if not isinstance(info, KeyInfo):  # pragma: no cover - internal misuse
        raise TypeError(info)
    if as_json:
        print(json.dumps(info.to_json()))
        return
    kind = info.kind.value if info.kind is not None else "ethereum (plain V3 keystore)"
    print(f"kind:    {kind}")
    if info.address is not None:
        print(f"address: {info.address}")
    if info.peer_id is not None:
        print(f"peer id: {info.peer_id}")
    print(f"file:    {info.path}")


def run(args: argparse.Namespace) -> int:
    """Run one ``keys`` action; return the exit status."""
    from pmoracle.node import keys

    if args.keys_command == "show":
        _print_info(keys.describe_key_file(args.file), args.json)
        return 0
    password = keys.read_password(args.password_file, args.password_env)
    iterations = keys.LIGHT_KDF_ITERATIONS if args.light_kdf else None
    secret = keys.read_private_key_file(args.private_key_file) if args.keys_command == "import" else None
    info = keys.write_key_file(args.kind, args.out, password, secret=secret, kdf_iterations=iterations)
    _print_info(info, args.json)
    return 0
