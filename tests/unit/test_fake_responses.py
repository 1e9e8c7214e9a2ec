"""The fake provider's Responses API and structured answers, called over real HTTP (not through
the gateway), every body and event checked against OpenAI's published schemas."""

from __future__ import annotations

import datetime
import enum
import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any, Literal

import jsonschema
import openai
import pydantic
import pytest
import requests

from proxyapi.mock.schema_instance import instance_of
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.responses_api import PATCH_TEXT, REASONING_SUMMARY, REASONING_TOKENS, pieces
from tests.fakes.upstream import (
    REPLY_TEXT,
    TOOL_ARGUMENTS,
    TOOL_CALL_ID,
    FakeUpstream,
    Fault,
)
from tests.schemas import assert_valid

KEY = "sk-fake-responses"
HEADERS = {"Authorization": f"Bearer {KEY}"}
MODEL = "gpt-4o"
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}
APPLY_PATCH = {"type": "custom", "name": "apply_patch", "description": "Edit files."}
PLACE = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "kind": {"type": "string", "enum": ["town", "city"]},
        "population": {"type": "integer", "minimum": 1000},
    },
    "required": ["city", "kind", "population"],
    "additionalProperties": False,
}
JSON_FORMAT = {"format": {"type": "json_schema", "name": "place", "schema": PLACE, "strict": True}}


@pytest.fixture(scope="module")
def server() -> Iterator[FakeUpstream]:
    fake = FakeUpstream(api_key=KEY, responses_api=True).start()
    yield fake
    fake.stop()


@pytest.fixture
def fake(server: FakeUpstream) -> Iterator[FakeUpstream]:
    server.reset()
    yield server
    server.reset()


def body(**extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "input": "Weather in Paris?", **extra}


def create(fake: FakeUpstream, payload: Any, **kw: Any) -> requests.Response:
    return requests.post(
        f"{fake.base_url}/responses", json=payload, headers=HEADERS, timeout=5, **kw
    )


def answer(fake: FakeUpstream, **extra: Any) -> dict[str, Any]:
    """A created response, checked against the spec (and the request too)."""
    payload = body(**extra)
    assert_valid("CreateResponse", payload)
    r = create(fake, payload)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/json"
    response: dict[str, Any] = r.json()
    assert_valid("Response", response)
    return response


def parse_sse(raw: bytes) -> list[dict[str, Any]]:
    """The stream's events, each checked: ``event:`` names the data's type; split on "\\n" only
    (U+2028 inside data is not a line break)."""
    events = []
    for block in raw.decode("utf-8").split("\n\n"):
        if not block:
            continue
        name, data = block.split("\n")
        assert name.startswith("event: ") and data.startswith("data: ")
        event = json.loads(data[len("data: ") :])
        assert event["type"] == name[len("event: ") :]
        events.append(event)
    return events


def stream(fake: FakeUpstream, **extra: Any) -> list[dict[str, Any]]:
    """A streamed response's events, each checked against the spec and numbered from 0."""
    r = create(fake, body(stream=True, **extra))
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("text/event-stream")
    assert b"[DONE]" not in r.content  # the Responses API sends no sentinel
    events = parse_sse(r.content)
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def wait_for(predicate: Callable[[], bool], timeout: float = 2.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)
    return predicate()


def text_of(response: dict[str, Any]) -> str:
    (message,) = [i for i in response["output"] if i["type"] == "message"]
    return "".join(part["text"] for part in message["content"])


# ---------------------------------------------------------------- plain answers


def test_text_answer(fake: FakeUpstream) -> None:
    response = answer(fake, instructions="Be brief.", metadata={"run": "1"}, temperature=0.2)
    assert response["id"].startswith("resp_") and response["object"] == "response"
    assert response["status"] == "completed" and response["error"] is None
    assert response["completed_at"] >= response["created_at"]
    assert response["model"] == MODEL
    assert (response["instructions"], response["metadata"]) == ("Be brief.", {"run": "1"})
    assert response["temperature"] == 0.2 and response["store"] is True
    (message,) = response["output"]
    assert message["type"] == "message" and message["role"] == "assistant"
    assert message["id"].startswith("msg_") and message["status"] == "completed"
    assert message["content"] == [
        {"type": "output_text", "text": REPLY_TEXT, "annotations": [], "logprobs": []}
    ]
    usage = response["usage"]
    assert usage["input_tokens"] >= 1
    assert usage["input_tokens_details"] == {"cached_tokens": 0, "cache_write_tokens": 0}
    assert usage["output_tokens"] == len(REPLY_TEXT.split())
    assert usage["output_tokens_details"] == {"reasoning_tokens": 0}
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"]


