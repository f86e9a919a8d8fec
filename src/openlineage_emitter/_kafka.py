"""Kafka delivery that the emitter can account for: each event counts on its own delivery report.

openlineage-python's ``KafkaTransport.emit`` only queues a message in librdkafka and
reports failures to a logging callback; behind the emitter that would count undelivered
events as delivered. ``KafkaDelivery`` produces the same key and bytes and waits for each
message's own delivery report, bounded below the call timeout. ``KafkaSendMany`` (the
emitter's many-events-per-call sender) keeps every event of a call in flight at once;
``kafka_producer_config`` makes the producer keep them in order per partition.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from openlineage.client.serde import Serde
from openlineage.client.transport.kafka import KafkaTransport

from openlineage_emitter._ratelimit import RateLimitedLog
from openlineage_emitter._secrets import masked_logger
from openlineage_emitter._size import to_json
from openlineage_emitter._sized import SizedSend
from openlineage_emitter.retry import classify, kafka_error_is_fatal
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


#: librdkafka's names of one property: an alias the operator set counts as set.
_IDEMPOTENCE = ("enable.idempotence",)
_ACKS = ("acks", "request.required.acks")
_IN_FLIGHT = ("max.in.flight.requests.per.connection", "max.in.flight")
#: librdkafka's limit on requests in flight per broker with idempotence.
_IDEMPOTENT_MAX_IN_FLIGHT = 5


def _given(producer: Mapping[str, Any], names: tuple[str, ...]) -> Any:
    return next((producer[name] for name in names if name in producer), None)


def _true(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "t"}


def _idempotence_fits(producer: Mapping[str, Any]) -> bool:
    """Whether idempotence can be switched on without contradicting what the operator set
    (librdkafka refuses it with ``acks`` other than all, or more than 5 requests in flight)."""
    acks = _given(producer, _ACKS)
    in_flight = _given(producer, _IN_FLIGHT)
    if acks is not None and str(acks).strip().lower() not in {"all", "-1"}:
        return False
    try:
        return in_flight is None or int(in_flight) <= _IDEMPOTENT_MAX_IN_FLIGHT
    except (TypeError, ValueError):
        return False  # librdkafka will name the bad value itself


def kafka_producer_config(given: Mapping[str, Any], settings: EmitterSettings) -> dict[str, Any]:
    """librdkafka producer defaults for delivery with many messages in flight; the operator's values win.

    Order per partition with many messages in flight: librdkafka retries a failed produce
    request within ``message.timeout.ms``, and with several requests in flight a retried
    one would land behind a later one: a run's COMPLETE before its START. The idempotent
    producer (``enable.idempotence``, which implies ``acks=all`` and at most 5 requests in
    flight) keeps the order across those retries and writes each message once. Where the
    operator's settings rule idempotence out (``acks`` 0/1, more than 5 in flight) or
    switch it off, one request in flight per broker keeps the order instead (unless they
    set that too: a warning then says order may break on retries).
    """
    producer = dict(given)
    # librdkafka gives up on a message when the attempt that produced it stops waiting:
    # a message does not outlive its attempt, so the emitter's policy is the one retry
    # layer across attempts (librdkafka still retries within one).
    if not {"message.timeout.ms", "delivery.timeout.ms"} & producer.keys():
        producer["message.timeout.ms"] = max(1, int(kafka_attempt_wait_s(settings) * 1000))
    if _given(producer, _IDEMPOTENCE) is None and _idempotence_fits(producer):
        producer["enable.idempotence"] = True
    # A transactional.id implies idempotence.
    if not _true(_given(producer, _IDEMPOTENCE)) and "transactional.id" not in producer:
        in_flight = _given(producer, _IN_FLIGHT)
        if in_flight is None:
            producer["max.in.flight.requests.per.connection"] = 1
        elif str(in_flight).strip() != "1":
            log.warning(
                "kafka producer: enable.idempotence is off and max.in.flight.requests.per.connection "
                "is %s: a produce request that librdkafka retries can land behind a later one, so a "
                "run's events may reach the topic out of order. Enable idempotence, or set it to 1",
                in_flight,
            )
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


#: How long one ``flush`` serving delivery reports may block: from the first to the last,
#: growing with the wait. ``flush`` returns early only once every message in the producer
#: is settled; with other calls (lanes) producing into the same producer meanwhile it
#: rarely is, so a call may wait up to one slice longer than its own reports need: short
#: while reports come fast, longer (fewer scans of the pending messages) when the broker
#: is slow to answer.
_SERVE_SLICES_S = (0.005, 0.05)


class KafkaDeliveryTimeout(TimeoutError):
    """No delivery report within the attempt's wait; retryable like any timeout."""


