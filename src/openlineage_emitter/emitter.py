"""The thread emitter: a bounded queue drained by one daemon worker thread.

Caller side (``submit``): take a lock, append, maybe wake the worker. No I/O, no
serialisation, no waiting. Worker side: in FIFO order, up to 32 events handed to the
call thread at once and sent there one per request (``_in_turn``), or with a
``SendMany`` up to ``emitter_batch_max_events`` in one call; each call to the inner
transport bounded by the call timeout, each event retried by the tenacity policy within
its own deadline, behind a circuit breaker. With a backlog (the spool), what cannot be
delivered is spilled instead of dropped and replayed when idle.

One ``ThreadEmitter`` is one lane; ``_lanes.Lanes`` runs several side by side (events
of one run on one lane), sharing what a ``Shared`` holds.
"""

from __future__ import annotations

import atexit
import threading
import time
import typing
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import tenacity

from openlineage_emitter import _validators as v
from openlineage_emitter._batching import events_per_call
from openlineage_emitter._call_limit import NETWORK_BOUND_S
from openlineage_emitter._caller import CallTimeout, TimedCaller
from openlineage_emitter._closing import LaneGroup, Undelivered, clamp_wait_s
from openlineage_emitter._error_text import short_error
from openlineage_emitter._forksafe import reinit_in_child
from openlineage_emitter._in_turn import BUDGET_S, MAX_EVENTS, InTurn, NotSent
from openlineage_emitter._replayer import Drained, Sending
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._shared import EmitterOptions, Item, LaneOf, Shared
from openlineage_emitter.metrics import Publisher
from openlineage_emitter.retry import BreakerState, classify
from openlineage_emitter.settings import MAX_ABANDONED_CALLS, EmitterSettings, Overflow
from openlineage_emitter.stats import Truncated

if TYPE_CHECKING:  # typing.Unpack is 3.11+; only the type checker reads it here
    from typing import Unpack

log = masked_logger(__name__)

#: Events refused by a full queue held (at most) for a lane to spill: at least this many,
#: so a burst while a call hangs reaches the disk instead of being dropped.
MIN_OVERFLOW_HELD = 1024

#: Seconds between looks for new backlog batches (other processes may spill) while idle.
BACKLOG_RESCAN_S = 5.0

#: A ``ThreadEmitter``'s default ``name`` (thread names, log prefix).
DEFAULT_NAME = "openlineage-emitter"


class _Many:
    """A batch of events for one call of the ``SendMany`` (the call thread runs either)."""

    __slots__ = ("events",)

    def __init__(self, events: list[Any]) -> None:
        self.events = events