def test_requests_are_recorded_byte_for_byte(fake: FakeUpstream) -> None:
    raw = b'{"model":"gpt-4o","input":"caf\xc3\xa9 \xe2\x80\xa8","store":false}'
    r = requests.post(
        f"{fake.base_url}/responses",
        data=raw,
        headers={**HEADERS, "Content-Type": "application/json"},
        timeout=5,
    )
    assert r.status_code == 200
    (call,) = fake.calls("/v1/responses")
    assert call.method == "POST" and call.raw == raw
    assert call.body["input"] == "caf\u00e9 \u2028"
    assert call.headers["Authorization"] == f"Bearer {KEY}"


@pytest.mark.parametrize(
    ("payload", "status", "param", "code"),
    [
        ({"input": "hi"}, 400, "model", "missing_required_parameter"),
        ({"model": "gpt-9", "input": "hi"}, 404, "model", "model_not_found"),
        ({"model": MODEL, "input": 7}, 400, "input", "invalid_type"),
        (
            {"model": MODEL, "input": "hi", "tools": [{"type": "function"}]},
            400,
            "tools[0].name",
            "missing_required_parameter",
        ),
    ],
)
def test_invalid_requests_are_refused_like_openai(
    fake: FakeUpstream, payload: dict[str, Any], status: int, param: str, code: str
) -> None:
    r = create(fake, payload)
    assert r.status_code == status
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == ("invalid_request_error", param, code)
    assert_valid("ErrorResponse", r.json())


def test_wrong_key_and_unparsable_body(fake: FakeUpstream) -> None:
    r = requests.post(
        f"{fake.base_url}/responses", json=body(), headers={"Authorization": "Bearer no"}, timeout=5
    )
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = requests.post(f"{fake.base_url}/responses", data=b"{", headers=HEADERS, timeout=5)
    assert r.status_code == 400


# ---------------------------------------------------------------- tools


def test_function_tool_is_called(fake: FakeUpstream) -> None:
    r = create(fake, body(tools=[WEATHER, {**WEATHER, "name": "other"}]))
    assert "caf\u00e9 \u2028 ok".encode() in r.content  # real UTF-8, U+2028 included
    response = r.json()
    assert_valid("Response", response)
    (call,) = response["output"]
    assert call["type"] == "function_call" and call["id"].startswith("fc_")
    assert (call["call_id"], call["name"], call["status"]) == (
        TOOL_CALL_ID,
        "get_weather",
        "completed",
    )
    assert json.loads(call["arguments"]) == TOOL_ARGUMENTS
    assert response["tools"][0] == WEATHER  # echoed


def test_function_tools_are_echoed_with_strict_and_parameters(fake: FakeUpstream) -> None:
    bare = {"type": "function", "name": "now"}
    r = create(fake, body(tools=[bare]))
    assert r.status_code == 200
    assert r.json()["tools"] == [
        {"type": "function", "name": "now", "parameters": None, "strict": True}
    ]
    assert_valid("Response", r.json())


def test_custom_tool_gets_a_patch(fake: FakeUpstream) -> None:
    (call,) = answer(fake, tools=[APPLY_PATCH, WEATHER])["output"]
    assert call["type"] == "custom_tool_call" and call["id"].startswith("ctc_")
    assert (call["call_id"], call["name"], call["input"]) == (
        TOOL_CALL_ID,
        "apply_patch",
        PATCH_TEXT,
    )


