"""Several queued events of a lane handed to its call thread at once, and sent there one after another.

Why: a transport that sends one event per call (http) costs two thread switches per event
when each event is handed over on its own (worker to call thread and back), about 0.1 ms
of CPU on a 0.6 ms loopback POST. Handing over up to ``MAX_EVENTS`` at once pays that
once per hand-off. Each event is still its own request, with the whole call timeout.

The call thread stops early (the rest are ``NotSent``, left pending and sent by the next
call, with no retry counted) when an event fails (the retry then starts with it: per-run
order holds), when ``BUDGET_S`` has passed since the worker handed it over (so that the
worker's wait, the call timeout plus ``BUDGET_S``, leaves each event's request the whole
call timeout), when the emitter is closing, or when the worker gave up waiting for it:
then the events it had not started are not sent by it, and the worker knows which of
the events were delivered.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from openlineage_emitter._call_limit import CallLimit
from openlineage_emitter._caller import CallTimeout

#: Events one hand-off carries at most.
MAX_EVENTS = 32

#: No event of a hand-off starts later than this after its first one did.
BUDGET_S = 0.05


class NotSent(CallTimeout):
    """Not sent: the call stopped before this event. It stays pending for the next call;
    only a closing emitter ends its retries with it."""


class InTurn:
    """One hand-off: ``events`` for the call thread to send in turn (see the module docstring)."""

    __slots__ = (
        "_abandoned",
        "_caught",
        "_created",
        "_in_flight",
        "_lock",
        "_outcomes",
        "_timings_s",
        "events",
    )

    def __init__(self, events: list[Any]) -> None:
        self.events = events
        #: On the worker's clock, before it starts waiting: no event starts later than
        #: ``BUDGET_S`` after this, so each has the whole call timeout of the wait.
        self._created = time.monotonic()
        self._lock = threading.Lock()
        self._abandoned = False
        self._outcomes: list[object] = []  # one per event sent so far: its result or exception
        self._timings_s: list[float] = []  # how long each of those calls took
        #: When the event being sent started (time.monotonic()); None between events.
        self._in_flight: float | None = None
        #: The event in flight when the worker gave up (its index), if one was.
        self._caught: int | None = None

    def send(
        self, send: Callable[[Any], object], stop: Callable[[], bool], limit: CallLimit | None
    ) -> list[object]:
        """On the call thread: each event through ``send``, in order, until one of the stops."""
        outcomes = self._outcomes
        for event in self.events:
            started = time.monotonic()
            with self._lock:
                # Checked under the lock the worker takes to give up on this hand-off: an
                # event not started by then is never sent by this (abandoned) thread. Once
                # ``stop()`` (close gave up), close has spilled every event: none is sent.
                if self._abandoned or stop() or (outcomes and started - self._created >= BUDGET_S):
                    break
                self._in_flight = started
            cpu_started = time.thread_time()
            try:
                result: object = send(event)
            except Exception as exc:  # noqa: BLE001 - the event's outcome, classified by the worker
                result = exc
            took_s = time.monotonic() - started
            if limit is not None and not isinstance(result, Exception):
                limit.sample(took_s, time.thread_time() - cpu_started)
            with self._lock:
                outcomes.append(result)
                if not self._abandoned:  # else abandon() timed it
                    self._timings_s.append(took_s)
                self._in_flight = None
            if isinstance(result, Exception):
                break
        with self._lock:
            if self._abandoned and not self._delivered_late():
                # The caller counts a late success when an abandoned call returns: only an
                # event caught in flight that then succeeded is one.
                caught = self._caught
                late = outcomes[caught] if caught is not None else None
                raise late if isinstance(late, Exception) else NotSent("given up between two events")
            return self._now()

    def abandon(self, timeout: CallTimeout) -> list[object]:
        """Worker side, after its wait timed out: the outcomes as they stand, the event in
        flight (if one is) failed with ``timeout``; from now on the call thread starts no other."""
        with self._lock:
            self._abandoned = True
            if self._in_flight is None:  # between two events, or done: nothing timed out
                return self._now()
            self._caught = len(self._outcomes)
            self._timings_s.append(time.monotonic() - self._in_flight)
            return self._now(timeout)

    def delivered_late(self) -> bool:
        """True if the event in flight when the worker gave up was delivered after all."""
        with self._lock:
            return self._delivered_late()

    def _delivered_late(self) -> bool:
        caught = self._caught
        return (
            caught is not None
            and caught < len(self._outcomes)
            and not isinstance(self._outcomes[caught], Exception)
        )

    def timings_s(self) -> list[float]:
        """How long each event's call took, in order (one given up on: until then)."""
        with self._lock:
            return list(self._timings_s)

    def _now(self, in_flight: BaseException | None = None) -> list[object]:
        """One outcome per event: the ones sent, then ``in_flight`` (if given), then ``NotSent``."""
        done: list[object] = list(self._outcomes)
        if in_flight is not None and len(done) < len(self.events):
            done.append(in_flight)
        return done + [NotSent("not sent yet")] * (len(self.events) - len(done))
