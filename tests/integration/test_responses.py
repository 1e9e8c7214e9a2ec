"""The OpenAI Responses API (``/v1/responses``) through real gunicorn.

The official openai SDK (and the OpenAI Agents SDK) is the client wherever a client would be;
raw ``requests`` calls shaped like Codex's check what must survive byte for byte. Three
providers: ``openai`` (a fake OpenAI upstream serving the Responses API: pass-through),
``chathost`` (a fake OpenAI-compatible host with Chat Completions only: translation) and
``claude`` (the fake Anthropic: translation to chat, then to Messages). Every body and event is
validated against the official OpenAI schemas.
"""

from __future__ import annotations

import json
import os
import secrets as pysecrets
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest
import requests
from pydantic import BaseModel

from tests.conftest import ALICE_KEY, BOB_KEY, UPSTREAM_KEY
from tests.fakes.anthropic import FakeAnthropic
from tests.fakes.gateway import GatewayProcess
from tests.fakes.responses_api import PATCH_TEXT, REASONING_SUMMARY, tool_said
from tests.fakes.upstream import REPLY_TEXT, TOOL_ARGUMENTS, TOOL_CALL_ID, FakeUpstream, Fault
from tests.schemas import assert_valid

NATIVE = "gpt-5"  # served by `openai`, which has the Responses API
CHAT = "gpt-4o-mini"  # served by `chathost`, chat only
CLAUDE = "claude-sonnet-4-5"  # served by `claude`
CAROL_KEY = "pk-carol-" + pysecrets.token_hex(12)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "note": {"type": "string"}},
        "required": ["city", "note"],
        "additionalProperties": False,
    },
    "strict": True,
}
# Codex's freeform apply_patch tool (a Lark grammar, abridged).
APPLY_PATCH = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Use the `apply_patch` tool to edit files.",
    "format": {
        "type": "grammar",
        "syntax": "lark",
        "definition": 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
        'end_patch: "*** End Patch" LF?\nhunk: /.+/ LF\n%import common.LF\n',
    },
}
SHELL = {
    "type": "function",
    "name": "shell",
    "description": "Runs a shell command and returns its output.",
    "strict": False,
    "parameters": {
        "type": "object",
        "properties": {
            "command": {"type": "array", "items": {"type": "string"}},
            "workdir": {"type": "string"},
        },
        "required": ["command"],
        "additionalProperties": False,
    },
}


