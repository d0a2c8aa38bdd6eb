"""A private network for a devnet: each node in its own network namespace, so a partition is a real one.

Inside ``unshare --user --map-root-user --net --mount`` a process is root of a fresh network stack without any
privilege on the machine (where unprivileged user namespaces are enabled). There :class:`NetLab` gives node ``k``
the namespace ``pmo-k`` and a veth link ``10.77.{k+1}.2`` (the node) <-> ``10.77.{k+1}.1`` (the devnet's
namespace, which routes between the links). Anvil listens on every address of the devnet's namespace, so node k
reaches the chain at its gateway, and the devnet reaches every node's API at the node's address.

:meth:`NetLab.cut` partitions the nodes with policy routing: an ``ip rule ... prohibit`` for each ordered pair of
subnets in different groups, so the kernel refuses every packet between the groups (new connections fail with
"no route to host", established ones stop carrying data) while each node keeps its chain endpoint.
:meth:`NetLab.heal` removes the rules; TCP then resumes on the existing connections (after its retransmission
backoff) or the nodes dial again.

Only the reliability scenarios use this (``scenario_partition``); it needs the ``unshare`` and ``ip`` commands.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from pmoracle.errors import PmoracleError

INSIDE_ENV = "PMORACLE_NETLAB"  # set to "1" in the process started inside the namespaces
UNSHARE = ("unshare", "--user", "--map-root-user", "--net", "--mount")


class NetLabError(PmoracleError):
    """Raised when the private network cannot be set up or changed (the failing command and its output)."""


def unavailable_reason() -> str | None:
    """Return why the private network cannot be used here, or None when it can."""
    for tool in ("unshare", "ip"):
        if shutil.which(tool) is None:
            return f"the `{tool}` command is not installed"
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"`unshare` failed: {exc}"
    if probe.returncode != 0:
        return f"unprivileged user namespaces are not available: {probe.stderr.decode(errors='replace').strip()}"
    return None


def inside() -> bool:
    """Check if this process runs inside the namespaces :func:`run_inside` creates."""
    return os.environ.get(INSIDE_ENV) == "1"


def run_inside(args: Sequence[str], *, timeout: float) -> subprocess.CompletedProcess[bytes]:
    """Run ``python -m <args>`` in new user, network and mount namespaces; return the finished process."""
    env = {**os.environ, INSIDE_ENV: "1"}
    return subprocess.run([*UNSHARE, sys.executable, "-m", *args], env=env, timeout=timeout, capture_output=True)


def _command(*args: str) -> None:
    done = subprocess.run(args, capture_output=True)
    if done.returncode != 0:
        raise NetLabError(f"`{' '.join(args)}` failed: {done.stderr.decode(errors='replace').strip()}")


def _ip(*args: str) -> None:
    _command("ip", *args)


class NetLab:
    """Nodes ``0 .. n-1``, each in its own network namespace behind this (namespaced) process's network stack."""

    def __init__(self, nodes: int) -> None:
        if not inside():
            raise NetLabError("NetLab runs only inside the namespaces of netlab.run_inside (it would change the "
                              "machine's own network)")  # fmt: skip
        if not 1 <= nodes <= 250:
            raise NetLabError(f"nodes must be in 1..250, got {nodes}")
        self.nodes = nodes
        self._rules: list[tuple[str, str]] = []

    @staticmethod
    def address(k: int) -> str:
        """Return node ``k``'s address (its APIs and libp2p listen there)."""
        return f"10.77.{k + 1}.2"

    @staticmethod
    def gateway(k: int) -> str:
        """Return the address node ``k`` reaches the devnet's namespace (and anvil) at."""
        return f"10.77.{k + 1}.1"

    @staticmethod
    def namespace(k: int) -> str:
        """Return the name of node ``k``'s network namespace."""
        return f"pmo-{k}"

    def command_prefix(self, k: int) -> tuple[str, ...]:
        """Return the command prefix that runs a program in node ``k``'s namespace (exec'd: same pid)."""
        return ("ip", "netns", "exec", self.namespace(k))

    def setup(self) -> None:
        """Create the namespaces, links, addresses and routes, and turn on forwarding."""
        # `ip netns` keeps its handles in /run/netns; this mount namespace gets a /run of its own for them
        _command("mount", "-t", "tmpfs", "pmoracle-netlab", "/run")
        Path("/run/netns").mkdir()
        _ip("link", "set", "lo", "up")
        Path("/proc/sys/net/ipv4/ip_forward").write_text("1\n")
        for k in range(self.nodes):
            ns, host, node = self.namespace(k), f"pmh{k}", f"pmn{k}"
            _ip("netns", "add", ns)
            _ip("link", "add", host, "type", "veth", "peer", "name", node)
            _ip("link", "set", node, "netns", ns)
            _ip("addr", "add", f"{self.gateway(k)}/24", "dev", host)
            _ip("link", "set", host, "up")
            _ip("-n", ns, "addr", "add", f"{self.address(k)}/24", "dev", node)
            _ip("-n", ns, "link", "set", node, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "route", "add", "default", "via", self.gateway(k))

    def cut(self, groups: Sequence[Sequence[int]]) -> None:
        """Refuse every packet between nodes of different groups (a node in no group is alone)."""
        group_of = {k: g for g, members in enumerate(groups) for k in members}
        for a in range(self.nodes):
            for b in range(self.nodes):
                if a != b and group_of.get(a, ("alone", a)) != group_of.get(b, ("alone", b)):
                    rule = (f"10.77.{a + 1}.0/24", f"10.77.{b + 1}.0/24")
                    _ip("rule", "add", "from", rule[0], "to", rule[1], "prohibit")
                    self._rules.append(rule)

    def heal(self) -> None:
        """Remove every rule :meth:`cut` added."""
        while self._rules:
            source, destination = self._rules.pop()
            _ip("rule", "del", "from", source, "to", destination, "prohibit")


