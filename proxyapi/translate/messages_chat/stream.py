"""OpenAI chat streams as Anthropic Messages streams (see the package docstring)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from proxyapi.providers.base import Usage
from proxyapi.providers.sse import sse_event
from proxyapi.translate.chat import STREAM_ERROR_TYPE, ChatStreamReader, first_choice, tool_piece
from proxyapi.translate.messages_chat.answer import _message_id, _stop_reason, messages_usage

_MALFORMED = "upstream_malformed_response"


@dataclass
class _ToolCall:
    """One streamed OpenAI tool call, until its Anthropic block is closed."""

    id: str
    name: str
    pending: list[str] = field(default_factory=list)  # arguments before the block could start
    started: bool = False
    closed: bool = False


class ChatToMessagesStream(ChatStreamReader):
    """OpenAI chat.completion.chunk SSE bytes -> Anthropic Messages SSE bytes.

    Input may be cut anywhere; output is whole events. After the end, or an error, the rest of
    the input is ignored. An error event (``{"error": ...}`` or ``event: error``) or an event
    that is not JSON raises :class:`UpstreamStreamFailed`, from :meth:`feed` or :meth:`close`
    once the events before it were returned. ``message_id`` replaces the one made from the
    upstream's chunk id.
    """

    def __init__(self, provider: str, model: str, message_id: str | None = None) -> None:
        super().__init__(provider)
        self.model = model  # until the upstream names its own
        self.message_id = message_id
        self.usage: Usage | None = None
        self.complete = False
        self._raw_usage: Mapping[str, Any] | None = None
        self._started = False  # message_start was sent
        self._blocks = 0  # blocks opened so far; the next one's index
        self._open: str | None = None  # "text" or "tool": the kind of the open block
        self._tools: dict[Any, _ToolCall] = {}  # by OpenAI tool call index
        self._open_tool: Any = None
        self._tool_used = False

    def _cut_short(self) -> list[bytes]:
        return self._close_block()

    def _sent(self, out: list[bytes]) -> list[bytes]:
        return self._started_first(out)

    def _started_first(self, out: list[bytes]) -> list[bytes]:
        """Put message_start before the first events sent: sending waits for something to say."""
        if out and not self._started:
            out[:0] = self._start()
        return out

    def _on_chunk(self, chunk: Mapping[str, Any]) -> list[bytes]:
        finished_before = self._finish_reason is not None
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            self._raw_usage = usage
            model = chunk.get("model")
            self.usage = Usage.from_openai(usage, model if isinstance(model, str) else None)
        if not self._started:
            if self.message_id is None and isinstance(chunk.get("id"), str) and chunk["id"]:
                self.message_id = _message_id(chunk["id"])
            if isinstance(chunk.get("model"), str) and chunk["model"]:
                self.model = chunk["model"]
        out: list[bytes] = []
        choice = first_choice(chunk.get("choices"))
        delta = choice.get("delta") if choice is not None else None
        if isinstance(delta, dict):
            for name in ("content", "refusal"):
                text = delta.get(name)
                if isinstance(text, str) and text:
                    out.extend(self._text(text))
            calls = delta.get("tool_calls")
            for piece in calls if isinstance(calls, list) else ():
                if isinstance(piece, dict):
                    out.extend(self._tool_piece(piece))
                    if self._failure is not None:
                        return out
            legacy = delta.get("function_call")
            if isinstance(legacy, dict):
                out.extend(self._tool_piece({"index": "function_call", "function": legacy}))
        finish = choice.get("finish_reason") if choice is not None else None
        if isinstance(finish, str) and finish:
            self._finish_reason = finish
            out.extend(self._close_block())
        if isinstance(usage, dict) and self._finish_reason is not None:
            self._final_usage = True
            if finished_before:  # the usage chunk that follows the finish
                out.extend(self._end())
        return out

    # ------------------------------------------------------------------ blocks

    def _text(self, text: str) -> list[bytes]:
        out: list[bytes] = []
        if self._open != "text":
            out.extend(self._close_block())
            out.append(self._open_block("text", {"type": "text", "text": ""}))
        out.append(self._delta({"type": "text_delta", "text": text}))
        return out

    def _tool_piece(self, piece: Mapping[str, Any]) -> list[bytes]:
        index, call_id, name, arguments = tool_piece(piece, len(self._tools), self._open_tool)
        out: list[bytes] = []
        call = self._tools.get(index)
        if call is None:
            out.extend(self._close_block())
            call = _ToolCall(f"call_{len(self._tools)}", "")
            self._tools[index] = call
            self._open, self._open_tool = "tool", index
        elif call.closed:
            if not arguments and not name:
                return []  # a repeat of what is known
            return self._fail(
                f"Provider '{self.provider}' sent pieces of tool call {index} after another "
                "content block began.",
                STREAM_ERROR_TYPE,
                _MALFORMED,
            )
        if not call.started:
            if isinstance(call_id, str) and call_id:
                call.id = call_id
            if isinstance(name, str) and name:
                call.name = name
        if isinstance(arguments, str) and arguments:
            if call.started:
                out.append(self._delta({"type": "input_json_delta", "partial_json": arguments}))
            else:
                call.pending.append(arguments)
        if not call.started and call.name:
            out.extend(self._start_tool(call))
        return out

    def _start_tool(self, call: _ToolCall) -> list[bytes]:
        call.started = True
        self._tool_used = True
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        out = [self._open_block("tool", block)]
        if call.pending:
            partial = "".join(call.pending)
            call.pending.clear()
            out.append(self._delta({"type": "input_json_delta", "partial_json": partial}))
        return out

    def _open_block(self, kind: str, block: dict[str, Any]) -> bytes:
        self._open = kind
        self._blocks += 1
        return self._event_bytes(
            {"type": "content_block_start", "index": self._blocks - 1, "content_block": block}
        )

    def _delta(self, delta: dict[str, Any]) -> bytes:
        return self._event_bytes(
            {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}
        )

    def _close_block(self) -> list[bytes]:
        out: list[bytes] = []
        if self._open == "tool":
            call = self._tools[self._open_tool]
            if not call.started:  # it never got a name: it still gets its block
                out.extend(self._start_tool(call))
            call.closed = True
            self._open_tool = None
        if self._open is not None:
            out.append(self._event_bytes({"type": "content_block_stop", "index": self._blocks - 1}))
            self._open = None
        return out

    # ------------------------------------------------------------------ message

    def _start(self) -> list[bytes]:
        self._started = True
        message: dict[str, Any] = {
            "id": self.message_id or _message_id(None),
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": self.model,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        return [
            self._event_bytes({"type": "message_start", "message": message}),
            self._event_bytes({"type": "ping"}),
        ]

    def _end(self) -> list[bytes]:
        out = self._close_block()
        delta = {
            "stop_reason": _stop_reason(self._finish_reason, self._tool_used),
            "stop_sequence": None,
        }
        usage = messages_usage(self._raw_usage)
        out.append(self._event_bytes({"type": "message_delta", "delta": delta, "usage": usage}))
        out.append(self._event_bytes({"type": "message_stop"}))
        self.complete = True
        self._reading = False
        return out

    @staticmethod
    def _event_bytes(payload: dict[str, Any]) -> bytes:
        return sse_event(payload, payload["type"])
