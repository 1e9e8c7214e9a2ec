"""Bad request bodies get a 400 that names the problem, before any upstream call."""

from __future__ import annotations

from typing import Any

import pytest
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key

HEADERS = {"Authorization": "Bearer k"}
MSG = [{"role": "user", "content": "hi"}]


@pytest.fixture
def client() -> FlaskClient:
    return create_app(
        {
            "auth": {"keys": [{"name": "a", "sha256": hash_key("k")}]},
            "providers": [{"name": "up", "base_url": "http://upstream.test/v1", "models": ["m"]}],
        }
    ).test_client()


@pytest.mark.parametrize(
    ("path", "body", "param", "fragment"),
    [
        ("/v1/chat/completions", b"", None, "body is empty"),
        ("/v1/chat/completions", b"{bad json", None, "not valid JSON: Expecting property name"),
        ("/v1/chat/completions", b"\xff\xfe", None, "not valid JSON: it is not valid UTF-8"),
        ("/v1/chat/completions", b"[1, 2]", None, "must be a JSON object, got a JSON array"),
        ("/v1/chat/completions", {"messages": MSG}, "model", "must provide a model"),
        ("/v1/chat/completions", {"model": 5, "messages": MSG}, "model", "got number"),
        ("/v1/chat/completions", {"model": "", "messages": MSG}, "model", "non-empty string"),
        (
            "/v1/chat/completions",
            {"model": "m"},
            "messages",
            "Missing required parameter: 'messages'",
        ),
        ("/v1/chat/completions", {"model": "m", "messages": "hi"}, "messages", "got string"),
        ("/v1/chat/completions", {"model": "m", "messages": []}, "messages", "not empty"),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": ["hi"]},
            "messages",
            "must be an object",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": MSG, "stream": "yes"},
            "stream",
            "boolean",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": MSG, "stream": True, "stream_options": []},
            "stream_options",
            "must be an object",
        ),
        (
            "/v1/chat/completions",
            {"model": "m", "messages": MSG, "stream_options": {"include_usage": True}},
            "stream_options",
            "only allowed when 'stream' is true",
        ),
        ("/v1/completions", {"model": "m"}, "prompt", "'prompt'"),
        ("/v1/completions", {"model": "m", "prompt": 3}, "prompt", "a string or an array"),
        ("/v1/embeddings", {"model": "m", "input": {}}, "input", "got object"),
        (
            "/v1/embeddings",
            {"model": "m", "input": "x", "stream": True},
            "stream",
            "cannot be streamed",
        ),
    ],
)
@responses.activate
def test_bad_bodies_are_400(
    client: FlaskClient, path: str, body: Any, param: str | None, fragment: str
) -> None:
    if isinstance(body, bytes):
        resp = client.post(path, data=body, headers=HEADERS)
    else:
        resp = client.post(path, json=body, headers=HEADERS)
    assert resp.status_code == 400, resp.json
    err = resp.json["error"]  # type: ignore[index]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert fragment in err["message"]
    assert len(responses.calls) == 0  # nothing reached the provider


@responses.activate
def test_form_content_type_from_plain_curl_is_accepted(client: FlaskClient) -> None:
    responses.post("http://upstream.test/v1/chat/completions", json={"choices": []})
    resp = client.post(
        "/v1/chat/completions",
        data='{"model": "m", "messages": [{"role": "user", "content": "x"}]}',
        headers={**HEADERS, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200
