"""The Anthropic dialect: OpenAI chat requests as Messages API calls, and the answers back.

Only chat is served: Anthropic has neither embeddings nor legacy completions. No request setting
is silently lost; every top-level parameter of a chat request falls in one of four groups:

* mapped: ``model``, ``messages``, ``max_completion_tokens``/``max_tokens`` (else the provider's
  ``max_tokens``, which Anthropic requires), ``temperature`` (0 to 1 only), ``top_p``, ``stop``,
  ``user`` (as ``metadata.user_id``), ``tools``, ``tool_choice``, ``parallel_tool_calls``,
  ``stream``, and ``stream_options`` (its ``include_usage`` is honoured by the translator);
* ignored, having no effect on the answer: ``store``, ``metadata`` (OpenAI's own, for stored
  completions) and ``service_tier``;
* rejected unless at the value that asks for nothing: ``n`` (1), ``logprobs`` (false),
  ``presence_penalty`` and ``frequency_penalty`` (0), ``logit_bias`` (empty),
  ``response_format`` (``{"type": "text"}``), ``modalities`` (``["text"]``);
* rejected whenever set: ``top_logprobs``, ``seed`` (a client that sends one expects answers it
  can reproduce, and Anthropic cannot seed sampling), ``audio``, ``prediction``, and every
  parameter not named above (``functions``, ``reasoning_effort``, ...): a clear 400 beats a
  setting that quietly does nothing.

A parameter sent as null counts as absent, as it does at OpenAI. Inside ``messages``, system and
developer messages become the top-level ``system`` prompt wherever they stand; a message's
``name``, an image's ``detail`` and an assistant message's ``annotations`` have no Anthropic
equivalent and are dropped, while an assistant ``function_call`` or ``audio``, a content part
other than text or image, and a function tool with ``strict`` set are rejected.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeGuard

from proxyapi.errors import InvalidRequest, UpstreamMalformed, UpstreamStreamFailed
from proxyapi.jsonio import compact_json, encode_json
from proxyapi.providers.base import (
    USER_AGENT,
    Adapter,
    ErrorInfo,
    Operation,
    StreamTranslator,
    UpstreamReply,
    UpstreamRequest,
    Usage,
    load_json_object,
)

if TYPE_CHECKING:
    from proxyapi.config import ProviderConfig

Clock = Callable[[], float]

# Anthropic's stop_reason -> OpenAI's finish_reason; any other (or none) reads as a natural stop.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    # A server-side tool paused a long turn: what was said so far is a whole answer.
    "pause_turn": "stop",
    "refusal": "content_filter",
}
# Anthropic's error type -> OpenAI's; the Anthropic type itself is kept as the error code.
ERROR_TYPES = {
    "invalid_request_error": "invalid_request_error",
    "authentication_error": "authentication_error",
    "permission_error": "permission_error",
    "not_found_error": "not_found_error",
    "request_too_large": "invalid_request_error",
    "rate_limit_error": "rate_limit_error",
    "api_error": "server_error",
    "overloaded_error": "server_error",
}
# The type of a mid-stream error whose Anthropic type is unknown: the provider failed.
_STREAM_ERROR_TYPE = "upstream_error"
# How much of a non-JSON error body is quoted back to the client.
_ERROR_SNIPPET = 300
# Models per listing; Anthropic's default page (20) would hide the rest, 1000 is its maximum.
_MODELS_PAGE = 1000

_MAPPED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "user",
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "stream",
        "stream_options",
    }
)
_IGNORED = frozenset({"store", "metadata", "service_tier"})


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


# Parameters Anthropic cannot apply, each with the one value that asks for nothing (None: none).
_NEUTRAL: dict[str, Callable[[Any], bool] | None] = {
    "n": lambda v: v == 1 and not isinstance(v, bool),
    "logprobs": lambda v: v is False,
    "top_logprobs": None,
    "presence_penalty": _is_zero,
    "frequency_penalty": _is_zero,
    "logit_bias": lambda v: v == {},
    "response_format": lambda v: v == {"type": "text"},
    "modalities": lambda v: v == ["text"],
    "seed": None,
    "audio": None,
    "prediction": None,
}
# Why each of those cannot be applied, for the client's error message.
_WHY = {
    "n": "it returns one choice per request",
    "logprobs": "it does not return token log probabilities",
    "top_logprobs": "it does not return token log probabilities",
    "presence_penalty": "it has no presence or frequency penalty",
    "frequency_penalty": "it has no presence or frequency penalty",
    "logit_bias": "it has no logit bias",
    "response_format": "it has no JSON mode; describe the format in the prompt or use a tool",
    "modalities": "its models answer in text only",
    "seed": "its sampling cannot be seeded, so answers are not reproducible",
    "audio": "its models produce no audio",
    "prediction": "it has no predicted outputs",
    "functions": "deprecated functions are not translated; use 'tools'",
    "function_call": "deprecated functions are not translated; use 'tool_choice'",
}
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}
_DONE = b"data: [DONE]\n\n"


class AnthropicAdapter(Adapter):
    """Adapter for ``type: anthropic`` providers (the Messages API).

    ``clock`` gives the ``created`` time of translated answers; tests pass a fixed one.
    """

    def __init__(self, provider: ProviderConfig, clock: Clock = time.time) -> None:
        super().__init__(provider)
        self.clock = clock

    # ------------------------------------------------------------------ requests

    def _headers(self, stream: bool) -> dict[str, str]:
        headers = {
            "anthropic-version": self.provider.anthropic_version,
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            "user-agent": USER_AGENT,
        }
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

    def _require_chat(self, op: Operation) -> None:
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

    def build(
        self, op: Operation, body: Mapping[str, Any], model: str, stream: bool
    ) -> UpstreamRequest:
        """Build the Messages call for a chat request; see the module docstring for parameters.

        Raise InvalidRequest for another operation, or a parameter Anthropic cannot honour.
        """
        self._require_chat(op)
        self._check_parameters(body)
        system, messages = self._messages(body.get("messages"))
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": self.provider.max_tokens if max_tokens is None else max_tokens,
        }
        if system is not None:
            payload["system"] = system
        payload["messages"] = messages
        temperature = body.get("temperature")
        if temperature is not None:
            if (
                isinstance(temperature, int | float)
                and not isinstance(temperature, bool)
                and temperature > 1
            ):
                raise self._refuse(
                    "temperature",
                    f"accepts a temperature from 0 to 1, got {temperature}; OpenAI's 0 to 2 "
                    "scale is not rescaled, so send a value of at most 1.",
                )
            payload["temperature"] = temperature
        if body.get("top_p") is not None:
            payload["top_p"] = body["top_p"]
        stop = body.get("stop")
        if isinstance(stop, str):
            payload["stop_sequences"] = [stop]
        elif isinstance(stop, list) and stop:
            payload["stop_sequences"] = stop
        if body.get("user") is not None:
            payload["metadata"] = {"user_id": body["user"]}
        payload.update(self._tools(body))
        if stream:
            payload["stream"] = True
        return UpstreamRequest(
            method="POST",
            url=f"{self.provider.base_url}/v1/messages",
            headers=self._headers(stream),
            body=encode_json(payload),
            stream=stream,
        )

    def _check_parameters(self, body: Mapping[str, Any]) -> None:
        for param, value in body.items():
            if value is None or param in _MAPPED or param in _IGNORED:
                continue
            if param in _NEUTRAL:
                neutral = _NEUTRAL[param]
                if neutral is not None and neutral(value):
                    continue
            if param in _WHY:
                problem = f"cannot honour '{param}': {_WHY[param]}."
            else:
                problem = f"does not support the parameter '{param}'."
            raise self._refuse(
                param,
                f"{problem} Remove it, or use a model served by an OpenAI-compatible provider.",
            )

    def _messages(self, messages: Any) -> tuple[str | None, list[dict[str, Any]]]:
        """Split OpenAI messages into the system prompt and alternating Anthropic turns."""
        if not isinstance(messages, list):
            raise self._refuse("messages", "needs 'messages' as an array of message objects.")
        system: list[str] = []
        turns: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise self._refuse("messages", f"needs {where} to be an object.")
            role = message.get("role")
            if role in ("system", "developer"):
                text = self._text(message.get("content"), where)
                if text:
                    system.append(text)
                continue
            if role == "user":
                turn_role, blocks = "user", self._user_blocks(message.get("content"), where)
            elif role == "assistant":
                turn_role, blocks = "assistant", self._assistant_blocks(message, where)
            elif role == "tool":
                turn_role, blocks = "user", [self._tool_result(message, where)]
            else:
                raise self._refuse(
                    "messages",
                    f"cannot take {where} with role {role!r}; use system, developer, user, "
                    "assistant or tool.",
                )
            # Anthropic requires the roles to alternate: a repeated role extends the last turn.
            if turns and turns[-1]["role"] == turn_role:
                turns[-1]["content"].extend(blocks)
            else:
                turns.append({"role": turn_role, "content": blocks})
        for turn in turns:
            if turn["role"] == "user":
                # Tool results must open their user turn; sort() is stable, so order is kept.
                turn["content"].sort(key=lambda block: block.get("type") != "tool_result")
        return ("\n\n".join(system) if system else None), turns

    def _text(self, content: Any, where: str) -> str:
        """Return the text of a string or an array of text parts."""
        if isinstance(content, str):
            return content
        if content is None:
            return ""
        if not isinstance(content, list):
            raise self._refuse("messages", f"needs {where}.content to be a string or an array.")
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                kind = part.get("type") if isinstance(part, dict) else part
                raise self._refuse(
                    "messages", f"accepts only text parts in {where}.content, got {kind!r}."
                )
            text = part.get("text")
            if not isinstance(text, str):
                raise self._refuse("messages", f"needs {where}.content[{j}].text as a string.")
            texts.append(text)
        return "".join(texts)

    def _user_blocks(self, content: Any, where: str) -> list[dict[str, Any]]:
        if isinstance(content, str):
            return [{"type": "text", "text": content}]
        if not isinstance(content, list):
            raise self._refuse("messages", f"needs {where}.content to be a string or an array.")
        return [self._part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]

    def _part(self, part: Any, where: str) -> dict[str, Any]:
        """Translate one user content part into an Anthropic content block."""
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise self._refuse("messages", f"needs {where}.text as a string.")
            return {"type": "text", "text": part["text"]}
        if kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            if not isinstance(url, str):
                raise self._refuse("messages", f"needs {where}.image_url.url as a string.")
            return {"type": "image", "source": self._image_source(url, where)}
        raise self._refuse(
            "messages",
            f"cannot take content part type {kind!r} at {where}; only 'text' and 'image_url' "
            "parts are translated.",
        )

    def _image_source(self, url: str, where: str) -> dict[str, Any]:
        if url.startswith("data:"):
            header, comma, data = url[len("data:") :].partition(",")
            media_type, _, encoding = header.partition(";")
            if not comma or not media_type or encoding.split(";")[-1] != "base64":
                raise self._refuse(
                    "messages",
                    f"needs the data URL at {where} as data:<media type>;base64,<data>.",
                )
            return {"type": "base64", "media_type": media_type, "data": data}
        if url.lower().startswith(("http://", "https://")):
            return {"type": "url", "url": url}
        raise self._refuse(
            "messages", f"needs the image at {where} as an http(s) URL or a base64 data URL."
        )

    def _assistant_blocks(self, message: Mapping[str, Any], where: str) -> list[dict[str, Any]]:
        for field in ("function_call", "audio"):
            if message.get(field) is not None:
                raise self._refuse(
                    "messages",
                    f"cannot take '{field}' in {where}; send earlier tool calls as 'tool_calls'."
                    if field == "function_call"
                    else f"cannot take '{field}' in {where}; its models handle no audio.",
                )
        content = message.get("content")
        blocks: list[dict[str, Any]] = []
        if isinstance(content, list):
            for j, part in enumerate(content):
                if isinstance(part, dict) and part.get("type") == "refusal":
                    # A refusal is what the assistant said; Anthropic has only text for it.
                    part = {"type": "text", "text": part.get("refusal")}
                blocks.append(self._part(part, f"{where}.content[{j}]"))
        elif content is not None:
            blocks.append({"type": "text", "text": self._text(content, where)})
        if isinstance(message.get("refusal"), str) and not blocks:
            blocks.append({"type": "text", "text": message["refusal"]})
        # Anthropic rejects empty text blocks; OpenAI clients send "" beside tool calls.
        blocks = [b for b in blocks if not (b["type"] == "text" and not b["text"])]
        calls = message.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise self._refuse("messages", f"needs {where}.tool_calls as an array.")
        for k, call in enumerate(calls or ()):
            blocks.append(self._tool_use(call, f"{where}.tool_calls[{k}]"))
        return blocks

    def _tool_use(self, call: Any, where: str) -> dict[str, Any]:
        function = call.get("function") if isinstance(call, dict) else None
        if (
            not isinstance(function, dict)
            or not isinstance(call.get("id"), str)
            or not isinstance(function.get("name"), str)
            or call.get("type", "function") != "function"
        ):
            raise self._refuse(
                "messages", f"needs {where} as a function call with an id and a name."
            )
        arguments = function.get("arguments")
        try:
            # An empty string is how some clients write a call without arguments.
            tool_input = json.loads(arguments) if arguments else {}
        except (TypeError, ValueError):
            tool_input = None
        if not isinstance(tool_input, dict):
            raise self._refuse(
                "messages", f"needs {where}.function.arguments to be a JSON object as a string."
            )
        return {"type": "tool_use", "id": call["id"], "name": function["name"], "input": tool_input}

    def _tool_result(self, message: Mapping[str, Any], where: str) -> dict[str, Any]:
        call_id = message.get("tool_call_id")
        if not isinstance(call_id, str):
            raise self._refuse("messages", f"needs {where}.tool_call_id as a string.")
        content = message.get("content")
        result: str | list[dict[str, Any]]
        if isinstance(content, list):
            self._text(content, where)  # checks that every part is text
            result = [{"type": "text", "text": part["text"]} for part in content]
        else:
            result = self._text(content, where)
        return {"type": "tool_result", "tool_use_id": call_id, "content": result}

    def _tools(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Return the ``tools`` and ``tool_choice`` fields of the Anthropic request."""
        out: dict[str, Any] = {}
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise self._refuse("tools", "needs 'tools' as an array.")
        converted = []
        for i, tool in enumerate(tools):
            function = tool.get("function") if isinstance(tool, dict) else None
            if (
                not isinstance(function, dict)
                or tool.get("type") != "function"
                or not isinstance(function.get("name"), str)
            ):
                raise self._refuse(
                    "tools", f"translates only function tools with a name; tools[{i}] is not one."
                )
            if function.get("strict"):
                raise self._refuse(
                    "tools",
                    f"cannot honour 'strict' in tools[{i}]: its tool inputs are not "
                    "guaranteed to follow the schema.",
                )
            spec: dict[str, Any] = {"name": function["name"]}
            if function.get("description") is not None:
                spec["description"] = function["description"]
            spec["input_schema"] = function.get("parameters") or {
                "type": "object",
                "properties": {},
            }
            converted.append(spec)
        if converted:
            out["tools"] = converted
        choice = body.get("tool_choice")
        mapped: dict[str, Any] | None
        if choice is None:
            mapped = None
        elif isinstance(choice, str) and choice in _TOOL_CHOICES:
            mapped = dict(_TOOL_CHOICES[choice])
        elif (
            isinstance(choice, dict)
            and choice.get("type") == "function"
            and isinstance(choice.get("function"), dict)
            and isinstance(choice["function"].get("name"), str)
        ):
            mapped = {"type": "tool", "name": choice["function"]["name"]}
        else:
            raise self._refuse(
                "tool_choice",
                "translates 'tool_choice' only as 'auto', 'required', 'none' or "
                '{"type": "function", "function": {"name": ...}}.',
            )
        if not converted:
            if mapped is not None and mapped["type"] in ("any", "tool"):
                raise self._refuse("tool_choice", "needs 'tools' when 'tool_choice' asks for one.")
            return out  # Anthropic refuses a tool_choice without tools; "auto"/"none" mean none.
        if body.get("parallel_tool_calls") is False:
            mapped = mapped or {"type": "auto"}
            if mapped["type"] != "none":
                mapped["disable_parallel_tool_use"] = True
        if mapped is not None:
            out["tool_choice"] = mapped
        return out

    # ------------------------------------------------------------------ answers

    def parse(self, op: Operation, reply: UpstreamReply) -> tuple[bytes, Usage | None]:
        """Translate an Anthropic message into an OpenAI ``chat.completion``.

        Thinking blocks are left out: OpenAI's message has no place for them.
        """
        self._require_chat(op)
        data = load_json_object(reply.body)
        if data is None:
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' answered {reply.status} with a body that is "
                "not a JSON object."
            )
        content = data.get("content")
        if not isinstance(content, list):
            raise UpstreamMalformed(
                f"Provider '{self.provider.name}' answered {reply.status} without 'content'."
            )
        texts: list[str] = []
        calls: list[dict[str, Any]] = []
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text" and isinstance(block.get("text"), str):
                texts.append(block["text"])
            elif block.get("type") == "tool_use":
                tool_input = block.get("input")
                calls.append(
                    {
                        "id": str(block.get("id") or ""),
                        "type": "function",
                        "function": {
                            "name": str(block.get("name") or ""),
                            "arguments": compact_json(tool_input if tool_input is not None else {}),
                        },
                    }
                )
        message: dict[str, Any] = {
            "role": "assistant",
            "content": "".join(texts) if texts else None,
            "refusal": None,
        }
        if calls:
            message["tool_calls"] = calls
        answer: dict[str, Any] = {
            "id": _chat_id(data.get("id")),
            "object": "chat.completion",
            "created": int(self.clock()),
            "model": data.get("model") if isinstance(data.get("model"), str) else "",
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _finish_reason(data.get("stop_reason")),
                }
            ],
        }
        usage = None
        if isinstance(data.get("usage"), dict):
            answer["usage"] = openai_usage(data["usage"])
            usage = Usage.from_openai(answer["usage"])
        return encode_json(answer), usage

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
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
        include_usage = include_usage and not strip_usage
        model = body.get("model")
        return AnthropicStreamTranslator(
            self.provider.name,
            model if isinstance(model, str) else "",
            include_usage=include_usage,
            clock=self.clock,
        )

    def build_list_models(self) -> UpstreamRequest:
        return UpstreamRequest(
            method="GET",
            url=f"{self.provider.base_url}/v1/models?limit={_MODELS_PAGE}",
            headers=self._headers(False),
        )


