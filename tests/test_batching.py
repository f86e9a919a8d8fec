"""The worker sending queued events in batches through a ``SendMany`` (see ``_batching``).

The SendMany here is a real one over the real loopback collector: it posts each event of
the batch through a real ``HttpTransport`` and reports one outcome per event, as a
transport with a batch API would.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from openlineage.client.transport.http import HttpConfig, HttpTransport

from openlineage_emitter import EmitterSettings, RetryPolicy, ThreadEmitter
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.stats import Truncated
from openlineage_emitter.transport import NO_HTTP_RETRY
from tests.conftest import make_event, wait_until
from tests.test_accounting import unaccounted

FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)


class Gate:
    """Lets calls through: all of them (open), or one per permit given (held)."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._permits: int | None = None  # None: open

    def hold(self) -> None:
        with self._changed:
            self._permits = 0

    def allow(self, calls: int = 1) -> None:
        with self._changed:
            self._permits = (self._permits or 0) + calls
            self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._permits = None
            self._changed.notify_all()

    def enter(self, timeout_s: float) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self._permits is None or self._permits > 0, timeout_s):
                return False
            if self._permits is not None:
                self._permits -= 1
            return True


class PostEach:
    """A SendMany: each event posted through a real HttpTransport, its outcome reported.

    ``gate`` can hold calls, so a test can let events queue up behind the call in
    flight and have them taken as one batch.
    """

    def __init__(self, url: str) -> None:
        self.http = HttpTransport(HttpConfig.from_dict({"url": url, "retry": dict(NO_HTTP_RETRY)}))
        self.batches: list[list[str]] = []
        self.gate = Gate()
        self.truncate: set[str] = set()  #: run ids reported as delivered with facets shed
        self.fail: BaseException | None = None  #: raised by the whole call, if set

    def __call__(self, events: Sequence[Any]) -> Sequence[object]:
        self.batches.append([e.run.runId for e in events])
        if not self.gate.enter(10):
            raise TimeoutError("test gate never opened")
        if self.fail is not None:
            raise self.fail
        outcomes: list[object] = []
        for event in events:
            try:
                self.http.emit(event)
            except Exception as exc:  # noqa: BLE001 - reported as that event's outcome
                outcomes.append(exc)
            else:
                outcomes.append(Truncated("budget") if event.run.runId in self.truncate else None)
        return outcomes


@pytest.fixture
def post_each(collector: Collector) -> Iterator[PostEach]:
    sender = PostEach(collector.url)
    yield sender
    sender.gate.open()
    sender.http.close()


@pytest.fixture
def emitters() -> Iterator[list[ThreadEmitter]]:
    made: list[ThreadEmitter] = []
    yield made
    for emitter in made:
        emitter.close(1)


def batching_emitter(emitters: list[ThreadEmitter], sender: PostEach, **settings: Any) -> ThreadEmitter:
    emitter = ThreadEmitter(
        sender.http.emit,
        EmitterSettings(**{"retry": FAST_RETRY, **settings}),
        send_many=sender,
        close_at_exit=False,
    )
    emitters.append(emitter)
    return emitter


def queue_behind_a_held_call(emitter: ThreadEmitter, sender: PostEach, events: list[Any]) -> None:
    """Submit ``events`` while the worker's first call is held: they wait as one batch."""
    sender.gate.hold()
    emitter.submit(make_event())
    assert wait_until(lambda: len(sender.batches) == 1)
    for event in events:
        emitter.submit(event)


def test_queued_events_go_in_one_call_up_to_the_batch_bound(
    collector: Collector, post_each: PostEach, emitters: list[ThreadEmitter]
) -> None:
    emitter = batching_emitter(emitters, post_each, batch_max_events=4)
    events = [make_event() for _ in range(10)]
    queue_behind_a_held_call(emitter, post_each, events)
    post_each.gate.open()
    assert emitter.flush(5)
    assert [len(batch) for batch in post_each.batches] == [1, 4, 4, 2]
    assert [e["run"]["runId"] for e in collector.events][1:] == [e.run.runId for e in events]


