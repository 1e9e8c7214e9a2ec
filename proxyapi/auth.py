"""Client keys: hashing, constant-time lookup, the check on every /v1 route, permissions.

Keys are only ever held as SHA-256 hex digests. A presented key is hashed and compared with
every configured digest using :func:`hmac.compare_digest`, without stopping at the first match,
so the time taken does not depend on which key (if any) matched.

A key's ``models`` allowlist (globs) admits a request when the model name the client sent
matches it, or when every upstream model the name resolves to does (so ``openai/gpt-4o`` is
``gpt-4o``, and an alias is allowed when all of its targets are).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING

from flask import Flask, current_app, g, request

from proxyapi import ratelimit
from proxyapi.config.values import hash_key, is_sha256_hex
from proxyapi.errors import AuthenticationFailed, PermissionDenied, ProxyAPIError

if TYPE_CHECKING:
    from proxyapi.config import AuthConfig, KeyConfig
    from proxyapi.keys.manager import ManagedKeys
    from proxyapi.ratelimit import Limits

EXTENSION = "proxyapi.auth"
# Where the managed keys are kept (proxyapi.keys.setup.EXTENSION; not imported, to keep this
# module free of the stores).
MANAGED_EXTENSION = "proxyapi.keys"
__all__ = [
    "EXTENSION",
    "KeyRing",
    "authenticate",
    "hash_key",
    "identify",
    "init_app",
    "is_sha256_hex",
]

NO_KEYS_MESSAGE = (
    "No API keys are configured, so every request is refused. Set PROXYAPI_KEYS=key1,key2 "
    "in the environment, or add auth.keys to the config file (see docs/configuration.md)."
)


class KeyRing:
    """The configured client keys, looked up in constant time."""

    def __init__(self, auth: AuthConfig) -> None:
        self.header = auth.header
        self._keys: tuple[tuple[bytes, KeyConfig], ...] = tuple(
            (bytes.fromhex(k.sha256), k) for k in auth.keys
        )

    def __bool__(self) -> bool:
        return bool(self._keys)

    def lookup(self, presented: str) -> KeyConfig | None:
        """Return the key config matching ``presented``, or None."""
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        found: KeyConfig | None = None
        for stored, key in self._keys:
            # No early exit: every digest is compared whatever matched before.
            if hmac.compare_digest(stored, digest):
                found = key
        return found


def presented_key(header: str) -> str | None:
    """Return the client key from ``Authorization: Bearer`` or the configured key header."""
    value = request.headers.get("Authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    token = request.headers.get(header, "").strip()
    return token or None


def authenticate() -> None:
    """Check the request's key and remember its name in ``g.key_name``; raise 401 otherwise."""
    if request.routing_exception is not None:
        return  # let the 404/405 through: it tells a curl user their path or verb is wrong
    if request.endpoint in current_app.extensions.get("proxyapi.public_endpoints", ()):
        return
    ring: KeyRing = current_app.extensions[EXTENSION]
    key = identify(presented_key(ring.header))
    g.key = key
    g.key_name = key.name


def identify(token: str | None) -> KeyConfig:
    """Return the key ``token`` is (config or managed); raise 401 otherwise, counting the
    failure against the client's address (429 once it has failed too often)."""
    ring: KeyRing = current_app.extensions[EXTENSION]
    managed: ManagedKeys | None = current_app.extensions.get(MANAGED_EXTENSION)
    if not ring and managed is None:
        raise AuthenticationFailed(NO_KEYS_MESSAGE, error_code="no_keys_configured")
    guard: Limits = current_app.extensions[ratelimit.EXTENSION]
    address = request.remote_addr or "unknown"
    wait = guard.auth_locked(address)
    if wait is not None:
        raise _locked_out(wait)
    if token is None:
        raise AuthenticationFailed(
            f"Missing API key. Send it as 'Authorization: Bearer <key>' or '{ring.header}: <key>'.",
            error_code="missing_api_key",
        )
    key = ring.lookup(token)
    if key is None and managed is not None:
        try:
            key = managed.authenticate(token)
        except AuthenticationFailed:  # revoked or expired: a failure like any other
            _failed(guard, address)
            raise
    if key is None:
        _failed(guard, address)
        if not ring and managed is not None and not managed.keyset.count:
            raise AuthenticationFailed(NO_KEYS_MESSAGE, error_code="no_keys_configured")
        raise AuthenticationFailed("Invalid API key.")
    return key


def _failed(guard: Limits, address: str) -> None:
    """Count a failed authentication from ``address``; 429 once it has failed too often."""
    wait = guard.auth_failed(address)
    if wait is not None:
        raise _locked_out(wait)


def _locked_out(wait: int) -> ProxyAPIError:
    return ratelimit.RateLimited(
        f"Too many requests with an invalid API key from this address; retry in {wait}s.",
        error_code="too_many_failed_authentications",
        headers={"Retry-After": str(wait)},
    )


def may_use(key: KeyConfig, model: str, upstream_models: Iterable[str] = ()) -> bool:
    """Tell whether ``key``'s allowlist admits ``model`` (resolving to ``upstream_models``)."""
    if not key.models:
        return True
    if any(fnmatchcase(model, pattern) for pattern in key.models):
        return True
    resolved = list(upstream_models)
    return bool(resolved) and all(
        any(fnmatchcase(m, pattern) for pattern in key.models) for m in resolved
    )


def check_model(key: KeyConfig, model: str, upstream_models: Iterable[str]) -> None:
    """Raise 403 unless ``key`` may use ``model``."""
    if not may_use(key, model, upstream_models):
        raise PermissionDenied(
            f"The key '{key.name}' may not use the model '{model}'.",
            param="model",
            error_code="model_not_allowed",
        )


def require_admin() -> None:
    """Raise 403 unless the request's key is an admin key."""
    key: KeyConfig | None = g.get("key")
    if key is None or not key.admin:
        raise PermissionDenied(
            "This endpoint needs an admin key (auth.keys[].admin: true).",
            error_code="admin_required",
        )


def init_app(app: Flask, auth: AuthConfig) -> None:
    """Hold the key ring in ``app.extensions`` and check every non-public request."""
    app.extensions[EXTENSION] = KeyRing(auth)
    app.extensions.setdefault("proxyapi.public_endpoints", set())
    app.before_request(authenticate)


def public(app: Flask, *endpoints: str) -> None:
    """Mark endpoints that need no key (health checks)."""
    app.extensions.setdefault("proxyapi.public_endpoints", set()).update(endpoints)
