"""The validated configuration, as frozen dataclasses, with every default and its reason."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlsplit

# The provider types, and the settings each takes beyond the common ones (its adapter is in
# proxyapi.providers.ADAPTERS, under the same name).
PROVIDER_TYPE_OPTIONS: dict[str, tuple[str, ...]] = {
    "openai": ("responses_api", "stream_usage"),
    "azure": ("api_version", "deployments", "responses_api"),
    "anthropic": ("anthropic_version", "max_tokens"),
    # Answers made up by the gateway itself (proxyapi.mock): no key, no network.
    "mock": ("mock",),
}
PROVIDER_TYPES = tuple(PROVIDER_TYPE_OPTIONS)
RETRY_STRATEGIES = ("exponential", "immediate", "adaptive")
LIMIT_STRATEGIES = ("moving-window", "fixed-window", "sliding-window-counter")
CACHE_BACKENDS = ("filesystem", "redis", "simple", "none")
CACHE_MODES = ("deterministic", "all", "off")
CACHE_SCOPES = ("key", "shared")
CACHE_CATEGORIES = ("responses", "models", "metadata")
STORAGE_ERROR_POLICIES = ("per-process", "fail-open", "fail-closed")

# 10 MiB holds a long conversation with a few inline images; bigger bodies are almost always
# a client bug, and Flask would otherwise buffer them in memory.
DEFAULT_MAX_BODY_BYTES = 10 * 1024 * 1024
# Heroku-style routers cut a response that sends nothing for 55 s; 15 s stays well inside.
DEFAULT_HEARTBEAT_INTERVAL = 15.0
# End-to-end budget for retries and fallbacks of one request (for a stream: until its first
# event). Above the default read timeout, so a slow first provider still leaves room.
DEFAULT_REQUEST_TIMEOUT = 120.0
# The most a client may ask for with X-ProxyAPI-Timeout.
DEFAULT_MAX_REQUEST_TIMEOUT = 600.0
# A stream whose first event takes longer falls back to the next provider. Heroku-style routers
# drop a request that sends no byte for 30 s, so this stays at 30.
DEFAULT_FIRST_TOKEN_TIMEOUT = 30.0
DEFAULT_CLIENT_TIMEOUT = 10.0
# The completion cap of a request without one, for keys with token budgets: long answers fit,
# and a budget is not drained by one request that runs on.
DEFAULT_KEY_MAX_TOKENS = 4096
DEFAULT_CONNECT_TIMEOUT = 5.0
# Generous: a large non-streaming completion can take a minute before its first byte.
DEFAULT_READ_TIMEOUT = 60.0
# Connections kept per provider per worker; sized for the default 32 gunicorn threads.
DEFAULT_POOL_SIZE = 32
DEFAULT_PRIORITY = 1
# Redis sits on the request path (breakers): fail fast rather than hold a request.
DEFAULT_REDIS_TIMEOUT = 0.5
# Azure OpenAI's API version when a provider names none: the latest GA version.
DEFAULT_AZURE_API_VERSION = "2024-10-21"
# How long the gateway keeps the Responses it made (for previous_response_id and
# GET /v1/responses/{id}): OpenAI keeps its own for 30 days.
DEFAULT_RESPONSES_STORE_TTL = 30 * 86400
# Anthropic's API version header, and the max_tokens it requires when a client sends none.
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_ANTHROPIC_MAX_TOKENS = 4096


@dataclass(frozen=True)
class ServerConfig:
    """Settings of the HTTP front end and the per-request budget."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    heartbeat_interval: float = DEFAULT_HEARTBEAT_INTERVAL
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT
    max_request_timeout: float = DEFAULT_MAX_REQUEST_TIMEOUT
    first_token_timeout: float = DEFAULT_FIRST_TOKEN_TIMEOUT
    # Proxies in front of the gateway whose X-Forwarded-For/-Proto to trust (werkzeug ProxyFix).
    trusted_proxies: int = 0
    # Seconds a request may take to arrive in full (head and body) before it is answered 408
    # and its connection closed (proxyapi.worker). A real client sends a request in well
    # under a second; 10 s leaves room for a large body on a slow link.
    client_timeout: float = DEFAULT_CLIENT_TIMEOUT