class AnthropicStreamTranslator(StreamTranslator):
    """Turns one Anthropic event stream into OpenAI ``chat.completion.chunk`` events.

    Input may be cut anywhere, even inside a UTF-8 character: bytes are buffered until a whole
    event is in, and only that event is decoded. Output is whole events only. After
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
        self._buffer = bytearray()
        self._scan = 0  # where the search for the next blank line resumes
        self._held_cr = False  # a chunk ended in CR: it may be the first half of CRLF
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
        out = self._feed(chunk)
        if self._failure is not None and not out:
            raise self._failure
        return out  # a failure found in this chunk is raised on the next call

    def _feed(self, chunk: bytes) -> list[bytes]:
        if self._finished:
            return []
        if self._held_cr:
            chunk = b"\r" + chunk
        self._held_cr = chunk.endswith(b"\r")
        if self._held_cr:
            chunk = chunk[:-1]
        # SSE lines may end in CRLF, LF or CR; after this, an event ends at a blank line "\n\n".
        self._buffer += chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out: list[bytes] = []
        while not self._finished:
            end = self._buffer.find(b"\n\n", self._scan)
            if end < 0:
                self._scan = max(len(self._buffer) - 1, 0)
                break
            block = bytes(self._buffer[:end])
            del self._buffer[: end + 2]
            self._scan = 0
            out.extend(self._event(block, last=False))
        return out

    def close(self) -> list[bytes]:
        """Translate a last event that lacks its blank line; a cut-off one is dropped."""
        if self._failure is not None:
            raise self._failure
        if self._finished or not self._buffer.strip():
            return []
        block, self._buffer = bytes(self._buffer), bytearray()
        return self._event(block.rstrip(b"\n"), last=True)

    # ------------------------------------------------------------------ events

    def _event(self, block: bytes, *, last: bool) -> list[bytes]:
        name = ""
        lines: list[bytes] = []
        for line in block.split(b"\n"):
            if not line or line.startswith(b":"):
                continue
            field, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if field == b"event":
                name = value.decode("utf-8", "replace")
            elif field == b"data":
                lines.append(value)
        if not lines:
            return []
        try:
            data = json.loads(b"\n".join(lines).decode("utf-8"))
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
        kind = data["type"] if isinstance(data.get("type"), str) else name
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
            self._usage.update({k: v for k, v in usage.items() if _is_count(v)})
            self.usage = Usage.from_openai(self._openai_usage())

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
        return b"data: " + encode_json(payload) + b"\n\n"


def openai_usage(usage: Mapping[str, Any]) -> dict[str, Any]:
    """Translate Anthropic token counts into an OpenAI ``usage`` object.

    Cache writes and reads are part of the prompt, as OpenAI counts them; ``cached_tokens`` is
    reported only when Anthropic reported cache counts at all.
    """

    def count(name: str) -> int:
        value = usage.get(name)
        return value if _is_count(value) else 0

    cache_write = count("cache_creation_input_tokens")
    cache_read = count("cache_read_input_tokens")
    prompt = count("input_tokens") + cache_write + cache_read
    completion = count("output_tokens")
    out: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if any(
        _is_count(usage.get(k)) for k in ("cache_creation_input_tokens", "cache_read_input_tokens")
    ):
        out["prompt_tokens_details"] = {"cached_tokens": cache_read}
    return out


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _chat_id(message_id: Any) -> str:
    # The Anthropic id stays in it, so a client's id can be found in the provider's logs.
    return "chatcmpl-" + (message_id if isinstance(message_id, str) else "anthropic")


def _finish_reason(stop_reason: Any) -> str:
    return FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"
