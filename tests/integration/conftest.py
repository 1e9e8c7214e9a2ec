"""Real Redis topologies for integration tests: a cluster, sentinels, TLS (one each a session)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.redis_topologies import RedisCluster, RedisSentinels, RedisTLS


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A 3-master Redis Cluster for the session (``flushall()`` it in tests that need it empty)."""
    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def redis_sentinels(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisSentinels]:
    """A master, a replica and 3 sentinels for the session.

    A test that fails the master over calls ``restore()`` afterwards, so the next one has a
    replica to fail over to.
    """
    sentinels = RedisSentinels(tmp_path_factory.mktemp("redis-sentinels")).start()
    yield sentinels
    sentinels.stop()


@pytest.fixture(scope="session")
def redis_tls(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisTLS]:
    """A TLS-only redis-server with a private CA (``ca_file``) for the session."""
    server = RedisTLS(tmp_path_factory.mktemp("redis-tls")).start()
    yield server
    server.stop()
