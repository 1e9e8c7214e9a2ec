"""Token budgets and concurrent requests per key: reserve before the upstream call, settle
after it (DESIGN.md section 6).

Before a request goes upstream, an estimate of the most it can cost is reserved against each of
the key's ``token_limits``, and a slot against its ``max_concurrent``, atomically and all at
once (:meth:`Budgets.reserve`); a request that does not fit is refused with 429 before any
upstream call. The estimate is the prompt (:func:`estimate_prompt`: the JSON of its input at
three bytes a token, a conservative count for most text) plus the completion it may produce:
the client's ``max_completion_tokens``/``max_tokens`` (a Responses request's
``max_output_tokens``) times ``n``, or, when it sends none, the
key's ``max_tokens`` ceiling, which the gateway then sends upstream itself (lowered to what the
budget has left). When the request ends (:meth:`Ticket.settle`, once, when its response
closes) the reservation is corrected to what the provider reported, or, with no usage (the
client left mid-stream, the provider sent none), to an estimate from what was relayed, never
zero; the slot is freed.

So the tokens served never exceed a budget by more than what in-flight requests used beyond
their reservations: a prompt larger than its estimate, or a provider that ignored the cap.

Money budgets (``budget: {usd: 50, period: month}``) are counted by the same store, in
nano-USD, in the same reservation (:mod:`proxyapi.budgets.money`).
"""

from __future__ import annotations

import functools
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from flask import Flask
from limits import parse_many

from proxyapi.budgets.money import (
    BUDGET_HEADERS,
    Claim,
    Quote,
    Warnings,
    money_rules,
    nano,
    usd,
)
from proxyapi.budgets.store import (
    NANO_USD,
    OVER_BUDGET,
    RESERVE_SCRIPT,
    RESERVED,
    TOKENS,
    TOO_MANY,
    Ask,
    BudgetStore,
    MemoryBudgetStore,
    Outcome,
    RedisBudgetStore,
    Rule,
)
from proxyapi.errors import ProxyAPIError
from proxyapi.jsonio import encode_json
from proxyapi.limits_storage import Rider
from proxyapi.providers.base import ClientBody, Operation, Usage

if TYPE_CHECKING:
    from proxyapi.config import Config, KeyConfig
    from proxyapi.pricing import Pricer
    from proxyapi.routing import Target

EXTENSION = "proxyapi.budgets"
log = logging.getLogger(__name__)

# Headers that tell a client its token budget, named after OpenAI's own.
TOKEN_HEADERS = (
    "X-RateLimit-Limit-Tokens",
    "X-RateLimit-Remaining-Tokens",
    "X-RateLimit-Reset-Tokens",
)
# Bytes of a request's input JSON per estimated prompt token. Tokenizers average about four
# characters a token in English and fewer in code or other scripts; three errs on the high
# side, and the settle refunds the difference.
BYTES_PER_TOKEN = 3
# An inline image or file (a data: URL) counts this many tokens, not its base64 length.
DATA_URL_TOKENS = 1500
# A flexible request is refused rather than given a smaller completion cap than this.
MIN_COMPLETION = 16
# When the client sends no max_tokens to the legacy completions endpoint, OpenAI stops at 16.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16
# The text a stream or an answer carried (content, tool arguments, legacy text, refusals).
# A Responses stream's text comes in "delta" strings (chat and Messages deltas are objects).
_TEXT = re.compile(rb'"(?:content|text|arguments|refusal|delta)":\s*"((?:[^"\\]|\\.)*)"')


class BudgetExceeded(ProxyAPIError):
    code = 429
    type = "rate_limit_error"
    error_code = "token_budget_exceeded"
    description = "Token budget reached."


class BudgetStorageUnavailable(ProxyAPIError):
    code = 503
    type = "service_unavailable"
    error_code = "rate_limit_storage_unavailable"
    description = "The budget store is unreachable and the gateway is set to fail closed."


@dataclass(frozen=True)
class KeyBudget:
    """A key's budgets (tokens, then money), concurrency limit and completion ceiling."""

    rules: tuple[Rule, ...]
    max_concurrent: int
    max_tokens: int
    # warn_at of each money budget, by its index in rules
    warn_at: dict[int, float]

    @property
    def spends_money(self) -> bool:
        return bool(self.warn_at)


