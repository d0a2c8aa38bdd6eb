"""The devnet's private network: namespaces, routing between nodes, and a partition the kernel enforces."""

from __future__ import annotations

import json

import pytest

from pmoracle.devnet import netlab

REASON = netlab.unavailable_reason()


@pytest.mark.skipif(REASON is not None, reason=f"no private network on this machine: {REASON}")
def test_a_cut_refuses_exactly_the_links_between_groups_until_healed() -> None:
    done = netlab.run_inside(["pmoracle.devnet.netlab"], timeout=120)
    assert done.returncode == 0, done.stderr.decode()
    seen = json.loads(done.stdout)
    # columns: node 0 -> node 2, node 1 -> node 2, node 0 -> its gateway (where anvil listens)
    assert seen["before"] == [True, True, True]
    assert seen["cut"] == [False, True, True]  # cut [[0], [1, 2]]: node 0 still reaches the chain
    assert seen["healed"] == [True, True, True]


def test_netlab_refuses_to_touch_the_machines_own_network(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(netlab.INSIDE_ENV, raising=False)
    with pytest.raises(netlab.NetLabError, match="only inside"):
        netlab.NetLab(2)


def test_a_missing_tool_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(netlab.shutil, "which", lambda tool: None if tool == "unshare" else f"/usr/bin/{tool}")
    assert netlab.unavailable_reason() == "the `unshare` command is not installed"
