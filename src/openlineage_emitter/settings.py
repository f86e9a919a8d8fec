"""The thread emitter's settings: one frozen, validated value object."""

from __future__ import annotations

import enum

import attrs

from openlineage_emitter import _validators as v
from openlineage_emitter._keys import setting
from openlineage_emitter.retry import RetryPolicy


class Overflow(enum.Enum):
    """What a full queue does with one more event."""

    DROP_NEWEST = "drop_newest"  #: refuse the new event (``submit`` returns False)
    DROP_OLDEST = "drop_oldest"  #: evict the oldest queued event to make room


#: ``emitter_spool_dir = off`` (any case): no spool, even where one is the default (in
#: Airflow processes, ``$AIRFLOW_HOME/openlineage-spool``). Unset (None) means the default.
SPOOL_OFF = "off"


def _parse_spool_dir(key: str, raw: object) -> str | None:
    if isinstance(raw, str) and raw.strip().lower() == SPOOL_OFF:
        return SPOOL_OFF
    return v.parse_optional_path(key, raw)


def _parse_optional_text(key: str, raw: object) -> str | None:
    """A piece of text as given (stripped); empty means unset."""
    del key
    text = "" if raw is None else str(raw).strip()
    return text or None


#: Calls to the inner transport that may still be running after being abandoned, across
#: all lanes of one emitter. A new call thread starts only while fewer are alive, so an
#: emitter has at most ``max_threads(lanes)`` threads (see ``emitter_lanes``).
MAX_ABANDONED_CALLS = 2

#: The most lanes an emitter may have: each lane is up to two threads (see ``max_threads``).
MAX_LANES = 64


def max_threads(lanes: int) -> int:
    """The hard bound on one emitter's threads (3 for one lane, 17 for 8).

    Per lane: its worker, and one call thread running or abandoned. A lane starts a new
    call thread only while fewer than ``MAX_ABANDONED_CALLS`` abandoned ones are alive in
    all lanes together: so at most ``MAX_ABANDONED_CALLS - 1`` call threads beyond one
    per lane (each started while that many were abandoned, before its own was)."""
    return lanes + lanes + MAX_ABANDONED_CALLS - 1


@attrs.frozen
class EmitterSettings:
    """Queue, timeout, retry, breaker and shutdown settings; durations in seconds."""

    queue_size: int = setting("emitter_queue_size", 10_000, v.at_least(1, what="an integer"))
    overflow: Overflow = setting(  # noqa: RUF009 - setting() is attrs.field(), not a shared default
        "emitter_overflow", Overflow.DROP_NEWEST, v.member_of(Overflow)
    )
    call_timeout_s: float = setting("emitter_call_timeout", 5.0, v.seconds())
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    breaker_threshold: int = setting(
        "emitter_breaker_threshold", 5, v.at_least(0, what="an integer (0 disables the breaker)")
    )
    breaker_cooldown_s: float = setting("emitter_breaker_cooldown", 30.0, v.seconds())
    shutdown_timeout_s: float = setting("emitter_shutdown_timeout", 5.0, v.seconds(zero_ok=True))
    #: Where undeliverable events are spilled: a directory, ``SPOOL_OFF``, or None (unset:
    #: the default spool the transport is given, see ``ThreadedTransportConfig``; in Airflow
    #: processes ``$AIRFLOW_HOME/openlineage-spool``, none outside Airflow).
    spool_dir: str | None = setting(
        "emitter_spool_dir",
        None,
        attrs.validators.optional(attrs.validators.instance_of(str)),
        parse=_parse_spool_dir,
    )
    spool_max_bytes: int = setting(
        "emitter_spool_max_bytes", 100 * 1024 * 1024, v.at_least(1, what="an integer number of bytes")
    )
    #: Byte budget per event (its JSON); over it, facets are shed (see ``_size``). 0: none.
    max_event_bytes: int = setting(
        "emitter_max_event_bytes", 0, v.at_least(0, what="an integer number of bytes (0: no budget)")
    )
    #: Delivery lanes: calls in flight at once. Events of one run always take the same lane,
    #: so a run's events stay in order; ``emitter_queue_size`` bounds all lanes together.
    lanes: int = setting("emitter_lanes", 8, v.between(1, MAX_LANES, what="an integer"))
    #: Events a lane hands a many-at-once sender (Kafka, the HTTP batch endpoint) per call;
    #: 0: the sender's own default (``_batching.events_per_call``: 100 per HTTP batch request,
    #: 1000 per Kafka call, where a larger call costs no more round trips).
    batch_max_events: int = setting(
        "emitter_batch_max_events", 0, v.between(0, 10_000, what="an integer (0: the transport's own)")
    )
    #: http backends: deliver many events per request through the spec's batch endpoint
    #: (``POST <endpoint>/batch``; see ``_http_batch``); off: one request per event.
    http_batch: bool = setting("emitter_http_batch", False, v.is_bool)
    #: The most bytes of event JSON one batch request carries (before any gzip); a batch
    #: that would be larger is split, and an event larger than this alone goes alone.
    http_batch_max_bytes: int = setting(
        "emitter_http_batch_max_bytes", 1024 * 1024, v.at_least(1, what="an integer number of bytes")
    )
    #: The batch endpoint's path (or URL), when it is not the event endpoint + ``/batch``.
    http_batch_endpoint: str | None = setting(
        "emitter_http_batch_endpoint",
        None,
        attrs.validators.optional(attrs.validators.instance_of(str)),
        parse=_parse_optional_text,
    )
