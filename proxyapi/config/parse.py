"""Validate a parsed configuration (the YAML file's mapping, or the environment's) into a
:class:`~proxyapi.config.model.Config`: every key checked once, here; an error names the key
and shows the bad value, and never shows a secret."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from proxyapi.config import checks as c
from proxyapi.config.checks import ConfigError
from proxyapi.config.mock import free_mocks, parse_mock
from proxyapi.config.model import (
    BUDGET_PERIODS,
    CACHE_BACKENDS,
    CACHE_CATEGORIES,
    CACHE_MODES,
    CACHE_SCOPES,
    DEFAULT_ANTHROPIC_MAX_TOKENS,
    DEFAULT_ANTHROPIC_VERSION,
    DEFAULT_AZURE_API_VERSION,
    DEFAULT_BUDGET_WARN_AT,
    DEFAULT_CLIENT_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_FIRST_TOKEN_TIMEOUT,
    DEFAULT_HEARTBEAT_INTERVAL,
    DEFAULT_KEY_MAX_TOKENS,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_REQUEST_TIMEOUT,
    DEFAULT_POOL_SIZE,
    DEFAULT_PRIORITY,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_REDIS_TIMEOUT,
    DEFAULT_REQUEST_TIMEOUT,
    DEFAULT_RESPONSES_STORE_TTL,
    DEFAULT_TRACING_CONTENT_MAX_BYTES,
    LIMIT_STRATEGIES,
    PROVIDER_TYPE_OPTIONS,
    PROVIDER_TYPES,
    RETRY_STRATEGIES,
    STORAGE_ERROR_POLICIES,
    AuthConfig,
    BreakerConfig,
    CacheConfig,
    Config,
    KeyConfig,
    ManagedKeysConfig,
    MetricsConfig,
    MoneyBudget,
    ProviderConfig,
    RateLimitConfig,
    RedisConfig,
    ResponsesConfig,
    RetryConfig,
    ServerConfig,
    StatusConfig,
    TimeoutConfig,
    TracingConfig,
    UsageConfig,
)
from proxyapi.config.pricing import parse_pricing
from proxyapi.config.values import hash_key, is_openai_api, is_sha256_hex, lists_model


def parse_config(
    data: Mapping[str, Any] | Config,
    environ: Mapping[str, str] | None = None,
    source: str = "dict",
) -> Config:
    """Validate a parsed config mapping (as YAML gives it) and return a :class:`Config`."""
    if isinstance(data, Config):
        return data
    env = os.environ if environ is None else environ
    if not isinstance(data, Mapping):
        raise ConfigError(f"the config must be a mapping at the top level, got {data!r}")
    resolved: dict[str, Any] = c.interpolate(data, env)
    c.only(
        resolved,
        "",
        (
            "server",
            "auth",
            "providers",
            "models",
            "redis",
            "rate_limits",
            "cache",
            "responses",
            "pricing",
            "usage",
            "metrics",
            "status",
            "tracing",
        ),
    )
    providers = _parse_providers(resolved.get("providers", []), env)
    auth = _parse_auth(c.section(resolved, "auth"), env)
    config = Config(
        server=_parse_server(c.section(resolved, "server")),
        auth=auth,
        providers=providers,
        aliases=_parse_aliases(c.section(resolved, "models"), providers),
        redis=_parse_redis(c.section(resolved, "redis"), env, auth, providers),
        rate_limits=_parse_rate_limits(c.section(resolved, "rate_limits")),
        cache=_parse_cache(c.section(resolved, "cache"), env),
        responses=_parse_responses(c.section(resolved, "responses")),
        pricing=free_mocks(parse_pricing(c.section(resolved, "pricing")), providers),
        usage=_parse_usage(c.section(resolved, "usage")),
        metrics=_parse_metrics(c.section(resolved, "metrics")),
        status=_parse_status(c.section(resolved, "status")),
        tracing=_parse_tracing(c.section(resolved, "tracing"), env),
        source=source,
    )
    if config.usage_store == "redis" and config.redis.url is None:
        raise ConfigError("usage.store is redis but neither redis.url nor REDIS_URL is set")
    if config.managed_keys_store == "redis" and config.redis.url is None:
        raise ConfigError("auth.managed.store is redis but neither redis.url nor REDIS_URL is set")
    uri = config.limits_storage_uri
    budgets = any(k.token_limits or k.max_concurrent or k.money_budgets for k in auth.keys)
    if budgets and not uri.startswith(("memory://", "redis", "rediss://", "unix://")):
        raise ConfigError(
            "token_limits, budget and max_concurrent are counted in memory or in Redis; "
            f"rate_limits.storage_uri is {uri.split('://', 1)[0]}://"
        )
    return config


def _parse_server(data: Mapping[str, Any]) -> ServerConfig:
    w = "server"
    c.only(
        data,
        w,
        (
            "max_body_bytes",
            "heartbeat_interval",
            "request_timeout",
            "max_request_timeout",
            "first_token_timeout",
            "trusted_proxies",
            "client_timeout",
        ),
    )
    server = ServerConfig(
        max_body_bytes=c.get(data, w, "max_body_bytes", c.positive_int, DEFAULT_MAX_BODY_BYTES),
        heartbeat_interval=c.get(
            data, w, "heartbeat_interval", c.positive_number, DEFAULT_HEARTBEAT_INTERVAL
        ),
        request_timeout=c.get(
            data, w, "request_timeout", c.positive_number, DEFAULT_REQUEST_TIMEOUT
        ),
        max_request_timeout=c.get(
            data, w, "max_request_timeout", c.positive_number, DEFAULT_MAX_REQUEST_TIMEOUT
        ),
        first_token_timeout=c.get(
            data, w, "first_token_timeout", c.positive_number, DEFAULT_FIRST_TOKEN_TIMEOUT
        ),
        trusted_proxies=c.get(data, w, "trusted_proxies", c.non_negative_int, 0),
        client_timeout=c.get(data, w, "client_timeout", c.positive_number, DEFAULT_CLIENT_TIMEOUT),
    )
    if server.request_timeout > server.max_request_timeout:
        raise ConfigError(
            f"server.request_timeout ({server.request_timeout:g}) must not exceed "
            f"server.max_request_timeout ({server.max_request_timeout:g})"
        )
    return server


def _parse_responses(data: Mapping[str, Any]) -> ResponsesConfig:
    c.only(data, "responses", ("store", "store_ttl"))
    return ResponsesConfig(
        store=c.get(data, "responses", "store", c.boolean, True),
        store_ttl=c.get(
            data, "responses", "store_ttl", c.positive_int, DEFAULT_RESPONSES_STORE_TTL
        ),
    )


# Where the usage log and the managed keys may live.
USAGE_STORES = ("sqlite", "redis", "none")


def _parse_usage(data: Mapping[str, Any]) -> UsageConfig:
    c.only(data, "usage", ("enabled", "store", "path", "retention_days", "flush_interval"))
    store = c.get(data, "usage", "store", c.choice(USAGE_STORES), "") or None
    enabled = c.get(data, "usage", "enabled", c.boolean, True) and store != "none"
    return UsageConfig(
        enabled=enabled,
        store=store,
        path=c.get(data, "usage", "path", c.non_empty_str, "") or None,
        retention_days=c.get(data, "usage", "retention_days", c.positive_int, 400),
        flush_interval=c.get(data, "usage", "flush_interval", c.positive_number, 1.0),
    )


def _parse_metrics(data: Mapping[str, Any]) -> MetricsConfig:
    c.only(data, "metrics", ("require_admin",))
    return MetricsConfig(require_admin=c.get(data, "metrics", "require_admin", c.boolean, False))


def _parse_status(data: Mapping[str, Any]) -> StatusConfig:
    w = "status"
    c.only(data, w, ("enabled", "refresh", "session_ttl", "top"))
    default = StatusConfig()
    return StatusConfig(
        enabled=c.get(data, w, "enabled", c.boolean, default.enabled),
        refresh=c.get(data, w, "refresh", c.positive_int, default.refresh),
        session_ttl=c.get(data, w, "session_ttl", c.positive_int, default.session_ttl),
        top=c.get(data, w, "top", c.positive_int, default.top),
    )


# The standard variables that name where spans go; either one turns tracing on.
OTLP_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
# The exporter's headers (``k=v,k2=v2``, URL-encoded, as the SDK reads them): a collector's
# token goes there. Values shorter than this are no secret (a tenant id, "1"), and scrubbing
# them from every log line would garble it.
OTLP_HEADER_VARS = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")
MIN_HEADER_SECRET_CHARS = 8


def _header_secrets(env: Mapping[str, str]) -> tuple[str, ...]:
    """The exporter's header values, and each word of them (``Bearer <token>``)."""
    found = []
    for var in OTLP_HEADER_VARS:
        for item in env.get(var, "").split(","):
            value = unquote(item.partition("=")[2].strip())
            if len(value) >= MIN_HEADER_SECRET_CHARS:
                found.append(value)
                found.extend(p for p in value.split() if len(p) >= MIN_HEADER_SECRET_CHARS)
    return tuple(found)


