"""What is worth retrying, how long to wait, and when to stop calling a dead backend."""

from __future__ import annotations

import email.utils
import enum
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

import attrs
import tenacity

from openlineage_emitter import _validators as v
from openlineage_emitter._caller import BackendBusy, CallTimeout
from openlineage_emitter._keys import setting
from openlineage_emitter.errors import ConfigError

#: HTTP statuses that say "try again later" rather than "this event is wrong".
RETRYABLE_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 507, 509, 598, 599})

#: librdkafka error codes worth another attempt. ``KafkaError.retriable()`` is consulted
#: first, but librdkafka sets it only for errors of some APIs, never in a delivery report:
#: a message that timed out because the broker is down says retriable() == False. Local
#: (negative) codes: the message timed out or was purged unsent, broker connections are
#: down, name resolution failed, the local queue is full. Non-negative: the Kafka
#: protocol's retriable errors (leader moving, not enough in-sync replicas, ...) that
#: librdkafka already retried within ``message.timeout.ms``. Anything else (message too
#: large, authorization failed, invalid config...) no retry can fix.
KAFKA_RETRYABLE_CODES = frozenset(
    {
        -192,  # _MSG_TIMED_OUT
        -185,  # _TIMED_OUT
        -166,  # _TIMED_OUT_QUEUE
        -195,  # _TRANSPORT
        -187,  # _ALL_BROKERS_DOWN
        -193,  # _RESOLVE
        -184,  # _QUEUE_FULL
        -180,  # _WAIT_COORD
        -152,  # _PURGE_QUEUE
        -151,  # _PURGE_INFLIGHT
        -188,  # _UNKNOWN_TOPIC (Kafka retries it too: the topic may be being created)
        3,  # UNKNOWN_TOPIC_OR_PART
        5,  # LEADER_NOT_AVAILABLE
        6,  # NOT_LEADER_FOR_PARTITION (NOT_LEADER_OR_FOLLOWER)
        7,  # REQUEST_TIMED_OUT
        8,  # BROKER_NOT_AVAILABLE
        9,  # REPLICA_NOT_AVAILABLE
        13,  # NETWORK_EXCEPTION
        14,  # COORDINATOR_LOAD_IN_PROGRESS
        15,  # COORDINATOR_NOT_AVAILABLE
        16,  # NOT_COORDINATOR
        19,  # NOT_ENOUGH_REPLICAS
        20,  # NOT_ENOUGH_REPLICAS_AFTER_APPEND
        56,  # KAFKA_STORAGE_ERROR
        89,  # THROTTLING_QUOTA_EXCEEDED
    }
)


#: librdkafka's fatal error code (``KafkaError._FATAL``): the producer is unusable for good.
KAFKA_FATAL_CODE = -150


def kafka_error_is_fatal(error: Any) -> bool:
    """Whether a ``confluent_kafka.KafkaError`` leaves its producer unusable."""
    return bool(error.fatal() or error.code() == KAFKA_FATAL_CODE)


@attrs.frozen
class Verdict:
    """How a failed delivery attempt is treated."""

    retryable: bool
    reason: str
    retry_after_s: float | None = None
    #: The drop reason a non-retryable failure is counted under (stats.DROP_REASONS).
    dropped_as: str = "non_retryable"


def _max_not_below_initial(policy: RetryPolicy, attribute: attrs.Attribute[float], value: float) -> None:
    if value < policy.initial_backoff_s:
        raise ConfigError(
            v.key_of(attribute),
            value,
            f"a number of seconds >= emitter_retry_initial_backoff ({policy.initial_backoff_s:g})",
        )


