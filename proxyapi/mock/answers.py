"""What a mock provider answers: OpenAI-shaped answers made from the request alone.

Pure: a request in, a :class:`Plan` out (status, headers, the body's parts, and when to send
them). :mod:`proxyapi.upstream.mock_transport` carries a plan out as if it came over a socket.

Answers are deterministic: the same request gets the same text, tool call, ids and vectors.
Chat answers ``This is a mock answer.`` and quotes the start of the last user message; a
request that offers tools gets a call of the first one (or the one ``tool_choice`` names)
with arguments made from its schema, until the last message is a tool result; a
``json_schema`` response format gets an instance of the schema. ``max_tokens`` cuts the
answer (``finish_reason: length``). Usage counts a token per four characters of the prompt
and one per word of the answer.

A request may steer its own answer with directives in its last user message (or prompt),
e.g. ``[mock:status=503]``, ``[mock:status=429,retry_after=1]``, ``[mock:stall=5,after=2]``,
``[mock:cut_after=3]``, ``[mock:reset]``, ``[mock:latency=0.5]``, ``[mock:words=200]``:
deterministic faults for a test suite, where the config's ``failures`` are random.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import random
import re
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from proxyapi.config.model import MockConfig, MockFailure
from proxyapi.jsonio import encode_json
from proxyapi.mock.schema_instance import instance_of

TEXT = "This is a mock answer."
# The answer's words when a directive asks for a longer one.
FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
# How many words of the user's message the answer quotes.
QUOTED_WORDS = 12
# The longest answer a directive may ask for, and the most choices (n) one request gets.
MAX_WORDS = 100_000
MAX_CHOICES = 16
DEFAULT_MODELS = ("mock-chat", "mock-embedding")
_DIRECTIVE = re.compile(r"\[mock:([^\]]{0,200})\]")
_GLOB = re.compile(r"[*?\[]")


@dataclass(frozen=True)
class Plan:
    """One answer, and how it is delivered.

    ``parts``: the body, one part per stream event (a whole answer is one part).
    ``latency``: seconds before the head; ``interval``: seconds before each later part.
    ``stall``: seconds of silence once ``stall_after`` parts went out; ``cut_after``: parts
    sent before the connection drops; ``reset``: it drops before any byte.
    """

    status: int
    headers: Mapping[str, str]
    parts: tuple[bytes, ...] = ()
    latency: float = 0.0
    interval: float = 0.0
    stall: float = 0.0
    stall_after: int = 0
    cut_after: int | None = None
    reset: bool = False


class DirectiveError(ValueError):
    """A ``[mock:...]`` directive that cannot be carried out (answered 400)."""


def plan(
    method: str,
    path: str,
    body: bytes | None,
    config: MockConfig,
    models: Iterable[str],
    now: int,
    draw: random.Random | None = None,
) -> Plan:
    """The mock's answer to ``method path`` with ``body``; ``draw`` picks random failures."""
    try:
        return _plan(method, path, body, config, models, now, draw)
    except DirectiveError as exc:
        return error(400, str(exc), "invalid_request_error", "mock_directive")


def error(status: int, message: str, kind: str, code: str | None = None) -> Plan:
    """An OpenAI-shaped error answer."""
    payload = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return Plan(status, {"Content-Type": "application/json"}, (encode_json(payload),))


def _plan(
    method: str,
    path: str,
    body: bytes | None,
    config: MockConfig,
    models: Iterable[str],
    now: int,
    draw: random.Random | None,
) -> Plan:
    endpoint = path.rstrip("/").rsplit("/", 2)
    if method == "GET" and endpoint[-1] == "models":
        return _json(list_models(models, now))
    if method != "POST":
        return error(404, f"The mock provider has no {method} {path}.", "invalid_request_error")
    request = _load(body)
    if request is None:
        return error(400, "The request body must be a JSON object.", "invalid_request_error")
    faults = directives(_steering_text(request))
    fault = _fault(faults, config.failures, draw)
    stream = request.get("stream") is True
    tail = "/".join(endpoint[-2:])
    answer: Chat | Completion | None
    if tail == "chat/completions":
        answer = Chat(request, now)
    elif endpoint[-1] == "completions":
        answer = Completion(request, now)
    elif endpoint[-1] == "embeddings":
        stream = False
        answer = None
    else:
        return error(404, f"The mock provider has no POST {path}.", "invalid_request_error")
    if answer is None:
        parts: tuple[bytes, ...] = (encode_json(embeddings(request, config.embedding_dimensions)),)
        tokens = 1
    else:
        parts = answer.events() if stream else (encode_json(answer.whole()),)
        tokens = answer.usage()["completion_tokens"]
    pace = _number(faults, "tokens_per_second", config.tokens_per_second)
    interval = 1 / pace if pace > 0 else 0.0
    latency = _number(faults, "latency", config.latency)
    if not stream:
        latency += tokens * interval
        interval = 0.0
    headers = {"Content-Type": "text/event-stream" if stream else "application/json"}
    delivered = Plan(200, headers, parts, latency, interval)
    return _apply(delivered, fault) if fault is not None else delivered