class City(BaseModel):
    name: str
    population: int
    coastal: bool


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def native_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream(
        api_key=UPSTREAM_KEY, models=[NATIVE, "gpt-5-codex"], responses_api=True
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def claude_server() -> Iterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def native(native_server: FakeUpstream) -> Iterator[FakeUpstream]:
    native_server.reset()
    yield native_server
    native_server.reset()


@pytest.fixture
def claude(claude_server: FakeAnthropic) -> Iterator[FakeAnthropic]:
    claude_server.reset()
    yield claude_server
    claude_server.reset()


def _providers(native: FakeUpstream, chathost: FakeUpstream, claude: FakeAnthropic) -> list[Any]:
    # No retries and a breaker that never opens: each test sees its own fault's effect.
    common = {
        "api_key_env": "FAKE_UPSTREAM_KEY",
        "timeout": {"connect": 2, "read": 5},
        "retry": {"max_attempts": 1},
        "breaker": {"fail_max": 10000},
    }
    return [
        {
            "name": "openai",
            "type": "openai",
            "base_url": native.base_url,
            "models": [NATIVE, "gpt-5-codex"],
            "responses_api": True,
            **common,
        },
        # A second account on the same host: a follow-up must go back to the one that has it.
        {
            "name": "openai-b",
            "type": "openai",
            "base_url": native.base_url,
            "models": [NATIVE],
            "responses_api": True,
            "priority": 2,
            **common,
        },
        {
            "name": "chathost",
            "type": "openai",
            "base_url": chathost.base_url,
            "models": [CHAT, "gpt-4o"],
            **common,
        },
        {
            "name": "claude",
            "type": "anthropic",
            "base_url": claude.base_url,
            "models": ["claude-*"],
            **common,
        },
    ]


@pytest.fixture(scope="module")
def responses_gateway(
    native_server: FakeUpstream,
    fake_server: FakeUpstream,
    claude_server: FakeAnthropic,
    start_gateway: Callable[..., GatewayProcess],
) -> GatewayProcess:
    return start_gateway(
        {
            "server": {"heartbeat_interval": 1.0},
            "cache": {"responses": "off"},
            "auth": {
                "keys": [
                    {"name": "alice", "key_env": "ALICE_KEY"},
                    {"name": "bob", "key_env": "BOB_KEY"},
                    {
                        "name": "carol",
                        "key_env": "CAROL_KEY",
                        "token_limits": ["100000/hour"],
                        "max_tokens": 300,
                    },
                ]
            },
            "providers": _providers(native_server, fake_server, claude_server),
            "models": {
                # Pass-through first, translation next: fallback crosses dialects.
                "mixed": [f"openai/{NATIVE}", f"chathost/{CHAT}"],
                "chat-first": [f"chathost/{CHAT}", f"openai-b/{NATIVE}", f"openai/{NATIVE}"],
            },
        },
        env={"BOB_KEY": BOB_KEY, "CAROL_KEY": CAROL_KEY},
    )


@pytest.fixture
def gw(
    responses_gateway: GatewayProcess,
    native: FakeUpstream,
    fake: FakeUpstream,
    claude: FakeAnthropic,
) -> GatewayProcess:
    return responses_gateway


@pytest.fixture
def client(gw: GatewayProcess, sdk: Callable[..., openai.OpenAI]) -> openai.OpenAI:
    return sdk(gw)


# ---------------------------------------------------------------------------------- helpers


def post(gw: GatewayProcess, body: dict[str, Any], key: str = ALICE_KEY, **kw: Any) -> Any:
    return requests.post(
        f"{gw.url}/v1/responses",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=15,
        **kw,
    )


def events_of(data: bytes) -> list[dict[str, Any]]:
    """The JSON data of each event in an SSE body, checked against its ``event:`` line."""
    out = []
    for block in data.replace(b"\r\n", b"\n").split(b"\n\n"):
        name, lines = None, []
        for line in block.split(b"\n"):
            if line.startswith(b"event:"):
                name = line[6:].strip().decode()
            elif line.startswith(b"data:"):
                lines.append(line[5:].removeprefix(b" "))
        if lines:
            event = json.loads(b"\n".join(lines))
            assert name == event["type"], (name, event["type"])
            out.append(event)
    return out


def check_stream(events: list[dict[str, Any]], terminal: str = "response.completed") -> None:
    """A Responses stream as clients parse it: every event valid, numbered 0, 1, 2, ... in
    order, opened by created and in_progress, ended by exactly one terminal event."""
    for event in events:
        assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events[:2]] == ["response.created", "response.in_progress"]
    ends = [e for e in events if e["type"] in TERMINAL]
    assert [e["type"] for e in ends] == [terminal] and events[-1] is ends[0]
    ids = {e["response"]["id"] for e in events if "response" in e}
    assert len(ids) == 1


TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def chat_messages(fake: FakeUpstream) -> list[dict[str, Any]]:
    posted = [r for r in fake.requests if r.path.startswith("/v1/chat/completions")]
    assert posted, "the chat host got no request"
    messages: list[dict[str, Any]] = posted[-1].body["messages"]
    return messages


# ---------------------------------------------------------------------------------- create


@pytest.mark.parametrize("model", [NATIVE, CHAT, CLAUDE])
def test_create_answers_a_response_object(
    client: openai.OpenAI, gw: GatewayProcess, model: str
) -> None:
    raw = client.responses.with_raw_response.create(
        model=model, input="Say hello", instructions="Be brief."
    )
    response = raw.parse()
    body = json.loads(raw.content)
    assert_valid("Response", body)
    assert response.status == "completed" and response.object == "response"
    assert response.output_text.startswith(REPLY_TEXT if model != CLAUDE else "")
    assert response.output_text
    assert response.usage is not None
    assert response.usage.input_tokens > 0 and response.usage.output_tokens > 0
    assert response.usage.total_tokens == response.usage.input_tokens + response.usage.output_tokens
    assert response.instructions == "Be brief."
    provider = {NATIVE: "openai", CHAT: "chathost", CLAUDE: "claude"}[model]
    assert raw.headers["X-ProxyAPI-Provider"] == provider


