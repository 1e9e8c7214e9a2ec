"""Logging: every line of a request carries its id, no line a secret, no client a forged line.

Lines are readable text, or with ``LOG_FORMAT=json`` one JSON object each (``ts``, ``level``,
``pid``, ``request_id``, ``logger``, ``message``, and the fields of the per-request line, see
:mod:`proxyapi.observe`). Secrets are scrubbed from every formatted line, tracebacks included.

A client decides much of what is logged (a path, a model name, an upstream's error text it
provoked). In the text format, control characters in a record are written as escapes
(``\r``, ``\n``, ``\x1b``), and the lines of a traceback are indented, so every line that starts
at the left margin is a record the gateway wrote. :func:`clip` bounds a client field's length.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections.abc import Iterable
from typing import Any

from flask import Flask, g, has_request_context

from proxyapi.errors import redact, secret_forms

_HANDLER_FLAG = "_proxyapi_handler"
# The gateway's own loggers, and the libraries' that report shared-state trouble: those can
# repeat one traceback per request while Redis is down, so they pass through RepeatFilter.
LOGGERS = ("proxyapi", "urllib3")
NOISY_LOGGERS = ("pybreaker", "flask-limiter", "limits")
# One line per distinct message per this many seconds from the noisy loggers.
REPEAT_WINDOW = 60.0
# Most characters of one client-supplied field in a log line.
MAX_FIELD_CHARS = 200

# C0 and C1 controls, DEL, the Unicode line and paragraph separators, and lone surrogates.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape_one(match: re.Match[str]) -> str:
    char = match.group(0)
    code = ord(char)
    return _ESCAPES.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def escape_control(text: str) -> str:
    """Write control characters as visible escapes, so ``text`` stays on one line."""
    return _CONTROL.sub(_escape_one, text) if _CONTROL.search(text) else text


def clip(text: str, limit: int = MAX_FIELD_CHARS) -> str:
    """Shorten ``text`` to ``limit`` characters, marking the cut with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


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

    def __init__(self, fmt: str | None, secrets: Iterable[str]) -> None:
        super().__init__(fmt)
        self.secrets = secret_forms(secrets)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 (logging's name)
        return escape_control(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:  # noqa: N802
        # Indented, so a line a client planted in an exception's text cannot pass for a record.
        text = super().formatException(ei)
        return "\n".join("    " + escape_control(line) for line in text.split("\n"))

    def formatStack(self, stack_info: str) -> str:  # noqa: N802
        return "\n".join("    " + line for line in stack_info.split("\n"))

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record), self.secrets)


class JsonFormatter(RedactingFormatter):
    """One JSON object per line; a record's ``fields`` (a dict) are merged in."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__(None, secrets)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        text = json.dumps(line, ensure_ascii=False, default=str)
        # JSON escapes the other controls; these two end a line in some log viewers.
        text = text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        return redact(text, self.secrets)


def configure_logging(secrets: Iterable[str], json_lines: bool = False) -> None:
    """Install one stderr handler on the gateway's loggers (replacing an earlier one)."""
    handler = logging.StreamHandler(sys.stderr)
    formatter: logging.Formatter
    if json_lines:
        formatter = JsonFormatter(secrets)
    else:
        formatter = RedactingFormatter(
            "%(asctime)s %(levelname)s [%(process)d] [%(request_id)s] %(name)s: %(message)s",
            secrets,
        )
    handler.setFormatter(formatter)
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


def init_app(app: Flask, secrets: Iterable[str]) -> None:
    """Configure the gateway's logging (``LOG_FORMAT=json`` for one JSON object a line)."""
    configure_logging(secrets, json_lines=os.environ.get("LOG_FORMAT", "").lower() == "json")
