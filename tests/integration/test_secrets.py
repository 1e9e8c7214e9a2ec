"""Secrets never reach a client or a log line, whatever goes wrong."""

from __future__ import annotations

import json
from collections.abc import Callable

import requests

from tests.conftest import ALICE_KEY, ALL_SECRETS, BOB_KEY, UPSTREAM_KEY, base_config
from tests.fakes.gateway import GatewayProcess
from tests.fakes.upstream import FakeUpstream, Fault

CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


def test_no_secret_in_any_response_or_log_line(
    fake: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    gw = start_gateway(base_config(fake))
    seen: list[str] = []

    def call(body: object = CHAT, key: str = ALICE_KEY, path: str = "/v1/chat/completions") -> None:
        resp = requests.post(
            f"{gw.url}{path}",
            data=json.dumps(body),
            timeout=10,
            headers={"Authorization": f"Bearer {key}"},
        )
        seen.append(f"{resp.status_code} {dict(resp.headers)} {resp.text}")

    # The upstream echoes our key back in its errors, as real providers partly do.
    echo = json.dumps(
        {"error": {"message": f"Incorrect API key provided: {UPSTREAM_KEY}"}}
    ).encode()
    fake.script(
        Fault(status=401, body=echo),
        Fault(status=400, body=echo),
        Fault(status=500, body=echo),
        Fault(body=b"not json " + UPSTREAM_KEY.encode()),
        Fault(reset=True),
        Fault(chunks=5, reset_after=2),
        # Last: a 429 takes the provider out of rotation for its Retry-After.
        Fault(status=429, body=echo, headers={"Retry-After": "1"}),
    )
    for _ in range(5):
        call()
    call({**CHAT, "stream": True})
    call()
    call(key="pk-wrong-" + ALICE_KEY)
    call(key=BOB_KEY, body="{broken")
    call({**CHAT, "model": UPSTREAM_KEY})  # a secret as a model name comes back only as 404
    gw.stop()
    assert len(fake.calls()) == 7  # every scripted fault was served
    for text in seen:
        for secret in (UPSTREAM_KEY,):
            assert secret not in text, text
    logs = gw.logs()
    # The grep below means something only if the failures were logged.
    assert logs.count("proxyapi.access: POST /v1/chat/completions") == len(seen)
    assert "provider fake: connection broke" in logs
    for secret in ALL_SECRETS:
        assert secret not in logs
