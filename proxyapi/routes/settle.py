"""The one place a request's outcome is settled, once its answer is whole or its stream over.

:class:`Settle` prices the answer and logs its usage (:mod:`proxyapi.accounting`), corrects the
key's budget reservation (tokens and money) to what was used, and fills in the request record
the access line and the metrics read. A non-streamed answer is priced and settled before it is
sent (its cost goes in a header); a stream when it ends (its cost in a trailing comment), or,
when it is cut short, when its response closes: then, with no usage from the provider, it is
charged what was relayed (the prompt as estimated, and the text sent), never nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from flask import Response

from proxyapi import budgets, observe
from proxyapi.accounting import Accounting, cost_comment
from proxyapi.providers.base import Usage
from proxyapi.streaming import Relay
from proxyapi.upstream import Answer


class Settle:
    """One request's settlement; :meth:`close` runs when its response closes."""

    def __init__(
        self,
        ticket: budgets.Ticket | None,
        record: observe.RequestRecord,
        accounting: Accounting,
        *,
        key: str,
        route: str,
        prompt: int,
        models: Mapping[str, str],
    ) -> None:
        self.ticket = ticket
        self.record = record
        self.accounting = accounting
        self.key = key
        self.route = route
        # The request's estimated prompt tokens, and the upstream model of each provider it
        # may go to (a provider names the model it billed only sometimes).
        self.prompt = prompt
        self.models = models
        self.answer: Answer | None = None  # an answer from a provider
        self.cached: Answer | None = None  # an answer from the cache
        self.relay: Relay | None = None
        self.relayed_tokens = 0
        self.cost: float | None = None
        self._priced = False

    def attach(self, response: Response) -> Response:
        response.call_on_close(self.close)
        return response

    def watch(self, events: bytes) -> None:
        """Count the text of stream events as they are sent (the fallback when no usage)."""
        self.relayed_tokens += budgets.text_tokens(events)

    def _provider(self) -> str | None:
        for answer in (self.answer, self.cached):
            if answer is not None:
                return answer.provider
        return self.relay.source.provider if self.relay is not None else None

    def _usage(self) -> Usage | None:
        """What the provider reported; without it, an estimate of what was relayed (the
        prompt as estimated, and the text sent), never nothing once an answer began."""
        for answer in (self.answer, self.cached):
            if answer is not None:
                if answer.usage is not None:
                    return answer.usage
                return self._estimate(budgets.text_tokens(answer.body))
        if self.relay is None:
            return None
        if self.relay.usage is not None:
            return self.relay.usage
        if not self.relayed_tokens:
            return None
        return self._estimate(self.relayed_tokens)

    def _estimate(self, completion: int) -> Usage:
        return Usage(self.prompt, completion, self.prompt + completion)

    def price(self) -> float | None:
        """Price the answer and log its usage, once; its cost (None: none known)."""
        if self._priced:
            return self.cost
        self._priced = True
        usage, provider = self._usage(), self._provider()
        # The record's tokens are what providers used: a cache hit used none.
        self.record.usage = usage if self.cached is None else None
        if usage is None or provider is None:
            return None
        self.cost = self.accounting.account(
            key=self.key,
            route=self.route,
            provider=provider,
            model=self.models.get(provider, self.record.model),
            model_label=self.record.model_label,
            usage=usage,
            cache_hit=self.cached is not None,
        )
        self.record.cost_usd = self.cost
        self.record.priced = True
        return self.cost

    def trailer(self) -> bytes:
        """The comment that ends a stream with its cost."""
        return cost_comment(self.price())

    def close(self) -> None:
        """Settle what is not settled yet (the response has closed)."""
        self.price()
        self._settle_budget()

    def complete(self) -> float | None:
        """The answer is whole (a non-streamed answer, or a stream that ended properly):
        settle now, before it is sent (a stream's last events), so a client that sends its
        next request as soon as it reads the answer, to any host, finds its budget settled.
        Returns the cost (None: none known)."""
        self.close()
        return self.cost

    def _settle_budget(self) -> None:
        ticket = self.ticket
        if ticket is not None:
            ticket.usage = self.answer.usage if self.answer is not None else None
            if self.relay is not None:
                ticket.usage = self.relay.usage
            ticket.cost_usd = self.cost if self.cached is None else 0.0
            ticket.answered = self.answer is not None or self.relay is not None
            ticket.relayed_tokens = self.relayed_tokens
            if self.answer is not None:
                ticket.relayed = self.answer.body
            ticket.settle()
