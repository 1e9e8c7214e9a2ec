"""The bodies a mock provider answers with, in OpenAI's shapes: chat and text completions
(whole, or as stream events), embeddings and the model list."""

from __future__ import annotations

import base64
import hashlib
import math
import random
import re
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from proxyapi.jsonio import encode_json
from proxyapi.mock.directives import (
    DirectiveError,
    directives,
    steering_text,
    whole,
    without_directives,
)
from proxyapi.mock.schema_instance import instance_of

TEXT = "This is a mock answer."
# The answer's words when a directive asks for a longer one.
FILLER = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit")
# How many words of the user's message the answer quotes.
QUOTED_WORDS = 12
# The longest answer a directive may ask for, and the most choices (n) one request gets.
# The longest answer a directive may ask for, in words over all choices (an answer is built in
# memory: 20,000 stream events are about 5 MB), and the most choices (n) one request gets.
MAX_WORDS = 20_000
MAX_CHOICES = 16
# OpenAI's own bound on one embeddings request, and a bound on the numbers in its answer.
MAX_EMBEDDING_INPUTS = 2048
MAX_EMBEDDING_VALUES = 1_000_000
DEFAULT_MODELS = ("mock-chat", "mock-embedding")
_GLOB = re.compile(r"[*?\[]")


def _digest(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(encode_json(request, sort_keys=True)).hexdigest()[:24]


def _prompt_tokens(value: Any) -> int:
    return max(1, math.ceil(len(encode_json(value)) / 4))


def _words(request: Mapping[str, Any]) -> list[str]:
    """The answer's words (before the request's token cap cuts them)."""
    quoted = steering_text(request)
    steering = directives(quoted)
    if "words" in steering:
        count = whole(steering, "words")
        if count * _choices(request) > MAX_WORDS:
            raise DirectiveError(
                f"[mock:words=N] takes at most {MAX_WORDS} words over all choices."
            )
        words = [FILLER[i % len(FILLER)] for i in range(count)]
    else:
        words = TEXT.split()
        said = without_directives(quoted).split()
        if said:
            words += ["You", "said:", *said[:QUOTED_WORDS]]
    return words


def _capped_words(request: Mapping[str, Any]) -> tuple[list[str], str]:
    """The answer's words cut to the request's token cap, and the finish reason that gives."""
    words = _words(request)
    cap = _cap(request)
    if cap is not None and len(words) > cap:
        return words[:cap], "length"
    return words, "stop"


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
        self.words, self.finish = _capped_words(request)
        self.content = self._content(self.words)
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
        self.words, self.finish = _capped_words(request)

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
    """One deterministic unit vector per input, from a hash of it; DirectiveError for more
    than a bounded answer holds."""
    raw = request.get("input")
    inputs: list[Any] = (
        raw if isinstance(raw, list) and raw and not isinstance(raw[0], int) else [raw]
    )
    dims = request.get("dimensions")
    if not (isinstance(dims, int) and not isinstance(dims, bool) and 0 < dims <= 4096):
        dims = default_dimensions
    if len(inputs) > MAX_EMBEDDING_INPUTS or len(inputs) * dims > MAX_EMBEDDING_VALUES:
        raise DirectiveError(
            f"The mock provider embeds at most {MAX_EMBEDDING_INPUTS} inputs and "
            f"{MAX_EMBEDDING_VALUES} values per request."
        )
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
