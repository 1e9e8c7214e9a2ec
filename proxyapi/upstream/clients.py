"""The pooled connections of one worker process: a Session and one adapter per provider.

Created lazily, on first use in each process, so nothing pooled is ever shared across a fork
(requests and urllib3 pools are not fork-aware).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextlib import suppress

import requests
from requests.adapters import HTTPAdapter

from proxyapi.config import ProviderConfig
from proxyapi.upstream.retry import ProviderRetry


class ProcessClients:
    """One ``requests.Session`` and one ``HTTPAdapter`` (pool + Retry) per provider."""

    def __init__(
        self,
        providers: Mapping[str, ProviderConfig],
        failure_rates: Mapping[str, Callable[[], float]],
    ) -> None:
        self.pid = os.getpid()
        self.session = requests.Session()
        # Env proxies are read once here, not on every request (requests' trust_env does that).
        self.session.trust_env = False
        self.adapters: dict[str, HTTPAdapter] = {}
        self.proxies: dict[str, dict[str, str]] = {}
        for name, p in providers.items():
            retry = ProviderRetry.for_policy(p.retry, failure_rate=failure_rates[name])
            # pool_block=False: a burst above pool_size opens extra short-lived connections
            # instead of waiting; requests never passes a pool timeout, so blocking would wait
            # forever.
            self.adapters[name] = HTTPAdapter(
                pool_connections=1, pool_maxsize=p.pool_size, max_retries=retry, pool_block=False
            )
            self.proxies[name] = requests.utils.get_environ_proxies(p.base_url)

    def pool_counts(self, name: str) -> dict[str, int]:
        """Connections this process opened to a provider, and how many requests reused one."""
        opened = sent = 0
        pools = self.adapters[name].poolmanager.pools
        for key in list(pools.keys()):
            with suppress(KeyError):  # evicted meanwhile
                pool = pools[key]
                opened += pool.num_connections
                sent += pool.num_requests
        return {
            "connections_opened": opened,
            "requests": sent,
            "connections_reused": max(0, sent - opened),
        }