class ThreadEmitter(LaneGroup):
    """Hands events to ``send`` on one background thread; see the module docstring.

    ``send`` is any callable that delivers one event or raises (an OpenLineage
    transport's ``emit``). It runs on a helper thread, never on the caller's. With
    ``send_many`` (see ``_batching``) the worker sends what is queued in batches instead.
    The other ``options``: see :class:`EmitterOptions`.
    """

    def __init__(
        self,
        send: Callable[[Any], object],
        settings: EmitterSettings | None = None,
        *,
        lane: LaneOf | None = None,
        **options: Unpack[EmitterOptions],
    ) -> None:
        v.check_keywords(options, EmitterOptions, "ThreadEmitter")
        name = options.get("name", DEFAULT_NAME)
        backlog, metrics, metric_tags = (
            options.get("backlog"),
            options.get("metrics"),
            options.get("metric_tags"),
        )
        self._send = send
        self._send_many = options.get("send_many")
        self._settings = settings or EmitterSettings()
        #: Without a ``SendMany`` (one event per request), events are still handed to the
        #: call thread several at a time, to be sent there in turn (see ``_in_turn``).
        self._in_turn = self._send_many is None
        self._per_call = MAX_EVENTS if self._in_turn else events_per_call(self._settings, self._send_many)
        self._name = name
        self._thread_name = name if lane is None else f"{name}:lane{lane.index}"
        #: Events refused by a full queue held (at most) for the worker to spill: at least
        #: ``MIN_OVERFLOW_HELD``, so a burst while a call hangs reaches the disk.
        self._held_max = max(self._settings.queue_size if lane is None else lane.share, MIN_OVERFLOW_HELD)
        self._replays = lane is None or lane.replays
        self._whole_stats = self.stats if lane is None else lane.stats
        self._backlog = backlog
        self._metrics = metrics
        self._metric_tags = dict(metric_tags or {})
        self._lane = lane
        self._closed = False
        self._init_state()
        if lane is None:
            if options.get("close_at_exit", True):
                atexit.register(_close_at_exit, weakref.ref(self))
            # Fork safety: the child must not inherit queued events (they would be sent
            # twice), nor locks another thread held at fork time, nor a worker that does
            # not exist in it. It gets fresh state; the worker starts on first submit.
            reinit_in_child(self._reinit_after_fork)

    def _init_state(self) -> None:
        lane = self._lane
        shared = (
            lane.shared()
            if lane is not None
            else Shared.new(self._settings, self._metrics, self._metric_tags)
        )
        self._lock = shared.lock
        self._drained = threading.Condition(self._lock)
        self._queue: deque[Item] = deque()
        shared.queues.append(self._queue)
        self._overflow: deque[Any] = deque()  # refused events waiting to be spilled
        #: The events the worker is sending (one, or a batch) and which of them are not
        #: settled yet (in flight): close() may settle them while the call runs.
        self._current: list[Item] = []
        self._open: set[int] = set()
        # Events taken off the queue, the overflow or the worker to be spilled, while the
        # spill is being written: still pending (reported in queue_depth), so that
        # ``stats()`` accounts for every submitted event at every moment.
        self._spilling = 0
        #: What the backend last answered to a failed attempt ("connection_error: ..."),
        #: for the close warning: at exit that is often the only line an operator sees.
        self._last_failure = ""
        self._shared = shared
        self._wake = shared.replay_wake if self._replays else threading.Event()
        self._abort = threading.Event()
        self._worker: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._counters = shared.counters
        self._calls = shared.calls if self._lane is not None else None  # a lone emitter: one call
        self._caller = TimedCaller(
            self._call,
            max_abandoned=MAX_ABANDONED_CALLS,
            name=self._thread_name,
            on_late_success=self._late_delivered,
            budget=shared.abandoned,
        )
        self._breaker = shared.breaker
        self._warn = shared.warn
        self._publisher = shared.publisher
        # Built once: only the worker uses it, and building one per event costs ~25 us.
        self._retrying = self._settings.retry.retrying(
            sleep=self._pause, abort=self._abort, before_sleep=self._count_retry
        )

    @property
    def settings(self) -> EmitterSettings:
        return self._settings

    @property
    def _replay_not_before(self) -> float:
        return self._shared.replay_not_before

    @_replay_not_before.setter
    def _replay_not_before(self, value: float) -> None:
        shared = self._shared
        if value != shared.replay_not_before:
            shared.replay_not_before = value
            if not self._replays:  # the replaying lane may be asleep on the old value
                shared.replay_wake.set()

    # -- caller side -----------------------------------------------------------------

    def submit(self, event: Any) -> bool:
        """Queue ``event`` for delivery. Never blocks, never raises; False if it was refused."""
        try:
            item = (event, time.monotonic())
            refused = ""
            dropped = False
            with self._lock:
                self._counters.submitted += 1
                if self._closed:
                    self._counters.dropped["closed"] += 1
                    refused = "closed"
                elif self._shared.queued >= self._settings.queue_size:
                    if self._settings.overflow is Overflow.DROP_NEWEST:
                        overflowed, refused = event, "queue_full"
                    else:
                        # The oldest of this lane, or of the longest lane if this one is empty.
                        oldest = self._queue or max(self._shared.queues, key=len)
                        overflowed = oldest.popleft()[0]
                        self._queue.append(item)
                    dropped = not self._overflowed(overflowed)
                else:
                    self._queue.append(item)
                    self._shared.queued += 1
            if refused == "closed":
                self._warn.warn("closed", "%s is closed; event dropped", self._name)
                return False
            if dropped:
                self._warn_queue_full()
            if self._worker is None:
                self._start_worker()
            if not self._wake.is_set():
                self._wake.set()
            return not refused
        except Exception:
            log.debug("submit failed", exc_info=True)
            return False

    def _overflowed(self, event: Any) -> bool:
        """Under the lock: keep an event the full queue refused for spilling; False if dropped."""
        # The caller never touches the disk: with a backlog the worker spills it.
        if self._backlog is not None and len(self._overflow) < self._held_max:
            self._overflow.append(event)
            return True
        self._counters.dropped["queue_full"] += 1
        return False

    def _warn_queue_full(self) -> None:
        self._warn.warn(
            "queue_full",
            "%s queue is full (%d events); dropping events (overflow policy %s). The backend is "
            "slower than the event rate: raise emitter_queue_size, set emitter_spool_dir, or check "
            "the backend.",
            self._name,
            self._settings.queue_size,
            self._settings.overflow.value,
        )

    def _start_worker(self) -> None:
        with self._start_lock:
            if self._worker is not None:
                return
            worker = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            worker.start()
            self._worker = worker
            self._caller.prestart()

    # -- waiting -----------------------------------------------------------------------

    def _idle(self) -> bool:
        return not self._queue and not self._overflow and not self._open and not self._spilling

    def _drain(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` until nothing is pending; True if so."""
        with self._lock:
            return self._drained.wait_for(self._idle, clamp_wait_s(timeout_s))

    def _replayed(self, timeout_s: float) -> None:
        """Flush, on the replaying lane: wait at most ``timeout_s`` for the replay to send
        the events spilled only to keep their run's order, unless it cannot (the breaker
        is open, or a replay failed meanwhile). They are safe on disk, but a task runner
        about to exit would leave them to the next process on its host (none, in a pod
        that goes with its disk), where before they were sent live."""
        deadline = time.monotonic() + clamp_wait_s(timeout_s)
        shared = self._shared
        with self._lock:
            failed_before = shared.replay_failed

        def done() -> bool:
            return (
                not shared.behind_spooled
                or self._closed
                or shared.replay_failed != failed_before
                or self._breaker.state is BreakerState.OPEN
            )

        with self._lock:
            # Polled: the replay's cool-down after the failure that spooled the run ends
            # without anyone to notify.
            while not done() and (remaining := deadline - time.monotonic()) > 0:
                self._drained.wait(min(remaining, 0.05))

    def _lost(self) -> int:
        # Refusals after close() are not events that were pending, so they do not count.
        dropped = self._counters.dropped
        return sum(dropped.values()) - dropped["closed"]

    # The steps of close() (``LaneGroup``), taken by each lane of a group.

    def _stop_accepting(self) -> bool:
        """Refuse new events from now on; False if that was already so."""
        with self._lock:
            if self._closed:
                return False
            self._closed = True
        self._wake.set()
        return True

    def _is_idle(self) -> bool:
        with self._lock:
            return self._idle()

    def _give_up(self) -> Undelivered:
        """After the drain: spill (or drop) what is still pending, abandon the call in flight."""
        with self._lock:
            left = [event for event, _ in self._queue] + list(self._overflow)
            self._shared.queued -= len(self._queue)
            self._queue.clear()
            self._overflow.clear()
            # Settled here, spilled with the rest: the abandoned call may still land,
            # then the backend sees it twice (at-least-once), never zero times.
            in_flight = [self._current[i][0] for i in sorted(self._open)]
            self._open.clear()
            left += in_flight
            self._spilling += len(left)
            self._drained.notify_all()
            # Stop retrying and sleeping; an in-flight call is abandoned, not awaited. Set
            # in the same locked block: a hand-off checks it before each event, and must
            # not start one that close has just taken to spill.
            self._abort.set()
        self._wake.set()
        if self._calls is not None:
            self._calls.interrupt()  # nor is a turn to call
        self._caller.stop()
        spooled = self._spill(left) if left else False
        return Undelivered(len(left), len(in_flight), spooled, self._last_failure)

    def _spill(self, events: Sequence[Any], reason: str = "shutdown") -> bool:
        """Spill to the backlog; what is not written counts as dropped. True if all written.

        The caller has added ``len(events)`` to ``_spilling`` in the same locked block that
        took them off the queue, the overflow or the worker: they move from there to
        ``spooled``/``dropped`` in one step, never through a moment counted nowhere.
        """
        written = invalid = 0
        try:
            if self._backlog is not None:
                try:
                    written, invalid = self._backlog.spill(events)
                except Exception:
                    log.warning("%s: spilling to the spool failed", self._name, exc_info=True)
                if written:
                    self._shared.spooled_runs.written(events)
        finally:
            with self._lock:
                self._spilling -= len(events)
                self._counters.spooled += written
                self._counters.dropped["non_retryable"] += invalid
                self._counters.dropped[reason] += len(events) - written - invalid
                if self._idle():
                    self._drained.notify_all()
        if written and not self._replays and reason != "shutdown":
            # The replaying lane may be asleep until its next rescan (seconds away) after
            # finding the backlog empty: what was just written is due after the cool-down.
            self._replay_not_before = min(
                self._replay_not_before, time.monotonic() + self._settings.breaker_cooldown_s
            )
        return written == len(events)

    def _while_waiting(self) -> None:
        """Worker side, every 50 ms of a call or backoff wait."""
        self._spill_overflow()
        self._publish_if_due()

    def _publish_if_due(self, *, now: bool = False) -> None:
        publisher = self._publisher
        if publisher is not None and (now or publisher.due()):
            publisher.publish(self._whole_stats())

    def _spill_overflow(self) -> None:
        """Worker side: write what the full queue refused, also while a call or backoff waits."""
        if not self._overflow:
            return
        with self._lock:
            overflow = list(self._overflow)
            self._overflow.clear()
            self._spilling += len(overflow)
        self._spill(overflow, "queue_full")

    def _pause(self, seconds: float) -> None:
        """Backoff sleep that ends early on close and keeps spilling overflow meanwhile."""
        deadline = time.monotonic() + seconds
        while not self._abort.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._abort.wait(min(remaining, 0.05))
            self._while_waiting()

    # -- worker side -------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            self._spill_overflow()
            with self._lock:
                items = self._take()
                self._current, self._open = items, set(range(len(items)))
                if not items and not self._overflow and (self._closed or self._abort.is_set()):
                    return
            if not items:
                self._notify_if_idle()
                if self._overflow:
                    continue
                if self._may_replay() and self._replay():
                    continue
                self._publish_if_due(now=True)
                self._wake.clear()
                # Re-check after clear(): a submit between popleft and clear() must not
                # be left waiting for the next wake-up.
                if not self._queue and not self._overflow:
                    self._wake.wait(self._idle_wait_s())
                continue
            try:
                self._deliver(items)
            except BaseException:
                log.exception("%s: unexpected error delivering an event", self._name)
            finally:
                del items
                with self._lock:
                    self._current = []
                self._notify_if_idle()
                self._publish_if_due()

    def _take(self) -> list[Item]:
        """Under the lock: the next hand-off (up to ``_in_turn.MAX_EVENTS``), or with a
        ``SendMany`` the next batch."""
        queue = self._queue
        if not queue:
            return []
        taken = min(len(queue), self._per_call)
        self._shared.queued -= taken
        return [queue.popleft() for _ in range(taken)]

    def _call(self, job: Any) -> object:
        """On the call thread: a batch through the ``SendMany``, a hand-off in turn through
        ``send``, a lone event (replay) through ``send``."""
        if isinstance(job, InTurn):
            return job.send(self._send, self._abort.is_set, self._calls)
        if isinstance(job, _Many):
            assert self._send_many is not None
            outcomes = self._send_many(job.events)
            if len(outcomes) != len(job.events):
                raise RuntimeError(
                    f"the batch sender gave {len(outcomes)} outcomes for {len(job.events)} events"
                )
            return outcomes
        return self._send(job)

    def _notify_if_idle(self) -> None:
        with self._lock:
            if self._idle():
                self._drained.notify_all()

    def _idle_wait_s(self) -> float | None:
        if self._backlog is None or not self._replays:
            return None
        return max(0.05, min(BACKLOG_RESCAN_S, self._replay_not_before - time.monotonic()))

    def _deliver(self, items: list[Item]) -> None:
        """Deliver the worker's events (one, a hand-off, or a batch): each ends delivered,
        dropped or spilled, in order: per-run order holds across retries.

        A batch (``SendMany``) is retried as a whole, minus what it already delivered or
        dropped. A hand-off's events each get a retry budget of their own, starting when
        they become its head: the events a failed call did not reach are neither charged
        for its retries nor given up with it."""
        pending = self._behind_spooled(items, range(len(items)))  # not yet settled
        carried: tuple[int, BaseException] | None = None
        while pending:
            pending, carried = self._deliver_head(items, pending, carried)
            if pending:  # the head was given up: if it went to the spool, its run follows it
                pending = self._behind_spooled(items, pending)

    def _deliver_head(
        self, items: list[Item], pending: list[int], carried: tuple[int, BaseException] | None
    ) -> tuple[list[int], tuple[int, BaseException] | None]:
        """Retry until the head of ``pending`` is settled, sending what follows it meanwhile.

        Returns what is left once a retry budget ends with events it did not reach (a
        hand-off whose head was given up, or that moved on to a new head that failed,
        with that failure, ``carried`` into the next budget as its first attempt: the
        event it is for, and what it failed with)."""
        settings = self._settings
        if not self._breaker.allow():
            # The worker's events first: the spool replays in the order written, and the
            # queue holds their runs' later events.
            self._settle(pending, "breaker_open")
            if self._backlog is not None:
                # Spill everything queued behind it as one batch: one file, not one per event.
                with self._lock:
                    behind = [queued for queued, _ in self._queue]
                    self._shared.queued -= len(self._queue)
                    self._queue.clear()
                    self._spilling += len(behind)
                self._spill(behind, "breaker_open")
            self._warn.warn(
                "breaker_open",
                "%s: backend marked down after %d consecutive failed events; not calling it for "
                "up to %.0fs before probing again (events are %s)",
                self._name,
                settings.breaker_threshold,
                settings.breaker_cooldown_s,
                "spooled" if self._backlog is not None else "dropped",
            )
            return [], None
        probe = self._breaker.probing
        attempts = 0
        first_at = time.monotonic()
        moved_on: tuple[int, BaseException] | None = None
        if carried is not None and (probe or carried[0] != pending[0]):
            # A probe calls the backend; an event spilled behind its run since is not the
            # one the failure was for.
            carried = None

        def attempt() -> None:
            nonlocal attempts, carried, moved_on
            attempts += 1
            if carried is not None:
                # The new head's first attempt is the call that already failed on it.
                error, carried = carried[1], None
                raise error
            while True:
                head = pending[0]
                outcomes = (
                    self._in_turn_call(items, pending) if self._in_turn else self._many_call(items, pending)
                )
                try:
                    self._settle_outcomes(items, pending, outcomes)
                except Exception as exc:
                    if self._in_turn and pending[0] != head:
                        moved_on = (pending[0], exc)  # a new head failed: its own budget
                        return
                    raise
                if not pending:
                    return
                # Only events the call did not reach are left: the next call sends them at
                # once (no retry counted), unless the emitter is closing.
                if self._abort.is_set():
                    raise NotSent("the emitter is closing")

        try:
            attempt() if probe else self._retrying(attempt)
        except BaseException as exc:  # noqa: BLE001 - classified and counted below, never lost
            if not self._in_turn:
                self._failed(pending, exc, attempts, time.monotonic() - first_at)
                return [], None
            # A hand-off's events behind its head were not sent: only the head failed.
            self._failed(pending[:1], exc, attempts, time.monotonic() - first_at)
            if self._abort.is_set():
                self._settle(pending[1:], "shutdown")  # close has taken them (and counted them)
                return [], None
            return pending[1:], None
        self._replay_not_before = 0.0
        self._backend_answered()
        return pending, moved_on

    def _many_call(self, items: list[Item], pending: list[int]) -> Sequence[object]:
        """One call of the ``SendMany`` with the pending events; their outcomes, in order."""
        started = time.monotonic()
        try:
            outcomes = self._caller.call(
                _Many([items[i][0] for i in pending]),
                self._settings.call_timeout_s,
                self._abort.is_set,
                while_waiting=self._while_waiting,
            )
        finally:
            if self._publisher is not None:
                self._publisher.timing("call_latency", time.monotonic() - started)
        return typing.cast(Sequence[object], outcomes)

    def _in_turn_call(self, items: list[Item], pending: list[int]) -> list[object]:
        """One hand-off of the pending events to the call thread (see ``_in_turn``), within
        the emitter's limit on calls in flight; their outcomes, in order."""
        calls = self._calls
        if calls is not None and not calls.acquire(self._abort.is_set, self._while_waiting):
            raise NotSent("the emitter is closing")  # without a slot
        if self._abort.is_set():
            # Close gave up (and spilled these) as the slot came: a call now would start a
            # call thread after close stopped it, to send a duplicate.
            if calls is not None:
                calls.release()
            raise NotSent("the emitter is closing")
        # Built now, not before the wait for a slot: its budget runs from the hand-over.
        job = InTurn([items[i][0] for i in pending])
        holding = calls is not None
        started = time.monotonic()

        def while_waiting() -> None:
            nonlocal holding
            self._while_waiting()
            if holding and time.monotonic() - started >= NETWORK_BOUND_S:
                holding = False  # waiting on the backend by now: another lane may call
                assert calls is not None
                calls.release()

        try:
            result = self._caller.call(
                job,
                self._settings.call_timeout_s,
                self._abort.is_set,
                while_waiting=while_waiting,
                grace_s=BUDGET_S,  # the last event may start BUDGET_S after the hand-over
            )
        except CallTimeout as exc:
            return job.abandon(exc)
        finally:
            if holding:
                assert calls is not None
                calls.release()
            if self._publisher is not None:
                for took_s in job.timings_s():  # one per request, as for a lone event
                    self._publisher.timing("call_latency", took_s)
        return typing.cast(list[object], result)

    def _behind_spooled(self, items: list[Item], indices: Iterable[int]) -> list[int]:
        """Of ``indices`` into ``items``, those to send; those of runs with events in the
        spool are spilled behind them instead (see ``_run_order``: the replay goes after
        live events)."""
        indices = list(indices)
        spooled_runs = self._shared.spooled_runs
        if not spooled_runs:  # the common case: one truth test, no lock
            return indices
        behind = [indices[j] for j in spooled_runs.behind([items[i][0] for i in indices])]
        if not behind:
            return indices
        if self._settle(behind, "behind_spooled"):
            with self._lock:
                self._shared.behind_spooled += len(behind)
        # The replaying lane may be asleep until its next rescan: these are due now.
        self._shared.replay_wake.set()
        spilled = set(behind)  # a Kafka call holds up to 1000 events: no list scan per event
        return [i for i in indices if i not in spilled]

    def _settle_outcomes(self, items: list[Item], pending: list[int], outcomes: Sequence[object]) -> None:
        """One outcome per pending event of a batch: delivered, dropped for good, or kept in
        ``pending`` for the retry (which then raises the first retryable error)."""
        retry: list[int] = []
        error: BaseException | None = None
        refused: list[tuple[int, BaseException]] = []
        for i, outcome in zip(pending, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                self._delivered(items, i, outcome)
            elif isinstance(outcome, NotSent):
                retry.append(i)  # not a failure: the call stopped before it
            elif classify(outcome).retryable:
                retry.append(i)
                error = error or outcome
            else:
                refused.append((i, outcome))
        for i, exc in refused:
            self._failed([i], exc)
        pending[:] = retry
        if error is not None:
            raise error

    def _delivered(self, items: list[Item], i: int, result: object) -> None:
        latency_s = time.monotonic() - items[i][1]
        with self._lock:
            if self._settle_current(i):
                self._counters.delivered += 1
                self._counters.latencies_s.append(latency_s)
                if isinstance(result, Truncated):
                    self._counters.truncated[result.reason] += 1
            else:
                # close() gave up on it (spilled or dropped it) while the call ran.
                self._counters.late_delivered += 1
            self._counters.abandoned_calls = self._caller.abandoned_total
        if self._publisher is not None:
            self._publisher.timing("delivery_latency", latency_s)

    def _backend_answered(self, how: str = "") -> None:
        """The backend answered (a success, or a refusal that says it is up): reset the
        breaker, and say so if that closed it, whatever answer closed it."""
        if self._breaker.record_success() is BreakerState.CLOSED:
            self._breaker_changed("closed")
            log.warning("%s: backend answers again%s; circuit breaker closed", self._name, how)

    def _breaker_changed(self, change: str) -> None:
        if self._publisher is not None:
            self._publisher.incr(f"breaker.{change}")
            self._publisher.gauge("breaker_state", {"opened": 2, "closed": 0}.get(change, -1))

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        if exc is not None:
            self._last_failure = f"{classify(exc).reason}: {short_error(exc)}"
        with self._lock:
            self._counters.retried += 1
            self._counters.abandoned_calls = self._caller.abandoned_total

    def _failed(
        self, indices: Sequence[int], exc: BaseException, attempts: int = 1, elapsed_s: float = 0.0
    ) -> None:
        """The worker's events at ``indices`` failed with ``exc``, for good: drop or spill them."""
        if not indices:
            return
        if isinstance(exc, NotSent):  # closing stopped them before they were sent: no failure
            self._settle(indices, "shutdown")
            return
        verdict = classify(exc)
        self._last_failure = f"{verdict.reason}: {short_error(exc)}"
        with self._lock:
            self._counters.failed += len(indices)
        if not verdict.retryable:
            with self._lock:
                for i in indices:
                    if self._settle_current(i):  # else close() already counted it
                        self._counters.dropped[verdict.dropped_as] += 1
            # The backend answered (or the event itself is bad): it is not down.
            self._backend_answered(f" ({verdict.reason})")
            self._warn.warn(
                f"non_retryable:{verdict.reason}",
                "%s: event rejected and dropped (%s: %s); it will not be retried%s",
                self._name,
                verdict.reason,
                short_error(exc),
                _TOO_LARGE_HINT if verdict.dropped_as == "too_large" else "",
            )
            return
        self._replay_not_before = time.monotonic() + self._settings.breaker_cooldown_s
        if self._abort.is_set():
            self._settle(indices, "shutdown")  # close() already reported it
            return
        spooled = self._settle(indices, "retries_exhausted")
        fate = "written to the spool" if spooled else "dropped"
        keep = "" if self._backlog is not None else "; set emitter_spool_dir to keep such events"
        # One failed call is one failure of the backend, however many events it carried.
        if self._breaker.record_failure() is BreakerState.OPEN:
            self._breaker_changed("opened")
            log.warning(
                "%s: circuit breaker open: backend failing (%s); not calling it for %gs (events "
                "meanwhile are %s%s)",
                self._name,
                self._last_failure,
                self._settings.breaker_cooldown_s,
                "spooled" if self._backlog is not None else "dropped",
                keep,
            )
            return
        retry = self._settings.retry
        # Name the limit that actually ended the retries: attempts often run out well
        # before the deadline (5 attempts with the default backoff take ~11 s of 30).
        if attempts >= retry.attempts:
            limit, key = f"all {retry.attempts} attempts", "emitter_retry_attempts"
        else:
            limit, key = f"the {retry.deadline_s:g}s deadline", "emitter_retry_deadline"
        self._warn.warn(
            "retries_exhausted",
            "%s: %s %s after %d attempt(s) in %.1fs: the backend answered %s; %s used up: "
            "check the backend, or raise %s to retry longer%s",
            self._name,
            "event" if len(indices) == 1 else f"{len(indices)} events",
            fate,
            attempts,
            elapsed_s,
            self._last_failure,
            limit,
            key,
            keep,
        )

    def _settle(self, indices: Iterable[int], reason: str) -> bool:
        """Events the worker gives up on: spill them (unless close already did) or drop them.

        True if they were written to the spool."""
        with self._lock:
            mine = [self._current[i][0] for i in indices if self._settle_current(i)]
            self._spilling += len(mine)
            self._counters.abandoned_calls = self._caller.abandoned_total
        if mine:  # else close() spilled or dropped them and counted them
            return self._spill(mine, reason)
        return False

    def _settle_current(self, i: int) -> bool:
        """Under the lock: the worker's event ``i`` stops being in flight. False if close()
        had already taken it (and counted it)."""
        if i not in self._open:
            return False
        self._open.discard(i)
        return True

    def _late_delivered(self, job: Any) -> None:
        """A call abandoned at its timeout returned successfully after all: the event was
        delivered, and is also counted by whatever its retry or close did (a duplicate,
        or an event counted spooled/dropped that did arrive)."""
        if isinstance(job, InTurn) and not job.delivered_late():
            return  # it ended before the worker gave up on it: every outcome was counted
        with self._lock:
            self._counters.late_delivered += 1

    # -- replay ------------------------------------------------------------------------

    def _may_replay(self) -> bool:
        return (
            self._backlog is not None
            and self._replays
            and not self._closed
            and time.monotonic() >= self._replay_not_before
            and self._breaker.state is not BreakerState.OPEN
        )

    def _replay(self) -> bool:
        """Replay one backlog batch, live events first. True if anything was replayed."""
        assert self._backlog is not None
        probing = self._breaker.state is BreakerState.HALF_OPEN
        if probing and not self._breaker.allow():
            return False
        try:
            # With a many-at-once sender (the http batch endpoint, Kafka) a spool batch goes
            # in calls of up to emitter_batch_max_events events, else one event per call.
            sending = (
                Sending(self._replay_one, 1, self._replay_stops, self._count_replayed)
                if self._send_many is None
                else Sending(
                    self._replay_many,
                    self._per_call,
                    self._replay_stops,
                    self._count_replayed,
                )
            )
            looked = self._shared.spooled_runs.looked()
            drained = self._backlog.replay(sending)
            # Nothing to claim: no run is behind the spool any more.
            forgot = not drained.batches and self._shared.spooled_runs.found_empty(looked)
        except Exception:
            log.warning("%s: reading the spool failed", self._name, exc_info=True)
            drained, forgot = Drained(), False
        with self._lock:
            if forgot:
                self._shared.behind_spooled = 0
            if drained.unavailable is not None:
                self._shared.replay_failed += 1
            self._drained.notify_all()  # a flush may be waiting for this replay (see _replayed)
        if drained.unavailable is not None:
            self._replay_not_before = time.monotonic() + self._settings.breaker_cooldown_s
        elif not drained.batches:
            self._replay_not_before = time.monotonic() + BACKLOG_RESCAN_S
        if probing:
            if drained.answered:
                self._backend_answered()
            elif drained.unavailable is not None:
                self._breaker.record_failure()
            else:  # the probe never ran (no batch, or live events came first)
                self._breaker.abandon_probe()
        return drained.answered

    def _count_replayed(self, step: Drained) -> None:
        with self._lock:
            self._counters.replayed += step.delivered
            for reason in step.truncated:
                self._counters.truncated[reason] += 1

    def _replay_stops(self) -> bool:
        """Asked before each replayed call: live events go first, and closing stops it."""
        return bool(self._queue) or self._abort.is_set()

    def _replay_many(self, events: Sequence[Any]) -> Sequence[object]:
        """One attempt for replayed events through the ``SendMany``, on the call thread."""
        outcomes = self._caller.call(
            _Many(list(events)),
            self._settings.call_timeout_s,
            self._abort.is_set,
            while_waiting=self._while_waiting,
        )
        assert isinstance(outcomes, Sequence)  # _call checked it has one outcome per event
        return outcomes

    def _replay_one(self, events: Sequence[Any]) -> Sequence[object]:
        """One attempt for one replayed event on the call thread (bounded like any call)."""
        return [
            self._caller.call(
                events[0],
                self._settings.call_timeout_s,
                self._abort.is_set,
                while_waiting=self._while_waiting,
            )
        ]

    # -- introspection -----------------------------------------------------------------

    def _members(self) -> Sequence[ThreadEmitter]:
        return [self]

    def _publisher_now(self) -> Publisher | None:
        return self._publisher

    def _threads_alive(self) -> int:
        worker = self._worker
        return int(worker is not None and worker.is_alive()) + self._caller.threads_alive()

    def _pending(self) -> tuple[int, int]:
        """Under the lock: (queue_depth, in_flight) of this lane."""
        return len(self._queue) + len(self._overflow) + self._spilling, len(self._open)

    def _reinit_after_fork(self) -> None:
        self._init_state()


#: What to change when the backend refuses an event as too large even with its facets shed.
_TOO_LARGE_HINT = (
    ". The backend refuses it as too large even without its sheddable facets: raise the "
    "backend's request size limit (emitter_max_event_bytes sheds facets to fit a budget)"
)


def _close_at_exit(ref: weakref.ref[ThreadEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.close()
