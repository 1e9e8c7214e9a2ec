"""Load and validate ProxyAPI's configuration.

The configuration comes from one YAML file (``PROXYAPI_CONFIG``, else ``./proxyapi.yaml`` when
present) with ``${VAR}`` / ``${VAR:-default}`` interpolation, or, with no file, from the
environment alone (``PROXYAPI_KEYS``, ``OPENAI_API_KEY`` [+ ``OPENAI_BASE_URL``,
``OPENAI_MODELS``]). Everything is validated once, here; an error names the key and shows the
bad value, and never shows a secret.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from proxyapi.auth import hash_key, is_sha256_hex

DEFAULT_CONFIG_FILE = "proxyapi.yaml"
PROVIDER_TYPES = ("openai",)

# 10 MiB holds a long conversation with a few inline images; bigger bodies are almost always
# a client bug, and Flask would otherwise buffer them in memory.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Heroku-style routers cut a response that sends nothing for 55 s; 15 s stays well inside.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
DEFAULT_CONNECT_TIMEOUT = 5.0
# Generous: a large non-streaming completion can take a minute before its first byte.
DEFAULT_READ_TIMEOUT = 60.0
# Connections kept per provider per worker; sized for the default 32 gunicorn threads.
DEFAULT_POOL_SIZE = 32
DEFAULT_PRIORITY = 1

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_INTERPOLATION_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the bad value."""


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the HTTP front end."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL


@dataclass(frozen=True)
class KeyConfig:
    """One client key: a name for logs and metrics, and the key's SHA-256 hex digest."""

    name: str
    sha256: str = field(repr=False)
    admin: bool = False


@dataclass(frozen=True)
class AuthConfig:
    """Client authentication settings."""

    keys: tuple[KeyConfig, ...] = ()
    header: str = "X-API-Key"


