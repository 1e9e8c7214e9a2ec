"""The Redis topology fixtures start real, working topologies."""

from __future__ import annotations

import pytest
import redis
import redis.sentinel
from limits.storage import storage_from_string
from redis.backoff import NoBackoff
from redis.retry import Retry

from tests.fakes.redis_topologies import HOST, RedisCluster, RedisSentinels, RedisTLS


def test_cluster_spreads_keys_over_its_nodes(redis_cluster: RedisCluster) -> None:
    redis_cluster.flushall()
    with redis_cluster.client() as client:
        owners: dict[int, str] = {}
        for i in range(100):
            key = f"key{i}"
            owners.setdefault(client.get_node_from_key(key).port, key)
            if len(owners) == redis_cluster.masters:
                break
        assert sorted(owners) == sorted(port for _, port in redis_cluster.nodes)
        for key in owners.values():
            client.set(key, key.upper())
        assert [client.get(key) for key in owners.values()] == [
            key.upper().encode() for key in owners.values()
        ]
    for port, key in owners.items():  # each key is stored on the node that owns its slot
        with redis.Redis(host=HOST, port=port, socket_timeout=2) as node:
            assert node.get(key) == key.upper().encode()
            assert node.dbsize() == 1


def test_cluster_runs_a_script_over_keys_in_one_slot(redis_cluster: RedisCluster) -> None:
    script = (
        "redis.call('set', KEYS[1], ARGV[1]); redis.call('set', KEYS[2], ARGV[2]); "
        "return redis.call('mget', KEYS[1], KEYS[2])"
    )
    with redis_cluster.client() as client:
        assert client.eval(script, 2, "{tag}a", "{tag}b", "1", "2") == [b"1", b"2"]
        assert client.mget("{tag}a", "{tag}b") == [b"1", b"2"]


def test_cluster_url_works_with_redis_py_and_limits(redis_cluster: RedisCluster) -> None:
    with redis.RedisCluster.from_url(redis_cluster.url) as client:
        assert client.ping()
    assert storage_from_string(redis_cluster.limits_url).check()


def test_sentinels_fail_over_to_the_replica(redis_sentinels: RedisSentinels) -> None:
    with redis_sentinels.client() as client:
        client.set("before", "kill")
        assert client.execute_command("WAIT", 1, 1000) == 1
    old = redis_sentinels.kill_master()
    try:
        new = redis_sentinels.wait_for_failover(old)
        assert new != old
        assert redis_sentinels.master_address() == new
        with redis_sentinels.client() as client:
            assert client.connection_pool.get_master_address() == new
            assert client.get("before") == b"kill"
            assert client.set("after", "failover")
            assert client.get("after") == b"failover"
    finally:
        redis_sentinels.restore()
    with redis_sentinels.client() as client:  # the old master is back, as a replica
        assert client.execute_command("WAIT", 1, 1000) == 1


def test_sentinel_url_works_with_limits(redis_sentinels: RedisSentinels) -> None:
    assert redis_sentinels.url.startswith("redis+sentinel://")
    assert redis_sentinels.url.endswith("/" + redis_sentinels.service)
    storage = storage_from_string(redis_sentinels.url)
    assert storage.check()


def test_tls_verifies_with_the_ca(redis_tls: RedisTLS) -> None:
    with redis_tls.client() as client:
        assert client.ping()
    with redis.Redis.from_url(redis_tls.url, ssl_ca_certs=redis_tls.ca_file) as client:
        assert client.ping()


def test_tls_fails_without_the_ca(redis_tls: RedisTLS) -> None:
    client = redis.Redis(
        host=HOST, port=redis_tls.port, ssl=True, socket_timeout=2, retry=Retry(NoBackoff(), 0)
    )
    with client, pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        client.ping()