def _parse_tracing(data: Mapping[str, Any], env: Mapping[str, str]) -> TracingConfig:
    c.only(data, "tracing", ("enabled", "capture_content", "content_max_bytes"))
    # The SDK's own switch (OTEL_SDK_DISABLED=true) wins, as it does for any OpenTelemetry SDK.
    disabled = env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"
    by_env = any(env.get(var, "").strip() for var in OTLP_ENDPOINT_VARS)
    enabled = c.get(data, "tracing", "enabled", c.boolean, by_env) and not disabled
    for var in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
        protocol = env.get(var, "").strip()
        if enabled and protocol and protocol != "http/protobuf":
            raise ConfigError(
                f"{var} is {protocol!r}: the gateway exports spans over OTLP/HTTP only "
                "(http/protobuf, port 4318)"
            )
    return TracingConfig(
        header_secrets=_header_secrets(env),
        enabled=enabled,
        capture_content=c.get(data, "tracing", "capture_content", c.boolean, False),
        content_max_bytes=c.get(
            data, "tracing", "content_max_bytes", c.positive_int, DEFAULT_TRACING_CONTENT_MAX_BYTES
        ),
    )


def _parse_redis(
    data: Mapping[str, Any],
    env: Mapping[str, str],
    auth: AuthConfig,
    providers: tuple[ProviderConfig, ...],
) -> RedisConfig:
    c.only(data, "redis", ("url", "timeout", "namespace", "ca_file"))
    url = data.get("url") or env.get("REDIS_URL") or None
    if url is not None:
        try:
            c.redis_url(url)
        except ValueError as exc:
            # Only the scheme is shown: the URL may carry a password.
            shown = url.split("://", 1)[0] + "://..." if "://" in url else "(no scheme)"
            raise ConfigError(f"redis.url (or REDIS_URL) {exc}, got {shown}") from None
    if data.get("namespace"):
        namespace, source = data["namespace"], "redis.namespace"
    elif env.get("PROXYAPI_NAMESPACE"):
        namespace, source = env["PROXYAPI_NAMESPACE"], "PROXYAPI_NAMESPACE"
    else:
        namespace, source = derived_namespace(auth, providers), "derived"
    try:
        c.namespace(namespace)
    except ValueError as exc:
        raise ConfigError(f"{source} {exc}, got {namespace!r}") from None
    return RedisConfig(
        url=url,
        timeout=c.get(data, "redis", "timeout", c.positive_number, DEFAULT_REDIS_TIMEOUT),
        namespace=namespace,
        namespace_source=source,
        ca_file=c.get(data, "redis", "ca_file", c.readable_file, "") or None,
    )