def test_tool_choice(fake: FakeUpstream) -> None:
    other = {**WEATHER, "name": "other"}
    named = answer(fake, tools=[WEATHER, other], tool_choice={"type": "function", "name": "other"})
    assert named["output"][0]["name"] == "other"
    assert named["tool_choice"] == {"type": "function", "name": "other"}
    assert text_of(answer(fake, tools=[WEATHER], tool_choice="none")) == REPLY_TEXT
    # Hosted tools are not the fake's to run: it answers text.
    assert text_of(answer(fake, tools=[{"type": "web_search"}])) == REPLY_TEXT


@pytest.mark.parametrize(
    ("call", "result"),
    [
        (
            {
                "type": "function_call",
                "call_id": "call_1",
                "name": "get_weather",
                "arguments": "{}",
            },
            {"type": "function_call_output", "call_id": "call_1", "output": "18C"},
        ),
        (
            {"type": "custom_tool_call", "call_id": "call_1", "name": "apply_patch", "input": "x"},
            {"type": "custom_tool_call_output", "call_id": "call_1", "output": "18C"},
        ),
    ],
)
def test_after_a_tool_ran_the_model_answers_text(
    fake: FakeUpstream, call: dict[str, Any], result: dict[str, Any]
) -> None:
    history = [{"role": "user", "content": "Weather?"}, call, result]
    response = answer(fake, input=history, tools=[WEATHER, APPLY_PATCH])
    assert text_of(response) == "Tool call_1 said: 18C"


def test_parallel_tool_outputs_are_all_answered(fake: FakeUpstream) -> None:
    outputs = [
        {"type": "function_call_output", "call_id": "call_a", "output": "18C"},
        {
            "type": "function_call_output",
            "call_id": "call_b",
            "output": [{"type": "input_text", "text": "-3C"}],
        },
    ]
    response = answer(fake, input=outputs, tools=[WEATHER])
    assert text_of(response) == "Tool call_a said: 18C Tool call_b said: -3C"


# ---------------------------------------------------------------- reasoning and structured output


