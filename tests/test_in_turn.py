"""InTurn: one hand-off of a lane's events, sent one after another on the call thread.

The hand-off is driven directly with a recording ``send`` (the transport is not what is
under test here; tests/test_lanes.py and tests/test_emitter.py deliver through a real one).
"""

from __future__ import annotations

import threading
from typing import Any

import pytest
from freezegun import freeze_time

from openlineage_emitter._caller import CallTimeout
from openlineage_emitter._in_turn import BUDGET_S, InTurn, NotSent


def never() -> bool:
    return False


class Recorder:
    """A ``send`` that records what it was given and fails on the events named in ``fail``."""

    def __init__(self, fail: dict[int, Exception] | None = None) -> None:
        self.sent: list[int] = []
        self.fail = fail or {}

    def __call__(self, event: int) -> object:
        self.sent.append(event)
        if event in self.fail:
            raise self.fail[event]
        return f"ok {event}"


def test_every_event_is_sent_in_order_with_its_own_result() -> None:
    send = Recorder()
    assert InTurn([1, 2, 3]).send(send, never, None) == ["ok 1", "ok 2", "ok 3"]
    assert send.sent == [1, 2, 3]


def test_a_failure_stops_the_hand_off_and_the_rest_are_not_sent() -> None:
    refused = ConnectionError("refused")
    send = Recorder(fail={2: refused})
    outcomes = InTurn([1, 2, 3, 4]).send(send, never, None)
    assert send.sent == [1, 2]
    assert outcomes[:2] == ["ok 1", refused]
    assert all(isinstance(o, NotSent) for o in outcomes[2:])


def test_no_event_starts_once_the_budget_has_passed() -> None:
    with freeze_time("2026-12-03 12:00:00", tick=False) as clock:

        def slow(event: int) -> object:
            clock.tick(BUDGET_S / 2 + 0.001)
            return event

        outcomes = InTurn([1, 2, 3, 4]).send(slow, never, None)
    assert outcomes[:2] == [1, 2]
    assert all(isinstance(o, NotSent) for o in outcomes[2:])


def test_no_event_is_sent_once_told_to_stop() -> None:
    # Told to stop once close has given up on (and spilled) every event: a send is a duplicate.
    send = Recorder()
    outcomes = InTurn([1, 2]).send(send, lambda: True, None)
    assert send.sent == []
    assert all(isinstance(o, NotSent) for o in outcomes)


def test_an_abandoned_hand_off_starts_no_other_event() -> None:
    in_first, release = threading.Event(), threading.Event()
    sent: list[int] = []

    def send(event: int) -> object:
        sent.append(event)
        if event == 1:
            in_first.set()
            release.wait(5)
        return event

    job = InTurn([1, 2, 3])
    result: list[Any] = []
    caller = threading.Thread(target=lambda: result.append(job.send(send, never, None)), daemon=True)
    caller.start()
    assert in_first.wait(5)
    timeout = CallTimeout("no answer")
    given_up = job.abandon(timeout)
    release.set()
    caller.join(5)
    assert given_up[0] is timeout  # the event in flight failed with the timeout...
    assert all(isinstance(o, NotSent) for o in given_up[1:])  # ...and the others stay pending
    assert sent == [1]  # the call thread, answered late, sent nothing more
    assert job.delivered_late()  # the one caught in flight did arrive


def test_an_abandoned_hand_off_whose_last_event_failed_raises_it_on_the_call_thread() -> None:
    # The caller counts a late *success* when an abandoned call returns: a failure must not look like one.
    in_first, release = threading.Event(), threading.Event()
    refused = ConnectionError("refused")

    def send(event: int) -> object:
        in_first.set()
        release.wait(5)
        raise refused

    job = InTurn([1])
    raised: list[BaseException] = []

    def call() -> None:
        try:
            job.send(send, never, None)
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            raised.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert in_first.wait(5)
    job.abandon(CallTimeout("no answer"))
    release.set()
    caller.join(5)
    assert raised == [refused]


def test_a_hand_off_given_up_after_it_finished_blames_no_event_for_the_timeout() -> None:
    job = InTurn([1, 2])
    job.send(Recorder(), never, None)
    assert job.abandon(CallTimeout("no answer")) == ["ok 1", "ok 2"]
    assert not job.delivered_late()  # counted delivered as they are: no late duplicate


def test_a_hand_off_given_up_before_it_started_sends_nothing_and_is_no_late_success() -> None:
    job = InTurn([1, 2])
    outcomes = job.abandon(CallTimeout("no answer"))
    assert all(isinstance(o, NotSent) for o in outcomes)  # no event is blamed: none was in flight
    send = Recorder()
    with pytest.raises(NotSent):  # a return would count as a late success
        job.send(send, never, None)
    assert send.sent == []