def derived_namespace(auth: AuthConfig, providers: tuple[ProviderConfig, ...]) -> str:
    """A namespace that differs between deployments: a digest of their keys and providers.

    Hosts of one deployment (same config, same secrets) get the same one; a gateway with other
    client keys or other provider credentials gets another. Only digests go in, so the name
    (shown by /health/ready) reveals nothing.
    """
    material = {
        "keys": sorted([k.name, k.sha256] for k in auth.keys),
        "providers": sorted(
            [p.name, p.type, p.base_url, hash_key(p.api_key) if p.api_key else ""]
            for p in providers
        ),
    }
    return "pxy-" + hash_key(json.dumps(material, sort_keys=True))[:12]


def _parse_rate_limits(data: Mapping[str, Any]) -> RateLimitConfig:
    w = "rate_limits"
    c.only(
        data,
        w,
        (
            "storage_uri",
            "strategy",
            "per_key",
            "global",
            "routes",
            "on_storage_error",
            "allow_per_process",
            "failed_auth",
        ),
    )
    d = RateLimitConfig()
    uri = data.get("storage_uri") or None
    if uri is not None and not (isinstance(uri, str) and "://" in uri):
        raise ConfigError(
            "rate_limits.storage_uri must be a URI such as memory:// or redis://host:6379"
        )
    routes = c.per_path(c.section(data, "routes", w), "rate_limits.routes", c.limit_list)
    return RateLimitConfig(
        storage_uri=uri,
        strategy=c.get(data, w, "strategy", c.choice(LIMIT_STRATEGIES), d.strategy),
        per_key=c.get(data, w, "per_key", c.limit_list, ()),
        global_=c.get(data, w, "global", c.limit_list, ()),
        routes=routes,
        on_storage_error=c.get(
            data, w, "on_storage_error", c.choice(STORAGE_ERROR_POLICIES), d.on_storage_error
        ),
        allow_per_process=c.get(data, w, "allow_per_process", c.boolean, False),
        failed_auth=_failed_auth(data.get("failed_auth", "unset"), d.failed_auth),
    )


