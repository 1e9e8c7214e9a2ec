"""The interface every provider dialect implements: build upstream calls, parse answers.

Adapters are pure: they take and return plain data and never touch a socket or Flask, so they
are tested without an app. :mod:`proxyapi.upstream` does the I/O around them.
"""

from __future__ import annotations

import enum
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from proxyapi.errors import ProxyAPIError, UpstreamMalformed
from proxyapi.jsonio import encode_json
from proxyapi.providers.usage import Usage as Usage  # part of the adapters' interface

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

USER_AGENT = "ProxyAPI/0.1"


class Operation(enum.Enum):
    """What a client asked for, in its own dialect; each adapter maps it to its own call.

    ``CHAT``, ``COMPLETIONS``, ``EMBEDDINGS`` and ``RESPONSES`` come in OpenAI's dialects,
    ``MESSAGES`` and ``COUNT_TOKENS`` in Anthropic's.
    """

    CHAT = "chat"
    COMPLETIONS = "completions"
    EMBEDDINGS = "embeddings"
    MESSAGES = "messages"
    COUNT_TOKENS = "count_tokens"
    RESPONSES = "responses"
    # A stored response of a provider's own Responses API, by id (``body["id"]``).
    RESPONSE_GET = "response_get"
    RESPONSE_DELETE = "response_delete"


class ClientBody(dict[str, Any]):
    """A client's JSON request body, with the exact bytes and the headers it came with.

    A provider that speaks the client's dialect is sent those bytes as they are when nothing
    in them changes (pass-through keeps every field, byte for byte), and the dialect headers
    the client sent (``anthropic-version``, ``anthropic-beta``). ``raw`` is empty for a body
    the gateway rewrote. ``echo``: fields a translated answer reports as the client sent them
    though the body differs (a Responses request's ``previous_response_id``, which the gateway
    replaced by the conversation it stands for).
    """

    def __init__(
        self,
        data: Mapping[str, Any],
        raw: bytes,
        headers: Mapping[str, str],
        echo: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(data)
        self.raw = raw
        self.headers = dict(headers)
        self.echo = dict(echo or {})

    def revised(self, data: Mapping[str, Any], **echo: Any) -> ClientBody:
        """The same request with other contents (so no exact bytes), headers and echo kept."""
        return ClientBody(data, b"", self.headers, {**self.echo, **echo})


def passthrough_payload(body: Mapping[str, Any], model: str) -> bytes:
    """The bytes to send a provider of the client's own dialect: the client's exact bytes when
    nothing changes, else the body re-encoded with the model it resolved to."""
    same = body.get("model") == model
    if same and isinstance(body, ClientBody) and body.raw:
        return body.raw
    return encode_json(body if same else {**body, "model": model})


@dataclass(frozen=True)
class ChatTarget:
    """What a provider's chat call takes, for requests translated to chat."""

    # Or "max_completion_tokens", which OpenAI's reasoning models require.
    max_tokens_field: str = "max_tokens"
    # The upstream takes `reasoning_effort`.
    reasoning_effort: bool = False


@dataclass(frozen=True)
class UpstreamRequest:
    """One HTTP call to a provider, fully built."""

    method: str
    url: str
    headers: Mapping[str, str]
    body: bytes | None = None
    stream: bool = False


@dataclass(frozen=True)
class UpstreamReply:
    """A complete (non-streamed) provider answer."""

    status: int
    headers: Mapping[str, str]
    body: bytes


@dataclass(frozen=True)
class ErrorInfo:
    """What a provider's error body says, in OpenAI terms."""

    message: str
    type: str | None = None
    param: str | None = None
    code: str | None = None


class StreamTranslator(ABC):
    """Turns a provider's streamed bytes into the client's dialect, chunk by chunk.

    It hands out whole events only, and says what the stream reported: ``usage`` (once the
    provider gave it) and ``complete`` (the stream ended the way its dialect ends a stream;
    a stream that stops without that was cut short). The relay reads both and knows no dialect.
    """

    usage: Usage | None = None
    complete: bool = False
    # The whole answer object the stream's last event carried, in the client's dialect, when
    # the dialect sends one (a Responses stream's response.completed).
    final: dict[str, Any] | None = None

    @abstractmethod
    def feed(self, chunk: bytes) -> Iterable[bytes]:
        """Take raw upstream bytes; return whole events ready to send (maybe none)."""

    def close(self) -> Iterable[bytes]:
        """Return what is left to send when the upstream stream ends."""
        return ()

    def error_event(self, exc: ProxyAPIError, secrets: Iterable[str] = ()) -> bytes | None:
        """The event that ends this stream with ``exc``, when the client's dialect frames it
        from what was already sent (a Responses stream's id and next sequence number); None:
        the dialect's own error event. ``secrets`` are scrubbed from the message."""
        return None


class Adapter(ABC):
    """Builds calls to one provider and parses its answers into the OpenAI shape."""

    def __init__(self, provider: ProviderConfig) -> None:
        self.provider = provider

    @abstractmethod
    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        """Build the upstream call for an OpenAI request ``body`` aimed at ``model``.

        Raise :class:`~proxyapi.errors.InvalidRequest` for a request this provider cannot honour
        (an operation it lacks, a parameter it cannot apply): the next candidate is tried, and
        the client gets that 400 if none can.
        """

    @abstractmethod
    def parse(
        self, op: Operation, reply: UpstreamReply, body: Mapping[str, Any] | None = None
    ) -> tuple[bytes, Usage | None]:
        """Return the JSON body of a 2xx reply, in the client's dialect, and its usage; raise
        UpstreamMalformed if the reply is not an answer. ``body``: the request, for answers
        that echo it."""

    def chat_target(self) -> ChatTarget:
        """What this provider's chat call takes, for requests translated to chat."""
        return ChatTarget()

    def answer_object(self, reply: UpstreamReply) -> dict[str, Any]:
        """The reply's body as a JSON object; UpstreamMalformed when it is not one."""
        data = load_json_object(reply.body)
        if data is None:
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' answered {reply.status} with a body that is "
                "not a JSON object."
            )
        return data

    @abstractmethod
    def parse_error(self, reply: UpstreamReply) -> ErrorInfo:
        """Read a non-2xx reply's body into an :class:`ErrorInfo`."""

    @abstractmethod
    def stream_translator(
        self, op: Operation, body: Mapping[str, Any], strip_usage: bool = False
    ) -> StreamTranslator:
        """Return the translator for streamed answers to ``body`` (the request as the client's
        dialect has it, ``stream_options`` included).

        ``strip_usage``: the gateway asked for usage the client did not ask for; the chunk that
        carries only usage is kept from the client.
        """

    def build_list_models(self) -> UpstreamRequest | None:
        """Build the call that lists the provider's models, or None if it has no such call."""
        return None

    def parse_list_models(self, reply: UpstreamReply) -> list[str]:
        """Return the model ids in a 2xx answer to :meth:`build_list_models`.

        OpenAI's shape, ``{"data": [{"id": ...}, ...]}``, which Anthropic's API shares.
        """
        data = load_json_object(reply.body)
        items = data.get("data") if data else None
        if not isinstance(items, list):
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' sent a model list without 'data'."
            )
        return [m["id"] for m in items if isinstance(m, dict) and isinstance(m.get("id"), str)]


def load_json_object(body: bytes) -> dict[str, Any] | None:
    """Parse ``body`` as a JSON object; None when it is not one."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None
