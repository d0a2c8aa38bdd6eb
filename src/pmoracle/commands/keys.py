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

    export = sub.add_parser("export-protection", help="write the slashing-protection records as interchange JSON")
    export.add_argument("--data-dir", required=True, type=Path, help="the node's data directory")
    export.add_argument("--out", required=True, type=Path, help="JSON file to create (never overwritten)")

    imp_prot = sub.add_parser(
        "import-protection", help="merge interchange JSON into the slashing-protection records (all or nothing)"
    )
    imp_prot.add_argument("--data-dir", required=True, type=Path, help="the node's data directory")
    imp_prot.add_argument("file", type=Path, help="JSON written by export-protection")


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

    if args.keys_command == "export-protection":
        return _export_protection(args.data_dir, args.out)
    if args.keys_command == "import-protection":
        return _import_protection(args.data_dir, args.file)
    if args.keys_command == "show":
        _print_info(keys.describe_key_file(args.file), args.json)
        return 0
    password = keys.read_password(args.password_file, args.password_env)
    iterations = keys.LIGHT_KDF_ITERATIONS if args.light_kdf else None
    secret = keys.read_private_key_file(args.private_key_file) if args.keys_command == "import" else None
    info = keys.write_key_file(args.kind, args.out, password, secret=secret, kdf_iterations=iterations)
    _print_info(info, args.json)
    return 0


def _export_protection(data_dir: Path, out: Path) -> int:
    import os

    from pmoracle.errors import PmoracleError
    from pmoracle.node.datadir import protection_db_path
    from pmoracle.storage.protection_db import ProtectionDB

    db_path = protection_db_path(data_dir)
    # Opening a missing file would create an empty store and export nothing, hiding a wrong --data-dir.
    if not db_path.is_file():
        raise PmoracleError(f"data-dir: no slashing-protection database at {db_path}")
    with ProtectionDB(db_path) as db:
        document = db.export_json()
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        raise PmoracleError(f"out: {out} already exists") from None
    except OSError as exc:
        raise PmoracleError(f"out: cannot create {out}: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(document, handle, indent=2)
        handle.write("\n")
    print(f"exported {len(document['records'])} record(s) from {db_path} to {out}")
    return 0


def _import_protection(data_dir: Path, file: Path) -> int:
    from pmoracle.files import read_json
    from pmoracle.node.datadir import protection_db_path
    from pmoracle.storage.protection_db import ProtectionDB

    document = read_json(Path(file), "file")
    Path(data_dir).mkdir(parents=True, exist_ok=True)
    db_path = protection_db_path(data_dir)
    with ProtectionDB(db_path) as db:
        added = db.import_json(document)
        total = sum(1 for _ in db.iter_records())
    print(f"imported {added} new record(s) into {db_path} ({total} in total)")
    return 0
