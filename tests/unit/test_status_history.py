"""The status page's per-minute history: buckets, rollover, merging, quantiles, charts."""

from __future__ import annotations

import json
from typing import Any

import pytest

from proxyapi.status import charts, history
from proxyapi.status.history import CALLS, ERRORS, FALLBACKS, SHED, History, Recording

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_calls_errors_fallbacks_and_shed_land_in_this_minutes_bucket() -> None:
    clock = Clock()
    h = History(clock)
    h.outcome("p", "ok", 0.02)
    h.outcome("p", "failure", 1.2)
    h.outcome("p", "declined", 0.1)
    h.outcome("p", "client_error", 0.05)
    h.outcome("p", "breaker_open", 0.0)
    h.outcome("p", "skipped", 0.0)
    h.fell_back("p")
    minute = str(history.minute_of(T0))
    fields = h.figures()["p"][minute]
    assert fields[CALLS] == 4
    assert fields[ERRORS] == 3  # everything but the 2xx
    assert fields[FALLBACKS] == 1
    assert fields[SHED] == 2
    assert sum(history.latency(fields)) == 4  # shed calls have no latency


def test_a_bucket_is_reused_when_its_minute_comes_round_and_old_ones_drop_out() -> None:
    clock = Clock()
    h = History(clock)
    h.outcome("p", "ok", 0.01)
    clock.now += 60
    h.outcome("p", "ok", 0.01)
    h.outcome("p", "ok", 0.01)
    figures = h.figures()["p"]
    assert {int(m): f[CALLS] for m, f in figures.items()} == {
        history.minute_of(T0): 1,
        history.minute_of(T0) + 1: 2,
    }
    clock.now = T0 + 60 * 60  # the first minute's slot comes round again
    h.outcome("p", "failure", 0.01)
    figures = h.figures()["p"]
    assert str(history.minute_of(T0)) not in figures
    assert figures[str(history.minute_of(clock.now))][ERRORS] == 1
    assert figures[str(history.minute_of(T0) + 1)][CALLS] == 2  # 59 minutes old: still kept
    clock.now += 60
    assert str(history.minute_of(T0) + 1) not in h.figures()["p"]


def test_memory_stays_at_sixty_buckets_per_provider() -> None:
    clock = Clock()
    h = History(clock)
    for _ in range(500):
        h.outcome("p", "ok", 0.01)
        clock.now += 60
    assert len(h._rings["p"]) == history.MINUTES
    assert len(h.figures()["p"]) == 59  # the current minute has had nothing yet


def test_two_workers_merge_minute_by_minute_after_a_trip_through_json() -> None:
    clock = Clock()
    a, b = History(clock), History(clock)
    a.outcome("p", "ok", 0.004)
    b.outcome("p", "ok", 0.2)
    b.outcome("q", "failure", 3.0)
    clock.now += 60
    a.outcome("p", "ok", 0.004)
    shared = [json.loads(json.dumps(w.figures())) for w in (a, b)]
    merged = history.merge(shared)
    first, second = history.minute_of(T0), history.minute_of(T0) + 1
    assert merged["p"][first][CALLS] == 2
    assert merged["p"][second][CALLS] == 1
    assert merged["q"][first][ERRORS] == 1
    buckets = history.series(merged["p"], clock.now)
    assert len(buckets) == history.MINUTES
    assert [b[CALLS] for b in buckets[-2:]] == [2, 1]
    assert history.summary(buckets)["calls"] == 3


@pytest.mark.parametrize(
    "junk",
    [None, "x", {"p": "x"}, {"p": {"123": [1, 2]}}, {"p": {"not-a-minute": [0] * history.WIDTH}}],
)
def test_figures_of_another_shape_are_left_out(junk: Any) -> None:
    good = {"p": {"100": [1] + [0] * (history.WIDTH - 1)}}
    merged = history.merge([junk, good])
    assert merged["p"][100][CALLS] == 1
    assert set(merged["p"]) == {100}


def test_quantiles_come_from_the_merged_bucket_counts() -> None:
    one = History(Clock())
    two = History(Clock())
    for _ in range(90):
        one.outcome("p", "ok", 0.003)  # in the first bucket, 0-5 ms
    for _ in range(10):
        two.outcome("p", "ok", 0.7)  # 500-1000 ms
    merged = history.merge([one.figures(), two.figures()])
    summary = history.summary(history.series(merged["p"], T0))
    assert summary["calls"] == 100
    assert 0 < summary["p50_ms"] <= 5
    # The 95th of 100 is the 5th of the 10 slow ones: halfway through 500-1000 ms.
    assert summary["p95_ms"] == pytest.approx(750)
    # Either worker alone would say something else: merging is what makes it right.
    alone = history.summary(history.series(history.merge([one.figures()])["p"], T0))
    assert alone["p95_ms"] <= 5


def test_quantile_edges() -> None:
    assert history.quantile([0] * (history.WIDTH - 4), 0.5) is None
    above = [0] * (len(history.LATENCY_BOUNDS_MS) + 1)
    above[-1] = 3
    assert history.quantile(above, 0.95) == history.LATENCY_BOUNDS_MS[-1]


def test_recording_tells_the_metrics_and_the_history() -> None:
    heard: list[tuple[Any, ...]] = []

    class Inner:
        def upstream_outcome(self, *args: Any) -> None:
            heard.append(("outcome", *args))

        def fell_back(self, provider: str) -> None:
            heard.append(("fell_back", provider))

        def first_event(self, provider: str, seconds: float) -> None:
            heard.append(("first_event", provider, seconds))

        def breaker(self, provider: str, state: str) -> None:
            heard.append(("breaker", provider, state))

        def rejected(self, scope: str) -> None:
            heard.append(("rejected", scope))

    h = History(Clock())
    rec = Recording(Inner(), h)
    rec.upstream_outcome("p", "ok", 0.1, 2)
    rec.fell_back("p")
    rec.first_event("p", 0.3)
    rec.breaker("p", "open")
    rec.rejected("provider")
    assert heard == [
        ("outcome", "p", "ok", 0.1, 2),
        ("fell_back", "p"),
        ("first_event", "p", 0.3),
        ("breaker", "p", "open"),
        ("rejected", "provider"),
    ]
    fields = h.figures()["p"][str(history.minute_of(T0))]
    assert fields[CALLS] == 1 and fields[FALLBACKS] == 1


def test_a_sparkline_spans_the_box_and_peaks_at_the_top() -> None:
    spark = charts.sparkline([0, 5, None, 10], "calls")
    points = [tuple(map(float, p.split(","))) for p in spark.points.split()]
    assert len(points) == 4
    assert points[0][0] == charts.PAD and points[-1][0] == pytest.approx(charts.WIDTH - charts.PAD)
    ys = [y for _, y in points]
    assert ys[0] == ys[2] == charts.HEIGHT - charts.PAD  # zero and no data at the bottom
    assert ys[3] == charts.PAD  # the peak at the top
    assert ys[1] == pytest.approx((ys[0] + ys[3]) / 2)
    assert spark.peak == 10 and spark.last == 10
    flat = charts.sparkline([0, 0], "x")
    assert {p.split(",")[1] for p in flat.points.split()} == {f"{charts.HEIGHT - charts.PAD:.1f}"}


def test_a_gauge_is_clamped() -> None:
    assert charts.bar(-1) == 0 and charts.bar(0.4567) == 45.7 and charts.bar(3) == 100
