"""Request ids and logging: every log line of a request carries its id, no line a secret.

``X-Request-ID`` is echoed when the client sends a sane one and generated otherwise. One line
per request is logged when the response is closed (for a stream, when it has ended).
Upstream secrets are scrubbed from every formatted line, tracebacks included.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import uuid
from collections.abc import Iterable

from flask import Flask, Response, g, has_request_context, request

from proxyapi.errors import redact

REQUEST_ID_HEADER = "X-Request-ID"
# Accept ids that are safe to echo and to write into a log line.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:@/+=-]{1,128}$")
_HANDLER_FLAG = "_proxyapi_handler"
LOGGERS = ("proxyapi", "urllib3")

access_log = logging.getLogger("proxyapi.access")


class RequestIdFilter(logging.Filter):
    """Put the current request's id (or ``-``) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = g.get("request_id") if has_request_context() else None
            record.request_id = rid or "-"
        return True


class RedactingFormatter(logging.Formatter):
    """A formatter that scrubs the given secrets from the finished line."""

    def __init__(self, fmt: str, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = tuple(s for s in secrets if s)

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


def configure_logging(secrets: Iterable[str]) -> None:
    """Install one stderr handler on the gateway's loggers (replacing an earlier one)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        RedactingFormatter(
            "%(asctime)s %(levelname)s [%(process)d] [%(request_id)s] %(name)s: %(message)s",
            secrets,
        )
    )
    handler.addFilter(RequestIdFilter())
    setattr(handler, _HANDLER_FLAG, True)
    level = os.environ.get("LOG_LEVEL", "INFO").upper()
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.propagate = False
    logging.getLogger("proxyapi").setLevel(level)
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _start_request() -> None:
    g.started = time.perf_counter()
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    g.request_id = rid if _SAFE_ID.match(rid) else uuid.uuid4().hex


def _finish_request(response: Response) -> Response:
    rid = g.get("request_id", "-")
    response.headers[REQUEST_ID_HEADER] = rid
    started = g.get("started", time.perf_counter())
    fields: dict[str, object] = {
        "method": request.method,
        "path": request.path,
        "status": response.status_code,
        "key": g.get("key_name", "-"),
        "model": g.get("model", "-"),
        "provider": g.get("provider", "-"),
    }

    def log_line() -> None:
        fields["ms"] = (time.perf_counter() - started) * 1000
        access_log.info(
            "%(method)s %(path)s %(status)s %(ms).1fms key=%(key)s model=%(model)s "
            "provider=%(provider)s",
            fields,
            extra={"request_id": rid},
        )

    response.call_on_close(log_line)
    return response


def init_app(app: Flask, secrets: Iterable[str]) -> None:
    """Configure logging and attach request ids to every request and response."""
    configure_logging(secrets)
    app.before_request(_start_request)
    app.after_request(_finish_request)
