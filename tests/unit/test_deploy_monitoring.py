"""The alert rules and the Grafana dashboard in deploy/: valid, tested with promtool, and built
only on metrics and labels the gateway exposes; the metrics added for them move."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.cache.codec import Entry, EntryCodec
from proxyapi.metrics import EXTENSION as METRICS

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "proxyapi-dashboard.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
# Labels Prometheus adds to every series it scrapes.
TARGET_LABELS = {"instance", "job"}
# A metric name where PromQL uses one: before a selector, a range, a comma or a parenthesis.
METRIC_NAME = re.compile(r"\b(proxyapi_[A-Za-z0-9_:]*)(?=\s*(?:[{\[),]|$)|\s)")
SELECTOR = re.compile(r"\b(proxyapi_[A-Za-z0-9_:]*)\s*\{([^}]*)\}")
MATCHER_LABEL = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*(?:=~|!~|!=|=)")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)\s*\(")
LABEL_VALUES = re.compile(r"label_values\(\s*(proxyapi_[A-Za-z0-9_:]*)[^,]*,\s*([A-Za-z_]\w*)\s*\)")
SEVERITIES = {"info", "warning", "critical"}
PROMTOOL_TIMEOUT = 60


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed: install Debian's prometheus package "
            "(apt-get install -y prometheus), as .ci/run does"
        )
    return path


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [promtool(), *args],
        cwd=ROOT,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=PROMTOOL_TIMEOUT,
    )


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels(board: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows included."""
    for panel in board["panels"]:
        yield panel
        yield from panel.get("panels", [])


def dashboard_exprs(board: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in panels(board) for t in p.get("targets", [])]
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            exprs.append(query["query"] if isinstance(query, dict) else query)
    return exprs


# ---------------------------------------------------------------------- what the gateway exposes


def build_app() -> Flask:
    return create_app(
        {
            "auth": {"keys": [{"name": "alice", "sha256": hash_key("alice-key")}]},
            "providers": [
                {"name": "p", "type": "openai", "base_url": "http://p.test/v1", "models": ["m"]}
            ],
        }
    )


@cache
def exposed() -> dict[str, set[str]]:
    """Each sample name ``GET /metrics`` can show, with the labels its series carry."""
    app = build_app()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    # Counters are declared with their _total. A label-less counter's _created (its start
    # time, left out in multiprocess mode, the way gunicorn runs) is not a metric of ours.
    declared = [
        (name, kind)
        for name, kind in re.findall(r"^# TYPE (proxyapi_\S+) (\w+)$", text, re.M)
        if not name.endswith("_created")
    ]
    # A scrape shows a metric's labels only once it has a series; prometheus-client keeps
    # the declared ones on the metric object.
    labels = {
        m._name: set(m._labelnames) | TARGET_LABELS
        for m in vars(app.extensions[METRICS]).values()
        if isinstance(m, MetricWrapperBase)
    }
    names: dict[str, set[str]] = {}
    for family, kind in declared:
        if kind == "counter":
            names[family] = labels[family.removesuffix("_total")]
        elif kind == "histogram":
            names[f"{family}_bucket"] = labels[family] | {"le"}
            names[f"{family}_sum"] = names[f"{family}_count"] = labels[family]
        else:
            names[family] = labels[family]
    return names


def check_expr(expr: str, where: str) -> list[str]:
    """What in ``expr`` names a metric or a label the gateway does not expose."""
    known = exposed()
    problems = []
    used = set(METRIC_NAME.findall(expr))
    if not used:
        problems.append(f"{where}: uses no proxyapi_ metric: {expr!r}")
    problems += [f"{where}: no metric {name}" for name in sorted(used - set(known))]
    for name, matchers in SELECTOR.findall(expr):
        for label in MATCHER_LABEL.findall(matchers):
            if name in known and label not in known[name]:
                problems.append(f"{where}: {name} has no label {label!r}")
    for match in GROUPING.finditer(expr):
        grouped = {x.strip() for x in match.group(1).split(",") if x.strip()}
        for name in set(METRIC_NAME.findall(_group_at(expr, match.end() - 1))) & set(known):
            problems += [
                f"{where}: {name} has no label {label!r} to group by"
                for label in sorted(grouped - known[name])
            ]
    for name, label in LABEL_VALUES.findall(expr):
        if name in known and label not in known[name]:
            problems.append(f"{where}: {name} has no label {label!r}")
    return problems


