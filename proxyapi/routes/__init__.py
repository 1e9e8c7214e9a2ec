"""HTTP routes, one blueprint per module."""

from __future__ import annotations

from flask import Flask

from proxyapi import auth, ratelimit
from proxyapi.routes import (
    admin_keys,
    cache_admin,
    completions,
    health,
    messages,
    models,
    providers,
    responses,
    usage,
)


def register(app: Flask) -> None:
    """Register every blueprint and mark the endpoints that need no key."""
    app.register_blueprint(completions.bp)
    app.register_blueprint(messages.bp)
    app.register_blueprint(responses.bp)
    app.register_blueprint(usage.bp)
    app.register_blueprint(models.bp)
    app.register_blueprint(providers.bp)
    app.register_blueprint(cache_admin.bp)
    app.register_blueprint(admin_keys.bp)
    app.register_blueprint(health.bp)
    auth.public(app, *health.PUBLIC_ENDPOINTS)
    # The routes that go through the pipeline, which reserves budgets.
    ratelimit.deferrable(
        app,
        "completions.chat_completions",
        "completions.completions",
        "completions.embeddings",
        "messages.messages",
        "responses.create",
    )
