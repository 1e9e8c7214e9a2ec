"""Status-page sessions: a signed cookie that names an admin key and holds none of it.

The cookie is ``v1.<key name, base64url>.<expiry, Unix seconds>.<HMAC-SHA256, hex>``. The MAC's
secret is derived from the key's stored digest (and the key pepper, when set) and the
deployment's namespace, so every worker on every host can check a cookie without shared state,
and a cookie stops working as soon as its key is removed, rotated (a new digest), revoked,
expired or no longer admin. Neither the key nor its digest can be read back from a cookie.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Callable

from proxyapi.config import Config, KeyConfig
from proxyapi.keys.manager import ManagedKeys

COOKIE = "proxyapi_status"
VERSION = "v1"
# What the MAC's secret is derived for: no other use of a digest yields the same secret.
_PURPOSE = b"proxyapi status session v1:"
_NO_PEPPER = b"proxyapi-status-session"

KeyFinder = Callable[[str], KeyConfig | None]


def key_finder(config: Config, managed: ManagedKeys | None) -> KeyFinder:
    """Find a usable admin key by name: the config's, else a managed one still in force."""
    by_name = {k.name: k for k in config.auth.keys}

    def find(name: str) -> KeyConfig | None:
        key = by_name.get(name)
        if key is None and managed is not None:
            entry = managed.keyset.by_name(name)
            if entry is not None:
                record = entry.record
                now = time.time()
                revoked = record.revoked_at is not None
                expired = record.expires_at is not None and now >= record.expires_at
                key = None if revoked or expired else entry.config
        return key if key is not None and key.admin else None

    return find


class Sessions:
    """Makes and checks session cookies for one deployment."""

    def __init__(
        self,
        namespace: str,
        pepper: bytes | None,
        ttl: int,
        find: KeyFinder,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.namespace = namespace.encode()
        self.pepper = pepper or _NO_PEPPER
        self.ttl = ttl
        self.find = find
        self.clock = clock

    def _mac(self, key: KeyConfig, payload: str) -> str:
        secret = hmac.new(
            self.pepper, _PURPOSE + self.namespace + b":" + key.sha256.encode(), hashlib.sha256
        ).digest()
        return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()

    def issue(self, key: KeyConfig) -> str:
        """A cookie value for ``key`` that lasts ``ttl`` seconds."""
        name = base64.urlsafe_b64encode(key.name.encode()).decode().rstrip("=")
        payload = f"{VERSION}.{name}.{int(self.clock()) + self.ttl}"
        return f"{payload}.{self._mac(key, payload)}"

    def check(self, value: str | None) -> KeyConfig | None:
        """The admin key a cookie stands for, or None (absent, malformed, forged, expired, or
        its key gone, changed or no longer admin)."""
        if not value or len(value) > 1024:
            return None
        parts = value.split(".")
        if len(parts) != 4 or parts[0] != VERSION or not parts[2].isdigit():
            return None
        _, name_b64, expiry, mac = parts
        if int(expiry) <= self.clock():
            return None
        try:
            name = base64.urlsafe_b64decode(name_b64 + "=" * (-len(name_b64) % 4)).decode()
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        key = self.find(name)
        if key is None:
            return None
        expected = self._mac(key, f"{VERSION}.{name_b64}.{expiry}")
        return key if hmac.compare_digest(expected, mac) else None