def test_pass_through_is_byte_for_byte(gw: GatewayProcess, native: FakeUpstream) -> None:
    # A field the gateway does not know, odd spacing and a character JSON encoders escape.
    raw = (
        '{"model": "gpt-5",  "input": "caf\u00e9 \u2028 ok", "store": false,'
        ' "include": ["reasoning.encrypted_content"], "some_future_field": {"x": [1, 2.50]}}'
    ).encode()
    answer = requests.post(
        f"{gw.url}/v1/responses",
        data=raw,
        headers={"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"},
        timeout=15,
    )
    assert answer.status_code == 200, answer.text
    assert native.requests[-1].raw == raw
    assert native.requests[-1].path == "/v1/responses"
    # The provider's answer, unchanged.
    assert answer.json()["id"] in native.responses.stored or answer.json()["store"] is False


def test_translation_sends_chat_and_answers_usage(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    response = client.responses.create(
        model=CHAT,
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [{"type": "input_text", "text": "Say hello"}]},
        ],
        max_output_tokens=50,
        temperature=0.2,
    )
    sent = fake.requests[-1].body
    assert fake.requests[-1].path == "/v1/chat/completions"
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["messages"][-1]["role"] == "user"
    assert sent["max_tokens"] == 50 and sent["temperature"] == 0.2
    assert "input" not in sent and "instructions" not in sent
    assert response.output_text == REPLY_TEXT
    usage = fake.requests[-1]  # the fake's usage: prompt from the messages, 5 words
    assert response.usage is not None and response.usage.output_tokens == len(REPLY_TEXT.split())
    assert response.usage.input_tokens_details.cached_tokens == 0
    assert response.usage.output_tokens_details.reasoning_tokens == 0
    assert usage is not None


# ---------------------------------------------------------------------------------- tools


@pytest.mark.parametrize("model", [NATIVE, CHAT, CLAUDE])
def test_function_call_round_trip(
    client: openai.OpenAI, fake: FakeUpstream, claude: FakeAnthropic, model: str
) -> None:
    first = client.responses.create(
        model=model, input="Weather in Paris?", tools=[WEATHER], store=False
    )
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert json.loads(call.arguments)["city"] == "Paris"
    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        store=False,
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "18C, sunny"},
        ],
    )
    assert second.output_text == tool_said(call.call_id, "18C, sunny") or (
        model == CLAUDE and "18C, sunny" in second.output_text
    )
    if model == CHAT:
        messages = chat_messages(fake)
        assistant = messages[-2]
        assert assistant["role"] == "assistant"
        assert assistant["tool_calls"][0]["id"] == call.call_id == TOOL_CALL_ID
        assert messages[-1] == {
            "role": "tool",
            "tool_call_id": call.call_id,
            "content": "18C, sunny",
        }
    if model == CLAUDE:
        turn = claude.requests[-1].body["messages"][-1]
        assert turn["content"][0]["type"] == "tool_result"


def test_structured_output_with_parse(client: openai.OpenAI) -> None:
    for model in (NATIVE, CHAT, CLAUDE):
        parsed = client.responses.parse(model=model, input="A city?", text_format=City, store=False)
        assert isinstance(parsed.output_parsed, City), model


def test_a_hosted_tool_is_refused_for_a_chat_host_and_served_by_openai(
    gw: GatewayProcess, native: FakeUpstream, fake: FakeUpstream
) -> None:
    body = {"model": CHAT, "input": "news?", "tools": [{"type": "web_search"}], "store": False}
    refused = post(gw, body)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["param"] == "tools" and "web_search" in error["message"]
    assert not fake.requests  # nothing was sent
    # With a provider that runs it next in line, the refusal moves the request on.
    served = post(gw, {**body, "model": "chat-first"})
    assert served.status_code == 200, served.text
    assert served.headers["X-ProxyAPI-Provider"] == "openai-b"


# ---------------------------------------------------------------------------------- streams


@pytest.mark.parametrize("model", [NATIVE, CHAT, CLAUDE])
def test_stream_with_the_sdk(client: openai.OpenAI, model: str) -> None:
    with client.responses.stream(model=model, input="Say hello", store=False) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_response()
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert "response.output_text.delta" in kinds and "response.output_item.done" in kinds
    assert final.output_text and final.status == "completed"
    assert final.usage is not None and final.usage.total_tokens > 0


