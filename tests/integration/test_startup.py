"""Starting the gateway the ways the README says: env-only, config file, bad config, CLI."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import openai
import pytest
import requests

from tests.conftest import SECRET_ENV, UPSTREAM_KEY, base_config
from tests.fakes.gateway import ROOT, GatewayProcess
from tests.fakes.upstream import FakeUpstream

MESSAGES = [{"role": "user", "content": "hi"}]


def test_env_only_mode(
    fake: FakeUpstream,
    start_gateway: Callable[..., GatewayProcess],
    sdk: Callable[..., openai.OpenAI],
) -> None:
    gw = start_gateway(
        None,
        env={
            "PROXYAPI_KEYS": "env-k1,env-k2",
            "OPENAI_API_KEY": UPSTREAM_KEY,
            "OPENAI_BASE_URL": fake.base_url,
        },
    )
    for key in ("env-k1", "env-k2"):
        client = sdk(gw, key)
        assert client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
    # Without OPENAI_MODELS the provider takes any model; the list comes from the upstream.
    assert [m.id for m in client.models.list()] == fake.models
    assert client.embeddings.create(model="text-embedding-3-small", input="x").data


def test_no_keys_refuses_with_instructions(
    fake: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> None:
    gw = start_gateway(None, env={"OPENAI_API_KEY": UPSTREAM_KEY, "OPENAI_BASE_URL": fake.base_url})
    resp = requests.get(f"{gw.url}/v1/models", headers={"Authorization": "Bearer x"}, timeout=5)
    assert resp.status_code == 401
    assert "PROXYAPI_KEYS" in resp.json()["error"]["message"]
    assert requests.get(f"{gw.url}/health", timeout=5).status_code == 200


def test_bad_config_stops_the_start_with_a_clear_message(
    tmp_path: Path, fake: FakeUpstream
) -> None:
    config = base_config(fake)
    config["providers"][0]["timeout"] = {"read": "forever"}
    gw = GatewayProcess(tmp_path, config, env=SECRET_ENV)
    with pytest.raises(RuntimeError) as info:
        gw.start(timeout=15)
    assert "providers[0] (fake).timeout.read must be a number above 0, got 'forever'" in str(
        info.value
    )
    assert gw.proc is not None and gw.proc.returncode != 0


def test_port_from_environment(fake: FakeUpstream, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gw = GatewayProcess(
        tmp_path, base_config(fake), env={**SECRET_ENV, "PORT": str(port), "GUNICORN_BIND": ""}
    )
    try:
        gw.start()
        assert f"Listening at: http://0.0.0.0:{port}" in gw.logs()
    finally:
        gw.stop()


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        input=stdin,
        text=True,
        capture_output=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin"},
    )


def test_cli_through_python_and_flask() -> None:
    from proxyapi.auth import hash_key

    assert run_cli("proxyapi", "hash-key", "abc").stdout.strip() == hash_key("abc")
    flask_run = run_cli("flask", "--app", "wsgi", "hash-key", stdin="abc\n")
    assert flask_run.stdout.strip() == hash_key("abc"), flask_run.stderr


def test_check_config_cli(tmp_path: Path) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "providers:\n  - {name: local, base_url: 'http://127.0.0.1:11434/v1', models: [llama3]}\n"
    )
    ok = run_cli("proxyapi", "check-config", str(good))
    assert ok.returncode == 0 and "provider local" in ok.stdout
    assert "none: every request will be refused" in ok.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("providers:\n  - {name: local, base_url: 'localhost:11434', models: [llama3]}\n")
    failed = run_cli("proxyapi", "check-config", str(bad))
    assert failed.returncode == 1
    assert (
        "providers[0] (local).base_url must be a URL starting with http:// or https://, got 'localhost:11434'"
        in failed.stderr
    )
