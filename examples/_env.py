"""Where the examples find the gateway: PROXYAPI_URL and PROXYAPI_KEY (defaults: a local
gateway started as examples/README.md shows, with the demo key)."""

from __future__ import annotations

import os

URL = os.environ.get("PROXYAPI_URL", "http://127.0.0.1:8000").rstrip("/")
KEY = os.environ.get("PROXYAPI_KEY", "demo")
ADMIN_KEY = os.environ.get("PROXYAPI_ADMIN_KEY", "demo-admin")
