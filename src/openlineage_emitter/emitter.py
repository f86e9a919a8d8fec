"""The thread emitter: a bounded queue drained by one daemon worker thread.

Caller side (``submit``): take a lock, append, maybe wake the worker. No I/O, no
serialisation, no waiting. Worker side: one event at a time (or, with a ``SendMany``, up
to ``emitter_batch_max_events`` in one call), in FIFO order, each call to the inner
transport bounded by the call timeout, retried by the tenacity policy within the
event's deadline, behind a circuit breaker. With a backlog (the spool), what cannot be
delivered is spilled instead of dropped and replayed when idle.

One ``ThreadEmitter`` is one lane; ``_lanes.Lanes`` runs several side by side (events
of one run on one lane), sharing what a ``Shared`` holds.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
import typing
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

import attrs
import tenacity

from openlineage_emitter import _validators as v
from openlineage_emitter._batching import SendMany, events_per_call
from openlineage_emitter._caller import AbandonedCalls, TimedCaller
from openlineage_emitter._forksafe import reinit_in_child
from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._replayer import Drained, Sending
from openlineage_emitter._secrets import mask_text, masked_logger
from openlineage_emitter.metrics import Metrics, Publisher
from openlineage_emitter.retry import BreakerState, CircuitBreaker, classify
from openlineage_emitter.settings import MAX_ABANDONED_CALLS, EmitterSettings, Overflow
from openlineage_emitter.stats import Counters, EmitterStats, Truncated

if TYPE_CHECKING:  # typing.Unpack is 3.11+; only the type checker reads it here
    from typing import Unpack

log = masked_logger(__name__)

_Item = tuple[Any, float]  # (event, monotonic submit time)

#: Events refused by a full queue held (at most) for a lane to spill: at least this many,
#: so a burst while a call hangs reaches the disk instead of being dropped.
MIN_OVERFLOW_HELD = 1024

#: Seconds between looks for new backlog batches (other processes may spill) while idle.
BACKLOG_RESCAN_S = 5.0

#: The longest single wait handed to ``threading``: past ``threading.TIMEOUT_MAX`` a wait
#: raises OverflowError (and a Condition adds its own clock reading, hence the margin).
_MAX_WAIT_S = threading.TIMEOUT_MAX / 2


def clamp_wait_s(timeout_s: float) -> float:
    """A caller's timeout as a wait ``threading`` accepts: any non-negative float, ``inf``
    included (it means "until done"); negative or NaN means "do not wait"."""
    if not timeout_s > 0:  # also NaN
        return 0.0
    return min(float(timeout_s), _MAX_WAIT_S)


class Backlog(Protocol):
    """Where undeliverable events go, and come back from (e.g. the spool)."""

    def spill(self, events: Sequence[Any]) -> tuple[int, int]:
        """Write events durably; returns (written, invalid: cannot be serialised at all)."""
        ...

    def replay(self, sending: Sending) -> Drained:
        """Send (at most) one batch of it back as ``sending`` says (see ``_replayer``:
        events refused for good are set aside, not deleted)."""
        ...

    def counts(self) -> tuple[int, int]:
        """(events quarantined, events evicted by the size bound) so far."""
        ...


#: A ``ThreadEmitter``'s default ``name`` (thread names, log prefix).
DEFAULT_NAME = "openlineage-emitter"


class EmitterOptions(TypedDict, total=False):
    """How a ``ThreadEmitter`` is built beside ``send`` and ``settings``; ``_lanes.Lanes``
    takes the same and builds each of its lanes with them."""

    name: str  #: thread names and the log prefix (default ``DEFAULT_NAME``)
    close_at_exit: bool  #: a bounded close at interpreter exit (default True)
    backlog: Backlog | None  #: where undeliverable events go and come back from (the spool)
    metrics: Metrics | None  #: publishes ``ol.emitter.*`` there, tagged with ``metric_tags``
    metric_tags: Mapping[str, str] | None
    send_many: SendMany | None  #: sends queued events in batches (see ``_batching``)


@attrs.define
class Shared:
    """What the lanes of one emitter share (a lone emitter has its own): one lock and one
    set of counters (so that a snapshot of all lanes is one consistent reading), one
    breaker (the backend is one backend), one cap on abandoned calls (the thread bound)
    and one metrics publisher."""

    lock: threading.Lock
    counters: Counters
    breaker: CircuitBreaker
    abandoned: AbandonedCalls
    publisher: Publisher | None
    warn: RateLimitedLog  #: one rate limit per kind of warning, not one per lane
    #: Not before this (monotonic) does the replaying lane look at the backlog: a failure
    #: on any lane postpones it, a success on any lane allows it at once.
    replay_not_before: float = 0.0
    #: The replaying lane's wake-up: other lanes ring it when ``replay_not_before`` changes.
    replay_wake: threading.Event = attrs.field(factory=threading.Event)
    #: Every lane's queue, and how many events they hold together (under ``lock``):
    #: ``emitter_queue_size`` bounds the total, not each lane, so that runs hashed
    #: unevenly onto lanes are not refused while the emitter has room.
    queues: list[deque[_Item]] = attrs.field(factory=list)
    queued: int = 0

    @classmethod
    def new(
        cls, settings: EmitterSettings, metrics: Metrics | None, metric_tags: Mapping[str, str]
    ) -> Shared:
        return cls(
            lock=threading.Lock(),
            counters=Counters(),
            breaker=CircuitBreaker(settings.breaker_threshold, settings.breaker_cooldown_s),
            abandoned=AbandonedCalls(MAX_ABANDONED_CALLS),
            publisher=Publisher(metrics, metric_tags) if metrics is not None else None,
            warn=RateLimitedLog(log),
        )


@attrs.frozen
class LaneOf:
    """Makes an emitter lane ``index`` of a ``_lanes.Lanes``, which closes it at exit and
    re-initialises it after fork (the lane registers no hooks of its own)."""

    index: int
    share: int  #: its share of ``emitter_queue_size``: how many refused events it holds to spill
    replays: bool  #: the one lane that replays the backlog: one replay, in spool order
    shared: Callable[[], Shared]  #: the owner's shared parts (new ones after fork)
    stats: Callable[[], EmitterStats]  #: the whole emitter's stats, for the publisher


class _Many:
    """A batch of events for one call of the ``SendMany`` (the call thread runs either)."""

    __slots__ = ("events",)

    def __init__(self, events: list[Any]) -> None:
        self.events = events


class LaneGroup:
    """``flush``, ``close`` and ``stats`` of emitters that share one ``Shared``, written once:
    a lone ``ThreadEmitter`` is a group of one, a ``_lanes.Lanes`` the group of its lanes."""

    _name: str
    _settings: EmitterSettings
    _backlog: Backlog | None

    def _members(self) -> Sequence[ThreadEmitter]:
        raise NotImplementedError

    def _publisher_now(self) -> Publisher | None:
        raise NotImplementedError

    def stats(self) -> EmitterStats:
        """A frozen snapshot: one reading of all the group's counters (see ``snapshot``)."""
        return snapshot(self._members(), self._backlog)

    def flush(self, timeout_s: float) -> bool:
        """Wait at most ``timeout_s`` (any non-negative float, ``inf`` included) for the queue to drain.

        True if it drained and nothing was lost meanwhile, i.e. everything pending at
        the call was delivered (or, with a spool, is safe on disk). Lanes: every lane
        within one deadline.
        """
        members = self._members()
        deadline = time.monotonic() + clamp_wait_s(timeout_s)
        first = members[0]
        # Losses are counted from the start for all lanes: a lane that drops an event
        # while another lane is being waited for must still make this False.
        with first._lock:
            lost_before = first._lost()
        # A list, not all(generator): every lane gets what is left, even after one failed.
        drained = all([lane._drain(deadline - time.monotonic()) for lane in members])
        with first._lock:
            return drained and first._lost() == lost_before

    def close(
        self,
        timeout_s: float | None = None,
        *,
        budget_key: str = "emitter_shutdown_timeout",
        budget_note: str = "",
    ) -> bool:
        """Stop accepting, drain within ``timeout_s`` (default: the shutdown budget).

        Returns True if everything pending was delivered before the deadline. What is
        still pending then is spilled to the backlog if there is one, else dropped
        (reason ``shutdown``), and logged. ``budget_key`` is the setting the warning
        tells the operator to raise: the one that actually limited ``timeout_s`` (a host
        may derive it from its own keys). ``budget_note`` says why the budget was short
        (e.g. that earlier waits already spent it). Lanes: one deadline, one warning,
        one summary for all of them.
        """
        budget_s = self._settings.shutdown_timeout_s if timeout_s is None else timeout_s
        members = self._members()
        # Every lane stops accepting before any waits: no lane takes new events while
        # another's drain spends the budget.
        if not any([lane._stop_accepting() for lane in members]):
            # Already closed (e.g. explicitly, then again at exit): the first close
            # spent the budget; a second one must not wait again.
            return all(lane._is_idle() for lane in members)
        drained = self.flush(budget_s)
        undelivered = [lane._give_up() for lane in members]
        warn_undelivered(self._name, budget_s, undelivered, budget_key, budget_note)
        summarise(self._name, self.stats(), self._publisher_now())
        return drained


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
        self._per_call = events_per_call(self._settings, self._send_many)
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
        self._queue: deque[_Item] = deque()
        shared.queues.append(self._queue)
        self._overflow: deque[Any] = deque()  # refused events waiting to be spilled
        #: The events the worker is sending (one, or a batch) and which of them are not
        #: settled yet (in flight): close() may settle them while the call runs.
        self._current: list[_Item] = []
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
        self._caller = TimedCaller(
            self._call if self._send_many is not None else self._send,
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
        # Stop retrying and sleeping; an in-flight call is abandoned, not awaited.
        self._abort.set()
        self._wake.set()
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

    def _take(self) -> list[_Item]:
        """Under the lock: the next event, or with a ``SendMany`` the next batch."""
        queue = self._queue
        if not queue:
            return []
        if self._send_many is None:
            self._shared.queued -= 1
            return [queue.popleft()]
        taken = min(len(queue), self._per_call)
        self._shared.queued -= taken
        return [queue.popleft() for _ in range(taken)]

    def _call(self, job: Any) -> object:
        """On the call thread, with a ``SendMany``: a batch through it, a lone event (replay) by ``send``."""
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

    def _deliver(self, items: list[_Item]) -> None:
        """Deliver the worker's events (one, or a batch): each ends delivered, dropped or
        spilled. A batch is retried as a whole, minus what it already delivered or
        dropped, before anything behind it: per-run order holds across retries."""
        settings = self._settings
        if not self._breaker.allow():
            if self._backlog is not None:
                # Spill everything queued behind it as one batch: one file, not one per event.
                with self._lock:
                    behind = [queued for queued, _ in self._queue]
                    self._shared.queued -= len(self._queue)
                    self._queue.clear()
                    self._spilling += len(behind)
                self._spill(behind, "breaker_open")
            self._settle(range(len(items)), "breaker_open")
            self._warn.warn(
                "breaker_open",
                "%s: backend marked down after %d consecutive failed events; not calling it for "
                "up to %.0fs before probing again (events are %s)",
                self._name,
                settings.breaker_threshold,
                settings.breaker_cooldown_s,
                "spooled" if self._backlog is not None else "dropped",
            )
            return
        probe = self._breaker.probing
        attempts = 0
        first_at = time.monotonic()
        pending = list(range(len(items)))  # not yet delivered or dropped

        def attempt() -> None:
            nonlocal attempts
            attempts += 1
            started = time.monotonic()
            try:
                if self._send_many is None:
                    result = self._caller.call(
                        items[0][0],
                        settings.call_timeout_s,
                        self._abort.is_set,
                        while_waiting=self._while_waiting,
                    )
                    self._delivered(items, 0, result)
                    pending.clear()
                    return
                batch = _Many([items[i][0] for i in pending])
                outcomes = self._caller.call(
                    batch, settings.call_timeout_s, self._abort.is_set, while_waiting=self._while_waiting
                )
            finally:
                if self._publisher is not None:
                    self._publisher.timing("call_latency", time.monotonic() - started)
            self._settle_outcomes(items, pending, typing.cast(Sequence[object], outcomes))

        try:
            attempt() if probe else self._retrying(attempt)
        except BaseException as exc:  # noqa: BLE001 - classified and counted below, never lost
            self._failed(pending, exc, attempts, time.monotonic() - first_at)
        else:
            self._replay_not_before = 0.0
            self._backend_answered()

    def _settle_outcomes(self, items: list[_Item], pending: list[int], outcomes: Sequence[object]) -> None:
        """One outcome per pending event of a batch: delivered, dropped for good, or kept in
        ``pending`` for the retry (which then raises the first retryable error)."""
        retry: list[int] = []
        error: BaseException | None = None
        refused: list[tuple[int, BaseException]] = []
        for i, outcome in zip(pending, outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                self._delivered(items, i, outcome)
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

    def _delivered(self, items: list[_Item], i: int, result: object) -> None:
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

    def _late_delivered(self) -> None:
        """A call abandoned at its timeout returned successfully after all: the event was
        delivered, and is also counted by whatever its retry or close did (a duplicate,
        or an event counted spooled/dropped that did arrive)."""
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
            drained = self._backlog.replay(sending)
        except Exception:
            log.warning("%s: reading the spool failed", self._name, exc_info=True)
            drained = Drained()
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


def short_error(exc: BaseException) -> str:
    """``Type: message`` of ``exc``, with its root cause's text instead of its own when
    it wraps one: requests/urllib3 wrap "[Errno 111] Connection refused" in a message
    so long that a 200-character prefix ends at "...Failed..."."""
    root = _root_cause(exc)
    text = f"{type(exc).__name__}: {exc}"
    if root is not exc:
        text = f"{type(exc).__name__}: {type(root).__name__}: {root}"
    # Masked before truncating: a cut could split a secret so that the mask no longer matches it.
    text = mask_text(text)
    return text if len(text) <= 200 else text[:197] + "..."


def _root_cause(exc: BaseException) -> BaseException:
    """The innermost exception with a message behind ``exc``: following its explicit cause
    (``raise ... from``), urllib3's ``reason``, or an exception requests wraps as its first
    argument."""
    found, current, seen = exc, exc, 0
    while seen < 16:
        seen += 1
        nested: BaseException | None = current.__cause__
        if nested is None:
            reason = getattr(current, "reason", None)
            first = current.args[0] if current.args else None
            if isinstance(reason, BaseException):
                nested = reason
            elif isinstance(first, BaseException):
                nested = first
            # Not the implicit __context__: an error raised while handling another is
            # its own story ("during handling of the above exception, another occurred").
        if nested is None or nested is current:
            return found
        current = nested
        if str(current).strip():
            found = current
    return found


def snapshot(lanes: Sequence[ThreadEmitter], backlog: Backlog | None) -> EmitterStats:
    """One consistent ``stats()`` reading of emitters that share one ``Shared`` (the lanes of
    one emitter, or a lone one): taken under their one lock, so every submitted event is
    in exactly one place in it."""
    first = lanes[0]
    threads = sum(lane._threads_alive() for lane in lanes)
    quarantined, evicted = backlog.counts() if backlog is not None else (0, 0)
    with first._lock:
        counters = first._counters
        counters.abandoned_calls = first._caller.abandoned_total
        counters.quarantined = quarantined
        counters.spool_evicted = evicted
        pending = [lane._pending() for lane in lanes]
        return counters.snapshot(
            queue_depth=sum(queued for queued, _ in pending),
            in_flight=sum(in_flight for _, in_flight in pending),
            threads_alive=threads,
            breaker_state=first._breaker.state.value,
        )


@attrs.frozen
class Undelivered:
    """What one lane's close left undelivered: spilled (``spooled``) or dropped."""

    count: int
    in_flight: int
    spooled: bool
    last_failure: str  #: what the backend last answered to a failed attempt, if it did


def warn_undelivered(
    name: str, budget_s: float, lanes: Sequence[Undelivered], budget_key: str, budget_note: str
) -> None:
    """One warning for everything a close left undelivered, however many lanes it had."""
    count = sum(lane.count for lane in lanes)
    if not count:
        return
    in_flight = sum(lane.in_flight for lane in lanes)
    last_failure = next((lane.last_failure for lane in lanes if lane.last_failure), "")
    if last_failure:
        answered = f"; the backend last answered {last_failure}"
    elif in_flight:
        answered = "; the backend had not answered the call in flight"
    else:
        answered = ""
    log.warning(
        "%s closed after %gs with %d event(s) undelivered (%d in flight)%s; %s%s; raise %s to wait longer",
        name,
        budget_s,
        count,
        in_flight,
        f": {budget_note}" if budget_note else "",
        "written to the spool" if all(lane.spooled for lane in lanes if lane.count) else "dropped",
        answered,
        budget_key,
    )


def summarise(name: str, stats: EmitterStats, publisher: Publisher | None) -> None:
    """One line at close: what happened to every event the emitter was given."""
    if publisher is not None:
        publisher.publish(stats)
    reasons = ", ".join(f"{k} {v}" for k, v in stats.dropped.items() if v)
    late = (
        f"; {stats.late_delivered} more arrived late (calls given up on that the backend "
        "answered after all: possible duplicates)"
        if stats.late_delivered
        else ""
    )
    log.log(
        logging.WARNING if stats.dropped_total else logging.INFO,
        "%s closed: delivered %d, spooled %d, dropped %d%s%s",
        name,
        stats.delivered,
        stats.spooled,
        stats.dropped_total,
        f" ({reasons})" if reasons else "",
        late,
    )


def _close_at_exit(ref: weakref.ref[ThreadEmitter]) -> None:
    emitter = ref()
    if emitter is not None:
        emitter.close()