class KafkaNotProduced(TimeoutError):
    """Not produced in this call, so not delivered; retryable like any timeout.

    Either the call's deadline passed first (librdkafka's queue stayed full), or an earlier
    event with the same message key failed in this call: producing this one would put it
    ahead of that one's retry in their partition.
    """


def _fatal(error: Any) -> bool:
    """Whether a ``KafkaException`` or ``KafkaError`` ended its producer (see ``retry``).

    The one place this module decides it: a fatal error replaces the producer.
    """
    if isinstance(error, BaseException):
        error = error.args[0] if error.args else None
    return callable(getattr(error, "fatal", None)) and kafka_error_is_fatal(error)


class _Report:
    """A message's delivery report, once librdkafka served it: the ``on_delivery`` callback.

    One per produce, so that a report for an earlier produce of the same event (a
    discarded producer's) cannot settle a later one. Reports are served on the thread
    that calls ``poll``/``flush``.
    """

    __slots__ = ("error", "reported")

    def __init__(self) -> None:
        self.reported = False
        self.error: Any = None

    def __call__(self, error: Any, _message: Any) -> None:
        self.error = error
        self.reported = True


class _Message:
    """One event's Kafka message and how its delivery went.

    ``failed`` is set when the message was not produced, or its outcome was decided
    without a report (none by the deadline).
    """

    __slots__ = ("failed", "key", "report", "value")

    def __init__(self, key: str | None, value: bytes) -> None:
        self.key = key
        self.value = value
        self.report = _Report()
        self.failed: BaseException | None = None

    @property
    def reported(self) -> bool:
        return self.report.reported

    @property
    def error(self) -> Any:
        return self.report.error

    @property
    def delivered(self) -> bool:
        return self.report.reported and self.report.error is None and self.failed is None


