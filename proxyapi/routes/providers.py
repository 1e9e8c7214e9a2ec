"""``GET /v1/providers``: each provider's circuit breaker, client metrics and pool use."""

from __future__ import annotations

import os

from flask import Blueprint, Response, current_app, jsonify

from proxyapi import upstream

bp = Blueprint("providers", __name__, url_prefix="/v1")


@bp.get("/providers")
def list_providers() -> Response:
    """Report provider status; counters are this worker's, breakers may be shared."""
    up: upstream.Upstream = current_app.extensions[upstream.EXTENSION]
    return jsonify(
        object="list",
        scope={
            "counters": "worker",
            "breakers": "shared" if up.breakers.shared else "worker",
            "note": (
                "Request counters, latencies and pool figures are this worker process's own "
                "(one gunicorn worker answered this request); breaker state is shared by all "
                "workers and hosts when Redis is configured."
            ),
        },
        worker_pid=os.getpid(),
        data=up.describe(),
    )
