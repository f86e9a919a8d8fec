"""Lanes: several calls in flight per ThreadedTransport, each run's events in order on one lane.

Real loopback collector, real threads; every wait is on a condition with a deadline.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, Protocol

import pytest
from openlineage.client.event_v2 import DatasetEvent, Job, JobEvent, RunState, StaticDataset
from openlineage.client.serde import Serde

from openlineage_emitter import EmitterSettings, Overflow, RetryPolicy, ThreadedTransport
from openlineage_emitter._run_order import run_key as lane_key
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.settings import max_threads
from tests.conftest import PRODUCER, emitter_threads, make_event, wait_until
from tests.test_accounting import unaccounted

FAST_RETRY = RetryPolicy(attempts=5, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)


class MakeTransport(Protocol):
    def __call__(self, url: str, settings: EmitterSettings, **inner: Any) -> ThreadedTransport: ...


@pytest.fixture
def make_transport(transports: list[ThreadedTransport]) -> MakeTransport:
    """ThreadedTransport(http) factory; the ``transports`` fixture closes what it makes."""

    def make(url: str, settings: EmitterSettings, **inner: Any) -> ThreadedTransport:
        transport = ThreadedTransport.wrap({"type": "http", "url": url, **inner}, settings)
        transports.append(transport)
        return transport

    return make


def run_ids_on_distinct_lanes(lanes: int, count: int) -> list[str]:
    """``count`` run ids whose events go to ``count`` different lanes."""
    found: dict[int, str] = {}
    while len(found) < count:
        event = make_event()
        found.setdefault(lane_key(event) % lanes, event.run.runId)
    return list(found.values())


def by_run(bodies: list[Any]) -> dict[str, list[str]]:
    """Each run's event types in arrival order."""
    runs: dict[str, list[str]] = {}
    for body in bodies:
        runs.setdefault(body["run"]["runId"], []).append(body["eventType"])
    return runs


# -- routing -----------------------------------------------------------------------------


def test_an_event_and_its_spooled_dict_form_take_the_same_lane() -> None:
    event = make_event()
    assert lane_key(json.loads(Serde.to_json(event))) == lane_key(event)


def test_events_of_one_run_share_a_key_whatever_their_state() -> None:
    run = make_event().run.runId
    keys = {lane_key(make_event(state, run)) for state in (RunState.START, RunState.RUNNING, RunState.FAIL)}
    assert len(keys) == 1


def test_events_without_a_run_are_keyed_by_their_job() -> None:
    job = Job(namespace="tests", name="job")
    job_event = JobEvent(eventTime="2026-01-01T00:00:00Z", job=job, producer=PRODUCER)
    as_dict = json.loads(Serde.to_json(job_event))
    dataset_event = DatasetEvent(
        eventTime="2026-01-01T00:00:00Z",
        dataset=StaticDataset(namespace="tests", name="t"),
        producer=PRODUCER,
    )
    assert lane_key(job_event) == lane_key(as_dict) == hash(("tests", "job"))
    assert lane_key(dataset_event) == 0


# -- order and concurrency ---------------------------------------------------------------


def test_calls_of_different_runs_are_in_flight_at_once_when_the_backend_is_far(
    make_transport: MakeTransport,
) -> None:
    with Collector(Answer(hang=True)) as hung:
        # A first answer 200 ms away, a call's CPU well under that: calls in flight pay off.
        hung.script([Answer(delay_s=0.2)])
        transport = make_transport(hung.url, EmitterSettings(lanes=4, call_timeout_s=30), timeout=60)
        transport.emit(make_event())
        assert hung.wait_for(1, timeout_s=5)
        for run in run_ids_on_distinct_lanes(4, 4):
            transport.emit(make_event(RunState.START, run))
        assert hung.wait_for(1 + 4, timeout_s=5, delivered=False)  # four hung at once


def test_each_runs_events_arrive_in_order_while_many_runs_are_delivered_at_once(
    make_transport: MakeTransport,
) -> None:
    with Collector(Answer(delay_s=0.002)) as collector:
        transport = make_transport(collector.url, EmitterSettings(lanes=8, retry=FAST_RETRY))
        runs = [make_event().run.runId for _ in range(60)]

        def produce(chunk: list[str]) -> None:
            for run in chunk:
                for state in (RunState.START, RunState.RUNNING, RunState.COMPLETE):
                    transport.emit(make_event(state, run))

        producers = [threading.Thread(target=produce, args=(runs[i::4],)) for i in range(4)]
        for producer in producers:
            producer.start()
        for producer in producers:
            producer.join(5)
        assert transport.flush(10)
    assert by_run(collector.events) == {run: ["START", "RUNNING", "COMPLETE"] for run in runs}


