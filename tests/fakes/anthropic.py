"""A fake Anthropic Messages API on 127.0.0.1, with fault injection.

It mirrors :mod:`tests.fakes.upstream` (same ``script()``/``mode``/``calls()``/``reset()``) but
speaks Anthropic's wire format: ``x-api-key`` + ``anthropic-version`` headers, ``/v1/messages``
with content blocks, named SSE events, and ``{"type":"error","error":{...}}`` error bodies::

    fake.script(AnthropicFault(status=529), AnthropicFault(error_after=4))

What it answers (the scenario) depends on the request: a ``tool_use`` block when it offers
``tools``; otherwise text, stopped by ``max_tokens`` (< 5) or the stop sequence ``"END"``. The
text is a minimal instance of the schema under ``output_config.format`` (structured output),
else what the tools returned when the last turn holds ``tool_result`` blocks
(:func:`~tests.fakes.responses_api.tool_said`), else :data:`REPLY_TEXT`.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from proxyapi.mock.schema_instance import instance_of
from tests.fakes.http_fake import FakeHandler, ScriptedFake
from tests.fakes.responses_api import tool_said
from tests.fakes.upstream import Fault, Recorded, StreamRecord

REPLY_TEXT = "Hello from the fake Anthropic."
TOOL_PREAMBLE = "Let me check."
# U+2028 is a line separator to str.splitlines() but not to SSE or JSON: a trap for parsers.
TOOL_INPUT: dict[str, Any] = {"city": "Paris", "units": "celsius", "note": "caf\u00e9 \u2028 ok"}
STOP_SEQUENCE = "END"
CACHE_READ_TOKENS = 7
CACHE_CREATION_TOKENS = 3
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
ERROR_MESSAGES = {529: "Overloaded", 429: "Number of request tokens has exceeded your rate limit."}
JSON_SIZES = (3, 5, 7, 4, 6)  # partial_json fragment lengths, cycled
TEXT_PIECE = 5  # characters per text_delta when no chunk count is given


@dataclass
class AnthropicFault(Fault):
    """A :class:`Fault` that can also end a stream with an Anthropic ``error`` event."""

    error_after: int | None = None  # after this many stream events, send `event: error` and end
    error_type: str = "overloaded_error"
    error_message: str = "Overloaded"


def error_type_for(status: int) -> str:
    """The Anthropic error type for an HTTP status."""
    return ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def display_name(model: str) -> str:
    """A readable name for a model id, like the real models list gives."""
    return " ".join(part.capitalize() for part in model.split("-"))


def json_fragments(text: str) -> list[str]:
    """Split JSON text into 3-7 character pieces (no piece shorter than 3 unless all is)."""
    out: list[str] = []
    i = k = 0
    while i < len(text):
        rest = len(text) - i
        n = JSON_SIZES[k % len(JSON_SIZES)]
        k += 1
        if rest <= max(JSON_SIZES):
            n = rest
        elif rest - n < min(JSON_SIZES):
            n = rest - min(JSON_SIZES)
        out.append(text[i : i + n])
        i += n
    return out


def text_pieces(text: str, count: int | None) -> list[str]:
    """Split text into ``count`` pieces, or into pieces of a few characters."""
    if not text:
        return []
    size = -(-len(text) // count) if count else TEXT_PIECE
    return [text[i : i + size] for i in range(0, len(text), max(1, size))]


def new_id(prefix: str) -> str:
    """An id like the real API's, with hex in place of base62."""
    return prefix + uuid.uuid4().hex[:24]


def _dumps(payload: Any) -> str:
    # Real UTF-8, not \u escapes: a non-ASCII (or U+2028) character arrives as itself.
    return json.dumps(payload, ensure_ascii=False)


