"""Log lines carry request ids and never secrets, tracebacks included."""

from __future__ import annotations

import io
import json
import logging

from proxyapi.errors import redact, secret_forms
from proxyapi.logs import (
    MAX_FIELD_CHARS,
    JsonFormatter,
    RedactingFormatter,
    RequestIdFilter,
    clip,
    escape_control,
)


def test_formatter_scrubs_secrets_from_message_and_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(request_id)s %(message)s", ["sk-secret-1"]))
    handler.addFilter(RequestIdFilter())
    logger = logging.getLogger("test.redact")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        raise ConnectionError("upstream said: bad key sk-secret-1")
    except ConnectionError:
        logger.exception("call failed with sk-secret-1")
    text = stream.getvalue()
    assert "sk-secret-1" not in text
    assert text.count("[redacted]") == 3 and "Traceback" in text  # message, source, error
    assert text.startswith("- call failed")  # no request: the id is "-"


def _line(formatter: logging.Formatter, msg: str, *args: object, exc: bool = False) -> str:
    record = logging.LogRecord("proxyapi.t", logging.WARNING, __file__, 1, msg, args, None)
    if exc:
        try:
            raise ValueError("planted\n2026-01-01 INFO fake: forged line")
        except ValueError:
            import sys

            record.exc_info = sys.exc_info()
    record.request_id = "-"
    return formatter.format(record)


def test_control_characters_cannot_start_a_new_text_line() -> None:
    formatter = RedactingFormatter("%(asctime)s %(message)s", [])
    text = _line(formatter, "model=%s path=%s", "gpt\r\nINFO forged", "/v1/x\x1b[31m\u2028y")
    assert "\n" not in text and "\r" not in text and "\x1b" not in text and "\u2028" not in text
    assert "gpt\\r\\nINFO forged" in text and "\\x1b[31m\\u2028y" in text
    with_trace = _line(formatter, "boom", exc=True).split("\n")
    # Only the first line starts at the margin; a traceback's lines (and what a client put in
    # an exception's text) are indented.
    assert all(line.startswith("    ") for line in with_trace[1:])
    assert "forged line" in with_trace[-1] and "\\n" not in with_trace[0]


def test_json_lines_escape_line_separators_too() -> None:
    text = _line(JsonFormatter([]), "a\u2028b\nc")
    assert "\u2028" not in text and "\n" not in text
    assert json.loads(text)["message"] == "a\u2028b\nc"


def test_clip_and_escape() -> None:
    assert clip("x" * 300) == "x" * 199 + "\u2026" and len(clip("x" * 300)) == MAX_FIELD_CHARS
    assert clip("short") == "short"
    assert escape_control("tab\there\x00\ud800") == "tab\\there\\x00\\ud800"


def test_redaction_covers_the_escaped_forms_of_a_secret() -> None:
    secret = 'sk-odd"key\\x'
    forms = secret_forms([secret])
    for shown in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1]):
        assert redact(shown, forms) == "[redacted]"
