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

A :class:`Rider` lets one more script go along with a request's first hit, in the same call:
a token budget's reservation (:mod:`proxyapi.budgets`) runs in Redis right after the limit's
entry is acquired, and only then, so a request costs one round trip for its limit and its
budget instead of two (limits has no way to run anything with a hit; see :func:`ride`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
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

# The acquire above and a rider's script, as one: the rider runs only when the entry was
# acquired, with its own KEYS and ARGV (after the hit's one key and four arguments), and its
# answer comes back as the fourth element. Redis runs scripts atomically, so nothing comes
# between the two.
_WITH_RIDER = """
local function acquire(KEYS, ARGV)
%s
end
local function rider(KEYS, ARGV)
%s
end
local hit_keys, hit_args, rider_keys, rider_args = {KEYS[1]}, {}, {}, {}
for i = 1, 4 do hit_args[i] = ARGV[i] end
for i = 2, #KEYS do rider_keys[#rider_keys + 1] = KEYS[i] end
for i = 5, #ARGV do rider_args[#rider_args + 1] = ARGV[i] end
local out = acquire(hit_keys, hit_args)
if out[1] == 1 then
    out[4] = rider(rider_keys, rider_args)
end
return out
"""

_recent = threading.local()


@dataclass
class Rider:
    """A script to run in Redis with the request's first limit hit, if that hit acquires.

    ``answer`` is the script's answer once it ran (None while it has not, or when the hit was
    refused, or when no hit went to Redis: the limits were in memory, or there were none).
    """

    script: str
    keys: list[str]
    args: list[Any]
    answer: Any = None
    taken: bool = field(default=False, repr=False)


@contextmanager
def ride(rider: Rider) -> Iterator[Rider]:
    """Let ``rider`` go with the next limit hit made on this thread inside the block."""
    _recent.rider = rider
    try:
        yield rider
    finally:
        _recent.rider = None


def begin_request() -> None:
    """Forget the windows reported to this thread by an earlier request."""
    _recent.windows = {}
    _recent.rider = None


class _Reporting:
    """The hit that also reports the window, for any of limits' Redis storages."""

    prefixed_key: Any
    get_connection: Any
    rides: bool

    def initialize_storage(self, _uri: str) -> None:
        super().initialize_storage(_uri)  # type: ignore[misc]
        # redis-py's Script runs EVALSHA and, on NOSCRIPT (a restarted or failed-over
        # server), loads the script again: no other fallback is needed.
        self.lua_acquire_and_report = self.get_connection().register_script(
            _ACQUIRE_AND_REPORT.encode()
        )
        self._with_rider: dict[str, Any] = {}

    def acquire_entry(self, key: str, limit: int, expiry: int, amount: int = 1) -> bool:
        full_key = self.prefixed_key(key)
        args = [time.time(), limit, expiry, amount]
        rider: Rider | None = _recent.__dict__.get("rider")
        if rider is not None and not rider.taken and self.rides:
            rider.taken = True
            script = self._with_rider.get(rider.script)
            if script is None:
                script = self.get_connection().register_script(
                    (_WITH_RIDER % (_ACQUIRE_AND_REPORT, rider.script)).encode()
                )
                self._with_rider[rider.script] = script
            acquired, oldest, count, *answer = script([full_key, *rider.keys], [*args, *rider.args])
            if acquired:
                rider.answer = answer[0]
        else:
            acquired, oldest, count = self.lua_acquire_and_report([full_key], args)
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

    rides = True

    STORAGE_SCHEME = [SCHEME_PREFIX + s for s in ("redis", "rediss", "redis+unix")]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)


class ReportingSentinelStorage(_Reporting, RedisSentinelStorage):
    """``RedisSentinelStorage`` for ``proxyapi+redis+sentinel://`` URIs."""

    rides = True

    STORAGE_SCHEME = [SCHEME_PREFIX + "redis+sentinel"]

    def __init__(self, uri: str, **options: Any) -> None:
        super().__init__(uri.removeprefix(SCHEME_PREFIX), **options)


class ReportingClusterStorage(_Reporting, RedisClusterStorage):
    """``RedisClusterStorage`` for ``proxyapi+redis+cluster://`` URIs."""

    # A limit's key and a budget's are in different hash slots: one script cannot hold both.
    rides = False

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
