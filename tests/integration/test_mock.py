"""The mock provider under real gunicorn, set up from the environment alone (the README's
"try it without a provider key"), with the official openai and anthropic SDKs as clients."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import anthropic
import openai
import pytest
import requests

from tests.conftest import ALICE_KEY
from tests.fakes.gateway import GatewayProcess

MOCK_ENV = {"PROXYAPI_KEYS": ALICE_KEY, "PROXYAPI_MOCK": "1"}
WEATHER: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}


@pytest.fixture(scope="module")
def mock_gateway(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    return start_gateway(None, env=MOCK_ENV)


def test_the_openai_sdk_gets_chat_streams_tools_embeddings_and_models(
    mock_gateway: GatewayProcess, sdk: Callable[..., openai.OpenAI]
) -> None:
    client = sdk(mock_gateway)
    said = [{"role": "user", "content": "Hi from the SDK"}]
    chat = client.chat.completions.create(model="gpt-4o-mini", messages=said)  # type: ignore[arg-type]
    text = chat.choices[0].message.content
    assert text == "This is a mock answer. You said: Hi from the SDK"
    assert chat.usage is not None and chat.usage.completion_tokens == len(text.split())
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=said,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None
    called = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=said,  # type: ignore[arg-type]
        tools=[WEATHER],
    )
    (call,) = called.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather"  # type: ignore[union-attr]
    assert set(json.loads(call.function.arguments)) == {"city"}  # type: ignore[union-attr]
    # The SDK asks for base64 unless told otherwise, and decodes it.
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [len(d.embedding) for d in vectors.data] == [8, 8]
    assert {"mock-chat", "mock-embedding"} <= {m.id for m in client.models.list()}
    answer = client.responses.create(model="gpt-4o-mini", input="Hi from Responses")
    assert answer.output_text == "This is a mock answer. You said: Hi from Responses"


def test_the_anthropic_sdk_gets_messages_and_streams(mock_gateway: GatewayProcess) -> None:
    client = anthropic.Anthropic(
        base_url=mock_gateway.url, api_key=ALICE_KEY, max_retries=0, timeout=15
    )
    try:
        said: Any = [{"role": "user", "content": "Hi from Claude's SDK"}]
        message = client.messages.create(model="claude-sonnet-4-5", max_tokens=100, messages=said)
        assert message.content[0].text == (  # type: ignore[union-attr]
            "This is a mock answer. You said: Hi from Claude's SDK"
        )
        with client.messages.stream(
            model="claude-sonnet-4-5", max_tokens=100, messages=said
        ) as stream:
            streamed = "".join(stream.text_stream)
        assert streamed == message.content[0].text  # type: ignore[union-attr]
    finally:
        client.close()


def test_a_client_leaving_a_stalled_mock_stream_ends_it(
    launch: Callable[..., GatewayProcess],
) -> None:
    config = {
        "server": {"heartbeat_interval": 0.5},
        "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
        "providers": [{"name": "mock", "type": "mock"}],
    }
    gw = launch(config)
    body = {
        "model": "m",
        "stream": True,
        "messages": [{"role": "user", "content": "[mock:stall=30,after=2]"}],
    }
    headers = {"Authorization": f"Bearer {ALICE_KEY}"}
    url = f"{gw.url}/v1/chat/completions"
    with requests.post(url, json=body, headers=headers, stream=True, timeout=5) as r:
        assert r.status_code == 200
        assert next(r.iter_lines()).startswith(b"data: ")
        assert "proxyapi_streams_in_flight 1.0" in requests.get(f"{gw.url}/metrics", timeout=5).text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        metrics = requests.get(f"{gw.url}/metrics", timeout=5).text
        if "proxyapi_streams_in_flight 0.0" in metrics:
            return
        time.sleep(0.2)
    pytest.fail(f"the stream was still open 10 s after its client left:\n{metrics}")
