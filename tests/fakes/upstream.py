"""A fake OpenAI-compatible provider on 127.0.0.1, with fault injection.

It runs in the test process on its own threads, so a test scripts it directly::

    fake.script(Fault(status=500), Fault(status=429, headers={"Retry-After": "1"}))

Each queued :class:`Fault` applies to one upcoming request (in order); with none queued the
fake answers normally. It records every request it sees and every stream it served, including
when a client went away in the middle.

What it answers depends on the request, as a model would: a call of the first tool offered;
text once the last message is a tool result (:func:`~tests.fakes.responses_api.tool_said`);
a minimal instance of the schema under a ``json_schema`` response format; otherwise
:data:`REPLY_TEXT` (``tok0 tok1 ...`` when streamed). With ``responses_api=True`` it also
serves the Responses API (:mod:`tests.fakes.responses_api`).
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from proxyapi.mock.schema_instance import instance_of
from tests.fakes.http_fake import FakeHandler, ScriptedFake
from tests.fakes.responses_api import Reply, ResponsesAPI, encode, frame, pieces, tool_said

REPLY_TEXT = "Hello from the fake upstream."
# What the fake calls its first offered tool with (U+2028 included: a trap for line splitters).
TOOL_CALL_ID = "call_fake0001"
TOOL_ARGUMENTS = {"city": "Paris", "note": "caf\u00e9 \u2028 ok"}
# What Azure OpenAI adds to answers: content-filter verdicts for the prompt and each choice.
AZURE_FILTER_RESULTS = {
    kind: {"filtered": False, "severity": "safe"}
    for kind in ("hate", "self_harm", "sexual", "violence")
}
AZURE_PROMPT_FILTER = {"prompt_index": 0, "content_filter_results": AZURE_FILTER_RESULTS}
AZURE_CONTENT_FILTER_ERROR = json.dumps(
    {
        "error": {
            "message": "The response was filtered due to the prompt triggering Azure OpenAI's "
            "content management policy.",
            "type": None,
            "param": "prompt",
            "code": "content_filter",
            "status": 400,
            "innererror": {
                "code": "ResponsibleAIPolicyViolation",
                "content_filter_result": {
                    **AZURE_FILTER_RESULTS,
                    "violence": {"filtered": True, "severity": "high"},
                },
            },
        }
    }
).encode()
EMBEDDING_DIMS = 8


@dataclass
class Fault:
    """What to do instead of (or on top of) a normal answer, for one request."""

    status: int | None = None  # answer this status with an OpenAI-shaped error body
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | None = None  # answer 200 (or ``status``) with exactly these bytes
    delay: float = 0.0  # wait before sending the status line
    reset: bool = False  # reset the connection instead of answering
    chunks: int | None = None  # number of content chunks in a stream
    chunk_delay: float = 0.0  # pause between stream chunks
    stall_after: int | None = None  # after this many stream events, go silent
    stall_for: float = 30.0
    reset_after: int | None = None  # after this many stream events, reset the connection
    end_after: int | None = None  # after this many stream events, end cleanly (no [DONE])
    content_type: str | None = None
    # Responses streams: after this many events, send response.failed with this code and end.
    fail_after: int | None = None
    fail_code: str = "server_error"


@dataclass
class Recorded:
    """One request as the fake saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    raw: bytes = b""  # the body's bytes as they arrived


@dataclass
class StreamRecord:
    """How one served stream ended."""

    started: float
    events_sent: int = 0
    finished: float | None = None
    disconnected: float | None = None  # when a write found the client gone


