"""Upstream outcomes, mocked with ``responses``: what the client gets for each."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests
import responses
from flask.testing import FlaskClient

from proxyapi import create_app
from proxyapi.auth import hash_key
from tests.schemas import assert_valid

URL = "http://upstream.test/v1"
CLIENT_KEY = "pk-client-key-123"
UPSTREAM_KEY = "sk-upstream-key-456"
HEADERS = {"Authorization": f"Bearer {CLIENT_KEY}"}
CHAT = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
ANSWER = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "yo"},
            "finish_reason": "stop",
            "logprobs": None,
        }
    ],
}


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> FlaskClient:
    monkeypatch.setenv("UP_KEY", UPSTREAM_KEY)
    return create_app(
        {
            "auth": {"keys": [{"name": "a", "sha256": hash_key(CLIENT_KEY)}]},
            "providers": [
                {"name": "up", "base_url": URL, "models": ["m", "e"], "api_key_env": "UP_KEY"},
                {"name": "other", "base_url": "http://other.test/v1", "models": ["x"]},
            ],
        }
    ).test_client()


@responses.activate
def test_success_injects_provider_key_and_never_forwards_client_key(client: FlaskClient) -> None:
    responses.post(f"{URL}/chat/completions", json=ANSWER)
    resp = client.post(
        "/v1/chat/completions",
        json=CHAT,
        headers={**HEADERS, "X-API-Key": CLIENT_KEY, "Cookie": "a=b"},
    )
    assert resp.status_code == 200
    assert resp.json == ANSWER
    assert resp.headers["X-ProxyAPI-Provider"] == "up"
    sent = responses.calls[0].request
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert CLIENT_KEY not in json.dumps(dict(sent.headers)) and "Cookie" not in sent.headers
    assert json.loads(sent.body) == CHAT


@responses.activate
def test_prefix_is_stripped_before_the_upstream_call(client: FlaskClient) -> None:
    responses.post(f"{URL}/chat/completions", json=ANSWER)
    client.post("/v1/chat/completions", json={**CHAT, "model": "up/m"}, headers=HEADERS)
    assert json.loads(responses.calls[0].request.body)["model"] == "m"


@pytest.mark.parametrize(
    ("upstream", "status", "etype", "code", "fragment"),
    [
        (
            {
                "status": 400,
                "json": {
                    "error": {
                        "message": "temperature too high",
                        "type": "invalid_request_error",
                        "param": "temperature",
                        "code": None,
                    }
                },
            },
            400,
            "invalid_request_error",
            None,
            "temperature too high",
        ),
        (
            {
                "status": 404,
                "json": {
                    "error": {
                        "message": "no model",
                        "type": "invalid_request_error",
                        "code": "model_not_found",
                    }
                },
            },
            404,
            "invalid_request_error",
            "model_not_found",
            "no model",
        ),
        (
            {
                "status": 401,
                "json": {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}"}},
            },
            502,
            "upstream_error",
            "upstream_auth_failed",
            "rejected the gateway's credentials",
        ),
        (
            {"status": 403, "body": "forbidden"},
            502,
            "upstream_error",
            "upstream_auth_failed",
            "HTTP 403",
        ),
        (
            {"status": 500, "json": {"error": {"message": "boom"}}},
            502,
            "upstream_error",
            "upstream_error",
            "HTTP 500: boom",
        ),
        (
            {"status": 503, "body": "<html>down</html>"},
            502,
            "upstream_error",
            "upstream_error",
            "HTTP 503",
        ),
        (
            {"status": 200, "body": "not json"},
            502,
            "upstream_error",
            "upstream_malformed_response",
            "not a JSON object",
        ),
        (
            {"status": 200, "json": {"object": "chat.completion"}},
            502,
            "upstream_error",
            "upstream_malformed_response",
            "without 'choices'",
        ),
        (
            {"status": 302, "body": "", "headers": {"Location": "http://elsewhere"}},
            502,
            "upstream_error",
            "upstream_malformed_response",
            "unexpected HTTP 302",
        ),
        (
            {"body": requests.exceptions.ConnectionError("refused")},
            502,
            "upstream_error",
            "upstream_unreachable",
            "unreachable",
        ),
        (
            {"body": requests.exceptions.ConnectTimeout("slow")},
            504,
            "timeout",
            "upstream_timeout",
            "did not accept a connection in time",
        ),
        (
            {"body": requests.exceptions.ReadTimeout("slow")},
            504,
            "timeout",
            "upstream_timeout",
            "sent nothing within its read timeout (60s)",
        ),
        (
            {"body": requests.exceptions.ChunkedEncodingError("cut")},
            502,
            "upstream_error",
            "upstream_connection_broken",
            "broke",
        ),
    ],
)
@responses.activate
def test_upstream_outcomes(
    client: FlaskClient,
    upstream: dict[str, Any],
    status: int,
    etype: str,
    code: str | None,
    fragment: str,
) -> None:
    responses.post(f"{URL}/chat/completions", **upstream)
    resp = client.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert resp.status_code == status, resp.json
    assert_valid("ErrorResponse", resp.json)
    err = resp.json["error"]  # type: ignore[index]
    assert (err["type"], err["code"]) == (etype, code)
    assert fragment in err["message"]
    assert UPSTREAM_KEY not in resp.text and CLIENT_KEY not in resp.text


@responses.activate
def test_upstream_429_is_relayed_with_retry_after(client: FlaskClient) -> None:
    responses.post(
        f"{URL}/chat/completions",
        status=429,
        headers={"Retry-After": "3"},
        json={"error": {"message": "Rate limit reached", "type": "requests"}},
    )
    resp = client.post("/v1/chat/completions", json=CHAT, headers=HEADERS)
    assert resp.status_code == 429
    assert resp.headers["Retry-After"] == "3"
    assert resp.json["error"]["message"] == "Rate limit reached"  # type: ignore[index]


@responses.activate
def test_embeddings_and_completions_route_to_their_endpoints(client: FlaskClient) -> None:
    responses.post(f"{URL}/embeddings", json={"object": "list", "data": [], "model": "e"})
    responses.post(f"{URL}/completions", json={"choices": [{"text": "t"}]})
    assert (
        client.post(
            "/v1/embeddings", json={"model": "e", "input": "x"}, headers=HEADERS
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/v1/completions", json={"model": "m", "prompt": "x"}, headers=HEADERS
        ).status_code
        == 200
    )
    assert [c.request.url for c in responses.calls] == [f"{URL}/embeddings", f"{URL}/completions"]


@responses.activate
def test_models_list_aggregates_providers(client: FlaskClient) -> None:
    resp = client.get("/v1/models", headers=HEADERS)
    assert_valid("ListModelsResponse", resp.json)
    assert [(m["id"], m["owned_by"]) for m in resp.json["data"]] == [
        ("m", "up"),
        ("e", "up"),
        ("x", "other"),
    ]  # type: ignore[index]
    assert client.get("/v1/models/up/m", headers=HEADERS).json["owned_by"] == "up"  # type: ignore[index]
    assert client.get("/v1/models/nope", headers=HEADERS).status_code == 404


@responses.activate
def test_models_list_asks_glob_providers_and_survives_their_failure(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = create_app(
        {
            "auth": {"keys": [{"name": "a", "sha256": hash_key(CLIENT_KEY)}]},
            "providers": [
                {"name": "fixed", "base_url": "http://fixed.test/v1", "models": ["a"]},
                {"name": "llama", "base_url": "http://llama.test/v1", "models": ["llama*"]},
                {
                    "name": "down",
                    "base_url": "http://down.test/v1",
                    "models": ["*"],
                    "retry": {"base_delay": 0, "max_delay": 0},
                },
            ],
        }
    ).test_client()
    responses.get(
        "http://llama.test/v1/models",
        json={"data": [{"id": "llama3"}, {"id": "qwen"}, {"id": "a"}]},
    )
    responses.get("http://down.test/v1/models", status=500)  # retried: 3 attempts
    for _ in range(2):  # the second call is served from the per-process memo
        resp = client.get("/v1/models", headers=HEADERS)
        assert [(m["id"], m["owned_by"]) for m in resp.json["data"]] == [
            ("a", "fixed"),
            ("llama3", "llama"),
        ]  # type: ignore[index]
    assert len(responses.calls) == 4


@responses.activate
def test_one_model_is_described_from_the_lists_and_nothing_is_kept_per_name() -> None:
    app = create_app(
        {
            "auth": {"keys": [{"name": "a", "sha256": hash_key(CLIENT_KEY)}]},
            "cache": {"backend": "simple"},
            "providers": [
                {"name": "fixed", "base_url": "http://fixed.test/v1", "models": ["a"]},
                {"name": "llama", "base_url": "http://llama.test/v1", "models": ["*"]},
                {"name": "az", "type": "azure", "base_url": "http://az.test", "models": ["az-*"]},
            ],
        }
    )
    client = app.test_client()
    responses.get("http://llama.test/v1/models", json={"data": [{"id": "llama3"}]})

    def owner(model: str) -> Any:
        resp = client.get(f"/v1/models/{model}", headers=HEADERS)
        return resp.json["owned_by"] if resp.status_code == 200 else resp.status_code  # type: ignore[index]

    assert owner("a") == "fixed" and owner("llama3") == "llama" and owner("llama/llama3") == "llama"
    assert owner("az-gpt") == "az"  # Azure cannot list its deployments: the glob decides
    store = app.extensions["proxyapi.cache"].store
    entries = len(store.backend._cache)
    assert [owner(f"made-up-{i}") for i in range(500)] == [404] * 500
    assert len(store.backend._cache) == entries
    assert len(responses.calls) == 1  # the glob provider's list, cached
    bad = client.get("/v1/models/gpt%1b[31mred", headers=HEADERS)
    assert bad.status_code == 400 and bad.json["error"]["param"] == "model"  # type: ignore[index]
    assert client.get("/v1/models/gpt%0d%0aforged", headers=HEADERS).status_code == 404


@responses.activate
@pytest.mark.parametrize("model", [".", "..", "../../admin", "a/b", "a?x=1", "a#b", "%2e%2e", ""])
def test_azure_deployment_names_stay_one_path_segment(model: str) -> None:
    client = create_app(
        {
            "auth": {"keys": [{"name": "a", "sha256": hash_key(CLIENT_KEY)}]},
            "providers": [
                {"name": "az", "type": "azure", "base_url": "http://az.test", "models": ["*"]}
            ],
        }
    ).test_client()
    resp = client.post("/v1/chat/completions", json={**CHAT, "model": model}, headers=HEADERS)
    assert resp.status_code == 400 and resp.json["error"]["param"] == "model"  # type: ignore[index]
    assert len(responses.calls) == 0
