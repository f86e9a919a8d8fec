"""Kafka delivery that the emitter can account for: one message, one delivery report.

openlineage-python's ``KafkaTransport.emit`` only queues a message in librdkafka and
reports failures to a logging callback; behind the emitter that would count undelivered
events as delivered. ``KafkaDelivery`` produces the same key and bytes and waits for
that message's own delivery report, bounded below the call timeout.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from openlineage.client.serde import Serde
from openlineage.client.transport.kafka import KafkaTransport

from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter.retry import kafka_error_is_fatal
from openlineage_emitter.settings import EmitterSettings

log = masked_logger(__name__)


#: librdkafka's own log lines (broker connection failures, ...) go to this logger instead
#: of being written by C code straight to the process's stderr.
LIBRDKAFKA_LOG = masked_logger("openlineage_emitter.librdkafka")


class _LibrdkafkaLog:
    """confluent-kafka's ``logger``: librdkafka's warnings and errors as rate-limited warnings.

    A broker that is down makes librdkafka log every reconnect attempt; the emitter
    already counts and reports what is not delivered. One line per kind (librdkafka's
    facility, e.g. ``FAIL``) per 30 s, with the number suppressed; the rest as is.
    """

    def __init__(self) -> None:
        self._warn = RateLimitedLog(LIBRDKAFKA_LOG)

    def log(self, level: int, msg: str, *args: object) -> None:
        # confluent-kafka calls log(level, "%s [%s] %s", facility, client name, text).
        if level >= logging.WARNING:
            self._warn.warn(f"librdkafka:{args[0] if args else ''}", msg, *args)
        else:
            LIBRDKAFKA_LOG.log(level, msg, *args)


#: Producers of a forked parent: never used nor destroyed in the child (see reset_after_fork).
_FORKED_AWAY: list[Any] = []


def kafka_attempt_wait_s(settings: EmitterSettings) -> float:
    """How long one Kafka attempt waits for its delivery report.

    A little under the call timeout, so that the attempt ends by itself rather than being
    abandoned by the emitter (an abandoned call keeps its thread).
    """
    call_s = settings.call_timeout_s
    return max(call_s - 0.25, call_s * 0.8)


def kafka_producer_config(given: Mapping[str, Any], settings: EmitterSettings) -> dict[str, Any]:
    """librdkafka producer defaults for per-event delivery; any value the operator set wins."""
    producer = dict(given)
    # librdkafka gives up on a message when the attempt that produced it stops waiting:
    # a message does not outlive its attempt, so the emitter's policy is the one retry
    # layer across attempts (librdkafka still retries within one).
    if not {"message.timeout.ms", "delivery.timeout.ms"} & producer.keys():
        producer["message.timeout.ms"] = max(1, int(kafka_attempt_wait_s(settings) * 1000))
    producer.setdefault("logger", _LibrdkafkaLog())
    return producer


def kafka_message_key(event: Mapping[str, Any]) -> str | None:
    """The Kafka message key openlineage-python's KafkaTransport gives an event, from its JSON form.

    Run events: ``run:<namespace>/<name>`` of the root parent job if the run has one, else
    of the parent job, else of the event's own job. Every event of a run carries the same
    job (and parent) so they share a key, hence a partition, and consumers read them in
    the order they were produced; a parent's and its children's events share one too.
    Job events: ``job:<namespace>/<name>``; dataset events: ``dataset:<namespace>/<name>``.

    Computed from the JSON form so that an event replayed from the spool (a dict, for
    which openlineage-python gives no key) lands in the partition a live one would.
    """
    run, job = event.get("run"), event.get("job")
    if isinstance(run, Mapping) and isinstance(job, Mapping):
        facets = run.get("facets")
        parent = facets.get("parent") if isinstance(facets, Mapping) else None
        source = job
        if isinstance(parent, Mapping):
            root = parent.get("root")
            parent_job = (root if isinstance(root, Mapping) and root else parent).get("job")
            if isinstance(parent_job, Mapping) and parent_job.get("namespace") and parent_job.get("name"):
                source = parent_job
        return f"run:{source.get('namespace')}/{source.get('name')}"
    dataset = event.get("dataset")
    if isinstance(dataset, Mapping):
        return f"dataset:{dataset.get('namespace')}/{dataset.get('name')}"
    if isinstance(job, Mapping):
        return f"job:{job.get('namespace')}/{job.get('name')}"
    return None


class KafkaDeliveryTimeout(TimeoutError):
    """No delivery report within the attempt's wait; retryable like any timeout."""


class _DeliveryReport:
    __slots__ = ("done", "error")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.error: Any = None

    def __call__(self, error: Any, _message: Any) -> None:
        self.error = error
        self.done.set()


