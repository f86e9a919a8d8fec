"""The thread emitter: a bounded queue drained by one daemon worker thread.

Caller side (``submit``): take a lock, append, maybe wake the worker. No I/O, no
serialisation, no waiting. Worker side: one event at a time, in FIFO order, each call
to the inner transport bounded by the call timeout, retried by the tenacity policy
within the event's deadline, behind a circuit breaker.
"""

from __future__ import annotations

import atexit
import functools
import logging
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from openlineage_emitter._caller import TimedCaller
from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter.retry import BreakerState, CircuitBreaker, classify
from openlineage_emitter.settings import MAX_ABANDONED_CALLS, EmitterSettings, Overflow
from openlineage_emitter.stats import Counters, EmitterStats

log = logging.getLogger(__name__)

_Item = tuple[Any, float]  # (event, monotonic submit time)


class ThreadEmitter:
    """Hands events to ``send`` on one background thread; see the module docstring.

    ``send`` is any callable that delivers one event or raises (an OpenLineage
    transport's ``emit``). It runs on a helper thread, never on the caller's.
    """

    def __init__(
        self,
        send: Callable[[Any], object],
        settings: EmitterSettings | None = None,
        *,
        name: str = "openlineage-emitter",
        close_at_exit: bool = True,
    ) -> None:
        self._send = send
        self._settings = settings or EmitterSettings()
        self._name = name
        self._warn = RateLimitedLog(log)
        self._closed = False
        self._init_state()
        if close_at_exit:
            ref = weakref.ref(self)
            atexit.register(_close_at_exit, ref)
        # Fork safety: the child must not inherit queued events (they would be sent
        # twice), nor locks another thread held at fork time, nor a worker that does
        # not exist in it. It gets fresh state; the worker starts on first submit.
        os.register_at_fork(after_in_child=functools.partial(_reinit_child, weakref.ref(self)))

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._queue: deque[_Item] = deque()
        self._in_flight = 0
        self._wake = threading.Event()
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._counters = Counters()
        self._caller = TimedCaller(self._send, max_abandoned=MAX_ABANDONED_CALLS, name=self._name)
        self._breaker = CircuitBreaker(self._settings.breaker_threshold, self._settings.breaker_cooldown_s)

    @property
    def settings(self) -> EmitterSettings:
        return self._settings

    # -- caller side -----------------------------------------------------------------

    def submit(self, event: Any) -> bool:
        """Queue ``event`` for delivery. Never blocks, never raises; False if it was refused."""
        try:
            item = (event, time.monotonic())
            evicted = False
            with self._lock:
                if self._closed:
                    self._counters.submitted += 1
                    self._counters.dropped["closed"] += 1
                    refused = "closed"
                elif len(self._queue) >= self._settings.queue_size:
                    self._counters.submitted += 1
                    self._counters.dropped["queue_full"] += 1
                    if self._settings.overflow is Overflow.DROP_NEWEST:
                        refused = "queue_full"
                    else:
                        self._queue.popleft()
                        self._queue.append(item)
                        evicted, refused = True, ""
                else:
                    self._counters.submitted += 1
                    self._queue.append(item)
                    refused = ""
            if refused:
                self._warn_refused(refused)
                return False
            if evicted:
                self._warn_refused("queue_full")
            if self._worker is None:
                self._start_worker()
            if not self._wake.is_set():
                self._wake.set()
            return True
        except Exception:
            log.debug("submit failed", exc_info=True)
            return False

    def _warn_refused(self, reason: str) -> None:
        if reason == "closed":
            self._warn.warn("closed", "%s is closed; event dropped", self._name)
        else:
            self._warn.warn(
                "queue_full",
                "%s queue is full (%d events); dropping the %s event (overflow policy %s). "
                "The backend is slower than the event rate: raise emitter_queue_size or check "
                "the backend.",
                self._name,
                self._settings.queue_size,
                "newest" if self._settings.overflow is Overflow.DROP_NEWEST else "oldest",
                self._settings.overflow.value,
            )

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._worker is not None:
                return
            worker = threading.Thread(target=self._run, name=self._name, daemon=True)
            worker.start()
            self._worker = worker

    # -- waiting -----------------------------------------------------------------------

    def flush(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` for the queue to drain.

        True if it drained and nothing was dropped meanwhile, i.e. everything pending
        at the call was delivered.
        """
        with self._lock:
            lost_before = self._lost()
            drained = self._drained.wait_for(
                lambda: not self._queue and not self._in_flight, max(0.0, timeout_s)
            )
            return drained and self._lost() == lost_before

    def _lost(self) -> int:
        # Refusals after close() are not events that were pending, so they do not count.
        dropped = self._counters.dropped
        return sum(dropped.values()) - dropped["closed"]

    def close(self, timeout_s: float | None = None) -> bool:
        """Stop accepting, drain within ``timeout_s`` (default: the shutdown budget).

        Returns True if everything pending was delivered before the deadline; what is
        still queued at the deadline is dropped (reason ``shutdown``) and logged.
        """
        budget_s = self._settings.shutdown_timeout_s if timeout_s is None else timeout_s
        with self._lock:
            if self._closed:
                # Already closed (e.g. explicitly, then again at exit): the first close
                # spent the budget; a second one must not wait again.
                return not self._queue and not self._in_flight
            self._closed = True
        self._wake.set()
        drained = self.flush(budget_s)
        with self._lock:
            left = len(self._queue)
            self._counters.dropped["shutdown"] += left
            self._queue.clear()
            in_flight = self._in_flight
            self._drained.notify_all()
        # Stop retrying and sleeping; an in-flight call is abandoned, not awaited.
        self._abort.set()
        self._wake.set()
        self._caller.stop()
        if left or in_flight:
            log.warning(
                "%s closed after %.1fs with %d event(s) undelivered (%d queued, %d in flight); "
                "raise emitter_shutdown_timeout to wait longer",
                self._name,
                budget_s,
                left + in_flight,
                left,
                in_flight,
            )
        return drained

    # -- worker side -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                item = self._queue.popleft() if self._queue else None
                if item is not None:
                    self._in_flight = 1
                elif self._closed or self._abort.is_set():
                    return
            if item is None:
                self._wake.clear()
                # Re-check after clear(): a submit between popleft and clear() must not
                # be left waiting for the next wake-up.
                if not self._queue:
                    self._wake.wait()
                continue
            try:
                self._deliver(item)
            except BaseException:
                log.exception("%s: unexpected error delivering an event", self._name)
            finally:
                del item
                with self._lock:
                    self._in_flight = 0
                    if not self._queue:
                        self._drained.notify_all()

    def _deliver(self, item: _Item) -> None:
        event, submitted_at = item
        settings = self._settings
        if not self._breaker.allow():
            self._give_up("breaker_open")
            self._warn.warn(
                "breaker_open",
                "%s: backend marked down after %d consecutive failed events; dropping events "
                "for up to %.0fs before probing again",
                self._name,
                settings.breaker_threshold,
                settings.breaker_cooldown_s,
            )
            return
        probe = self._breaker.probing

        def attempt() -> object:
            return self._caller.call(event, settings.call_timeout_s, self._abort.is_set)

        try:
            if probe:
                attempt()
            else:
                settings.retry.retrying(
                    sleep=self._abort.wait,
                    abort=self._abort,
                    before_sleep=self._count_retry,
                )(attempt)
        except BaseException as exc:  # noqa: BLE001 - classified and counted below, never lost
            self._failed(exc)
        else:
            with self._lock:
                self._counters.delivered += 1
                self._counters.latencies_s.append(time.monotonic() - submitted_at)
                self._counters.abandoned_calls = self._caller.abandoned_total
            if self._breaker.record_success() is BreakerState.CLOSED:
                log.warning("%s: backend answers again; circuit breaker closed", self._name)

    def _count_retry(self, _state: object) -> None:
        with self._lock:
            self._counters.retried += 1
            self._counters.abandoned_calls = self._caller.abandoned_total

    def _failed(self, exc: BaseException) -> None:
        verdict = classify(exc)
        if not verdict.retryable:
            self._give_up("non_retryable", failed=True)
            # The backend answered (or the event itself is bad): it is not down.
            self._breaker.record_success()
            self._warn.warn(
                f"non_retryable:{verdict.reason}",
                "%s: event rejected and dropped (%s: %s); it will not be retried",
                self._name,
                verdict.reason,
                _short(exc),
            )
            return
        if self._abort.is_set():
            # close() already reported this event as undelivered.
            self._give_up("shutdown", failed=True)
            return
        self._give_up("retries_exhausted", failed=True)
        if self._breaker.record_failure() is BreakerState.OPEN:
            log.warning(
                "%s: circuit breaker open: backend failing (%s: %s); not calling it for %.0fs",
                self._name,
                verdict.reason,
                _short(exc),
                self._settings.breaker_cooldown_s,
            )
        else:
            self._warn.warn(
                "retries_exhausted",
                "%s: event dropped after retrying for up to %.0fs (%s: %s); check the backend "
                "or raise emitter_retry_deadline",
                self._name,
                self._settings.retry.deadline_s,
                verdict.reason,
                _short(exc),
            )

    def _give_up(self, reason: str, *, failed: bool = False) -> None:
        with self._lock:
            self._counters.dropped[reason] += 1
            self._counters.failed += failed
            self._counters.abandoned_calls = self._caller.abandoned_total

    # -- introspection -----------------------------------------------------------------

    def stats(self) -> EmitterStats:
        """A frozen snapshot of this emitter's counters."""
        worker = self._worker
        threads = int(worker is not None and worker.is_alive()) + self._caller.threads_alive()
        with self._lock:
            self._counters.abandoned_calls = self._caller.abandoned_total
            return self._counters.snapshot(
                queue_depth=len(self._queue),
                in_flight=self._in_flight,
                threads_alive=threads,
                breaker_state=self._breaker.state.value,
            )

    def _reinit_after_fork(self) -> None:
        self._init_state()


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}"
    return text if len(text) <= 200 else text[:197] + "..."


def _close_at_exit(ref: weakref.ref[ThreadEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.close()


def _reinit_child(ref: weakref.ref[ThreadEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter._reinit_after_fork()