@pytest.mark.parametrize("model", [NATIVE, CHAT, CLAUDE])
def test_stream_events_match_the_schema(gw: GatewayProcess, model: str) -> None:
    answer = post(gw, {"model": model, "input": "Say hello", "stream": True, "store": False})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"].startswith("text/event-stream")
    events = events_of(answer.content)
    check_stream(events)
    text = "".join(e["delta"] for e in events if e["type"] == "response.output_text.delta")
    done = [e for e in events if e["type"] == "response.output_text.done"]
    assert done and done[0]["text"] == text
    final = events[-1]["response"]
    assert final["usage"]["output_tokens"] > 0
    assert final["output"][-1]["content"][0]["text"] == text


def test_stream_tool_call_through_translation(gw: GatewayProcess) -> None:
    answer = post(
        gw, {"model": CHAT, "input": "Weather?", "tools": [WEATHER], "stream": True, "store": False}
    )
    events = events_of(answer.content)
    check_stream(events)
    kinds = [e["type"] for e in events]
    assert "response.function_call_arguments.delta" in kinds
    done = next(e for e in events if e["type"] == "response.function_call_arguments.done")
    assert json.loads(done["arguments"]) == TOOL_ARGUMENTS
    item = next(e for e in events if e["type"] == "response.output_item.done")["item"]
    assert item["type"] == "function_call" and item["call_id"] == TOOL_CALL_ID


def test_a_stream_cut_short_ends_with_response_failed(
    gw: GatewayProcess, native: FakeUpstream, fake: FakeUpstream
) -> None:
    for model, upstream in ((CHAT, fake), (NATIVE, native)):
        upstream.script(Fault(reset_after=4))
        answer = post(gw, {"model": model, "input": "Say hello", "stream": True, "store": False})
        assert answer.status_code == 200
        events = events_of(answer.content)
        check_stream(events, terminal="response.failed")
        failed = events[-1]["response"]
        assert failed["status"] == "failed"
        assert failed["error"]["code"] == "server_error"
        assert failed["id"] == events[0]["response"]["id"]


def test_the_providers_own_failure_is_relayed(gw: GatewayProcess, native: FakeUpstream) -> None:
    native.script(Fault(fail_after=5, fail_code="rate_limit_exceeded"))
    answer = post(gw, {"model": NATIVE, "input": "Say hello", "stream": True, "store": False})
    events = events_of(answer.content)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"]["code"] == "rate_limit_exceeded"


def test_failure_before_any_content_falls_back(
    gw: GatewayProcess, native: FakeUpstream, fake: FakeUpstream
) -> None:
    native.script(Fault(fail_after=2))  # created, in_progress, then response.failed
    answer = post(gw, {"model": "mixed", "input": "Say hello", "stream": True, "store": False})
    events = events_of(answer.content)
    check_stream(events)
    assert answer.headers["X-ProxyAPI-Provider"] == "chathost"
    assert answer.headers["X-ProxyAPI-Attempts"] == "2"


def test_sdk_sees_a_mid_stream_failure(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Fault(reset_after=4))
    with client.responses.stream(model=CHAT, input="Say hello", store=False) as stream:
        kinds = [event.type for event in stream]
    assert kinds[-1] == "response.failed"


# ---------------------------------------------------------------------------------- errors


def test_errors_are_openai_shaped(gw: GatewayProcess, client: openai.OpenAI) -> None:
    for body, param in (
        ({"model": CHAT}, "input"),
        ({"model": CHAT, "input": 5}, "input"),
        ({"model": CHAT, "input": ["x"]}, "input"),
        ({"model": CHAT, "input": "x", "stream": "yes"}, "stream"),
        ({"model": CHAT, "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": CHAT, "input": "x", "previous_response_id": "r\n1"}, "previous_response_id"),
    ):
        answer = post(gw, body)
        assert answer.status_code == 400, (body, answer.text)
        error = answer.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param and error["type"] == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{gw.url}/v1", api_key="wrong", max_retries=0).responses.create(
            model=CHAT, input="x"
        )


def test_upstream_429_reaches_the_sdk(client: openai.OpenAI, fake: FakeUpstream) -> None:
    # No Retry-After: the gateway would leave the shared provider alone for that long.
    fake.script(Fault(status=429))
    with pytest.raises(openai.RateLimitError):
        client.responses.create(model=CHAT, input="x", store=False)