class FakeAnthropic(ScriptedFake[Fault, Recorded, StreamRecord]):
    """The fake Anthropic Messages API."""

    def __init__(self, api_key: str | None = "sk-ant-fake", models: list[str] | None = None):
        super().__init__(_Handler)
        self.api_key = api_key
        self.models = models or [
            "claude-sonnet-4-5",
            "claude-haiku-4-5",
            "claude-3-5-haiku-20241022",
            "fake-claude",
        ]
        self.default_chunks: int | None = None  # text_delta count; None: a few chars each
        self.default_chunk_delay = 0.0
        self.reply_text: str | None = None  # overrides REPLY_TEXT
        self.tool_input: dict[str, Any] | None = None  # overrides TOOL_INPUT
        self.report_cache_tokens = False

    @property
    def base_url(self) -> str:
        """Anthropic SDKs take the host only; they add ``/v1/messages`` themselves."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def messages_url(self) -> str:
        return f"{self.base_url}/v1/messages"

    def reset(self) -> None:
        """Forget recorded traffic, queued faults and scenario overrides."""
        super().reset()
        self.default_chunks = None
        self.default_chunk_delay = 0.0
        self.reply_text = None
        self.tool_input = None
        self.report_cache_tokens = False


@dataclass
class _Reply:
    """What the fake model says to one request."""

    content: list[dict[str, Any]]
    stop_reason: str
    stop_sequence: str | None
    input_tokens: int
    output_tokens: int


class _Handler(FakeHandler):
    # ---------------------------------------------------------------- plumbing

    @property
    def fake(self) -> FakeAnthropic:
        return self.server.fake

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else _dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("request-id", new_id("req_"))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(
        self,
        status: int,
        message: str,
        etype: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        error = {"type": etype or error_type_for(status), "message": message}
        self._send_json(status, {"type": "error", "error": error}, headers)

    # ---------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802 (the stdlib handler's name)
        self.fake.record(Recorded("GET", self.path, dict(self.headers), None))
        if not self._authorized():
            return
        fault = self.fake.next_fault()
        if fault and self._apply_fault(fault):
            return
        path = urlsplit(self.path).path.rstrip("/")
        if path == "/v1/models":
            data = [self._model_info(m) for m in self.fake.models]
            self._send_json(
                200,
                {
                    "data": data,
                    "has_more": False,
                    "first_id": data[0]["id"] if data else None,
                    "last_id": data[-1]["id"] if data else None,
                },
            )
        elif path.startswith("/v1/models/") and path[len("/v1/models/") :] in self.fake.models:
            self._send_json(200, self._model_info(path[len("/v1/models/") :]))
        elif path.startswith("/v1/models/"):
            self._error(404, f"model: {path[len('/v1/models/') :]}")
        else:
            self._error(404, "Not found")

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        self.fake.record(Recorded("POST", self.path, dict(self.headers), body, self.raw_body))
        if not self._authorized():
            return
        fault = self.fake.next_fault()
        if fault and self._apply_fault(fault):
            return
        path = urlsplit(self.path).path.rstrip("/")
        if path not in ("/v1/messages", "/v1/messages/count_tokens"):
            self._error(404, "Not found")
            return
        problem = self._validate(body, count_only=path.endswith("count_tokens"))
        if problem:
            self._error(*problem)
            return
        if path.endswith("count_tokens"):
            self._send_json(200, {"input_tokens": self._input_tokens(body)})
        elif body.get("stream"):
            self._stream(body, self._reply(body), fault or Fault())
        else:
            self._message(body, self._reply(body))

    def _model_info(self, model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": display_name(model),
            "created_at": "2025-01-01T00:00:00Z",
        }

    def _authorized(self) -> bool:
        if self.fake.api_key is not None and self.headers.get("x-api-key") != self.fake.api_key:
            self._error(401, "invalid x-api-key")
            return False
        if not self.headers.get("anthropic-version"):
            self._error(400, "anthropic-version: header is required")
            return False
        return True

    def _validate(self, body: Any, count_only: bool = False) -> tuple[int, str] | None:
        """The first thing wrong with a Messages request, as (status, message); None if fine."""
        if not isinstance(body, dict):
            return 400, "There was an error parsing the body of your request."
        model = body.get("model")
        if model is None:
            return 400, "model: Field required"
        if not isinstance(model, str) or model not in self.fake.models:
            return 404, f"model: {model}"
        max_tokens = body.get("max_tokens")
        if not count_only:
            if max_tokens is None:
                return 400, "max_tokens: Field required"
            if not isinstance(max_tokens, int) or isinstance(max_tokens, bool):
                return 400, "max_tokens: Input should be a valid integer"
            if max_tokens < 1:
                return 400, "max_tokens: Input should be greater than or equal to 1"
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, "messages: at least one message is required"
        for i, msg in enumerate(messages):
            if not isinstance(msg, dict):
                return 400, f"messages.{i}: Input should be a valid dictionary"
            role = msg.get("role")
            if role == "system":
                return 400, (
                    'messages: Unexpected role "system". The Messages API accepts a top-level '
                    '`system` parameter, not "system" as an input message role.'
                )
            if role not in ("user", "assistant"):
                return 400, f"messages.{i}.role: Input should be 'user' or 'assistant'"
            if not isinstance(msg.get("content"), str | list):
                return 400, f"messages.{i}.content: Field required"
        system = body.get("system")
        text_blocks = isinstance(system, list) and all(
            isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
            for b in system
        )
        if system is not None and not isinstance(system, str) and not text_blocks:
            return 400, "system: Input should be a valid string or a list of text blocks"
        tools = body.get("tools")
        if tools is not None and (
            not isinstance(tools, list)
            or not all(isinstance(t, dict) and isinstance(t.get("name"), str) for t in tools)
        ):
            return 400, "tools: each tool needs a name"
        stops = body.get("stop_sequences")
        if stops is not None and (
            not isinstance(stops, list) or not all(isinstance(s, str) for s in stops)
        ):
            return 400, "stop_sequences: Input should be a valid list of strings"
        if "stream" in body and not isinstance(body["stream"], bool):
            return 400, "stream: Input should be a valid boolean"
        return None

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out the parts of a fault that replace the answer; True if answered."""
        if self._act_out(fault):
            return True
        if fault.status is not None:
            message = ERROR_MESSAGES.get(fault.status, f"Injected HTTP {fault.status}")
            self._error(fault.status, message, headers=fault.headers)
            return True
        return False

    # ---------------------------------------------------------------- answers

    def _input_tokens(self, body: dict[str, Any]) -> int:
        prompt = {k: body.get(k) for k in ("system", "messages", "tools")}
        return max(1, len(_dumps(prompt)) // 4)

    def _reply(self, body: dict[str, Any]) -> _Reply:
        """Decide the content blocks and stop reason for a valid request."""
        fake = self.fake
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {}
        last = body["messages"][-1].get("content")
        results = (
            [b for b in last if isinstance(b, dict) and b.get("type") == "tool_result"]
            if isinstance(last, list)
            else []
        )
        output_format = (body.get("output_config") or {}).get("format") or {}
        stop_sequence = None
        if tools and choice.get("type") != "none" and not results:
            tool_input = fake.tool_input if fake.tool_input is not None else TOOL_INPUT
            content: list[dict[str, Any]] = [
                {"type": "text", "text": TOOL_PREAMBLE},
                {
                    "type": "tool_use",
                    "id": new_id("toolu_"),
                    "name": tools[0]["name"],
                    "input": tool_input,
                },
            ]
            stop_reason = "tool_use"
            output_tokens = len(TOOL_PREAMBLE.split()) + max(1, len(_dumps(tool_input)) // 4)
        else:
            if fake.reply_text is not None:
                text = fake.reply_text
            elif output_format.get("type") == "json_schema":
                text = json.dumps(instance_of(output_format.get("schema", {})))
            elif results:
                text = " ".join(
                    tool_said(b.get("tool_use_id", ""), b.get("content")) for b in results
                )
            else:
                text = REPLY_TEXT
            words = text.split(" ")
            stops = body.get("stop_sequences") or []
            if body["max_tokens"] < 5:
                text = " ".join(words[: body["max_tokens"]])
                stop_reason = "max_tokens"
                output_tokens = body["max_tokens"]
            elif stops and stops[0] == STOP_SEQUENCE:
                stop_reason, stop_sequence = "stop_sequence", STOP_SEQUENCE
                output_tokens = len(words)
            else:
                stop_reason = "end_turn"
                output_tokens = len(words)
            content = [{"type": "text", "text": text}]
        return _Reply(content, stop_reason, stop_sequence, self._input_tokens(body), output_tokens)

    def _usage(self, reply: _Reply, output_tokens: int) -> dict[str, Any]:
        usage: dict[str, Any] = {"input_tokens": reply.input_tokens}
        if self.fake.report_cache_tokens:
            usage["cache_creation_input_tokens"] = CACHE_CREATION_TOKENS
            usage["cache_read_input_tokens"] = CACHE_READ_TOKENS
        usage["output_tokens"] = output_tokens
        return usage

    def _envelope(self, body: dict[str, Any], reply: _Reply, streaming: bool) -> dict[str, Any]:
        return {
            "id": new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": [] if streaming else reply.content,
            "stop_reason": None if streaming else reply.stop_reason,
            "stop_sequence": None if streaming else reply.stop_sequence,
            "usage": self._usage(reply, 1 if streaming else reply.output_tokens),
        }

    def _message(self, body: dict[str, Any], reply: _Reply) -> None:
        self._send_json(200, self._envelope(body, reply, streaming=False))

    def _events(
        self, body: dict[str, Any], reply: _Reply, chunks: int | None
    ) -> list[tuple[str, dict[str, Any]]]:
        """The stream's events, as (event name, data) pairs, in the documented order."""
        events: list[tuple[str, dict[str, Any]]] = [
            (
                "message_start",
                {"type": "message_start", "message": self._envelope(body, reply, True)},
            ),
            ("ping", {"type": "ping"}),
        ]
        pinged = False
        for index, block in enumerate(reply.content):
            if block["type"] == "text":
                start = {"type": "text", "text": ""}
                deltas = [
                    {"type": "text_delta", "text": p} for p in text_pieces(block["text"], chunks)
                ]
            else:
                start = {**block, "input": {}}
                # The real API opens with an empty fragment; clients must concatenate, then parse.
                parts = ["", *json_fragments(_dumps(block["input"]))]
                deltas = [{"type": "input_json_delta", "partial_json": p} for p in parts]
            events.append(
                (
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": start},
                )
            )
            for delta in deltas:
                events.append(
                    (
                        "content_block_delta",
                        {"type": "content_block_delta", "index": index, "delta": delta},
                    )
                )
                if not pinged:
                    events.append(("ping", {"type": "ping"}))
                    pinged = True
            events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
        events.append(
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {
                        "stop_reason": reply.stop_reason,
                        "stop_sequence": reply.stop_sequence,
                    },
                    "usage": {"output_tokens": reply.output_tokens},
                },
            )
        )
        events.append(("message_stop", {"type": "message_stop"}))
        return events

    def _stream(self, body: dict[str, Any], reply: _Reply, fault: Fault) -> None:
        chunks = fault.chunks if fault.chunks is not None else self.fake.default_chunks
        delay = fault.chunk_delay or self.fake.default_chunk_delay
        error_after = getattr(fault, "error_after", None)
        events = self._events(body, reply, chunks)

        self.send_response(200)
        self.send_header("Content-Type", fault.content_type or "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("request-id", new_id("req_"))
        for k, v in fault.headers.items():
            self.send_header(k, v)
        self.end_headers()
        record = StreamRecord(started=time.monotonic())
        with self.fake._lock:
            self.fake.streams.append(record)
        try:
            for i, (name, data) in enumerate(events):
                if fault.reset_after is not None and i == fault.reset_after:
                    self._reset()
                    return
                if fault.end_after is not None and i == fault.end_after:
                    break
                if error_after is not None and i == error_after:
                    error = {
                        "type": getattr(fault, "error_type", "overloaded_error"),
                        "message": getattr(fault, "error_message", "Overloaded"),
                    }
                    self._write_event("error", {"type": "error", "error": error})
                    record.events_sent += 1
                    break
                if fault.stall_after is not None and i == fault.stall_after:
                    self.fake.stopping.wait(fault.stall_for)
                self._write_event(name, data)
                record.events_sent += 1
                if delay and i < len(events) - 1:
                    self.fake.stopping.wait(delay)
            self._write_chunk(b"")
            record.finished = time.monotonic()
        except OSError:
            record.disconnected = time.monotonic()
            self.close_connection = True

    def _write_event(self, name: str, data: dict[str, Any]) -> None:
        self._write_chunk(f"event: {name}\ndata: {_dumps(data)}\n\n".encode())
