"""Tracing through the real stack: gunicorn (2 workers) exporting OTLP/HTTP to a receiver
started here, the official openai SDK sending a ``traceparent``, the fake upstream behind."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import ALICE_KEY, BOB_KEY, UPSTREAM_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.otlp import OTLPReceiver
from tests.fakes.upstream import FakeUpstream, Fault

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
PARENT_ID = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_ID}-01"
PROMPT = "what is the capital of the moon, tracing test"


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    r = OTLPReceiver().start()
    yield r
    r.stop()


def test_spans_reach_an_otlp_receiver_in_the_clients_trace(
    fake: FakeUpstream,
    launch: Callable[..., GatewayProcess],
    receiver: OTLPReceiver,
    sdk: Callable[..., openai.OpenAI],
) -> None:
    config = base_config(fake)
    config["providers"][0]["retry"] = {"max_attempts": 2, "base_delay": 0, "max_delay": 0}
    gw = launch(
        config,
        env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
            # Spans wait in the batch until the worker exits: what arrives was flushed then.
            "OTEL_BSP_SCHEDULE_DELAY": "600000",
        },
        workers=2,
    )
    messages = [{"role": "user", "content": PROMPT}]
    plain = 4
    for _ in range(plain):
        # A client (a connection) each, so the requests spread over both workers.
        client = sdk(gw, default_headers={"traceparent": TRACEPARENT})
        answer = client.chat.completions.create(model="gpt-4o-mini", messages=messages)
        assert answer.usage is not None
    client = sdk(gw, default_headers={"traceparent": TRACEPARENT})
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=messages,
        stream=True,
        stream_options={"include_usage": True},
    )
    streamed = list(stream)
    assert streamed[-1].usage is not None
    fake.script(Fault(status=503))
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=messages)
    assert raw.headers["X-ProxyAPI-Attempts"] == "2"
    sent = plain + 2

    time.sleep(0.5)
    assert not receiver.spans, "spans came before the workers exited (schedule delay ignored?)"
    gw.stop()
    servers = receiver.wait_for(sent, "SERVER")
    clients = receiver.wait_for(sent + 1, "CLIENT")

    assert len(servers) == sent, [s.name for s in servers]
    assert len(clients) == sent + 1  # one per attempt: the retried request made two
    by_id = {s.span_id: s for s in servers}
    for span in servers:
        assert span.trace_id == TRACE_ID
        assert span.parent_span_id == PARENT_ID
        assert span.service == "proxyapi"
        assert span.name == "POST /v1/chat/completions"
        assert span.attributes["http.response.status_code"] == 200
        assert span.attributes["gen_ai.operation.name"] == "chat"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert span.attributes["gen_ai.response.model"] == "gpt-4o-mini"
        assert span.attributes["gen_ai.provider.name"] == "openai"
        assert span.attributes["proxyapi.key.name"] == "alice"
        assert span.attributes["proxyapi.cache.result"] == "bypass"
        assert span.attributes["gen_ai.usage.output_tokens"] > 0
        assert not span.events
    [stream_span] = [s for s in servers if s.attributes["proxyapi.stream"]]
    assert stream_span.attributes["gen_ai.usage.input_tokens"] == streamed[-1].usage.prompt_tokens
    for span in clients:
        assert span.trace_id == TRACE_ID
        assert span.parent_span_id in by_id
        assert span.name == "chat gpt-4o-mini"
        assert span.attributes["gen_ai.request.model"] == "gpt-4o-mini"
        assert span.attributes["server.address"] == "127.0.0.1"
    [retried] = [s for s in servers if s.attributes["proxyapi.attempts"] == 2]
    attempts = sorted(
        (s for s in clients if s.parent_span_id == retried.span_id),
        key=lambda s: s.attributes["proxyapi.attempt"],
    )
    assert [a.attributes["proxyapi.upstream.outcome"] for a in attempts] == ["retried", "ok"]
    assert attempts[0].attributes["http.response.status_code"] == 503
    assert attempts[0].status == "STATUS_CODE_ERROR"
    # The provider saw our attempt spans as parents, in the client's trace.
    client_ids = {s.span_id for s in clients}
    parents = [
        {k.lower(): v for k, v in c.headers.items()}.get("traceparent", "")
        for c in fake.calls("/chat/completions")
    ]
    assert len(parents) == sent + 1
    for header in parents:
        _version, trace_id, span_id, _flags = header.split("-")
        assert trace_id == TRACE_ID and span_id in client_ids
    # Neither keys nor the prompt in what was exported.
    exported = b"".join(receiver.bodies)
    for secret in (ALICE_KEY, BOB_KEY, UPSTREAM_KEY, PROMPT):
        assert secret.encode() not in exported
    assert receiver.paths and set(receiver.paths) == {"/v1/traces"}


def test_on_without_the_extra_the_gateway_refuses_to_start(
    fake: FakeUpstream, launch: Callable[..., GatewayProcess], tmp_path: Path
) -> None:
    blocker = tmp_path / "without-extra"
    blocker.mkdir()
    # As if requirements-tracing.txt were not installed (redis-py's optional import copes).
    (blocker / "sitecustomize.py").write_text(
        "import sys\nsys.modules['opentelemetry.sdk'] = None\n"
    )
    with pytest.raises(RuntimeError) as info:
        launch(
            base_config(fake),
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9", "PYTHONPATH": str(blocker)},
        )
    # One line from the master, before any worker starts.
    assert "proxyapi: config error: tracing is on (OTEL_EXPORTER_OTLP_ENDPOINT" in str(info.value)
    assert "pip install -r requirements-tracing.txt" in str(info.value)
    assert "Booting worker" not in str(info.value)