def _failed_auth(value: Any, default: tuple[str, ...]) -> tuple[str, ...]:
    if value == "unset":
        return default
    if value in (None, False, "off", []):
        return ()
    try:
        return c.limit_list(value)
    except ValueError as exc:
        raise ConfigError(f"rate_limits.failed_auth {exc} (or off), got {value!r}") from None


_CACHE_KEYS = (
    "backend",
    "dir",
    "redis_url",
    "scope",
    "responses",
    "routes",
    "ttl",
    "smart_ttl",
    "memory",
    "warm_before",
    "sweep_interval",
    "max_files",
    "consistency_interval",
    "consistency_sample",
    "single_flight_timeout",
    "signing_key_env",
)


def _parse_cache(data: Mapping[str, Any], env: Mapping[str, str]) -> CacheConfig:
    w = "cache"
    d = CacheConfig()
    c.only(data, w, _CACHE_KEYS)
    redis_url = data.get("redis_url") or None
    if redis_url is not None:
        try:
            c.redis_url(redis_url)
        except ValueError as exc:
            raise ConfigError(f"cache.redis_url {exc}") from None
    routes = c.per_path(c.section(data, "routes", w), "cache.routes", c.choice(CACHE_MODES))
    ttl_raw = c.section(data, "ttl", w)
    c.only(ttl_raw, "cache.ttl", CACHE_CATEGORIES)
    ttl = {
        cat: c.get(ttl_raw, "cache.ttl", cat, c.positive_int, d.ttl[cat])
        for cat in CACHE_CATEGORIES
    }
    smart = c.section(data, "smart_ttl", w)
    c.only(smart, "cache.smart_ttl", ("enabled", "min_accesses", "min_hit_rate", "max_ttl"))
    memory = c.section(data, "memory", w)
    c.only(memory, "cache.memory", ("enabled", "max_memory_mb", "max_entries"))
    signing_env = c.get(data, w, "signing_key_env", c.env_name, "")
    signing_key = None
    if signing_env:
        signing_key = c.secret_from_env(env, signing_env, "cache.signing_key_env")
        if len(signing_key) < 16:
            raise ConfigError(
                f"cache.signing_key_env names {signing_env!r}, whose value is shorter than 16 "
                "characters; use a long random secret (its value is not shown)"
            )
    cfg = CacheConfig(
        backend=c.get(data, w, "backend", c.choice(CACHE_BACKENDS), "") or None,
        dir=c.get(data, w, "dir", c.non_empty_str, "") or None,
        redis_url=redis_url,
        scope=c.get(data, w, "scope", c.choice(CACHE_SCOPES), d.scope),
        responses=c.get(data, w, "responses", c.choice(CACHE_MODES), d.responses),
        routes=routes,
        ttl=ttl,
        smart_ttl=c.get(smart, "cache.smart_ttl", "enabled", c.boolean, d.smart_ttl),
        min_accesses=c.get(
            smart, "cache.smart_ttl", "min_accesses", c.positive_int, d.min_accesses
        ),
        min_hit_rate=c.get(smart, "cache.smart_ttl", "min_hit_rate", c.fraction, d.min_hit_rate),
        max_ttl=c.get(smart, "cache.smart_ttl", "max_ttl", c.positive_int, d.max_ttl),
        memory_tier=c.get(memory, "cache.memory", "enabled", c.boolean, d.memory_tier),
        max_memory_mb=c.get(
            memory, "cache.memory", "max_memory_mb", c.positive_int, d.max_memory_mb
        ),
        max_entries=c.get(memory, "cache.memory", "max_entries", c.positive_int, d.max_entries),
        warm_before=c.get(data, w, "warm_before", c.fraction, d.warm_before),
        sweep_interval=c.get(data, w, "sweep_interval", c.positive_int, d.sweep_interval),
        max_files=c.get(data, w, "max_files", c.positive_int, d.max_files),
        consistency_interval=c.get(
            data, w, "consistency_interval", c.positive_int, d.consistency_interval
        ),
        consistency_sample=c.get(
            data, w, "consistency_sample", c.positive_int, d.consistency_sample
        ),
        single_flight_timeout=c.get(
            data, w, "single_flight_timeout", c.positive_number, d.single_flight_timeout
        ),
        signing_key_env=signing_env or None,
        signing_key=signing_key,
    )
    if cfg.max_ttl < max(cfg.ttl.values()):
        raise ConfigError(
            f"cache.smart_ttl.max_ttl ({cfg.max_ttl}) must be at least the longest cache.ttl "
            f"({max(cfg.ttl.values())})"
        )
    return cfg


