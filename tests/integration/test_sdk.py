"""The official openai SDK against the gateway under real gunicorn, in front of the fake."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import openai
import pytest

from tests.conftest import BOB_KEY
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import REPLY_TEXT, FakeUpstream, Fault
from tests.schemas import assert_valid

MESSAGES = [{"role": "user", "content": "Say hello"}]


@pytest.fixture
def client(gateway: GatewayProcess, sdk: Callable[..., openai.OpenAI]) -> openai.OpenAI:
    return sdk(gateway)


def test_chat_completion(client: openai.OpenAI, fake: FakeUpstream) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    completion = raw.parse()
    assert completion.choices[0].message.content == REPLY_TEXT
    assert completion.usage is not None and completion.usage.total_tokens > 0
    assert raw.headers["X-ProxyAPI-Provider"] == "fake"
    assert raw.headers["X-Request-ID"]
    assert_valid("CreateChatCompletionResponse", completion.model_dump(exclude_unset=True))
    (call,) = fake.calls("/chat/completions")
    assert call.body["messages"] == MESSAGES


def test_chat_stream_arrives_chunk_by_chunk(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Fault(chunks=6, chunk_delay=0.3))
    arrivals: list[float] = []
    pieces: list[str] = []
    started = time.monotonic()
    for chunk in client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ):
        assert_valid("CreateChatCompletionStreamResponse", chunk.model_dump(exclude_unset=True))
        arrivals.append(time.monotonic() - started)
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
    assert "".join(pieces) == "tok0 tok1 tok2 tok3 tok4 tok5 "
    # Relayed as produced: the first token came long before the stream (>= 2.1 s) ended.
    assert arrivals[1] < 1.0 and arrivals[-1] >= 2.0
    assert all(b >= a for a, b in itertools.pairwise(arrivals))


def test_chat_stream_include_usage(client: openai.OpenAI, fake: FakeUpstream) -> None:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 5
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert fake.calls("/chat/completions")[0].body["stream_options"] == {"include_usage": True}


def test_chat_stream_without_include_usage_has_no_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert all(c.usage is None for c in chunks)


def test_legacy_completion_both_modes(client: openai.OpenAI) -> None:
    completion = client.completions.create(model="gpt-4o-mini", prompt="Say hello")
    assert completion.choices[0].text == REPLY_TEXT
    assert_valid("CreateCompletionResponse", completion.model_dump(exclude_unset=True))
    text = "".join(
        c.choices[0].text
        for c in client.completions.create(model="gpt-4o-mini", prompt="Say hello", stream=True)
        if c.choices
    )
    assert text == "tok0 tok1 tok2 tok3 tok4 "


def test_embeddings(client: openai.OpenAI) -> None:
    result = client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert [d.index for d in result.data] == [0, 1]
    assert len(result.data[0].embedding) == 8
    assert_valid("CreateEmbeddingResponse", result.model_dump(exclude_unset=True))


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    models = client.models.list()
    assert [m.id for m in models] == ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
    assert {m.owned_by for m in models} == {"fake"}
    assert client.models.retrieve("gpt-4o").id == "gpt-4o"


def test_sha256_configured_key_works(
    gateway: GatewayProcess, sdk: Callable[..., openai.OpenAI]
) -> None:
    bob = sdk(gateway, BOB_KEY)
    assert bob.chat.completions.create(model="gpt-4o", messages=MESSAGES).choices


def test_provider_prefix_is_stripped(client: openai.OpenAI, fake: FakeUpstream) -> None:
    client.chat.completions.create(model="fake/gpt-4o", messages=MESSAGES)
    assert fake.calls("/chat/completions")[0].body["model"] == "gpt-4o"


def test_sdk_errors_map_to_sdk_exceptions(
    client: openai.OpenAI,
    gateway: GatewayProcess,
    fake: FakeUpstream,
    sdk: Callable[..., openai.OpenAI],
) -> None:
    with pytest.raises(openai.NotFoundError) as not_found:
        client.chat.completions.create(model="no-such-model", messages=MESSAGES)
    assert not_found.value.code == "model_not_found"
    bad = sdk(gateway, "wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    fake.script(Fault(status=400))
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    fake.script(Fault(status=500))
    with pytest.raises(openai.InternalServerError) as server_error:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert server_error.value.status_code == 502


def test_error_mid_stream_raises_in_the_sdk(client: openai.OpenAI, fake: FakeUpstream) -> None:
    fake.script(Fault(chunks=5, reset_after=3))
    received: list[str] = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                received.append(chunk.choices[0].delta.content)
    assert received == ["tok0 ", "tok1 "]
    assert "broke" in str(info.value)