@dataclass(frozen=True)
class TimeoutConfig:
    """Connect and per-read timeouts, in seconds, for one provider."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT


@dataclass(frozen=True)
class ProviderConfig:
    """One upstream provider; ``api_key`` is the resolved secret and never printed."""

    name: str
    type: str
    base_url: str
    models: tuple[str, ...]
    api_key_env: str | None = None
    api_key: str | None = field(default=None, repr=False)
    priority: int = DEFAULT_PRIORITY
    timeout: TimeoutConfig = TimeoutConfig()
    pool_size: int = DEFAULT_POOL_SIZE


@dataclass(frozen=True)
class Config:
    """The validated configuration of one gateway."""

    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    providers: tuple[ProviderConfig, ...] = ()
    source: str = "defaults"

    def secrets(self) -> list[str]:
        """Return every upstream secret, so they can be kept out of responses and logs."""
        return [p.api_key for p in self.providers if p.api_key]


# --------------------------------------------------------------------------- loading


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
    if data is None:
        data = {}
    return parse_config(data, env, source=path)


def config_from_env(environ: Mapping[str, str]) -> Config:
    """Build a configuration from well-known environment variables alone."""
    data: dict[str, Any] = {"auth": {"keys": []}, "providers": []}
    raw_keys = [k.strip() for k in environ.get("PROXYAPI_KEYS", "").split(",") if k.strip()]
    for i, key in enumerate(raw_keys, start=1):
        data["auth"]["keys"].append({"name": f"env-key-{i}", "sha256": hash_key(key)})
    if environ.get("OPENAI_API_KEY") or environ.get("OPENAI_BASE_URL"):
        models = [m.strip() for m in environ.get("OPENAI_MODELS", "*").split(",") if m.strip()]
        provider: dict[str, Any] = {
            "name": "openai",
            "type": "openai",
            "base_url": environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1",
            "models": models,
        }
        if environ.get("OPENAI_API_KEY"):
            provider["api_key_env"] = "OPENAI_API_KEY"
        data["providers"].append(provider)
    return parse_config(data, environ, source="environment")


def parse_config(
    data: Mapping[str, Any] | Config, environ: Mapping[str, str] | None = None, source: str = "dict"
) -> Config:
    """Validate a parsed config mapping (as YAML gives it) and return a :class:`Config`."""
    if isinstance(data, Config):
        return data
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping at the top level, got {data!r}")
    resolved: dict[str, Any] = _interpolate(data, env, "")
    _only(resolved, "", ("server", "auth", "providers"))
    server = _parse_server(_mapping(resolved, "server"))
    auth = _parse_auth(_mapping(resolved, "auth"), env)
    providers = _parse_providers(resolved.get("providers", []), env)
    return Config(server=server, auth=auth, providers=providers, source=source)


# --------------------------------------------------------------------------- sections


def _parse_server(data: Mapping[str, Any]) -> ServerConfig:
    _only(data, "server", ("max_body_bytes", "heartbeat_interval"))
    return ServerConfig(
        max_body_bytes=_get(
            data, "server", "max_body_bytes", _positive_int, DEFAULT_MAX_BODY_BYTES
        ),
        heartbeat_interval=_get(
            data, "server", "heartbeat_interval", _positive_number, DEFAULT_HEARTBEAT_INTERVAL
        ),
    )


def _parse_auth(data: Mapping[str, Any], env: Mapping[str, str]) -> AuthConfig:
    _only(data, "auth", ("keys", "header"))
    header = _get(data, "auth", "header", _header_name, "X-API-Key")
    raw_keys = data.get("keys", [])
    if not isinstance(raw_keys, list):
        raise ConfigError(f"auth.keys must be a list, got {raw_keys!r}")
    keys: list[KeyConfig] = []
    for i, raw in enumerate(raw_keys):
        where = f"auth.keys[{i}]"
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {raw!r}")
        _only(raw, where, ("name", "sha256", "key_env", "admin"))
        name = _get(raw, where, "name", _name, None)
        if ("sha256" in raw) == ("key_env" in raw):
            raise ConfigError(f"{where} ({name}) needs exactly one of 'sha256' or 'key_env'")
        if "sha256" in raw:
            digest = raw["sha256"]
            if not isinstance(digest, str) or not is_sha256_hex(digest.strip().lower()):
                raise ConfigError(
                    f"{where}.sha256 must be 64 hex characters (the SHA-256 of the key; "
                    "`python -m proxyapi hash-key` prints it), got a value of length "
                    f"{len(digest) if isinstance(digest, str) else type(digest).__name__}"
                )
            digest = digest.strip().lower()
        else:
            var = _get(raw, where, "key_env", _env_name, None)
            secret = env.get(var, "")
            if not secret:
                raise ConfigError(f"{where}.key_env names {var!r}, which is not set or empty")
            digest = hash_key(secret)
        keys.append(
            KeyConfig(name=name, sha256=digest, admin=_get(raw, where, "admin", _bool, False))
        )
    _unique([k.name for k in keys], "auth.keys[].name")
    _unique([k.sha256 for k in keys], "auth.keys (two entries hold the same key)")
    return AuthConfig(keys=tuple(keys), header=header)


def _parse_providers(raw: Any, env: Mapping[str, str]) -> tuple[ProviderConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"providers must be a list, got {raw!r}")
    providers = [_parse_provider(item, f"providers[{i}]", env) for i, item in enumerate(raw)]
    _unique([p.name for p in providers], "providers[].name")
    return tuple(providers)


def _parse_provider(raw: Any, where: str, env: Mapping[str, str]) -> ProviderConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    _only(
        raw,
        where,
        ("name", "type", "base_url", "api_key_env", "models", "priority", "timeout", "pool_size"),
    )
    name = _get(raw, where, "name", _name, None)
    where = f"{where} ({name})"
    ptype = _get(raw, where, "type", _choice(PROVIDER_TYPES), "openai")
    base_url = _get(raw, where, "base_url", _url, None)
    api_key_env = _get(raw, where, "api_key_env", _env_name, "")
    api_key: str | None = None
    if api_key_env:
        api_key = env.get(api_key_env, "")
        if not api_key:
            raise ConfigError(
                f"{where}.api_key_env names {api_key_env!r}, which is not set or empty"
            )
    models = _get(raw, where, "models", _model_list, None)
    timeout_raw = _mapping(raw, "timeout", where)
    _only(timeout_raw, f"{where}.timeout", ("connect", "read"))
    timeout = TimeoutConfig(
        connect=_get(
            timeout_raw, f"{where}.timeout", "connect", _positive_number, DEFAULT_CONNECT_TIMEOUT
        ),
        read=_get(timeout_raw, f"{where}.timeout", "read", _positive_number, DEFAULT_READ_TIMEOUT),
    )
    return ProviderConfig(
        name=name,
        type=ptype,
        base_url=base_url.rstrip("/"),
        models=tuple(models),
        api_key_env=api_key_env or None,
        api_key=api_key,
        priority=_get(raw, where, "priority", _int, DEFAULT_PRIORITY),
        timeout=timeout,
        pool_size=_get(raw, where, "pool_size", _positive_int, DEFAULT_POOL_SIZE),
    )


# --------------------------------------------------------------------------- helpers

T = TypeVar("T")


def _interpolate(value: Any, env: Mapping[str, str], where: str) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string; ``$$`` is a literal ``$``."""
    if isinstance(value, str):

        def sub(match: re.Match[str]) -> str:
            if match.group(0) == "$$":
                return "$"
            var, default = match.group(1), match.group(2)
            got = env.get(var)
            if got:
                return got
            if default is not None:
                return default
            raise ConfigError(f"{where or 'config'} uses ${{{var}}}, which is not set")

        return _INTERPOLATION_RE.sub(sub, value)
    if isinstance(value, Mapping):
        return {
            k: _interpolate(v, env, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _only(data: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    for key in data:
        if key not in allowed:
            place = f"{where}.{key}" if where else str(key)
            raise ConfigError(f"unknown config key {place!r}; allowed here: {', '.join(allowed)}")


def _mapping(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        place = f"{where}.{key}" if where else key
        raise ConfigError(f"{place} must be a mapping, got {value!r}")
    return value


def _get(
    data: Mapping[str, Any], where: str, key: str, check: Callable[[Any], T], default: T | None
) -> T:
    place = f"{where}.{key}" if where else key
    if key not in data or data[key] is None:
        if default is None:
            raise ConfigError(f"{place} is required")
        return default
    try:
        return check(data[key])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{place} {exc}, got {data[key]!r}") from None


def _unique(values: list[str], what: str) -> None:
    seen: set[str] = set()
    for v in values:
        if v in seen:
            shown = "" if "key" in what and len(v) == 64 else f": {v!r}"
            raise ConfigError(f"duplicate value in {what}{shown}")
        seen.add(v)


def _name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.match(v):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return v


def _env_name(v: Any) -> str:
    if not isinstance(v, str) or not _ENV_NAME_RE.match(v):
        raise ValueError("must be an environment variable name")
    return v


def _header_name(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^[A-Za-z0-9-]+$", v):
        raise ValueError("must be an HTTP header name")
    return v


def _url(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^https?://[^/\s]+", v):
        raise ValueError("must be an http:// or https:// URL")
    return v


def _bool(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def _int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("must be a whole number")
    return v


def _positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("must be a whole number above 0")
    return v


def _positive_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0:
        raise ValueError("must be a number above 0")
    return float(v)


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(v)

    return check


def _model_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(m, str) and m.strip() for m in v):
        raise ValueError(
            "must be a non-empty list of model names (globs such as 'gpt-4o*' allowed)"
        )
    return [m.strip() for m in v]
