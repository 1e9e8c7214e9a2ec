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
# The gateway's own loggers, and the libraries' that report shared-state trouble: those can
# repeat one traceback per request while Redis is down, so they pass through RepeatFilter.
LOGGERS = ("proxyapi", "urllib3")
NOISY_LOGGERS = ("pybreaker", "flask-limiter", "limits")
# One line per distinct message per this many seconds from the noisy loggers.
REPEAT_WINDOW = 60.0

access_log = logging.getLogger("proxyapi.access")


class RequestIdFilter(logging.Filter):
    """Put the current request's id (or ``-``) on every record as ``request_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            rid = g.get("request_id") if has_request_context() else None
            record.request_id = rid or "-"
        return True


class RepeatFilter(logging.Filter):
    """Let a given message through once per ``REPEAT_WINDOW``, without its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self._last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self._last.get(key, -REPEAT_WINDOW) < REPEAT_WINDOW:
            return False
        self._last[key] = now
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            record.msg = f"{record.msg} ({exc.__class__.__name__}: {exc})"
            record.exc_info = None
            record.exc_text = None
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
    for name in LOGGERS + NOISY_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, _HANDLER_FLAG, False)]:
            logger.removeHandler(old)
        for old_filter in [f for f in logger.filters if isinstance(f, RepeatFilter)]:
            logger.removeFilter(old_filter)
        if name in NOISY_LOGGERS:
            logger.addFilter(RepeatFilter())
            logger.setLevel(logging.WARNING)
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
        "cache": g.get("cache", "-"),
    }

    def log_line() -> None:
        fields["ms"] = (time.perf_counter() - started) * 1000
        access_log.info(
            "%(method)s %(path)s %(status)s %(ms).1fms key=%(key)s model=%(model)s "
            "provider=%(provider)s cache=%(cache)s",
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
