"""A local anvil chain started from the pinned npm package (``@foundry-rs/anvil``), for tests and the devnet."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from pmoracle.devnet.ports import reserve_port
from pmoracle.devnet.processes import spawn, terminate
from pmoracle.errors import PmoracleError

REPO_ROOT = pathlib.Path(__file__).resolve().parents[3]
# anvil's default mnemonic ("test test ... junk") gives these well-known, funded dev accounts.
DEV_MNEMONIC = "test test test test test test test test test test test junk"


class DevchainError(PmoracleError):
    """Raised when the local anvil chain cannot be found, started or reached."""


def find_anvil() -> pathlib.Path:
    """Return the path of the native anvil binary installed by ``npm ci``."""
    override = os.environ.get("PMORACLE_ANVIL")
    candidates = [pathlib.Path(override)] if override else []
    for root in (pathlib.Path.cwd(), REPO_ROOT):
        candidates += sorted((root / "node_modules" / "@foundry-rs").glob("anvil-*/bin/anvil"))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise DevchainError("anvil not found: run `npm ci` in the repository (or set PMORACLE_ANVIL)")


def _rpc(url: str, method: str, params: list[object], timeout: float = 2.0) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        reply = json.loads(response.read())
    if "error" in reply:
        raise DevchainError(f"{method}: {reply['error']}")
    return reply["result"]


@dataclass
class Devchain:
    """A running anvil process on 127.0.0.1."""

    process: subprocess.Popen[bytes]
    port: int
    chain_id: int
    log_path: pathlib.Path | None = None
    _log_file: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        """Return the HTTP JSON-RPC URL."""
        return f"http://127.0.0.1:{self.port}"

    def rpc(self, method: str, *params: object) -> object:
        """Call a JSON-RPC method directly (anvil_* cheat codes, evm_mine, ...)."""
        return _rpc(self.url, method, list(params))

    def stop(self) -> None:
        """Stop anvil's process group (SIGTERM, then SIGKILL) and wait for it to exit."""
        terminate([self.process])
        if self._log_file is not None:
            self._log_file.close()  # type: ignore[attr-defined]


def start_devchain(
    *,
    port: int | None = None,
    chain_id: int = 31337,
    block_time: float | None = None,
    accounts: int = 20,
    log_path: pathlib.Path | None = None,
    startup_timeout: float = 20.0,
    prune_history: int = 64,
    host: str = "127.0.0.1",
) -> Devchain:
    """Start anvil and return once it answers JSON-RPC (on 127.0.0.1, whatever ``host`` it listens on).

    Args:
        port: TCP port (when None, a port from :func:`pmoracle.devnet.ports.reserve_port`, and another one if
            anvil fails to bind it).
        chain_id: the chain id anvil reports.
        block_time: seconds between blocks; None mines one block per transaction (automine).
        accounts: how many funded dev accounts to create from ``DEV_MNEMONIC``.
        log_path: file for anvil's output (discarded when None).
        startup_timeout: seconds to wait for the first answer.
        prune_history: blocks of state anvil keeps (calls pinned to older blocks fail).
        host: the address anvil listens on ("0.0.0.0": every address, for nodes in other network namespaces).

    Errors:
        DevchainError when the binary is missing, exits early or does not answer in time.
    """
    binary = find_anvil()
    # A port drawn here may still be taken by another process before anvil binds it: anvil then exits at once, and
    # a fresh port is tried. A port the caller forced is tried once.
    tries = 1 if port is not None else _BIND_TRIES
    for attempt in range(1, tries + 1):
        chosen = port if port is not None else reserve_port()
        try:
            return _start_anvil(binary, chosen, chain_id, block_time, accounts, log_path, startup_timeout,
                                prune_history, host)  # fmt: skip
        except _ExitedEarlyError as exc:
            if attempt == tries:
                raise DevchainError(f"anvil exited with status {exc.status} on port {chosen} "
                                    f"(port in use?) after {attempt} tries") from None  # fmt: skip
    raise AssertionError("unreachable")  # pragma: no cover


_BIND_TRIES = 5


class _ExitedEarlyError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def _start_anvil(
    binary: pathlib.Path, port: int, chain_id: int, block_time: float | None, accounts: int,
    log_path: pathlib.Path | None, startup_timeout: float, prune_history: int, host: str,
) -> Devchain:  # fmt: skip
    # --hardfork cancun and --prune-history keep anvil fast over long runs (measured: the defaults slow down with
    # chain length and can stop automining under concurrent senders); --prune-history still serves anvil_reorg
    # and eth_call at recent blocks.
    cmd = [
        str(binary), "--host", host, "--port", str(port), "--chain-id", str(chain_id),
        "--hardfork", "cancun", "--prune-history", str(prune_history), "--accounts", str(accounts),
        "--mnemonic", DEV_MNEMONIC, "--balance", "1000000",
    ]  # fmt: skip
    if block_time is not None:
        cmd += ["--block-time", str(block_time)]
    log_file = open(log_path, "wb") if log_path else None  # noqa: SIM115 - closed by Devchain.stop
    process = spawn(cmd, stdout=log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT)
    chain = Devchain(process=process, port=port, chain_id=chain_id, log_path=log_path, _log_file=log_file)
    try:
        deadline = time.monotonic() + startup_timeout
        while True:
            if process.poll() is not None:
                raise _ExitedEarlyError(process.returncode)
            try:
                if int(str(chain.rpc("eth_chainId")), 16) == chain_id:
                    return chain
            except (OSError, DevchainError):
                pass
            if time.monotonic() > deadline:
                raise DevchainError(f"anvil did not answer on {chain.url} within {startup_timeout} s")
            time.sleep(0.05)
    except BaseException:  # a failure, or StopRequested while waiting: leave no anvil behind
        chain.stop()
        raise


@contextmanager
def devchain(**kwargs: object) -> Iterator[Devchain]:
    """Run anvil for the duration of a ``with`` block."""
    chain = start_devchain(**kwargs)  # type: ignore[arg-type]
    try:
        yield chain
    finally:
        chain.stop()
