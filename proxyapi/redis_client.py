"""Redis clients for shared state in distributed mode: one node, Sentinel, or a Cluster.

URL forms (the ones ``limits`` takes too, so one URL serves every piece):

- ``redis://[user:password@]host:port/db``, ``rediss://...`` (TLS; ``redis.ca_file`` names a
  private CA), ``unix:///path/to/socket``;
- ``redis+sentinel://[user:password@]host:port,host:port/service`` (the master of
  ``service``, rediscovered after a failover);
- ``redis+cluster://[user:password@]host:port,host:port`` (any nodes of the cluster).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from proxyapi.config import RedisConfig

# The shared client (or None) in app.extensions.
EXTENSION = "proxyapi.redis"


@dataclass(frozen=True)
class Location:
    """What a Redis URL names: its scheme, nodes, credentials and the rest of its path."""

    scheme: str
    nodes: list[tuple[str, int]]
    username: str | None
    password: str | None
    path: str


def parse(url: str) -> Location:
    """Split a Redis URL; several ``host:port`` pairs are allowed (Sentinel and Cluster).

    (limits parses these URLs the same way, but its parser is private.)
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    nodes = []
    for item in filter(None, netloc.split(",")):
        host, _, port = item.strip().rpartition(":")
        nodes.append((host.strip("[]") or "localhost", int(port or 6379)))
    return Location(
        parts.scheme,
        nodes,
        unquote(parts.username) if parts.username else None,
        unquote(parts.password) if parts.password else None,
        parts.path,
    )


def connection_options(config: RedisConfig) -> dict[str, Any]:
    """Timeouts, retries and TLS settings for every Redis connection the gateway opens.

    redis-py retries a failed command three times with backoff by default, which turns one
    unreachable Redis into seconds of delay on every request; shared state here is
    best-effort, so a command fails at once and the caller falls back.
    """
    options: dict[str, Any] = {
        "socket_connect_timeout": config.timeout,
        "socket_timeout": config.timeout,
        "retry": Retry(NoBackoff(), 0),
    }
    if config.ca_file:
        options["ssl_ca_certs"] = config.ca_file
    return options


def client_for(url: str, config: RedisConfig) -> Any:
    """Build a client for ``url``; no connection is made until first use.

    ``decode_responses`` stays False: pybreaker's ``CircuitRedisStorage`` needs bytes.
    """
    options = connection_options(config)
    location = parse(url)
    auth: dict[str, Any] = {
        k: v for k, v in (("username", location.username), ("password", location.password)) if v
    }
    if location.scheme == "redis+sentinel":
        service = location.path.strip("/").split("/")[0]
        if not service:
            raise ValueError("a redis+sentinel:// URL names the service: .../<service>")
        sentinel_options = {k: v for k, v in options.items() if k != "ssl_ca_certs"}
        sentinel = Sentinel(location.nodes, sentinel_kwargs=sentinel_options, **options, **auth)  # type: ignore[no-untyped-call]
        return sentinel.master_for(service)  # type: ignore[no-untyped-call]
    if location.scheme == "redis+cluster":
        # One retry, at once: enough to follow a MOVED slot or a failed-over node.
        options["retry"] = Retry(NoBackoff(), 1)
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in location.nodes],  # type: ignore[no-untyped-call]
            **options,
            **auth,
        )
    if location.scheme != "rediss":
        options.pop("ssl_ca_certs", None)
    return redis.Redis.from_url(url, **options)


def connect(config: RedisConfig) -> Any:
    """The client for ``redis.url`` (distributed mode)."""
    assert config.url is not None
    return client_for(config.url, config)