class KafkaDelivery:
    """Kafka delivery the emitter can account for: an event counts only on its own delivery report.

    Why not ``KafkaTransport.emit``: it only enqueues in librdkafka, then (``flush``, the
    default) waits for the queue to drain without a bound of its own; a failed delivery
    reaches only its callback, which logs it. The emitter would count an undelivered event
    as delivered, and neither retry nor spool it. Here an event is delivered only on the
    broker's acknowledgement of its own message; a failed delivery is the ``KafkaException``
    the retry policy classifies (``retry.classify``). With no report by the deadline, a
    message that was never sent is purged (so a retry is not also delivered by this
    attempt later) and the outcome is ``KafkaDeliveryTimeout``.

    ``deliver`` produces every message of a call at once (many in flight; librdkafka
    batches them), then waits for all their reports; ``__call__`` is the one-event form
    (for the synchronous senders: the fork strategy's child, ``check --send``). Per-run
    order in the partition comes from the message key (one partition per job) and the
    producer's ordering guarantee (``kafka_producer_config``: idempotence, or one request
    in flight). Message key and value are the ones openlineage-python produces (see
    ``kafka_message_key``).
    """

    def __init__(self, transport: KafkaTransport, wait_s: float) -> None:
        import confluent_kafka  # the kafka extra; KafkaTransport has already needed it

        self._ck = confluent_kafka
        self.transport = transport
        self.wait_s = wait_s
        self._shared = _shared_state(transport)

    def producer(self) -> Any:
        """The transport's producer; a new one after close, a fatal error or a fork."""
        with self._shared.lock:
            if self.transport.producer is None:
                self.transport.producer = self._ck.Producer(dict(self.transport.kafka_config.config))
            return self.transport.producer

    def message(self, body: dict[str, Any]) -> _Message:
        """The message for an event's JSON dict: byte for byte what KafkaTransport sends."""
        key = self.transport.message_key or kafka_message_key(body)
        return _Message(key, to_json(body).encode("utf-8"))

    def __call__(self, event: Any) -> None:
        """Deliver one event; raises what the retry policy classifies if it was not delivered."""
        self.send_by(event, time.monotonic() + self.wait_s)

    def send_by(self, event: Any, deadline: float) -> None:
        """:meth:`__call__`, waiting for the report until ``deadline`` (monotonic)."""
        message = self.message(Serde.to_dict(event))
        self.deliver([message], deadline)
        if not message.delivered:
            raise outcome_of(self._ck, message)

    def deliver(self, messages: Sequence[_Message], deadline: float) -> None:
        """Produce ``messages`` in order, all in flight at once, and wait for their reports
        until ``deadline``; each message then says how it went (see ``outcome_of``).

        A fatal error (e.g. an idempotent producer's sequence numbers out of sync with the
        broker) ends that producer, not the events: the messages it left unsettled are
        produced once more on a new producer, within the same deadline. A second fatal
        error is not retried.
        """
        fatal = self._round(messages, deadline, set())
        if fatal is None:
            return
        again = [m for m in messages if _settled_by_fatal(m, fatal)]
        if not again or time.monotonic() >= deadline:
            return
        # Events of a key that failed for good in the first round stay behind their retry.
        redone = {id(m) for m in again}
        held = {
            m.key for m in messages if id(m) not in redone and not m.delivered and _retryable(self._ck, m)
        }
        for m in again:
            m.report, m.failed = _Report(), None
        self._round(again, deadline, held)

    def _round(self, messages: Sequence[_Message], deadline: float, held: set[str | None]) -> Any:
        """One producer's try at ``messages``; returns the fatal error that ended it, if one did."""
        producer = self.producer()
        produced: list[_Message] = []
        fatal = None
        for i, m in enumerate(messages):
            if m.key in held:
                m.failed = KafkaNotProduced(
                    "not produced: an earlier event with the same message key was not delivered "
                    "in this call, and this one must not overtake it"
                )
                continue
            try:
                m.failed = self._produce(producer, m, deadline)
            except self._ck.KafkaException as exc:  # fatal: the producer takes no more
                fatal = exc.args[0]
                for n in messages[i:]:
                    n.failed = n.failed or KafkaNotProduced(f"the producer failed fatally: {fatal}")
                break
            if m.failed is None:
                produced.append(m)
            elif isinstance(m.failed, BufferError):  # the deadline passed: nothing more
                for n in messages[i + 1 :]:
                    n.failed = KafkaNotProduced(
                        f"not produced within {self.wait_s:g}s: librdkafka's queue stayed full"
                    )
                break
            elif _retryable(self._ck, m):
                held.add(m.key)
        fatal = self._wait(producer, produced, deadline, fatal)
        if fatal is not None:
            self._discard(producer, fatal)
        return fatal

    def _produce(self, producer: Any, m: _Message, deadline: float) -> BaseException | None:
        """Hand one message to librdkafka; what prevented it, if anything (a fatal error raises)."""
        while True:
            report = _Report()
            try:
                producer.produce(self.transport.topic, key=m.key, value=m.value, on_delivery=report)
                m.report = report
                return None
            except BufferError as exc:
                # librdkafka's queue is full (queue.buffering.max.*): serving delivery
                # reports frees it; try again until the deadline.
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return exc
                producer.poll(min(remaining, 0.01))
            except self._ck.KafkaException as exc:  # refused locally: too large, unknown topic, ...
                if _fatal(exc):
                    raise
                return exc

    def _wait(self, producer: Any, produced: list[_Message], deadline: float, fatal: Any) -> Any:
        """Serve delivery reports until each of ``produced`` has its own or ``deadline`` passes;
        returns the fatal error that ended the producer (``fatal``, or one met meanwhile)."""
        pending = produced
        if fatal is not None:
            self._stop(producer)
        started = time.monotonic()
        first_s, last_s = _SERVE_SLICES_S
        while pending:
            now = time.monotonic()
            remaining = deadline - now
            if remaining <= 0:
                break
            slice_s = min(remaining, last_s, max(first_s, (now - started) / 10))
            try:
                # flush, not poll: it sends at once, whatever linger.ms, and serves delivery
                # reports (ours, another call's, which set only their own) and librdkafka's
                # queued log lines. It raises a fatal error before serving the reports that
                # came with it; after one, poll only serves the rest.
                serve = producer.flush if fatal is None else producer.poll
                serve(slice_s)
            except self._ck.KafkaException as exc:
                if not _fatal(exc):
                    raise
                if fatal is not None:
                    break  # raised again: serve no more, the rest is produced anew
                fatal = exc.args[0]
                self._stop(producer)
            still = []
            for m in pending:
                if not m.reported:
                    still.append(m)
                elif fatal is None and m.error is not None and _fatal(m.error):
                    fatal = m.error
                    self._stop(producer)
            pending = still
        if pending:
            # Never sent by now: purge them, so that they cannot be delivered after their
            # retry (in flight ones cannot be recalled: at-least-once).
            if fatal is None:  # else already purged, and poll may raise it again
                producer.purge(in_queue=True, in_flight=False, blocking=True)
                producer.poll(0)
            for m in pending:
                if not m.reported:
                    m.failed = KafkaDeliveryTimeout(
                        f"no delivery report within {self.wait_s:g}s; the message is in flight and may "
                        "still be delivered (then twice: at-least-once)"
                    )
                elif m.error is not None:
                    m.failed = KafkaDeliveryTimeout(
                        f"no delivery report within {self.wait_s:g}s; "
                        "the message was never sent and is purged"
                    )
        return fatal

    def _stop(self, producer: Any) -> None:
        """After a fatal error: purge what the producer has not sent yet (it would fail anyway);
        what is in flight still gets its report (the broker may have written it)."""
        producer.purge(in_queue=True, in_flight=False, blocking=False)

    def _discard(self, producer: Any, error: Any) -> None:
        with self._shared.lock:
            if self.transport.producer is producer:
                self.transport.producer = None
        log.warning("kafka producer failed fatally (%s); using a new producer", error)
        try:  # what it still holds is settled (failed) now, not by its destructor
            producer.purge(in_queue=True, in_flight=True, blocking=False)
            producer.poll(0)
        except self._ck.KafkaException:
            pass  # it is being replaced for that very reason

    def close(self, timeout_s: float) -> bool:
        """Flush what librdkafka still holds within ``timeout_s``, purge the rest; True if none was left."""
        with self._shared.lock:
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
        """In a forked child: a new producer on first use, for every sender of this transport."""
        self._shared.reset_after_fork(self.transport)