def test_reasoning_item_comes_first(fake: FakeUpstream) -> None:
    response = answer(fake, reasoning={"effort": "low", "summary": "auto"})
    reasoning, message = response["output"]
    assert reasoning["type"] == "reasoning" and reasoning["id"].startswith("rs_")
    assert reasoning["summary"] == [{"type": "summary_text", "text": REASONING_SUMMARY}]
    assert "encrypted_content" not in reasoning
    assert message["type"] == "message"
    assert response["reasoning"] == {"effort": "low", "summary": "auto"}
    usage = response["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] == REASONING_TOKENS
    assert usage["output_tokens"] == REASONING_TOKENS + len(REPLY_TEXT.split())


def test_encrypted_reasoning_when_included(fake: FakeUpstream) -> None:
    # What Codex sends: stateless (store false), with the reasoning carried encrypted.
    response = answer(
        fake,
        store=False,
        reasoning={"effort": "medium"},
        include=["reasoning.encrypted_content"],
        tools=[APPLY_PATCH],
    )
    reasoning, call = response["output"]
    assert reasoning["encrypted_content"].startswith("enc_")
    assert call["type"] == "custom_tool_call"
    assert answer(fake, include=["reasoning.encrypted_content"])["output"][0]["type"] == "reasoning"
    assert answer(fake, reasoning={"effort": "none"})["output"][0]["type"] == "message"


def test_json_schema_answer_satisfies_the_schema(fake: FakeUpstream) -> None:
    response = answer(fake, text=JSON_FORMAT)
    place = json.loads(text_of(response))
    jsonschema.validate(place, PLACE)
    assert place == {"city": "x", "kind": "town", "population": 1000}
    assert response["text"]["format"] == JSON_FORMAT["format"]
    # A structured answer stays structured after a tool ran.
    after = answer(
        fake,
        text=JSON_FORMAT,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": "c", "output": "ok"}],
    )
    jsonschema.validate(json.loads(text_of(after)), PLACE)


# ---------------------------------------------------------------- storage


def test_stored_responses_can_be_retrieved_and_deleted(fake: FakeUpstream) -> None:
    created = answer(fake)
    url = f"{fake.base_url}/responses/{created['id']}"
    got = requests.get(url, headers=HEADERS, timeout=5)
    assert got.status_code == 200 and got.json() == created
    assert fake.responses.stored[created["id"]] == created
    deleted = requests.delete(url, headers=HEADERS, timeout=5)
    assert deleted.json() == {"id": created["id"], "object": "response", "deleted": True}
    for method in (requests.get, requests.delete):
        gone = method(url, headers=HEADERS, timeout=5)
        assert gone.status_code == 404
        assert gone.json()["error"]["message"] == f"Response with id '{created['id']}' not found."
        assert_valid("ErrorResponse", gone.json())
    assert [c.method for c in fake.requests] == ["POST", "GET", "DELETE", "GET", "DELETE"]


def test_store_false_keeps_nothing(fake: FakeUpstream) -> None:
    created = answer(fake, store=False)
    assert created["store"] is False and fake.responses.stored == {}
    r = requests.get(f"{fake.base_url}/responses/{created['id']}", headers=HEADERS, timeout=5)
    assert r.status_code == 404


def test_previous_response_id(fake: FakeUpstream) -> None:
    first = answer(fake)
    second = answer(fake, previous_response_id=first["id"], input="And tomorrow?")
    assert second["previous_response_id"] == first["id"]
    assert text_of(second) == f"Continuing {first['id']}. {REPLY_TEXT}"
    # The earlier turn is part of the context.
    assert second["usage"]["input_tokens"] > first["usage"]["total_tokens"]


def test_unknown_previous_response_id_is_400(fake: FakeUpstream) -> None:
    ephemeral = answer(fake, store=False)
    for missing in ("resp_nope", ephemeral["id"]):
        r = create(fake, body(previous_response_id=missing))
        assert r.status_code == 400
        assert r.json() == {
            "error": {
                "message": f"Previous response with id '{missing}' not found.",
                "type": "invalid_request_error",
                "param": "previous_response_id",
                "code": "previous_response_not_found",
            }
        }


def test_reset_forgets_stored_responses(fake: FakeUpstream) -> None:
    answer(fake)
    fake.reset()
    assert fake.responses.stored == {}


# ---------------------------------------------------------------- streaming


def test_text_stream(fake: FakeUpstream) -> None:
    events = stream(fake)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        *["output_text.delta"] * 5,
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    created, in_progress = events[0]["response"], events[1]["response"]
    assert created["status"] == in_progress["status"] == "in_progress"
    assert created["output"] == [] and "usage" not in created
    added = events[2]["item"]
    assert added["status"] == "in_progress" and added["content"] == []
    assert events[3]["part"] == {
        "type": "output_text",
        "text": "",
        "annotations": [],
        "logprobs": [],
    }
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert "".join(deltas) == REPLY_TEXT == events[9]["text"]
    assert {e["item_id"] for e in events[3:11]} == {added["id"]}
    final = events[-1]["response"]
    assert final["status"] == "completed" and text_of(final) == REPLY_TEXT
    assert final["usage"]["output_tokens"] == len(REPLY_TEXT.split())
    assert events[-2]["item"] == final["output"][0]
    # What was streamed is what is stored.
    got = requests.get(f"{fake.base_url}/responses/{final['id']}", headers=HEADERS, timeout=5)
    assert got.json() == final
    assert wait_for(lambda: fake.streams[-1].finished is not None)
    assert fake.streams[-1].events_sent == len(events)


def test_chunks_sets_the_delta_count(fake: FakeUpstream) -> None:
    fake.script(Fault(chunks=2))
    assert types(stream(fake)).count("output_text.delta") == 2
    fake.default_chunks = 7
    assert types(stream(fake)).count("output_text.delta") == 7


def test_function_call_stream(fake: FakeUpstream) -> None:
    events = stream(fake, tools=[WEATHER])
    names = types(events)
    assert names[:3] == ["created", "in_progress", "output_item.added"]
    assert names[-3:] == ["function_call_arguments.done", "output_item.done", "completed"]
    added = events[2]["item"]
    assert added["type"] == "function_call" and added["arguments"] == ""
    assert (added["call_id"], added["name"]) == (TOOL_CALL_ID, "get_weather")
    fragments = [e["delta"] for e in events if e["type"].endswith("arguments.delta")]
    assert len(fragments) > 5 and all(len(f) <= 5 for f in fragments)
    assert json.loads("".join(fragments)) == TOOL_ARGUMENTS
    done = events[-3]
    assert done["name"] == "get_weather" and done["arguments"] == "".join(fragments)
    assert events[-1]["response"]["output"] == [events[-2]["item"]]


def test_custom_tool_call_stream(fake: FakeUpstream) -> None:
    events = stream(fake, tools=[APPLY_PATCH])
    names = types(events)
    assert names[-3:] == ["custom_tool_call_input.done", "output_item.done", "completed"]
    deltas = [e["delta"] for e in events if e["type"].endswith("custom_tool_call_input.delta")]
    assert len(deltas) > 1 and "".join(deltas) == PATCH_TEXT == events[-3]["input"]
    assert events[2]["item"]["input"] == ""


def test_reasoning_stream(fake: FakeUpstream) -> None:
    events = stream(
        fake,
        reasoning={"effort": "high", "summary": "auto"},
        include=["reasoning.encrypted_content"],
    )
    names = types(events)
    first_message = names.index("output_item.added", 3)
    assert names[2:first_message] == [
        "output_item.added",
        "reasoning_summary_part.added",
        *["reasoning_summary_text.delta"] * 5,
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
    ]
    assert events[2]["item"]["summary"] == [] and events[2]["output_index"] == 0
    deltas = [e["delta"] for e in events if e["type"].endswith("summary_text.delta")]
    assert "".join(deltas) == REASONING_SUMMARY
    reasoning = events[first_message - 1]["item"]
    assert reasoning["encrypted_content"].startswith("enc_")
    assert events[first_message]["output_index"] == 1
    assert events[-1]["response"]["output"][0] == reasoning


def test_json_schema_stream(fake: FakeUpstream) -> None:
    events = stream(fake, text=JSON_FORMAT)
    deltas = [e["delta"] for e in events if e["type"] == "response.output_text.delta"]
    assert len(deltas) == 5
    jsonschema.validate(json.loads("".join(deltas)), PLACE)


def test_openai_sdk_reads_the_fake(fake: FakeUpstream) -> None:
    client = openai.OpenAI(base_url=fake.base_url, api_key=KEY, max_retries=0)
    created = client.responses.create(model=MODEL, input="hi")
    assert created.output_text == REPLY_TEXT
    with client.responses.stream(model=MODEL, input="hi", tools=[WEATHER]) as events:
        final = events.get_final_response()
    assert final.output[0].type == "function_call"
    assert client.responses.retrieve(created.id).id == created.id
    client.responses.delete(created.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(created.id)


# ---------------------------------------------------------------- faults


@pytest.mark.parametrize("code", ["server_error", "rate_limit_exceeded"])
def test_fail_after_ends_the_stream_with_response_failed(fake: FakeUpstream, code: str) -> None:
    fake.script(Fault(fail_after=5, fail_code=code))
    r = create(fake, body(stream=True))
    assert r.status_code == 200  # the failure is in-band
    events = parse_sse(r.content)
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "failed",
    ]
    failed = events[-1]
    assert failed["sequence_number"] == 5
    assert failed["response"]["status"] == "failed" and failed["response"]["output"] == []
    assert failed["response"]["error"]["code"] == code and failed["response"]["error"]["message"]
    stored = fake.responses.stored[failed["response"]["id"]]
    assert stored["status"] == "failed"
    assert wait_for(lambda: fake.streams[-1].finished is not None)


def test_fail_after_keeps_the_items_already_done(fake: FakeUpstream) -> None:
    fake.script(Fault(fail_after=12, fail_code="context_length_exceeded"))
    events = parse_sse(
        create(fake, body(stream=True, reasoning={"effort": "low", "summary": "auto"})).content
    )
    failed = events[-1]["response"]
    assert [i["type"] for i in failed["output"]] == ["reasoning"]
    # The spec's ResponseErrorCode lists fewer codes than the live API sends (Codex handles
    # context_length_exceeded): every event up to the failure is still valid.
    assert failed["error"]["code"] == "context_length_exceeded"
    for event in events[:-1]:
        assert_valid("ResponseStreamEvent", event)


def test_stream_faults(fake: FakeUpstream) -> None:
    fake.script(Fault(end_after=4))
    assert types(parse_sse(create(fake, body(stream=True)).content))[-1] == "content_part.added"
    fake.script(Fault(reset_after=3))
    with pytest.raises((requests.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        create(fake, body(stream=True))
    fake.script(Fault(content_type="application/json"))
    assert create(fake, body(stream=True)).headers["Content-Type"] == "application/json"
    fake.script(Fault(chunk_delay=0.02))
    t0 = time.monotonic()
    create(fake, body(stream=True))
    assert time.monotonic() - t0 >= 0.02 * 12


def test_client_disconnect_is_recorded(fake: FakeUpstream) -> None:
    fake.script(Fault(stall_after=2, stall_for=0.2, chunk_delay=0.01))
    r = create(fake, body(stream=True), stream=True)
    r.raw.read(20)
    r.close()
    assert wait_for(lambda: fake.streams[-1].disconnected is not None)
    assert fake.streams[-1].finished is None


def test_answer_faults(fake: FakeUpstream) -> None:
    fake.script(
        Fault(status=429, headers={"Retry-After": "2"}), Fault(body=b"nope"), Fault(reset=True)
    )
    limited = create(fake, body())
    assert limited.status_code == 429 and limited.headers["Retry-After"] == "2"
    assert limited.json()["error"]["type"] == "rate_limit_error"
    assert create(fake, body()).content == b"nope"
    with pytest.raises(requests.ConnectionError):
        create(fake, body())
    fake.script(Fault(status=500))
    r = requests.get(f"{fake.base_url}/responses/resp_x", headers=HEADERS, timeout=5)
    assert r.status_code == 500


# ---------------------------------------------------------------- which hosts serve it


def test_chat_only_host_404s_the_responses_api() -> None:
    fake = FakeUpstream(api_key=KEY).start()
    try:
        url = f"{fake.base_url}/responses"
        r = requests.post(url, json=body(), headers=HEADERS, timeout=5)
        assert r.status_code == 404 and r.json()["error"]["code"] is None  # not model_not_found
        assert (
            requests.post(url, json=body(model="gpt-9"), headers=HEADERS, timeout=5).status_code
            == 404
        )
        for method in (requests.get, requests.delete):
            assert method(f"{url}/resp_x", headers=HEADERS, timeout=5).status_code == 404
        chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}]}
        ok = requests.post(
            f"{fake.base_url}/chat/completions", json=chat, headers=HEADERS, timeout=5
        )
        assert ok.status_code == 200
        fake.responses_api = True  # a test may switch it on ...
        assert requests.post(url, json=body(), headers=HEADERS, timeout=5).status_code == 200
        fake.reset()  # ... until reset
        assert requests.post(url, json=body(), headers=HEADERS, timeout=5).status_code == 404
    finally:
        fake.stop()