class FakeUpstream(ScriptedFake[Fault, Recorded, StreamRecord]):
    """The fake OpenAI-compatible (or Azure OpenAI) provider."""

    def __init__(
        self,
        api_key: str | None = "sk-fake-upstream",
        models: list[str] | None = None,
        azure_api_version: str | None = None,
        deployments: dict[str, str] | None = None,
        responses_api: bool = False,
    ):
        """``azure_api_version`` makes it an Azure OpenAI resource: per-deployment paths, an
        ``api-key`` header, and content-filter results (``deployments``: deployment -> model).
        ``responses_api`` serves ``/v1/responses`` (Azure: ``/openai/v1/responses``); without
        it that path is a 404, as on a chat-only host such as vLLM."""
        super().__init__(_Handler)
        self.api_key = api_key
        self.azure_api_version = azure_api_version
        self.deployments = deployments or {}
        self.models = models or ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small", "fake-model"]
        self.default_chunks = 5
        self.default_chunk_delay = 0.0
        # Merged into every chat and completions usage (e.g. prompt_tokens_details).
        self.usage_details: dict[str, Any] = {}
        self._serves_responses = responses_api
        self.responses_api = responses_api  # a test may switch it until reset()
        self.responses = ResponsesAPI(REPLY_TEXT, TOOL_CALL_ID, TOOL_ARGUMENTS)

    @property
    def base_url(self) -> str:
        if self.azure_api_version:
            return f"http://127.0.0.1:{self.port}"  # an Azure resource endpoint
        return f"http://127.0.0.1:{self.port}/v1"

    def reset(self) -> None:
        """Forget recorded traffic, queued faults and stored responses; undo knob changes."""
        super().reset()
        self.default_chunks = 5
        self.default_chunk_delay = 0.0
        self.usage_details = {}
        self.responses_api = self._serves_responses
        self.responses.clear()


