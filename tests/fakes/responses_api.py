"""The fake provider's OpenAI Responses API: create, retrieve and delete responses.

:class:`ResponsesAPI` is pure: it turns a request into a :class:`Reply` (a JSON answer, or the
events of a stream) and keeps the stored responses; the handler in :mod:`tests.fakes.upstream`
does the HTTP. What the fake model says, modelled on OpenAI's API (``Response`` and
``ResponseStreamEvent`` of the official spec):

- a call of the first ``function`` or ``custom`` tool offered (or the one ``tool_choice``
  names), unless the input ends with tool outputs: a ``function_call`` with the owner's
  arguments, a ``custom_tool_call`` with :data:`PATCH_TEXT`;
- else text: a minimal instance of the schema when ``text.format`` is ``json_schema``; else
  what the tools returned (:func:`tool_said`); else the owner's reply text, prefixed
  ``Continuing <id>.`` after a ``previous_response_id``;
- before either, a ``reasoning`` item when ``reasoning`` is asked for, with
  ``encrypted_content`` when ``include`` lists ``reasoning.encrypted_content``.

Streams follow OpenAI's event order with ``sequence_number`` from 0 and no ``[DONE]``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

from proxyapi.mock.schema_instance import instance_of

PATCH_TEXT = "*** Begin Patch\n*** Add File: hello.txt\n+hello\n*** End Patch\n"
REASONING_SUMMARY = "**Answering briefly**\n\nThe question is simple; a short answer will do."
REASONING_TOKENS = 16
ARGUMENT_PIECE = 5  # characters per function_call_arguments.delta, as in the chat stream
INPUT_PIECE = 8  # characters per custom_tool_call_input.delta
TOOL_OUTPUTS = ("function_call_output", "custom_tool_call_output")
# What OpenAI says in a stream's response.failed, by error code (Codex parses the retry delay).
FAIL_MESSAGES = {
    "server_error": "An error occurred while processing your request. You can retry your "
    "request, or contact us through our help center at help.openai.com if the error persists.",
    "rate_limit_exceeded": "Rate limit reached for gpt-4o in organization org-fake on tokens "
    "per min (TPM): Limit 30000, Used 30000, Requested 100. Please try again in 1.5s.",
    "context_length_exceeded": "Your input exceeds the context window of this model. Please "
    "adjust your input and try again.",
}


@dataclass
class Reply:
    """What to answer: ``body`` as JSON with ``status``, or ``events`` as an SSE stream."""

    status: int = 200
    body: dict[str, Any] | None = None
    events: list[dict[str, Any]] | None = None


def tool_said(call_id: str, output: Any) -> str:
    """What the fake model answers once a tool ran: which call it saw, and what it returned."""
    return f"Tool {call_id} said: {text_of(output)}"


def text_of(content: Any) -> str:
    """The text of a message or tool output: a string, or the ``text`` of its parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return json.dumps(content)


def pieces(text: str, count: int) -> list[str]:
    """Split ``text`` into ``count`` pieces of near-equal length (fewer if it is shorter)."""
    count = max(1, min(count, len(text)))
    size, extra = divmod(len(text), count)
    out, start = [], 0
    for i in range(count):
        end = start + size + (i < extra)
        out.append(text[start:end])
        start = end
    return out


def frame(event: dict[str, Any]) -> bytes:
    """One SSE event as OpenAI sends it: ``event:`` names the type, ``data:`` holds it."""
    return f"event: {event['type']}\ndata: {_dumps(event)}\n\n".encode()


def encode(payload: Any) -> bytes:
    return _dumps(payload).encode()


def _dumps(payload: Any) -> str:
    # Real UTF-8 as OpenAI sends it (U+2028 too: a trap for line splitters); a lone surrogate
    # echoed from the request cannot be UTF-8, so that body falls back to \u escapes.
    text = json.dumps(payload, ensure_ascii=False)
    try:
        text.encode()
    except UnicodeEncodeError:
        return json.dumps(payload)
    return text