# ---------------------------------------------------------------------------------- store


def test_follow_up_through_translation_carries_the_conversation(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    first = client.responses.create(model=CHAT, input="My name is Ada.", instructions="Be brief.")
    second = client.responses.create(
        model=CHAT, input="What is my name?", previous_response_id=first.id
    )
    messages = chat_messages(fake)
    # Instructions are not carried over (as at OpenAI); the turns are.
    assert [m["role"] for m in messages] == ["user", "assistant", "user"]
    assert messages[0]["content"] == "My name is Ada."
    assert messages[1]["content"] == first.output_text
    assert messages[2]["content"] == "What is my name?"
    assert second.previous_response_id == first.id
    third = client.responses.create(model=CHAT, input="And now?", previous_response_id=second.id)
    assert len(chat_messages(fake)) == 5
    assert third.id not in (first.id, second.id)


def test_follow_up_may_change_provider_when_the_gateway_kept_it(
    client: openai.OpenAI, fake: FakeUpstream, claude: FakeAnthropic
) -> None:
    first = client.responses.create(model=CHAT, input="My name is Ada.")
    client.responses.create(model=CLAUDE, input="What is my name?", previous_response_id=first.id)
    turns = claude.requests[-1].body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]


def test_follow_up_of_a_pass_through_response_is_pinned(
    client: openai.OpenAI, native: FakeUpstream, fake: FakeUpstream
) -> None:
    first = client.responses.create(model="mixed", input="My name is Ada.")
    assert first.id in native.responses.stored
    raw = client.responses.with_raw_response.create(
        model="chat-first", input="What is my name?", previous_response_id=first.id
    )
    # chat-first would try the chat host, then the other account: the pin sends it to the
    # provider that has the conversation.
    assert raw.headers["X-ProxyAPI-Provider"] == "openai"
    assert native.requests[-1].body["previous_response_id"] == first.id
    assert not fake.requests
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CHAT, input="?", previous_response_id=first.id)
    assert refused.value.body["param"] == "previous_response_id"  # type: ignore[index]


def test_retrieve_and_delete(client: openai.OpenAI, native: FakeUpstream) -> None:
    for model in (CHAT, NATIVE):
        made = client.responses.create(model=model, input="Say hello")
        raw = client.responses.with_raw_response.retrieve(made.id)
        got = raw.parse()
        assert got.id == made.id and got.output_text == made.output_text
        assert_valid("Response", json.loads(raw.content))
        client.responses.delete(made.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.retrieve(made.id)
        with pytest.raises(openai.NotFoundError):
            client.responses.delete(made.id)
    assert [r.method for r in native.requests][-2:] == ["GET", "DELETE"]


def test_store_false_keeps_nothing(client: openai.OpenAI) -> None:
    made = client.responses.create(model=CHAT, input="Say hello", store=False)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model=CHAT, input="?", previous_response_id=made.id)
    assert refused.value.code == "previous_response_not_found"


def test_another_key_cannot_see_or_continue_a_response(
    gw: GatewayProcess, client: openai.OpenAI, sdk: Callable[..., openai.OpenAI]
) -> None:
    made = client.responses.create(model=CHAT, input="secret plans")
    bob = sdk(gw, key=BOB_KEY)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError):
        bob.responses.create(model=CHAT, input="?", previous_response_id=made.id)
    assert client.responses.retrieve(made.id).id == made.id


def test_a_streamed_response_is_kept_before_its_last_event_arrives(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    with client.responses.stream(model=CHAT, input="My name is Ada.") as stream:
        for event in stream:
            if event.type == "response.completed":
                # The client acts on the last event at once: the follow-up finds the turn.
                follow = client.responses.create(
                    model=CHAT, input="Name?", previous_response_id=event.response.id
                )
                assert follow.previous_response_id == event.response.id
    assert [m["role"] for m in chat_messages(fake)] == ["user", "assistant", "user"]


# ---------------------------------------------------------------------------------- Codex


def codex_body(model: str, **extra: Any) -> dict[str, Any]:
    """A request shaped like Codex CLI's (codex-rs/codex-api/src/common.rs)."""
    return {
        "model": model,
        "instructions": "You are Codex, a coding agent.",
        "input": [
            {
                "type": "message",
                "role": "developer",
                "content": [
                    {"type": "input_text", "text": "<permissions>workspace-write</permissions>"}
                ],
            },
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Add hello.txt"}],
            },
        ],
        "tools": [SHELL, APPLY_PATCH],
        "tool_choice": {"type": "custom", "name": "apply_patch"},
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "stream": True,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199a5c4-conversation",
        "text": {"verbosity": "low"},
        **extra,
    }