def _group_at(text: str, start: int) -> str:
    """The balanced parenthesised text that opens at ``text[start]``."""
    depth = 0
    for i in range(start, len(text)):
        depth += {"(": 1, ")": -1}.get(text[i], 0)
        if depth == 0:
            return text[start : i + 1]
    raise AssertionError(f"unbalanced parentheses in {text!r}")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown`` (duplicates get -1, -2, ...)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    in_code = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        match = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if in_code or not match:
            continue
        slug = re.sub(r"[^\w\- ]", "", match.group(1).lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


# ---------------------------------------------------------------------- the checkers themselves


def test_the_expression_check_finds_unknown_metrics_and_labels() -> None:
    good = (
        'sum by (provider, le) (rate(proxyapi_upstream_latency_seconds_bucket{provider!=""}[5m]))'
    )
    assert check_expr(good, "x") == []
    assert check_expr("rate(proxyapi_nope_total[5m])", "x") == ["x: no metric proxyapi_nope_total"]
    assert check_expr('proxyapi_requests_total{model="m"}', "x") == [
        "x: proxyapi_requests_total has no label 'model'"
    ]
    assert check_expr("sum by (provider) (rate(proxyapi_requests_total[5m]))", "x") == [
        "x: proxyapi_requests_total has no label 'provider' to group by"
    ]
    assert check_expr("label_values(proxyapi_breaker_state, route)", "x") == [
        "x: proxyapi_breaker_state has no label 'route'"
    ]
    # A histogram's family name alone is not a series.
    assert check_expr("proxyapi_upstream_latency_seconds", "x") == [
        "x: no metric proxyapi_upstream_latency_seconds"
    ]


def test_anchors_are_computed_as_github_does() -> None:
    text = "# Alerts\n## Alert: `ProxyAPIBreakerOpen`\n```\n# not a heading\n```\n## 503 (again)\n## 503 (again)\n"
    assert github_anchors(text) == {
        "alerts",
        "alert-proxyapibreakeropen",
        "503-again",
        "503-again-1",
    }


# ---------------------------------------------------------------------- the alert rules


def test_promtool_accepts_the_rules() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_rules_pass() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_promtool_finds_nothing_to_lint_in_the_metrics() -> None:
    text = build_app().test_client().get("/metrics").get_data(as_text=True)
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0 and not result.stdout + result.stderr, (
        result.stdout + result.stderr
    )


def test_the_issue_s_alerts_are_there() -> None:
    names = {rule["alert"] for rule in alert_rules()}
    assert {
        "ProxyAPIBreakerOpen",
        "ProxyAPIHighErrorRatio",
        "ProxyAPIUpstreamLatencyHigh",
        "ProxyAPIFallbackRateHigh",
        "ProxyAPILimitStoreDown",
        "ProxyAPICacheEntriesRefused",
        "ProxyAPIBudgetNearExhaustion",
        "ProxyAPIWorkerRestarts",
    } <= names


def test_every_alert_is_complete_and_links_its_troubleshooting_entry() -> None:
    anchors = github_anchors(TROUBLESHOOTING.read_text())
    for rule in alert_rules():
        name = rule["alert"]
        assert re.fullmatch(r"ProxyAPI[A-Z][A-Za-z]+", name), name
        assert "for" in rule, name
        assert rule["labels"]["severity"] in SEVERITIES, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook_url"] == f"docs/troubleshooting.md#alert-{name.lower()}", name
        assert f"alert-{name.lower()}" in anchors, f"{name}: no heading 'Alert: {name}'"


def test_every_alert_has_a_firing_and_a_quiet_case_in_the_promtool_tests() -> None:
    cases: dict[str, set[bool]] = {}
    for test in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for case in test.get("alert_rule_test", []):
            cases.setdefault(case["alertname"], set()).add(bool(case.get("exp_alerts")))
    for rule in alert_rules():
        assert cases.get(rule["alert"]) == {True, False}, rule["alert"]


def test_alerts_use_only_metrics_and_labels_the_gateway_exposes() -> None:
    problems = [p for rule in alert_rules() for p in check_expr(rule["expr"], rule["alert"])]
    assert problems == []


# ---------------------------------------------------------------------- the dashboard


def test_the_dashboard_is_a_grafana_dashboard_with_a_datasource_variable() -> None:
    board = dashboard()
    assert board["title"] and board["uid"]
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in panels(board)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    graphs = [p for p in panels(board) if p["type"] != "row"]
    assert len(graphs) >= 12
    for panel in graphs:
        assert panel["title"], panel["id"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["expr"].strip() and target["refId"], panel["title"]
        assert {"h", "w", "x", "y"} <= set(panel["gridPos"]), panel["title"]


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    used = {name for expr in dashboard_exprs(dashboard()) for name in METRIC_NAME.findall(expr)}
    assert {
        "proxyapi_requests_total",
        "proxyapi_upstream_latency_seconds_bucket",
        "proxyapi_upstream_first_token_seconds_bucket",
        "proxyapi_breaker_state",
        "proxyapi_fallbacks_total",
        "proxyapi_upstream_retries_total",
        "proxyapi_cache_lookups_total",
        "proxyapi_ratelimit_rejections_total",
        "proxyapi_tokens_total",
        "proxyapi_cost_usd_total",
        "proxyapi_redis_errors_total",
        "proxyapi_requests_in_flight",
        "proxyapi_streams_in_flight",
    } <= used


def test_the_dashboard_uses_only_metrics_and_labels_the_gateway_exposes() -> None:
    board = dashboard()
    problems = [
        p
        for panel in panels(board)
        for target in panel.get("targets", [])
        for p in check_expr(target["expr"], panel["title"])
    ]
    for variable in board["templating"]["list"]:
        if variable.get("type") == "query":
            query = variable["query"]
            expr = query["query"] if isinstance(query, dict) else query
            problems += check_expr(expr, f"variable {variable['name']}")
    assert problems == []


# ---------------------------------------------------------------------- the metrics added for them


def scrape(app: Flask) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = app.test_client().get("/metrics").get_data(as_text=True)
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_each_app_built_counts_one_worker_start() -> None:
    app = build_app()
    assert scrape(app)[("proxyapi_worker_starts_total", ())] == 1
    # Scraping again (or serving) does not count again.
    assert scrape(app)[("proxyapi_worker_starts_total", ())] == 1


def test_refused_cache_values_are_counted_by_reason() -> None:
    told: list[str] = []
    signed = EntryCodec(b"k" * 32, on_refuse=told.append)
    other = EntryCodec(b"o" * 32)
    plain = EntryCodec()
    entry = Entry({"a": 1}, 1.0, 60, key="pxc:k")
    assert signed.loads(plain.dumps(entry)) is None  # unsigned where signing is on
    assert signed.loads(other.dumps(entry)) is None  # another key's signature
    assert signed.loads(b"\x80\x04pickle") is None
    assert signed.loads(b"pxs1:nocolon") is None
    assert signed.loads(signed.dumps(entry)) == entry
    assert told == ["signature", "signature", "malformed", "malformed"]
    assert signed.rejected == 4


def test_a_refused_cache_entry_moves_the_app_s_counter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CACHE_SIGNING_KEY", "s" * 32)

    def app(**cache: Any) -> Flask:
        return create_app(
            {
                "auth": {"keys": [{"name": "alice", "sha256": hash_key("alice-key")}]},
                "providers": [
                    {"name": "p", "type": "openai", "base_url": "http://p.test/v1", "models": ["m"]}
                ],
                "redis": {"namespace": "monitoring-test"},
                "cache": {"backend": "filesystem", "dir": str(tmp_path / "cache"), **cache},
            }
        )

    unsigned, signing = app(), app(signing_key_env="CACHE_SIGNING_KEY")
    with unsigned.app_context():
        assert unsigned.extensions["proxyapi.cache"].store.set("responses", "k", {"v": 1})
    with signing.app_context():
        assert signing.extensions["proxyapi.cache"].store.get("responses", "k") is None
    samples = scrape(signing)
    assert samples[("proxyapi_cache_refused_total", (("reason", "signature"),))] == 1
    assert ("proxyapi_cache_refused_total", (("reason", "signature"),)) not in scrape(unsigned)
