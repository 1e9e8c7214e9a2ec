"""The Anthropic dialect (``type: anthropic``): Messages clients pass through, OpenAI chat
clients are translated.

- ``MESSAGES`` and ``COUNT_TOKENS`` (the client speaks Anthropic's dialect too): the body goes
  out byte for byte when the model name is not rewritten (re-encoded, same JSON, when it is),
  with the client's ``anthropic-version`` and ``anthropic-beta`` headers; answers and stream
  events come back unchanged (:mod:`.passthrough`).
- ``CHAT``: OpenAI chat requests as Messages requests (:mod:`.chat_request`), answers
  (:mod:`.chat_reply`) and streams (:mod:`.chat_stream`) back as OpenAI's.
- Embeddings and legacy completions: refused, so the next provider for the model is tried.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from proxyapi.errors import InvalidRequest, UpstreamMalformed
from proxyapi.jsonio import encode_json
from proxyapi.providers.anthropic.chat_reply import ERROR_TYPES, chat_completion
from proxyapi.providers.anthropic.chat_request import ChatRequest
from proxyapi.providers.anthropic.chat_stream import AnthropicStreamTranslator
from proxyapi.providers.anthropic.passthrough import MessagesPassThrough
from proxyapi.providers.base import (
    USER_AGENT,
    Adapter,
    ClientBody,
    ErrorInfo,
    Operation,
    StreamTranslator,
    UpstreamReply,
    UpstreamRequest,
    Usage,
    load_json_object,
    passthrough_payload,
)

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

Clock = Callable[[], float]
# How much of a non-JSON error body is quoted back to the client.
_ERROR_SNIPPET = 300
# Models per listing; Anthropic's default page (20) would hide the rest, 1000 is its maximum.
_MODELS_PAGE = 1000
# The client's dialect headers that a pass-through forwards unchanged.
DIALECT_HEADERS = ("anthropic-version", "anthropic-beta")
_PATHS = {
    Operation.CHAT: "/v1/messages",
    Operation.MESSAGES: "/v1/messages",
    Operation.COUNT_TOKENS: "/v1/messages/count_tokens",
}


class AnthropicAdapter(Adapter):
    """Adapter for ``type: anthropic`` providers (the Messages API).

    ``clock`` gives the ``created`` time of translated answers; tests pass a fixed one.
    """

    def __init__(self, provider: ProviderConfig, clock: Clock = time.time) -> None:
        super().__init__(provider)
        self.clock = clock
        self.chat = ChatRequest(provider.name, provider.max_tokens)

    # ------------------------------------------------------------------ requests

    def _headers(self, stream: bool, client: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {
            "anthropic-version": self.provider.anthropic_version,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "user-agent": USER_AGENT,
        }
        for name in DIALECT_HEADERS:  # a pass-through keeps the client's version and betas
            if client and client.get(name):
                headers[name] = client[name]
        if stream:
            # A compressor upstream may hold events back until its buffer fills.
            headers["accept-encoding"] = "identity"
        for name, value in self.provider.headers.items():
            # Header names are case-insensitive: a configured one replaces ours, not joins it.
            for same in [k for k in headers if k.lower() == name.lower()]:
                del headers[same]
            headers[name] = value
        if self.provider.api_key:  # last: configured headers never replace the credentials
            headers["x-api-key"] = self.provider.api_key
        return headers

    def _refuse(self, param: str, message: str) -> InvalidRequest:
        return InvalidRequest(f"Provider '{self.provider.name}' (Anthropic) {message}", param=param)

    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        """Build the Messages call; raise InvalidRequest for an operation Anthropic lacks or a
        chat parameter it cannot honour (see :mod:`.chat_request`)."""
        if op is Operation.EMBEDDINGS:
            raise self._refuse(
                "model",
                "has no embeddings endpoint; use a model served by an OpenAI-compatible provider.",
            )
        if op is Operation.COMPLETIONS:
            raise self._refuse(
                "model",
                "has no legacy completions endpoint; send the prompt as a user message to "
                "/v1/chat/completions, or use a model served by an OpenAI-compatible provider.",
            )
        client: Mapping[str, str] | None = None
        if op is Operation.CHAT:
            payload = encode_json(self.chat.payload(body, model, stream))
        else:
            client = body.headers if isinstance(body, ClientBody) else None
            payload = passthrough_payload(body, model)
        return UpstreamRequest(
            method="POST",
            url=f"{self.provider.base_url}{_PATHS[op]}",
            headers=self._headers(stream, client),
            body=payload,
            stream=stream,
        )

    # ------------------------------------------------------------------ answers

    def parse(
        self, op: Operation, reply: UpstreamReply, body: Mapping[str, Any] | None = None
    ) -> tuple[bytes, Usage | None]:
        """Check an answer; translate it for a chat client, relay it as it is otherwise."""
        data = self.answer_object(reply)
        if op is Operation.COUNT_TOKENS:
            if not isinstance(data.get("input_tokens"), int):
                raise UpstreamMalformed(
                    f"Provider '{self.provider.name}' counted tokens without 'input_tokens'."
                )
            return reply.body, None
        if not isinstance(data.get("content"), list):
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' answered {reply.status} without 'content'."
            )
        model = data.get("model")
        counted = Usage.from_anthropic(data.get("usage"), model if isinstance(model, str) else None)
        if op is Operation.MESSAGES:
            return reply.body, counted
        answer = chat_completion(data, int(self.clock()))
        return encode_json(answer), counted

    def parse_error(self, reply: UpstreamReply) -> ErrorInfo:
        data = load_json_object(reply.body)
        err = data.get("error") if data else None
        if isinstance(err, dict):
            kind = err.get("type") if isinstance(err.get("type"), str) else None
            return ErrorInfo(
                message=str(err.get("message") or f"HTTP {reply.status}"),
                type=ERROR_TYPES.get(kind) if kind else None,
                code=kind,
            )
        text = reply.body[:_ERROR_SNIPPET].decode("utf-8", "replace").strip()
        return ErrorInfo(message=text or f"HTTP {reply.status}")

    def stream_translator(
        self, op: Operation, body: Mapping[str, Any], strip_usage: bool = False
    ) -> StreamTranslator:
        if op is Operation.MESSAGES:
            return MessagesPassThrough(self.provider.name)
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        model = body.get("model")
        return AnthropicStreamTranslator(
            self.provider.name,
            model if isinstance(model, str) else "",
            include_usage=include_usage and not strip_usage,
            clock=self.clock,
        )

    def build_list_models(self) -> UpstreamRequest:
        return UpstreamRequest(
            method="GET",
            url=f"{self.provider.base_url}/v1/models?limit={_MODELS_PAGE}",
            headers=self._headers(False),
        )
