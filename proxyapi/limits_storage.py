"""A limits Redis storage whose moving-window hit also reports the window it left behind.

flask-limiter hits each limit before the view and, after it, asks the storage again for the
window of one of them to fill ``X-RateLimit-Remaining``/``-Reset``: a second Redis round trip
per request for a number the first one could have returned. limits has no such option, so this
storage does it (an extension point limits documents: a ``Storage`` subclass registered under
its own URI scheme). Its hit runs one Lua script that acquires the entry (as limits'
``acquire_moving_window.lua``) and then finds the window (as its ``moving_window.lua``); the
window is kept for the thread that made the hit, until the next request starts on it
(:func:`begin_request`), and handed out once, to the header lookup that follows. Every other
call is limits' own.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from limits.storage import RedisClusterStorage, RedisSentinelStorage, RedisStorage

SCHEME_PREFIX = "proxyapi+"

_ACQUIRE_AND_REPORT = """
local timestamp = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local expiry = tonumber(ARGV[3])
local amount = tonumber(ARGV[4])
local acquired = 0

if amount <= limit then
    local entry = redis.call('lindex', KEYS[1], limit - amount)
    if not (entry and tonumber(entry) >= timestamp - expiry) then
        local entries = {}
        for i = 1, amount do
            entries[i] = timestamp
        end
        for i = 1, #entries, 5000 do
            redis.call('lpush', KEYS[1], unpack(entries, i, math.min(i + 4999, #entries)))
        end
        redis.call('ltrim', KEYS[1], 0, limit - 1)
        redis.call('expire', KEYS[1], expiry)
        acquired = 1
    end
end

local target = timestamp - expiry
local low, high, index = 0, tonumber(redis.call('llen', KEYS[1])) - 1, nil
while low <= high do
    local mid = math.floor((low + high) / 2)
    local value = tonumber(redis.call('lindex', KEYS[1], mid))
    if value and value >= target then
        index = mid
        low = mid + 1
    else
        high = mid - 1
    end
end

if index then
    return {acquired, tostring(redis.call('lindex', KEYS[1], index)), index + 1}
end
return {acquired, tostring(timestamp), 0}
"""

_recent = threading.local()


def begin_request() -> None:
    """Forget the windows reported to this thread by an earlier request."""
    _recent.windows = {}


class _Reporting:
    """The hit that also reports the window, for any of limits' Redis storages."""

    prefixed_key: Any
    get_connection: Any

    def initialize_storage(self, _uri: str) -> None:
        super().initialize_storage(_uri)  # type: ignore[misc]
        # redis-py's Script runs EVALSHA and, on NOSCRIPT (a restarted or failed-over
        # server), loads the script again: no other fallback is needed.
        self.lua_acquire_and_report = self.get_connection().register_script(
            _ACQUIRE_AND_REPORT.encode()
        )

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        full_key = self.prefixed_key(key)
        acquired, oldest, count = self.lua_acquire_and_report(
            [full_key], [time.time(), limit, expiry, amount]
        )
        _recent.__dict__.setdefault("windows", {})[full_key] = (float(oldest), int(count))
        return bool(acquired)

    def get_moving_window(self, key: str, limit: int, expiry: int) -> tuple[float, int]:
        reported: tuple[float, int] | None = _recent.__dict__.get("windows", {}).pop(
            self.prefixed_key(key), None
        )
        if reported is not None:
            return reported
        return super().get_moving_window(key, limit, expiry)  # type: ignore[misc, no-any-return]


class ReportingRedisStorage(_Reporting, RedisStorage):
    """``RedisStorage`` for ``proxyapi+redis://`` (and ``rediss``, ``redis+unix``) URIs."""

    STORAGE_SCHEME = [SCHEME_PREFIX + s for s in ("redis", "rediss", "redis+unix")]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)


class ReportingSentinelStorage(_Reporting, RedisSentinelStorage):
    """``RedisSentinelStorage`` for ``proxyapi+redis+sentinel://`` URIs."""

    STORAGE_SCHEME = [SCHEME_PREFIX + "redis+sentinel"]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)


class ReportingClusterStorage(_Reporting, RedisClusterStorage):
    """``RedisClusterStorage`` for ``proxyapi+redis+cluster://`` URIs."""

    STORAGE_SCHEME = [SCHEME_PREFIX + "redis+cluster"]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)


REPORTING_SCHEMES = ("redis", "rediss", "redis+unix", "redis+sentinel", "redis+cluster")


def reporting_uri(uri: str, strategy: str) -> str:
    """Use the reporting storage for a Redis URI under the moving-window strategy."""
    scheme = uri.split("://", 1)[0]
    if strategy == "moving-window" and scheme in REPORTING_SCHEMES:
        return SCHEME_PREFIX + uri
    return uri
