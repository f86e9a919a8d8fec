"""The metrics bridge and the log discipline (issue: observability)."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest

from openlineage_emitter import EmitterSettings, Overflow, ThreadedTransport, ThreadEmitter
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.retry import RetryPolicy
from tests.conftest import make_event, wait_until


class Recorder:
    """A metrics client that keeps what it was sent (the shape of Airflow's ``Stats``)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: list[tuple[str, str, float, dict[str, str]]] = []

    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None:
        with self.lock:
            self.sent.append(("incr", stat, count, dict(tags or {})))

    def gauge(self, stat: str, value: float, *, tags: dict[str, str] | None = None) -> None:
        with self.lock:
            self.sent.append(("gauge", stat, value, dict(tags or {})))

    def timing(self, stat: str, dt: float, *, tags: dict[str, str] | None = None) -> None:
        with self.lock:
            self.sent.append(("timing", stat, dt, dict(tags or {})))

    def total(self, stat: str, **tags: str) -> float:
        with self.lock:
            return sum(
                v
                for kind, s, v, t in self.sent
                if kind == "incr" and s == stat and all(t.get(k) == x for k, x in tags.items())
            )

    def names(self) -> set[str]:
        with self.lock:
            return {s for _, s, _, _ in self.sent}


class Exploding(Recorder):
    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str] | None = None) -> None:
        raise OSError("statsd is down")


def test_counters_timers_and_gauges_are_published_under_ol_emitter(collector: Collector) -> None:
    recorder = Recorder()
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(),
        metrics=recorder,
        metric_tags={"component": "task_runner"},
    )
    for _ in range(5):
        transport.emit(make_event())
    assert transport.close(5)
    assert recorder.total("ol.emitter.submitted") == 5
    assert recorder.total("ol.emitter.delivered", component="task_runner", transport="http") == 5
    assert {"ol.emitter.queue_depth", "ol.emitter.delivery_latency", "ol.emitter.call_latency"} <= (
        recorder.names()
    )


def test_call_latency_is_one_timing_per_request_also_when_events_are_handed_over_together(
    collector: Collector,
) -> None:
    recorder = Recorder()
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(lanes=1),
        metrics=recorder,
    )
    for _ in range(20):  # queued faster than sent: several go to the call thread at once
        transport.emit(make_event())
    assert transport.close(5)
    with recorder.lock:
        calls = [v for kind, s, v, _ in recorder.sent if kind == "timing" and s == "ol.emitter.call_latency"]
    assert len(calls) == len(collector.received) == 20


def test_drops_are_published_by_reason() -> None:
    recorder = Recorder()
    gate = threading.Event()
    emitter = ThreadEmitter(
        lambda _e: gate.wait(5),
        EmitterSettings(queue_size=2, overflow=Overflow.DROP_NEWEST),
        close_at_exit=False,
        metrics=recorder,
    )
    try:
        for i in range(6):
            emitter.submit(i)
        gate.set()
        assert emitter.flush(5)
    finally:
        emitter.close(1)
    dropped = emitter.stats().dropped["queue_full"]
    assert dropped >= 3
    assert recorder.total("ol.emitter.dropped", reason="queue_full") == dropped
    assert recorder.total("ol.emitter.dropped.queue_full") == dropped


def test_breaker_changes_are_published(collector: Collector) -> None:
    collector.answer(Answer(status=503))
    recorder = Recorder()
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(retry=RetryPolicy(attempts=1), breaker_threshold=1, breaker_cooldown_s=30),
        metrics=recorder,
    )
    try:
        transport.emit(make_event())
        assert wait_until(lambda: recorder.total("ol.emitter.breaker.opened") == 1)
    finally:
        transport.close(0.5)


def test_a_broken_metrics_client_never_breaks_delivery(collector: Collector) -> None:
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(),
        metrics=Exploding(),
    )
    for _ in range(3):
        transport.emit(make_event())
    assert transport.close(5)
    assert len(collector.events) == 3