def test_azure_v1_responses_api() -> None:
    fake = FakeUpstream(
        api_key=KEY,
        azure_api_version="2024-10-21",
        deployments={"my-gpt": "gpt-4o"},
        responses_api=True,
    ).start()
    try:
        url = f"{fake.base_url}/openai/v1/responses"
        azure = {"api-key": KEY}
        r = requests.post(url, json=body(model="my-gpt"), headers=azure, timeout=5)
        assert r.status_code == 200, r.text
        assert_valid("Response", r.json())
        assert r.json()["model"] == "gpt-4o"
        assert fake.calls("/openai/v1/responses")[0].body["model"] == "my-gpt"
        rid = r.json()["id"]
        assert requests.get(f"{url}/{rid}", headers=azure, timeout=5).json()["id"] == rid
        assert requests.delete(f"{url}/{rid}", headers=azure, timeout=5).json()["deleted"] is True
        events = parse_sse(
            requests.post(
                url, json=body(model="my-gpt", stream=True), headers=azure, timeout=5
            ).content
        )
        assert types(events)[-1] == "completed"
        # Azure wants its api-key header, and serves the API at /openai/v1 only.
        assert (
            requests.post(url, json=body(model="my-gpt"), headers=HEADERS, timeout=5).status_code
            == 401
        )
        elsewhere = requests.post(
            f"{fake.base_url}/v1/responses", json=body(model="my-gpt"), headers=azure, timeout=5
        )
        assert elsewhere.status_code == 404
        unknown = requests.post(url, json=body(model="nobody"), headers=azure, timeout=5)
        assert unknown.status_code == 404
        fake.responses_api = False
        off = requests.post(url, json=body(model="my-gpt"), headers=azure, timeout=5)
        assert off.status_code == 404 and off.json()["error"]["message"] == "Resource not found"
    finally:
        fake.stop()