def test_every_event_of_a_batch_is_in_flight(post_each: PostEach, emitters: list[ThreadEmitter]) -> None:
    emitter = batching_emitter(emitters, post_each)
    queue_behind_a_held_call(emitter, post_each, [make_event() for _ in range(5)])
    post_each.gate.allow(1)  # the first call only: the second, the batch of 5, is held
    assert wait_until(lambda: len(post_each.batches) == 2)
    stats = emitter.stats()
    assert (stats.in_flight, stats.queue_depth, unaccounted(stats)) == (5, 0, 0)


def test_each_event_of_a_batch_is_settled_by_its_own_outcome(
    collector: Collector, post_each: PostEach, emitters: list[ThreadEmitter]
) -> None:
    emitter = batching_emitter(emitters, post_each)
    events = [make_event() for _ in range(5)]
    later = make_event()
    post_each.truncate = {events[4].run.runId}
    # The first event, then the batch: delivered, refused for good, delivered, refused
    # for now, delivered (and marked truncated).
    collector.script([Answer(200), Answer(200), Answer(400), Answer(200), Answer(503), Answer(200)])
    queue_behind_a_held_call(emitter, post_each, events)
    post_each.gate.allow(1)
    assert wait_until(lambda: len(post_each.batches) == 2)  # the batch of 5 is held
    emitter.submit(later)  # queued behind the batch: must come after its retry
    post_each.gate.open()
    assert wait_until(lambda: emitter.stats().delivered == 6)
    # The retry sends only the event that was not delivered yet, before anything newer.
    assert [len(batch) for batch in post_each.batches] == [1, 5, 1, 1]
    assert post_each.batches[2] == [events[3].run.runId]
    arrived = [e["run"]["runId"] for e in collector.events]
    assert arrived.index(events[3].run.runId) < arrived.index(later.run.runId)
    stats = emitter.stats()
    assert (stats.delivered, stats.dropped["non_retryable"], stats.retried) == (6, 1, 1)
    assert stats.truncated["budget"] == 1
    assert unaccounted(stats) == 0


def test_a_batch_call_that_raises_fails_every_event_of_it(
    post_each: PostEach, emitters: list[ThreadEmitter]
) -> None:
    emitter = batching_emitter(emitters, post_each)
    queue_behind_a_held_call(emitter, post_each, [make_event() for _ in range(3)])
    post_each.fail = ValueError("cannot serialise the batch")  # not retryable
    post_each.gate.open()
    assert wait_until(lambda: emitter.stats().dropped["non_retryable"] == 4)
    stats = emitter.stats()
    assert (stats.delivered, stats.failed, stats.retried, unaccounted(stats)) == (0, 4, 0, 0)


def test_a_backend_refusing_every_event_of_a_batch_fails_each_after_its_retries(
    collector: Collector, post_each: PostEach, emitters: list[ThreadEmitter]
) -> None:
    emitter = batching_emitter(emitters, post_each, retry=RetryPolicy(attempts=1), breaker_threshold=0)
    events = [make_event() for _ in range(3)]
    queue_behind_a_held_call(emitter, post_each, events)
    collector.stop()  # every post of the batch is refused: a connection error per event
    post_each.gate.open()
    assert wait_until(lambda: emitter.stats().dropped["retries_exhausted"] == 4)
    stats = emitter.stats()
    assert (stats.delivered, stats.failed, unaccounted(stats)) == (0, 4, 0)


def test_the_call_timeout_bounds_the_whole_batch(post_each: PostEach, emitters: list[ThreadEmitter]) -> None:
    emitter = batching_emitter(
        emitters, post_each, call_timeout_s=0.2, retry=RetryPolicy(attempts=1), breaker_threshold=0
    )
    post_each.gate.hold()  # never opened: every call hangs
    for _ in range(3):
        emitter.submit(make_event())
    assert wait_until(lambda: emitter.stats().dropped["retries_exhausted"] == 3, timeout_s=5)
    assert unaccounted(emitter.stats()) == 0


def test_close_settles_every_event_of_the_batch_in_flight(
    post_each: PostEach, emitters: list[ThreadEmitter]
) -> None:
    emitter = batching_emitter(emitters, post_each, call_timeout_s=30)
    queue_behind_a_held_call(emitter, post_each, [make_event() for _ in range(4)])
    assert emitter.close(0.1) is False
    stats = emitter.stats()
    assert (stats.dropped["shutdown"], stats.in_flight, unaccounted(stats)) == (5, 0, 0)