def test_a_complete_never_overtakes_its_start_while_the_start_is_retried(
    make_transport: MakeTransport,
) -> None:
    with Collector() as collector:
        # Each run's START fails once, then is retried after a backoff long enough for
        # its COMPLETE (queued behind it, and free lanes next to it) to overtake it.
        slow_retry = RetryPolicy(attempts=3, initial_backoff_s=0.3, max_backoff_s=0.3, deadline_s=10)
        transport = make_transport(collector.url, EmitterSettings(lanes=4, retry=slow_retry))
        runs = run_ids_on_distinct_lanes(4, 3)
        collector.script([Answer(status=503)] * len(runs))
        for run in runs:
            transport.emit(make_event(RunState.START, run))
        assert collector.wait_for(len(runs), timeout_s=5, delivered=False)  # the 503s
        others = [make_event().run.runId for _ in range(20)]
        for run in runs + others:
            transport.emit(make_event(RunState.COMPLETE, run))
        assert transport.flush(10)
    assert [r.status for r in collector.received].count(503) == len(runs)
    arrived = by_run(collector.events)
    assert {run: arrived[run] for run in runs} == {run: ["START", "COMPLETE"] for run in runs}


# -- hand-offs of several events ---------------------------------------------------------


def test_events_a_failed_call_did_not_reach_are_sent_after_it_without_a_retry_of_their_own(
    collector: Collector, make_transport: MakeTransport
) -> None:
    collector.script([Answer(status=503)])
    transport = make_transport(collector.url, EmitterSettings(lanes=4, retry=FAST_RETRY))
    run = make_event().run.runId
    states = [RunState.START, *[RunState.RUNNING] * 8, RunState.COMPLETE]
    for state in states:
        transport.emit(make_event(state, run))
    assert transport.flush(10)
    stats = transport.stats()
    assert (stats.delivered, stats.retried) == (10, 1)  # the one refused, retried once
    assert by_run(collector.events) == {run: [s.value for s in states]}


def test_one_slow_request_does_not_hold_up_the_other_lanes(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, EmitterSettings(lanes=2))
    slow, other = run_ids_on_distinct_lanes(2, 2)
    collector.script([Answer(delay_s=1.0)])  # before any answer: one call at a time
    transport.emit(make_event(RunState.START, slow))
    assert wait_until(lambda: transport.stats().in_flight == 1)
    transport.emit(make_event(RunState.START, other))
    assert transport.flush(10)
    assert [body["run"]["runId"] for body in collector.events] == [other, slow]


THREE_ATTEMPTS = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)


def one_runs_events(
    collector: Collector, transport: ThreadedTransport, count: int, then: list[Answer]
) -> list[str]:
    """Emit a first event of a run, answered slowly, and ``count`` more queued behind it,
    to be handed to the call thread together, answered ``then``; the ``count``'s eventTimes."""
    run = make_event().run.runId
    collector.script([Answer(delay_s=0.2), *then])
    events = [make_event(RunState.RUNNING, run) for _ in range(1 + count)]
    for event in events:
        transport.emit(event)
    return [e.eventTime for e in events[1:]]


def test_each_event_gets_retries_of_its_own_also_after_the_one_before_it_used_some(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, EmitterSettings(lanes=1, retry=THREE_ATTEMPTS))
    # In request order, after the first: event 0 refused twice, then 0-2 taken, 3 refused twice.
    then = [Answer(status=503)] * 2 + [Answer()] * 3 + [Answer(status=503)] * 2
    sent = one_runs_events(collector, transport, 10, then)
    assert transport.flush(10)
    stats = transport.stats()
    assert (stats.delivered, stats.dropped_total, stats.retried) == (11, 0, 4)
    assert [body["eventTime"] for body in collector.events][1:] == sent


