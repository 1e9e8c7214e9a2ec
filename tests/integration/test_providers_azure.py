"""Azure OpenAI and OpenAI-compatible presets through real gunicorn, with the openai SDK."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import openai
import pytest

from tests.conftest import UPSTREAM_KEY
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import (
    AZURE_CONTENT_FILTER_ERROR,
    REPLY_TEXT,
    TOOL_ARGUMENTS,
    FakeUpstream,
    Fault,
)

API_VERSION = "2024-10-21"
MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def azure_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream(
        api_key=UPSTREAM_KEY,
        azure_api_version=API_VERSION,
        deployments={"mini-prod": "gpt-4o-mini", "embed-prod": "text-embedding-3-small"},
    ).start()
    yield server
    server.stop()


@pytest.fixture
def azure(azure_server: FakeUpstream) -> Iterator[FakeUpstream]:
    azure_server.reset()
    yield azure_server


def config_for(provider: dict[str, Any]) -> dict[str, Any]:
    return {
        "auth": {"keys": [{"name": "alice", "key_env": "ALICE_KEY"}]},
        "providers": [
            {"api_key_env": "FAKE_UPSTREAM_KEY", "retry": {"max_attempts": 1}, **provider}
        ],
        "cache": {"responses": "off"},
    }


@pytest.fixture(scope="module")
def azure_gateway(
    azure_server: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> GatewayProcess:
    return start_gateway(
        config_for(
            {
                "name": "azure",
                "type": "azure",
                "base_url": azure_server.base_url,
                "api_version": API_VERSION,
                "models": ["gpt-4o-mini", "text-embedding-3-small"],
                "deployments": {"gpt-4o-mini": "mini-prod", "text-embedding-3-small": "embed-prod"},
            }
        )
    )


@pytest.fixture
def client(
    azure: FakeUpstream, azure_gateway: GatewayProcess, sdk: Callable[..., openai.OpenAI]
) -> openai.OpenAI:
    return sdk(azure_gateway)


def test_azure_chat_goes_to_the_deployment_with_api_key(
    client: openai.OpenAI, azure: FakeUpstream
) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == REPLY_TEXT
    # Azure's content-filter results pass through as extra fields.
    assert completion.model_extra is not None and "prompt_filter_results" in completion.model_extra
    (call,) = azure.calls()
    assert call.path == f"/openai/deployments/mini-prod/chat/completions?api-version={API_VERSION}"
    assert call.headers["api-key"] == UPSTREAM_KEY and "Authorization" not in call.headers


def test_azure_stream_and_embeddings(client: openai.OpenAI, azure: FakeUpstream) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[0].choices == []  # Azure's prompt-filter chunk
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == (
        "tok0 tok1 tok2 tok3 tok4 "
    )
    assert chunks[-1].usage is not None
    vectors = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(vectors.data) == 2
    assert azure.calls()[-1].path.startswith("/openai/deployments/embed-prod/embeddings?")


def test_azure_content_filter_is_relayed_in_openai_shape(
    client: openai.OpenAI, azure: FakeUpstream
) -> None:
    azure.script(Fault(status=400, body=AZURE_CONTENT_FILTER_ERROR))
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.code == "content_filter"
    assert info.value.param == "prompt"
    assert "content management policy" in info.value.message


def test_openrouter_style_preset_sends_its_extra_headers(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    gw = launch(
        config_for(
            {
                "name": "openrouter",
                "type": "openai",
                "base_url": fake.base_url,
                "models": ["gpt-4o-mini"],
                "headers": {"HTTP-Referer": "https://example.com/app", "X-Title": "Example app"},
            }
        )
    )
    client = sdk(gw)
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    sent = fake.calls()[0].headers
    assert sent["HTTP-Referer"] == "https://example.com/app" and sent["X-Title"] == "Example app"
    assert sent["Authorization"] == f"Bearer {UPSTREAM_KEY}"


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_azure_tool_calls_both_ways(client: openai.OpenAI, azure: FakeUpstream) -> None:
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL]
    )
    (call,) = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == TOOL_ARGUMENTS
    assert azure.calls()[0].body["tools"] == [WEATHER_TOOL]  # passed through unchanged
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=MESSAGES, tools=[WEATHER_TOOL]
    ) as stream:
        final = stream.get_final_completion()
    (streamed,) = final.choices[0].message.tool_calls or []
    assert streamed.id == call.id and json.loads(streamed.function.arguments) == TOOL_ARGUMENTS
    assert final.choices[0].finish_reason == "tool_calls"


def test_a_model_name_cannot_move_the_azure_url_path(
    azure: FakeUpstream, launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    gw = launch(
        config_for({"name": "azure", "type": "azure", "base_url": azure.base_url, "models": ["*"]})
    )
    client = sdk(gw)
    for model in ("..", ".", "../../openai/deployments/mini-prod", "a?api-version=1", "%2e%2e"):
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(model=model, messages=MESSAGES)
        assert info.value.body["param"] == "model"  # type: ignore[index]
    assert not azure.calls()
    client.chat.completions.create(model="mini-prod", messages=MESSAGES)
    assert azure.calls()[0].path.startswith("/openai/deployments/mini-prod/chat/completions?")
