"""OpenAI chat requests as Anthropic Messages requests: what crosses, and what is refused.

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
other than text or image are rejected.

Structured output crosses too: ``response_format`` ``json_schema`` becomes Anthropic's
``output_config.format`` (``{"type": "json_schema", "schema": ...}``; Anthropic constrains the
answer to the schema whether or not ``strict`` is set, and, as OpenAI's strict mode does, wants
``additionalProperties: false`` on every object), and a function tool's ``strict`` becomes the
tool's own ``strict``. ``json_object`` (JSON, of no particular shape) has no Anthropic
equivalent, since a schema that admits any object is not accepted: the gateway asks for it in
the system prompt instead, which the model follows but is not held to.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from proxyapi.errors import InvalidRequest


def _is_zero(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == 0


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
        "response_format",
    }
)
# Appended to the system prompt for response_format json_object (see the module docstring).
JSON_OBJECT_INSTRUCTION = (
    "Respond with a single JSON object and nothing else: no prose, no code fences."
)
_IGNORED = frozenset({"store", "metadata", "service_tier"})


# Parameters Anthropic cannot apply, each with the one value that asks for nothing (None: none).
_NEUTRAL: dict[str, Callable[[Any], bool] | None] = {
    "n": lambda v: v == 1 and not isinstance(v, bool),
    "logprobs": lambda v: v is False,
    "top_logprobs": None,
    "presence_penalty": _is_zero,
    "frequency_penalty": _is_zero,
    "logit_bias": lambda v: v == {},
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
    "modalities": "its models answer in text only",
    "seed": "its sampling cannot be seeded, so answers are not reproducible",
    "audio": "its models produce no audio",
    "prediction": "it has no predicted outputs",
    "functions": "deprecated functions are not translated; use 'tools'",
    "function_call": "deprecated functions are not translated; use 'tool_choice'",
}
_TOOL_CHOICES = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


class ChatRequest:
    """Builds the Messages payload for an OpenAI chat request to one Anthropic provider."""

    def __init__(self, provider: str, default_max_tokens: int) -> None:
        self.provider = provider
        self.default_max_tokens = default_max_tokens

    def payload(self, body: Mapping[str, Any], model: str, stream: bool) -> dict[str, Any]:
        """Return the Messages request body; raise InvalidRequest for what cannot cross."""
        self._check_parameters(body)
        system, messages = self._messages(body.get("messages"))
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
        payload: dict[str, Any] = {
            "model": model,
            "max_tokens": self.default_max_tokens if max_tokens is None else max_tokens,
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
        self._response_format(body.get("response_format"), payload)
        if stream:
            payload["stream"] = True
        return payload

    def _response_format(self, value: Any, payload: dict[str, Any]) -> None:
        """Map ``response_format`` onto ``output_config.format`` (or the system prompt)."""
        if value is None or value == {"type": "text"}:
            return
        kind = value.get("type") if isinstance(value, dict) else None
        if kind == "json_object":
            system = payload.get("system")
            payload["system"] = (
                f"{system}\n\n{JSON_OBJECT_INSTRUCTION}" if system else JSON_OBJECT_INSTRUCTION
            )
            return
        spec = value.get("json_schema") if kind == "json_schema" else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise self._refuse(
                "response_format",
                'translates \'response_format\' only as {"type": "text"}, {"type": '
                '"json_object"} or {"type": "json_schema", "json_schema": {"name": ..., '
                '"schema": {...}}}.',
            )
        payload["output_config"] = {"format": {"type": "json_schema", "schema": schema}}

    def _refuse(self, param: str, message: str) -> InvalidRequest:
        return InvalidRequest(f"Provider '{self.provider}' (Anthropic) {message}", param=param)

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
            spec: dict[str, Any] = {"name": function["name"]}
            if function.get("description") is not None:
                spec["description"] = function["description"]
            spec["input_schema"] = function.get("parameters") or {
                "type": "object",
                "properties": {},
            }
            if function.get("strict"):  # Anthropic validates the tool's input against it
                spec["strict"] = True
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
