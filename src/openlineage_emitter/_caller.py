"""Run one call at a time on a helper daemon thread, abandoning any that overrun their timeout.

Why a helper thread at all: a transport call that never returns (a backend that accepts
the connection and then says nothing) must not stall the worker. Why a *bounded* number:
each abandoned call pins a thread until the call returns, and an unbounded number is the
thread leak this package exists to remove.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any


class CallTimeout(TimeoutError):
    """The call did not return within its timeout; it was abandoned (its thread ends when it returns)."""


class BackendBusy(TimeoutError):
    """Too many abandoned calls are still running; no new one is started.

    The default ``busy_error`` of :class:`TimedCaller`: behind the emitter an abandoned
    call is a backend that does not answer. A caller whose calls are something else
    names its own (the thread strategy's ``ExtractionStuck``).
    """


class _Runner:
    """A daemon thread that runs the calls handed to it until it is abandoned."""

    def __init__(self, owner: TimedCaller, name: str) -> None:
        self.owner = owner
        self._has_job = threading.Event()
        self.done = threading.Event()
        self.job: Any = None
        self.result: object = None
        self.error: BaseException | None = None
        self.abandoned = False
        self.timed_out = False  #: abandoned because ``call`` stopped waiting for it
        self.busy = False
        self.thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self.thread.start()

    def start(self, job: Any) -> None:
        self.busy = True
        self.job, self.result, self.error = job, None, None
        self.done.clear()
        self._has_job.set()

    def _loop(self) -> None:
        while True:
            self._has_job.wait()
            self._has_job.clear()
            job, self.job = self.job, None
            if job is _STOP:
                return
            try:
                self.result = self.owner.fn(job)
            except BaseException as exc:  # noqa: BLE001 - reported to the worker, never raised here
                self.error = exc
            with self.owner.lock:
                self.busy = False
                self.done.set()
                abandoned = self.abandoned
                late = abandoned and self.timed_out and self.error is None
                if abandoned:
                    self.owner.runner_returned(self)
            if abandoned:
                if late and self.owner.on_late_success is not None:
                    self.owner.on_late_success(job)
                return
            del job


_STOP = object()


class AbandonedCalls:
    """The cap on abandoned calls alive at once, shared by several ``TimedCaller`` objects
    (the lanes of one emitter), so that the emitter's thread bound does not grow with a
    cap per lane: a hung backend pins at most ``limit`` abandoned threads in all."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.returned = threading.Condition(self.lock)
        self.runners: set[_Runner] = set()
        self.total = 0  #: calls abandoned so far (under ``lock``)


class TimedCaller:
    """``call(arg, timeout_s)`` runs ``fn(arg)`` on a helper thread and waits at most ``timeout_s``.

    A new helper thread is only started while fewer than ``max_abandoned`` abandoned
    calls are alive (counted across every caller sharing ``budget``, if given), so at
    most ``max_abandoned`` abandoned helper threads exist at any time, plus one running
    call per caller. While the cap is reached ``call`` waits (bounded) for one to
    return, then raises ``busy_error`` (default ``BackendBusy``): the emitter stops
    calling a backend that does not answer.
    """

    def __init__(
        self,
        fn: Callable[[Any], object],
        *,
        max_abandoned: int,
        name: str,
        on_late_success: Callable[[Any], None] | None = None,
        budget: AbandonedCalls | None = None,
        busy_error: type[Exception] = BackendBusy,
    ) -> None:
        self.fn = fn
        self._busy_error = busy_error
        #: Called with the call's ``arg`` (on the helper thread, no lock held) when a call
        #: abandoned at its timeout returns without error after all: the backend got it,
        #: and whoever gave up on it may have sent it again.
        self.on_late_success = on_late_success
        self._budget = budget or AbandonedCalls(max_abandoned)
        self.lock = self._budget.lock
        self._returned = self._budget.returned
        self._max_abandoned = self._budget.limit
        self._name = name
        self._idle: _Runner | None = None
        self._abandoned = self._budget.runners

    @property
    def abandoned_total(self) -> int:
        """Calls abandoned so far, by every caller sharing this one's budget."""
        return self._budget.total

    def runner_returned(self, runner: _Runner) -> None:
        """Called by an abandoned runner, under ``lock``, as it exits."""
        self._abandoned.discard(runner)
        self._returned.notify_all()

    def threads_alive(self) -> int:
        """This caller's threads: its idle runner and its own abandoned ones."""
        with self.lock:
            return (self._idle is not None) + sum(r.owner is self for r in self._abandoned)

    def _runner(self, wait_s: float, cancelled: Callable[[], bool]) -> _Runner:
        deadline = time.monotonic() + wait_s
        with self.lock:
            while self._idle is None and len(self._abandoned) >= self._max_abandoned:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or cancelled():
                    raise self._busy_error(
                        f"{len(self._abandoned)} abandoned calls are still running; not starting another"
                    )
                # Short slices so a closing emitter is not held up by this wait.
                self._returned.wait(min(remaining, 0.05))
            return self._new_runner()

    def _new_runner(self) -> _Runner:
        """Under the lock: the idle runner, started if there is none."""
        if self._idle is None:
            try:
                self._idle = _Runner(self, f"{self._name}-call")
            except RuntimeError as exc:
                # Python >= 3.12 refuses new threads once the interpreter is shutting down
                # (an atexit close): the event is not at fault, so not dropped as if it were.
                raise BackendBusy(f"cannot start a call thread: {exc}") from exc
        return self._idle

    def prestart(self) -> None:
        """Start the call thread now, on the caller's thread, if none is alive: a worker
        started just before interpreter shutdown could otherwise not start it in time."""
        with self.lock:
            if self._idle is None and len(self._abandoned) < self._max_abandoned:
                self._new_runner()

    def call(
        self,
        arg: Any,
        timeout_s: float,
        cancelled: Callable[[], bool] = lambda: False,
        *,
        busy_wait_s: float | None = None,
        while_waiting: Callable[[], None] | None = None,
        grace_s: float = 0.0,
    ) -> object:
        """``fn(arg)`` on a helper thread, waited on for at most ``timeout_s`` (+ ``grace_s``).

        ``busy_wait_s`` (default ``timeout_s``) bounds the wait for a free thread while
        the abandoned-call cap is reached; ``while_waiting`` runs every 50 ms meanwhile.
        ``grace_s`` is waited on top of ``timeout_s`` without being named in the
        ``CallTimeout``: slack the caller's job needs beyond the timeout it was given.
        """
        runner = self._runner(timeout_s if busy_wait_s is None else busy_wait_s, cancelled)
        runner.start(arg)
        if while_waiting is None:
            runner.done.wait(timeout_s + grace_s)
        else:
            deadline = time.monotonic() + timeout_s + grace_s
            while not runner.done.wait(min(0.05, max(0.0, deadline - time.monotonic()))):
                if time.monotonic() >= deadline:
                    break
                while_waiting()
        with self.lock:
            if not runner.done.is_set():
                # Give up on this call; the runner exits by itself whenever the call returns.
                runner.abandoned = runner.timed_out = True
                self._abandoned.add(runner)
                self._idle = None
                self._budget.total += 1
                raise CallTimeout(f"no answer within the call timeout of {timeout_s:g}s")
        if runner.error is not None:
            error, runner.error = runner.error, None
            raise error
        return runner.result

    def stop(self) -> None:
        """Let the helper thread exit: now if idle, else as soon as its call returns."""
        with self.lock:
            runner, self._idle = self._idle, None
            if runner is None:
                return
            if runner.busy:
                # Never hand a busy runner a new job: it would overwrite the call in flight.
                runner.abandoned = True
                self._abandoned.add(runner)
                return
        runner.start(_STOP)
