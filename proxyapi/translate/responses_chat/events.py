"""The events of a Responses stream, and a stored Response told again as one (see the package
docstring)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from proxyapi.providers.sse import sse_event
from proxyapi.translate.responses_chat.answer import build_response, echo_fields

# Where a part's text is, and the events that carry it: (field, delta event, done event).
_PARTS = {
    "output_text": ("text", "response.output_text.delta", "response.output_text.done"),
    "refusal": ("refusal", "response.refusal.delta", "response.refusal.done"),
    "reasoning_text": ("text", "response.reasoning_text.delta", "response.reasoning_text.done"),
}
# The field that carries a call's arguments, and its delta and done events.
_CALLS = {
    "function_call": (
        "arguments",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
    ),
    "custom_tool_call": (
        "input",
        "response.custom_tool_call_input.delta",
        "response.custom_tool_call_input.done",
    ),
}
# A Response's own fields; the others are what it echoes of its request.
_OWN_FIELDS = frozenset(
    {
        "id",
        "object",
        "created_at",
        "status",
        "completed_at",
        "error",
        "incomplete_details",
        "model",
        "output",
        "usage",
        "output_text",
    }
)


@dataclass
class _Item:
    """One output item as it stands: its parts, arguments or input grow with the deltas."""

    item: dict[str, Any]
    done: bool = False


class ResponseEvents:
    """Writes the events of one Responses stream, each framed as ``event: <type>`` SSE.

    It numbers the events (``sequence_number`` 0, 1, 2...) and keeps the output items. The
    first event asked of it comes after ``response.created`` and ``response.in_progress``, so
    a stream sends nothing until it has something to say. ``echo``: the request fields the
    Response reports, instead of :func:`echo_fields` of ``request``.
    """

    def __init__(
        self,
        response_id: str,
        created_at: int,
        request: Mapping[str, Any],
        model: str,
        *,
        echo: Mapping[str, Any] | None = None,
    ) -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.model = model  # the upstream may name its own until the stream starts
        self.echo = dict(echo) if echo is not None else echo_fields(request)
        self.usage: dict[str, Any] | None = None
        self.started = False
        # The Response the terminal event (completed or incomplete) carried.
        self.final: dict[str, Any] | None = None
        self._sequence = 0
        self._items: list[_Item] = []

    @property
    def output(self) -> list[dict[str, Any]]:
        """The finished output items, in order."""
        return [copy.deepcopy(entry.item) for entry in self._items if entry.done]

    def response(
        self,
        status: str,
        *,
        error: dict[str, Any] | None = None,
        incomplete_details: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The Response as it stands: in progress, it has no output and no usage yet."""
        running = status == "in_progress"
        return build_response(
            self.response_id,
            self.created_at,
            self.echo,
            self.model,
            status,
            [] if running else self.output,
            usage=None if running else self.usage,
            error=error,
            incomplete_details=incomplete_details,
        )

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``, once."""
        if self.started:
            return []
        self.started = True
        response = self.response("in_progress")
        return [
            self._event("response.created", response=response),
            self._event("response.in_progress", response=response),
        ]

    def emit(self, kind: str, **fields: Any) -> list[bytes]:
        """Any event, numbered, after the start."""
        return [*self.start(), self._event(kind, **fields)]

    # ------------------------------------------------------------------ items

    def add_item(self, item: Mapping[str, Any]) -> tuple[int, list[bytes]]:
        """Open an output item (as it stands before its deltas); return its output index."""
        out = self.start()  # the index is taken once the start is out
        index = len(self._items)
        self._items.append(_Item(copy.deepcopy(dict(item))))
        out += self.emit("response.output_item.added", output_index=index, item=dict(item))
        return index, out

    def add_part(self, index: int, part: Mapping[str, Any]) -> tuple[int, list[bytes]]:
        """Open a content part of a message or reasoning item; return its content index."""
        content = self._items[index].item.setdefault("content", [])
        content.append(copy.deepcopy(dict(part)))
        j = len(content) - 1
        return j, self.emit("response.content_part.added", **self._where(index, j), part=dict(part))

    def part_delta(self, index: int, j: int, delta: str) -> list[bytes]:
        part = self._items[index].item["content"][j]
        field, kind, _ = _PARTS[part["type"]]
        part[field] += delta
        extra: dict[str, Any] = {"logprobs": []} if part["type"] == "output_text" else {}
        return self.emit(kind, **self._where(index, j), delta=delta, **extra)

    def finish_part(self, index: int, j: int, part: Mapping[str, Any] | None = None) -> list[bytes]:
        """Close a content part: as it was streamed, or as ``part`` says."""
        content = self._items[index].item["content"]
        if part is not None:
            content[j] = copy.deepcopy(dict(part))
        final = content[j]
        field, _, kind = _PARTS[final["type"]]
        extra = {"logprobs": final.get("logprobs") or []} if final["type"] == "output_text" else {}
        return [
            *self.emit(kind, **self._where(index, j), **{field: final[field]}, **extra),
            *self.emit("response.content_part.done", **self._where(index, j), part=final),
        ]

    def add_summary(self, index: int) -> tuple[int, list[bytes]]:
        """Open a summary part of a reasoning item; return its summary index."""
        summary = self._items[index].item.setdefault("summary", [])
        summary.append({"type": "summary_text", "text": ""})
        j = len(summary) - 1
        return j, self.emit(
            "response.reasoning_summary_part.added",
            **self._where(index),
            summary_index=j,
            part={"type": "summary_text", "text": ""},
        )

    def summary_delta(self, index: int, j: int, delta: str) -> list[bytes]:
        self._items[index].item["summary"][j]["text"] += delta
        return self.emit(
            "response.reasoning_summary_text.delta",
            **self._where(index),
            summary_index=j,
            delta=delta,
        )

    def finish_summary(self, index: int, j: int) -> list[bytes]:
        part = self._items[index].item["summary"][j]
        where = {**self._where(index), "summary_index": j}
        return [
            *self.emit("response.reasoning_summary_text.done", **where, text=part["text"]),
            *self.emit("response.reasoning_summary_part.done", **where, part=dict(part)),
        ]

    def arguments_delta(self, index: int, delta: str) -> list[bytes]:
        """More arguments of a function call, or more input of a custom tool call."""
        item = self._items[index].item
        field, kind, _ = _CALLS[item["type"]]
        item[field] += delta
        return self.emit(kind, **self._where(index), delta=delta)

    def finish_arguments(self, index: int, value: str | None = None) -> list[bytes]:
        """Close a call's arguments (or input): as streamed, or as ``value`` says."""
        item = self._items[index].item
        field, _, kind = _CALLS[item["type"]]
        if value is not None:
            item[field] = value
        extra = {"name": item["name"]} if item["type"] == "function_call" else {}
        return self.emit(kind, **self._where(index), **{field: item[field]}, **extra)

    def finish_item(
        self, index: int, item: Mapping[str, Any] | None = None, status: str = "completed"
    ) -> list[bytes]:
        """Close an output item: as it was streamed, with ``status`` where the item type has
        one; or as ``item`` says."""
        entry = self._items[index]
        if item is not None:
            entry.item = copy.deepcopy(dict(item))
        elif "status" in entry.item:
            entry.item["status"] = status
        entry.done = True
        return self.emit("response.output_item.done", output_index=index, item=entry.item)

    # ------------------------------------------------------------------ the end

    def complete(self, status: str, incomplete_details: dict[str, Any] | None) -> list[bytes]:
        """``response.completed`` (or ``response.incomplete``) with the whole Response."""
        self.final = self.response(status, incomplete_details=incomplete_details)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        return self.emit(kind, response=self.final)

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        """``response.failed`` with the items finished so far, after ``response.created`` if
        the stream had not started."""
        out = []
        if not self.started:
            self.started = True
            out.append(self._event("response.created", response=self.response("in_progress")))
        out.append(self._event("response.failed", response=self.response("failed", error=error)))
        return out

    def _where(self, index: int, j: int | None = None) -> dict[str, Any]:
        where: dict[str, Any] = {"item_id": self._items[index].item["id"], "output_index": index}
        if j is not None:
            where["content_index"] = j
        return where

    def _event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, **copy.deepcopy(fields), "sequence_number": self._sequence}
        self._sequence += 1
        return sse_event(payload, kind)


