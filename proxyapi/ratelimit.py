"""Rate limits: flask-limiter for requests; its strategy and storage for provider caps and
failed authentications (token budgets and concurrency: :mod:`proxyapi.budgets`).

Scopes (each a list of limits such as ``["20/second", "600/minute"]``, all of which apply):

- per key: the key's own ``limits``, else ``rate_limits.per_key``; one counter per key across
  every /v1 route (a flask-limiter application limit keyed by the key's name).
- global: ``rate_limits.global``, one counter for the whole gateway.
- per route: ``rate_limits.routes``, one counter per path for the whole gateway.
- per provider: ``providers[].rate_limit`` caps what the gateway sends a provider; the
  fallback loop skips a provider that is at its cap (:meth:`Limits.admit_provider`).
- failed authentications: ``rate_limits.failed_auth`` per client address (on by default);
  past it the address gets 429 for the rest of the window, whatever key it sends
  (:meth:`Limits.auth_failed`, :meth:`Limits.auth_locked`).

The counters live in ``rate_limits.storage_uri`` (Redis in distributed mode, so a limit is one
limit across every worker and host). For a key with a token budget, on the routes that
reserve one, the request's check is put off from before the view to the moment of the
reservation, which then rides along with the first hit (:meth:`Limits.admission`): one round
trip for both instead of two. Nothing else changes: the same limits in the same order, and a
request that fails before its reservation (a bad body, an unknown model) is checked on its
way out, so it is counted and a limited key still gets its 429 first.

flask-limiter has no token bucket; two limits on one scope give the same effect: a short one
bounds bursts (``20/second``), a long one the sustained rate (``600/minute``). What a Redis
outage does is ``rate_limits.on_storage_error``: ``per-process`` (limits go on in each
worker's memory until Redis answers again), ``fail-open`` (no limits) or ``fail-closed``
(503); never a 500.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, HeaderNames, Limiter
from flask_limiter.errors import RateLimitExceeded
from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage, Storage, storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from limits.util import WindowStats
from redis.backoff import NoBackoff
from redis.retry import Retry

from proxyapi import limits_storage
from proxyapi.errors import ProxyAPIError, render_error
from proxyapi.limits_storage import Rider, reporting_uri

if TYPE_CHECKING:
    from proxyapi.config import Config, KeyConfig

EXTENSION = "proxyapi.ratelimit"
# Endpoints whose limit check may wait for the budget's reservation (see Limits.admission).
DEFERRABLE = "proxyapi.limits_deferrable"
# Set in ``g`` while a request's check waits for it.
_DEFERRED = "_proxyapi_limits_deferred"
_SCRATCH_RETRY_AFTER = "X-ProxyAPI-Limiter-Retry-After"
# Client addresses remembered as locked out by failed authentications, at most.
MAX_LOCKED_ADDRESSES = 10_000
log = logging.getLogger(__name__)


class RateLimited(ProxyAPIError):
    code = 429
    type = "rate_limit_error"
    error_code = "rate_limit_exceeded"
    description = "Rate limit reached."


class LimitStorageUnavailable(ProxyAPIError):
    code = 503
    type = "service_unavailable"
    error_code = "rate_limit_storage_unavailable"
    description = "The rate-limit store is unreachable and the gateway is set to fail closed."


def _key_name() -> str:
    # Never empty: flask-limiter silently skips a limit whose key is "" (it logs and moves on).
    return str(g.get("key_name") or f"addr:{request.remote_addr or 'unknown'}")


def _whole_gateway() -> str:
    return "all"


def per_process_problem(config: Config, workers: int) -> str | None:
    """Explain why limits kept in process memory would be wrong with ``workers``, or None."""
    rl = config.rate_limits
    if workers <= 1 or not config.limits_storage_uri.startswith("memory://"):
        return None
    if rl.allow_per_process or not rl.counts_anything(config.auth.keys, config.providers):
        return None
    return (
        f"rate limits are kept in each worker's memory (no REDIS_URL), and gunicorn runs "
        f"{workers} workers, so every limit would let {workers} times its value through. Set "
        "REDIS_URL (or rate_limits.storage_uri), run one worker (WEB_CONCURRENCY=1), or accept "
        "per-worker limits with rate_limits.allow_per_process: true."
    )


class Limits:
    """The app's flask-limiter ``Limiter``, and the budgets it does not cover."""

    def __init__(
        self,
        config: Config,
        on_reject: Callable[[str], None] | None = None,
        on_redis_error: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config.rate_limits
        self.on_redis_error = on_redis_error or (lambda component: None)
        # Every counter's key starts with the deployment's namespace.
        self.prefix = config.redis.namespace
        # Told the scope ("key", "global", "route", "tokens") of every 429 a limit causes.
        self.on_reject = on_reject or (lambda scope: None)
        self.policy = config.rate_limits.on_storage_error
        self.provider_items = {p.name: _items(p.rate_limit) for p in config.providers}
        self.routes = {path: ";".join(v) for path, v in config.rate_limits.routes.items()}
        self.failed_auth_items = _items(config.rate_limits.failed_auth)
        # address -> monotonic time its lock-out ends (see auth_locked)
        self._locked: dict[str, float] = {}
        options: dict[str, Any] = {}
        uri = config.limits_storage_uri
        self.shared_storage = not uri.startswith("memory://")
        if self.shared_storage:
            # Fail fast (redis-py would retry with backoff): the outage policy decides.
            timeout = config.redis.timeout
            options = {
                "socket_connect_timeout": timeout,
                "socket_timeout": timeout,
                "retry": Retry(NoBackoff(), 0),
            }
        # Only the scopes in use are registered: flask-limiter resolves every registered limit
        # on every request, which costs CPU even when it comes out empty.
        scopes: list[str | Callable[[], str] | ApplicationLimit] = []
        # Managed keys may be given limits at run time when their scope is there from the start.
        keys = config.auth.keys
        if (
            config.rate_limits.per_key
            or any(k.limits for k in keys)
            or config.managed_request_limits
        ):
            scopes.append(
                ApplicationLimit(self._per_key_limits, key_function=_key_name, scope="key")
            )
        if config.rate_limits.global_:
            scopes.append(
                ApplicationLimit(
                    ";".join(config.rate_limits.global_),
                    key_function=_whole_gateway,
                    scope="global",
                )
            )
        if config.rate_limits.routes:
            scopes.append(
                ApplicationLimit(
                    self._route_limits, key_function=_whole_gateway, scope=self._route_scope
                )
            )
        self._storage_uri = reporting_uri(uri, config.rate_limits.strategy)
        self._storage_options = options
        self._own: tuple[RateLimiter, Storage] | None = None
        self.limiter = Limiter(
            _key_name,
            application_limits=scopes,
            # Without any limit configured the extension stays out of the request path.
            enabled=config.rate_limits.any_configured(config.auth.keys, config.providers)
            or config.managed_request_limits,
            strategy=config.rate_limits.strategy,
            storage_uri=self._storage_uri,
            storage_options=options,
            headers_enabled=True,
            # flask-limiter would put its own Retry-After on every response (and raise an
            # upstream's or a breaker's to its window's reset): it goes to a scratch header
            # that is dropped, and the 429s of limits set Retry-After themselves.
            header_name_mapping={HeaderNames.RETRY_AFTER: _SCRATCH_RETRY_AFTER},
            key_prefix=self.prefix,
            swallow_errors=self.policy == "fail-open",
            in_memory_fallback_enabled=self.policy == "per-process",
        )
        self._fallback: RateLimiter | None = None
        # A reservation can ride with a hit: the hits go to one Redis server (not a cluster,
        # whose hash slots keep a limit's key and a budget's apart) through the storage
        # that reports its windows (moving-window).
        self.rides = (
            self.shared_storage
            and self._storage_uri.startswith(limits_storage.SCHEME_PREFIX)
            and not self._storage_uri.startswith(limits_storage.SCHEME_PREFIX + "redis+cluster")
        )

    # ------------------------------------------------------------------ deferred checks

    def defer(self) -> None:
        """Before flask-limiter's check: put it off when this request will reserve a budget."""
        if request.endpoint not in current_app.extensions.get(DEFERRABLE, ()):
            return
        key: KeyConfig | None = g.get("key")
        budgets = current_app.extensions.get("proxyapi.budgets")
        if key is not None and budgets is not None and budgets.applies(key):
            setattr(g, _DEFERRED, True)

    @staticmethod
    def deferred() -> bool:
        """Tell whether this request's check waits (flask-limiter's request filter)."""
        return bool(g.get(_DEFERRED))

    def admission(self) -> Callable[[Rider], None] | None:
        """The request's limit check when it was put off, else None (it has run).

        Call it with a :class:`~proxyapi.limits_storage.Rider`: flask-limiter checks the
        limits as its before_request hook would have (``_check_request_limit``, the hook
        itself: flask-limiter has no public call for a check put off), and the rider goes
        with the first hit. It raises what the hook raises (429, a store error).
        """
        if not g.get(_DEFERRED):
            return None

        def admit(rider: Rider) -> None:
            g.pop(_DEFERRED, None)
            with limits_storage.ride(rider):
                self.limiter._check_request_limit()

        return admit

    def check_deferred(self) -> None:
        """Run a check still put off (the request failed before its reservation)."""
        if g.pop(_DEFERRED, None):
            self.limiter._check_request_limit()

    # ------------------------------------------------------------------ flask-limiter scopes

    def _per_key_limits(self) -> str:
        key: KeyConfig | None = g.get("key")
        limits = key.limits if key is not None and key.limits is not None else self.config.per_key
        return ";".join(limits)

    def _route_limits(self) -> str:
        return self.routes.get(request.path, "")

    @staticmethod
    def _route_scope(_endpoint: str) -> str:
        return f"route:{request.path}"

    # ------------------------------------------------------------------ budgets outside it

    def _strategy(self) -> tuple[RateLimiter, Storage]:
        """flask-limiter's strategy and storage; built here when the extension is off (no
        request limits configured, but failed authentications are still counted)."""
        if self.limiter.enabled:
            return self.limiter.limiter, self.limiter.storage
        if self._own is None:
            storage: Storage = storage_from_string(self._storage_uri, **self._storage_options)  # type: ignore[assignment]
            self._own = (STRATEGIES[self.config.strategy](storage), storage)
        return self._own

    def _run(self, call: Callable[[RateLimiter], Any], otherwise: Any) -> Any:
        """Run ``call`` on the shared strategy, applying the storage-outage policy."""
        strategy, storage = self._strategy()
        try:
            return call(strategy)
        except Exception as exc:
            if not self.shared_storage or not isinstance(exc, storage.base_exceptions):
                raise
            self.on_redis_error("limits")
            if self.policy == "fail-closed":
                raise LimitStorageUnavailable() from exc
            log.warning(
                "rate-limit store unreachable (%s): %s", exc.__class__.__name__, self.policy
            )
            if self.policy == "fail-open":
                return otherwise
            if self._fallback is None:
                self._fallback = STRATEGIES[self.config.strategy](MemoryStorage())
            return call(self._fallback)

    def _stats(self, item: RateLimitItem, *ident: str) -> WindowStats | None:
        return self._run(lambda s: s.get_window_stats(item, self.prefix, *ident), None)  # type: ignore[no-any-return]

    def _hit(self, item: RateLimitItem, *ident: str, cost: int = 1) -> bool:
        return bool(self._run(lambda s: s.hit(item, self.prefix, *ident, cost=cost), True))

    def standing(self, key: KeyConfig) -> list[tuple[RateLimitItem, int]]:
        """Each of ``key``'s request limits with the hits it counts now (for the status page).

        Reads the counters flask-limiter keeps for the ``key`` scope; applies the outage policy.
        """
        if not self.limiter.enabled:
            return []
        limits = key.limits if key.limits is not None else self.config.per_key
        out = []
        for item in _items(limits):
            stats = self._stats(item, key.name, "key")
            if stats is not None:
                out.append((item, item.amount - stats.remaining))
        return out

    def admit_provider(self, name: str) -> float | None:
        """Count one call to provider ``name``; None if under its caps, else seconds to wait."""
        for item in self.provider_items.get(name, []):
            if not self._hit(item, "provider", name):
                stats = self._stats(item, "provider", name)
                return max(1.0, stats.reset_time - time.time()) if stats else 1.0
        return None

    def auth_locked(self, address: str) -> int | None:
        """Seconds ``address`` is still locked out for failed authentications, or None.

        Read from this worker's memory only, so a request with a valid key costs no round
        trip; a worker learns of a lock-out at the address's next failure (see auth_failed).
        """
        until = self._locked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left > 0:
            return max(1, math.ceil(left))
        self._locked.pop(address, None)
        return None

    def auth_failed(self, address: str) -> int | None:
        """Count a failed authentication; past the limit, lock ``address`` out and return the
        seconds until it may try again (None while under the limit)."""
        for item in self.failed_auth_items:
            if self._hit(item, "auth", address):
                continue
            stats = self._stats(item, "auth", address)
            wait = stats.reset_time - time.time() if stats else float(item.get_expiry())
            wait = max(1.0, wait)
            if len(self._locked) >= MAX_LOCKED_ADDRESSES:
                now = time.monotonic()
                self._locked = {a: t for a, t in self._locked.items() if t > now}
                while len(self._locked) >= MAX_LOCKED_ADDRESSES:
                    self._locked.pop(next(iter(self._locked)))
            self._locked[address] = time.monotonic() + wait
            self.on_reject("auth")
            log.warning("too many failed authentications from %s: refused for %.0fs", address, wait)
            return math.ceil(wait)
        return None

    # ------------------------------------------------------------------ responses

    def render_breach(self, exc: RateLimitExceeded) -> Response:
        """Turn flask-limiter's 429 into the OpenAI shape, naming the limit that was hit."""
        scope = exc.limit.scope
        self.on_reject(scope if scope in ("key", "global") else "route")
        where = (
            f"for key '{g.get('key_name', '?')}'"
            if scope == "key"
            else "for the whole gateway"
            if scope == "global"
            else f"for {request.path}"
        )
        current = self.limiter.current_limit
        wait = max(1, math.ceil(current.reset_at - time.time())) if current else 1
        return render_error(
            RateLimited(
                f"Rate limit reached {where}: {exc.limit.limit}. Retry in {wait}s.",
                headers={"Retry-After": str(wait)},
            )
        )


def deferrable(app: Flask, *endpoints: str) -> None:
    """Mark endpoints that reserve budgets: their limit check may wait for the reservation."""
    app.extensions.setdefault(DEFERRABLE, set()).update(endpoints)


def _items(limits: tuple[str, ...]) -> list[RateLimitItem]:
    return [item for text in limits for item in parse_many(text)]


def _drop_scratch_header(response: Response) -> Response:
    response.headers.pop(_SCRATCH_RETRY_AFTER, None)
    return response


def init_app(
    app: Flask,
    config: Config,
    on_reject: Callable[[str], None] | None = None,
    on_redis_error: Callable[[str], None] | None = None,
) -> None:
    """Set up the limiter after auth (its key is the authenticated key's name)."""
    limits = Limits(config, on_reject, on_redis_error)
    app.extensions[EXTENSION] = limits
    if not limits.limiter.enabled:
        return  # nothing is limited: the extension stays out of the request path
    public = app.extensions.setdefault("proxyapi.public_endpoints", set())
    limits.limiter.request_filter(lambda: request.endpoint in public)
    if limits.rides:
        app.before_request(limits.defer)  # before flask-limiter's own hook (init_app below)
        limits.limiter.request_filter(limits.deferred)
    # after_request functions run last-registered first: registered before flask-limiter's
    # own (in init_app below), this one runs after it and drops its scratch header.
    app.after_request(_drop_scratch_header)
    if limits.shared_storage:
        app.before_request(limits_storage.begin_request)
    limits.limiter.init_app(app)
    app.register_error_handler(RateLimitExceeded, limits.render_breach)
    if limits.policy == "fail-closed" and limits.shared_storage:
        # flask-limiter lets the store's own errors out of its before_request hook: this is
        # where they become the 503 that fail-closed promises (and never a 500).
        def unavailable(exc: Exception) -> Response:
            log.warning("rate-limit store unreachable (%s): refusing", exc.__class__.__name__)
            return render_error(LimitStorageUnavailable())

        errors = limits.limiter.storage.base_exceptions
        for error in errors if isinstance(errors, tuple) else (errors,):
            app.register_error_handler(error, unavailable)
