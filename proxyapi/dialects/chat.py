"""OpenAI's dialect: Chat Completions, legacy Completions and Embeddings."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from proxyapi.cache.replay import replay_events
from proxyapi.dialects.base import Dialect
from proxyapi.dialects.shapes import OPENAI
from proxyapi.errors import ProxyAPIError
from proxyapi.providers.base import Operation
from proxyapi.streaming import sse_error_event
from proxyapi.validation import validate

log = logging.getLogger(__name__)


class OpenAIDialect(Dialect):
    """The OpenAI API family."""

    name = OPENAI

    def validate(self, op: Operation, body: Mapping[str, Any]) -> None:
        validate(op, body)

    def stream_body(self, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        # Pricing and budgets need the stream's usage: ask for it, and keep the usage-only
        # chunk from a client that did not.
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            return body, False
        return {**body, "stream_options": {**options, "include_usage": True}}, True

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
        return sse_error_event(exc, secrets)

    def replay(self, answer: bytes, body: Mapping[str, Any]) -> list[bytes] | None:
        if body.get("logprobs"):
            return None  # a replay has no logprobs to send: stream from the provider
        options = body.get("stream_options") or {}
        try:
            return replay_events(answer, include_usage=bool(options.get("include_usage")))
        except ValueError as exc:  # a shape the replay does not know: stream from the provider
            log.info("cached answer not replayed: %s", exc)
            return None


OPENAI_DIALECT = OpenAIDialect()