# ---------------------------------------------------------------- the chat and Anthropic fakes


def chat(fake: FakeUpstream, **extra: Any) -> requests.Response:
    payload = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], **extra}
    return requests.post(
        f"{fake.base_url}/chat/completions", json=payload, headers=HEADERS, timeout=5
    )


def chat_stream_text(r: requests.Response) -> str:
    text = ""
    for block in r.content.decode().split("\n\n"):
        if block and block != "data: [DONE]":
            chunk = json.loads(block.removeprefix("data: "))
            assert_valid("CreateChatCompletionStreamResponse", chunk)
            text += "".join(c["delta"].get("content") or "" for c in chunk["choices"])
    return text


CHAT_FORMAT = {
    "type": "json_schema",
    "json_schema": {"name": "place", "schema": PLACE, "strict": True},
}
CHAT_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": PLACE}}


def test_chat_json_schema_answer(fake: FakeUpstream) -> None:
    r = chat(fake, response_format=CHAT_FORMAT)
    assert_valid("CreateChatCompletionResponse", r.json())
    content = r.json()["choices"][0]["message"]["content"]
    assert content == json.dumps(instance_of(PLACE))
    jsonschema.validate(json.loads(content), PLACE)
    streamed = chat_stream_text(chat(fake, response_format=CHAT_FORMAT, stream=True))
    assert streamed == content
    # Tools still come first.
    called = chat(fake, response_format=CHAT_FORMAT, tools=[CHAT_TOOL]).json()["choices"][0]
    assert called["finish_reason"] == "tool_calls"