class _Handler(FakeHandler):
    # ---------------------------------------------------------------- plumbing

    @property
    def fake(self) -> FakeUpstream:
        return self.server.fake

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _error(
        self,
        status: int,
        message: str,
        etype: str,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        self._send_json(
            status,
            {"error": {"message": message, "type": etype, "param": None, "code": code}},
            headers,
        )

    # ---------------------------------------------------------------- routes

    def do_GET(self) -> None:  # noqa: N802 (the stdlib handler's name)
        self.fake.record(Recorded("GET", self.path, dict(self.headers), None))
        if not self._authorized():
            return
        fault = self.fake.next_fault()
        if fault and self._apply_fault(fault):
            return
        response_id = self._response_id()
        if response_id:
            self._answer(self.fake.responses.retrieve(response_id), fault)
        elif self.path.rstrip("/") == "/v1/models":
            data = [
                {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
                for m in self.fake.models
            ]
            self._send_json(200, {"object": "list", "data": data})
        else:
            self._error(404, f"Unknown path {self.path}", "invalid_request_error")

    def do_DELETE(self) -> None:  # noqa: N802
        self.fake.record(Recorded("DELETE", self.path, dict(self.headers), None))
        if not self._authorized():
            return
        fault = self.fake.next_fault()
        if fault and self._apply_fault(fault):
            return
        response_id = self._response_id()
        if response_id:
            self._answer(self.fake.responses.delete(response_id), fault)
        else:
            self._error(404, f"Unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:  # noqa: N802
        body = self._read_body()
        self.fake.record(Recorded("POST", self.path, dict(self.headers), body, self.raw_body))
        if not self._authorized():
            return
        fault = self.fake.next_fault()
        if fault and self._apply_fault(fault):
            return
        if not isinstance(body, dict):
            self._error(
                400, "We could not parse the JSON body of your request.", "invalid_request_error"
            )
            return
        if self._response_id() == "":
            self._create_response(body, fault)
            return
        path = self.path.rstrip("/")
        if self.fake.azure_api_version:
            resolved = self._azure_route()
            if resolved is None:
                return
            path, deployed = resolved
            body = {**body, "model": deployed}
        elif path not in ("/v1/chat/completions", "/v1/completions", "/v1/embeddings"):
            self._error(404, f"Unknown path {self.path}", "invalid_request_error")
            return
        if body.get("model") not in self.fake.models:
            self._error(
                404,
                f"The model `{body.get('model')}` does not exist.",
                "invalid_request_error",
                code="model_not_found",
            )
            return
        if path == "/v1/chat/completions":
            self._completion(body, chat=True, fault=fault)
        elif path == "/v1/completions":
            self._completion(body, chat=False, fault=fault)
        else:
            self._embeddings(body)

    def _response_id(self) -> str | None:
        """For a Responses API path: "" for the collection, else the response id; None if
        the path is another, or this fake does not serve the Responses API."""
        prefix = "/openai/v1/responses" if self.fake.azure_api_version else "/v1/responses"
        path = urlsplit(self.path).path.rstrip("/")
        if not self.fake.responses_api or not (path == prefix or path.startswith(prefix + "/")):
            return None
        rest = unquote(path[len(prefix) + 1 :])
        return None if "/" in rest else rest

    def _create_response(self, body: dict[str, Any], fault: Fault | None) -> None:
        if self.fake.azure_api_version and isinstance(body.get("model"), str):
            # Azure's v1 API takes the deployment's name as the model.
            body = {**body, "model": self.fake.deployments.get(body["model"], body["model"])}
        fault = fault or Fault()
        chunks = fault.chunks if fault.chunks is not None else self.fake.default_chunks
        reply = self.fake.responses.create(
            body, self.fake.models, chunks, fault.fail_after, fault.fail_code
        )
        self._answer(reply, fault)

    def _answer(self, reply: Reply, fault: Fault | None) -> None:
        if reply.events is not None:
            self._send_stream([frame(e) for e in reply.events], fault or Fault())
        else:
            self._send_json(reply.status, encode(reply.body))

    def _azure_route(self) -> tuple[str, str] | None:
        """Map an Azure deployment URL to (OpenAI path, model); 404 like Azure if it is off."""
        parsed = urlsplit(self.path)
        match = re.fullmatch(
            r"/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)", parsed.path
        )
        version = parse_qs(parsed.query).get("api-version", [""])[0]
        if match is None or version != self.fake.azure_api_version:
            self._send_json(404, {"error": {"code": "404", "message": "Resource not found"}})
            return None
        deployment = unquote(match.group(1))
        return f"/v1/{match.group(2)}", self.fake.deployments.get(deployment, deployment)

    def _authorized(self) -> bool:
        if self.fake.api_key is None:
            return True
        if self.fake.azure_api_version:
            if self.headers.get("api-key") == self.fake.api_key:
                return True
            self._send_json(
                401,
                {
                    "error": {
                        "code": "401",
                        "message": "Access denied due to "
                        "invalid subscription key or wrong API endpoint.",
                    }
                },
            )
            return False
        if self.headers.get("Authorization") == f"Bearer {self.fake.api_key}":
            return True
        self._error(
            401, "Incorrect API key provided.", "invalid_request_error", code="invalid_api_key"
        )
        return False

    def _apply_fault(self, fault: Fault) -> bool:
        """Act out the parts of a fault that replace the answer; True if answered."""
        if self._act_out(fault):
            return True
        if fault.status is not None:
            etype = {429: "rate_limit_error", 400: "invalid_request_error"}.get(
                fault.status, "server_error"
            )
            self._error(fault.status, f"Injected HTTP {fault.status}", etype, fault.headers)
            return True
        return False

    # ---------------------------------------------------------------- answers

    def _usage(self, body: dict[str, Any], completion_tokens: int) -> dict[str, Any]:
        prompt_tokens = max(1, len(json.dumps(body.get("messages") or body.get("prompt"))) // 4)
        return {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            **self.fake.usage_details,
        }

    def _chat_text(self, body: dict[str, Any]) -> str | None:
        """The assistant's text when the request decides it (a structured answer, or a reply
        to tool results); None for the default text, or a tool call when tools are offered."""
        results: list[dict[str, Any]] = []
        for message in reversed(body.get("messages") or []):
            if not (isinstance(message, dict) and message.get("role") == "tool"):
                break
            results.insert(0, message)
        response_format = body.get("response_format") or {}
        if response_format.get("type") == "json_schema" and (results or not body.get("tools")):
            schema = (response_format.get("json_schema") or {}).get("schema", {})
            return json.dumps(instance_of(schema))
        if results:
            return " ".join(tool_said(m.get("tool_call_id", ""), m.get("content")) for m in results)
        return None

    def _completion(self, body: dict[str, Any], chat: bool, fault: Fault | None) -> None:
        model = body["model"]
        created = int(time.time())
        cid = ("chatcmpl-" if chat else "cmpl-") + format(abs(hash((created, id(self)))), "x")
        text = self._chat_text(body) if chat else None
        if body.get("stream"):
            self._stream(body, chat, fault, model, created, cid, text)
            return
        content = REPLY_TEXT if text is None else text
        words = content.split(" ")
        if chat and body.get("tools") and text is None:
            # Offered tools: call the first one, as a model would.
            call = {
                "id": TOOL_CALL_ID,
                "type": "function",
                "function": {
                    "name": body["tools"][0]["function"]["name"],
                    "arguments": json.dumps(TOOL_ARGUMENTS, ensure_ascii=False),
                },
            }
            choice: dict[str, Any] = {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "tool_calls": [call],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        elif chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": content, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        else:
            choice = {"index": 0, "text": REPLY_TEXT, "logprobs": None, "finish_reason": "stop"}
        answer = {
            "id": cid,
            "object": "chat.completion" if chat else "text_completion",
            "created": created,
            "model": model,
            "choices": [choice],
            "usage": self._usage(body, len(words)),
            "system_fingerprint": "fp_fake",
        }
        if self.fake.azure_api_version:
            answer["prompt_filter_results"] = [AZURE_PROMPT_FILTER]
            choice["content_filter_results"] = AZURE_FILTER_RESULTS
        self._send_json(200, answer)

    def _stream(
        self,
        body: dict[str, Any],
        chat: bool,
        fault: Fault | None,
        model: str,
        created: int,
        cid: str,
        text: str | None,
    ) -> None:
        fault = fault or Fault()
        n = fault.chunks if fault.chunks is not None else self.fake.default_chunks
        obj = "chat.completion.chunk" if chat else "text_completion"

        def chunk(delta: dict[str, Any] | str, finish: str | None) -> dict[str, Any]:
            if chat:
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            else:
                choice = {"index": 0, "text": delta, "logprobs": None, "finish_reason": finish}
            return {
                "id": cid,
                "object": obj,
                "created": created,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [choice],
            }

        events: list[dict[str, Any] | str] = []
        if self.fake.azure_api_version and chat:
            # Azure opens a stream with the prompt's filter results and no choices.
            events.append(
                {
                    **chunk({}, None),
                    "choices": [],
                    "model": "",
                    "prompt_filter_results": [AZURE_PROMPT_FILTER],
                }
            )
        if chat:
            events.append(chunk({"role": "assistant", "content": ""}, None))
        if chat and body.get("tools") and text is None:
            # A tool call: its id and name first, then the arguments in small fragments.
            name = body["tools"][0]["function"]["name"]
            arguments = json.dumps(TOOL_ARGUMENTS, ensure_ascii=False)
            events.append(
                chunk(
                    {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": TOOL_CALL_ID,
                                "type": "function",
                                "function": {"name": name, "arguments": ""},
                            }
                        ]
                    },
                    None,
                )
            )
            for start in range(0, len(arguments), 5):
                fragment = arguments[start : start + 5]
                events.append(
                    chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}, None)
                )
            events.append(chunk({}, "tool_calls"))
        else:
            texts = [f"tok{i} " for i in range(n)] if text is None else pieces(text, n)
            for piece in texts:
                events.append(chunk({"content": piece} if chat else piece, None))
            events.append(chunk({} if chat else "", "stop"))
        options = body.get("stream_options") or {}
        if options.get("include_usage"):
            usage_chunk = chunk({}, None)
            usage_chunk["choices"] = []
            usage_chunk["usage"] = self._usage(body, n)
            events.append(usage_chunk)
        events.append("[DONE]")
        frames = [f"data: {e if isinstance(e, str) else json.dumps(e)}\n\n" for e in events]
        self._send_stream([f.encode() for f in frames], fault)

    def _send_stream(self, frames: list[bytes], fault: Fault) -> None:
        """Send SSE frames, acting out the fault's stream parts; record how the stream ended."""
        delay = fault.chunk_delay or self.fake.default_chunk_delay
        self.send_response(200)
        self.send_header("Content-Type", fault.content_type or "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache")
        for k, v in fault.headers.items():
            self.send_header(k, v)
        self.end_headers()
        record = StreamRecord(started=time.monotonic())
        with self.fake._lock:
            self.fake.streams.append(record)
        try:
            for i, data in enumerate(frames):
                if fault.reset_after is not None and i == fault.reset_after:
                    self._reset()
                    return
                if fault.end_after is not None and i == fault.end_after:
                    break
                if fault.stall_after is not None and i == fault.stall_after:
                    self.fake.stopping.wait(fault.stall_for)
                self._write_chunk(data)
                record.events_sent += 1
                if delay and i < len(frames) - 1:
                    self.fake.stopping.wait(delay)
            self._write_chunk(b"")
            record.finished = time.monotonic()
        except OSError:
            record.disconnected = time.monotonic()
            self.close_connection = True

    def _embeddings(self, body: dict[str, Any]) -> None:
        inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
        data = []
        for i, item in enumerate(inputs):
            seed = sum(str(item).encode("utf-8", "surrogatepass"))
            vector = [((seed * (k + 1)) % 97) / 97.0 for k in range(EMBEDDING_DIMS)]
            data.append({"object": "embedding", "index": i, "embedding": vector})
        tokens = sum(max(1, len(str(x)) // 4) for x in inputs)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body["model"],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )
