"""``pmoracle register`` against a real anvil: stake and register from key files, and its refusals."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak

from pmoracle.chain.client import ChainClient
from pmoracle.chain.deploy import Deployment, deploy
from pmoracle.cli import main
from pmoracle.devnet.devchain import Devchain
from pmoracle.errors import InputError
from pmoracle.node.keys import KeyKind, compute_peer_id, write_key_file
from pmoracle.node.registration import complete_multiaddr, parse_stake, read_registered_node

DEPLOYER_KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
PASSWORD = "register-test"
MIN_STAKE = 2 * 10**18


@pytest.fixture(scope="module")
def deployment(anvil: Devchain, tmp_path_factory: pytest.TempPathFactory) -> tuple[Deployment, Path]:
    path = tmp_path_factory.mktemp("deploy") / "deployment.json"
    deployed = deploy(anvil.url, DEPLOYER_KEY, params_hash=keccak(text="p"), round_period=4, finality_depth=2,
                      min_stake=MIN_STAKE, output=path)  # fmt: skip
    return deployed, path


def make_node(home: Path, anvil: Devchain, deployment_path: Path, index: int) -> dict[str, str]:
    """Write a node's key files and node.toml; fund its transmitter; return its addresses and peer id."""
    (home / "keys").mkdir(parents=True)
    secrets = {kind: keccak(text=f"register-test-{index}-{kind}") for kind in ("signing", "transmitter", "p2p")}
    for kind, secret in secrets.items():
        write_key_file(KeyKind(kind), home / "keys" / f"{kind}.json", PASSWORD.encode(), secret=secret,
                       kdf_iterations=1024)  # fmt: skip
    (home / "password.txt").write_text(PASSWORD + "\n")
    (home / "params.toml").write_text("placeholder: register does not read the risk parameters\n")
    (home / "node.toml").write_text(f"""
[node]
data_dir = "data"
[chain]
rpc_urls = ["{anvil.url}"]
deployment = "{deployment_path}"
[keys]
signing_keystore = "keys/signing.json"
transmitter_keystore = "keys/transmitter.json"
p2p_key = "keys/p2p.json"
password_file = "password.txt"
[p2p]
listen = "/ip4/127.0.0.1/tcp/0"
[risk]
params_file = "params.toml"
""")
    operator = Account.from_key(secrets["transmitter"]).address
    anvil.rpc("anvil_setBalance", operator, hex(10 * 10**18))
    return {"operator": operator, "signer": Account.from_key(secrets["signing"]).address,
            "peer_id": compute_peer_id(secrets["p2p"])[0]}  # fmt: skip


def test_register_stakes_and_announces_the_node(
    anvil: Devchain, deployment: tuple[Deployment, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed, path = deployment
    node = make_node(tmp_path / "n0", anvil, path, 0)
    config = str(tmp_path / "n0" / "node.toml")
    argv = ["register", "--config", config, "--stake", "2.5", "--multiaddr", "/ip4/203.0.113.7/tcp/9000",
            "--multiaddr", f"/ip4/203.0.113.7/udp/9000/quic-v1/p2p/{node['peer_id']}"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "registered in block" in out and node["signer"] in out and "2.5 ETH" in out
    record = read_registered_node(ChainClient([anvil.url]), deployed, node["signer"])
    assert (record.operator, record.signer) == (node["operator"], node["signer"])
    assert (record.stake, record.status, record.peer_id) == (25 * 10**17, "active", node["peer_id"])
    assert list(record.multiaddrs) == [f"/ip4/203.0.113.7/tcp/9000/p2p/{node['peer_id']}",
                             f"/ip4/203.0.113.7/udp/9000/quic-v1/p2p/{node['peer_id']}"]  # fmt: skip
    # The same operator again: the registry's OperatorAlreadyRegistered, decoded into a clear message.
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "already registered" in err and node["operator"] in err and node["signer"] in err


def test_stake_below_the_minimum_is_refused_with_the_minimum(
    anvil: Devchain, deployment: tuple[Deployment, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = deployment
    make_node(tmp_path / "n1", anvil, path, 1)
    argv = ["register", "--config", str(tmp_path / "n1" / "node.toml"), "--stake", "1.5",
            "--multiaddr", "/ip4/127.0.0.1/tcp/9001"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "below the registry's minimum 2 ETH" in err and "1.5 ETH" in err
    # The operator holds 10 ETH: a 50 ETH stake is refused by the node before anything is sent.
    argv[argv.index("1.5")] = "50"
    assert main(argv) == 2
    assert "cannot pay 50 ETH stake plus gas" in capsys.readouterr().err


def test_bad_stake_and_multiaddr_name_the_flag(
    anvil: Devchain, deployment: tuple[Deployment, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, path = deployment
    node = make_node(tmp_path / "n2", anvil, path, 2)
    config = str(tmp_path / "n2" / "node.toml")
    assert main(["register", "--config", config, "--stake", "lots", "--multiaddr", "/ip4/1.2.3.4/tcp/1"]) == 2
    assert "--stake" in capsys.readouterr().err
    assert main(["register", "--config", config, "--stake", "3", "--multiaddr", "/ip4/1.2.3.4/tcp/1/p2p/"
                 "16Uiu2HAmLhLvBoYaoZfaMUKuibM6ac163GwKY74c5kiSLg5KvLpY"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "--multiaddr" in err and node["peer_id"] in err
    with pytest.raises(InputError):
        complete_multiaddr("not-an-address", node["peer_id"])
    assert parse_stake("0.000000000000000001") == 1
    for bad in ("0", "-1", "1e-19", "nan"):
        with pytest.raises(InputError):
            parse_stake(bad)
