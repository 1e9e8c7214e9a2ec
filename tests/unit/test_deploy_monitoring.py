"""The monitoring kit in deploy/: alert rules unit-tested with promtool, a Grafana dashboard
that uses only metrics and labels the gateway exposes, and a runbook entry for every alert."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import Counter, Histogram

from proxyapi import create_app
from proxyapi.auth import hash_key
from proxyapi.cache.codec import EntryCodec
from proxyapi.metrics import EXTENSION, Metrics

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "proxyapi-dashboard.json"
TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"
# Labels Prometheus adds or PromQL makes, on any series.
ANY_SERIES_LABELS = {"instance", "job", "le", "__name__"}
# The alerts the monitoring kit promises, one per concern.
PROMISED = {
    "ProxyAPIBreakerOpen",
    "ProxyAPIHighErrorRatio",
    "ProxyAPIUpstreamSlow",
    "ProxyAPIHighFallbackRate",
    "ProxyAPILimitStoreDown",
    "ProxyAPICacheInconsistent",
    "ProxyAPIBudgetNearExhaustion",
    "ProxyAPIWorkerRestarts",
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        pytest.fail("promtool is missing: install Debian's prometheus package (.ci/run does)")
    return subprocess.run(
        [binary, *args], cwd=RULES.parent, capture_output=True, text=True, timeout=120
    )


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    board = json.loads(DASHBOARD.read_text())
    return [t["expr"] for p in board["panels"] for t in p["targets"]]


def exposed() -> dict[str, set[str]]:
    """Every series name the gateway exposes, with the labels each may carry."""
    app = create_app(
        {
            "auth": {"keys": [{"name": "t", "sha256": hash_key("k")}]},
            "providers": [{"name": "mock", "type": "mock"}],
        }
    )
    metrics: Metrics = app.extensions[EXTENSION]
    names: dict[str, set[str]] = {}
    for collector in metrics.registry._collector_to_names:  # every metric of the app
        base = collector._name  # type: ignore[attr-defined]
        labels = set(collector._labelnames)  # type: ignore[attr-defined]
        if isinstance(collector, Counter):
            suffixes = ("_total", "_created")
        elif isinstance(collector, Histogram):
            suffixes = ("_bucket", "_sum", "_count", "_created")
        else:
            suffixes = ("",)
        for suffix in suffixes:
            names[base + suffix] = labels
    return names


def used(expr: str) -> dict[str, set[str]]:
    """The proxyapi_* series an expression reads, with the labels it names on them."""
    found: dict[str, set[str]] = {}
    for match in re.finditer(r"\b(proxyapi_[a-z0-9_]+)\s*(\{[^}]*\})?", expr):
        selector = match.group(2) or ""
        found.setdefault(match.group(1), set()).update(re.findall(r"(\w+)\s*=~?", selector))
    grouped = set()
    for clause in re.findall(r"\b(?:by|without)\s*\(([^)]*)\)", expr):
        grouped.update(label.strip() for label in clause.split(",") if label.strip())
    for labels in found.values():
        labels.update(grouped)
    return found


def test_the_rules_pass_promtool_check_and_their_unit_tests() -> None:
    checked = promtool("check", "rules", RULES.name)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_every_promised_alert_is_there_with_a_firing_and_a_quiet_case() -> None:
    names = {rule["alert"] for rule in rules()}
    assert names == PROMISED
    cases = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    for name in PROMISED:
        checks = [
            check
            for case in cases
            for check in case.get("alert_rule_test", [])
            if check["alertname"] == name
        ]
        assert any(check["exp_alerts"] for check in checks), f"{name} is never seen firing"
        assert any(not check["exp_alerts"] for check in checks), f"{name} is never seen quiet"


def test_every_alert_links_to_its_troubleshooting_entry() -> None:
    headings = re.findall(r"^#+ (.+)$", TROUBLESHOOTING.read_text(), flags=re.MULTILINE)
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}
    for rule in rules():
        link = rule["annotations"]["runbook_url"]
        page, _, anchor = link.partition("#")
        assert page == "docs/troubleshooting.md", link
        assert anchor in anchors, f"{rule['alert']}: no heading for #{anchor}"
        assert rule["labels"]["severity"] in ("critical", "warning", "info")


def test_the_dashboard_is_valid_grafana_json() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert board["uid"] and board["title"] and board["schemaVersion"] >= 36
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    for p in board["panels"]:
        assert p["type"] in ("timeseries", "stat", "gauge", "table"), p["title"]
        assert p["targets"] and all(t["expr"].strip() for t in p["targets"]), p["title"]
        assert set(p["gridPos"]) == {"x", "y", "w", "h"}
    variables = {v["name"] for v in board["templating"]["list"]}
    assert "datasource" in variables


@pytest.mark.parametrize("source", ["alerts", "dashboard"])
def test_only_metrics_and_labels_that_exist_are_used(source: str) -> None:
    exprs = [r["expr"] for r in rules()] if source == "alerts" else dashboard_exprs()
    names = exposed()
    for expr in exprs:
        series = used(expr)
        assert series, expr
        for name, labels in series.items():
            assert name in names, f"{name} is not exposed (in {expr!r})"
            unknown = labels - names[name] - ANY_SERIES_LABELS
            # A by() clause may name a label of another series in the same expression.
            others = set().union(*(names.get(n, set()) for n in series if n != name))
            assert not unknown - others, f"{name} has no labels {unknown - others} ({expr!r})"


def test_a_refused_cache_value_and_a_worker_start_are_counted() -> None:
    app = create_app({"auth": {"keys": [{"name": "t", "sha256": hash_key("k")}]}})
    metrics: Metrics = app.extensions[EXTENSION]
    assert metrics.worker_starts._value.get() == 1  # type: ignore[attr-defined]
    store = app.extensions["proxyapi.cache"].store
    codec = store.codec
    assert isinstance(codec, EntryCodec)
    codec.refuse("a test value")
    store.on_inconsistency("stale_memory")
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'proxyapi_cache_inconsistencies_total{kind="refused"} 1.0' in text
    assert 'proxyapi_cache_inconsistencies_total{kind="stale_memory"} 1.0' in text
    assert "proxyapi_worker_starts_total 1.0" in text
