"""Where the configuration comes from: one YAML file, or the environment alone.

The file is ``PROXYAPI_CONFIG``, else ``./proxyapi.yaml`` when present, with ``${VAR}`` /
``${VAR:-default}`` interpolation. With no file the environment alone gives a gateway:
``PROXYAPI_KEYS``, ``OPENAI_API_KEY`` [+ ``OPENAI_BASE_URL``, ``OPENAI_MODELS``,
``OPENAI_RESPONSES_API``],
``ANTHROPIC_API_KEY``, ``AZURE_OPENAI_API_KEY`` + ``AZURE_OPENAI_ENDPOINT``, ``REDIS_URL``,
``PROXYAPI_MOCK`` [+ ``PROXYAPI_MOCK_LATENCY``, ``PROXYAPI_MOCK_TOKENS_PER_SECOND``].
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from proxyapi.config.checks import ConfigError
from proxyapi.config.model import Config
from proxyapi.config.parse import parse_config
from proxyapi.config.values import hash_key

DEFAULT_CONFIG_FILE = "proxyapi.yaml"


def load_config(path: str | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Load the configuration from ``path``, ``PROXYAPI_CONFIG``, ``./proxyapi.yaml`` or env."""
    env = os.environ if environ is None else environ
    path = path or env.get("PROXYAPI_CONFIG") or None
    if path is None and Path(DEFAULT_CONFIG_FILE).is_file():
        path = DEFAULT_CONFIG_FILE
    if path is None:
        return config_from_env(env)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path!r}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path!r} is not valid YAML: {exc}") from exc
    return parse_config({} if data is None else data, env, source=path)


def config_from_env(environ: Mapping[str, str]) -> Config:
    """Build a configuration from well-known environment variables alone."""
    data: dict[str, Any] = {"auth": {"keys": []}, "providers": []}
    raw_keys = [k.strip() for k in environ.get("PROXYAPI_KEYS", "").split(",") if k.strip()]
    for i, key in enumerate(raw_keys, start=1):
        data["auth"]["keys"].append({"name": f"env-key-{i}", "sha256": hash_key(key)})
    # Admin keys, for a host whose only configuration is its environment: they manage the
    # other keys through /v1/admin/keys.
    admin_keys = [k.strip() for k in environ.get("PROXYAPI_ADMIN_KEYS", "").split(",") if k.strip()]
    for i, key in enumerate(admin_keys, start=1):
        data["auth"]["keys"].append(
            {"name": f"env-admin-{i}", "sha256": hash_key(key), "admin": True}
        )
    if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL"):
        models = _env_list(environ.get("OPENAI_MODELS", "*"))
        provider: dict[str, Any] = {
            "name": "openai",
            "type": "openai",
            "base_url": environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            "models": models,
        }
        if environ.get("OPENAI_API_KEY"):
            provider["api_key_env"] = "OPENAI_API_KEY"
        flag = environ.get("OPENAI_RESPONSES_API", "").strip().lower()
        if flag:
            # Checked like the file's boolean: anything but true/false stops the start.
            provider["responses_api"] = {"true": True, "false": False}.get(flag, flag)
        data["providers"].append(provider)
    if environ.get("ANTHROPIC_API_KEY"):
        data["providers"].append(
            {
                "name": "anthropic",
                "type": "anthropic",
                "base_url": environ.get("ANTHROPIC_BASE_URL") or "https://api.anthropic.com",
                "api_key_env": "ANTHROPIC_API_KEY",
                "models": _env_list(environ.get("ANTHROPIC_MODELS", "claude-*")),
            }
        )
    if environ.get("AZURE_OPENAI_API_KEY") and environ.get("AZURE_OPENAI_ENDPOINT"):
        # AZURE_OPENAI_DEPLOYMENTS: "gpt-4o-mini" or "gpt-4o-mini=my-deployment", comma-separated.
        pairs = [d.partition("=") for d in _env_list(environ.get("AZURE_OPENAI_DEPLOYMENTS", "*"))]
        azure: dict[str, Any] = {
            "name": "azure",
            "type": "azure",
            "base_url": environ["AZURE_OPENAI_ENDPOINT"],
            "api_key_env": "AZURE_OPENAI_API_KEY",
            "models": [model for model, _, _ in pairs],
            "deployments": {model: dep for model, sep, dep in pairs if sep and dep},
        }
        if environ.get("AZURE_OPENAI_API_VERSION"):
            azure["api_version"] = environ["AZURE_OPENAI_API_VERSION"]
        data["providers"].append(azure)
    flag = environ.get("PROXYAPI_MOCK", "").strip().lower()
    if flag not in ("", "0", "false"):
        if flag not in ("1", "true"):
            raise ConfigError(f"PROXYAPI_MOCK must be 1 or true (or 0/false), got {flag!r}")
        # A gateway that answers by itself, for trying it without a provider key.
        mock: dict[str, Any] = {}
        for var, key in (
            ("PROXYAPI_MOCK_LATENCY", "latency"),
            ("PROXYAPI_MOCK_TOKENS_PER_SECOND", "tokens_per_second"),
        ):
            if environ.get(var):
                mock[key] = _env_number(environ[var], var)
        data["providers"].append({"name": "mock", "type": "mock", "mock": mock})
    return parse_config(data, environ, source="environment")


def _env_list(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _env_number(value: str, var: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise ConfigError(f"{var} must be a number, got {value!r}") from None
