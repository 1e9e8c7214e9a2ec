"""Shared fixtures: the fake upstream, secrets, and gateways under real gunicorn."""

from __future__ import annotations

import secrets as pysecrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import openai
import pytest

from proxyapi.auth import hash_key
from tests.fakes.gateway import GatewayProcess
from tests.fakes.redis_server import RedisServer
from tests.fakes.upstream import FakeUpstream

UPSTREAM_KEY = "sk-upstream-" + pysecrets.token_hex(12)
ALICE_KEY = "pk-alice-" + pysecrets.token_hex(12)
BOB_KEY = "pk-bob-" + pysecrets.token_hex(12)
ALL_SECRETS = (UPSTREAM_KEY, ALICE_KEY, BOB_KEY)


@pytest.fixture(autouse=True)
def own_temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Give each test its own temp dir, so apps built in-process get their own file cache."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeUpstream]:
    server = FakeUpstream(api_key=UPSTREAM_KEY).start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeUpstream) -> Iterator[FakeUpstream]:
    """The session's fake upstream, with recorded traffic and faults cleared."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


def base_config(fake: FakeUpstream, **server: Any) -> dict[str, Any]:
    """A config with two keys and one provider: the fake."""
    return {
        "server": {"heartbeat_interval": 1.0, **server},
        # Fault and routing tests need every request to reach the fake; the cache has its own
        # tests (tests/integration/test_cache.py).
        "cache": {"responses": "off"},
        "auth": {
            "keys": [
                {"name": "alice", "key_env": "ALICE_KEY"},
                {"name": "bob", "sha256": hash_key(BOB_KEY)},
            ]
        },
        "providers": [
            {
                "name": "fake",
                "type": "openai",
                "base_url": fake.base_url,
                "api_key_env": "FAKE_UPSTREAM_KEY",
                "models": ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"],
                "timeout": {"connect": 2, "read": 3},
                # The shared gateway shows each fault's own error: no retries, and a breaker
                # that does not open (tests/integration/test_resilience.py covers both).
                "retry": {"max_attempts": 1},
                "breaker": {"fail_max": 10000},
            }
        ],
    }


SECRET_ENV = {"ALICE_KEY": ALICE_KEY, "FAKE_UPSTREAM_KEY": UPSTREAM_KEY}


@contextmanager
def gateways(make_dir: Callable[[], Path]) -> Iterator[Callable[..., GatewayProcess]]:
    """Yield a function that starts gateways; stop them all (and check their logs) after."""
    started: list[GatewayProcess] = []

    def start(
        config: dict[str, Any] | None, env: dict[str, str] | None = None, **kwargs: Any
    ) -> GatewayProcess:
        gw = GatewayProcess(
            make_dir(), config, env={**SECRET_ENV, **(env or {})}, secrets=ALL_SECRETS, **kwargs
        )
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()
    for gw in started:
        gw.assert_no_secrets_logged()


@pytest.fixture(scope="session")
def start_gateway(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways that live for the whole session."""
    with gateways(lambda: tmp_path_factory.mktemp("gateway")) as start:
        yield start


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Callable[..., GatewayProcess]]:
    """Start gateways that live for one test."""
    with gateways(lambda: tmp_path) as start:
        yield start


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free port, for the session."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied for this test."""
    redis_server.client().flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def gateway(
    fake_server: FakeUpstream, start_gateway: Callable[..., GatewayProcess]
) -> GatewayProcess:
    """One gateway (1 worker, 8 threads) in front of the fake, shared by the session."""
    return start_gateway(base_config(fake_server))


@pytest.fixture
def sdk() -> Iterator[Callable[..., openai.OpenAI]]:
    """Make official openai SDK clients for a gateway; all are closed after the test."""
    clients: list[openai.OpenAI] = []

    def make(gw: GatewayProcess, key: str = ALICE_KEY, **kwargs: Any) -> openai.OpenAI:
        client = openai.OpenAI(
            base_url=f"{gw.url}/v1", api_key=key, max_retries=0, **{"timeout": 15, **kwargs}
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def tmp_config(tmp_path: Path) -> Callable[[str], Path]:
    def write(text: str) -> Path:
        path = tmp_path / "proxyapi.yaml"
        path.write_text(text)
        return path

    return write
