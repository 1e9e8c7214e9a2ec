"""The OpenAI dialect: OpenAI itself and every OpenAI-compatible host (vLLM, Ollama, Groq, ...).

Requests and answers of OpenAI's own dialect pass through unchanged apart from the model name
and the credentials; answers are checked for the shape their endpoint promises, so a 200 that
is not a completion is caught as a provider failure. Anthropic Messages requests are
translated to chat and their answers and streams back (:mod:`proxyapi.translate.messages_chat`);
token counting has no OpenAI endpoint (the route estimates instead). Responses API requests pass
through to a host that serves that API (``responses_api``), byte for byte when the model name
is not rewritten, with every stream event unchanged
(:mod:`proxyapi.providers.responses_passthrough`); other hosts get them as chat
(:mod:`proxyapi.providers.responses_over_chat`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

from proxyapi.config.values import is_openai_api
from proxyapi.errors import InvalidRequest, UpstreamMalformed
from proxyapi.jsonio import encode_json
from proxyapi.providers.base import (
    USER_AGENT,
    Adapter,
    ChatTarget,
    ErrorInfo,
    Operation,
    StreamTranslator,
    UpstreamReply,
    UpstreamRequest,
    Usage,
    load_json_object,
    passthrough_payload,
)
from proxyapi.providers.responses_passthrough import ResponsesPassThrough
from proxyapi.providers.sse import whole_events_end
from proxyapi.translate.messages_chat import (
    ChatToMessagesStream,
    chat_request,
    messages_answer,
)

# Each operation's path under the base URL, and the list its answer must carry (a 200 without
# it is not an answer). Messages are translated to chat (proxyapi.translate.messages_chat).
PATHS = {
    Operation.CHAT: "chat/completions",
    Operation.COMPLETIONS: "completions",
    Operation.EMBEDDINGS: "embeddings",
    Operation.MESSAGES: "chat/completions",
    Operation.RESPONSES: "responses",
}
_RESULT_FIELD = {
    Operation.CHAT: "choices",
    Operation.COMPLETIONS: "choices",
    Operation.EMBEDDINGS: "data",
    Operation.MESSAGES: "choices",
    Operation.RESPONSES: "output",
}
# Calls on a stored response, by id: the HTTP method of each.
RESPONSE_METHODS = {Operation.RESPONSE_GET: "GET", Operation.RESPONSE_DELETE: "DELETE"}
# How much of a non-JSON error body is quoted back to the client.
_ERROR_SNIPPET = 300


class OpenAIAdapter(Adapter):
    """Adapter for ``type: openai`` providers."""

    def _auth_headers(self) -> dict[str, str]:
        if self.provider.api_key:
            return {"Authorization": f"Bearer {self.provider.api_key}"}
        return {}

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream" if stream else "application/json",
            "User-Agent": USER_AGENT,
        }
        if stream:
            # A compressor upstream may hold events back until its buffer fills.
            headers["Accept-Encoding"] = "identity"
        # Extra headers a host asks for (OpenRouter's HTTP-Referer and X-Title, ...).
        return {**headers, **self.provider.headers, **self._auth_headers()}

    def chat_target(self) -> ChatTarget:
        """What this host's chat endpoint takes, for translated Messages requests.

        OpenAI's own API (and Azure's) needs ``max_completion_tokens`` for reasoning models
        and takes ``reasoning_effort``; other hosts get the older ``max_tokens``, which they all
        take, and no reasoning effort (many refuse fields they do not know).
        """
        if self.provider.type == "azure" or is_openai_api(self.provider.base_url):
            return ChatTarget(max_tokens_field="max_completion_tokens", reasoning_effort=True)
        return ChatTarget()

    def _translate(self, op: Operation, body: Mapping[str, Any], stream: bool) -> Mapping[str, Any]:
        """The body to send: OpenAI's own as it is, a Messages request as chat."""
        if op is Operation.COUNT_TOKENS:
            raise InvalidRequest(
                f"Provider '{self.provider.name}' has no token counting endpoint.", param="model"
            )
        if op is Operation.MESSAGES:
            return chat_request(body, self.chat_target(), stream)
        return body

    def responses_url(self) -> str:
        """Where the host serves the Responses API."""
        return f"{self.provider.base_url}/responses"

    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        if op in RESPONSE_METHODS:
            return self._stored_response(op, body)
        if op is Operation.RESPONSES:
            return UpstreamRequest(
                method="POST",
                url=self.responses_url(),
                headers=self._headers(stream),
                body=passthrough_payload(body, self.responses_model(model)),
                stream=stream,
            )
        body = self._translate(op, body, stream)
        if body.get("model") != model:
            body = {**body, "model": model}
        if "stream_options" in body and not self.provider.stream_usage:
            body = {k: v for k, v in body.items() if k != "stream_options"}
        return UpstreamRequest(
            method="POST",
            url=f"{self.provider.base_url}/{PATHS[op]}",
            headers=self._headers(stream),
            body=encode_json(body),
            stream=stream,
        )

    def responses_model(self, model: str) -> str:
        """The model name a Responses request for ``model`` carries (Azure: the deployment)."""
        return model

    def _stored_response(self, op: Operation, body: Mapping[str, Any]) -> UpstreamRequest:
        if not self.provider.responses_api:
            raise InvalidRequest(
                f"Provider '{self.provider.name}' does not serve the Responses API.", param="id"
            )
        if str(body["id"]) in (".", ".."):  # a path segment an HTTP client would resolve away
            raise InvalidRequest("A response id cannot be '.' or '..'.", param="id")
        return UpstreamRequest(
            method=RESPONSE_METHODS[op],
            url=f"{self.responses_url()}/{quote(str(body['id']), safe='')}",
            headers=self._headers(False),
        )

    def parse(
        self, op: Operation, reply: UpstreamReply, body: Mapping[str, Any] | None = None
    ) -> tuple[bytes, Usage | None]:
        data = self.answer_object(reply)
        if op in RESPONSE_METHODS:
            if data.get("id") != (body or {}).get("id"):
                raise UpstreamMalformed(
                    f"Provider '{self.provider.name}' answered for another response id."
                )
            return reply.body, None
        if op is Operation.RESPONSES:
            if data.get("object") != "response" or not isinstance(data.get("output"), list):
                raise UpstreamMalformed(
                    f"Provider '{self.provider.name}' answered {reply.status} without a "
                    "response object."
                )
            return reply.body, Usage.from_responses(data.get("usage"), _model_of(data))
        if not isinstance(data.get(_RESULT_FIELD[op]), list):
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' answered {reply.status} without "
                f"'{_RESULT_FIELD[op]}'."
            )
        usage = Usage.from_openai(data.get("usage"), _model_of(data))
        if op is Operation.MESSAGES:
            return encode_json(messages_answer(data, "")), usage
        return reply.body, usage

    def parse_error(self, reply: UpstreamReply) -> ErrorInfo:
        data = load_json_object(reply.body)
        err = data.get("error") if data else None
        if isinstance(err, dict):
            return ErrorInfo(
                message=str(err.get("message") or f"HTTP {reply.status}"),
                type=err.get("type") if isinstance(err.get("type"), str) else None,
                param=err.get("param") if isinstance(err.get("param"), str) else None,
                code=str(err["code"]) if err.get("code") is not None else None,
            )
        if isinstance(err, str):  # some compatible hosts send {"error": "text"}
            return ErrorInfo(message=err)
        if data and isinstance(data.get("detail"), str):  # FastAPI-based hosts (vLLM)
            return ErrorInfo(message=data["detail"])
        text = reply.body[:_ERROR_SNIPPET].decode("utf-8", "replace").strip()
        return ErrorInfo(message=text or f"HTTP {reply.status}")

    def build_list_models(self) -> UpstreamRequest | None:
        return UpstreamRequest(
            method="GET", url=f"{self.provider.base_url}/models", headers=self._headers(False)
        )

    def stream_translator(
        self, op: Operation, body: Mapping[str, Any], strip_usage: bool = False
    ) -> StreamTranslator:
        if op is Operation.MESSAGES:
            model = body.get("model")
            return ChatToMessagesStream(self.provider.name, model if isinstance(model, str) else "")
        if op is Operation.RESPONSES:
            return ResponsesPassThrough(self.provider.name, body)
        return OpenAIEventStream(strip_usage)


