"""The emitter's counters and the frozen snapshot ``stats()`` returns."""

from __future__ import annotations

import types
from collections import deque
from collections.abc import Mapping

import attrs

#: Why an event was not delivered. Every submitted event ends delivered or under one of these.
DROP_REASONS = (
    "queue_full",  # overflow policy refused or evicted it
    "closed",  # submitted after close()
    "breaker_open",  # the backend was declared dead; not called
    "non_retryable",  # the backend or the serialiser rejected it (4xx, bad event)
    "redirect",  # the backend answered with a 3xx; lineage POSTs do not follow redirects
    "retries_exhausted",  # retryable errors until attempts or the per-event deadline ran out
    "shutdown",  # still queued or in flight when the close/exit deadline was reached
    "too_large",  # the backend refused it as too large (413) even with its facets shed
    "behind_spooled",  # its run had events in the spool; writing it there behind them failed
)
# too_large is never spooled: no later attempt would be accepted either.

#: Why a delivered event was sent with facets shed (see ``_size``).
TRUNCATE_REASONS = (
    "budget",  # over emitter_max_event_bytes
    "too_large",  # the backend answered 413; the retry without facets was accepted
)
# With a spool configured, events that would be dropped for queue_full, breaker_open,
# retries_exhausted or shutdown are written to it instead and counted as ``spooled``.


@attrs.frozen
class Truncated:
    """What a send callable returns when it delivered the event with facets shed."""

    reason: str


def _freeze(value: Mapping[str, int]) -> Mapping[str, int]:
    return types.MappingProxyType(dict(value))


@attrs.frozen
class EmitterStats:
    """A point-in-time snapshot of one emitter; latencies in seconds (None before any delivery)."""

    submitted: int
    delivered: int
    retried: int
    failed: int
    dropped: Mapping[str, int] = attrs.field(converter=_freeze)
    queue_depth: int
    in_flight: int
    abandoned_calls: int
    threads_alive: int
    breaker_state: str
    spooled: int
    replayed: int
    quarantined: int
    spool_evicted: int
    #: Calls abandoned at their timeout (or in flight at close) that the backend answered
    #: with success afterwards. Not part of the accounting identity: each such event is
    #: also counted where its retry or close left it (delivered again, spooled or
    #: dropped), so this is the number of possible duplicates the backend saw.
    late_delivered: int
    #: Delivered events sent with facets shed, by reason (TRUNCATE_REASONS). Each is also
    #: counted ``delivered`` (or ``replayed``): not part of the accounting identity.
    truncated: Mapping[str, int] = attrs.field(converter=_freeze)
    latency_p50_s: float | None
    latency_p99_s: float | None

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def truncated_total(self) -> int:
        return sum(self.truncated.values())


def _percentile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


#: Deliveries the latency percentiles are computed over (the most recent ones).
LATENCY_WINDOW = 2048


@attrs.define
class Counters:
    """Mutable counters; the caller holds the emitter's lock while touching them.

    Named as the :class:`EmitterStats` fields they become (``snapshot``)."""

    submitted: int = 0
    delivered: int = 0
    retried: int = 0
    failed: int = 0
    abandoned_calls: int = 0
    spooled: int = 0
    replayed: int = 0
    quarantined: int = 0
    spool_evicted: int = 0
    late_delivered: int = 0
    dropped: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(DROP_REASONS, 0))
    truncated: dict[str, int] = attrs.Factory(lambda: dict.fromkeys(TRUNCATE_REASONS, 0))
    latencies_s: deque[float] = attrs.field(factory=lambda: deque(maxlen=LATENCY_WINDOW), eq=False)

    def snapshot(
        self, *, queue_depth: int, in_flight: int, threads_alive: int, breaker_state: str
    ) -> EmitterStats:
        ordered = sorted(self.latencies_s)
        counts = attrs.asdict(self, recurse=False, filter=lambda field, _: field.name != "latencies_s")
        return EmitterStats(
            **counts,
            queue_depth=queue_depth,
            in_flight=in_flight,
            threads_alive=threads_alive,
            breaker_state=breaker_state,
            latency_p50_s=_percentile(ordered, 0.50),
            latency_p99_s=_percentile(ordered, 0.99),
        )
