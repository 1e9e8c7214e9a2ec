"""Small validators for config values: each names the key and shows the bad value."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# What Azure accepts as a deployment name: letters, digits, '_', '-' and '.', up to 64. Not
# starting with '.' rules out the dot segments '.' and '..', which would move the URL path.
_DEPLOYMENT_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
_INTERPOLATION_RE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key and the bad value."""


def place(where: str, key: str) -> str:
    """Join a path and a key the way messages show it."""
    return f"{where}.{key}" if where else key


def interpolate(value: Any, env: Mapping[str, str], where: str = "") -> Any:
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
        return {k: interpolate(v, env, place(where, str(k))) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, env, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def only(data: Mapping[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    """Refuse keys outside ``allowed``: a typo must not fall back to a default silently."""
    for key in data:
        if key not in allowed:
            raise ConfigError(
                f"unknown config key {place(where, str(key))!r}; allowed here: {', '.join(allowed)}"
            )


def section(data: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    """Return the mapping under ``key`` (empty when absent)."""
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{place(where, key)} must be a mapping, got {value!r}")
    return value


def get(
    data: Mapping[str, Any], where: str, key: str, check: Callable[[Any], T], default: T | None
) -> T:
    """Return ``data[key]`` checked by ``check``; ``default`` None means required."""
    if key not in data or data[key] is None:
        if default is None:
            raise ConfigError(f"{place(where, key)} is required")
        return default
    try:
        return check(data[key])
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{place(where, key)} {exc}, got {data[key]!r}") from None


def unique(values: list[str], what: str, show: bool = True) -> None:
    """Refuse duplicates in ``values``."""
    seen: set[str] = set()
    for v in values:
        if v in seen:
            raise ConfigError(f"duplicate value in {what}" + (f": {v!r}" if show else ""))
        seen.add(v)


def per_path(data: Mapping[str, Any], where: str, check: Callable[[Any], T]) -> dict[str, T]:
    """Read a mapping of request paths (``/v1/...``) to values checked by ``check``."""
    values = {}
    for path in data:
        if not isinstance(path, str) or not path.startswith("/v1/"):
            raise ConfigError(f"{where} keys must be paths such as '/v1/embeddings', got {path!r}")
        values[path] = get(data, where, path, check, None)
    return values


def secret_from_env(env: Mapping[str, str], var: str, where: str) -> str:
    """Read a secret from ``env[var]``, without the whitespace a copy-paste leaves around it.

    A secret with whitespace or control characters inside is refused, naming the variable and
    never showing the value: it cannot be sent in an HTTP header, and the errors that would say
    so quote it.
    """
    value = env.get(var, "").strip()
    if not value:
        raise ConfigError(f"{where} names {var!r}, which is not set or empty")
    if any(ch.isspace() or not ch.isprintable() for ch in value):
        raise ConfigError(
            f"{where} names {var!r}, whose value has whitespace or control characters inside "
            "it (not only around it); check that variable (its value is not shown)"
        )
    return value


def name(v: Any) -> str:
    if not isinstance(v, str) or not _NAME_RE.fullmatch(v):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return v


def env_name(v: Any) -> str:
    if not isinstance(v, str) or not _ENV_NAME_RE.match(v):
        raise ValueError("must be an environment variable name")
    return v


def header_name(v: Any) -> str:
    if not isinstance(v, str) or not re.match(r"^[A-Za-z0-9-]+$", v):
        raise ValueError("must be an HTTP header name")
    return v


def url(v: Any, schemes: tuple[str, ...] = ("http", "https")) -> str:
    pattern = "|".join(re.escape(s) for s in schemes)
    if not isinstance(v, str) or not re.match(rf"^({pattern})://[^/\s]+", v):
        raise ValueError(f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}")
    return v


def redis_url(v: Any) -> str:
    checked = url(v, ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster"))
    service = checked.split("://", 1)[1].partition("/")[2].strip("/")
    if checked.startswith("redis+sentinel://") and not service:
        raise ValueError("must name the Sentinel service: redis+sentinel://host:port,.../service")
    return checked


_NAMESPACE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


def namespace(v: Any) -> str:
    if not isinstance(v, str) or not _NAMESPACE_RE.match(v):
        raise ValueError(
            "must be 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    return v


def readable_file(v: Any) -> str:
    if not isinstance(v, str) or not os.path.isfile(v) or not os.access(v, os.R_OK):
        raise ValueError("must name a readable file")
    return v


def boolean(v: Any) -> bool:
    if not isinstance(v, bool):
        raise ValueError("must be true or false")
    return v


def integer(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise ValueError("must be a whole number")
    return v


def positive_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
        raise ValueError("must be a whole number above 0")
    return v


def non_negative_int(v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError("must be a whole number, 0 or more")
    return v


def positive_number(v: Any) -> float:
    # YAML has .nan and .inf: neither is a number of seconds, tokens or dollars.
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
        raise ValueError("must be a number above 0")
    return float(v)


def fraction(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:  # NaN fails
        raise ValueError("must be a number from 0 to 1")
    return float(v)


def share(v: Any) -> float:
    """A share of a whole above 0: 0 would mean always (a warning on every first request)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:  # NaN fails
        raise ValueError("must be a number above 0 and at most 1")
    return float(v)


def non_empty_str(v: Any) -> str:
    if not isinstance(v, str) or not v.strip():
        raise ValueError("must be a non-empty string")
    return v


def str_map(v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(
        isinstance(k, str) and isinstance(x, str) and k and x for k, x in v.items()
    ):
        raise ValueError("must be a mapping of names to strings")
    return dict(v)


def is_deployment_name(name: str) -> bool:
    """Tell whether ``name`` can be an Azure deployment (one safe URL path segment)."""
    return bool(_DEPLOYMENT_RE.match(name))


def deployment_map(v: Any) -> dict[str, str]:
    """Model names to Azure deployment names."""
    deployments = str_map(v)
    for model, deployment in deployments.items():
        if not is_deployment_name(deployment):
            raise ValueError(
                f"maps {model!r} to {deployment!r}, which is not a deployment name (letters, "
                "digits, '_', '-' and '.', at most 64, not starting with '.')"
            )
    return deployments


def header_map(v: Any, where: str) -> dict[str, str]:
    """HTTP header names to values, which are never shown (they may be credentials).

    A value may not hold CR, LF or another control character (it would end the header).
    """
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where} must be a mapping of header names to values")
    headers = {}
    for key, value in v.items():
        if not isinstance(key, str) or not re.match(r"^[A-Za-z0-9-]+$", key):
            raise ConfigError(f"{where} has {key!r}, which is not an HTTP header name")
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"{where}.{key} must be a non-empty string (its value is not shown)")
        if not value.strip().isprintable():
            raise ConfigError(
                f"{where}.{key} has a control character in its value (not shown), such as a "
                "line break"
            )
        headers[key] = value.strip()
    return headers


def non_negative_number(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
        raise ValueError("must be a number, 0 or more")
    return float(v)


def choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError(f"must be one of {', '.join(options)}")
        return str(v)

    return check


def limit_list(v: Any) -> tuple[str, ...]:
    """Rate limits such as ``"60/minute"`` or ``["20/second", "600/minute"]``."""
    from limits import parse_many  # the same parser flask-limiter applies later

    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError("must be a rate limit like '60/minute' or a list of them")
    for item in v:
        try:
            parse_many(item)
        except ValueError:
            raise ValueError(
                f"has {item!r}, which is not a rate limit like '60/minute' or '10 per second'"
            ) from None
    return tuple(x.strip() for x in v)


def glob_list(v: Any) -> tuple[str, ...]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ValueError("must be a list of model names or globs such as 'gpt-4o*'")
    return tuple(x.strip() for x in v)


def model_list(v: Any) -> list[str]:
    if isinstance(v, str):
        v = [v]
    if not isinstance(v, list) or not v or not all(isinstance(m, str) and m.strip() for m in v):
        raise ValueError(
            "must be a non-empty list of model names (globs such as 'gpt-4o*' allowed)"
        )
    return [m.strip() for m in v]