@attrs.frozen
class RetryPolicy:
    """Tenacity retry settings for one event; all durations in seconds."""

    attempts: int = setting("emitter_retry_attempts", 5, v.at_least(1, what="an integer"))
    initial_backoff_s: float = setting("emitter_retry_initial_backoff", 0.5, v.seconds())
    max_backoff_s: float = setting("emitter_retry_max_backoff", 10.0, [v.seconds(), _max_not_below_initial])
    deadline_s: float = setting("emitter_retry_deadline", 30.0, v.seconds())
    retry_after_max_s: float = setting("emitter_retry_after_max", 30.0, v.seconds(zero_ok=True))

    def backoff(self) -> tenacity.wait.wait_base:
        """Exponential backoff with jitter, capped at ``max_backoff_s``."""
        return tenacity.wait_exponential_jitter(
            multiplier=self.initial_backoff_s,
            max=self.max_backoff_s,
            jitter=self.initial_backoff_s,
        )

    def wait_s(self, retry_state: tenacity.RetryCallState) -> float:
        """Seconds to sleep before the next attempt: ``Retry-After`` if the backend sent one."""
        exc = retry_state.outcome.exception() if retry_state.outcome else None
        verdict = classify(exc) if exc is not None else None
        backoff_s = float(self.backoff()(retry_state))
        if verdict is not None and verdict.retry_after_s is not None:
            # Wait as long as the backend asks (capped), but never less than the backoff.
            return max(backoff_s, min(verdict.retry_after_s, self.retry_after_max_s))
        return backoff_s

    def retrying(
        self,
        *,
        sleep: Callable[[float], object] = time.sleep,
        abort: threading.Event | None = None,
        before_sleep: Callable[[tenacity.RetryCallState], None] | None = None,
    ) -> tenacity.Retrying:
        """A tenacity ``Retrying`` for one event.

        ``abort`` (set by a closing emitter) stops retrying at the next decision;
        ``stop_before_delay`` makes the deadline hold *including* the next sleep.
        """
        stop = tenacity.stop_after_attempt(self.attempts) | tenacity.stop_before_delay(self.deadline_s)
        if abort is not None:
            stop = stop | tenacity.stop_when_event_set(abort)

        def pause(seconds: float) -> None:
            sleep(seconds)

        return tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: classify(e).retryable),
            stop=stop,
            wait=self.wait_s,
            sleep=pause,
            before_sleep=before_sleep,
            reraise=True,
        )


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 8:
        seen.append(cur)
        # `raise X from None` means "X is the whole story": do not look behind it.
        cur = cur.__cause__ or (None if cur.__suppress_context__ else cur.__context__)
    return seen


def _status_and_headers(exc: BaseException) -> tuple[int | None, Any]:
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    if isinstance(status, int):
        return status, getattr(response, "headers", None) or {}
    return None, {}


def classify(exc: BaseException) -> Verdict:
    """Retryable: connection errors, timeouts, HTTP 408/425/429 and transient 5xx (RETRYABLE_STATUSES),
    transient Kafka errors.

    A 3xx (a redirect the http transport refused to follow) is not retryable: ``redirect``.
    A 413 is not retryable either, and counted apart: ``too_large`` (so is Kafka's
    ``MSG_SIZE_TOO_LARGE``).

    Everything else drops. Kafka (confluent-kafka): a ``KafkaException`` whose error is
    fatal is not retried; one that says ``retriable()`` or has a code in
    ``KAFKA_RETRYABLE_CODES`` is; ``BufferError`` (librdkafka's queue is full) is.

    The cause chain is walked so that a wrapped network error (for example a token
    provider that re-raises a ``ConnectionError`` as ``RuntimeError``) still retries.
    """
    import requests

    for err in _chain(exc):
        kafka = _kafka_verdict(err)
        if kafka is not None:
            return kafka
        status, headers = _status_and_headers(err)
        if status is not None:
            if 300 <= status < 400:
                # Not followed (see _redirects): the event reached no backend, and the same
                # POST would be redirected again. Counted apart: it is a config problem.
                return Verdict(False, "redirect", dropped_as="redirect")
            if status == 413:
                # Content Too Large: no retry of the same bytes is accepted. The sized send
                # (``_sized``) retries once with facets shed before it comes to this.
                return Verdict(False, "http_413", dropped_as="too_large")
            if status in RETRYABLE_STATUSES:
                return Verdict(True, f"http_{status}", parse_retry_after(headers.get("Retry-After")))
            return Verdict(False, f"http_{status}")
        if isinstance(err, (CallTimeout, BackendBusy)):
            return Verdict(True, "call_timeout")
        if isinstance(err, requests.exceptions.RetryError):
            return Verdict(True, "http_retries_exhausted")
        if isinstance(err, requests.RequestException) and isinstance(
            err, (ValueError, requests.exceptions.InvalidJSONError)
        ):
            # InvalidURL, MissingSchema, InvalidHeader, InvalidJSONError...: requests makes
            # these OSErrors too, but no retry can fix a malformed request.
            return Verdict(False, "invalid_request")
        if isinstance(err, (requests.ConnectionError, requests.Timeout, ConnectionError)):
            return Verdict(True, "connection_error")
        if isinstance(err, (TimeoutError, OSError)):
            return Verdict(True, "timeout" if isinstance(err, TimeoutError) else "os_error")
    if isinstance(exc, (TypeError, ValueError, AttributeError, KeyError)):
        return Verdict(False, "serialization_error")
    return Verdict(False, type(exc).__name__)