def test_chat_answers_text_after_a_tool_message(fake: FakeUpstream) -> None:
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_9",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_9", "content": "18C"},
    ]
    choice = chat(fake, messages=history, tools=[CHAT_TOOL]).json()["choices"][0]
    assert choice["finish_reason"] == "stop"
    assert choice["message"]["content"] == "Tool call_9 said: 18C"
    streamed = chat(fake, messages=history, tools=[CHAT_TOOL], stream=True)
    assert chat_stream_text(streamed) == "Tool call_9 said: 18C"
    # A user turn after the tool's: the default answer again.
    later = [*history, {"role": "user", "content": "Thanks"}]
    assert chat(fake, messages=later).json()["choices"][0]["message"]["content"] == REPLY_TEXT


@pytest.fixture(scope="module")
def claude() -> Iterator[FakeAnthropic]:
    fake = FakeAnthropic(api_key=KEY).start()
    yield fake
    fake.stop()


def claude_text(claude: FakeAnthropic, **extra: Any) -> str:
    payload = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }
    headers = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
    r = requests.post(claude.messages_url, json=payload, headers=headers, timeout=5)
    assert r.status_code == 200, r.text
    return "".join(b["text"] for b in r.json()["content"] if b["type"] == "text")


def test_anthropic_structured_output_and_tool_results(claude: FakeAnthropic) -> None:
    structured = claude_text(
        claude, output_config={"format": {"type": "json_schema", "schema": PLACE}}
    )
    assert structured == json.dumps(instance_of(PLACE))
    history = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_9", "name": "w", "input": {}}],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_9",
                    "content": [{"type": "text", "text": "5C"}],
                }
            ],
        },
    ]
    tools = [{"name": "w", "input_schema": {"type": "object"}}]
    assert claude_text(claude, messages=history, tools=tools) == "Tool toolu_9 said: 5C"


