"""Every submitted event is in exactly one counter at every ``stats()`` snapshot.

The identity (docs/emitter.md): ``submitted == delivered + spooled + dropped_total +
queue_depth + in_flight``. ``late_delivered`` is outside it: calls given up on that the
backend answered after all.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import pytest

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadedTransport, ThreadEmitter
from openlineage_emitter._backlog import SpoolBacklog
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.spool import Spool
from openlineage_emitter.stats import EmitterStats
from tests.conftest import make_event, wait_until


def unaccounted(stats: EmitterStats) -> int:
    """Submitted events in no counter (negative: counted twice)."""
    counted = stats.delivered + stats.spooled + stats.dropped_total + stats.queue_depth + stats.in_flight
    return stats.submitted - counted


class SlowSpool(SpoolBacklog):
    """A real spool whose writes wait for ``release``: the window a slow disk opens, held open."""

    def __init__(self, directory: Path) -> None:
        super().__init__(Spool(directory, 100 * 1024 * 1024))
        self.writing = threading.Event()
        self.release = threading.Event()

    def spill(self, events: Sequence[Any]) -> tuple[int, int]:
        self.writing.set()
        self.release.wait(10)
        return super().spill(events)


class HasStats(Protocol):
    def stats(self) -> EmitterStats: ...


class Snapshots:
    """Takes ``stats()`` snapshots as fast as it can on another thread until stopped."""

    def __init__(self, emitter: HasStats) -> None:
        self.taken: list[EmitterStats] = []
        self._emitter = emitter
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.taken.append(self._emitter.stats())

    def __enter__(self) -> Snapshots:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture
def hung_sink() -> Iterator[threading.Event]:
    """A gate the in-process backend waits on; opened at teardown."""
    gate = threading.Event()
    yield gate
    gate.set()


def test_every_snapshot_accounts_for_every_event_while_an_overflow_is_spilled(
    tmp_path: Path, hung_sink: threading.Event
) -> None:
    backlog = SlowSpool(tmp_path / "spool")
    emitter = ThreadEmitter(
        lambda _event: hung_sink.wait(10),
        EmitterSettings(queue_size=10, call_timeout_s=30),
        backlog=backlog,
        close_at_exit=False,
    )
    try:
        with Snapshots(emitter) as snapshots:
            emitter.submit(make_event())
            assert wait_until(lambda: emitter.stats().in_flight == 1)
            for _ in range(259):  # 10 fill the queue, 249 overflow and are spilled
                emitter.submit(make_event())
            assert backlog.writing.wait(5)
            assert wait_until(lambda: len(snapshots.taken) >= 2000)  # all inside the held-open write
            backlog.release.set()
            assert wait_until(lambda: emitter.stats().spooled == 249)
            hung_sink.set()
            assert emitter.flush(10)
        assert [unaccounted(s) for s in snapshots.taken if unaccounted(s)] == []
        assert len(snapshots.taken) >= 2000
        final = emitter.stats()
        assert (final.submitted, final.delivered, final.spooled, final.dropped_total) == (260, 11, 249, 0)
    finally:
        backlog.release.set()
        emitter.close(2)


def test_flush_waits_for_a_spill_in_progress(tmp_path: Path, hung_sink: threading.Event) -> None:
    backlog = SlowSpool(tmp_path / "spool")
    emitter = ThreadEmitter(
        lambda _event: hung_sink.wait(10),
        EmitterSettings(queue_size=1, call_timeout_s=30),
        backlog=backlog,
        close_at_exit=False,
    )
    try:
        emitter.submit(make_event())
        assert wait_until(lambda: emitter.stats().in_flight == 1)
        emitter.submit(make_event())
        emitter.submit(make_event())  # refused by the full queue: spilled
        assert backlog.writing.wait(5)
        hung_sink.set()
        # Queue and call are done, the spill is not: the events are not safe yet.
        assert emitter.flush(0.3) is False
        backlog.release.set()
        assert emitter.flush(5) is True
        assert emitter.stats().spooled == 1
    finally:
        backlog.release.set()
        emitter.close(2)


def test_a_call_abandoned_at_its_timeout_and_answered_later_counts_as_late_delivered(
    transports: list[ThreadedTransport],
) -> None:
    with Collector(Answer(delay_s=1.0)) as slow:
        transport = ThreadedTransport.wrap(
            # The HTTP timeout outlives the call timeout: the abandoned request completes.
            {"type": "http", "url": slow.url, "timeout": 10},
            EmitterSettings(call_timeout_s=0.2, retry=RetryPolicy(attempts=1), breaker_threshold=0),
        )
        transports.append(transport)
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().dropped["retries_exhausted"] == 1)
        assert wait_until(lambda: transport.stats().late_delivered == 1)
        assert len(slow.events) == 1
        stats = transport.stats()
        assert stats.delivered == 0
        assert unaccounted(stats) == 0


def test_an_event_in_flight_at_close_that_arrives_later_is_late_not_also_delivered(
    transports: list[ThreadedTransport],
) -> None:
    with Collector(Answer(delay_s=1.0)) as slow:
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": slow.url, "timeout": 10}, EmitterSettings(call_timeout_s=5)
        )
        transports.append(transport)
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().in_flight == 1)
        assert transport.close(0.1) is False
        assert wait_until(lambda: transport.stats().late_delivered == 1)
        stats = transport.stats()
        assert (stats.delivered, stats.dropped["shutdown"]) == (0, 1)
        assert unaccounted(stats) == 0


def test_late_deliveries_are_in_the_close_summary(
    transports: list[ThreadedTransport], caplog: pytest.LogCaptureFixture
) -> None:
    with Collector(Answer(delay_s=0.5)) as slow:
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": slow.url, "timeout": 10},
            EmitterSettings(call_timeout_s=0.1, retry=RetryPolicy(attempts=1), breaker_threshold=0),
        )
        transports.append(transport)
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().late_delivered == 1)
        transport.close(1)
    summary = [r.getMessage() for r in caplog.records if " closed: delivered" in r.getMessage()]
    assert len(summary) == 1
    assert "1 more arrived late" in summary[0]


def test_every_snapshot_accounts_for_every_event_across_lanes(transports: list[ThreadedTransport]) -> None:
    with Collector() as collector:
        # Delivered, retried, refused for good, given up: every way out, on several lanes at once.
        collector.script([Answer(status=s) for s in [200, 503, 400, 200, 503, 503, 400, 200] * 20])
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": collector.url},
            EmitterSettings(
                lanes=4,
                retry=RetryPolicy(attempts=2, initial_backoff_s=0.01, max_backoff_s=0.02),
                breaker_threshold=0,
            ),
        )
        transports.append(transport)

        def produce() -> None:
            for _ in range(100):
                transport.emit(make_event())

        producers = [threading.Thread(target=produce) for _ in range(4)]
        with Snapshots(transport) as snapshots:
            for producer in producers:
                producer.start()
            for producer in producers:
                producer.join(5)
            # Its return is not the point (some events are refused): every event settled is.
            transport.flush(10)
            assert wait_until(lambda: transport.stats().queue_depth + transport.stats().in_flight == 0)
            assert wait_until(lambda: len(snapshots.taken) >= 500)
        final = transport.stats()
    assert [unaccounted(s) for s in snapshots.taken if unaccounted(s)] == []
    assert final.submitted == 400
    assert final.delivered + final.dropped_total == 400
    assert final.dropped["non_retryable"] > 0
    assert final.retried > 0
