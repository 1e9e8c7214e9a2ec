"""Money budgets: a key's spending caps, counted like its token budgets, in nano-USD.

A request reserves, before it is sent, the most it may cost: its estimated prompt at the input
price and its completion cap at the output price (the highest price tier, and no cache
discount), at the dearest provider it may go to; once it ends the reservation is settled to its
cost, from the provider's usage (or, without usage, from what was relayed). Counting in whole
nano-USD (1e-9) keeps the arithmetic exact in Redis (Lua numbers are doubles: exact to 2^53
nano-USD, 9 million dollars) and a fraction of a cent of rounding per request, always up.
A model with no known price cannot be budgeted: such a key's request for it is refused with
``model_unpriced`` rather than left unaccounted.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from proxyapi.budgets.store import NANO_USD, Rule
from proxyapi.errors import PermissionDenied

if TYPE_CHECKING:
    from proxyapi.config.model import MoneyBudget
    from proxyapi.pricing import Pricer
    from proxyapi.routing import Target

log = logging.getLogger(__name__)

NANO = 1_000_000_000
BUDGET_HEADERS = (
    "X-ProxyAPI-Budget-Limit-USD",
    "X-ProxyAPI-Budget-Remaining-USD",
    "X-ProxyAPI-Budget-Reset",
)


class ModelUnpriced(PermissionDenied):
    error_code = "model_unpriced"


def money_rules(budgets: Iterable[MoneyBudget]) -> tuple[Rule, ...]:
    """Each money budget as a store rule in nano-USD."""
    return tuple(
        Rule(round(b.usd * NANO), b.seconds, f"${b.usd:g} per {b.period}", NANO_USD)
        for b in budgets
    )


def nano(usd: float) -> int:
    """USD as whole nano-USD, rounded up (a budget never counts less than was spent)."""
    return math.ceil(usd * NANO - 1e-6)


def usd(nano_usd: float) -> str:
    """Nano-USD shown as USD, to the tenth of a cent's thousandth (what the headers carry)."""
    return f"{max(0.0, nano_usd) / NANO:.6f}"


class Quote:
    """What a request may cost, at the dearest of the providers it may go to: a fixed part
    (the prompt) and a rate per completion token, in nano-USD."""

    def __init__(self, base: int, rate: int) -> None:
        self.base = base
        self.rate = rate

    @classmethod
    def for_targets(cls, pricer: Pricer, key: str, targets: Iterable[Target], prompt: int) -> Quote:
        """The quote over ``targets``; ModelUnpriced if any of them has no price."""
        base = rate = 0
        for target in targets:
            provider, model = target.provider.name, target.model
            fixed = pricer.estimate(provider, model, prompt, 0)
            per_million = pricer.estimate(provider, model, 0, 1_000_000)
            if fixed is None or per_million is None:
                raise ModelUnpriced(
                    f"Key '{key}' has a money budget, and provider '{provider}' has no price for "
                    f"model '{model}', so its cost cannot be capped. Give it one in the config "
                    "(pricing.prices).",
                    param="model",
                )
            base = max(base, nano(fixed))
            rate = max(rate, nano(per_million / 1_000_000))
        return cls(base, rate)


# Told (a mark naming the key, budget and window; seconds to keep it) and answers whether
# this process is the first to claim it: Redis' SET NX across hosts.
Claim = Callable[[str, int], bool]


class Warnings:
    """Says once per budget window that a key has spent past a budget's ``warn_at``: a log
    line, and the ``on_warn`` callback (a metric).

    Once per worker; with ``claim`` (Redis), once for the whole deployment: the first worker
    to see the threshold passed claims the window's mark, at most one round trip per worker,
    budget and window. A claim that fails (Redis down) warns anyway: a warning twice rather
    than none.
    """

    def __init__(
        self, on_warn: Callable[[str], None] | None = None, claim: Claim | None = None
    ) -> None:
        self.on_warn = on_warn
        self.claim = claim
        self._said: set[tuple[str, str, int]] = set()
        self._lock = threading.Lock()

    def check(self, key: str, rule: Rule, warn_at: float, left: float, window: int) -> None:
        if left > (1 - warn_at) * rule.amount:
            return
        with self._lock:
            mark = (key, rule.text, window)
            if mark in self._said:
                return
            if len(self._said) > 10_000:  # old windows are never checked again
                self._said.clear()
            self._said.add(mark)
        if self.claim is not None:
            try:
                first = self.claim(f"{key}:{rule.seconds}:{window}", 2 * rule.seconds)
            except Exception as exc:  # the store's errors: see the class docstring
                log.debug("budget warning not claimed: %s", exc)
                first = True
            if not first:
                return
        log.warning(
            "key %s has spent %.0f%% of its budget of %s (warned at %.0f%%)",
            key,
            100 * (1 - max(0.0, left) / rule.amount),
            rule.text,
            100 * warn_at,
        )
        if self.on_warn is not None:
            self.on_warn(key)