@dataclass(frozen=True)
class RedisConfig:
    """Where shared state lives in distributed mode; no URL means embedded mode."""

    url: str | None = field(default=None, repr=False)  # may hold a password
    timeout: float = DEFAULT_REDIS_TIMEOUT
    # The first part of every key this gateway writes to a shared store (Redis, the cache
    # folder): deployments with different namespaces never see each other's state.
    namespace: str = "proxyapi"
    # Where it came from: "redis.namespace", "PROXYAPI_NAMESPACE" or "derived" (from the keys
    # and providers, so two different deployments do not collide by accident).
    namespace_source: str = "derived"
    # CA bundle to verify a rediss:// server with (a private CA); None: the system's.
    ca_file: str | None = None


# The periods a money budget may have, in seconds; a month is 30 days (the budget holds over
# every 30 days in a row, as the token budgets' sliding windows do).
BUDGET_PERIODS = {"hour": 3600, "day": 86400, "week": 7 * 86400, "month": 30 * 86400}
DEFAULT_BUDGET_WARN_AT = 0.8


@dataclass(frozen=True)
class MoneyBudget:
    """A key's spending cap: ``usd`` per ``period``, warned about at ``warn_at`` of it."""

    usd: float
    period: str
    warn_at: float = DEFAULT_BUDGET_WARN_AT

    @property
    def seconds(self) -> int:
        return BUDGET_PERIODS[self.period]


@dataclass(frozen=True)
class KeyConfig:
    """One client key: a name for logs and metrics, and the key's SHA-256 hex digest."""

    name: str
    sha256: str = field(repr=False)
    admin: bool = False
    # Globs of the model names this key may use; empty means every model.
    models: tuple[str, ...] = ()
    # Request limits ("60/minute"); None means rate_limits.per_key applies.
    limits: tuple[str, ...] | None = None
    # Token budgets ("200000/day"): each request reserves its most before it is sent and is
    # settled to its usage after (proxyapi.budgets).
    token_limits: tuple[str, ...] = ()
    # Requests in flight at once, across every worker and host; None: no limit.
    max_concurrent: int | None = None
    # With budgets: the completion cap reserved, and sent upstream, for a request that sets
    # none (lowered to what the budget has left).
    max_tokens: int = DEFAULT_KEY_MAX_TOKENS
    # Spending caps in USD, reserved and settled like token budgets (proxyapi.budgets).
    money_budgets: tuple[MoneyBudget, ...] = ()


@dataclass(frozen=True)
class ManagedKeysConfig:
    """Keys made at run time (the admin API and CLI), beside the config's read-only ones."""

    enabled: bool = True
    # "sqlite", "redis" or "none"; None: redis with a Redis URL (distributed mode), else sqlite.
    store: str | None = None
    # The SQLite file; None: keys-<namespace>.sqlite3 beside the usage log (private folder).
    path: str | None = None
    # Seconds between a worker's checks of the store's version (one small read, off the
    # request path): a change reaches every worker within about this.
    refresh_interval: float = 1.0
    # Seconds a worker keeps serving its last good key set while the store is unreachable;
    # past it, managed keys get 503 key_store_unavailable (never 401). Config keys always work.
    max_stale: float = 86_400.0
    # Seconds a rotated key's old secret keeps working, unless the rotation says otherwise.
    rotate_grace: float = 3_600.0
    # Managed keys may have request limits (auth.keys[].limits) even when no config key or
    # rate_limits.per_key has any: flask-limiter is then on for every request (about 70 us).
    request_limits: bool = False


@dataclass(frozen=True)
class AuthConfig:
    """Client authentication settings."""

    keys: tuple[KeyConfig, ...] = ()
    header: str = "X-API-Key"
    managed: ManagedKeysConfig = field(default_factory=ManagedKeysConfig)
    # PROXYAPI_KEY_PEPPER: managed keys are kept as HMAC-SHA256 digests keyed with it.
    pepper: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TimeoutConfig:
    """Connect and per-read timeouts, in seconds, for one provider."""

    connect: float = DEFAULT_CONNECT_TIMEOUT
    read: float = DEFAULT_READ_TIMEOUT