class KafkaSendMany:
    """A ``SendMany`` (``_batching``) through a Kafka transport: every event of a call in flight at once.

    Each event gets the per-event byte budget (``SizedSend.fit``), then its message (the
    bytes and key KafkaTransport would give it, also for an event replayed from the spool
    as a dict); all are produced in order, then the call waits for every delivery report
    until its deadline (``kafka_attempt_wait_s``, under the call timeout). One outcome per
    event, same order: ``None`` (or ``Truncated`` if sent shrunk) once its own report
    says delivered, else the exception that says why not.
    """

    #: Events per call when ``emitter_batch_max_events`` is 0: a call's messages cost one
    #: flush and a few produce requests whatever their number, so 1000 per call delivers
    #: about twice what 100 does (docs/scaling.md, measured).
    default_max_events = 1000

    def __init__(self, delivery: KafkaDelivery, sized: SizedSend) -> None:
        self.delivery = delivery
        self._sized = sized

    def __call__(self, events: Sequence[Any]) -> list[object]:
        deadline = time.monotonic() + self.delivery.wait_s
        outcomes: list[object] = [None] * len(events)
        messages: list[tuple[int, _Message]] = []
        for i, event in enumerate(events):
            try:
                to_send, outcomes[i] = self._sized.fit(event)
                messages.append((i, self.delivery.message(Serde.to_dict(to_send))))
            except Exception as exc:  # noqa: BLE001 - this event's outcome (not serialisable)
                outcomes[i] = exc
        self.delivery.deliver([m for _, m in messages], deadline)
        for i, m in messages:
            if not m.delivered:
                outcome = outcome_of(self.delivery._ck, m)
                too_large = classify(outcome).dropped_as == "too_large"
                outcomes[i] = self._alone(events[i], deadline) if too_large else outcome
        return outcomes

    def _alone(self, event: Any, deadline: float) -> object:
        """An event refused as too large, sent once more on its own through the sized send,
        within the call's deadline: a broker refuses a whole produce request, so its
        batch-mates may be why; if it is the event itself, the sized send sheds its
        facets and tries again, as on an HTTP 413."""
        if time.monotonic() >= deadline:
            return KafkaNotProduced("not sent again on its own within the call's deadline")
        try:
            return self._sized.through(functools.partial(self.delivery.send_by, deadline=deadline), event)
        except Exception as exc:  # noqa: BLE001 - this event's outcome
            return exc