def test_events_behind_one_that_ran_out_of_retries_are_still_sent(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(
        collector.url, EmitterSettings(lanes=1, retry=THREE_ATTEMPTS, breaker_threshold=0)
    )
    sent = one_runs_events(collector, transport, 10, [Answer(status=503)] * 3)  # 0: every attempt
    assert not transport.flush(10)  # drained, with one event lost
    stats = transport.stats()
    assert (stats.delivered, stats.dropped["retries_exhausted"]) == (10, 1)
    assert [body["eventTime"] for body in collector.events][1:] == sent[1:]


def test_a_call_answered_after_it_was_given_up_sends_none_of_the_events_behind_it(
    collector: Collector, make_transport: MakeTransport
) -> None:
    collector.script([Answer(delay_s=0.6)])  # the first answer comes after the call timeout
    transport = make_transport(
        collector.url, EmitterSettings(lanes=1, call_timeout_s=0.2, retry=FAST_RETRY), timeout=5
    )
    events = [make_event() for _ in range(3)]
    for event in events:
        transport.emit(event)
    assert transport.flush(10)
    # The given-up call returns once its late answer has come: whatever it sent is in by then.
    assert wait_until(lambda: transport.stats().late_delivered == 1)
    arrived = [body["run"]["runId"] for body in collector.events]
    first, *behind = (e.run.runId for e in events)
    assert sorted(arrived.count(run) for run in behind) == [1, 1]  # not sent twice
    assert arrived.count(first) == 2  # the late answer and its retry


# -- threads -----------------------------------------------------------------------------


def test_threads_stay_within_the_bound_under_a_hung_backend(make_transport: MakeTransport) -> None:
    earlier = {t.ident for t in emitter_threads()}  # left over from other tests' emitters
    lanes = 3
    bound = max_threads(lanes)
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(
            hung.url,
            EmitterSettings(lanes=lanes, call_timeout_s=0.1, retry=FAST_RETRY, breaker_threshold=0),
            timeout=60,  # the HTTP client itself would wait a minute
        )
        for run in run_ids_on_distinct_lanes(lanes, lanes) * 4:
            transport.emit(make_event(RunState.START, run))
        most = 0

        def retried_long() -> bool:
            nonlocal most
            most = max(most, len([t for t in emitter_threads() if t.ident not in earlier]))
            return bool(transport.stats().retried >= 12)

        assert wait_until(retried_long, timeout_s=15)
        # Every lane has had calls abandoned; a cap per lane would have reached 3 x 3 + 3.
        assert transport.stats().abandoned_calls >= lanes
        assert most <= bound
        assert transport.stats().threads_alive <= bound


def test_a_lanes_worker_starts_on_its_first_event(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, EmitterSettings(lanes=8))
    assert transport.stats().threads_alive == 0
    transport.emit(make_event())
    assert transport.flush(5)
    assert transport.stats().threads_alive == 2  # that lane's worker and its call thread


# -- queue, flush, close -----------------------------------------------------------------


def test_the_queue_size_bounds_all_lanes_together_and_one_run_may_use_it_all(
    make_transport: MakeTransport,
) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, EmitterSettings(lanes=4, queue_size=8, call_timeout_s=30))
        runs = run_ids_on_distinct_lanes(4, 2)
        transport.emit(make_event(RunState.START, runs[0]))
        assert wait_until(lambda: transport.stats().in_flight == 1)
        for _ in range(6):  # one run, one lane: 6 of the 8
            transport.emit(make_event(RunState.RUNNING, runs[0]))
        transport.emit(make_event(RunState.START, runs[1]))  # in flight on its own lane
        assert wait_until(lambda: transport.stats().in_flight == 2)
        for _ in range(3):  # 2 more fit, in all lanes together
            transport.emit(make_event(RunState.RUNNING, runs[1]))
        stats = transport.stats()
        assert (stats.queue_depth, stats.in_flight, stats.dropped["queue_full"]) == (8, 2, 1)


def test_drop_oldest_evicts_from_the_longest_lane_when_the_new_events_lane_is_empty(
    make_transport: MakeTransport,
) -> None:
    with Collector(Answer(hang=True)) as hung:
        settings = EmitterSettings(lanes=4, queue_size=3, call_timeout_s=30, overflow=Overflow.DROP_OLDEST)
        transport = make_transport(hung.url, settings)
        first, second = run_ids_on_distinct_lanes(4, 2)
        for state in (RunState.START, RunState.RUNNING, RunState.RUNNING, RunState.COMPLETE):
            transport.emit(make_event(state, first))  # 1 in flight, 3 queued: full
        assert wait_until(lambda: transport.stats().in_flight == 1)
        transport.emit(make_event(RunState.START, second))
        # The first run's oldest queued event made room; the second run's START is sent.
        assert wait_until(lambda: transport.stats().in_flight == 2)
        stats = transport.stats()
        assert (stats.queue_depth, stats.dropped["queue_full"]) == (2, 1)


def test_flush_waits_for_every_lane_within_one_deadline(make_transport: MakeTransport) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, EmitterSettings(lanes=4, call_timeout_s=30), timeout=60)
        for run in run_ids_on_distinct_lanes(4, 4):
            transport.emit(make_event(RunState.START, run))
        assert wait_until(lambda: transport.stats().in_flight == 4)
        started = time.monotonic()
        assert transport.flush(0.4) is False
        elapsed = time.monotonic() - started
    # One deadline for all lanes, not 0.4 s per lane (slack for a loaded machine).
    assert 0.35 <= elapsed < 1.2


def test_close_shares_one_deadline_and_says_it_once(
    make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="openlineage_emitter")
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, EmitterSettings(lanes=4, call_timeout_s=30), timeout=60)
        for run in run_ids_on_distinct_lanes(4, 4):
            transport.emit(make_event(RunState.START, run))
            transport.emit(make_event(RunState.COMPLETE, run))
        assert wait_until(lambda: transport.stats().in_flight == 4)
        started = time.monotonic()
        assert transport.close(0.4) is False
        elapsed = time.monotonic() - started
        stats = transport.stats()
    assert elapsed < 1.2
    undelivered = [r.getMessage() for r in caplog.records if "undelivered" in r.getMessage()]
    summaries = [r.getMessage() for r in caplog.records if " closed: delivered" in r.getMessage()]
    assert len(undelivered) == 1
    assert "with 8 event(s) undelivered (4 in flight)" in undelivered[0]
    assert len(summaries) == 1
    assert "dropped 8 (shutdown 8)" in summaries[0]
    assert (stats.dropped["shutdown"], unaccounted(stats)) == (8, 0)


def test_an_event_submitted_after_close_is_refused_on_every_lane(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url, EmitterSettings(lanes=4))
    assert transport.close(1)
    for run in run_ids_on_distinct_lanes(4, 4):
        transport.emit(make_event(RunState.START, run))
    assert transport.stats().dropped["closed"] == 4
    assert transport.stats().threads_alive == 0