def _parse_auth(data: Mapping[str, Any], env: Mapping[str, str]) -> AuthConfig:
    c.only(data, "auth", ("keys", "header", "managed"))
    header = c.get(data, "auth", "header", c.header_name, "X-API-Key")
    raw_keys = data.get("keys", [])
    if not isinstance(raw_keys, list):
        raise ConfigError(f"auth.keys must be a list, got {raw_keys!r}")
    keys = [_parse_key(raw, f"auth.keys[{i}]", env) for i, raw in enumerate(raw_keys)]
    c.unique([k.name for k in keys], "auth.keys[].name")
    c.unique([k.sha256 for k in keys], "auth.keys (two entries hold the same key)", show=False)
    pepper = None
    if env.get("PROXYAPI_KEY_PEPPER"):
        value = c.secret_from_env(env, "PROXYAPI_KEY_PEPPER", "PROXYAPI_KEY_PEPPER")
        if len(value) < 16:
            raise ConfigError(
                "PROXYAPI_KEY_PEPPER is shorter than 16 characters; use a long random value "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        pepper = value.encode()
    return AuthConfig(
        keys=tuple(keys),
        header=header,
        managed=_parse_managed(c.section(data, "managed", "auth")),
        pepper=pepper,
    )


def _parse_managed(data: Mapping[str, Any]) -> ManagedKeysConfig:
    w = "auth.managed"
    c.only(
        data,
        w,
        (
            "enabled",
            "store",
            "path",
            "refresh_interval",
            "max_stale",
            "rotate_grace",
            "request_limits",
        ),
    )
    store = c.get(data, w, "store", c.choice(USAGE_STORES), "") or None
    return ManagedKeysConfig(
        enabled=c.get(data, w, "enabled", c.boolean, True) and store != "none",
        store=store,
        path=c.get(data, w, "path", c.non_empty_str, "") or None,
        refresh_interval=c.get(data, w, "refresh_interval", c.positive_number, 1.0),
        max_stale=c.get(data, w, "max_stale", c.positive_number, 86_400.0),
        rotate_grace=c.get(data, w, "rotate_grace", c.non_negative_number, 3_600.0),
        request_limits=c.get(data, w, "request_limits", c.boolean, False),
    )


def parse_managed_key(settings: Mapping[str, Any], name: str, digest: str) -> KeyConfig:
    """A managed key's settings (the auth.keys[] fields but name and secret) as a KeyConfig,
    checked as the config file's keys are; ConfigError names the bad field."""
    if not isinstance(settings, Mapping):
        raise ConfigError(f"key settings must be a mapping, got {settings!r}")
    for field_name in ("name", "sha256", "key_env"):
        if field_name in settings:
            raise ConfigError(f"{field_name} is not a setting of a managed key")
    return _parse_key({**settings, "name": name, "sha256": digest}, "key", {})


def _parse_key(raw: Any, where: str, env: Mapping[str, str]) -> KeyConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    c.only(
        raw,
        where,
        (
            "name",
            "sha256",
            "key_env",
            "admin",
            "models",
            "limits",
            "token_limits",
            "max_concurrent",
            "max_tokens",
            "budget",
        ),
    )
    name = c.get(raw, where, "name", c.name, None)
    if ("sha256" in raw) == ("key_env" in raw):
        raise ConfigError(f"{where} ({name}) needs exactly one of 'sha256' or 'key_env'")
    if "sha256" in raw:
        digest = raw["sha256"]
        if not isinstance(digest, str) or not is_sha256_hex(digest.strip().lower()):
            shown = len(digest) if isinstance(digest, str) else type(digest).__name__
            raise ConfigError(
                f"{where}.sha256 must be 64 hex characters (the SHA-256 of the key; "
                f"`python -m proxyapi hash-key` prints it), got a value of length {shown}"
            )
        digest = digest.strip().lower()
    else:
        var = c.get(raw, where, "key_env", c.env_name, None)
        # Clients' keys are read stripped too (auth.presented_key).
        digest = hash_key(c.secret_from_env(env, var, f"{where}.key_env"))
    return KeyConfig(
        name=name,
        sha256=digest,
        admin=c.get(raw, where, "admin", c.boolean, False),
        models=c.get(raw, where, "models", c.glob_list, ()),
        limits=c.get(raw, where, "limits", c.limit_list, None) if "limits" in raw else None,
        token_limits=c.get(raw, where, "token_limits", c.limit_list, ()),
        max_concurrent=c.get(raw, where, "max_concurrent", c.positive_int, 0) or None,
        max_tokens=c.get(raw, where, "max_tokens", c.positive_int, DEFAULT_KEY_MAX_TOKENS),
        money_budgets=_parse_money_budgets(raw.get("budget"), f"{where} ({name}).budget"),
    )


def _parse_money_budgets(raw: Any, where: str) -> tuple[MoneyBudget, ...]:
    """``budget: {usd: 50, period: month}``, or a list of such (e.g. a month and a day)."""
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    budgets = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]" if isinstance(raw, list) else where
        if not isinstance(item, Mapping):
            raise ConfigError(
                f"{at} must be a mapping like {{usd: 50, period: month}}, got {item!r}"
            )
        c.only(item, at, ("usd", "period", "warn_at"))
        usd = c.get(item, at, "usd", c.positive_number, None)
        if usd > 1_000_000:
            raise ConfigError(f"{at}.usd must be at most 1000000 (USD), got {usd!r}")
        period = c.get(item, at, "period", c.choice(tuple(BUDGET_PERIODS)), None)
        warn_at = c.get(item, at, "warn_at", c.share, DEFAULT_BUDGET_WARN_AT)
        budgets.append(MoneyBudget(float(usd), period, float(warn_at)))
    c.unique([b.period for b in budgets], f"{where}[].period")
    return tuple(budgets)