def test_codex_request_passes_through(gw: GatewayProcess, native: FakeUpstream) -> None:
    body = codex_body("gpt-5-codex")
    raw = json.dumps(body).encode()
    answer = requests.post(
        f"{gw.url}/v1/responses",
        data=raw,
        headers={
            "Authorization": f"Bearer {ALICE_KEY}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
            "originator": "codex_cli_rs",
        },
        timeout=15,
    )
    assert native.requests[-1].raw == raw
    events = events_of(answer.content)
    check_stream(events)
    reasoning = [
        e["item"]
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "reasoning"
    ]
    assert reasoning and reasoning[0]["encrypted_content"].startswith("enc_")
    summary = "".join(
        e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta"
    )
    assert summary == REASONING_SUMMARY
    patch = next(
        e["item"]
        for e in events
        if e["type"] == "response.output_item.done" and e["item"]["type"] == "custom_tool_call"
    )
    assert patch["input"] == PATCH_TEXT
    usage = events[-1]["response"]["usage"]
    assert usage["output_tokens_details"]["reasoning_tokens"] > 0
    # The next turn replays the reasoning item with its encrypted content, unchanged.
    follow = codex_body(
        "gpt-5-codex",
        input=[
            *body["input"],
            reasoning[0],
            patch,
            {"type": "custom_tool_call_output", "call_id": patch["call_id"], "output": "Done!"},
        ],
    )
    raw = json.dumps(follow).encode()
    answer = requests.post(
        f"{gw.url}/v1/responses",
        data=raw,
        headers={"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"},
        timeout=15,
    )
    assert native.requests[-1].raw == raw
    check_stream(events_of(answer.content))


def test_codex_request_through_translation(gw: GatewayProcess, fake: FakeUpstream) -> None:
    answer = post(gw, codex_body(CHAT))
    assert answer.status_code == 200, answer.text
    sent = fake.requests[-1].body
    tools = {t["function"]["name"]: t["function"] for t in sent["tools"]}
    assert tools["apply_patch"]["parameters"]["required"] == ["input"]
    assert "*** Begin Patch" in tools["apply_patch"]["description"]  # the grammar goes along
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["messages"][0]["role"] == "system"
    assert sent["stream_options"] == {"include_usage": True}
    for dropped in ("reasoning", "include", "store", "prompt_cache_key", "text", "input"):
        assert dropped not in sent
    events = events_of(answer.content)
    check_stream(events)
    # The fake host calls the first tool offered: shell, a JSON function.
    item = next(e["item"] for e in events if e["type"] == "response.output_item.done")
    assert item["type"] == "function_call" and item["name"] == "shell"


def test_codex_request_through_translation_to_anthropic(
    gw: GatewayProcess, claude: FakeAnthropic
) -> None:
    answer = post(gw, codex_body(CLAUDE))
    assert answer.status_code == 200, answer.text
    sent = claude.requests[-1].body
    tools = {t["name"]: t for t in sent["tools"]}
    assert tools["apply_patch"]["input_schema"]["required"] == ["input"]
    assert "*** Begin Patch" in tools["apply_patch"]["description"]
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "apply_patch",
        "disable_parallel_tool_use": True,
    }
    system = sent["system"] if isinstance(sent["system"], str) else json.dumps(sent["system"])
    assert "You are Codex" in system and "workspace-write" in system
    assert sent["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Add hello.txt"}]}
    ]
    assert sent["stream"] is True
    events = events_of(answer.content)
    check_stream(events)
    # The fake Anthropic says a few words (its tool preamble), then calls the first tool.
    items = [e["item"] for e in events if e["type"] == "response.output_item.done"]
    assert [i["type"] for i in items] == ["message", "function_call"]
    assert items[1]["name"] == "shell" and json.loads(items[1]["arguments"])
    assert events[-1]["response"]["usage"]["input_tokens"] > 0