def error(status: int, message: str, param: str | None = None, code: str | None = None) -> Reply:
    """An OpenAI error answer."""
    etype = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": etype, "param": param, "code": code}}
    return Reply(status, body)


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class ResponsesAPI:
    """The Responses API of one fake: what its model says, and the responses it stored."""

    def __init__(self, reply_text: str, call_id: str, arguments: dict[str, Any]) -> None:
        self.reply_text = reply_text
        self.call_id = call_id
        self.arguments = json.dumps(arguments, ensure_ascii=False)
        self.stored: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def clear(self) -> None:
        with self._lock:
            self.stored.clear()

    # ---------------------------------------------------------------- routes

    def create(
        self,
        body: dict[str, Any],
        models: list[str],
        chunks: int,
        fail_after: int | None = None,
        fail_code: str = "server_error",
    ) -> Reply:
        """Answer ``POST /responses``; a stream fails after ``fail_after`` events if set."""
        problem = self._problem(body, models)
        if problem:
            return problem
        previous_id = body.get("previous_response_id")
        with self._lock:
            previous = self.stored.get(previous_id) if previous_id else None
        if previous_id and previous is None:
            return error(
                400,
                f"Previous response with id '{previous_id}' not found.",
                "previous_response_id",
                "previous_response_not_found",
            )
        start = self._envelope(body)
        output = self._output(body, previous_id)
        final = {
            **start,
            "status": "completed",
            "completed_at": int(time.time()),
            "output": output,
            "usage": self._usage(body, previous, output),
        }
        events = None
        if body.get("stream"):
            events = self._events(start, final, chunks)
            if fail_after is not None and fail_after < len(events):
                events = self._fail(events, fail_after, start, fail_code)
                final = events[-1]["response"]
        if body.get("store") is not False:
            with self._lock:
                self.stored[final["id"]] = final
        return Reply(events=events) if events is not None else Reply(body=final)

    def retrieve(self, response_id: str) -> Reply:
        with self._lock:
            found = self.stored.get(response_id)
        return Reply(body=found) if found else self._not_found(response_id)

    def delete(self, response_id: str) -> Reply:
        with self._lock:
            found = self.stored.pop(response_id, None)
        if found is None:
            return self._not_found(response_id)
        return Reply(body={"id": response_id, "object": "response", "deleted": True})

    def _not_found(self, response_id: str) -> Reply:
        return error(404, f"Response with id '{response_id}' not found.")

    def _problem(self, body: dict[str, Any], models: list[str]) -> Reply | None:
        """The first thing OpenAI would refuse in a create request; None if fine."""
        model = body.get("model")
        if model is None:
            return error(
                400, "Missing required parameter: 'model'.", "model", "missing_required_parameter"
            )
        if model not in models:
            return error(
                404,
                f"The requested model '{model}' does not exist.",
                "model",
                "model_not_found",
            )
        if "input" in body and not isinstance(body["input"], str | list):
            return error(
                400,
                "Invalid type for 'input': expected one of a string or array of input items.",
                "input",
                "invalid_type",
            )
        for i, tool in enumerate(body.get("tools") or []):
            kind = tool.get("type") if isinstance(tool, dict) else None
            if kind in ("function", "custom") and not isinstance(tool.get("name"), str):
                return error(
                    400,
                    f"Missing required parameter: 'tools[{i}].name'.",
                    f"tools[{i}].name",
                    "missing_required_parameter",
                )
        return None

    # ---------------------------------------------------------------- the response

    def _envelope(self, body: dict[str, Any]) -> dict[str, Any]:
        """The response as ``response.created`` shows it: the request echoed, no output yet."""
        reasoning = body.get("reasoning") or {}
        text = body.get("text") or {}
        envelope = {
            "id": new_id("resp_"),
            "object": "response",
            "created_at": int(time.time()),
            "status": "in_progress",
            "background": False,
            "completed_at": None,
            "error": None,
            "incomplete_details": None,
            "instructions": body.get("instructions"),
            "max_output_tokens": body.get("max_output_tokens"),
            "max_tool_calls": body.get("max_tool_calls"),
            "model": body["model"],
            "output": [],
            "parallel_tool_calls": body.get("parallel_tool_calls", True),
            "previous_response_id": body.get("previous_response_id"),
            "prompt_cache_key": body.get("prompt_cache_key"),
            "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
            "safety_identifier": body.get("safety_identifier"),
            "service_tier": "default",
            "store": body.get("store") is not False,
            "temperature": body.get("temperature", 1.0),
            "text": {
                "format": text.get("format") or {"type": "text"},
                "verbosity": text.get("verbosity", "medium"),
            },
            "tool_choice": body.get("tool_choice", "auto"),
            "tools": [_echo_tool(t) for t in body.get("tools") or []],
            "top_logprobs": body.get("top_logprobs", 0),
            "top_p": body.get("top_p", 1.0),
            "truncation": body.get("truncation", "disabled"),
            "metadata": body.get("metadata") or {},
        }
        if "user" in body:
            envelope["user"] = body["user"]
        return envelope

    def _output(self, body: dict[str, Any], previous_id: str | None) -> list[dict[str, Any]]:
        output = []
        reasoning = body.get("reasoning")
        include = body.get("include") or []
        if (reasoning and reasoning.get("effort") != "none") or (
            "reasoning.encrypted_content" in include
        ):
            item: dict[str, Any] = {
                "id": new_id("rs_"),
                "type": "reasoning",
                "summary": [{"type": "summary_text", "text": REASONING_SUMMARY}],
            }
            if "reasoning.encrypted_content" in include:
                item["encrypted_content"] = new_id("enc_")
            output.append(item)
        tool = _chosen_tool(body)
        outputs = _trailing_tool_outputs(body.get("input"))
        text_format = (body.get("text") or {}).get("format") or {}
        if tool and not outputs:
            output.append(self._call(tool))
            return output
        if text_format.get("type") == "json_schema":
            text = json.dumps(instance_of(text_format.get("schema", {})))
        elif outputs:
            text = " ".join(tool_said(o.get("call_id", ""), o.get("output")) for o in outputs)
        elif previous_id:
            text = f"Continuing {previous_id}. {self.reply_text}"
        else:
            text = self.reply_text
        output.append(
            {
                "id": new_id("msg_"),
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        )
        return output

    def _call(self, tool: dict[str, Any]) -> dict[str, Any]:
        if tool["type"] == "custom":
            return {
                "id": new_id("ctc_"),
                "type": "custom_tool_call",
                "status": "completed",
                "call_id": self.call_id,
                "name": tool["name"],
                "input": PATCH_TEXT,
            }
        return {
            "id": new_id("fc_"),
            "type": "function_call",
            "status": "completed",
            "call_id": self.call_id,
            "name": tool["name"],
            "arguments": self.arguments,
        }

    def _usage(
        self, body: dict[str, Any], previous: dict[str, Any] | None, output: list[dict[str, Any]]
    ) -> dict[str, Any]:
        prompt = [body.get("instructions"), body.get("input"), body.get("tools")]
        input_tokens = max(1, len(json.dumps(prompt)) // 4)
        if previous:  # the earlier turn is part of the context
            input_tokens += previous["usage"]["total_tokens"]
        reasoning = REASONING_TOKENS if output[0]["type"] == "reasoning" else 0
        last = output[-1]
        if last["type"] == "message":
            visible = len(last["content"][0]["text"].split())
        else:
            visible = max(1, len(last.get("arguments") or last.get("input") or "") // 4)
        return {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
            "output_tokens": visible + reasoning,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": input_tokens + visible + reasoning,
        }

    # ---------------------------------------------------------------- the stream

    def _events(
        self, start: dict[str, Any], final: dict[str, Any], chunks: int
    ) -> list[dict[str, Any]]:
        """The stream's events in OpenAI's order, numbered from 0."""
        events: list[dict[str, Any]] = [
            {"type": "response.created", "response": start},
            {"type": "response.in_progress", "response": start},
        ]
        for index, item in enumerate(final["output"]):
            events.extend(_item_events(item, index, chunks))
        events.append({"type": "response.completed", "response": final})
        return [{**e, "sequence_number": n} for n, e in enumerate(events)]

    def _fail(
        self, events: list[dict[str, Any]], after: int, start: dict[str, Any], code: str
    ) -> list[dict[str, Any]]:
        """The first ``after`` events, then ``response.failed`` (with the items done so far)."""
        kept = events[:after]
        done = [e["item"] for e in kept if e["type"] == "response.output_item.done"]
        message = FAIL_MESSAGES.get(code, f"Injected failure: {code}.")
        failed = {**start, "status": "failed", "output": done}
        failed["error"] = {"code": code, "message": message}
        return [*kept, {"type": "response.failed", "response": failed, "sequence_number": after}]


def _echo_tool(tool: Any) -> Any:
    """A tool as the response shows it: function tools with ``strict`` and ``parameters``."""
    if isinstance(tool, dict) and tool.get("type") == "function":
        return {"parameters": None, "strict": True, **tool}
    return tool


def _chosen_tool(body: dict[str, Any]) -> dict[str, Any] | None:
    """The tool the fake model calls: the one ``tool_choice`` names, else the first offered."""
    choice = body.get("tool_choice", "auto")
    callable_ = [
        t
        for t in body.get("tools") or []
        if isinstance(t, dict) and t.get("type") in ("function", "custom")
    ]
    if choice == "none" or not callable_:
        return None
    if isinstance(choice, dict) and choice.get("name"):
        named = [t for t in callable_ if t["name"] == choice["name"]]
        return named[0] if named else callable_[0]
    return callable_[0]


def _trailing_tool_outputs(items: Any) -> list[dict[str, Any]]:
    """The tool outputs that end the input (the model runs again once its tools returned)."""
    if not isinstance(items, list):
        return []
    outputs: list[dict[str, Any]] = []
    for item in reversed(items):
        if not (isinstance(item, dict) and item.get("type") in TOOL_OUTPUTS):
            break
        outputs.insert(0, item)
    return outputs


def _item_events(item: dict[str, Any], index: int, chunks: int) -> list[dict[str, Any]]:
    """The events that stream one output item: added, its deltas and dones, done."""
    at = {"item_id": item["id"], "output_index": index}
    kind = item["type"]
    if kind == "reasoning":
        opened: dict[str, Any] = {**item, "summary": []}
        body: list[dict[str, Any]] = []
        for k, part in enumerate(item["summary"]):
            where = {**at, "summary_index": k}
            body.append(
                {
                    "type": "response.reasoning_summary_part.added",
                    **where,
                    "part": {"type": "summary_text", "text": ""},
                }
            )
            for piece in pieces(part["text"], chunks):
                body.append(
                    {"type": "response.reasoning_summary_text.delta", **where, "delta": piece}
                )
            body.append(
                {"type": "response.reasoning_summary_text.done", **where, "text": part["text"]}
            )
            body.append({"type": "response.reasoning_summary_part.done", **where, "part": part})
    elif kind == "message":
        opened = {**item, "status": "in_progress", "content": []}
        body = []
        for k, part in enumerate(item["content"]):
            where = {**at, "content_index": k}
            body.append(
                {"type": "response.content_part.added", **where, "part": {**part, "text": ""}}
            )
            for piece in pieces(part["text"], chunks):
                body.append(
                    {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
                )
            body.append(
                {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}
            )
            body.append({"type": "response.content_part.done", **where, "part": part})
    elif kind == "function_call":
        opened = {**item, "status": "in_progress", "arguments": ""}
        args = item["arguments"]
        body = [
            {
                "type": "response.function_call_arguments.delta",
                **at,
                "delta": args[i : i + ARGUMENT_PIECE],
            }
            for i in range(0, len(args), ARGUMENT_PIECE)
        ]
        body.append(
            {
                "type": "response.function_call_arguments.done",
                **at,
                "name": item["name"],
                "arguments": args,
            }
        )
    else:  # custom_tool_call
        opened = {**item, "status": "in_progress", "input": ""}
        text = item["input"]
        body = [
            {
                "type": "response.custom_tool_call_input.delta",
                **at,
                "delta": text[i : i + INPUT_PIECE],
            }
            for i in range(0, len(text), INPUT_PIECE)
        ]
        body.append({"type": "response.custom_tool_call_input.done", **at, "input": text})
    return [
        {"type": "response.output_item.added", "output_index": index, "item": opened},
        *body,
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]
