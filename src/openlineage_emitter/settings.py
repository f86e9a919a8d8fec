"""The thread emitter's settings: one frozen, validated value object."""

from __future__ import annotations

import enum

import attrs

from openlineage_emitter import _validators as v
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


#: Calls to the inner transport that may still be running after being abandoned. A new
#: call thread starts only while fewer are alive, so with the worker: 3 threads at most.
MAX_ABANDONED_CALLS = 2


@attrs.frozen
class EmitterSettings:
    """Queue, timeout, retry, breaker and shutdown settings; durations in seconds."""

    queue_size: int = attrs.field(
        default=10_000,
        validator=v.at_least(1, what="an integer"),
        metadata={"key": "emitter_queue_size"},
    )
    overflow: Overflow = attrs.field(
        default=Overflow.DROP_NEWEST,
        validator=v.member_of(Overflow),
        metadata={"key": "emitter_overflow"},
    )
    call_timeout_s: float = attrs.field(
        default=5.0, validator=v.seconds(), metadata={"key": "emitter_call_timeout"}
    )
    retry: RetryPolicy = attrs.field(factory=RetryPolicy)
    breaker_threshold: int = attrs.field(
        default=5,
        validator=v.at_least(0, what="an integer (0 disables the breaker)"),
        metadata={"key": "emitter_breaker_threshold"},
    )
    breaker_cooldown_s: float = attrs.field(
        default=30.0, validator=v.seconds(), metadata={"key": "emitter_breaker_cooldown"}
    )
    shutdown_timeout_s: float = attrs.field(
        default=5.0, validator=v.seconds(zero_ok=True), metadata={"key": "emitter_shutdown_timeout"}
    )
    #: Where undeliverable events are spilled: a directory, ``SPOOL_OFF``, or None (unset:
    #: the process default, see ``transport.use_default_spool_dir``; none outside Airflow).
    spool_dir: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(str)),
        metadata={"key": "emitter_spool_dir", "parse": _parse_spool_dir},
    )
    spool_max_bytes: int = attrs.field(
        default=100 * 1024 * 1024,
        validator=v.at_least(1, what="an integer number of bytes"),
        metadata={"key": "emitter_spool_max_bytes"},
    )
    #: Byte budget per event (its JSON); over it, facets are shed (see ``_size``). 0: none.
    max_event_bytes: int = attrs.field(
        default=0,
        validator=v.at_least(0, what="an integer number of bytes (0: no budget)"),
        metadata={"key": "emitter_max_event_bytes"},
    )
    #: http backends: deliver many events per request through the spec's batch endpoint
    #: (``POST <endpoint>/batch``; see ``_http_batch``); off: one request per event.
    http_batch: bool = attrs.field(default=False, validator=v.is_bool, metadata={"key": "emitter_http_batch"})
    #: The most bytes of event JSON one batch request carries (before any gzip); a batch
    #: that would be larger is split, and an event larger than this alone goes alone.
    http_batch_max_bytes: int = attrs.field(
        default=1024 * 1024,
        validator=v.at_least(1, what="an integer number of bytes"),
        metadata={"key": "emitter_http_batch_max_bytes"},
    )
    #: The batch endpoint's path (or URL), when it is not the event endpoint + ``/batch``.
    http_batch_endpoint: str | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(str)),
        metadata={"key": "emitter_http_batch_endpoint", "parse": _parse_optional_text},
    )
