"""Anthropic's event stream as OpenAI ``chat.completion.chunk`` events (Chat Completions
clients of an Anthropic provider)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from proxyapi.errors import UpstreamStreamFailed
from proxyapi.providers.anthropic.chat_reply import (
    _STREAM_ERROR_TYPE,
    ERROR_TYPES,
    _chat_id,
    _finish_reason,
    merge_usage,
    openai_usage,
)
from proxyapi.providers.base import StreamTranslator, Usage
from proxyapi.providers.sse import ServerEvent, SSEParser, sse_event

Clock = Callable[[], float]
_DONE = b"data: [DONE]\n\n"


class AnthropicStreamTranslator(StreamTranslator):
    """Turns one Anthropic event stream into OpenAI ``chat.completion.chunk`` events.

    Input may be cut anywhere, even inside a UTF-8 character: the shared SSE parser hands out
    whole events only, and only those are decoded. Output is whole events only. After
    ``message_stop`` (answered by ``[DONE]``) or an error event, the rest of the input is ignored;
    an error event (or an event that is not JSON) raises :class:`UpstreamStreamFailed`.
    """

    def __init__(
        self, provider: str, model: str, *, include_usage: bool, clock: Clock = time.time
    ) -> None:
        self.provider = provider
        self.include_usage = include_usage
        self.clock = clock
        # Until message_start says otherwise: the model the client asked for.
        self.id = _chat_id(None)
        self.model = model
        self.created = int(clock())
        self._parser = SSEParser()
        self._finished = False
        self._role_sent = False
        self._failure: UpstreamStreamFailed | None = None
        self._stop_reason: Any = None
        self._usage: dict[str, Any] = {}
        self._tool_index: dict[Any, int] = {}  # Anthropic block index -> OpenAI tool index
        self._arguments_sent: set[int] = set()
        self._handlers: dict[str, Callable[[dict[str, Any]], list[bytes]]] = {
            "message_start": self._on_message_start,
            "content_block_start": self._on_content_block_start,
            "content_block_delta": self._on_content_block_delta,
            "content_block_stop": self._on_content_block_stop,
            "message_delta": self._on_message_delta,
            "message_stop": self._on_message_stop,
            "error": self._on_error,
        }  # ping, and event types added after this was written, are ignored

    def feed(self, chunk: bytes) -> list[bytes]:
        out = self._events(self._parser.feed(chunk), last=False) if not self._finished else []
        if self._failure is not None and not out:
            raise self._failure
        return out  # a failure found in this chunk is raised on the next call

    def close(self) -> list[bytes]:
        """Translate a last event that lacks its blank line; a cut-off one is dropped."""
        if self._failure is not None:
            raise self._failure
        if self._finished:
            return []
        return self._events(self._parser.close(), last=True)

    # ------------------------------------------------------------------ events

    def _events(self, events: list[ServerEvent], *, last: bool) -> list[bytes]:
        out: list[bytes] = []
        for event in events:
            if self._finished:
                break
            out.extend(self._event(event, last=last))
        return out

    def _event(self, event: ServerEvent, *, last: bool) -> list[bytes]:
        try:
            data = json.loads(event.data.decode("utf-8"))
        except ValueError:  # UnicodeDecodeError included
            data = None
        if not isinstance(data, dict):
            if last:  # the stream was cut inside it; the relay reports the truncation
                return []
            return self._fail(
                f"Provider '{self.provider}' sent a stream event that is not a JSON object.",
                _STREAM_ERROR_TYPE,
                "upstream_malformed_response",
            )
        kind = data["type"] if isinstance(data.get("type"), str) else event.event
        handler = self._handlers.get(kind)
        out = handler(data) if handler is not None else []
        if out and not self._role_sent:
            self._role_sent = True
            out.insert(0, self._chunk({"role": "assistant", "content": ""}))
        return out

    def _on_message_start(self, data: dict[str, Any]) -> list[bytes]:
        message = data.get("message")
        if isinstance(message, dict):
            self.id = _chat_id(message.get("id"))
            if isinstance(message.get("model"), str):
                self.model = message["model"]
            self._count(message.get("usage"))
        self.created = int(self.clock())
        # The role chunk waits for the first real delta: an error right after message_start
        # (Anthropic's "overloaded") then leaves nothing sent, and the request can fall back.
        return []

    def _on_content_block_start(self, data: dict[str, Any]) -> list[bytes]:
        block = data.get("content_block")
        if not isinstance(block, dict):
            return []
        if block.get("type") == "text" and block.get("text"):
            return [self._chunk({"content": block["text"]})]
        if block.get("type") == "tool_use":
            index = len(self._tool_index)
            self._tool_index[data.get("index")] = index
            call = {
                "index": index,
                "id": str(block.get("id") or ""),
                "type": "function",
                "function": {"name": str(block.get("name") or ""), "arguments": ""},
            }
            return [self._chunk({"tool_calls": [call]})]
        return []  # thinking and server-tool blocks have no OpenAI counterpart

    def _on_content_block_delta(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta")
        if not isinstance(delta, dict):
            return []
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [self._chunk({"content": delta["text"]})]
        index = self._tool_index.get(data.get("index"))
        partial = delta.get("partial_json")
        if delta.get("type") == "input_json_delta" and index is not None and partial:
            self._arguments_sent.add(index)
            return [self._arguments(index, str(partial))]
        return []

    def _on_content_block_stop(self, data: dict[str, Any]) -> list[bytes]:
        index = self._tool_index.get(data.get("index"))
        if index is not None and index not in self._arguments_sent:
            # A tool without parameters streams no JSON; OpenAI clients parse the arguments.
            self._arguments_sent.add(index)
            return [self._arguments(index, "{}")]
        return []

    def _on_message_delta(self, data: dict[str, Any]) -> list[bytes]:
        delta = data.get("delta")
        if isinstance(delta, dict) and delta.get("stop_reason") is not None:
            self._stop_reason = delta["stop_reason"]
        self._count(data.get("usage"))
        return []

    def _on_message_stop(self, data: dict[str, Any]) -> list[bytes]:
        self._finished = True
        self.complete = True
        out = [self._chunk({}, _finish_reason(self._stop_reason))]
        if self.include_usage:
            out.append(self._sse({**self._head(), "choices": [], "usage": self._openai_usage()}))
        out.append(_DONE)
        return out

    def _on_error(self, data: dict[str, Any]) -> list[bytes]:
        err = data["error"] if isinstance(data.get("error"), dict) else {}
        kind = err.get("type") if isinstance(err.get("type"), str) else None
        message = err.get("message")
        return self._fail(
            message if isinstance(message, str) and message else "The provider's stream failed.",
            ERROR_TYPES.get(kind or "", _STREAM_ERROR_TYPE),
            kind,
        )

    # ------------------------------------------------------------------ output

    def _fail(self, message: str, kind: str, code: str | None) -> list[bytes]:
        # Raised (by feed or close, once what came before it is out), not written: before
        # the first event the relay falls back to the next provider; after it, the relay ends
        # the stream with one OpenAI error event.
        self._finished = True
        self._failure = UpstreamStreamFailed(message, type=kind, error_code=code)
        return []

    def _count(self, usage: Any) -> None:
        """Keep the latest token counts; message_delta's are cumulative, so they replace."""
        if isinstance(usage, dict):
            self.usage = Usage.from_anthropic(merge_usage(self._usage, usage), self.model)

    def _openai_usage(self) -> dict[str, Any]:
        return openai_usage(self._usage)

    def _head(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        chunk: dict[str, Any] = {
            **self._head(),
            "choices": [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
            ],
        }
        if self.include_usage:
            chunk["usage"] = None  # as OpenAI does: only the last, choice-less chunk has usage
        return self._sse(chunk)

    def _arguments(self, index: int, text: str) -> bytes:
        return self._chunk({"tool_calls": [{"index": index, "function": {"arguments": text}}]})

    @staticmethod
    def _sse(payload: dict[str, Any]) -> bytes:
        return sse_event(payload)
