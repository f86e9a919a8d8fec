"""The thread emitter's queue, worker and accounting, with an in-process sink as the backend.

Delivery over HTTP is specified in test_transport.py; here the sink is a plain callable so
that queue behaviour (order, overflow, concurrency, counting) is observable exactly.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from typing import Any, Protocol

import attrs
import pytest

from openlineage_emitter import EmitterSettings, Overflow, RetryPolicy, ThreadEmitter
from tests.conftest import emitter_threads, wait_until


class Sink:
    """A backend that records what it receives; ``gate`` holds every call until opened."""

    def __init__(self) -> None:
        self.received: list[Any] = []
        self.gate = threading.Event()
        self.gate.set()
        self.calls = 0

    def __call__(self, event: object) -> None:
        self.calls += 1
        if not self.gate.wait(10):
            raise TimeoutError("test gate never opened")
        self.received.append(event)


@pytest.fixture
def sink() -> Sink:
    return Sink()


class MakeEmitter(Protocol):
    def __call__(self, settings: EmitterSettings | None = None) -> ThreadEmitter: ...


@pytest.fixture
def make_emitter(sink: Sink) -> Iterator[MakeEmitter]:
    """Emitters that deliver to ``sink``; all closed at teardown."""
    made: list[ThreadEmitter] = []

    def make(settings: EmitterSettings | None = None) -> ThreadEmitter:
        emitter = ThreadEmitter(sink, settings or EmitterSettings(), close_at_exit=False)
        made.append(emitter)
        return emitter

    yield make
    sink.gate.set()
    for emitter in made:
        emitter.close(2)


def test_delivers_in_submission_order(make_emitter: MakeEmitter, sink: Sink) -> None:
    emitter = make_emitter()
    for i in range(100):
        assert emitter.submit(i) is True
    assert emitter.flush(5)
    assert sink.received == list(range(100))


def test_submit_does_not_wait_for_the_backend(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter()
    for i in range(50):
        assert emitter.submit(i)
    # Every submit returned while the backend was still holding the first call.
    stats = emitter.stats()
    assert stats.submitted == 50
    assert stats.queue_depth + stats.in_flight == 50
    assert sink.received == []


def test_drop_newest_refuses_events_past_the_bound(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter(EmitterSettings(queue_size=5, overflow=Overflow.DROP_NEWEST))
    emitter.submit("in-flight")
    assert wait_until(lambda: emitter.stats().in_flight == 1)
    accepted = [emitter.submit(i) for i in range(8)]
    assert accepted == [True] * 5 + [False] * 3
    assert emitter.stats().dropped["queue_full"] == 3
    sink.gate.set()
    assert emitter.flush(5)
    assert sink.received == ["in-flight", 0, 1, 2, 3, 4]


def test_drop_oldest_evicts_the_oldest_queued_event(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter(EmitterSettings(queue_size=5, overflow=Overflow.DROP_OLDEST))
    emitter.submit("in-flight")
    assert wait_until(lambda: emitter.stats().in_flight == 1)
    accepted = [emitter.submit(i) for i in range(8)]
    assert accepted == [True] * 8
    assert emitter.stats().dropped["queue_full"] == 3
    sink.gate.set()
    assert emitter.flush(5)
    assert sink.received == ["in-flight", 3, 4, 5, 6, 7]


def test_concurrent_submits_lose_and_duplicate_nothing(make_emitter: MakeEmitter, sink: Sink) -> None:
    threads, per_thread = 16, 5_000
    emitter = make_emitter(EmitterSettings(queue_size=threads * per_thread))
    start = threading.Barrier(threads)

    def produce(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            emitter.submit((t, i))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    assert emitter.flush(30)
    received = sink.received
    assert len(received) == threads * per_thread
    assert len(set(received)) == threads * per_thread
    for t in range(threads):  # each producer's events stay in its order
        assert [i for (src, i) in received if src == t] == list(range(per_thread))
    stats = emitter.stats()
    assert (stats.submitted, stats.delivered, stats.dropped_total) == (80_000, 80_000, 0)


def test_a_failing_backend_never_raises_into_the_caller(make_emitter: MakeEmitter) -> None:
    def explode(_event: object) -> None:
        raise KeyboardInterrupt  # even a BaseException stays on the worker

    emitter = ThreadEmitter(explode, EmitterSettings(), close_at_exit=False)
    try:
        assert emitter.submit("event") is True
        assert wait_until(lambda: emitter.stats().failed == 1)
        assert emitter.stats().dropped["non_retryable"] == 1
        assert emitter.submit("again") is True  # the worker survived
        assert wait_until(lambda: emitter.stats().failed == 2)
    finally:
        emitter.close(1)


def test_every_submitted_event_is_accounted_for(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter(EmitterSettings(queue_size=3, shutdown_timeout_s=0.2))
    for i in range(10):
        emitter.submit(i)
    emitter.close(0.2)
    emitter.submit("late")
    stats = emitter.stats()
    pending = stats.queue_depth + stats.in_flight
    assert stats.submitted == 11
    assert stats.submitted == stats.delivered + stats.dropped_total + pending
    assert stats.dropped["closed"] == 1
    assert stats.dropped["queue_full"] == 10 - 3 - 1
    assert stats.dropped["shutdown"] == 3 + 1  # the queued ones and the one in flight


def test_submit_after_close_is_refused(make_emitter: MakeEmitter) -> None:
    emitter = make_emitter()
    assert emitter.close(1) is True
    assert emitter.submit("late") is False
    assert emitter.stats().dropped["closed"] == 1


def test_flush_reports_false_when_the_deadline_passes(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter()
    emitter.submit("stuck")
    assert emitter.flush(0.1) is False
    sink.gate.set()
    assert emitter.flush(5) is True


def test_flush_reports_false_when_an_event_was_given_up(make_emitter: MakeEmitter) -> None:
    gate = threading.Event()

    def reject(_event: object) -> None:
        gate.wait(5)
        raise ValueError("not serialisable")

    emitter = ThreadEmitter(reject, EmitterSettings(), close_at_exit=False)
    try:
        emitter.submit("bad")
        threading.Timer(0.05, gate.set).start()
        assert emitter.flush(5) is False
        assert emitter.stats().dropped["non_retryable"] == 1
    finally:
        emitter.close(1)


def test_close_gives_up_at_its_deadline_with_a_stuck_backend(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter(EmitterSettings(call_timeout_s=30))
    for i in range(5):
        emitter.submit(i)
    assert emitter.close(0.2) is False
    assert emitter.stats().dropped["shutdown"] == 5  # four queued, one in flight


def open_gate_once_called(sink: Sink) -> threading.Thread:
    """Open ``sink.gate`` once the worker's first call reached the backend (busy emitter)."""

    def opener() -> None:
        if wait_until(lambda: sink.calls >= 1):
            sink.gate.set()

    thread = threading.Thread(target=opener, daemon=True)
    thread.start()
    return thread


