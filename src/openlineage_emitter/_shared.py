"""What the lanes of one emitter share, and how an emitter is built.

``EmitterOptions`` (the keywords a ``ThreadEmitter`` and a ``_lanes.Lanes`` take beside
``send`` and ``settings``), the ``Backlog`` protocol they spill to, ``Shared`` (the one
lock, counters, breaker, cap on abandoned calls, publisher and queues of a group of
lanes) and ``LaneOf`` (what makes an emitter one lane of a ``Lanes``). Apart from
``emitter.py`` so that ``_lanes`` and ``_closing`` can use them without importing the
worker, and so that the worker module holds only the worker.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypedDict

import attrs

from openlineage_emitter._batching import SendMany
from openlineage_emitter._call_limit import CallLimit
from openlineage_emitter._caller import AbandonedCalls
from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._replayer import Drained, Sending
from openlineage_emitter._run_order import SpooledRuns
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.metrics import Metrics, Publisher
from openlineage_emitter.retry import CircuitBreaker
from openlineage_emitter.settings import MAX_ABANDONED_CALLS, EmitterSettings
from openlineage_emitter.stats import Counters, EmitterStats

#: The emitter's logger (the rate-limited warnings are the emitter's, under its name as
#: before this module was split out of ``emitter.py``).
log = masked_logger("openlineage_emitter.emitter")

Item = tuple[Any, float]  # (event, monotonic submit time)


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
    queues: list[deque[Item]] = attrs.field(factory=list)
    queued: int = 0
    #: The runs with events in the spool: their next events go there too (``_run_order``).
    spooled_runs: SpooledRuns = attrs.field(factory=SpooledRuns)
    #: Events spilled only to stay behind their run's spooled events, until a replay
    #: finds the spool empty (under ``lock``): ``flush`` gives the replay time for them.
    behind_spooled: int = 0
    replay_failed: int = 0  #: replays stopped by a retryable failure (under ``lock``)
    #: How many lanes may have a call in flight (see ``_call_limit``); None for one lane.
    calls: CallLimit | None = None

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
            calls=CallLimit(settings.lanes) if settings.lanes > 1 else None,
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
