"""Managed keys: what the admin API and the CLI do to them, and what authentication asks.

A request's body is checked field by field (the key's settings as the config file's keys are,
so the same messages), the change is written to the store in one atomic step with its audit
entry, and this process's copy is reloaded at once; the other workers and hosts see it within
``auth.managed.refresh_interval``. The plaintext of a key exists only in the answer to create
and rotate: the store holds its digest (HMAC-SHA256 with ``PROXYAPI_KEY_PEPPER``, else SHA-256)
and a hint of its first characters.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from proxyapi.config.checks import ConfigError
from proxyapi.config.checks import name as check_name
from proxyapi.config.model import Config, KeyConfig
from proxyapi.config.parse import parse_managed_key
from proxyapi.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidRequest,
    PermissionDenied,
    ResourceNotFound,
    ServiceUnavailable,
)
from proxyapi.keys.keyset import KeySet
from proxyapi.keys.records import (
    AuditEntry,
    KeyNameTaken,
    KeyStore,
    KeyStoreError,
    ManagedKey,
    check_audit,
    encode,
    hint_of,
    key_digest,
    new_id,
    new_plaintext,
)
from proxyapi.timefmt import iso_utc, parse_iso

# The auth.keys[] fields a managed key may set (name is given once; the secret is made here).
SETTINGS = ("admin", "models", "limits", "token_limits", "max_concurrent", "max_tokens", "budget")
CREATE_FIELDS = ("name", *SETTINGS, "expires_at", "ttl", "metadata")
UPDATE_FIELDS = (*SETTINGS, "expires_at", "ttl", "metadata")
MAX_METADATA = 16
MAX_METADATA_KEY = 64
MAX_METADATA_VALUE = 256
# A key made to expire further out than this is a mistake in the unit (ms for s).
MAX_LIFETIME = 10 * 365 * 86_400
_TTL_RE = re.compile(r"^(\d{1,9})([smhd])$")
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
CONFIG_PREFIX = "config:"


def iso(at: float | None) -> str | None:
    return None if at is None else iso_utc(at)


def unavailable(exc: Exception) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"The key store cannot be reached right now ({exc.__class__.__name__}); "
        "existing keys keep working, changes are refused until it is back.",
        error_code="key_store_unavailable",
    )


class ManagedKeys:
    """The managed keys of one deployment: their store, and this process's copy."""

    def __init__(
        self,
        config: Config,
        store: KeyStore,
        keyset: KeySet,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.store = store
        self.keyset = keyset
        self.clock = clock
        self.pepper = config.auth.pepper
        self.config_names = frozenset(k.name for k in config.auth.keys)

    # --- authentication -------------------------------------------------------------------

    def authenticate(self, presented: str) -> KeyConfig | None:
        """The managed key ``presented`` is, or None (not one). Raises 401 ``key_revoked`` or
        ``key_expired``, or 503 ``key_store_unavailable`` when this worker's copy of the keys
        cannot be trusted (never read, or older than ``max_stale``)."""
        entry = self.keyset.find(key_digest(presented, self.pepper))
        if not self.keyset.usable:
            raise ServiceUnavailable(
                "The key store cannot be read and this worker's copy of the managed keys is "
                "too old to trust; config keys keep working.",
                error_code="key_store_unavailable",
            )
        if entry is None or entry.record.name in self.config_names:
            return None
        record, now = entry.record, self.clock()
        if entry.previous and (record.previous_until is None or now >= record.previous_until):
            return None  # a rotated secret past its grace is no key at all
        if record.revoked_at is not None:
            raise AuthenticationFailed(
                f"The key '{record.name}' was revoked at {iso(record.revoked_at)}.",
                error_code="key_revoked",
            )
        if record.expires_at is not None and now >= record.expires_at:
            raise AuthenticationFailed(
                f"The key '{record.name}' expired at {iso(record.expires_at)}.",
                error_code="key_expired",
            )
        return entry.config

    # --- reading ----------------------------------------------------------------------------

    def listing(self) -> list[dict[str, Any]]:
        """Every key: the config's (read only) and the managed ones, never a secret."""
        try:
            _, records = self.store.load()
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        shown = [config_view(k) for k in self.config.auth.keys]
        shown += [self.view(r) for r in sorted(records, key=lambda r: (r.created_at, r.id))]
        return shown

    def show(self, key_id: str) -> dict[str, Any]:
        if key_id.startswith(CONFIG_PREFIX):
            for key in self.config.auth.keys:
                if CONFIG_PREFIX + key.name == key_id:
                    return config_view(key)
            raise _not_found(key_id)
        return self.view(self._get(key_id))

    def audit(self, limit: int, before: str | None) -> list[dict[str, Any]]:
        try:
            found = self.store.audit_log(limit, before)
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        except ValueError:
            raise InvalidRequest(
                "before must be a cursor from an earlier page of this audit log.", param="before"
            ) from None
        return [
            {
                "cursor": cursor,
                "at": iso(e.at),
                "actor": e.actor,
                "action": e.action,
                "key_id": e.key_id,
                "key_name": e.key_name,
                "client": e.client,
                "detail": e.detail,
            }
            for cursor, e in found
        ]

    def view(self, record: ManagedKey) -> dict[str, Any]:
        """A managed key as the API shows it."""
        now = self.clock()
        if record.revoked_at is not None:
            status = "revoked"
        elif record.expires_at is not None and now >= record.expires_at:
            status = "expired"
        else:
            status = "active"
        grace = (
            record.previous_until if record.previous_until and record.previous_until > now else None
        )
        return {
            "object": "key",
            "id": record.id,
            "name": record.name,
            "source": "managed",
            "read_only": False,
            "status": status,
            "hint": record.hint,
            **_settings_view(parse_managed_key(record.settings, record.name, record.digest)),
            "metadata": record.metadata,
            "created_at": iso(record.created_at),
            "created_by": record.created_by,
            "updated_at": iso(record.updated_at),
            "expires_at": iso(record.expires_at),
            "revoked_at": iso(record.revoked_at),
            "previous_secret_valid_until": iso(grace),
        }

    # --- changing ---------------------------------------------------------------------------

    def create(self, body: Any, actor: str, client: str) -> tuple[dict[str, Any], str]:
        """Make a key; return its view and its plaintext (shown this once)."""
        body = _mapping(body)
        _only(body, CREATE_FIELDS)
        name = body.get("name")
        try:
            check_name(name)
        except ValueError as exc:
            raise InvalidRequest(f"name {exc}, got {str(name)[:70]!r}.", param="name") from None
        if name in self.config_names:
            raise Conflict(
                f"A key named '{name}' is in the config file; pick another name.",
                param="name",
                error_code="key_name_taken",
            )
        settings = _settings(body, {}, self.config.managed_request_limits)
        now = self.clock()
        plaintext = new_plaintext()
        record = ManagedKey(
            id=new_id(),
            name=name,
            digest=key_digest(plaintext, self.pepper),
            hint=hint_of(plaintext),
            settings=settings,
            metadata=_metadata(body.get("metadata", {})),
            created_at=now,
            updated_at=now,
            created_by=actor,
            expires_at=_expiry(body, now, None),
        )
        detail = {k: body[k] for k in body if k != "name"}
        _storable(record)
        try:
            self.store.create(record, self._audit("create", record, actor, client, detail))
        except KeyNameTaken:
            raise Conflict(
                f"A managed key named '{name}' exists; pick another name.",
                param="name",
                error_code="key_name_taken",
            ) from None
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        self.keyset.refresh(force=True)
        return self.view(record), plaintext

    def update(self, key_id: str, body: Any, actor: str, client: str) -> dict[str, Any]:
        """Change a key's settings, expiry or metadata (null clears one)."""
        body = _mapping(body)
        if "name" in body:
            raise InvalidRequest(
                "A key's name cannot change (its usage and budgets are kept by name); make a "
                "new key instead.",
                param="name",
            )
        _only(body, UPDATE_FIELDS)
        record = self._get(key_id)
        now = self.clock()
        changed = replace(
            record,
            settings=_settings(body, record.settings, self.config.managed_request_limits),
            metadata=_metadata(body["metadata"]) if "metadata" in body else record.metadata,
            expires_at=_expiry(body, now, record.expires_at),
            updated_at=now,
        )
        self._replace(changed, self._audit("update", changed, actor, client, dict(body)))
        return self.view(changed)

    def rotate(self, key_id: str, body: Any, actor: str, client: str) -> tuple[dict[str, Any], str]:
        """Give a key a new secret; the old one works for ``grace`` seconds more."""
        body = _mapping(body)
        _only(body, ("grace",))
        grace = body.get("grace", self.config.auth.managed.rotate_grace)
        if (
            isinstance(grace, bool)
            or not isinstance(grace, int | float)
            or not 0 <= grace <= 30 * 86_400
        ):
            raise InvalidRequest(
                f"grace must be a number of seconds from 0 to 2592000, got {grace!r}.",
                param="grace",
            )
        record = self._get(key_id)
        if record.revoked_at is not None:
            raise Conflict(
                f"The key '{record.name}' is revoked; make a new key instead.",
                error_code="key_revoked",
            )
        now = self.clock()
        plaintext = new_plaintext()
        changed = replace(
            record,
            digest=key_digest(plaintext, self.pepper),
            hint=hint_of(plaintext),
            previous_digest=record.digest if grace > 0 else None,
            previous_until=now + grace if grace > 0 else None,
            updated_at=now,
        )
        self._replace(changed, self._audit("rotate", changed, actor, client, {"grace": grace}))
        return self.view(changed), plaintext

    def revoke(self, key_id: str, actor: str, client: str) -> dict[str, Any]:
        """Stop a key at once (its previous secret too); it stays listed as revoked."""
        record = self._get(key_id)
        if record.revoked_at is not None:
            return self.view(record)
        now = self.clock()
        changed = replace(
            record, revoked_at=now, previous_digest=None, previous_until=None, updated_at=now
        )
        self._replace(changed, self._audit("revoke", changed, actor, client, {}))
        return self.view(changed)

    def delete(self, key_id: str, actor: str, client: str) -> None:
        record = self._get(key_id)
        try:
            found = self.store.delete(key_id, self._audit("delete", record, actor, client, {}))
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        if not found:
            raise _not_found(key_id)
        self.keyset.refresh(force=True)

    # --- helpers ----------------------------------------------------------------------------

    def _get(self, key_id: str) -> ManagedKey:
        if key_id.startswith(CONFIG_PREFIX):
            raise PermissionDenied(
                "Keys from the config file are read only here; change them in the file.",
                error_code="config_key_read_only",
            )
        try:
            record = self.store.get(key_id)
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        if record is None:
            raise _not_found(key_id)
        return record

    def _replace(self, record: ManagedKey, audit: AuditEntry) -> None:
        _storable(record)
        try:
            found = self.store.replace(record, audit)
        except KeyStoreError as exc:
            raise unavailable(exc) from exc
        if not found:
            raise _not_found(record.id)
        self.keyset.refresh(force=True)

    def _audit(
        self, action: str, record: ManagedKey, actor: str, client: str, detail: dict[str, Any]
    ) -> AuditEntry:
        entry = AuditEntry(
            at=self.clock(),
            actor=actor,
            action=action,
            key_id=record.id,
            key_name=record.name,
            client=client,
            detail=detail,
        )
        try:
            check_audit(entry)
        except ValueError:
            # A value the log refuses to keep (one that looks like a secret): the names of
            # the fields changed are kept instead.
            entry = replace(entry, detail={"fields": sorted(detail)})
        return entry


def config_view(key: KeyConfig) -> dict[str, Any]:
    """A config file's key as the API shows it."""
    return {
        "object": "key",
        "id": CONFIG_PREFIX + key.name,
        "name": key.name,
        "source": "config",
        "read_only": True,
        "status": "active",
        **_settings_view(key),
    }


def _settings_view(key: KeyConfig) -> dict[str, Any]:
    return {
        "admin": key.admin,
        "models": list(key.models),
        "limits": None if key.limits is None else list(key.limits),
        "token_limits": list(key.token_limits),
        "max_concurrent": key.max_concurrent,
        "max_tokens": key.max_tokens,
        "budget": [
            {"usd": b.usd, "period": b.period, "warn_at": b.warn_at} for b in key.money_budgets
        ],
    }


def _storable(record: ManagedKey) -> None:
    """400 for a key the store would refuse to keep (its settings too large, say)."""
    try:
        encode(record)
    except ValueError as exc:
        raise InvalidRequest(f"The key cannot be stored: {exc}.") from None


def _not_found(key_id: str) -> ResourceNotFound:
    return ResourceNotFound(f"No key with id '{key_id[:80]}'.", error_code="key_not_found")


def _mapping(body: Any) -> Mapping[str, Any]:
    if body is None:
        return {}
    if not isinstance(body, Mapping):
        raise InvalidRequest("The body must be a JSON object.")
    return body


def _only(body: Mapping[str, Any], allowed: tuple[str, ...]) -> None:
    for field in body:
        if field not in allowed:
            raise InvalidRequest(
                f"Unknown field {str(field)[:40]!r}; allowed: {', '.join(allowed)}.",
                param=str(field)[:40],
            )


def _settings(
    body: Mapping[str, Any], current: Mapping[str, Any], limits_on: bool
) -> dict[str, Any]:
    """The settings after ``body``'s changes (null removes one), each checked as the config
    file's keys are, so a bad one is named."""
    settings = dict(current)
    for field in SETTINGS:
        if field not in body:
            continue
        if body[field] is None:
            settings.pop(field, None)
            continue
        if field == "limits" and body[field] and not limits_on:
            raise InvalidRequest(
                "Request limits on managed keys are off: set auth.managed.request_limits: true "
                "(or rate_limits.per_key) in the config. Token and money budgets and "
                "max_concurrent work without it.",
                param="limits",
            )
        try:
            parse_managed_key({field: body[field]}, "k", "0" * 64)
        except ConfigError as exc:
            raise InvalidRequest(f"{field}: {exc}.", param=field) from None
        settings[field] = body[field]
    return settings


def _metadata(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or len(raw) > MAX_METADATA:
        raise InvalidRequest(
            f"metadata must be an object of at most {MAX_METADATA} string values.", param="metadata"
        )
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not (isinstance(k, str) and 0 < len(k) <= MAX_METADATA_KEY and k.isprintable()):
            raise InvalidRequest(
                f"metadata keys are 1-{MAX_METADATA_KEY} printable characters.", param="metadata"
            )
        if not (isinstance(v, str) and len(v) <= MAX_METADATA_VALUE and v.isprintable()):
            raise InvalidRequest(
                f"metadata values are strings of at most {MAX_METADATA_VALUE} printable "
                f"characters ({k!r} is not).",
                param="metadata",
            )
        out[k] = v
    return out


def _expiry(body: Mapping[str, Any], now: float, current: float | None) -> float | None:
    """``expires_at`` (ISO 8601 or epoch seconds, null: never) or ``ttl`` (seconds, or "30d",
    "12h", "15m"), else ``current``."""
    if "expires_at" in body and "ttl" in body:
        raise InvalidRequest("Send expires_at or ttl, not both.", param="ttl")
    if "ttl" in body:
        ttl = body["ttl"]
        seconds: float | None = None
        if isinstance(ttl, int | float) and not isinstance(ttl, bool) and math.isfinite(ttl):
            seconds = float(ttl)
        elif isinstance(ttl, str) and (m := _TTL_RE.match(ttl.strip())):
            seconds = int(m.group(1)) * _TTL_UNITS[m.group(2)]
        if seconds is None or not 0 < seconds <= MAX_LIFETIME:
            raise InvalidRequest(
                f"ttl must be seconds (or 30d, 12h, 15m) above 0 and at most 10 years, got "
                f"{str(ttl)[:40]!r}.",
                param="ttl",
            )
        return now + seconds
    if "expires_at" not in body:
        return current
    raw = body["expires_at"]
    if raw is None:
        return None
    at: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw):
        at = float(raw)
    elif isinstance(raw, str) and (parsed := parse_iso(raw)) is not None:
        try:
            at = parsed.timestamp()
        except (OverflowError, OSError):
            at = None
    if at is None or not now < at <= now + MAX_LIFETIME:
        raise InvalidRequest(
            "expires_at must be a time in the next 10 years, as ISO 8601 (2027-01-31T00:00:00Z) "
            f"or epoch seconds, got {str(raw)[:40]!r}.",
            param="expires_at",
        )
    return at