def estimate_prompt(op: Operation, body: Mapping[str, Any]) -> int:
    """Tokens a request's input may take (an overestimate for most text; see module doc)."""
    field = {
        Operation.CHAT: "messages",
        Operation.MESSAGES: "messages",
        Operation.COUNT_TOKENS: "messages",
        Operation.COMPLETIONS: "prompt",
    }.get(op, "input")
    value = body.get(field)
    if op in (Operation.MESSAGES, Operation.COUNT_TOKENS) and body.get("system"):
        value = [body["system"], value]
    if op is Operation.RESPONSES and body.get("instructions"):
        value = [body["instructions"], value]
    data_urls = 0

    def shrink(item: Any) -> Any:
        nonlocal data_urls
        if isinstance(item, str) and item.startswith("data:"):
            data_urls += 1
            return ""
        if isinstance(item, dict):
            return {k: shrink(v) for k, v in item.items()}
        if isinstance(item, list):
            return [shrink(v) for v in item]
        return item

    text = len(encode_json(shrink(value)))
    if op is not Operation.EMBEDDINGS and body.get("tools"):
        text += len(encode_json(body["tools"]))
    return math.ceil(text / BYTES_PER_TOKEN) + data_urls * DATA_URL_TOKENS


def text_tokens(data: bytes) -> int:
    """Estimate the tokens of the text in answer or stream bytes (when no usage came)."""
    chars = sum(len(m.group(1)) for m in _TEXT.finditer(data))
    return math.ceil(chars / 4)


class Ticket:
    """One request's reservation; settled exactly once, when the request ends."""

    def __init__(
        self,
        budgets: Budgets,
        key: str,
        plan: KeyBudget,
        ask: Ask,
        outcome: Outcome | None,
        store: BudgetStore | None,
    ) -> None:
        self._budgets = budgets
        self.key = key
        self.plan = plan
        self.ask = ask
        self.prompt = ask.prompt
        self.outcome = outcome
        self._store = store
        completion = outcome.completion if outcome is not None else 0
        # What each budget holds for this request, in its unit.
        self.held = tuple(
            base + completion * rate for base, rate in (ask.cost(i) for i in range(len(plan.rules)))
        )
        self.reserved = self.prompt + completion
        self._lock = threading.Lock()
        self._settled = False
        # What the request used: the provider's usage; else, once an answer or a stream began,
        # the prompt plus an estimate of the text relayed (an answer's bytes, a stream's count).
        self.answered = False
        self.usage: Usage | None = None
        self.relayed = b""
        self.relayed_tokens = 0
        # What it cost in USD, from its usage and the answering provider's price (None: not
        # known; money budgets are then settled from the tokens at the reserved rates).
        self.cost_usd: float | None = None

    def headers(self) -> dict[str, str]:
        """The budget headers for the response: tokens and money, each the tightest budget."""
        outcome = self.outcome
        if outcome is None or not outcome.rule:
            return {}
        out: dict[str, str] = {}
        for unit, names in ((TOKENS, TOKEN_HEADERS), (NANO_USD, BUDGET_HEADERS)):
            found = self._tightest(outcome, unit)
            if found is None:
                continue
            rule, left, reset = found
            if unit == TOKENS:
                values = (str(rule.amount), str(max(0, math.floor(left))), str(reset))
            else:
                values = (usd(rule.amount), usd(left), str(reset))
            out.update(zip(names, values, strict=True))
        return out

    def _tightest(self, outcome: Outcome, unit: str) -> tuple[Rule, float, int] | None:
        """The budget of ``unit`` with the least left (share of its amount), what it has left
        and when its window moves on."""
        best: tuple[Rule, float, int] | None = None
        for i, rule in enumerate(self.plan.rules):
            if rule.unit != unit:
                continue
            if outcome.lefts:
                left = outcome.lefts[i]
            elif outcome.rule == i + 1:
                left = outcome.remaining
            else:
                continue
            reset = outcome.reset if outcome.rule == i + 1 else rule_reset(rule)
            if best is None or left / rule.amount < best[1] / best[0].amount:
                best = (rule, left, reset)
        return best

    def used(self) -> int:
        """Tokens to charge: the usage reported, else an estimate from what was relayed."""
        if self.usage is not None and self.usage.total_tokens > 0:
            return self.usage.total_tokens
        if not self.answered:
            return 0  # no provider answered: nothing was generated
        return self.prompt + self.relayed_tokens + text_tokens(self.relayed)

    def spent(self) -> tuple[int, ...]:
        """What to charge each budget, in its unit."""
        tokens = self.used()
        out = []
        for i, rule in enumerate(self.plan.rules):
            if rule.unit == TOKENS:
                out.append(tokens)
            elif self.cost_usd is not None:
                out.append(nano(self.cost_usd))
            elif tokens == 0:
                out.append(0)
            else:  # no usage: the tokens relayed at the rates reserved
                base, rate = self.ask.cost(i)
                share = min(1.0, tokens / self.prompt) if self.prompt else 1.0
                out.append(math.ceil(base * share + max(0, tokens - self.prompt) * rate))
        return tuple(out)

    def settle(self) -> None:
        """Correct the budgets to what was used and free the concurrency slot (once)."""
        with self._lock:
            if self._settled:
                return
            self._settled = True
        if self._store is None or self.outcome is None:
            return
        deltas = tuple(s - h for s, h in zip(self.spent(), self.held, strict=True))
        self._budgets.settle(self, self._store, self.outcome, deltas)