def _parse_providers(raw: Any, env: Mapping[str, str]) -> tuple[ProviderConfig, ...]:
    if not isinstance(raw, list):
        raise ConfigError(f"providers must be a list, got {raw!r}")
    providers = [_parse_provider(item, f"providers[{i}]", env) for i, item in enumerate(raw)]
    c.unique([p.name for p in providers], "providers[].name")
    return tuple(providers)


_PROVIDER_KEYS = (
    "name",
    "type",
    "base_url",
    "api_key_env",
    "models",
    "priority",
    "timeout",
    "pool_size",
    "retry",
    "breaker",
    "rate_limit",
    "headers",
    "api_version",
    "deployments",
    "anthropic_version",
    "max_tokens",
    "responses_api",
    "stream_usage",
    "mock",
)
# Keys that only some provider types understand, and those types.
_TYPE_KEYS = {
    key: tuple(t for t, keys in PROVIDER_TYPE_OPTIONS.items() if key in keys)
    for keys in PROVIDER_TYPE_OPTIONS.values()
    for key in keys
}


def _parse_provider(raw: Any, where: str, env: Mapping[str, str]) -> ProviderConfig:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {raw!r}")
    c.only(raw, where, _PROVIDER_KEYS)
    name = c.get(raw, where, "name", c.name, None)
    where = f"{where} ({name})"
    api_key_env = c.get(raw, where, "api_key_env", c.env_name, "")
    api_key: str | None = None
    if api_key_env:
        api_key = c.secret_from_env(env, api_key_env, f"{where}.api_key_env")
    ptype = c.get(raw, where, "type", c.choice(PROVIDER_TYPES), "openai")
    for key in sorted(_TYPE_KEYS.keys() & raw.keys()):
        if ptype not in _TYPE_KEYS[key]:
            raise ConfigError(
                f"{where}.{key} applies to type {' and '.join(_TYPE_KEYS[key])} only "
                f"(this is {ptype})"
            )
    if ptype == "mock":
        # Nothing is sent anywhere: the URL only names the provider (proxyapi.mock).
        if raw.get("base_url") is not None:
            raise ConfigError(f"{where}.base_url does not apply to type mock (it calls no host)")
        base_url = f"mock://{name}"
    else:
        base_url = c.get(raw, where, "base_url", c.url, None).rstrip("/")
    credential = hash_key(api_key) if api_key else ""
    return ProviderConfig(
        name=name,
        type=ptype,
        base_url=base_url,
        identity=hash_key(f"{ptype}|{base_url}|{credential}")[:16],
        models=tuple(c.get(raw, where, "models", c.model_list, ["*"] if ptype == "mock" else None)),
        api_key_env=api_key_env or None,
        api_key=api_key,
        priority=c.get(raw, where, "priority", c.integer, DEFAULT_PRIORITY),
        timeout=_parse_timeout(c.section(raw, "timeout", where), f"{where}.timeout"),
        pool_size=c.get(raw, where, "pool_size", c.positive_int, DEFAULT_POOL_SIZE),
        retry=_parse_retry(c.section(raw, "retry", where), f"{where}.retry"),
        breaker=_parse_breaker(c.section(raw, "breaker", where), f"{where}.breaker"),
        rate_limit=c.get(raw, where, "rate_limit", c.limit_list, ()),
        headers=c.header_map(raw.get("headers"), f"{where}.headers"),
        api_version=c.get(raw, where, "api_version", c.non_empty_str, DEFAULT_AZURE_API_VERSION),
        deployments=c.get(raw, where, "deployments", c.deployment_map, {}),
        anthropic_version=c.get(
            raw, where, "anthropic_version", c.non_empty_str, DEFAULT_ANTHROPIC_VERSION
        ),
        max_tokens=c.get(raw, where, "max_tokens", c.positive_int, DEFAULT_ANTHROPIC_MAX_TOKENS),
        responses_api=c.get(
            raw, where, "responses_api", c.boolean, serves_responses_by_default(ptype, base_url)
        ),
        stream_usage=c.get(raw, where, "stream_usage", c.boolean, True),
        mock=parse_mock(c.section(raw, "mock", where), f"{where}.mock"),
    )


