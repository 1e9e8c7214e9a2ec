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
local want = tonumber(ARGV[2])
local flexible = ARGV[3] == '1'
local min_completion = tonumber(ARGV[4])
local max_concurrent = tonumber(ARGV[5])
local ticket = ARGV[6]
local lease = tonumber(ARGV[7])
local conc = KEYS[#KEYS]
if max_concurrent > 0 then
    redis.call('zremrangebyscore', conc, '-inf', now)
    if redis.call('zcard', conc) >= max_concurrent then
        return {0, 0, '0', 0, 0}
    end
end
local rules = (#ARGV - 7) / 4
local allows, tight, reset, lefts = nil, 0, 0, {}
for i = 1, rules do
    local limit = tonumber(ARGV[4 + 4 * i])
    local period = tonumber(ARGV[5 + 4 * i])
    local base = tonumber(ARGV[6 + 4 * i])
    local rate = tonumber(ARGV[7 + 4 * i])
    local cur = tonumber(redis.call('get', KEYS[2 * i - 1]) or '0')
    local prev = tonumber(redis.call('get', KEYS[2 * i]) or '0')
    local elapsed = now % period
    local left = limit - (prev * (period - elapsed) / period + cur)
    lefts[i] = left
    local fits = want
    if rate > 0 then
        fits = math.floor((left - base) / rate)
    elseif base > left then
        fits = -1
    end
    if allows == nil or fits < allows then
        allows, tight, reset = fits, i, period - elapsed
    end
end
local completion = want
if allows ~= nil then
    if flexible then
        completion = math.min(want, allows)
    end
    if completion < min_completion or completion > allows then
        return {-1, 0, tostring(math.max(0, lefts[tight])), tight, math.ceil(reset)}
    end
end
local out = {1, completion, '-1', tight, math.ceil(reset)}
for i = 1, rules do
    local amount = tonumber(ARGV[6 + 4 * i]) + completion * tonumber(ARGV[7 + 4 * i])
    -- As a string of digits: Redis 7.2.0-7.2.4 pass a Lua number such as 1e8 on as '1e+08',
    -- which INCRBY refuses (redis/redis#13113).
    redis.call('incrby', KEYS[2 * i - 1], string.format('%d', amount))
    redis.call('expire', KEYS[2 * i - 1], 2 * tonumber(ARGV[5 + 4 * i]))
    out[5 + i] = tostring(lefts[i] - amount)
end
if allows ~= nil then
    out[3] = out[5 + tight]
end
if max_concurrent > 0 then
    redis.call('zadd', conc, now + lease, ticket)
    redis.call('expire', conc, math.ceil(lease))
end
return out
"""

_SETTLE = """
for i = 1, #KEYS - 1 do
    local delta = tonumber(ARGV[2 * i])
    if delta ~= 0 then
        if redis.call('incrby', KEYS[i], ARGV[2 * i]) < 0 then
            redis.call('set', KEYS[i], 0)
        end
        redis.call('expire', KEYS[i], 2 * tonumber(ARGV[2 * i + 1]))
    end
end
redis.call('zrem', KEYS[#KEYS], ARGV[1])
return 1
"""


TOKENS, NANO_USD = "tokens", "nano_usd"


@dataclass(frozen=True)
class Rule:
    """One budget: ``amount`` of ``unit`` per ``seconds`` (tokens, or money in nano-USD)."""

    amount: int
    seconds: int
    text: str
    unit: str = TOKENS


@dataclass(frozen=True)
class Outcome:
    """What :meth:`BudgetStore.reserve` decided."""

    status: int  # RESERVED, OVER_BUDGET or TOO_MANY
    completion: int = 0  # completion tokens reserved (may be less than asked, if flexible)
    remaining: float = -1  # what is left in the tightest budget, in its unit (-1: no budget)
    rule: int = 0  # 1-based index of the tightest budget, 0 if none
    reset: int = 0  # seconds until the tightest budget's window moves on
    windows: tuple[int, ...] = ()  # the window of each budget the tokens were counted in
    lefts: tuple[float, ...] = ()  # what each budget has left after the reservation


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
    # Per budget, what the request costs in its unit: a fixed part (the prompt) and a rate
    # per completion token. Empty: every budget counts tokens, (prompt, 1).
    costs: tuple[tuple[int, int], ...] = ()

    def cost(self, index: int) -> tuple[int, int]:
        """Budget ``index``'s (fixed part, rate per completion token)."""
        return self.costs[index] if self.costs else (self.prompt, 1)


class BudgetStore(Protocol):
    """Counts a key's budgets and concurrency."""

    def reserve(self, key: str, rules: Sequence[Rule], ask: Ask, now: float) -> Outcome: ...

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int | Sequence[int],
        ticket: str,
        concurrent: bool,
    ) -> None: ...

    def used(self, key: str, rules: Sequence[Rule], now: float) -> tuple[float, ...]: ...


def _windows(rules: Sequence[Rule], now: float) -> tuple[int, ...]:
    return tuple(int(now // r.seconds) for r in rules)


def _deltas(rules: Sequence[Rule], delta: int | Sequence[int]) -> tuple[int, ...]:
    """One correction per budget (a single number: the same for every one)."""
    if isinstance(delta, int):
        return (delta,) * len(rules)
    return tuple(delta)


def _sliding(rule: Rule, cur: int, prev: int, now: float) -> float:
    """A sliding window's count: the current window and the overlapping part of the last."""
    elapsed = now % rule.seconds
    return prev * (rule.seconds - elapsed) / rule.seconds + cur


def _counter(base: str, rule: Rule, window: int) -> str:
    # Money counters are named apart; token counters keep their name (no reset on upgrade).
    unit = "" if rule.unit == TOKENS else f"{rule.unit}:"
    return f"{base}:{unit}{rule.seconds}:{window}"


RESERVE_SCRIPT = _RESERVE


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
        keys, argv, windows = self.reserve_call(key, rules, ask, now)
        return self.outcome(self._reserve(keys=keys, args=argv), windows)

    def reserve_call(
        self, key: str, rules: Sequence[Rule], ask: Ask, now: float
    ) -> tuple[list[str], list[Any], tuple[int, ...]]:
        """The reserve script's KEYS and ARGV, and the windows it counts in (no I/O)."""
        base = self._base(key)
        windows = _windows(rules, now)
        keys = []
        argv: list[Any] = [
            repr(now),
            ask.completion,
            1 if ask.flexible else 0,
            ask.min_completion,
            ask.max_concurrent,
            ask.ticket,
            repr(ask.lease),
        ]
        for i, (rule, window) in enumerate(zip(rules, windows, strict=True)):
            keys += [_counter(base, rule, window), _counter(base, rule, window - 1)]
            argv += [rule.amount, rule.seconds, *ask.cost(i)]
        keys.append(f"{base}:conc")
        return keys, argv, windows

    @staticmethod
    def outcome(answer: Sequence[Any], windows: tuple[int, ...]) -> Outcome:
        """The reserve script's answer as an :class:`Outcome`."""
        status, completion, remaining, tight, reset, *lefts = answer
        return Outcome(
            int(status),
            int(completion),
            float(remaining),
            int(tight),
            int(reset),
            windows,
            tuple(float(x) for x in lefts),
        )

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int | Sequence[int],
        ticket: str,
        concurrent: bool,
    ) -> None:
        base = self._base(key)
        keys = [_counter(base, r, w) for r, w in zip(rules, windows, strict=True)]
        keys.append(f"{base}:conc")
        args: list[Any] = [ticket]
        for rule, change in zip(rules, _deltas(rules, delta), strict=True):
            args += [change, rule.seconds]
        self._settle(keys=keys, args=args)

    def used(self, key: str, rules: Sequence[Rule], now: float) -> tuple[float, ...]:
        """What each budget has counted in its sliding window now (one MGET; for reports)."""
        base, windows = self._base(key), _windows(rules, now)
        names = [
            name
            for rule, window in zip(rules, windows, strict=True)
            for name in (_counter(base, rule, window), _counter(base, rule, window - 1))
        ]
        values = self.client.mget(names) if names else []
        counts = [int(v) if v else 0 for v in values]
        return tuple(
            _sliding(rule, counts[2 * i], counts[2 * i + 1], now) for i, rule in enumerate(rules)
        )


class MemoryBudgetStore:
    """The same counters in this process (embedded mode: exact with one worker)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (key, unit, budget seconds) -> {window: amount}; the current and previous window stay
        self._counts: dict[tuple[str, str, int], dict[int, int]] = {}
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
            allows: int | None = None
            tight = reset = 0
            lefts: list[float] = []
            for i, (rule, window) in enumerate(zip(rules, windows, strict=True)):
                counts = self._counts.setdefault((key, rule.unit, rule.seconds), {})
                for old in [w for w in counts if w < window - 1]:
                    del counts[old]  # never read again
                cur, prev = counts.get(window, 0), counts.get(window - 1, 0)
                elapsed = now % rule.seconds
                left = rule.amount - _sliding(rule, cur, prev, now)
                lefts.append(left)
                base, rate = ask.cost(i)
                if rate > 0:
                    fits = math.floor((left - base) / rate)
                else:
                    fits = ask.completion if base <= left else -1
                if allows is None or fits < allows:
                    allows, tight, reset = fits, i + 1, math.ceil(rule.seconds - elapsed)
            completion = ask.completion
            if allows is not None:
                if ask.flexible:
                    completion = min(ask.completion, allows)
                if completion < ask.min_completion or completion > allows:
                    room = max(0.0, lefts[tight - 1])
                    return Outcome(OVER_BUDGET, 0, room, tight, reset, windows)
            after = []
            for i, (rule, window) in enumerate(zip(rules, windows, strict=True)):
                base, rate = ask.cost(i)
                amount = base + completion * rate
                counts = self._counts[(key, rule.unit, rule.seconds)]
                counts[window] = counts.get(window, 0) + amount
                after.append(lefts[i] - amount)
            if ask.max_concurrent > 0:
                self._slots[key][ask.ticket] = now + ask.lease
            remaining = after[tight - 1] if after else -1.0
            return Outcome(RESERVED, completion, remaining, tight, reset, windows, tuple(after))

    def settle(
        self,
        key: str,
        rules: Sequence[Rule],
        windows: Sequence[int],
        delta: int | Sequence[int],
        ticket: str,
        concurrent: bool,
    ) -> None:
        with self._lock:
            changes = _deltas(rules, delta)
            for rule, window, change in zip(rules, windows, changes, strict=True):
                counts = self._counts.setdefault((key, rule.unit, rule.seconds), {})
                if window in counts:  # else it has moved out of every window already
                    counts[window] = max(0, counts[window] + change)
            if concurrent:
                self._slots.get(key, {}).pop(ticket, None)

    def used(self, key: str, rules: Sequence[Rule], now: float) -> tuple[float, ...]:
        """What each budget has counted in its sliding window now (for reports)."""
        windows = _windows(rules, now)
        with self._lock:
            out = []
            for rule, window in zip(rules, windows, strict=True):
                counts = self._counts.get((key, rule.unit, rule.seconds), {})
                cur, prev = counts.get(window, 0), counts.get(window - 1, 0)
                out.append(_sliding(rule, cur, prev, now))
            return tuple(out)