# ---------------------------------------------------------------- schema_instance


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(pydantic.BaseModel):
    street: str
    zip_code: str | None = None
    kind: Literal["home", "work"] = "home"


class Person(pydantic.BaseModel):
    name: str = pydantic.Field(min_length=3, max_length=10)
    age: int = pydantic.Field(ge=18, le=130)
    score: float = pydantic.Field(gt=2.5)
    color: Color
    addresses: list[Address]
    primary: Address | None = None
    tags: dict[str, int] = {}
    pair: tuple[int, str]
    born: datetime.date
    seen: datetime.datetime
    ident: uuid.UUID
    email_like: pydantic.AnyUrl
    active: bool = False
    anything: Any = None


class Node(pydantic.BaseModel):
    label: str
    children: list[Node] = []
    parent: Node | None = None


@pytest.mark.parametrize("model", [Person, Address, Node])
@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_instance_of_pydantic_schemas(model: type[pydantic.BaseModel], mode: Any) -> None:
    schema = model.model_json_schema(mode=mode)
    instance = instance_of(schema)
    jsonschema.validate(instance, schema)
    model.model_validate_json(json.dumps(instance))


def test_instance_of_fills_every_property() -> None:
    person = instance_of(Person.model_json_schema())
    assert set(person) == set(Person.model_fields)
    assert person["color"] == "red" and person["age"] == 18 and person["score"] > 2.5
    assert person["name"] == "xxx" and person["primary"]["street"] == "x"
    assert person["addresses"] == [{"street": "x", "zip_code": "x", "kind": "home"}]
    assert person["pair"] == [1, "x"] and person["active"] is True
    node = instance_of(Node.model_json_schema())
    assert node == {"label": "x", "children": [], "parent": None}


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"type": "string"}, "x"),
        ({"type": "string", "const": "fixed"}, "fixed"),
        ({"type": "integer", "enum": [3, 4]}, 3),
        ({"type": "integer", "minimum": 5}, 5),
        ({"type": "integer", "exclusiveMinimum": 5}, 6),
        ({"type": "number", "maximum": 0.5}, 0.5),
        ({"type": "boolean"}, True),
        ({"type": "null"}, None),
        ({"type": ["null", "integer"]}, 1),
        ({"anyOf": [{"type": "null"}, {"type": "string"}]}, "x"),
        ({"oneOf": [{"type": "integer"}, {"type": "string"}]}, 1),
        ({"type": "array", "items": {"type": "integer"}}, [1]),
        ({"type": "array", "items": {"type": "string"}, "minItems": 2}, ["x", "x"]),
        ({"type": "object"}, {}),
        ({"type": "object", "properties": {"a": {"type": "string"}}}, {"a": "x"}),
        (
            {
                "definitions": {"A": {"type": "object", "properties": {"b": {"type": "integer"}}}},
                "type": "object",
                "properties": {"a": {"$ref": "#/definitions/A"}},
            },
            {"a": {"b": 1}},
        ),
        (
            {"allOf": [{"properties": {"a": {"type": "integer"}}}, {"properties": {"b": {}}}]},
            {"a": 1, "b": "x"},
        ),
    ],
)
def test_instance_of_small_schemas(schema: dict[str, Any], expected: Any) -> None:
    assert instance_of(schema) == expected
    jsonschema.validate(expected, schema)


def test_instance_of_refuses_an_endless_schema() -> None:
    schema = {
        "$defs": {
            "Loop": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Loop"}},
                "required": ["next"],
            }
        },
        "$ref": "#/$defs/Loop",
    }
    with pytest.raises(ValueError, match="contains itself"):
        instance_of(schema)


def test_pieces() -> None:
    assert pieces("abcdefghij", 3) == ["abcd", "efg", "hij"]
    assert pieces("ab", 5) == ["a", "b"]
    assert pieces("abc", 0) == ["abc"]