@dataclass(frozen=True)
class RetryConfig:
    """How one provider's failed calls are retried (see proxyapi.upstream.retry)."""

    strategy: str = "exponential"
    max_attempts: int = 3
    base_delay: float = 0.5
    max_delay: float = 8.0
    # A Retry-After up to this is waited out; a longer one sends the request to the next
    # provider instead of parking a worker thread.
    retry_after_max: float = 5.0
    # Off: a read timeout means the provider may still be generating (and billing) the answer.
    on_read_timeout: bool = False


@dataclass(frozen=True)
class BreakerConfig:
    """When one provider's circuit opens, and for how long."""

    fail_max: int = 5
    reset_timeout: float = 30.0


# The size of a mock provider's embedding vectors when a request names none.
DEFAULT_MOCK_EMBEDDING_DIMENSIONS = 8


@dataclass(frozen=True)
class MockFailure:
    """A fault a mock provider injects into ``rate`` of its calls (0 to 1), chosen at random.

    One of: ``status`` (an error answer, with ``retry_after`` seconds for a 429 or 503),
    ``stall`` (seconds without a byte, after ``after`` events of a stream: by default
    before the answer's first byte),
    ``cut_after`` (the stream stops after that many events, without its end), ``reset``
    (the connection drops before any byte).
    """

    rate: float
    status: int | None = None
    retry_after: float | None = None
    stall: float | None = None
    after: int = 0
    cut_after: int | None = None
    reset: bool = False


@dataclass(frozen=True)
class MockConfig:
    """How a ``type: mock`` provider answers: when, how fast, and how it fails."""

    # Seconds before the first byte of every answer.
    latency: float = 0.0
    # Pace of the answer's tokens (a stream's events; a whole answer waits for all of them);
    # 0: all at once.
    tokens_per_second: float = 0.0
    embedding_dimensions: int = DEFAULT_MOCK_EMBEDDING_DIMENSIONS
    failures: tuple[MockFailure, ...] = ()


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
    retry: RetryConfig = RetryConfig()
    breaker: BreakerConfig = BreakerConfig()
    # Caps on what the gateway sends this provider ("500/minute"); past them, the next
    # provider is tried.
    rate_limit: tuple[str, ...] = ()
    # Extra request headers (e.g. OpenRouter's HTTP-Referer); never shown in logs.
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    # Azure: the API version, and model name -> deployment name (default: the same name).
    api_version: str = DEFAULT_AZURE_API_VERSION
    deployments: dict[str, str] = field(default_factory=dict)
    # Anthropic: the anthropic-version header, and max_tokens when the client sends none.
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION
    max_tokens: int = DEFAULT_ANTHROPIC_MAX_TOKENS
    # The host serves OpenAI's Responses API itself: /v1/responses passes through to it
    # (else it is translated to chat). Default: OpenAI's own API and Azure.
    responses_api: bool = False
    # The host takes stream_options.include_usage (the gateway asks for every stream's usage
    # to price it); false for one that refuses the field: streams are then charged an estimate.
    stream_usage: bool = True
    # type: mock: how it answers.
    mock: MockConfig = MockConfig()
    # Who this provider is, for cache keys: a digest of its type, URL and credential (never the
    # credential), so answers of one account are not served for another's.
    identity: str = ""


