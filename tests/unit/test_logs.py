"""Log lines carry request ids and never secrets, tracebacks included."""

from __future__ import annotations

import io
import logging

from proxyapi.logs import RedactingFormatter, RequestIdFilter


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
