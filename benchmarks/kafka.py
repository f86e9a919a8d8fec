"""Section 4: Kafka vs HTTP: events/s delivered, and what ``emit`` costs the caller meanwhile.

Kafka runs against librdkafka's mock cluster (``test.mock.num.brokers``): a real Kafka
protocol broker on 127.0.0.1, hosted by one client handle in this process (its native
threads do not take the GIL). Measured producers connect to it over TCP like to any
broker. HTTP goes to the loopback collector (``--collector``). Every row emits its events
back to back, timing each ``emit`` alone; the wall clock runs from the first emit until
the backend holds them all. What arrived is counted at the backend: the topic's
watermarks, the collector's count. Side by side, on the same broker: *before*, the
emitter delivering one event per call and waiting for its report (what ThreadedTransport
did until many messages in flight), and *after*, ThreadedTransport as it is. Every Kafka
row's topic is read back to check each run's order (START before COMPLETE, one partition).
Skipped, with a note, if confluent-kafka is absent.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import json
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

import attrs
from openlineage.client.event_v2 import Job, Run, RunEvent, RunState
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport
from openlineage.client.uuid import generate_new_uuid

from benchmarks._backend import backend
from benchmarks._common import PRODUCER, Timing, close_bounded, make_events, time_calls, wait_until
from benchmarks._options import Options
from benchmarks._table import Column, Row, Table, fmt_ratio
from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._kafka import KafkaDelivery, kafka_attempt_wait_s
from openlineage_emitter.collector import refusing_url
from openlineage_emitter.emitter import ThreadEmitter
from openlineage_emitter.settings import max_threads
from openlineage_emitter.stats import EmitterStats
from openlineage_emitter.transport import inner_config

WARMUP = 20
#: Broker latency of the second mock cluster: a broker in the same region, acks=all.
RTT_MS = 2
#: message.timeout.ms of the inline KafkaTransport row against a dead broker.
INLINE_DOWN_TIMEOUT_MS = 1000
#: Jobs the measured runs are spread over (message keys: one partition per job).
JOBS = 50
BEFORE = "before: emitter, 1 event per call"
#: emitter_batch_max_events of the extra after rows: smaller calls than Kafka's default of
#: 1000 (see notes), to show what the call size buys.
PER_CALL = 100
AFTER = "after: ThreadedTransport -> kafka"


def _columns() -> list[Column]:
    return [
        Column("variant", "variant", align="<"),
        Column("backend", "backend", align="<"),
        Column("n", "n"),
        Column("delivered", "delivered"),
        Column("wall_s", "wall s"),
        Column("events_per_s", "events/s"),
        Column("vs_before", "vs before", fmt=fmt_ratio),
        Column("order_kept", "run order"),
        Column("median_us", "emit median us"),
        Column("p99_us", "emit p99 us"),
        Column("max_us", "emit max us"),
    ]


class MockKafka:
    """A mock Kafka cluster hosted by one client handle; topics counted via watermarks.

    The mock cluster creates a topic on first use (4 partitions in librdkafka 2.x).
    """

    def __init__(self, rtt_ms: int = 0) -> None:
        import confluent_kafka

        self._ck = confluent_kafka
        self.where = f"mock broker, {rtt_ms} ms RTT" if rtt_ms else "mock broker"
        # test.mock.broker.rtt delays every response: a broker across a network.
        self._host = confluent_kafka.Producer(
            {"test.mock.num.brokers": 1, "test.mock.broker.rtt": rtt_ms, "log_level": 0}
        )
        self.partitions = 0
        brokers = self._host.list_topics(timeout=10).brokers.values()
        self.bootstrap_servers = ",".join(f"{b.host}:{b.port}" for b in brokers)
        self._consumer = confluent_kafka.Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": "benchmarks"}
        )

    def topic(self, label: str) -> str:
        return f"bench-{label}-{uuid.uuid4().hex[:6]}"

    def messages(self, topic: str) -> int:
        partitions = self._consumer.list_topics(topic, timeout=10).topics[topic].partitions
        self.partitions = len(partitions)
        total = 0
        for p in partitions:
            low, high = self._consumer.get_watermark_offsets(self._ck.TopicPartition(topic, p), timeout=10)
            total += high - low
        return total

    def order_kept(self, topic: str, expected: int) -> bool:
        """Whether the topic holds ``expected`` messages and each run's are in one partition,
        START before COMPLETE (a run's first START precedes its first COMPLETE)."""
        consumer = self._ck.Consumer(
            {"bootstrap.servers": self.bootstrap_servers, "group.id": f"order-{uuid.uuid4().hex[:6]}"}
        )
        try:
            partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
            consumer.assign(
                [self._ck.TopicPartition(topic, p, self._ck.OFFSET_BEGINNING) for p in partitions]
            )
            runs: dict[str, list[tuple[int, str]]] = {}
            got = 0
            deadline = time.monotonic() + 30
            while got < expected and time.monotonic() < deadline:
                for msg in consumer.consume(1000, 0.5):
                    value = msg.value()
                    if msg.error() is not None or value is None:
                        continue
                    got += 1
                    event = json.loads(value)
                    runs.setdefault(event["run"]["runId"], []).append(
                        (msg.partition() or 0, event["eventType"])
                    )
        finally:
            consumer.close()
        if got != expected:
            return False
        for seen in runs.values():  # each partition's messages come in offset order
            if len({p for p, _ in seen}) != 1:
                return False
            types = [t for _, t in seen]
            if "COMPLETE" in types and (
                "START" not in types or types.index("START") > types.index("COMPLETE")
            ):
                return False
        return True

    def close(self) -> None:
        self._consumer.close()
        del self._host  # the cluster goes with its host handle


def run_events(n: int, label: str = "job") -> list[RunEvent]:
    """``n`` events of ``n // 2`` runs over ``JOBS`` jobs: each run's START, then its COMPLETE."""
    now = datetime.now(timezone.utc).isoformat()
    events = []
    for i in range(n // 2):
        run, job = (
            Run(runId=str(generate_new_uuid())),
            Job(namespace="benchmarks", name=f"{label}.{i % JOBS}"),
        )
        for state in (RunState.START, RunState.COMPLETE):
            events.append(RunEvent(eventType=state, eventTime=now, run=run, job=job, producer=PRODUCER))
    return events


def _row(
    variant: str,
    where: str,
    durations: list[int],
    delivered: int,
    wall_s: float | None,
    *,
    order_kept: bool | None = None,
) -> Row:
    timing = Timing.of_ns(durations)
    return {
        "variant": variant,
        "backend": where,
        "n": timing.n,
        "delivered": delivered,
        "wall_s": wall_s,
        "events_per_s": delivered / wall_s if wall_s else None,
        "order_kept": order_kept,
        "median_us": timing.median_us,
        "p99_us": timing.p99_us,
        "max_us": timing.max_us,
    }


class _Emitting:
    """What a measured row drives: ``emit``, ``flush``, ``stats`` (a ThreadedTransport, or a
    bare emitter in front of one-event-per-call Kafka delivery)."""

    def __init__(
        self, emit: Callable[[Any], object], flush: Callable[[float], bool], stats: Callable[[], EmitterStats]
    ) -> None:
        self.emit, self.flush, self.stats = emit, flush, stats


def _threaded_burst(
    transport: _Emitting,
    events: Sequence[Any],
    opts: Options,
    *,
    delivered: Callable[[], int],
    label: str,
    notes: list[str],
) -> tuple[list[int], int, float]:
    """Warm up, then emits timed one by one and a flush: (durations, delivered, wall s)."""
    for event in make_events(WARMUP, "warmup"):
        transport.emit(event)
    transport.flush(10.0)
    base = delivered()
    wait_s = opts.pick(full=60, quick=20)
    started = time.monotonic()
    durations = time_calls(transport.emit, events, opts.deadline(wait_s))
    drained = transport.flush(wait_s)
    wall_s = time.monotonic() - started
    got = delivered() - base
    if not drained or got < len(durations):
        notes.append(f"{label}: {got} of {len(durations)} delivered within {wait_s}s")
    stats = transport.stats()
    if stats.retried or stats.dropped_total:
        notes.append(f"{label}: {stats.retried} retries, {stats.dropped_total} dropped")
    return durations, got, wall_s


def _ample_queue(n: int) -> int:
    """A queue that never overflows in a burst of ``n``: it may be split between lanes, and
    runs do not spread over them evenly."""
    return 4 * (n + WARMUP) + 64


def _kafka_inner(kafka: MockKafka, topic: str, producer: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "kafka",
        "topic": topic,
        "config": {"bootstrap.servers": kafka.bootstrap_servers, **producer},
    }


def _threaded_kafka(
    kafka: MockKafka,
    n: int,
    opts: Options,
    notes: list[str],
    *,
    label: str,
    producer: dict[str, Any],
    per_call: int | None = None,
) -> Row:
    """After: ThreadedTransport as it is: its lanes hand the Kafka sender up to
    ``emitter_batch_max_events`` (``per_call``) queued events per call, all in flight at once."""
    topic = kafka.topic("tt")
    settings = EmitterSettings(queue_size=_ample_queue(n), call_timeout_s=5.0)
    if per_call is not None:
        settings = attrs.evolve(settings, batch_max_events=per_call)
    transport = ThreadedTransport.wrap(_kafka_inner(kafka, topic, producer), settings)
    try:
        durations, got, wall_s = _threaded_burst(
            _Emitting(transport.emit, transport.flush, transport.stats),
            run_events(n),
            opts,
            delivered=lambda: kafka.messages(topic),
            label=label,
            notes=notes,
        )
    finally:
        close_bounded(label, lambda: transport.close(5.0), notes)
    return _row(label, kafka.where, durations, got, wall_s, order_kept=kafka.order_kept(topic, got + WARMUP))


def _per_event_kafka(kafka: MockKafka, n: int, opts: Options, notes: list[str]) -> Row:
    """Before: the emitter's worker delivers one event per call and waits for its report
    (``KafkaDelivery``): how ThreadedTransport delivered to Kafka until many in flight."""
    topic = kafka.topic("before")
    settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=5.0)
    # Built as ThreadedTransport builds its inner transport (same producer defaults).
    inner = get_default_factory().create(inner_config(_kafka_inner(kafka, topic, {}), settings))
    assert isinstance(inner, KafkaTransport)
    delivery = KafkaDelivery(inner, kafka_attempt_wait_s(settings))
    emitter = ThreadEmitter(delivery, settings, name="openlineage-emitter[kafka-before]")
    try:
        durations, got, wall_s = _threaded_burst(
            _Emitting(emitter.submit, emitter.flush, emitter.stats),
            run_events(n),
            opts,
            delivered=lambda: kafka.messages(topic),
            label=BEFORE,
            notes=notes,
        )
    finally:
        close_bounded(BEFORE, lambda: emitter.close(5.0), notes)
        close_bounded(BEFORE, lambda: delivery.close(5.0), notes)
    return _row(BEFORE, kafka.where, durations, got, wall_s, order_kept=kafka.order_kept(topic, got + WARMUP))


def _threaded_http(n: int, opts: Options, notes: list[str]) -> Row:
    label = "ThreadedTransport -> http"
    with backend(hang=False, where=opts.collector) as b:
        settings = EmitterSettings(queue_size=_ample_queue(n), call_timeout_s=5.0)
        transport = ThreadedTransport.wrap({"type": "http", "url": b.url}, settings)
        try:
            durations, got, wall_s = _threaded_burst(
                _Emitting(transport.emit, transport.flush, transport.stats),
                make_events(n),
                opts,
                delivered=b.delivered,
                label=label,
                notes=notes,
            )
        finally:
            close_bounded(label, lambda: transport.close(5.0), notes)
        return _row(label, f"collector, {b.where}", durations, got, wall_s)


def _inline_kafka(kafka: MockKafka, n: int, opts: Options, notes: list[str], flush: bool) -> Row:
    topic = kafka.topic("inline")
    inner = KafkaTransport(
        KafkaConfig(config={"bootstrap.servers": kafka.bootstrap_servers}, topic=topic, flush=flush)
    )
    label = f"KafkaTransport.emit inline, flush={flush}"
    try:
        for event in make_events(WARMUP, "warmup"):
            inner.emit(event)
        inner.wait_for_completion(10.0)
        base = kafka.messages(topic)
        events = run_events(n)
        started = time.monotonic()
        durations = time_calls(inner.emit, events, opts.deadline(opts.pick(full=60, quick=20)))
        inner.wait_for_completion(30.0)  # flush=False: the batches still in librdkafka
        wall_s = time.monotonic() - started
        got = kafka.messages(topic) - base
    finally:
        close_bounded(label, lambda: inner.close(5.0), notes)
    return _row(label, kafka.where, durations, got, wall_s, order_kept=kafka.order_kept(topic, got + base))


def _down(n: int, opts: Options, notes: list[str], kind: str) -> Row:
    """Caller cost while the backend refuses connections: nothing can be delivered."""
    url = refusing_url()
    inner: dict[str, Any]
    if kind == "kafka":
        port = url.rsplit(":", 1)[1]
        inner = {"type": "kafka", "topic": "down", "config": {"bootstrap.servers": f"127.0.0.1:{port}"}}
    else:
        inner = {"type": "http", "url": url}
    label = f"ThreadedTransport -> {kind}"
    settings = EmitterSettings(queue_size=_ample_queue(n), call_timeout_s=1.0, breaker_threshold=0)
    transport = ThreadedTransport.wrap(inner, settings)
    try:
        for event in make_events(WARMUP, "warmup"):
            transport.emit(event)
        wait_until(lambda: transport.stats().in_flight >= 1, 2.0)
        durations = time_calls(transport.emit, make_events(n), opts.deadline(20.0))
        stats = transport.stats()
    finally:
        close_bounded(f"{label} (down)", lambda: transport.close(0.2), notes)
    if stats.threads_alive > max_threads(settings.lanes) or stats.delivered:
        notes.append(f"{label} (down): {stats.threads_alive} threads, {stats.delivered} delivered")
    return _row(label, "refusing connections", durations, stats.delivered, None)


def _inline_down(n: int, opts: Options, notes: list[str]) -> Row:
    """openlineage-python's KafkaTransport on the caller's thread while no broker answers."""
    port = refusing_url().rsplit(":", 1)[1]
    config = {
        "bootstrap.servers": f"127.0.0.1:{port}",
        "message.timeout.ms": str(INLINE_DOWN_TIMEOUT_MS),
        "log_level": "0",  # else librdkafka writes every reconnect to stderr, between the tables
    }
    inner = KafkaTransport(KafkaConfig(config=config, topic="down"))
    label = "KafkaTransport.emit inline, flush=True"
    try:
        durations = time_calls(inner.emit, make_events(n), opts.deadline(n * 2.0 + 5))
    finally:
        close_bounded(label, lambda: inner.close(0), notes)
    return _row(label, "refusing connections", durations, 0, None)


@contextlib.contextmanager
def _mock_kafka(rtt_ms: int = 0) -> Iterator[MockKafka]:
    kafka = MockKafka(rtt_ms)
    try:
        yield kafka
    finally:
        kafka.close()


def _versus_before(rows: list[Row]) -> None:
    """Each Kafka row's events/s as a multiple of the *before* row on the same broker."""
    before = {r["backend"]: r["events_per_s"] for r in rows if r["variant"] == BEFORE}
    for row in rows:
        base, rate = before.get(row["backend"]), row["events_per_s"]
        if isinstance(base, float) and isinstance(rate, float) and base:
            row["vs_before"] = rate / base


def run(opts: Options) -> Table:
    n = opts.pick(full=10000, quick=2000)
    n_rtt = opts.pick(full=4000, quick=1000)
    n_per_event_rtt = opts.pick(full=600, quick=150)  # one round trip per event
    table = Table(
        name="kafka",
        title=(
            f"4. Kafka vs HTTP: events/s delivered and caller cost of emit ({n} events per row, "
            f"{n_rtt} at {RTT_MS} ms RTT, {n_per_event_rtt} for rows paying a round trip per event)"
        ),
        columns=_columns(),
    )
    try:
        import confluent_kafka
    except ImportError:
        table.notes = [
            "skipped: confluent-kafka is not installed (pip install 'openlineage-emitter[kafka]', "
            "or '.[dev]' which includes it)"
        ]
        return table
    notes: list[str] = []
    rows: list[Row] = [_threaded_http(opts.pick(full=3000, quick=500), opts, notes)]
    partitions = 0
    with _mock_kafka() as kafka:
        rows += [
            _per_event_kafka(kafka, n, opts, notes),
            _threaded_kafka(kafka, n, opts, notes, label=AFTER, producer={}),
            _threaded_kafka(
                kafka, n, opts, notes, label=f"{AFTER}, {PER_CALL} per call", producer={}, per_call=PER_CALL
            ),
            _threaded_kafka(
                kafka,
                n,
                opts,
                notes,
                label=f"{AFTER}, idempotence off",
                producer={"enable.idempotence": False},
            ),
            _inline_kafka(kafka, n, opts, notes, flush=True),
            _inline_kafka(kafka, n, opts, notes, flush=False),
        ]
        partitions = kafka.partitions
    with _mock_kafka(RTT_MS) as kafka:
        rows += [
            _per_event_kafka(kafka, n_per_event_rtt, opts, notes),
            _threaded_kafka(kafka, n_rtt, opts, notes, label=AFTER, producer={}),
            _threaded_kafka(
                kafka,
                n_rtt,
                opts,
                notes,
                label=f"{AFTER}, {PER_CALL} per call",
                producer={},
                per_call=PER_CALL,
            ),
            _inline_kafka(kafka, n_per_event_rtt, opts, notes, flush=True),
            _inline_kafka(kafka, n_rtt, opts, notes, flush=False),
        ]
    down_n = opts.pick(full=3000, quick=500)
    rows += [
        _down(down_n, opts, notes, "kafka"),
        _down(down_n, opts, notes, "http"),
        _inline_down(opts.pick(full=3, quick=2), opts, notes),
    ]
    _versus_before(rows)
    table.rows = rows
    table.notes = [
        f"confluent-kafka {importlib.metadata.version('confluent-kafka')}, "
        f"librdkafka {confluent_kafka.libversion()[0]}; "
        f"mock broker: librdkafka's mock cluster, 1 broker, {partitions} partitions per topic, on "
        f"127.0.0.1; {RTT_MS} ms RTT: test.mock.broker.rtt delays each of its responses",
        "wall s: first emit until the backend holds all n (ThreadedTransport: flush() returned; inline "
        "flush=False: until its final flush); events/s = delivered / wall s; vs before: events/s over the "
        "before row's on the same broker; emit us: each call timed alone (perf_counter_ns), while the "
        "worker delivers; events pre-built: a START and a COMPLETE per run, runs over "
        f"{JOBS} jobs (message keys)",
        "run order: the topic read back holds every event once (plus the warm-up), each run's events "
        "in one partition, START before COMPLETE",
        f"{BEFORE}: the emitter's worker produces one event, flushes and waits for its own delivery "
        "report before the next: one broker round trip per event (ThreadedTransport's Kafka path "
        "until many messages in flight)",
        f"{AFTER}: ThreadedTransport with its defaults (emitter_lanes 8, emitter_batch_max_events 0: "
        "Kafka's own 1000, idempotent producer): each lane hands the Kafka sender up to 1000 queued "
        "events per call, all in "
        f"flight at once, each counted on its own delivery report; {PER_CALL} per call: "
        f"emitter_batch_max_events {PER_CALL}; idempotence off: one produce request in flight per broker",
        "KafkaTransport.emit inline, flush=True: openlineage-python's default, on the caller's thread: "
        "the caller waits one round trip per event; flush=False: enqueue only, librdkafka batches "
        "(linger.ms 5): the throughput ceiling, but a failed delivery is only logged by a callback, "
        "never retried, spooled or counted; its wall s includes the final flush",
        "refusing connections: nothing listens on the port; the worker retries (call_timeout 1s, breaker "
        "off) while the caller emits; the inline KafkaTransport waits, on the caller, for each message to "
        f"time out (message.timeout.ms {INLINE_DOWN_TIMEOUT_MS} here; librdkafka's default is 300000), "
        "then returns as if delivered: the failure is only logged",
        *notes,
        f"collector: {opts.collector_desc}",
    ]
    return table