def replay_response_events(response: Mapping[str, Any]) -> list[bytes]:
    """A whole Response (a stored or cached one) as the events that would have streamed it.

    One delta per text, arguments or input. Raise ValueError for a Response that is not
    completed or incomplete, or holds an item other than a message, a function or custom tool
    call, or reasoning.
    """
    if not isinstance(response, Mapping):
        raise ValueError("not a Response object")
    response_id, created_at = response.get("id"), response.get("created_at")
    status, output = response.get("status"), response.get("output")
    if not isinstance(response_id, str) or not isinstance(created_at, int | float):
        raise ValueError("a Response needs an 'id' and a 'created_at'")
    if status not in ("completed", "incomplete") or not isinstance(output, list):
        raise ValueError(f"a Response of status {status!r} cannot be replayed")
    model = response.get("model")
    echo = {k: v for k, v in response.items() if k not in _OWN_FIELDS}
    events = ResponseEvents(
        response_id, int(created_at), {}, model if isinstance(model, str) else "", echo=echo
    )
    out = events.start()
    for item in output:
        out += _replay_item(events, item)
    kind = "response.completed" if status == "completed" else "response.incomplete"
    return out + events.emit(kind, response=dict(response))


def _replay_item(events: ResponseEvents, item: Any) -> list[bytes]:
    kind = item.get("type") if isinstance(item, Mapping) else None
    if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
        raise ValueError("an output item needs a 'type' and an 'id'")
    if kind == "message":
        return _replay_message(events, item)
    if kind in _CALLS:
        field = _CALLS[kind][0]
        value = item.get(field)
        if not isinstance(value, str):
            raise ValueError(f"a {kind} item needs its {field!r} as a string")
        shell = {**item, field: ""}
        if "status" in item:
            shell["status"] = "in_progress"
        index, out = events.add_item(shell)
        if value:
            out += events.arguments_delta(index, value)
        return out + events.finish_arguments(index) + events.finish_item(index, item)
    if kind == "reasoning":
        return _replay_reasoning(events, item)
    raise ValueError(f"an output item of type {kind!r} cannot be replayed")


