"""Routing across two real providers (two fakes) through real gunicorn."""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator

import openai
import pytest

from tests.conftest import base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]
SECOND_KEY = "sk-second-" + secrets.token_hex(8)


@pytest.fixture(scope="module")
def second() -> Iterator[FakeUpstream]:
    server = FakeUpstream(
        api_key=SECOND_KEY, models=["gpt-4o-mini", "mistral-small", "llama3"]
    ).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def two_provider_gateway(
    fake_server: FakeUpstream, second: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> GatewayProcess:
    config = base_config(fake_server)
    config["providers"][0]["priority"] = 2
    config["providers"].append(
        {
            "name": "second",
            "type": "openai",
            "base_url": second.base_url,
            "api_key_env": "SECOND_KEY",
            "models": ["gpt-4o-mini", "mistral-*"],
            "priority": 1,
        }
    )
    return start_gateway(config, env={"SECOND_KEY": SECOND_KEY})


@pytest.fixture
def client(
    two_provider_gateway: GatewayProcess,
    fake: FakeUpstream,
    second: FakeUpstream,
    sdk: Callable[..., openai.OpenAI],
) -> openai.OpenAI:
    second.reset()
    return sdk(two_provider_gateway)


def served_by(client: openai.OpenAI, model: str) -> str:
    raw = client.chat.completions.with_raw_response.create(model=model, messages=MESSAGES)
    return raw.headers["X-ProxyAPI-Provider"]


def test_lowest_priority_first(
    client: openai.OpenAI, fake: FakeUpstream, second: FakeUpstream
) -> None:
    assert served_by(client, "gpt-4o-mini") == "second"
    assert second.calls()[0].headers["Authorization"] == f"Bearer {SECOND_KEY}"
    assert fake.calls() == []


def test_prefix_forces_a_provider(client: openai.OpenAI, fake: FakeUpstream) -> None:
    assert served_by(client, "fake/gpt-4o-mini") == "fake"
    assert fake.calls()[0].body["model"] == "gpt-4o-mini"


def test_model_only_one_provider_lists(client: openai.OpenAI, second: FakeUpstream) -> None:
    assert served_by(client, "gpt-4o") == "fake"
    assert served_by(client, "mistral-small") == "second"


def test_models_are_aggregated(client: openai.OpenAI) -> None:
    models = {m.id: m.owned_by for m in client.models.list()}
    # "llama3" is on the second host but outside its "mistral-*" glob: not listed.
    assert models == {
        "gpt-4o-mini": "second",
        "gpt-4o": "fake",
        "text-embedding-3-small": "fake",
        "mistral-small": "second",
    }