def test_custom_tool_call_maps_back_through_translation(
    client: openai.OpenAI, fake: FakeUpstream
) -> None:
    made = client.responses.create(model=CHAT, input="patch it", tools=[APPLY_PATCH], store=False)
    call = made.output[-1]
    assert call.type == "custom_tool_call" and call.name == "apply_patch"
    # The fake host answers any function with TOOL_ARGUMENTS, not {"input": ...}: the input is
    # then the arguments' text as it came, for the tool to refuse visibly.
    assert call.input == json.dumps(TOOL_ARGUMENTS, ensure_ascii=False)
    follow = client.responses.create(
        model=CHAT,
        tools=[APPLY_PATCH],
        store=False,
        input=[
            {"role": "user", "content": "patch it"},
            {
                "type": "custom_tool_call",
                "call_id": call.call_id,
                "name": "apply_patch",
                "input": PATCH_TEXT,
            },
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"},
        ],
    )
    messages = chat_messages(fake)
    arguments = json.loads(messages[-2]["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"input": PATCH_TEXT}
    assert follow.output_text == tool_said(call.call_id, "Done!")


# ---------------------------------------------------------------------------------- budgets


def test_a_budgeted_key_gets_its_output_cap(
    gw: GatewayProcess, native: FakeUpstream, fake: FakeUpstream
) -> None:
    for model, upstream in ((NATIVE, native), (CHAT, fake)):
        answer = post(gw, {"model": model, "input": "x", "store": False}, key=CAROL_KEY)
        assert answer.status_code == 200, answer.text
        sent = upstream.requests[-1].body
        assert sent.get("max_output_tokens", sent.get("max_tokens")) == 300
        assert int(answer.headers["X-RateLimit-Remaining-Tokens"]) < 100000


# ---------------------------------------------------------------------------------- clients


def test_the_agents_sdk_runs_an_agent_with_a_tool(gw: GatewayProcess, fake: FakeUpstream) -> None:
    """The OpenAI Agents SDK's default model (Responses) through the gateway, translated."""
    script = textwrap.dedent(
        """
        import asyncio, json, sys
        from agents import Agent, Runner, function_tool, set_default_openai_client
        from agents import set_tracing_disabled
        from openai import AsyncOpenAI

        set_tracing_disabled(True)
        set_default_openai_client(AsyncOpenAI(base_url=sys.argv[1], api_key=sys.argv[2]))
        calls = []

        @function_tool
        def get_weather(city: str, note: str) -> str:
            \"\"\"Weather for a city.\"\"\"
            calls.append(city)
            return "18C, sunny"

        agent = Agent(name="weather", instructions="Use the tool.", model=sys.argv[3],
                      tools=[get_weather])
        result = asyncio.run(Runner.run(agent, "Weather in Paris?"))
        print(json.dumps({"calls": calls, "final": result.final_output}))
        """
    )
    for model in (CHAT, NATIVE):
        done = subprocess.run(
            [sys.executable, "-c", script, f"{gw.url}/v1", ALICE_KEY, model],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "OPENAI_AGENTS_DISABLE_TRACING": "1"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        result = json.loads(done.stdout.strip().splitlines()[-1])
        assert result["calls"] == ["Paris"], model
        assert result["final"] == tool_said(TOOL_CALL_ID, "18C, sunny"), model


# ---------------------------------------------------------------------------------- cache, Azure


def test_a_response_stored_nowhere_is_cached_and_replayed(
    launch: Callable[..., GatewayProcess],
    native: FakeUpstream,
    fake: FakeUpstream,
    claude: FakeAnthropic,
) -> None:
    gw = launch(
        {
            "cache": {"responses": "off", "routes": {"/v1/responses": "all"}},
            "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
            "providers": _providers(native, fake, claude),
        }
    )
    body = {"model": CHAT, "input": "Say hello", "store": False}
    first = post(gw, body)
    again = post(gw, body)
    assert (first.headers["X-Cache"], again.headers["X-Cache"]) == ("MISS", "HIT")
    assert again.json() == first.json()
    streamed = post(gw, {**body, "stream": True})
    assert streamed.headers["X-Cache"] == "HIT"
    events = events_of(streamed.content)
    check_stream(events)
    assert events[-1]["response"]["output"] == first.json()["output"]
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
    # A stored response is never an earlier one: not cached.
    stored = [post(gw, {**body, "store": True}) for _ in range(2)]
    assert [r.headers["X-Cache"] for r in stored] == ["BYPASS", "BYPASS"]
    assert stored[0].json()["id"] != stored[1].json()["id"]


def test_azure_v1_responses_pass_through(
    launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    azure = FakeUpstream(
        api_key=UPSTREAM_KEY,
        azure_api_version="2024-10-21",
        deployments={"prod-5": NATIVE},
        models=[NATIVE],
        responses_api=True,
    ).start()
    try:
        gw = launch(
            {
                "cache": {"responses": "off"},
                "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
                "providers": [
                    {
                        "name": "azure",
                        "type": "azure",
                        "base_url": azure.base_url,
                        "api_key_env": "FAKE_UPSTREAM_KEY",
                        "models": [NATIVE],
                        "deployments": {NATIVE: "prod-5"},
                    }
                ],
            }
        )
        response = sdk(gw).responses.create(model=NATIVE, input="Say hello")
        assert response.output_text == REPLY_TEXT
        sent = azure.requests[-1]
        assert sent.path == "/openai/v1/responses" and sent.body["model"] == "prod-5"
        assert sent.headers.get("api-key") == UPSTREAM_KEY
    finally:
        azure.stop()


# ---------------------------------------------------------------------------------- hostile


@pytest.mark.parametrize(
    "path", ["/v1/responses/resp%0Aforged", "/v1/responses/" + "r" * 300, "/v1/responses/%00"]
)
def test_a_hostile_response_id_gets_a_clear_400(gw: GatewayProcess, path: str) -> None:
    for method in ("GET", "DELETE"):
        answer = requests.request(
            method, f"{gw.url}{path}", headers={"Authorization": f"Bearer {ALICE_KEY}"}, timeout=5
        )
        assert answer.status_code == 400
        error = answer.json()["error"]
        assert error["param"] == "response_id" and error["type"] == "invalid_request_error"
    # The id is in the access line, escaped: no line of the log starts with what followed %0A.
    assert not [line for line in gw.logs().splitlines() if line.startswith("forged")]


def test_an_unknown_response_is_an_openai_404(gw: GatewayProcess) -> None:
    answer = requests.get(
        f"{gw.url}/v1/responses/resp_nothing", headers={"Authorization": f"Bearer {ALICE_KEY}"}
    )
    assert answer.status_code == 404
    assert_valid("ErrorResponse", answer.json())
    assert "resp_nothing" in answer.json()["error"]["message"]


def test_lone_surrogates_cross_both_ways(
    gw: GatewayProcess, native: FakeUpstream, fake: FakeUpstream
) -> None:
    raw = b'{"model": "MODEL", "input": "half \\ud800 a pair", "store": false}'
    for model, upstream in ((NATIVE, native), (CHAT, fake)):
        body = raw.replace(b"MODEL", model.encode())
        answer = requests.post(
            f"{gw.url}/v1/responses",
            data=body,
            headers={"Authorization": f"Bearer {ALICE_KEY}", "Content-Type": "application/json"},
            timeout=15,
        )
        assert answer.status_code == 200, answer.text
        if upstream is native:
            assert upstream.requests[-1].raw == body
        else:
            assert b"\\ud800" in upstream.requests[-1].raw


def test_a_context_length_failure_mid_stream_says_so(
    gw: GatewayProcess, fake: FakeUpstream
) -> None:
    """Codex compacts its history on context_length_exceeded: the code must survive."""
    chunk = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": CHAT,
        "choices": [{"index": 0, "delta": {"content": "Hel"}, "finish_reason": None}],
    }
    error = {
        "error": {
            "message": "This model's maximum context length is 8192 tokens.",
            "type": "invalid_request_error",
            "code": "context_length_exceeded",
        }
    }
    body = f"data: {json.dumps(chunk)}\n\ndata: {json.dumps(error)}\n\n".encode()
    fake.script(Fault(body=body, content_type="text/event-stream"))
    answer = post(gw, {"model": CHAT, "input": "x" * 100, "stream": True, "store": False})
    events = events_of(answer.content)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "response.failed"
    failed = events[-1]["response"]
    assert failed["error"]["code"] == "context_length_exceeded"
    assert "maximum context length" in failed["error"]["message"]
    assert_valid("ResponseStreamEvent", events[-1])