def outcome_of(ck: Any, m: _Message) -> BaseException:
    """Why ``m`` was not delivered, as the exception the retry policy classifies."""
    if m.failed is not None:
        return m.failed
    if m.reported:
        return ck.KafkaException(m.error)  # type: ignore[no-any-return]
    return KafkaDeliveryTimeout("no delivery report")  # not reached: _wait settles every message


def _retryable(ck: Any, m: _Message) -> bool:
    return classify(outcome_of(ck, m)).retryable


def _settled_by_fatal(m: _Message, fatal: Any) -> bool:
    """Whether the fatal error ``fatal``, not the event, decided that ``m`` was not delivered:
    not produced or not reported because of it, purged after it, or failed with its code."""
    if m.delivered:
        return False
    if m.failed is not None:
        return isinstance(m.failed, (KafkaNotProduced, KafkaDeliveryTimeout))
    return not m.reported or _fatal(m.error) or m.error.code() in {fatal.code(), *_PURGED}


#: librdkafka's error codes of a purged message (``_PURGE_QUEUE``, ``_PURGE_INFLIGHT``).
_PURGED = frozenset({-152, -151})


def kafka_send_many(transport: KafkaTransport, settings: EmitterSettings) -> KafkaSendMany:
    """The ``SendMany`` for a Kafka transport; it shares the transport's producer with any
    other sender built on it (``ThreadedTransport``'s one-event delivery, its close)."""
    delivery = KafkaDelivery(transport, kafka_attempt_wait_s(settings))
    return KafkaSendMany(
        delivery,
        # Its budget, and its shrunk retry of an event refused as too large (``_alone``).
        SizedSend(delivery, settings.max_event_bytes, name=f"openlineage-emitter[{transport.kind}]"),
    )


class _Shared:
    """What every sender of one KafkaTransport shares besides its ``producer``: the lock
    that guards replacing it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def reset_after_fork(self, transport: KafkaTransport) -> None:
        """A new producer on first use. The parent's is kept, unused: its librdkafka threads
        did not survive the fork, and destroying it would wait for them forever."""
        self.lock = threading.Lock()
        producer, transport.producer = transport.producer, None
        if producer is not None:
            _FORKED_AWAY.append(producer)


_SHARED: weakref.WeakKeyDictionary[KafkaTransport, _Shared] = weakref.WeakKeyDictionary()


def _shared_state(transport: KafkaTransport) -> _Shared:
    # dict.setdefault is atomic: two senders built at once on one transport share one.
    return _SHARED.setdefault(transport, _Shared())
