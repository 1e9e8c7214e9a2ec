"""The OpenAI dialect: pure build/parse, no app and no socket."""

from __future__ import annotations

import json

import pytest

from proxyapi.config import ProviderConfig
from proxyapi.errors import UpstreamMalformed
from proxyapi.providers import adapter_for
from proxyapi.providers.base import Operation, UpstreamReply, Usage
from proxyapi.providers.openai import PATHS


def make(api_key: str | None = "sk-up") -> object:
    return adapter_for(
        ProviderConfig(
            name="up", type="openai", base_url="http://h:1/v1", models=("m",), api_key=api_key
        )
    )


def reply(body: object, status: int = 200) -> UpstreamReply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return UpstreamReply(status, {}, raw)


@pytest.mark.parametrize("op", [Operation.CHAT, Operation.COMPLETIONS, Operation.EMBEDDINGS])
def test_build_targets_endpoint_and_injects_provider_key(op: Operation) -> None:
    call = make().build(op, {"model": "openai/m", "x": 1}, "m", stream=False)  # type: ignore[attr-defined]
    assert call.url == f"http://h:1/v1/{PATHS[op]}"
    assert call.method == "POST"
    assert call.headers["Authorization"] == "Bearer sk-up"
    assert json.loads(call.body) == {"model": "m", "x": 1}


def test_build_passes_unknown_parameters_and_unicode_through() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "h\u00e9llo \u2028"}],
        "new_param": {"a": [1, 2]},
    }
    call = make().build(Operation.CHAT, body, "m", stream=True)  # type: ignore[attr-defined]
    assert json.loads(call.body) == body
    assert call.stream and call.headers["Accept"] == "text/event-stream"


def test_build_without_key_sends_no_authorization() -> None:
    call = make(api_key=None).build(Operation.CHAT, {"model": "m"}, "m", stream=False)  # type: ignore[attr-defined]
    assert "Authorization" not in call.headers


@pytest.mark.parametrize(
    ("op", "body", "usage"),
    [
        (Operation.CHAT, {"choices": []}, None),
        (
            Operation.COMPLETIONS,
            {"choices": [{"text": "x"}], "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
            Usage(3, 4, 7),
        ),
        (
            Operation.EMBEDDINGS,
            {"data": [], "usage": {"prompt_tokens": 5, "total_tokens": 5}},
            Usage(5, 0, 5),
        ),
    ],
)
def test_parse_returns_body_bytes_unchanged_and_usage(
    op: Operation, body: dict[str, object], usage: Usage | None
) -> None:
    raw = json.dumps(body).encode()
    assert make().parse(op, UpstreamReply(200, {}, raw)) == (raw, usage)  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("op", "raw"),
    [
        (Operation.CHAT, b"<html>oops</html>"),
        (Operation.CHAT, b"[1,2]"),
        (Operation.CHAT, b'{"object": "chat.completion"}'),
        (Operation.EMBEDDINGS, b'{"choices": []}'),
        (Operation.COMPLETIONS, b"\xff\xfe"),
    ],
)
def test_parse_rejects_what_is_not_an_answer(op: Operation, raw: bytes) -> None:
    with pytest.raises(UpstreamMalformed):
        make().parse(op, UpstreamReply(200, {}, raw))  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "message", "etype", "code"),
    [
        (
            {
                "error": {
                    "message": "bad temp",
                    "type": "invalid_request_error",
                    "param": "temperature",
                    "code": None,
                }
            },
            "bad temp",
            "invalid_request_error",
            None,
        ),
        ({"error": {"message": "m", "code": 400}}, "m", None, "400"),
        ({"error": "plain text error"}, "plain text error", None, None),
        ({"detail": "vLLM says no"}, "vLLM says no", None, None),
        (b"Bad Gateway", "Bad Gateway", None, None),
        (b"", "HTTP 400", None, None),
    ],
)
def test_parse_error_shapes(
    body: object, message: str, etype: str | None, code: str | None
) -> None:
    info = make().parse_error(reply(body, 400))  # type: ignore[attr-defined]
    assert (info.message, info.type, info.code) == (message, etype, code)


def test_list_models() -> None:
    adapter = make()
    call = adapter.build_list_models()  # type: ignore[attr-defined]
    assert call.method == "GET" and call.url == "http://h:1/v1/models"
    ids = adapter.parse_list_models(reply({"data": [{"id": "a"}, {"id": "b"}, {"x": 1}]}))  # type: ignore[attr-defined]
    assert ids == ["a", "b"]
    with pytest.raises(UpstreamMalformed):
        adapter.parse_list_models(reply({"models": []}))  # type: ignore[attr-defined]
