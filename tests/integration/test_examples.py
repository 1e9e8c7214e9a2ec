"""Every example in examples/ runs against a real gateway with the mock provider, as
examples/README.md starts it, so none of them rots."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import anthropic
import openai
import pytest
import requests

from tests.conftest import ALICE_KEY
from tests.fakes.gateway import GatewayProcess

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
ADMIN_KEY = "pk-admin-" + secrets.token_hex(12)
# What each script must print (its answers are the mock's, so they are known).
EXPECTED = {
    "openai_chat.py": [
        "answer: This is a mock answer. You said: What is a WSGI gateway?",
        "streamed: This is a mock answer. You said: What is a WSGI gateway?",
    ],
    "openai_tools.py": [
        "tool call: get_weather {'city': ",
        "answer: This is a mock answer. You said: What is the weather in Paris?",
    ],
    "openai_embeddings.py": ["2 vectors of 8 dimensions; cosine similarity "],
    "openai_responses.py": [
        "answer: This is a mock answer. You said: Name a colour",
        "follow-up: This is a mock answer. You said: And another one",
    ],
    "anthropic_messages.py": [
        "answer: This is a mock answer. You said: Say hello",
        "streamed: This is a mock answer. You said: Say hello",
    ],
    "curl.sh": [
        '"content":"This is a mock answer. You said: Hello"',
        "data: [DONE]",
        '"mock-chat"',
    ],
    "cache_controls.sh": [
        "X-Cache: MISS\nX-Cache: HIT\nX-Cache: REFRESH\nX-Cache: HIT\nX-Cache: HIT"
    ],
    "keys_and_limits.sh": ["gpt-4o-mini: 200", "claude-sonnet-4-5: 403", "after revoking: 401"],
    "usage.sh": ["X-ProxyAPI-Cost-USD: 0.000000", '"provider":"mock"', "start,key,route,"],
    "metrics.sh": ['proxyapi_requests_total{route="completions.chat_completions",status="200"}'],
}


@pytest.fixture(scope="module")
def demo(start_gateway: Callable[..., GatewayProcess]) -> GatewayProcess:
    """The gateway examples/README.md starts (with this suite's keys instead of demo ones)."""
    env = {"PROXYAPI_KEYS": ALICE_KEY, "PROXYAPI_ADMIN_KEYS": ADMIN_KEY, "PROXYAPI_MOCK": "1"}
    return start_gateway(None, env=env)


def run(example: str, gw: GatewayProcess) -> str:
    env = {
        **os.environ,
        "PROXYAPI_URL": gw.url,
        "PROXYAPI_KEY": ALICE_KEY,
        "PROXYAPI_ADMIN_KEY": ADMIN_KEY,
    }
    command = [sys.executable] if example.endswith(".py") else ["bash"]
    done = subprocess.run(
        [*command, str(EXAMPLES / example)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, f"{example} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def test_every_example_is_tested() -> None:
    scripts = {p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh")} - {"_env.py"}
    assert scripts == set(EXPECTED)
    listed = (EXAMPLES / "README.md").read_text()
    for path in EXAMPLES.rglob("*"):
        if path.is_file() and path.name not in ("README.md", "_env.py"):
            assert f"`{path.relative_to(EXAMPLES)}`" in listed, path


@pytest.mark.parametrize("example", sorted(EXPECTED))
def test_the_example_runs_and_says_what_it_should(example: str, demo: GatewayProcess) -> None:
    out = run(example, demo)
    for expected in EXPECTED[example]:
        assert expected in out, f"{example} printed:\n{out}"


def test_the_claude_code_settings_reach_the_gateway_as_claude_code_calls_it(
    demo: GatewayProcess,
) -> None:
    settings = json.loads((EXAMPLES / "claude-code" / "settings.json").read_text())["env"]
    assert settings["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8000"  # no /v1: it adds that
    # Claude Code sends ANTHROPIC_AUTH_TOKEN as a bearer token, to /v1/messages?beta=true.
    client = anthropic.Anthropic(
        base_url=demo.url, auth_token=ALICE_KEY, api_key=None, max_retries=0, timeout=15
    )
    try:
        said: list[anthropic.types.MessageParam] = [{"role": "user", "content": "hello"}]
        with client.beta.messages.stream(
            model=settings["ANTHROPIC_MODEL"],
            max_tokens=64,
            messages=said,
            betas=["claude-code-20250219"],
        ) as stream:
            assert "".join(stream.text_stream).startswith("This is a mock answer.")
    finally:
        client.close()
    probe = requests.head(demo.url + "/", timeout=5)
    assert probe.status_code < 500


def test_the_codex_config_reaches_the_gateway_as_codex_calls_it(demo: GatewayProcess) -> None:
    config = tomllib.loads((EXAMPLES / "codex" / "config.toml").read_text())
    provider = config["model_providers"][config["model_provider"]]
    assert provider["wire_api"] == "responses"
    assert provider["base_url"] == "http://127.0.0.1:8000/v1"
    base = provider["base_url"].replace("http://127.0.0.1:8000", demo.url)
    # What Codex sends: a stream, store false, instructions, the encrypted reasoning included.
    client = openai.OpenAI(base_url=base, api_key=ALICE_KEY, max_retries=0, timeout=15)
    try:
        events = list(
            client.responses.create(
                model=config["model"],
                instructions="You are a coding agent.",
                input=[{"role": "user", "content": "hello"}],
                store=False,
                include=["reasoning.encrypted_content"],
                stream=True,
            )
        )
    finally:
        client.close()
    assert events[-1].type == "response.completed"


def test_the_mock_config_for_load_tests_answers_through_its_faults(
    launch: Callable[..., GatewayProcess], sdk: Callable[..., openai.OpenAI]
) -> None:
    config = str(EXAMPLES / "proxyapi-mock.yaml")
    gw = launch(None, env={"PROXYAPI_CONFIG": config, "DEMO_KEY": ALICE_KEY})
    client = sdk(gw)
    served = set()
    for _ in range(8):
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )
        served.add(raw.headers["X-ProxyAPI-Provider"])
        assert raw.parse().choices[0].message.content
    assert served <= {"flaky", "steady"} and served