def _replay_message(events: ResponseEvents, item: Mapping[str, Any]) -> list[bytes]:
    parts = item.get("content")
    if not isinstance(parts, list):
        raise ValueError("a message item needs its 'content' as a list")
    index, out = events.add_item({**item, "status": "in_progress", "content": []})
    for part in parts:
        kind = part.get("type") if isinstance(part, Mapping) else None
        if kind not in ("output_text", "refusal"):
            raise ValueError(f"a message part of type {kind!r} cannot be replayed")
        field = _PARTS[kind][0]
        text = part.get(field)
        if not isinstance(text, str):
            raise ValueError(f"a {kind} part needs its {field!r} as a string")
        empty = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        j, added = events.add_part(index, empty if kind == "output_text" else {**part, field: ""})
        out += added
        if text:
            out += events.part_delta(index, j, text)
        out += events.finish_part(index, j, part)
    return out + events.finish_item(index, item)


def _replay_reasoning(events: ResponseEvents, item: Mapping[str, Any]) -> list[bytes]:
    summary, content = item.get("summary", []), item.get("content") or []
    if not isinstance(summary, list) or not isinstance(content, list):
        raise ValueError("a reasoning item needs its 'summary' and 'content' as lists")
    shell = {**item, "summary": []}
    if "content" in item:
        shell["content"] = []
    index, out = events.add_item(shell)
    for part in summary:
        text = part.get("text") if isinstance(part, Mapping) else None
        if not isinstance(text, str):
            raise ValueError("a reasoning summary part needs its 'text' as a string")
        j, added = events.add_summary(index)
        out += added
        if text:
            out += events.summary_delta(index, j, text)
        out += events.finish_summary(index, j)
    for part in content:
        text = part.get("text") if isinstance(part, Mapping) else None
        if not isinstance(part, Mapping) or part.get("type") != "reasoning_text":
            raise ValueError("a reasoning content part must be reasoning_text")
        if not isinstance(text, str):
            raise ValueError("a reasoning_text part needs its 'text' as a string")
        j, added = events.add_part(index, {"type": "reasoning_text", "text": ""})
        out += added
        if text:
            out += events.part_delta(index, j, text)
        out += events.finish_part(index, j, part)
    return out + events.finish_item(index, item)
