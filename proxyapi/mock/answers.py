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

import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from proxyapi.config.model import MockConfig, MockFailure
from proxyapi.dialects.shapes import openai_error
from proxyapi.jsonio import encode_json
from proxyapi.mock.bodies import Chat, Completion, embeddings, list_models
from proxyapi.mock.directives import DirectiveError, directives, number, steering_text, whole
from proxyapi.providers.base import load_json_object


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
    payload = openai_error(message, kind, None, code)
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
    request = load_json_object(body or b"")
    if request is None:
        return error(400, "The request body must be a JSON object.", "invalid_request_error")
    faults = directives(steering_text(request))
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
    pace = number(faults, "tokens_per_second", config.tokens_per_second)
    interval = 1 / pace if pace > 0 else 0.0
    latency = number(faults, "latency", config.latency)
    if not stream:
        latency += tokens * interval
        interval = 0.0
    headers = {"Content-Type": "text/event-stream" if stream else "application/json"}
    delivered = Plan(200, headers, parts, latency, interval)
    return _apply(delivered, fault) if fault is not None else delivered


def _json(payload: Any) -> Plan:
    return Plan(200, {"Content-Type": "application/json"}, (encode_json(payload),))


def _apply(delivered: Plan, fault: MockFailure) -> Plan:
    if fault.status is not None:
        failed = error(
            fault.status,
            f"The mock provider failed this call with {fault.status}, as told to (mock.failures "
            "or a [mock:...] directive).",
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
        status = whole(steering, "status")
        if not 400 <= status <= 599:
            raise DirectiveError("[mock:status=N] takes an HTTP error status from 400 to 599.")
        retry_after = number(steering, "retry_after", -1.0)
        return MockFailure(
            1.0, status=status, retry_after=retry_after if retry_after >= 0 else None
        )
    if "reset" in steering:
        return MockFailure(1.0, reset=True)
    if "stall" in steering:
        return MockFailure(
            1.0, stall=number(steering, "stall", 0.0), after=whole(steering, "after", 0)
        )
    if "cut_after" in steering:
        return MockFailure(1.0, cut_after=whole(steering, "cut_after"))
    if draw is not None:
        for failure in failures:
            if draw.random() < failure.rate:
                return failure
    return None
