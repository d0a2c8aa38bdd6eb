"""Typed, frozen configuration: :class:`LocalConfig` (this node) and :data:`NetworkConfig` (shared, on-chain)."""

from pmoracle.config.local import (
    DEFAULT_PASSWORD_ENV,
    ApiSection,
    ChainSection,
    ConfigError,
    ConfigProblem,
    KeysSection,
    LocalConfig,
    NodeSection,
    P2PSection,
    RiskSection,
    TransmitSection,
    add_config_arguments,
    config_keys,
    load_local_config,
    overrides_from_args,
)
from pmoracle.config.network import NetworkConfig, StartupRefusedError, check_startup, require_startup_ok

__all__ = [
    "DEFAULT_PASSWORD_ENV",
    "ApiSection",
    "ChainSection",
    "ConfigError",
    "ConfigProblem",
    "KeysSection",
    "LocalConfig",
    "NetworkConfig",
    "NodeSection",
    "P2PSection",
    "RiskSection",
    "StartupRefusedError",
    "TransmitSection",
    "add_config_arguments",
    "check_startup",
    "config_keys",
    "load_local_config",
    "overrides_from_args",
    "require_startup_ok",
]
