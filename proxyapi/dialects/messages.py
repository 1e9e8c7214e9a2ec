"""Anthropic's dialect: the Messages API (``/v1/messages``, ``/v1/messages/count_tokens``), as
Claude Code and the anthropic SDKs speak it."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from werkzeug.datastructures import Headers

from proxyapi.cache.replay import replay_message_events
from proxyapi.dialects.base import Dialect
from proxyapi.dialects.shapes import ANTHROPIC, anthropic_error
from proxyapi.errors import InvalidRequest, ProxyAPIError, redact
from proxyapi.logs import clip, escape_control
from proxyapi.providers.base import Operation
from proxyapi.providers.sse import sse_event
from proxyapi.validation import check_model_name, json_type

log = logging.getLogger(__name__)

# Claude Code starts its system prompt with this line, whose hash changes on every request;
# it is left out of cache keys so it does not defeat the cache (the request keeps it).
BILLING_HEADER = "x-anthropic-billing-header:"
SESSION_HEADER = "X-Claude-Code-Session-Id"
_ROLES = ("user", "assistant")


class MessagesDialect(Dialect):
    """The Anthropic Messages API."""

    name = ANTHROPIC

    def validate(self, op: Operation, body: Mapping[str, Any]) -> None:
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(
                f"model: Field required (a non-empty string), got {json_type(model)}.",
                param="model",
            )
        check_model_name(model)
        if op is Operation.MESSAGES:
            max_tokens = body.get("max_tokens")
            if isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1:
                raise InvalidRequest(
                    "max_tokens: must be a whole number of at least 1, got "
                    f"{json_type(max_tokens)}.",
                    param="max_tokens",
                )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise InvalidRequest(
                f"messages: must be a non-empty array, got {json_type(messages)}.",
                param="messages",
            )
        for i, message in enumerate(messages):
            if not isinstance(message, dict) or message.get("role") not in _ROLES:
                raise InvalidRequest(
                    f"messages.{i}: must be an object with a role of 'user' or 'assistant'.",
                    param="messages",
                )
        stream = body.get("stream")
        if stream is not None and not isinstance(stream, bool):
            raise InvalidRequest(
                f"stream: must be a boolean, got {json_type(stream)}.", param="stream"
            )
        system = body.get("system")
        if system is not None and not isinstance(system, (str, list)):
            raise InvalidRequest(
                f"system: must be a string or an array of text blocks, got {json_type(system)}.",
                param="system",
            )

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes:
        message = redact(str(exc.description), secrets)
        return sse_event(anthropic_error(exc.code or 500, message, exc.error_code), "error")

    def replay(self, answer: bytes, body: Mapping[str, Any]) -> list[bytes] | None:
        try:
            return replay_message_events(answer)
        except ValueError as exc:
            log.info("cached answer not replayed: %s", exc)
            return None

    def cache_body(self, body: Mapping[str, Any]) -> Mapping[str, Any]:
        system = body.get("system")
        if isinstance(system, str) and BILLING_HEADER in system:
            return {**body, "system": _without_billing_line(system)}
        if isinstance(system, list):
            kept = []
            for block in system:
                text = block.get("text") if isinstance(block, dict) else None
                if isinstance(text, str) and BILLING_HEADER in text:
                    text = _without_billing_line(text)
                    if not text.strip():
                        continue
                    block = {**block, "text": text}
                kept.append(block)
            if kept != system:
                return {**body, "system": kept}
        return body

    def response_headers(self, request_id: str) -> dict[str, str]:
        # The anthropic SDKs read request-id (in errors and on every response object).
        return {"request-id": request_id}

    def session(self, headers: Headers) -> str | None:
        value = headers.get(SESSION_HEADER)
        return escape_control(clip(value)) if value else None


def _without_billing_line(text: str) -> str:
    return "\n".join(
        line for line in text.split("\n") if not line.lstrip().startswith(BILLING_HEADER)
    )


MESSAGES_DIALECT = MessagesDialect()
