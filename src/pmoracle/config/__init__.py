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
    config_keys,
    load_local_config,
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
    "check_startup",
    "config_keys",
    "load_local_config",
    "require_startup_ok",
]