def test_a_flood_of_drops_logs_a_handful_of_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    gate = threading.Event()
    emitter = ThreadEmitter(lambda _e: gate.wait(5), EmitterSettings(queue_size=1), close_at_exit=False)
    try:
        for i in range(10_002):
            emitter.submit(i)
        assert emitter.stats().dropped["queue_full"] >= 10_000
        queue_full = [r for r in caplog.records if "queue is full" in r.getMessage()]
        assert 1 <= len(queue_full) <= 3
        assert "emitter_queue_size" in queue_full[0].getMessage()  # says what to do
    finally:
        gate.set()
        emitter.close(1)


def test_close_logs_a_one_line_summary(caplog: pytest.LogCaptureFixture, collector: Collector) -> None:
    caplog.set_level(logging.INFO, logger="openlineage_emitter")
    transport = ThreadedTransport.wrap({"type": "http", "url": collector.url})
    for _ in range(4):
        transport.emit(make_event())
    assert transport.close(5)
    summaries = [r.getMessage() for r in caplog.records if "closed: delivered" in r.getMessage()]
    assert summaries == ["openlineage-emitter[http] closed: delivered 4, spooled 0, dropped 0"]


def test_nothing_is_logged_per_event_at_info(caplog: pytest.LogCaptureFixture, collector: Collector) -> None:
    caplog.set_level(logging.INFO, logger="openlineage_emitter")
    transport = ThreadedTransport.wrap({"type": "http", "url": collector.url})
    for _ in range(50):
        transport.emit(make_event())
    assert transport.flush(5)
    records: list[Any] = [r for r in caplog.records if r.name.startswith("openlineage_emitter")]
    assert records == []
    transport.close(1)


def test_strategies_count_abandoned_extractions_and_fork_fallbacks() -> None:
    from openlineage_emitter.metrics import Publisher
    from openlineage_emitter.strategies import ForkStrategy, ThreadStrategy

    recorder = Recorder()
    publisher = Publisher(recorder, {"component": "task_runner"})
    release = threading.Event()
    thread = ThreadStrategy(0.05, publisher=publisher)
    try:
        assert thread.run(lambda: release.wait(5), "on_running") is False
        assert thread.run(lambda: None, "on_success") is False  # skipped: one is still stuck
    finally:
        release.set()
    assert recorder.total("ol.emitter.abandoned_extractions", component="task_runner") == 1
    assert recorder.total("ol.emitter.skipped_extractions") == 1
    # With another thread alive the fork strategy must not fork: it falls back.
    hold = threading.Event()
    other = threading.Thread(target=hold.wait, args=(5,))
    other.start()
    try:
        fork = ForkStrategy(1.0, ThreadStrategy(1.0), publisher=publisher)
        assert fork.run(lambda: None, "on_running") is True
    finally:
        hold.set()
        other.join(5)
    assert recorder.total("ol.emitter.fork_fallbacks") == 1


def test_a_probe_refused_with_a_4xx_closes_the_breaker_with_a_log_line_and_a_metric(
    collector: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="openlineage_emitter")
    collector.answer(Answer(status=503))
    recorder = Recorder()
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(retry=RetryPolicy(attempts=1), breaker_threshold=1, breaker_cooldown_s=0.2),
        metrics=recorder,
    )
    try:
        transport.emit(make_event())
        assert wait_until(lambda: recorder.total("ol.emitter.breaker.opened") == 1)
        collector.answer(Answer(status=400))  # up again, and refusing this event for good
        assert wait_until(lambda: transport.stats().breaker_state == "half_open")
        transport.emit(make_event())  # the probe
        assert wait_until(lambda: recorder.total("ol.emitter.breaker.closed") == 1)
        assert transport.stats().breaker_state == "closed"

        def closed() -> list[str]:
            return [r.getMessage() for r in caplog.records if "circuit breaker closed" in r.getMessage()]

        # Logged just after the metric is sent: wait for the line too.
        assert wait_until(lambda: len(closed()) >= 1)
        assert len(closed()) == 1
        assert "http_400" in closed()[0]
    finally:
        transport.close(0.5)
