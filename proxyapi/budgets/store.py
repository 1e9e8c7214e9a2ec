"""Where token budgets and concurrency slots are counted: Redis (shared) or this process.

Each budget (``200000/day``) is a sliding-window counter, two numbers per key and window: the
tokens of the current fixed window and of the one before, the latter weighted by how much of
it still overlaps the sliding window (as limits' ``sliding-window-counter`` does, and for the
same reason: O(1) space, however many tokens). Concurrency is a sorted set of the requests in
flight, each with a lease so a worker that dies cannot hold a slot forever.

:meth:`reserve` checks every budget and the concurrency slot and takes them, all or nothing, in
one step (one Lua script on Redis); :meth:`settle` corrects the budgets by what the request
really used and frees its slot, in one step too. On Redis all of a key's counters share one
hash slot (``{<namespace>:tokens:<key>}``) and every number travels in ARGV, so the scripts
run on a Redis Cluster as they do on one node.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

# reserve() outcomes
RESERVED, OVER_BUDGET, TOO_MANY = 1, -1, 0

_RESERVE = """
local now = tonumber(ARGV[1])
local prompt = tonumber(ARGV[2])
local want = tonumber(ARGV[3])
local flexible = ARGV[4] == '1'
local min_completion = tonumber(ARGV[5])
local max_concurrent = tonumber(ARGV[6])
local ticket = ARGV[7]
local lease = tonumber(ARGV[8])
local conc = KEYS[#KEYS]
if max_concurrent > 0 then
    redis.call('zremrangebyscore', conc, '-inf', now)
    if redis.call('zcard', conc) >= max_concurrent then
        return {0, 0, '0', 0, 0}
    end
end
local rules = (#ARGV - 8) / 2
local room, tight, reset = nil, 0, 0
for i = 1, rules do
    local limit = tonumber(ARGV[7 + 2 * i])
    local period = tonumber(ARGV[8 + 2 * i])
    local cur = tonumber(redis.call('get', KEYS[2 * i - 1]) or '0')
    local prev = tonumber(redis.call('get', KEYS[2 * i]) or '0')
    local elapsed = now % period
    local left = limit - (prev * (period - elapsed) / period + cur)
    if room == nil or left < room then
        room, tight, reset = left, i, period - elapsed
    end
end
local completion = want
if room ~= nil then
    if flexible then
        completion = math.min(want, math.floor(room - prompt))
    end
    if completion < min_completion or prompt + completion > room then
        return {-1, 0, tostring(math.max(0, room)), tight, math.ceil(reset)}
    end
end
local amount = prompt + completion
for i = 1, rules do
    redis.call('incrby', KEYS[2 * i - 1], amount)
    redis.call('expire', KEYS[2 * i - 1], 2 * tonumber(ARGV[8 + 2 * i]))
end
if max_concurrent > 0 then
    redis.call('zadd', conc, now + lease, ticket)
    redis.call('expire', conc, math.ceil(lease))
end
return {1, completion, tostring(room == nil and -1 or room - amount), tight, math.ceil(reset)}
"""

_SETTLE = """
local delta = tonumber(ARGV[1])
for i = 1, #KEYS - 1 do
    if delta ~= 0 then
        if redis.call('incrby', KEYS[i], delta) < 0 then
            redis.call('set', KEYS[i], 0)
        end
        redis.call('expire', KEYS[i], 2 * tonumber(ARGV[2 + i]))
    end
end
redis.call('zrem', KEYS[#KEYS], ARGV[2])
return 1
"""


@dataclass(frozen=True)
class Rule:
    """One budget: ``amount`` tokens per ``seconds``."""

    amount: int
    seconds: int
    text: str


@dataclass(frozen=True)
class Outcome:
    """What :meth:`BudgetStore.reserve` decided."""

    status: int  # RESERVED, OVER_BUDGET or TOO_MANY
    completion: int = 0  # completion tokens reserved (may be less than asked, if flexible)
    remaining: float = -1  # tokens left in the tightest budget (-1: no budget)
    rule: int = 0  # 1-based index of the tightest budget, 0 if none
    reset: int = 0  # seconds until the tightest budget's window moves on
    windows: tuple[int, ...] = ()  # the window of each budget the tokens were counted in


@dataclass(frozen=True)
class Ask:
    """What a request asks to reserve."""

    prompt: int  # estimated prompt tokens
    completion: int  # completion tokens it may produce
    flexible: bool  # the gateway sets the completion cap: it may be lowered to what is left
    min_completion: int  # below this, a flexible request is refused rather than starved
    max_concurrent: int  # 0: no limit
    ticket: str
    lease: float


class BudgetStore(Protocol):
    """Counts a key's budgets and concurrency."""

    def reserve(self, key: str, rules: Sequence[Rule], ask: Ask, now: float) -> Outcome: ...

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int,
        ticket: str,
        concurrent: bool,
    ) -> None: ...


def _windows(rules: Sequence[Rule], now: float) -> tuple[int, ...]:
    return tuple(int(now // r.seconds) for r in rules)


class RedisBudgetStore:
    """Budgets in Redis, one Lua script per reserve and per settle."""

    def __init__(self, client: Any, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        # redis-py's Script sends EVALSHA and loads the script again on NOSCRIPT.
        self._reserve = client.register_script(_RESERVE)
        self._settle = client.register_script(_SETTLE)

    def _base(self, key: str) -> str:
        return f"{{{self.namespace}:tokens:{key}}}"

    def reserve(self, key: str, rules: Sequence[Rule], ask: Ask, now: float) -> Outcome:
        base = self._base(key)
        windows = _windows(rules, now)
        keys = []
        argv: list[Any] = [
            repr(now),
            ask.prompt,
            ask.completion,
            1 if ask.flexible else 0,
            ask.min_completion,
            ask.max_concurrent,
            ask.ticket,
            repr(ask.lease),
        ]
        for rule, window in zip(rules, windows, strict=True):
            keys += [f"{base}:{rule.seconds}:{window}", f"{base}:{rule.seconds}:{window - 1}"]
            argv += [rule.amount, rule.seconds]
        keys.append(f"{base}:conc")
        status, completion, remaining, tight, reset = self._reserve(keys=keys, args=argv)
        return Outcome(
            int(status), int(completion), float(remaining), int(tight), int(reset), windows
        )

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int,
        ticket: str,
        concurrent: bool,
    ) -> None:
        base = self._base(key)
        keys = [f"{base}:{r.seconds}:{w}" for r, w in zip(rules, windows, strict=True)]
        keys.append(f"{base}:conc")
        self._settle(keys=keys, args=[delta, ticket, *(r.seconds for r in rules)])


class MemoryBudgetStore:
    """The same counters in this process (embedded mode: exact with one worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (key, budget seconds) -> {window: tokens}; only the current and previous window stay
        self._counts: dict[tuple[str, int], dict[int, int]] = {}
        self._slots: dict[str, dict[str, float]] = {}

    def reserve(self, key: str, rules: Sequence[Rule], ask: Ask, now: float) -> Outcome:
        windows = _windows(rules, now)
        with self._lock:
            if ask.max_concurrent > 0:
                slots = self._slots.setdefault(key, {})
                for ticket in [t for t, until in slots.items() if until <= now]:
                    del slots[ticket]
                if len(slots) >= ask.max_concurrent:
                    return Outcome(TOO_MANY)
            room: float | None = None
            tight = reset = 0
            for i, (rule, window) in enumerate(zip(rules, windows, strict=True), start=1):
                counts = self._counts.setdefault((key, rule.seconds), {})
                for old in [w for w in counts if w < window - 1]:
                    del counts[old]  # never read again
                cur, prev = counts.get(window, 0), counts.get(window - 1, 0)
                elapsed = now % rule.seconds
                left = rule.amount - (prev * (rule.seconds - elapsed) / rule.seconds + cur)
                if room is None or left < room:
                    room, tight, reset = left, i, math.ceil(rule.seconds - elapsed)
            completion = ask.completion
            if room is not None:
                if ask.flexible:
                    completion = min(ask.completion, math.floor(room - ask.prompt))
                if completion < ask.min_completion or ask.prompt + completion > room:
                    return Outcome(OVER_BUDGET, 0, max(0.0, room), tight, reset, windows)
            amount = ask.prompt + completion
            for rule, window in zip(rules, windows, strict=True):
                counts = self._counts[(key, rule.seconds)]
                counts[window] = counts.get(window, 0) + amount
            if ask.max_concurrent > 0:
                self._slots[key][ask.ticket] = now + ask.lease
            left_after = -1.0 if room is None else room - amount
            return Outcome(RESERVED, completion, left_after, tight, reset, windows)

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int,
        ticket: str,
        concurrent: bool,
    ) -> None:
        with self._lock:
            for rule, window in zip(rules, windows, strict=True):
                counts = self._counts.setdefault((key, rule.seconds), {})
                if window in counts:  # else it has moved out of every window already
                    counts[window] = max(0, counts[window] + delta)
            if concurrent:
                self._slots.get(key, {}).pop(ticket, None)
