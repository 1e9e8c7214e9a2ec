"""ProxyAPI's configuration: where it comes from (:mod:`.load`), how it is validated
(:mod:`.parse`, :mod:`.checks`), what it holds (:mod:`.model`) and what some values mean
(:mod:`.values`)."""

from __future__ import annotations

from proxyapi.config.checks import ConfigError
from proxyapi.config.load import DEFAULT_CONFIG_FILE, config_from_env, load_config
from proxyapi.config.model import (
    DEFAULT_MAX_BODY_BYTES,
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    Config,
    KeyConfig,
    MetricsConfig,
    ProviderConfig,
    RateLimitConfig,
    RedisConfig,
    RetryConfig,
    ServerConfig,
    TimeoutConfig,
    TracingConfig,
)
from proxyapi.config.parse import derived_namespace, parse_config

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "DEFAULT_MAX_BODY_BYTES",
    "AuthConfig",
    "BreakerConfig",
    "CacheConfig",
    "Config",
    "ConfigError",
    "KeyConfig",
    "MetricsConfig",
    "ProviderConfig",
    "RateLimitConfig",
    "RedisConfig",
    "RetryConfig",
    "ServerConfig",
    "TimeoutConfig",
    "TracingConfig",
    "config_from_env",
    "derived_namespace",
    "load_config",
    "parse_config",
]