def test_flush_without_a_bound_on_an_idle_emitter_returns_at_once(make_emitter: MakeEmitter) -> None:
    emitter = make_emitter()
    assert emitter.flush(math.inf) is True


def test_flush_without_a_bound_waits_until_a_busy_emitter_drained(
    make_emitter: MakeEmitter, sink: Sink
) -> None:
    sink.gate.clear()
    emitter = make_emitter()
    for i in range(10):
        emitter.submit(i)
    opener = open_gate_once_called(sink)
    assert emitter.flush(math.inf) is True
    opener.join(5)
    assert sink.received == list(range(10))


def test_close_with_a_huge_budget_drains_and_returns(make_emitter: MakeEmitter, sink: Sink) -> None:
    sink.gate.clear()
    emitter = make_emitter()
    for i in range(10):
        emitter.submit(i)
    opener = open_gate_once_called(sink)
    assert emitter.close(1e12) is True
    opener.join(5)
    assert emitter.stats().delivered == 10


def test_one_worker_thread_however_many_submits(make_emitter: MakeEmitter) -> None:
    emitter = make_emitter()
    before = {t.ident for t in emitter_threads()}
    for i in range(1000):
        emitter.submit(i)
    assert emitter.flush(5)
    workers = [t for t in emitter_threads() if t.ident not in before and t.name == "openlineage-emitter"]
    assert len(workers) == 1


def test_stats_is_a_frozen_snapshot(make_emitter: MakeEmitter) -> None:
    emitter = make_emitter()
    emitter.submit("a")
    assert emitter.flush(5)
    stats = emitter.stats()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        stats.delivered = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.dropped["shutdown"] = 1  # type: ignore[index]
    assert stats.delivered == 1
    assert stats.latency_p50_s is not None
    assert stats.latency_p99_s is not None
    assert stats.latency_p50_s <= stats.latency_p99_s


def test_retries_are_counted(make_emitter: MakeEmitter) -> None:
    failures = iter([ConnectionError("down"), ConnectionError("down")])

    def flaky(_event: object) -> None:
        err = next(failures, None)
        if err is not None:
            raise err

    emitter = ThreadEmitter(
        flaky,
        EmitterSettings(retry=RetryPolicy(initial_backoff_s=0.01, max_backoff_s=0.02)),
        close_at_exit=False,
    )
    try:
        emitter.submit("e")
        assert emitter.flush(5)
        stats = emitter.stats()
        assert (stats.delivered, stats.retried, stats.failed) == (1, 2, 0)
    finally:
        emitter.close(1)


def test_a_misspelt_option_is_a_type_error_as_for_any_signature() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'close_at_exti'"):
        ThreadEmitter(lambda _e: None, EmitterSettings(), close_at_exti=False)  # type: ignore[call-arg]
