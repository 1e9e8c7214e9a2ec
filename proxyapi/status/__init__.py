"""The status page at ``/status``: providers, cache, limits, spend and health on one HTML page.

:mod:`.history` keeps each process's last hour per provider (the only thing the page adds to
the request path), :mod:`.gather` reads every section from the sources of the JSON endpoints,
:mod:`.session` signs browsers in without key material in the cookie, :mod:`.views` serves it,
:mod:`.charts` draws its SVG. With ``status.enabled: false`` none of it exists in the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Flask

from proxyapi import auth
from proxyapi.config import Config
from proxyapi.status.gather import HISTORY_SECTION
from proxyapi.status.history import History, Recording
from proxyapi.status.session import Sessions, key_finder
from proxyapi.status.views import EXTENSION, PUBLIC_ENDPOINTS, bp

if TYPE_CHECKING:
    from proxyapi.fleet import Fleet
    from proxyapi.keys.manager import ManagedKeys
    from proxyapi.upstream.calls import Observer

__all__ = ["EXTENSION", "History", "Recording", "init_app", "observer"]


def observer(config: Config, inner: Observer) -> tuple[Observer, History | None]:
    """The fallback loop's observer: ``inner`` with the history beside it when the page is on,
    ``inner`` alone (nothing added to the request path) when it is off."""
    if not config.status.enabled:
        return inner, None
    recorded = History()
    return Recording(inner, recorded), recorded


def init_app(
    app: Flask,
    config: Config,
    recorded: History | None,
    workers: Fleet | None,
    managed: ManagedKeys | None,
) -> None:
    """Serve ``/status`` when it is on (``recorded`` is its history), and share the history
    with the other workers and hosts in distributed mode."""
    if not config.status.enabled or recorded is None:
        return
    sessions = Sessions(
        config.redis.namespace,
        config.auth.pepper,
        config.status.session_ttl,
        key_finder(config, managed),
    )
    app.extensions[EXTENSION] = (sessions, recorded)
    if workers is not None:
        workers.register(HISTORY_SECTION, recorded.figures)
    app.register_blueprint(bp)
    auth.public(app, *PUBLIC_ENDPOINTS)