@dataclass(frozen=True)
class RateLimitConfig:
    """Request and token limits, and where their counters live."""

    # None: redis.url when set (distributed mode), else "memory://".
    storage_uri: str | None = field(default=None, repr=False)
    strategy: str = "moving-window"
    per_key: tuple[str, ...] = ()
    global_: tuple[str, ...] = ()
    routes: dict[str, tuple[str, ...]] = field(default_factory=dict)
    on_storage_error: str = "per-process"
    # memory:// with several workers makes every limit N times larger; refused unless set.
    allow_per_process: bool = False
    # Failed authentications (unknown keys) allowed per client address before that address is
    # refused with 429 for the rest of the window; () turns it off. Keys are long random
    # strings, so this is about load and weak keys more than guessing: generous, and it never
    # counts a request whose key is valid.
    failed_auth: tuple[str, ...] = ("20/minute",)

    def any_configured(
        self, keys: tuple[KeyConfig, ...], providers: tuple[ProviderConfig, ...]
    ) -> bool:
        """Tell whether any request limit (flask-limiter's) is configured."""
        return bool(
            self.per_key
            or self.global_
            or self.routes
            or any(k.limits for k in keys)
            or any(p.rate_limit for p in providers)
        )

    def counts_anything(
        self, keys: tuple[KeyConfig, ...], providers: tuple[ProviderConfig, ...]
    ) -> bool:
        """Tell whether anything is counted: request limits, token or money budgets, or
        concurrency."""
        return self.any_configured(keys, providers) or any(
            k.token_limits or k.max_concurrent or k.money_budgets for k in keys
        )


@dataclass(frozen=True)
class CacheConfig:
    """The response cache and the other cached data (see proxyapi.cache)."""

    # None: "redis" when a Redis URL is configured (distributed mode), else "filesystem".
    backend: str | None = None
    # FileSystemCache folder; None: <system temp dir>/proxyapi-cache.
    dir: str | None = None
    # None: redis.url.
    redis_url: str | None = field(default=None, repr=False)
    # Whose answers may be shared: each key's own ("key"), or everybody's ("shared").
    scope: str = "key"
    responses: str = "deterministic"
    routes: dict[str, str] = field(default_factory=dict)
    ttl: dict[str, int] = field(
        default_factory=lambda: {"responses": 1800, "models": 3600, "metadata": 7200}
    )
    # Smart TTL: an entry read at least min_accesses times, with at least min_hit_rate of its
    # lookups hits, has its TTL doubled (once per extension) up to max_ttl.
    smart_ttl: bool = True
    min_accesses: int = 5
    min_hit_rate: float = 0.8
    max_ttl: int = 86400
    # The optional per-process tier in front of the shared backend.
    memory_tier: bool = False
    max_memory_mb: int = 64
    max_entries: int = 2000
    # Background upkeep: warm "models" (and hot "metadata") entries when this share of their
    # TTL is left; sweep expired files; compare memory entries with the shared backend.
    warm_before: float = 0.2
    sweep_interval: int = 300
    # Most files the filesystem backend keeps: past it the sweep removes the oldest, so
    # requests for ever-new answers cannot fill the disk between expiries.
    max_files: int = 20_000
    consistency_interval: int = 60
    consistency_sample: int = 20
    # How long identical concurrent requests wait for the first one's answer.
    single_flight_timeout: float = 30.0
    # Environment variable holding a secret that signs every stored value (HMAC-SHA256); an
    # unsigned or wrongly signed value is then a miss. None: values are not signed.
    signing_key_env: str | None = None
    signing_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class PriceOverride:
    """A price from the config, in USD per million tokens of each unit, for the models whose
    provider and model names match the globs."""

    provider: str
    model: str
    input_per_mtok: float
    output_per_mtok: float
    # None: the input price (a provider that gives no cache discount).
    cache_read_per_mtok: float | None = None
    cache_write_per_mtok: float | None = None
    # None: cache_write_per_mtok.
    cache_write_1h_per_mtok: float | None = None


@dataclass(frozen=True)
class PricingConfig:
    """Where prices come from: the config's own (first match wins), then genai-prices' table."""

    table: bool = True
    prices: tuple[PriceOverride, ...] = ()


@dataclass(frozen=True)
class UsageConfig:
    """The usage log: every answered request's tokens, by key, model, provider and hour."""

    enabled: bool = True
    # "sqlite", "redis" or "none"; None: redis with a Redis URL (distributed mode), else sqlite.
    store: str | None = None
    # The SQLite file; None: usage-<namespace>.sqlite3 beside the default cache folders, in
    # a private folder of this user's in the temp dir.
    path: str | None = None
    retention_days: int = 400
    # Seconds a worker gathers usage before writing it, off the request path.
    flush_interval: float = 1.0


