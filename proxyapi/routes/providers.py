"""``GET /v1/providers``: each provider's circuit breaker, client metrics and pool use."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from proxyapi import upstream

bp = Blueprint("providers", __name__, url_prefix="/v1")


@bp.get("/providers")
def list_providers() -> Response:
    """Report provider status: merged over all workers with Redis, else this worker's."""
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    scope, data = up.describe()
    return jsonify(object="list", scope=scope, worker_pid=os.getpid(), data=data)
