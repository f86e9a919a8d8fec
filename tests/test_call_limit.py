"""CallLimit: how many lanes may have a call in flight, from where a call's time goes.

The limit's arithmetic is fed samples directly; the waiting uses real threads, and every
wait is on a condition with a deadline. Window ends by time run under freezegun.
"""

from __future__ import annotations

import threading

import pytest
from freezegun import freeze_time

from openlineage_emitter import _call_limit
from openlineage_emitter._call_limit import WINDOW_S, CallLimit
from tests.conftest import wait_until

LOOPBACK_WALL_S, LOOPBACK_CPU_S = 0.0008, 0.0006  # a loopback POST: mostly this process's CPU
FAR_WALL_S = 0.020  # a backend 20 ms away


def never() -> bool:
    return False


def test_one_call_at_a_time_before_any_call_has_answered() -> None:
    assert CallLimit(8).limit == 1


def test_a_backend_far_away_gets_every_lane() -> None:
    limit = CallLimit(8)
    limit.sample(FAR_WALL_S, LOOPBACK_CPU_S)
    assert limit.limit == 8


def test_a_call_that_is_mostly_this_processs_cpu_gets_one_call_at_a_time() -> None:
    limit = CallLimit(8)
    for _ in range(50):
        limit.sample(LOOPBACK_WALL_S, LOOPBACK_CPU_S)
    assert limit.limit == 1


def test_the_limit_is_the_calls_that_keep_one_core_busy() -> None:
    limit = CallLimit(8)
    limit.sample(0.003, 0.001)  # 3 ms a call, 1 ms of it CPU: three calls fill a core
    assert limit.limit == 3


def test_calls_slowed_by_contention_do_not_raise_the_limit() -> None:
    limit = CallLimit(8)
    limit.sample(LOOPBACK_WALL_S, LOOPBACK_CPU_S)
    for _ in range(50):  # the same calls, waiting for the GIL behind others: slower, not farther
        limit.sample(8 * LOOPBACK_WALL_S, LOOPBACK_CPU_S)
    assert limit.limit == 1


def test_a_backend_that_moved_away_is_followed_within_two_windows() -> None:
    with freeze_time("2026-12-03 12:00:00", tick=False) as clock:
        limit = CallLimit(8)
        limit.sample(LOOPBACK_WALL_S, LOOPBACK_CPU_S)
        for _ in range(3):
            clock.tick(WINDOW_S + 1)
            limit.sample(FAR_WALL_S, LOOPBACK_CPU_S)
        assert limit.limit == 8


def test_acquire_waits_while_the_limit_is_reached_and_a_release_lets_it_in() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    entered = threading.Event()

    def second() -> None:
        if limit.acquire(never, lambda: None):
            entered.set()

    waiter = threading.Thread(target=second, daemon=True)
    waiter.start()
    assert not entered.wait(0.2)  # one call in flight, limit 1
    limit.release()
    assert entered.wait(5)
    waiter.join(5)


def test_a_rising_limit_lets_waiting_calls_in() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    entered = threading.Semaphore(0)

    def wait_for_a_slot() -> None:
        if limit.acquire(never, lambda: None):
            entered.release()

    waiters = [threading.Thread(target=wait_for_a_slot, daemon=True) for _ in range(3)]
    for waiter in waiters:
        waiter.start()
    limit.sample(FAR_WALL_S, LOOPBACK_CPU_S)
    for _ in range(3):
        assert entered.acquire(timeout=5)
    for waiter in waiters:
        waiter.join(5)


def test_a_wait_ends_when_told_to_stop_and_runs_while_waiting_meanwhile() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    stop = threading.Event()
    waited = 0

    def while_waiting() -> None:
        nonlocal waited
        waited += 1
        if waited == 2:
            stop.set()

    assert not limit.acquire(stop.is_set, while_waiting)
    assert waited == 2


def test_a_lane_that_wants_another_call_queues_behind_one_already_waiting() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    order: list[str] = []
    queued = threading.Event()

    def other_lane() -> None:
        if limit.acquire(never, queued.set):  # while_waiting runs once it is queued
            order.append("other lane")
            limit.release()

    waiter = threading.Thread(target=other_lane, daemon=True)
    waiter.start()
    assert queued.wait(5)
    limit.release()
    assert limit.acquire(never, lambda: None)  # straight back for another call
    order.append("same lane again")
    limit.release()
    waiter.join(5)
    assert order == ["other lane", "same lane again"]


def test_a_lane_told_to_stop_takes_no_slot_even_when_one_is_free() -> None:
    limit = CallLimit(8)
    assert not limit.acquire(lambda: True, lambda: None)
    assert limit.acquire(never, lambda: None)  # the one slot is still free


def test_interrupt_ends_the_wait_of_a_lane_told_to_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_call_limit, "WAIT_SLICE_S", 60.0)  # only the interrupt can end it in time
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    stop = threading.Event()
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(limit.acquire(stop.is_set, lambda: None)))
    waiter.start()
    assert wait_until(lambda: limit.waiting == 1)
    stop.set()
    limit.interrupt()
    waiter.join(5)
    assert result == [False]


def test_a_slot_given_to_a_lane_told_to_stop_goes_to_the_next_one() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)
    stopping, results = threading.Event(), {}

    def lane(name: str, stop: threading.Event) -> None:
        results[name] = limit.acquire(stop.is_set, lambda: None)

    first = threading.Thread(target=lane, args=("told to stop", stopping))
    first.start()
    assert wait_until(lambda: limit.waiting == 1)
    second = threading.Thread(target=lane, args=("next", threading.Event()))
    second.start()
    assert wait_until(lambda: limit.waiting == 2)
    stopping.set()
    limit.release()  # first in line: the lane told to stop
    first.join(5)
    second.join(5)
    assert results == {"told to stop": False, "next": True}


def test_a_wait_that_raises_leaves_no_lane_waiting() -> None:
    limit = CallLimit(8)
    assert limit.acquire(never, lambda: None)

    def broken() -> None:
        raise RuntimeError("while_waiting failed")

    with pytest.raises(RuntimeError):
        limit.acquire(never, broken)
    assert limit.waiting == 0
    limit.release()
    assert limit.acquire(never, lambda: None)  # the slot is free, not given to the one gone