class KafkaDelivery:
    """``send(event)`` through a KafkaTransport: produce, then wait for *this* message's delivery report.

    Why not ``KafkaTransport.emit``: it only enqueues in librdkafka, then (``flush``, the
    default) waits for the queue to drain without a bound of its own; a failed delivery
    reaches only its callback, which logs it. The emitter would count an undelivered event
    as delivered, and neither retry nor spool it. Here an attempt succeeds only on the
    broker's acknowledgement; a failed delivery raises the ``KafkaException`` the retry
    policy classifies (``retry.classify``). With no report within ``wait_s``, a message
    that was never sent is purged (so a retry is not also delivered by this attempt
    later) and ``KafkaDeliveryTimeout`` is raised.

    The worker sends one event at a time, so a run's COMPLETE is produced only after its
    START was acknowledged: per-run order in the partition holds across retries, whatever
    ``max.in.flight`` or idempotence settings. Message key and value are the ones
    openlineage-python produces (see ``kafka_message_key``).
    """

    def __init__(self, transport: KafkaTransport, wait_s: float) -> None:
        import confluent_kafka  # the kafka extra; KafkaTransport has already needed it

        self._ck = confluent_kafka
        self.transport = transport
        self.wait_s = wait_s
        self._lock = threading.Lock()

    def producer(self) -> Any:
        """The transport's producer; a new one after close, a fatal error or a fork."""
        with self._lock:
            if self.transport.producer is None:
                self.transport.producer = self._ck.Producer(dict(self.transport.kafka_config.config))
            return self.transport.producer

    def __call__(self, event: Any) -> None:
        body = event if isinstance(event, dict) else Serde.to_dict(event)
        value = Serde.to_json(body).encode("utf-8")  # byte for byte what KafkaTransport sends
        key = self.transport.message_key or kafka_message_key(body)
        deadline = time.monotonic() + self.wait_s
        try:
            self._produce(key, value, deadline)
        except self._ck.KafkaException as exc:
            if not self._fatal(exc) or time.monotonic() >= deadline:
                raise
            # A fatal error (e.g. an idempotent producer's sequence numbers out of sync
            # with the broker) ends that producer, not the event: once more with a new
            # producer, within the same wait. A second fatal error is not retried.
            self._produce(key, value, deadline)

    def _produce(self, key: str | None, value: bytes, deadline: float) -> None:
        producer = self.producer()
        report = _DeliveryReport()
        try:
            producer.produce(self.transport.topic, key=key, value=value, on_delivery=report)
            while not report.done.is_set():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                # flush, not poll: it sends at once, whatever linger.ms, and serves delivery
                # reports (this one, or an abandoned attempt's, which sets only its own) and
                # librdkafka's queued log lines; it raises fatal errors. Short slices: it
                # returns early only once *every* queued message is settled.
                producer.flush(min(remaining, 0.05))
            if not report.done.is_set():
                producer.purge(in_queue=True, in_flight=False, blocking=True)
                producer.poll(0)
                if report.done.is_set() and report.error is None:
                    return  # acknowledged just in time
                state = (
                    "was never sent and is purged"
                    if report.done.is_set()
                    else "is in flight and may still be delivered (then twice: at-least-once)"
                )
                raise KafkaDeliveryTimeout(f"no delivery report within {self.wait_s:g}s; the message {state}")
            if report.error is not None:
                raise self._ck.KafkaException(report.error)
        except self._ck.KafkaException as exc:
            if self._fatal(exc):
                with self._lock:
                    if self.transport.producer is producer:
                        self.transport.producer = None
                log.warning("kafka producer failed fatally (%s); using a new producer", exc.args[0])
            raise

    def _fatal(self, exc: BaseException) -> bool:
        error = exc.args[0] if exc.args else None
        return isinstance(error, self._ck.KafkaError) and kafka_error_is_fatal(error)

    def close(self, timeout_s: float) -> bool:
        """Flush what librdkafka still holds within ``timeout_s``, purge the rest; True if none was left."""
        with self._lock:
            producer, self.transport.producer = self.transport.producer, None
        if producer is None:
            return True
        try:
            left = int(producer.flush(max(0.0, timeout_s)))
            if left:
                # Those events were already spooled or counted (``shutdown``) by the emitter.
                producer.purge(in_queue=True, in_flight=True, blocking=False)
                producer.poll(0)
        except self._ck.KafkaException as exc:  # a fatal error raised by flush/poll
            log.warning("kafka producer failed while closing: %s", exc.args[0] if exc.args else exc)
            return False
        return left == 0

    def reset_after_fork(self) -> None:
        """In a forked child: a new producer on first use. The parent's is kept, unused:
        its librdkafka threads did not survive the fork, and destroying it would wait for
        them forever."""
        self._lock = threading.Lock()
        producer, self.transport.producer = self.transport.producer, None
        if producer is not None:
            _FORKED_AWAY.append(producer)
