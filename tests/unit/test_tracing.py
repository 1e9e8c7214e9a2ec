"""Tracing (proxyapi.tracing): the spans, as the SDK's in-memory exporter receives them, of an
app built by create_app in front of the fake upstream (a real socket, real urllib3 retries)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask.testing import FlaskClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from proxyapi import create_app, tracing, upstream
from proxyapi.auth import hash_key
from proxyapi.config import ConfigError, parse_config
from tests.conftest import ALICE_KEY, UPSTREAM_KEY
from tests.fakes.gateway import ROOT
from tests.fakes.upstream import REPLY_TEXT, FakeUpstream, Fault

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
PROMPT = "tell me the secret word: zebra-" + os.urandom(4).hex()
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": PROMPT}]}
AUTH = {"Authorization": f"Bearer {ALICE_KEY}"}


def config(fake: FakeUpstream, providers: int = 1, max_attempts: int = 1, **extra: Any) -> Any:
    def provider(name: str, priority: int) -> dict[str, Any]:
        return {
            "name": name,
            "type": "openai",
            "base_url": fake.base_url,
            "api_key_env": "FAKE_UPSTREAM_KEY",
            "models": ["gpt-4o-mini", "text-embedding-3-small"],
            "priority": priority,
            "timeout": {"connect": 2, "read": 3},
            "retry": {"max_attempts": max_attempts, "base_delay": 0, "max_delay": 0},
            "breaker": {"fail_max": 10000},
        }

    return {
        "auth": {"keys": [{"name": "alice", "sha256": hash_key(ALICE_KEY)}]},
        "providers": [provider(n, i + 1) for i, n in enumerate(["primary", "backup"][:providers])],
        "cache": {"responses": "off"},
        "tracing": {"enabled": True},
        **extra,
    }


Make = Callable[..., tuple[FlaskClient, InMemorySpanExporter]]


@pytest.fixture
def traced(fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch) -> Iterator[Make]:
    """Make a traced app whose spans go to an in-memory exporter."""
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    for var in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(var, raising=False)
    made: list[tracing.spans.Tracing] = []

    def make(**kwargs: Any) -> tuple[FlaskClient, InMemorySpanExporter]:
        app = create_app(config(fake, **kwargs))
        exporter = InMemorySpanExporter()
        state = app.extensions[tracing.EXTENSION]
        state.make_processor = lambda: SimpleSpanProcessor(exporter)
        made.append(state)
        return app.test_client(), exporter

    yield make
    for state in made:
        state.shutdown()


def post(client: FlaskClient, path: str, **kwargs: Any) -> Any:
    """POST and read the answer whole, so the response closes (and its span ends)."""
    return client.post(path, **{"buffered": True, **kwargs})


def by_kind(exporter: InMemorySpanExporter, kind: SpanKind) -> list[ReadableSpan]:
    return sorted(
        (s for s in exporter.get_finished_spans() if s.kind is kind), key=lambda s: s.start_time
    )


def exported_text(exporter: InMemorySpanExporter) -> str:
    return "".join(s.to_json() for s in exporter.get_finished_spans())


def test_a_request_is_a_server_span_in_the_clients_trace_with_an_attempt_span_under_it(
    traced: Make, fake: FakeUpstream
) -> None:
    client, exporter = traced()
    resp = post(
        client, "/v1/chat/completions", json=CHAT, headers={**AUTH, "traceparent": TRACEPARENT}
    )
    assert resp.status_code == 200, resp.json
    [server] = by_kind(exporter, SpanKind.SERVER)
    [attempt] = by_kind(exporter, SpanKind.CLIENT)
    # The client's trace, the client's span as parent.
    assert server.context is not None and attempt.context is not None
    assert format(server.context.trace_id, "032x") == TRACE_ID
    assert server.parent is not None and format(server.parent.span_id, "016x") == PARENT_ID
    assert attempt.parent is not None and attempt.parent.span_id == server.context.span_id
    assert server.name == "POST /v1/chat/completions"
    assert attempt.name == "chat gpt-4o-mini"
    s = server.attributes or {}
    assert s["http.request.method"] == "POST"
    assert s["http.route"] == "/v1/chat/completions"
    assert s["http.response.status_code"] == 200
    assert s["gen_ai.operation.name"] == "chat"
    assert s["gen_ai.request.model"] == "gpt-4o-mini"
    assert s["gen_ai.response.model"] == "gpt-4o-mini"
    assert s["gen_ai.provider.name"] == s["gen_ai.system"] == "openai"
    assert s["proxyapi.provider.name"] == "primary"
    assert s["proxyapi.key.name"] == "alice"
    assert s["proxyapi.request.id"] == resp.headers["X-Request-ID"]
    assert s["proxyapi.cache.result"] == "bypass"
    assert s["proxyapi.attempts"] == 1
    assert s["proxyapi.fallbacks"] == 0
    assert s["gen_ai.usage.input_tokens"] == resp.json["usage"]["prompt_tokens"]
    assert s["gen_ai.usage.output_tokens"] == resp.json["usage"]["completion_tokens"]
    a = attempt.attributes or {}
    assert a["gen_ai.request.model"] == "gpt-4o-mini"
    assert a["gen_ai.provider.name"] == "openai"
    assert a["server.address"] == "127.0.0.1"
    assert a["server.port"] == fake.port
    assert a["proxyapi.attempt"] == 1
    assert a["proxyapi.upstream.outcome"] == "ok"
    assert a["gen_ai.usage.output_tokens"] == resp.json["usage"]["completion_tokens"]
    # The provider got the attempt's context, not the client's.
    [call] = fake.calls("/chat/completions")
    sent = {k.lower(): v for k, v in call.headers.items()}["traceparent"]
    assert sent == f"00-{TRACE_ID}-{format(attempt.context.span_id, '016x')}-01"
    # Neither the client's key nor the provider's anywhere.
    text = exported_text(exporter)
    assert ALICE_KEY not in text and UPSTREAM_KEY not in text


def test_without_a_traceparent_the_request_starts_its_own_trace(traced: Make) -> None:
    client, exporter = traced()
    assert post(client, "/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    [server] = by_kind(exporter, SpanKind.SERVER)
    assert server.parent is None
    assert server.context is not None and format(server.context.trace_id, "032x") != TRACE_ID


def test_each_retry_is_its_own_attempt_span(traced: Make, fake: FakeUpstream) -> None:
    client, exporter = traced(max_attempts=2)
    fake.script(Fault(status=503))
    resp = post(client, "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert resp.status_code == 200, resp.json
    assert resp.headers["X-ProxyAPI-Attempts"] == "2"
    [server] = by_kind(exporter, SpanKind.SERVER)
    first, second = by_kind(exporter, SpanKind.CLIENT)
    assert [s.attributes["proxyapi.attempt"] for s in (first, second)] == [1, 2]  # type: ignore[index]
    assert first.attributes["proxyapi.upstream.outcome"] == "retried"  # type: ignore[index]
    assert first.attributes["http.response.status_code"] == 503  # type: ignore[index]
    assert first.attributes["error.type"] == "503"  # type: ignore[index]
    assert second.attributes["proxyapi.upstream.outcome"] == "ok"  # type: ignore[index]
    assert first.end_time is not None and second.start_time is not None
    assert first.end_time <= second.start_time
    for span in (first, second):
        assert span.parent is not None and server.context is not None
        assert span.parent.span_id == server.context.span_id
    assert server.attributes["proxyapi.attempts"] == 2  # type: ignore[index]


def test_a_fallback_is_an_attempt_span_on_the_next_provider(
    traced: Make, fake: FakeUpstream
) -> None:
    client, exporter = traced(providers=2)
    fake.script(Fault(status=500))
    resp = post(client, "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert resp.status_code == 200, resp.json
    failed, answered = by_kind(exporter, SpanKind.CLIENT)
    assert failed.attributes["proxyapi.provider.name"] == "primary"  # type: ignore[index]
    assert failed.attributes["proxyapi.upstream.outcome"] == "failure"  # type: ignore[index]
    assert failed.attributes["error.type"]  # type: ignore[index]
    assert failed.status.is_ok is False
    assert answered.attributes["proxyapi.provider.name"] == "backup"  # type: ignore[index]
    assert answered.attributes["proxyapi.attempt"] == 2  # type: ignore[index]
    [server] = by_kind(exporter, SpanKind.SERVER)
    assert server.attributes["proxyapi.provider.name"] == "backup"  # type: ignore[index]
    assert server.attributes["proxyapi.fallbacks"] == 1  # type: ignore[index]


def test_a_failed_request_ends_its_span_as_an_error(traced: Make, fake: FakeUpstream) -> None:
    client, exporter = traced()
    fake.script(Fault(status=500))
    resp = post(client, "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert resp.status_code == 502 and resp.is_json
    [server] = by_kind(exporter, SpanKind.SERVER)
    assert server.attributes["http.response.status_code"] == 502  # type: ignore[index]
    assert server.attributes["error.type"] == "502"  # type: ignore[index]
    assert not server.status.is_ok


def test_a_stream_ends_its_span_when_the_stream_is_over_with_its_usage(traced: Make) -> None:
    client, exporter = traced()
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    resp = post(client, "/v1/chat/completions", json=body, headers=AUTH, buffered=False)
    assert resp.status_code == 200
    # The handler has returned and the attempt is over, but the stream is not.
    assert by_kind(exporter, SpanKind.CLIENT)
    assert not by_kind(exporter, SpanKind.SERVER)
    text = b"".join(resp.response).decode()
    resp.close()
    assert "[DONE]" in text
    [server] = by_kind(exporter, SpanKind.SERVER)
    s = server.attributes or {}
    assert s["proxyapi.stream"] is True
    assert s["gen_ai.usage.output_tokens"] > 0  # type: ignore[operator]
    assert s["gen_ai.usage.input_tokens"] > 0  # type: ignore[operator]
    assert s["gen_ai.response.model"] == "gpt-4o-mini"


def test_no_prompt_or_answer_in_any_span_by_default(traced: Make) -> None:
    client, exporter = traced()
    assert post(client, "/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    body = {**CHAT, "stream": True}
    assert "[DONE]" in post(client, "/v1/chat/completions", json=body, headers=AUTH).text
    text = exported_text(exporter)
    assert len(exporter.get_finished_spans()) == 4
    assert "zebra" not in text
    assert REPLY_TEXT not in text and "Hello" not in text
    assert all(not s.events for s in exporter.get_finished_spans())


def test_capture_content_puts_prompt_and_answer_in_events_clipped(traced: Make) -> None:
    client, exporter = traced(tracing={"enabled": True, "capture_content": True})
    assert post(client, "/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    [server] = by_kind(exporter, SpanKind.SERVER)
    events = {e.name: e.attributes or {} for e in server.events}
    assert PROMPT in str(events["gen_ai.content.prompt"]["gen_ai.prompt"])
    assert REPLY_TEXT in str(events["gen_ai.content.completion"]["gen_ai.completion"])
    assert events["gen_ai.content.prompt"]["proxyapi.content.truncated"] is False

    client, exporter = traced(
        tracing={"enabled": True, "capture_content": True, "content_max_bytes": 20}
    )
    assert post(client, "/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    [server] = by_kind(exporter, SpanKind.SERVER)
    prompt = {e.name: e.attributes or {} for e in server.events}["gen_ai.content.prompt"]
    assert len(str(prompt["gen_ai.prompt"])) <= 20
    assert prompt["proxyapi.content.truncated"] is True


def test_a_cache_hit_is_traced_with_no_attempt(traced: Make) -> None:
    client, exporter = traced(cache={"backend": "simple", "responses": "all"})
    for _ in range(2):
        assert post(client, "/v1/chat/completions", json=CHAT, headers=AUTH).status_code == 200
    miss, hit = by_kind(exporter, SpanKind.SERVER)
    assert miss.attributes["proxyapi.cache.result"] == "miss"  # type: ignore[index]
    assert hit.attributes["proxyapi.cache.result"] == "hit"  # type: ignore[index]
    assert hit.attributes["proxyapi.attempts"] == 0  # type: ignore[index]
    assert len(by_kind(exporter, SpanKind.CLIENT)) == 1


def test_refused_requests_are_traced_and_health_checks_are_not(traced: Make) -> None:
    client, exporter = traced()
    resp = post(client, "/v1/chat/completions", json=CHAT, headers={"Authorization": "Bearer nope"})
    assert resp.status_code == 401 and resp.is_json
    assert client.get("/health").status_code == 200
    [server] = exporter.get_finished_spans()
    assert server.attributes["http.response.status_code"] == 401  # type: ignore[index]
    assert "proxyapi.key.name" not in (server.attributes or {})
    assert "nope" not in server.to_json()


def test_tracing_config_is_validated_and_follows_the_otel_variables() -> None:
    base: dict[str, Any] = {}
    assert parse_config(base, environ={}).tracing.enabled is False
    on = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    assert parse_config(base, environ=on).tracing.enabled is True
    traces_only = {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"}
    assert parse_config(base, environ=traces_only).tracing.enabled is True
    assert parse_config(base, environ={**on, "OTEL_SDK_DISABLED": "true"}).tracing.enabled is False
    assert parse_config({"tracing": {"enabled": False}}, environ=on).tracing.enabled is False
    with pytest.raises(ConfigError, match=r"tracing.capture_content .*'yes'"):
        parse_config({"tracing": {"capture_content": "yes"}}, environ={})
    with pytest.raises(ConfigError, match=r"tracing\.content_max_bytes"):
        parse_config({"tracing": {"content_max_bytes": 0}}, environ={})
    with pytest.raises(ConfigError, match=r"'tracing\.sample'"):
        parse_config({"tracing": {"sample": 1}}, environ={})
    with pytest.raises(ConfigError, match="OTEL_EXPORTER_OTLP_PROTOCOL is 'grpc'"):
        parse_config(base, environ={**on, "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"})


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_off_the_gateway_imports_nothing_of_opentelemetry_and_installs_no_hook() -> None:
    # redis-py imports opentelemetry.sdk.metrics on its own when the SDK is installed (its
    # optional metrics, redis/observability): what it loads is the baseline, not the gateway's.
    code = (
        "import sys\n"
        "import redis\n"
        "def otel(): return {m for m in sys.modules if m.startswith('opentelemetry')}\n"
        "baseline = otel()\n"
        "from proxyapi import create_app, upstream, tracing\n"
        "from proxyapi.auth import hash_key\n"
        "app = create_app({'providers': [{'name': 'm', 'type': 'mock'}], "
        "'auth': {'keys': [{'name': 't', 'sha256': hash_key('k')}]}})\n"
        "resp = app.test_client().post('/v1/chat/completions', json={'model': 'x', 'messages': "
        "[{'role': 'user', 'content': 'hi'}]}, headers={'Authorization': 'Bearer k'}, "
        "buffered=True)\n"
        "assert resp.status_code == 200, resp.data\n"
        "assert app.extensions[upstream.EXTENSION].tracer is None, 'attempt hook installed'\n"
        "assert tracing.EXTENSION not in app.extensions, 'request hooks installed'\n"
        "assert 'proxyapi.tracing.spans' not in sys.modules\n"
        "print(sorted(otel() - baseline))\n"
    )
    result = _python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # The same program with tracing on fails those checks: the test can tell.
    result = _python(
        code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9", OTEL_TRACES_SAMPLER="always_off"
    )
    assert result.returncode != 0
    assert "attempt hook installed" in result.stderr


def test_on_without_the_extra_startup_fails_naming_the_variable_and_the_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['opentelemetry.sdk'] = None  # as if the extra were not installed\n"
        "from proxyapi import create_app\n"
        "create_app({'providers': [{'name': 'm', 'type': 'mock'}]})\n"
    )
    result = _python(code, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:9")
    assert result.returncode != 0
    assert "ConfigError" in result.stderr
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in result.stderr
    assert "pip install -r requirements-tracing.txt" in result.stderr


def test_off_the_client_traceparent_is_not_sent_upstream(
    fake: FakeUpstream, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FAKE_UPSTREAM_KEY", UPSTREAM_KEY)
    app = create_app({**config(fake), "tracing": {"enabled": False}})
    assert app.extensions[upstream.EXTENSION].tracer is None
    headers = {**AUTH, "traceparent": TRACEPARENT}
    assert (
        post(app.test_client(), "/v1/chat/completions", json=CHAT, headers=headers).status_code
        == 200
    )
    [call] = fake.calls("/chat/completions")
    assert "traceparent" not in {k.lower() for k in call.headers}


@pytest.mark.parametrize(
    ("path", "body", "operation", "model"),
    [
        (
            "/v1/embeddings",
            {"model": "text-embedding-3-small", "input": "hi"},
            "embeddings",
            "text-embedding-3-small",
        ),
        (
            "/v1/completions",
            {"model": "gpt-4o-mini", "prompt": "hi"},
            "text_completion",
            "gpt-4o-mini",
        ),
    ],
)
def test_other_operations_are_named_after_the_genai_conventions(
    traced: Make, fake: FakeUpstream, path: str, body: dict[str, Any], operation: str, model: str
) -> None:
    client, exporter = traced()
    resp = post(client, path, json=body, headers=AUTH)
    assert resp.status_code == 200, resp.json
    [server] = by_kind(exporter, SpanKind.SERVER)
    [attempt] = by_kind(exporter, SpanKind.CLIENT)
    assert server.name == f"POST {path}"
    assert server.attributes["gen_ai.operation.name"] == operation  # type: ignore[index]
    assert attempt.name == f"{operation} {model}"


def test_a_priced_answer_carries_its_cost_and_the_mock_provider_is_named() -> None:
    app = create_app(
        {
            "auth": {"keys": [{"name": "alice", "sha256": hash_key(ALICE_KEY)}]},
            "providers": [{"name": "m", "type": "mock"}],
            "tracing": {"enabled": True},
        }
    )
    exporter = InMemorySpanExporter()
    app.extensions[tracing.EXTENSION].make_processor = lambda: SimpleSpanProcessor(exporter)
    resp = post(app.test_client(), "/v1/chat/completions", json=CHAT, headers=AUTH)
    assert resp.status_code == 200, resp.json
    [server] = by_kind(exporter, SpanKind.SERVER)
    assert server.attributes["proxyapi.cost.usd"] == 0.0  # type: ignore[index]
    assert server.attributes["gen_ai.provider.name"] == "mock"  # type: ignore[index]
    app.extensions[tracing.EXTENSION].shutdown()


def test_the_exporter_s_header_values_are_secrets_kept_out_of_logs() -> None:
    token = "collector-token-" + "x" * 16
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
        "OTEL_EXPORTER_OTLP_HEADERS": f"authorization=Bearer%20{token},x-tenant=1",
    }
    cfg = parse_config({}, environ=env)
    assert f"Bearer {token}" in cfg.secrets() and token in cfg.secrets()
    assert "1" not in cfg.secrets()  # too short to be a secret: scrubbing it would garble logs


def test_spans_are_exported_in_batches_of_64_unless_the_sdk_variable_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from proxyapi.tracing import spans

    monkeypatch.delenv(spans.BATCH_SIZE_VAR, raising=False)
    processor = spans.otlp_processor()
    try:
        assert processor._batch_processor._max_export_batch_size == 64  # type: ignore[attr-defined]
    finally:
        processor.shutdown()
    monkeypatch.setenv(spans.BATCH_SIZE_VAR, "256")
    processor = spans.otlp_processor()
    try:
        assert processor._batch_processor._max_export_batch_size == 256  # type: ignore[attr-defined]
    finally:
        processor.shutdown()
