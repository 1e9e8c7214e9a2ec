"""The naive floor: a Flask + requests proxy that does nothing but forward.

No auth, no limits, no retries, no metrics, no logs: it reads the body, posts it upstream with a
pooled ``requests.Session`` and returns the upstream's bytes. What ProxyAPI adds is measured
against this, run the same way (gunicorn, gthread workers).

Run: ``UPSTREAM=http://127.0.0.1:PORT gunicorn -k gthread -w 2 --threads 32 bench.naive_proxy:app``
"""

from __future__ import annotations

import os

import requests
from flask import Flask, Response, request

app = Flask(__name__)
UPSTREAM = os.environ.get("UPSTREAM", "http://127.0.0.1:9000")
session = requests.Session()
session.mount("http://", requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=64))


@app.post("/v1/chat/completions")
def chat() -> Response:
    upstream = session.post(
        f"{UPSTREAM}/v1/chat/completions",
        data=request.get_data(),
        headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
        timeout=30,
    )
    return Response(
        upstream.content,
        status=upstream.status_code,
        content_type=upstream.headers.get("Content-Type"),
    )
