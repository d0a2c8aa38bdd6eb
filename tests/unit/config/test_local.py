"""Loading the local config: precedence, typed values, and every problem reported at once."""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import pytest

from pmoracle.config import ConfigError, LocalConfig, config_keys, load_local_config

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "node.toml"

VALID = """
[node]
data_dir = "data"
[chain]
rpc_urls = ["http://127.0.0.1:8545", "https://backup.example:443/rpc"]
deployment = "deployment.json"
[keys]
signing_keystore = "keys/signing.json"
transmitter_keystore = "keys/transmitter.json"
p2p_key = "keys/p2p.json"
[risk]
params_file = "params.json"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return path


def problems_of(exc: ConfigError) -> dict[str, str]:
    return {p.key: p.message for p in exc.problems}


def test_minimal_file_gets_defaults_and_paths_relative_to_the_file(tmp_path: Path) -> None:
    config = load_local_config(write(tmp_path, VALID), environ={}, check_files=False)
    assert isinstance(config, LocalConfig)
    assert config.node.data_dir == tmp_path.resolve() / "data"
    assert config.chain.rpc_urls == ("http://127.0.0.1:8545", "https://backup.example:443/rpc")
    assert config.keys.signing_keystore == tmp_path.resolve() / "keys" / "signing.json"
    assert config.keys.password_file is None
    assert config.keys.password_env == "PMORACLE_PASSWORD"
    assert config.api.port == 8700
    assert config.node.log_format == "text"
    assert config.transmit.gas_price_cap_wei == 500 * 10**9
    with pytest.raises(AttributeError):
        config.api.port = 1  # type: ignore[misc]


def test_dispute_peer_apis_are_optional_http_urls(tmp_path: Path) -> None:
    config = load_local_config(write(tmp_path, VALID), environ={}, check_files=False)
    assert config.dispute.peer_apis == () and config.dispute.prove_timeout == 300.0
    path = write(tmp_path, VALID + '[dispute]\npeer_apis = ["http://10.0.0.2:8700", "https://node-3.example"]\n')
    config = load_local_config(path, environ={}, check_files=False)
    assert config.dispute.peer_apis == ("http://10.0.0.2:8700", "https://node-3.example")
    env = {"PMORACLE_DISPUTE_PEER_APIS": "http://a:1,ftp://b:2", "PMORACLE_DISPUTE_PROVE_TIMEOUT": "0"}
    with pytest.raises(ConfigError) as exc:
        load_local_config(path, environ=env, check_files=False)
    problems = problems_of(exc.value)
    assert "'ftp://b:2'" in problems["dispute.peer_apis"]
    assert "must be > 0" in problems["dispute.prove_timeout"]


def test_precedence_cli_over_env_over_file(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + '[api]\nport = 1111\nhost = "0.0.0.0"\n[transmit]\ngas_price_cap_gwei = 0.5\n')
    env = {"PMORACLE_API_PORT": "2222", "PMORACLE_CHAIN_RPC_URLS": "http://a:1, http://b:2"}
    config = load_local_config(path, environ=env, check_files=False)
    assert config.api.port == 2222
    assert config.api.host == "0.0.0.0"
    assert config.chain.rpc_urls == ("http://a:1", "http://b:2")
    assert config.transmit.gas_price_cap_gwei == Decimal("0.5")
    assert config.transmit.gas_price_cap_wei == 500_000_000
    config = load_local_config(path, environ=env, overrides={"api.port": 3333, "api.host": None}, check_files=False)
    assert config.api.port == 3333
    assert config.api.host == "0.0.0.0"  # a flag not given (None) does not override


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = """
[node]
log_format = "xml"
colour = "blue"
[chain]
rpc_urls = []
rpc_timeout = -1
deployment = "deployment.json"
[keys]
signing_keystore = "k.json"
transmitter_keystore = "t.json"
p2p_key = "p.json"
[p2p]
listen = "not-a-multiaddr"
bootstrap = ["/ip4/1.2.3.4/tcp/9000"]
[api]
port = 70000
[transmit]
stage_delay = "soon"
[extras]
x = 1
"""
    env = {"PMORACLE_API_PROT": "1", "PMORACLE_PASSWORD": "not-a-config-key"}
    with pytest.raises(ConfigError) as info:
        load_local_config(write(tmp_path, text), environ=env)
    found = problems_of(info.value)
    assert found["node.data_dir"].startswith("missing")
    assert "not one of text, json" in found["node.log_format"]
    assert found["node.colour"] == "unknown key"
    assert found["chain.rpc_urls"].startswith("empty")
    assert "must be > 0" in found["chain.rpc_timeout"]
    assert "not a multiaddr" in found["p2p.listen"]
    assert "lacks /p2p/" in found["p2p.bootstrap"]
    assert found["api.port"] == "70000 out of range [0, 65535]"
    assert "expected a number" in found["transmit.stage_delay"]
    assert found["extras"] == "unknown section"
    assert found["PMORACLE_API_PROT"] == "unknown config environment variable"
    assert found["risk.params_file"].startswith("missing")
    assert "file not found" in found["keys.signing_keystore"]
    assert "PMORACLE_PASSWORD" not in found  # the default password variable is not a config key
    message = str(info.value)
    assert "api.port: 70000 out of range" in message
    assert f"{len(info.value.problems)} config problem(s)" in message


def test_env_and_cli_values_are_validated_and_named(tmp_path: Path) -> None:
    path = write(tmp_path, VALID)
    with pytest.raises(ConfigError) as info:
        load_local_config(
            path,
            environ={"PMORACLE_API_PORT": "eighty"},
            overrides={"p2p.listen": "/ip4/1.2.3.4/tcpx/1", "api.colour": "x"},
            check_files=False,
        )
    found = {p.key: p for p in info.value.problems}
    assert found["api.port"].source == "PMORACLE_API_PORT"
    assert "expected an integer" in found["api.port"].message
    assert found["p2p.listen"].source == "command line"
    assert found["api.colour"].message == "unknown key"


def test_invalid_toml_and_missing_file_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        load_local_config(write(tmp_path, "[node\n"), environ={})
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_local_config(tmp_path / "absent.toml", environ={})


def test_custom_password_env_name_is_not_an_unknown_variable(tmp_path: Path) -> None:
    path = write(tmp_path, VALID + '[p2p]\nlisten = "/ip4/127.0.0.1/tcp/0"\n')
    env = {"PMORACLE_KEYS_PASSWORD_ENV": "PMORACLE_KEYS_SECRET", "PMORACLE_KEYS_SECRET": "pw"}
    config = load_local_config(path, environ=env, check_files=False)
    assert config.keys.password_env == "PMORACLE_KEYS_SECRET"


def test_example_file_is_valid_and_documents_every_key(tmp_path: Path) -> None:
    shutil.copy(EXAMPLE, tmp_path / "node.toml")
    config = load_local_config(tmp_path / "node.toml", environ={}, check_files=False)
    assert config.p2p.listen == "/ip4/0.0.0.0/tcp/9000"
    text = EXAMPLE.read_text()
    for dotted in config_keys():
        assert dotted.split(".")[1] in text, dotted


def test_operator_docs_list_every_key() -> None:
    docs = (EXAMPLE.parents[1] / "docs" / "operators.md").read_text()
    for dotted in config_keys():
        assert f"`{dotted}`" in docs, dotted


def test_command_line_flags_become_overrides(tmp_path: Path) -> None:
    import argparse

    from pmoracle.config import add_config_arguments, overrides_from_args

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(
        [
            "--config",
            "n.toml",
            "--set",
            "api.port=1",
            "--set",
            "p2p.bootstrap=",
            "--api-port",
            "4444",
            "--log-format",
            "json",
        ]
    )
    overrides = overrides_from_args(args)
    assert overrides == {"api.port": "4444", "p2p.bootstrap": "", "node.log_format": "json"}
    config = load_local_config(write(tmp_path, VALID), environ={}, overrides=overrides, check_files=False)
    assert (config.api.port, config.p2p.bootstrap, config.node.log_format) == (4444, (), "json")
    with pytest.raises(ConfigError, match=r"expected --set SECTION\.KEY=VALUE"):
        overrides_from_args(parser.parse_args(["--set", "api.port"]))
