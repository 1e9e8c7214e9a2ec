"""Responses API requests for a provider without that API: sent as its chat call.

Any adapter that serves chat serves Responses this way: the request becomes a chat request
(:mod:`proxyapi.translate.responses_chat`), which the provider's own adapter then builds as it
builds any chat call (for Anthropic, as a Messages call); the chat answer becomes a Response
object, and the chat stream, as the provider's adapter makes it, becomes a Responses stream.
Composing the two keeps one translation per pair of dialects.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from proxyapi.errors import ProxyAPIError, UpstreamMalformed
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import (
    Adapter,
    ClientBody,
    ErrorInfo,
    Operation,
    StreamTranslator,
    UpstreamReply,
    UpstreamRequest,
    Usage,
)
from proxyapi.translate.responses_chat import (
    ChatToResponsesStream,
    chat_request,
    new_id,
    response_object,
)

Clock = Callable[[], float]


def echo_source(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """The request as the client sent it, for the fields a Response echoes."""
    echo = body.echo if isinstance(body, ClientBody) else {}
    return {**body, **echo} if echo else body


class ResponsesOverChat(Adapter):
    """Serves ``RESPONSES`` through ``inner``'s chat call; other operations are refused."""

    def __init__(self, inner: Adapter, clock: Clock = time.time) -> None:
        super().__init__(inner.provider)
        self.inner = inner
        self.clock = clock

    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        chat = chat_request(body, self.inner.chat_target(), stream)
        return self.inner.build(Operation.CHAT, chat, model, stream)

    def parse(
        self, op: Operation, reply: UpstreamReply, body: Mapping[str, Any] | None = None
    ) -> tuple[bytes, Usage | None]:
        answer, usage = self.inner.parse(Operation.CHAT, reply)
        try:
            chat = json.loads(answer)
        except ValueError as exc:  # the inner adapter checked it; this is a safety net
            raise UpstreamMalformed(f"Provider '{self.provider.name}' sent no JSON.") from exc
        created = int(self.clock())
        return encode_json(
            response_object(chat, echo_source(body or {}), new_id("resp"), created)
        ), usage

    def parse_error(self, reply: UpstreamReply) -> ErrorInfo:
        return self.inner.parse_error(reply)

    def stream_translator(
        self, op: Operation, body: Mapping[str, Any], strip_usage: bool = False
    ) -> StreamTranslator:
        # The chat stream the inner adapter makes, with the usage chunk chat_request asked for.
        chat = {"model": body.get("model"), "stream_options": {"include_usage": True}}
        return Chained(
            self.inner.stream_translator(Operation.CHAT, chat),
            ChatToResponsesStream(
                self.provider.name, echo_source(body), new_id("resp"), int(self.clock())
            ),
        )


class Chained(StreamTranslator):
    """Two translators in a row: ``first``'s events are ``second``'s input."""

    def __init__(self, first: StreamTranslator, second: StreamTranslator) -> None:
        self.first = first
        self.second = second
        self._failure: ProxyAPIError | None = None

    def feed(self, chunk: bytes) -> list[bytes]:
        return self._run(lambda: self.first.feed(chunk), last=False)

    def close(self) -> list[bytes]:
        return self._run(self.first.close, last=True)

    def _run(self, first: Callable[[], Iterable[bytes]], last: bool) -> list[bytes]:
        # Like every translator, a failure comes after the events before it were returned:
        # held for the next call when this one has events to give.
        if self._failure is not None:
            raise self._failure
        out: list[bytes] = []
        try:
            for events in first():
                out.extend(self.second.feed(events))
            if last:
                out.extend(self.second.close())
        except ProxyAPIError as exc:
            if not out:
                raise
            self._failure = exc
        finally:
            self._report()
        return out

    def _report(self) -> None:
        """What the chain reports: the usage as the first read it from the provider (with its
        cache and reasoning detail), the rest as the last says (final before complete: the
        relay's thread may read complete at any moment, and then wants final)."""
        self.usage = self.first.usage or self.second.usage
        self.final = self.second.final
        self.complete = self.second.complete

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes | None:
        return self.second.error_event(exc, secrets)