def _load(body: bytes | None) -> dict[str, Any] | None:
    try:
        data = json.loads(body or b"")
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _json(payload: Any) -> Plan:
    return Plan(200, {"Content-Type": "application/json"}, (encode_json(payload),))


def _apply(delivered: Plan, fault: MockFailure) -> Plan:
    if fault.status is not None:
        failed = error(
            fault.status,
            f"The mock provider failed this call with {fault.status}, as configured.",
            "rate_limit_error" if fault.status == 429 else "server_error",
        )
        headers = dict(failed.headers)
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        return replace(failed, headers=headers, latency=delivered.latency)
    if fault.reset:
        return replace(delivered, reset=True)
    if fault.stall is not None:
        return replace(delivered, stall=fault.stall, stall_after=fault.after)
    return replace(delivered, cut_after=fault.cut_after)


def _fault(
    steering: Mapping[str, str], failures: Iterable[MockFailure], draw: random.Random | None
) -> MockFailure | None:
    """The fault this call gets: the request's own directive first, else a configured one
    drawn at its rate."""
    if "status" in steering:
        status = _whole(steering, "status")
        if not 400 <= status <= 599:
            raise DirectiveError("[mock:status=N] takes an HTTP error status from 400 to 599.")
        retry_after = _number(steering, "retry_after", -1.0)
        return MockFailure(
            1.0, status=status, retry_after=retry_after if retry_after >= 0 else None
        )
    if "reset" in steering:
        return MockFailure(1.0, reset=True)
    if "stall" in steering:
        return MockFailure(
            1.0, stall=_number(steering, "stall", 0.0), after=_whole(steering, "after", 0)
        )
    if "cut_after" in steering:
        return MockFailure(1.0, cut_after=_whole(steering, "cut_after"))
    if draw is not None:
        for failure in failures:
            if draw.random() < failure.rate:
                return failure
    return None


def directives(text: str) -> dict[str, str]:
    """The ``[mock:key=value,...]`` settings in ``text`` (the last wins)."""
    found: dict[str, str] = {}
    for match in _DIRECTIVE.finditer(text):
        for item in match.group(1).split(","):
            key, _, value = item.strip().partition("=")
            if key:
                found[key.strip()] = value.strip()
    return found


def _number(steering: Mapping[str, str], key: str, default: float) -> float:
    if key not in steering:
        return default
    try:
        value = float(steering[key])
    except ValueError:
        value = math.nan
    if not 0 <= value <= 600:
        raise DirectiveError(f"[mock:{key}=...] takes a number from 0 to 600.")
    return value