@dataclass(frozen=True)
class ResponsesConfig:
    """The Responses API's store of the responses the gateway makes by translation."""

    # Keep translated responses unless the request says store: false (OpenAI's default).
    store: bool = True
    store_ttl: int = DEFAULT_RESPONSES_STORE_TTL


@dataclass(frozen=True)
class MetricsConfig:
    """The Prometheus endpoint."""

    require_admin: bool = False


# Largest prompt or answer put in a span event with tracing.capture_content (UTF-8 bytes).
DEFAULT_TRACING_CONTENT_MAX_BYTES = 4096


@dataclass(frozen=True)
class TracingConfig:
    """OpenTelemetry tracing (the optional extra, proxyapi.tracing)."""

    # On when OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT is set, unless tracing.enabled says otherwise.
    enabled: bool = False
    # Prompts and answers in span events: off, as they may hold what must not leave the host.
    capture_content: bool = False
    content_max_bytes: int = DEFAULT_TRACING_CONTENT_MAX_BYTES
    # The values of OTEL_EXPORTER_OTLP_(TRACES_)HEADERS (a collector's token), kept out of logs.
    header_secrets: tuple[str, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class StatusConfig:
    """The status page at ``/status``."""

    # Off: no route, and no recorder on the request path.
    enabled: bool = True
    # Seconds between the page's own reloads.
    refresh: int = 15
    # Seconds a sign-in through the form lasts.
    session_ttl: int = 12 * 3600
    # Rows in "nearest to exhaustion" and "spend by key".
    top: int = 10


@dataclass(frozen=True)
class Config:
    """The validated configuration of one gateway."""

    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    providers: tuple[ProviderConfig, ...] = ()
    # alias -> ordered (provider name, upstream model) targets
    aliases: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)
    redis: RedisConfig = RedisConfig()
    rate_limits: RateLimitConfig = RateLimitConfig()
    cache: CacheConfig = CacheConfig()
    responses: ResponsesConfig = ResponsesConfig()
    pricing: PricingConfig = PricingConfig()
    usage: UsageConfig = UsageConfig()
    metrics: MetricsConfig = MetricsConfig()
    status: StatusConfig = StatusConfig()
    tracing: TracingConfig = TracingConfig()
    source: str = "defaults"

    @property
    def usage_store(self) -> str:
        """Where the usage log lives: the configured store, else Redis or SQLite by mode."""
        if not self.usage.enabled:
            return "none"
        return self.usage.store or ("redis" if self.redis.url else "sqlite")

    @property
    def managed_keys_store(self) -> str:
        """Where managed keys live: the configured store, else Redis or SQLite by mode."""
        if not self.auth.managed.enabled:
            return "none"
        return self.auth.managed.store or ("redis" if self.redis.url else "sqlite")

    @property
    def managed_request_limits(self) -> bool:
        """Whether managed keys' request limits are enforced (the per-key scope is there)."""
        if self.managed_keys_store == "none":
            return False
        rl = self.rate_limits
        return self.auth.managed.request_limits or bool(
            rl.per_key or any(k.limits for k in self.auth.keys)
        )

    @property
    def cache_backend(self) -> str:
        """The cache backend in use: the configured one, else Redis or files by mode."""
        if self.cache.backend:
            return self.cache.backend
        return "redis" if self.cache.redis_url or self.redis.url else "filesystem"

    @property
    def limits_storage_uri(self) -> str:
        """Where rate-limit counters live: the explicit URI, else Redis, else this process."""
        return self.rate_limits.storage_uri or self.redis.url or "memory://"

    def secrets(self) -> list[str]:
        """Return every secret the config holds, so they can be kept out of responses and logs."""
        found = [p.api_key for p in self.providers if p.api_key]
        if self.auth.pepper:
            found.append(self.auth.pepper.decode())
        if self.cache.signing_key:
            found.append(self.cache.signing_key)
        for url in (self.redis.url, self.cache.redis_url, self.rate_limits.storage_uri):
            password = urlsplit(url).password if url else None
            if password:
                found.append(password)
        found.extend(self.tracing.header_secrets)
        return found