DONE = b"data: [DONE]"


def _model_of(data: dict[str, Any]) -> str | None:
    """The model an answer names (the one the provider billed)."""
    model = data.get("model")
    return model if isinstance(model, str) and model else None


class OpenAIEventStream(StreamTranslator):
    """OpenAI's own event stream, relayed as it is, in whole events.

    It is complete once ``data: [DONE]`` arrives; ``usage`` is the usage chunk's (the gateway
    asks for one with ``stream_options.include_usage`` when it counts tokens).
    """

    def __init__(self, strip_usage: bool = False) -> None:
        self.strip_usage = strip_usage
        self._pending = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        self._pending += chunk
        end = whole_events_end(self._pending)
        if not end:
            return []
        out = bytes(self._pending[:end])
        del self._pending[:end]
        if DONE in out:
            self.complete = True
        out = self._observe(out)
        return [out] if out else []

    def close(self) -> Iterable[bytes]:
        if DONE in self._pending:  # a last event without its blank line
            self.complete = True
            return [self._observe(bytes(self._pending).rstrip(b"\r\n") + b"\n\n")]
        return []

    def _observe(self, events: bytes) -> bytes:
        """Note the usage the events report; drop the usage-only chunk when asked to."""
        if b'"usage"' not in events:
            return events
        kept = []
        for event in events.split(b"\n\n"):
            data = event[6:] if event.startswith(b"data: {") else b""
            if b'"usage"' in data:
                try:
                    chunk = json.loads(data)
                except ValueError:
                    chunk = None
                if isinstance(chunk, dict):
                    self.usage = (
                        Usage.from_openai(chunk.get("usage"), _model_of(chunk)) or self.usage
                    )
                    if self.strip_usage and chunk.get("choices") == []:
                        continue
            kept.append(event)
        return b"\n\n".join(kept)