_SERVER = """
import socket, sys
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
while True:
    server.accept()[0].close()
"""
_CLIENT = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2).close()
except OSError:
    sys.exit(1)
"""


def check(port: int = 24100) -> dict[str, list[bool]]:
    """Return which TCP connections a three-node lab lets through before, during and after a cut.

    Each list is [node 0 -> node 2, node 1 -> node 2, node 0 -> its gateway]; the cut is ``[[0], [1, 2]]``, so only
    its first entry must fail. Run inside :func:`run_inside`.
    """
    lab = NetLab(3)
    lab.setup()
    servers = [
        subprocess.Popen([*lab.command_prefix(2), sys.executable, "-c", _SERVER, lab.address(2), str(port)]),
        subprocess.Popen([sys.executable, "-c", _SERVER, "0.0.0.0", str(port + 1)]),  # the devnet's namespace
    ]

    def reach(k: int, address: str, to_port: int) -> bool:
        client = [*lab.command_prefix(k), sys.executable, "-c", _CLIENT, address, str(to_port)]
        return subprocess.run(client, capture_output=True).returncode == 0

    def reachability() -> list[bool]:
        return [reach(k, lab.address(2), port) for k in (0, 1)] + [reach(0, lab.gateway(0), port + 1)]

    try:
        for _ in range(50):  # the servers are listening once node 1 gets through
            if reach(1, lab.address(2), port) and reach(0, lab.gateway(0), port + 1):
                break
            time.sleep(0.05)
        before = reachability()
        lab.cut([[0], [1, 2]])
        during = reachability()
        lab.heal()
        return {"before": before, "cut": during, "healed": reachability()}
    finally:
        for server in servers:
            server.kill()
            server.wait()


if __name__ == "__main__":  # python -m pmoracle.devnet.netlab: check that this machine can host the private network
    import json

    if not inside():
        reason = unavailable_reason()
        if reason is not None:
            sys.exit(f"netlab: {reason}")
        done = run_inside(["pmoracle.devnet.netlab"], timeout=120)
        sys.stdout.write(done.stdout.decode())
        sys.stderr.write(done.stderr.decode())
        sys.exit(done.returncode)
    print(json.dumps(check()))