def serves_responses_by_default(ptype: str, base_url: str) -> bool:
    """Whether a provider serves the Responses API unless its config says: OpenAI's own API
    and Azure (its v1 API) do; other OpenAI-compatible hosts mostly serve chat only."""
    if ptype == "azure":
        return True
    return ptype == "openai" and is_openai_api(base_url)


def _parse_timeout(data: Mapping[str, Any], where: str) -> TimeoutConfig:
    c.only(data, where, ("connect", "read"))
    return TimeoutConfig(
        connect=c.get(data, where, "connect", c.positive_number, DEFAULT_CONNECT_TIMEOUT),
        read=c.get(data, where, "read", c.positive_number, DEFAULT_READ_TIMEOUT),
    )


def _parse_retry(data: Mapping[str, Any], where: str) -> RetryConfig:
    d = RetryConfig()
    c.only(
        data,
        where,
        (
            "strategy",
            "max_attempts",
            "base_delay",
            "max_delay",
            "retry_after_max",
            "on_read_timeout",
        ),
    )
    retry = RetryConfig(
        strategy=c.get(data, where, "strategy", c.choice(RETRY_STRATEGIES), d.strategy),
        max_attempts=c.get(data, where, "max_attempts", c.positive_int, d.max_attempts),
        base_delay=c.get(data, where, "base_delay", c.non_negative_number, d.base_delay),
        max_delay=c.get(data, where, "max_delay", c.non_negative_number, d.max_delay),
        retry_after_max=c.get(
            data, where, "retry_after_max", c.non_negative_number, d.retry_after_max
        ),
        on_read_timeout=c.get(data, where, "on_read_timeout", c.boolean, d.on_read_timeout),
    )
    if retry.max_delay < retry.base_delay:
        raise ConfigError(
            f"{where}.max_delay ({retry.max_delay:g}) must be at least base_delay "
            f"({retry.base_delay:g})"
        )
    return retry