def _kafka_verdict(err: BaseException) -> Verdict | None:
    """confluent-kafka errors; None for anything else.

    This module never imports confluent_kafka (an optional extra): if it has not been
    imported, no exception of its can exist.
    """
    kafka = sys.modules.get("confluent_kafka")
    if kafka is None:
        return None
    if isinstance(err, BufferError):
        # Producer.produce: librdkafka's local queue is full (queue.buffering.max.*).
        return Verdict(True, "kafka_queue_full")
    if not isinstance(err, kafka.KafkaException):
        return None
    error = err.args[0] if err.args else None
    if not isinstance(error, kafka.KafkaError):
        return Verdict(False, "kafka_error")
    name = str(error.name()).lstrip("_").lower()
    if kafka_error_is_fatal(error):
        return Verdict(False, f"kafka_fatal_{name}")
    if error.code() == kafka.KafkaError.MSG_SIZE_TOO_LARGE:
        # Kafka's 413 (from produce() over message.max.bytes, or the broker's refusal, e.g.
        # Event Hubs' 1 MB): the sized send retries once with facets shed, as for HTTP.
        return Verdict(False, f"kafka_{name}", dropped_as="too_large")
    if error.retriable() or error.code() in KAFKA_RETRYABLE_CODES:
        return Verdict(True, f"kafka_{name}")
    return Verdict(False, f"kafka_{name}")


def parse_retry_after(value: object) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date; never negative."""
    if value is None:
        return None
    text = str(value).strip()
    if not text:
        return None
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())
    except Exception:  # noqa: BLE001 - any header we cannot read means "no hint": back off
        # Not only ValueError: an oversized year or hour raises OverflowError from the
        # datetime constructor, and it must not turn a retryable 503 into a drop.
        return None


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """After ``threshold`` consecutive failed events, refuse calls for ``cooldown_s``; then probe once.

    ``threshold == 0`` disables the breaker. Time comes from ``time.monotonic``.
    """

    def __init__(self, threshold: int, cooldown_s: float) -> None:
        self._threshold = threshold
        self._cooldown_s = cooldown_s
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False
        self._lock = threading.Lock()

    @property
    def state(self) -> BreakerState:
        with self._lock:
            return self._state()

    def _state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._probing or time.monotonic() - self._opened_at >= self._cooldown_s:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def allow(self) -> bool:
        """May the next event be sent? In half-open state exactly one probe is allowed."""
        with self._lock:
            state = self._state()
            if state is BreakerState.CLOSED:
                return True
            if state is BreakerState.HALF_OPEN and not self._probing:
                self._probing = True
                return True
            return False

    def abandon_probe(self) -> None:
        """The probe allowed by ``allow`` was not sent after all: allow another one."""
        with self._lock:
            self._probing = False

    @property
    def probing(self) -> bool:
        with self._lock:
            return self._probing

    def record_success(self) -> BreakerState | None:
        """Returns the state left, if this changed it."""
        with self._lock:
            was_open = self._opened_at is not None
            self._failures = 0
            self._opened_at = None
            self._probing = False
            return BreakerState.CLOSED if was_open else None

    def record_failure(self) -> BreakerState | None:
        """Returns the new state, if this opened (or re-opened) the breaker."""
        with self._lock:
            self._failures += 1
            if self._probing or (self._threshold and self._failures >= self._threshold):
                self._probing = False
                self._opened_at = time.monotonic()
                return BreakerState.OPEN
            return None