def rule_reset(rule: Rule, now: float | None = None) -> int:
    """Seconds until a budget's window moves on."""
    now = time.time() if now is None else now
    return math.ceil(rule.seconds - now % rule.seconds)


class Budgets:
    """The keys' budgets and the store that counts them."""

    def __init__(
        self,
        config: Config,
        shared: BudgetStore | None,
        on_redis_error: Callable[[str], None] | None = None,
        pricer: Pricer | None = None,
        on_warn: Callable[[str], None] | None = None,
        claim: Claim | None = None,
    ) -> None:
        self.policy = config.rate_limits.on_storage_error
        self.on_redis_error = on_redis_error
        self.pricer = pricer
        self.warnings = Warnings(on_warn, claim)
        # A key's plan, made from its settings when first asked for: the config's keys and
        # the managed ones (whose settings may change: the plan follows the KeyConfig).
        self._plans = functools.lru_cache(maxsize=4096)(_plan)
        self.shared = shared
        self.local = MemoryBudgetStore()
        # A reservation lives at most this long (a worker that dies mid-request frees its
        # slot when the lease runs out): the longest a request may take, twice over.
        self.lease = 2 * config.server.max_request_timeout
        self.errors = 0

    def standing(self, key: KeyConfig) -> list[tuple[Rule, float]]:
        """Each of ``key``'s budgets with what it has counted now (for the status page).

        Read from the store the key's requests reserve in; raises what that store raises.
        """
        plan = self._plans(key)
        if plan is None or not plan.rules:
            return []
        store: BudgetStore = self.shared if self.shared is not None else self.local
        used = store.used(key.name, plan.rules, time.time())
        return list(zip(plan.rules, used, strict=True))

    def applies(self, key: KeyConfig) -> bool:
        """Tell whether ``key`` has budgets or a concurrency limit."""
        return self._plans(key) is not None

    def reserve(
        self,
        key: KeyConfig,
        op: Operation,
        body: dict[str, Any],
        targets: Iterable[Target] = (),
        admission: Callable[[Rider], None] | None = None,
    ) -> tuple[Ticket | None, dict[str, Any]]:
        """Reserve for a request; return its ticket and the body to send (with the cap the
        gateway sets). Raise 429 when it does not fit, 403 ``model_unpriced`` when a money
        budget applies and a provider in ``targets`` has no price for its model.

        ``admission`` is the request's rate-limit check when it was put off until now
        (:meth:`proxyapi.ratelimit.Limits.admission`): the reservation rides along with its
        first hit in Redis, one round trip for both, and is made only if that hit is allowed.
        """
        plan = self._plans(key)
        if plan is None:
            return None, body
        prompt = estimate_prompt(op, body) if plan.rules else 0
        completion, flexible, n = _completion(op, body, plan.max_tokens)
        costs: tuple[tuple[int, int], ...] = ()
        if plan.spends_money:
            assert self.pricer is not None, "money budgets need the pricer"
            quote = Quote.for_targets(self.pricer, key.name, targets, prompt)
            costs = tuple(
                (quote.base, quote.rate) if rule.unit == NANO_USD else (prompt, 1)
                for rule in plan.rules
            )
        ask = Ask(
            prompt=prompt,
            completion=completion,
            flexible=flexible,
            min_completion=min(MIN_COMPLETION * n, completion),
            max_concurrent=plan.max_concurrent,
            ticket=uuid.uuid4().hex,
            lease=self.lease,
            costs=costs,
        )
        outcome, store = self._reserve(key.name, plan, ask, admission)
        if outcome is None:  # fail-open during a store outage
            return Ticket(self, key.name, plan, ask, None, None), body
        if outcome.status == TOO_MANY:
            raise BudgetExceeded(
                f"Key '{key.name}' already has {plan.max_concurrent} requests in flight "
                "(its max_concurrent); retry when one has finished.",
                error_code="concurrency_limit_exceeded",
                headers={"Retry-After": "1"},
            )
        ticket = Ticket(self, key.name, plan, ask, outcome, store)
        if outcome.status == OVER_BUDGET:
            raise self._over_budget(key.name, plan, ask, outcome, ticket)
        assert outcome.status == RESERVED
        if flexible and plan.rules:
            body = _with_cap(op, body, outcome.completion // n)
        return ticket, body

    @staticmethod
    def _over_budget(
        key: str, plan: KeyBudget, ask: Ask, outcome: Outcome, ticket: Ticket
    ) -> BudgetExceeded:
        index = outcome.rule - 1
        rule = plan.rules[index]
        headers = {**ticket.headers(), "Retry-After": str(max(1, outcome.reset))}
        completion = ask.min_completion if ask.flexible else ask.completion
        base, rate = ask.cost(index)
        needs = base + completion * rate
        if rule.unit == NANO_USD:
            return BudgetExceeded(
                f"Budget reached for key '{key}': {rule.text}; this request may cost up to "
                f"${usd(needs)} and ${usd(outcome.remaining)} is left. Retry in "
                f"{outcome.reset}s.",
                error_code="budget_exceeded",
                headers=headers,
            )
        return BudgetExceeded(
            f"Token budget reached for key '{key}': {rule.text} tokens; this request "
            f"needs about {needs} and {math.floor(outcome.remaining)} are left. Retry in "
            f"{outcome.reset}s.",
            headers=headers,
        )

    def _reserve(
        self,
        key: str,
        plan: KeyBudget,
        ask: Ask,
        admission: Callable[[Rider], None] | None = None,
    ) -> tuple[Outcome | None, BudgetStore | None]:
        store: BudgetStore = self.shared if self.shared is not None else self.local
        if admission is not None:
            if isinstance(store, RedisBudgetStore):
                outcome = self._ride(key, plan, ask, store, admission)
                if outcome is not None:
                    return outcome, store
            else:
                # The limits first, as always; nothing rides (a rider already taken).
                admission(Rider("", [], [], taken=True))
        try:
            return store.reserve(key, plan.rules, ask, time.time()), store
        except Exception as exc:
            if self.shared is None or not _is_store_error(exc):
                raise
            self._outage(exc)
            if self.policy == "fail-closed":
                raise BudgetStorageUnavailable() from exc
            if self.policy == "fail-open":
                return None, None
            return self.local.reserve(key, plan.rules, ask, time.time()), self.local

    def _ride(
        self,
        key: str,
        plan: KeyBudget,
        ask: Ask,
        store: RedisBudgetStore,
        admission: Callable[[Rider], None],
    ) -> Outcome | None:
        """Check the limits with the reservation riding along; its outcome, or None when it
        did not ride (the limits were in memory, or none applied): then it is made alone."""
        keys, argv, windows = store.reserve_call(key, plan.rules, ask, time.time())
        rider = Rider(RESERVE_SCRIPT, keys, argv)
        try:
            admission(rider)
        except BaseException:
            # A later limit refused the request after the first one let the reservation in:
            # give it all back (nothing was spent) and free its slot.
            if rider.answer is not None:
                outcome = store.outcome(rider.answer, windows)
                if outcome.status == RESERVED:
                    Ticket(self, key, plan, ask, outcome, store).settle()
            raise
        return None if rider.answer is None else store.outcome(rider.answer, windows)

    def settle(
        self, ticket: Ticket, store: BudgetStore, outcome: Outcome, deltas: tuple[int, ...]
    ) -> None:
        """Apply a ticket's corrections (called by :meth:`Ticket.settle`)."""
        try:
            store.settle(
                ticket.key,
                ticket.plan.rules,
                outcome.windows,
                deltas,
                ticket.ask.ticket,
                ticket.plan.max_concurrent > 0,
            )
        except Exception as exc:
            if store is self.local or not _is_store_error(exc):
                raise
            self._outage(exc)  # the lease frees the slot; the correction is lost
        # Warned from what was spent, not from the reservation: a request that reserves all
        # that is left (a flexible cap) must not sound the once-a-window warning early.
        for index, warn_at in ticket.plan.warn_at.items():
            left = outcome.lefts[index] - deltas[index]
            rule = ticket.plan.rules[index]
            self.warnings.check(ticket.key, rule, warn_at, left, outcome.windows[index])

    def _outage(self, exc: Exception) -> None:
        self.errors += 1
        if self.on_redis_error is not None:
            self.on_redis_error("budgets")
        log.warning("budget store unreachable (%s): %s", exc.__class__.__name__, self.policy)


def _plan(key: KeyConfig) -> KeyBudget | None:
    """A key's budget plan, or None when it has nothing to count."""
    if not (key.token_limits or key.max_concurrent or key.money_budgets):
        return None
    tokens = _rules(key.token_limits)
    warn_at = {len(tokens) + i: b.warn_at for i, b in enumerate(key.money_budgets)}
    return KeyBudget(
        tokens + money_rules(key.money_budgets), key.max_concurrent or 0, key.max_tokens, warn_at
    )


def _is_store_error(exc: Exception) -> bool:
    import redis

    return isinstance(exc, redis.RedisError)


def _rules(limits: tuple[str, ...]) -> tuple[Rule, ...]:
    items = [item for text in limits for item in parse_many(text)]
    return tuple(Rule(item.amount, item.get_expiry(), str(item)) for item in items)


def _completion(op: Operation, body: Mapping[str, Any], ceiling: int) -> tuple[int, bool, int]:
    """Completion tokens a request may produce, whether the gateway sets that cap, and n."""
    if op is Operation.EMBEDDINGS:
        return 0, False, 1
    n = body.get("n")
    n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
    asked = body.get(_CAP_FIELD.get(op, "max_completion_tokens"))
    if asked is None:
        asked = body.get("max_tokens")
    if isinstance(asked, int) and not isinstance(asked, bool) and asked > 0:
        return asked * n, False, n
    if op is Operation.COMPLETIONS:
        return COMPLETIONS_DEFAULT_MAX_TOKENS * n, False, n
    return ceiling * n, True, n


def _with_cap(op: Operation, body: dict[str, Any], cap: int) -> dict[str, Any]:
    """The body with the completion cap the reservation was made for (a client's body keeps
    the headers it came with)."""
    capped = {**body, _CAP_FIELD.get(op, "max_tokens"): max(1, cap)}
    return body.revised(capped) if isinstance(body, ClientBody) else capped


# The field that caps the completion, per operation (max_tokens for the others).
# max_completion_tokens is the name OpenAI and Azure take for every chat model (reasoning
# models refuse max_tokens); the Anthropic adapter maps it to its own max_tokens.
_CAP_FIELD = {
    Operation.CHAT: "max_completion_tokens",
    Operation.RESPONSES: "max_output_tokens",
}


def _claimer(client: Any, namespace: str) -> Claim:
    """Claim a budget warning's mark in Redis: the first to set it says the warning."""

    def claim(mark: str, ttl: int) -> bool:
        return bool(client.set(f"{namespace}:budget-warned:{mark}", "1", nx=True, ex=ttl))

    return claim


def init_app(
    app: Flask,
    config: Config,
    client: Any | None,
    on_redis_error: Callable[[str], None] | None = None,
    pricer: Pricer | None = None,
    on_warn: Callable[[str], None] | None = None,
) -> Budgets:
    """Keep the app's :class:`Budgets` in ``app.extensions`` (shared through ``client``)."""
    shared = claim = None
    if client is not None:
        shared = RedisBudgetStore(client, config.redis.namespace)
        claim = _claimer(client, config.redis.namespace)
    budgets = Budgets(config, shared, on_redis_error, pricer, on_warn, claim)
    app.extensions[EXTENSION] = budgets
    return budgets