def _parse_breaker(data: Mapping[str, Any], where: str) -> BreakerConfig:
    d = BreakerConfig()
    c.only(data, where, ("fail_max", "reset_timeout"))
    return BreakerConfig(
        fail_max=c.get(data, where, "fail_max", c.positive_int, d.fail_max),
        reset_timeout=c.get(data, where, "reset_timeout", c.positive_number, d.reset_timeout),
    )


def _parse_aliases(
    data: Mapping[str, Any], providers: tuple[ProviderConfig, ...]
) -> dict[str, tuple[tuple[str, str], ...]]:
    by_name = {p.name: p for p in providers}
    aliases: dict[str, tuple[tuple[str, str], ...]] = {}
    for alias, targets in data.items():
        where = f"models.{alias}"
        if not isinstance(targets, list) or not targets:
            raise ConfigError(
                f"{where} must be a non-empty list of 'provider/model' targets, got {targets!r}"
            )
        parsed = []
        for i, target in enumerate(targets):
            provider_name, sep, model = str(target).partition("/")
            provider = by_name.get(provider_name)
            if not sep or not model or provider is None:
                raise ConfigError(
                    f"{where}[{i}] must be '<provider>/<model>' naming a configured provider "
                    f"({', '.join(by_name) or 'none configured'}), got {target!r}"
                )
            if not lists_model(provider.models, model):
                raise ConfigError(
                    f"{where}[{i}]: provider {provider_name!r} does not list {model!r} in its "
                    "models"
                )
            parsed.append((provider_name, model))
        aliases[str(alias)] = tuple(parsed)
    return aliases