def _whole(steering: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = steering.get(key)
    if raw is None and default is not None:
        return default
    if raw is None or not raw.isascii() or not raw.isdigit() or len(raw) > 6:
        raise DirectiveError(f"[mock:{key}=...] takes a whole number.")
    return int(raw)


def _steering_text(request: Mapping[str, Any]) -> str:
    """The text that may hold directives: the last user message, or the prompt."""
    messages = request.get("messages")
    if isinstance(messages, list):
        for message in reversed(messages):
            if isinstance(message, dict) and message.get("role") == "user":
                return _text(message.get("content"))
        return ""
    return _text(request.get("prompt"))


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    texts = [p.get("text") if isinstance(p, dict) else p for p in content]
    return " ".join(t for t in texts if isinstance(t, str))


def _digest(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(encode_json(request, sort_keys=True)).hexdigest()[:24]


def _prompt_tokens(value: Any) -> int:
    return max(1, math.ceil(len(encode_json(value)) / 4))


def _words(quoted: str) -> list[str]:
    """The answer's words, cut to the request's token cap."""
    steering = directives(quoted)
    if "words" in steering:
        count = _whole(steering, "words")
        if count > MAX_WORDS:
            raise DirectiveError(f"[mock:words=N] takes at most {MAX_WORDS} words.")
        words = [FILLER[i % len(FILLER)] for i in range(count)]
    else:
        words = TEXT.split()
        said = _DIRECTIVE.sub("", quoted).split()
        if said:
            words += ["You", "said:", *said[:QUOTED_WORDS]]
    return words


def _cap(request: Mapping[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = request.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def _choices(request: Mapping[str, Any]) -> int:
    n = request.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 0:
        return min(n, MAX_CHOICES)
    return 1


def _event(payload: Any) -> bytes:
    return b"data: " + encode_json(payload) + b"\n\n"


DONE = b"data: [DONE]\n\n"


class Chat:
    """A chat completion for one request, whole or as stream chunks."""

    def __init__(self, request: Mapping[str, Any], now: int) -> None:
        self.request = request
        self.model = str(request.get("model", "mock-chat"))
        self.id = f"chatcmpl-mock-{_digest(request)}"
        self.now = now
        self.n = _choices(request)
        self.tool = self._tool()
        words = _words(_steering_text(request))
        cap = _cap(request)
        self.finish = "stop"
        if cap is not None and len(words) > cap:
            words, self.finish = words[:cap], "length"
        self.words = words
        self.content = self._content(words)
        if self.tool is not None:
            self.finish = "tool_calls"

    def _tool(self) -> tuple[str, str] | None:
        """The (name, JSON arguments) of the tool to call, if any."""
        tools = self.request.get("tools")
        choice = self.request.get("tool_choice")
        messages = self.request.get("messages")
        last = messages[-1] if isinstance(messages, list) and messages else None
        if not isinstance(tools, list) or not tools or choice == "none":
            return None
        if isinstance(last, dict) and last.get("role") == "tool":
            return None
        functions = [
            t["function"]
            for t in tools
            if isinstance(t, dict)
            and isinstance(t.get("function"), dict)
            and isinstance(t["function"].get("name"), str)
        ]
        if isinstance(choice, dict) and isinstance(choice.get("function"), dict):
            named = choice["function"].get("name")
            functions = [f for f in functions if f["name"] == named] or functions
        if not functions:
            return None
        function = functions[0]
        return function["name"], encode_json(_instance(function.get("parameters"), {})).decode()

    def _content(self, words: list[str]) -> str:
        fmt = self.request.get("response_format")
        if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
            spec = fmt.get("json_schema")
            schema = spec.get("schema") if isinstance(spec, dict) else None
            return encode_json(_instance(schema, {})).decode()
        if isinstance(fmt, dict) and fmt.get("type") == "json_object":
            return encode_json({"answer": " ".join(words)}).decode()
        return " ".join(words)

    def usage(self) -> dict[str, Any]:
        prompt = _prompt_tokens(self.request.get("messages"))
        completion = (len(self.words) if self.tool is None else 8) * self.n
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        }

    def _message(self) -> dict[str, Any]:
        if self.tool is not None:
            name, arguments = self.tool
            return {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": f"call_mock_{self.id[-12:]}",
                        "type": "function",
                        "function": {"name": name, "arguments": arguments},
                    }
                ],
            }
        return {"role": "assistant", "content": self.content, "refusal": None}

    def whole(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.now,
            "model": self.model,
            "system_fingerprint": "mock",
            "choices": [
                {
                    "index": i,
                    "message": self._message(),
                    "logprobs": None,
                    "finish_reason": self.finish,
                }
                for i in range(self.n)
            ],
            "usage": self.usage(),
        }

    def _chunk(self, index: int, delta: dict[str, Any], finish: str | None) -> bytes:
        return _event(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.now,
                "model": self.model,
                "system_fingerprint": "mock",
                "choices": [
                    {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
        )

    def events(self) -> tuple[bytes, ...]:
        out: list[bytes] = []
        for i in range(self.n):
            out.append(self._chunk(i, {"role": "assistant", "content": ""}, None))
            if self.tool is not None:
                name, arguments = self.tool
                call = {
                    "index": 0,
                    "id": f"call_mock_{self.id[-12:]}",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }
                out.append(self._chunk(i, {"tool_calls": [call]}, None))
                out.append(
                    self._chunk(
                        i,
                        {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]},
                        None,
                    )
                )
            else:
                pieces = self.content.split(" ") if self.words else []
                for j, piece in enumerate(pieces):
                    out.append(self._chunk(i, {"content": piece if j == 0 else " " + piece}, None))
            out.append(self._chunk(i, {}, self.finish))
        options = self.request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            out.append(
                _event(
                    {
                        "id": self.id,
                        "object": "chat.completion.chunk",
                        "created": self.now,
                        "model": self.model,
                        "system_fingerprint": "mock",
                        "choices": [],
                        "usage": self.usage(),
                    }
                )
            )
        out.append(DONE)
        return tuple(out)


class Completion:
    """A legacy text completion for one request, whole or as stream chunks."""

    def __init__(self, request: Mapping[str, Any], now: int) -> None:
        self.request = request
        self.model = str(request.get("model", "mock-chat"))
        self.id = f"cmpl-mock-{_digest(request)}"
        self.now = now
        words = _words(_steering_text(request))
        cap = _cap(request)
        self.finish = "stop"
        if cap is not None and len(words) > cap:
            words, self.finish = words[:cap], "length"
        self.words = words

    def usage(self) -> dict[str, Any]:
        prompt = _prompt_tokens(self.request.get("prompt"))
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(self.words),
            "total_tokens": prompt + len(self.words),
        }

    def _object(self, text: str, finish: str | None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "text_completion",
            "created": self.now,
            "model": self.model,
            "system_fingerprint": "mock",
            "choices": [{"text": text, "index": 0, "logprobs": None, "finish_reason": finish}],
        }

    def whole(self) -> dict[str, Any]:
        return {**self._object(" ".join(self.words), self.finish), "usage": self.usage()}

    def events(self) -> tuple[bytes, ...]:
        out = [
            _event(self._object(word if j == 0 else " " + word, None))
            for j, word in enumerate(self.words)
        ]
        out.append(_event(self._object("", self.finish)))
        options = self.request.get("stream_options")
        if isinstance(options, dict) and options.get("include_usage") is True:
            out.append(_event({**self._object("", None), "choices": [], "usage": self.usage()}))
        out.append(DONE)
        return tuple(out)


def embeddings(request: Mapping[str, Any], default_dimensions: int) -> dict[str, Any]:
    """One deterministic unit vector per input, from a hash of it."""
    raw = request.get("input")
    inputs: list[Any] = (
        raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    )
    dims = request.get("dimensions")
    if not (isinstance(dims, int) and not isinstance(dims, bool) and 0 < dims <= 4096):
        dims = default_dimensions
    as_base64 = request.get("encoding_format") == "base64"
    data = []
    for i, item in enumerate(inputs):
        vector = _vector(encode_json(item), dims)
        embedding: Any = (
            base64.b64encode(struct.pack(f"<{dims}f", *vector)).decode() if as_base64 else vector
        )
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(_prompt_tokens(item) for item in inputs)
    return {
        "object": "list",
        "data": data,
        "model": str(request.get("model", "mock-embedding")),
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _vector(seed: bytes, dims: int) -> list[float]:
    draw = random.Random(hashlib.sha256(seed).digest())
    values = [draw.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return [round(v / norm, 6) for v in values]


def list_models(models: Iterable[str], now: int) -> dict[str, Any]:
    """The mock's model list: the provider's model names, or mock ones when it lists globs."""
    names = [m for m in models if not _GLOB.search(m)] or list(DEFAULT_MODELS)
    return {
        "object": "list",
        "data": [
            {"id": name, "object": "model", "created": now, "owned_by": "proxyapi-mock"}
            for name in names
        ],
    }


def _instance(schema: Any, default: Any) -> Any:
    """An instance of a client's schema, or ``default`` for one that cannot be filled."""
    if not isinstance(schema, dict):
        return default
    try:
        return instance_of(schema)
    except (ValueError, TypeError, AttributeError, KeyError, IndexError, RecursionError):
        return default
