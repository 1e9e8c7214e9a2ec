"""``GET /v1/usage``: what keys used and spent, from the usage log, in JSON or CSV.

A key sees its own usage; an admin key sees every key's, and may filter by ``key``. Filters:
``model`` and ``provider`` (exact names), ``start`` and ``end`` (ISO 8601 dates or times, UTC
when no offset is given; default the last 30 days), ``group`` (``day``, default, or ``hour``),
``format`` (``json``, default, or ``csv``). Each row is one combination of bucket, key, route,
provider, model and cache hit, with its requests, its tokens by unit and its cost, priced now
from its units (so a price fixed later applies to the past; a model with no price shows
``cost_usd: null`` and ``unpriced: true``, a cache hit costs 0). This worker's usage is written
first, so a key sees its own last request; other workers' within ``usage.flush_interval``.
"""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from flask import Blueprint, Response, current_app, g, jsonify, request

from proxyapi import accounting
from proxyapi.errors import InvalidRequest, PermissionDenied, ResourceNotFound, ServiceUnavailable
from proxyapi.providers.base import Usage
from proxyapi.timefmt import iso_utc, parse_iso
from proxyapi.usage import UNITS, UsageRow

bp = Blueprint("usage", __name__, url_prefix="/v1")
DEFAULT_DAYS = 30
# Hourly rows over a long range are a lot of rows: a month at most.
MAX_HOURLY_DAYS = 31
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
# A model or provider name to filter by is at most this long (the log cuts names at 256).
MAX_NAME = 256
COLUMNS = (
    "start",
    "key",
    "route",
    "provider",
    "model",
    "cache_hit",
    "requests",
    *UNITS,
    "cost_usd",
    "unpriced",
)


def _when(name: str, default: datetime) -> datetime:
    raw = request.args.get(name)
    if raw is None:
        return default
    value = parse_iso(raw)
    if value is None:
        raise InvalidRequest(
            f"{name} must be an ISO 8601 date or time such as 2026-12-01 or "
            f"2026-12-01T10:00:00Z, got {raw[:40]!r}.",
            param=name,
        )
    # Far enough from datetime's ends that the default range and epoch seconds exist.
    if not EARLIEST <= value <= LATEST:
        raise InvalidRequest(
            f"{name} must be between {EARLIEST.year} and {LATEST.year}, got {raw[:40]!r}.",
            param=name,
        )
    return value


def _param(name: str, choices: tuple[str, ...], default: str) -> str:
    value = request.args.get(name, default)
    if value not in choices:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(choices)}, got {value[:40]!r}.", param=name
        )
    return value


def row_view(acc: accounting.Accounting, row: UsageRow) -> dict[str, Any]:
    """One row of the answer, priced now (the status page's spend is summed from these)."""
    usage = Usage(
        row.input_tokens,
        row.output_tokens,
        row.input_tokens + row.output_tokens,
        row.cache_read_tokens,
        row.cache_write_tokens,
        row.cache_write_1h_tokens,
        row.reasoning_tokens,
        row.model,
    )
    cost = 0.0 if row.cache_hit else acc.pricer.cost(row.provider, row.model, usage)
    return {
        "start": iso_utc(row.start),
        "key": row.key,
        "route": row.route,
        "provider": row.provider,
        "model": row.model,
        "cache_hit": row.cache_hit,
        "requests": row.requests,
        **{unit: getattr(row, unit) for unit in UNITS},
        "cost_usd": cost,
        "unpriced": cost is None,
    }


def _totals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    totals: dict[str, Any] = {"requests": sum(r["requests"] for r in rows)}
    for unit in UNITS:
        totals[unit] = sum(r[unit] for r in rows)
    totals["cost_usd"] = sum(r["cost_usd"] for r in rows if r["cost_usd"] is not None)
    totals["unpriced_requests"] = sum(r["requests"] for r in rows if r["unpriced"])
    return totals


def _cell(value: Any) -> Any:
    """A CSV cell: true/false as JSON writes them; text a spreadsheet would run as a formula
    written as text."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value and value[0] in "=+-@\t\r":
        return f"'{value}"
    return value


def _name(param: str) -> str | None:
    value = request.args.get(param) or None
    if value is not None and len(value) > MAX_NAME:
        raise InvalidRequest(f"{param} is at most {MAX_NAME} characters.", param=param)
    return value


def _csv(rows: list[dict[str, Any]]) -> Response:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(v) for k, v in row.items()})
    return Response(
        out.getvalue(),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
    )


@bp.get("/usage")
def usage() -> Response:
    """Usage and cost by key, model, provider and day or hour."""
    acc: accounting.Accounting = current_app.extensions[accounting.EXTENSION]
    if acc.store is None:
        raise ResourceNotFound(
            "The usage log is off (usage.enabled: false, or usage.store: none).",
            error_code="usage_log_off",
        )
    key = g.key
    group = _param("group", ("day", "hour"), "day")
    fmt = _param("format", ("json", "csv"), "json")
    now = datetime.now(UTC)
    end = _when("end", now)
    start = _when("start", end - timedelta(days=DEFAULT_DAYS))
    if start >= end:
        raise InvalidRequest("start must be before end.", param="start")
    if group == "hour" and end - start > timedelta(days=MAX_HOURLY_DAYS):
        raise InvalidRequest(
            f"group=hour covers at most {MAX_HOURLY_DAYS} days; use group=day for longer.",
            param="group",
        )
    asked = request.args.get("key")
    if asked is not None and asked != key.name and not key.admin:
        raise PermissionDenied(
            "A key sees its own usage only; an admin key sees every key's.",
            error_code="admin_required",
        )
    keys = [asked] if asked is not None else (None if key.admin else [key.name])
    acc.flush()
    try:
        found = acc.store.query(
            start.timestamp(),
            end.timestamp(),
            group,
            keys,
            model=_name("model"),
            provider=_name("provider"),
        )
    except (redis.RedisError, sqlite3.Error, OSError) as exc:
        raise ServiceUnavailable(
            f"The usage log cannot be read right now ({exc.__class__.__name__}).",
            error_code="usage_log_unavailable",
        ) from exc
    rows = [row_view(acc, row) for row in found]
    if fmt == "csv":
        return _csv(rows)
    return jsonify(
        object="usage",
        start=iso_utc(start.timestamp()),
        end=iso_utc(end.timestamp()),
        group=group,
        data=rows,
        totals=_totals(rows),
    )
