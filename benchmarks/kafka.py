"""Section 4: Kafka vs HTTP: events/s delivered, and what ``emit`` costs the caller meanwhile.

Kafka runs against librdkafka's mock cluster (``test.mock.num.brokers``): a real Kafka
protocol broker on 127.0.0.1, hosted by one client handle in this process (its native
threads do not take the GIL). Measured producers connect to it over TCP like to any
broker. HTTP goes to the loopback collector (``--collector``). Every row emits its events
back to back, timing each ``emit`` alone; the wall clock runs from the first emit until
the backend holds them all. What arrived is counted at the backend: the topic's
watermarks, the collector's count. Skipped, with a note, if confluent-kafka is absent.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport

from benchmarks._backend import backend
from benchmarks._common import Timing, close_bounded, make_events, time_calls, wait_until
from benchmarks._options import Options
from benchmarks._table import Column, Row, Table
from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter.collector import refusing_url

WARMUP = 20
#: Broker latency of the second mock cluster: a broker in the same region, acks=all.
RTT_MS = 2
#: message.timeout.ms of the inline KafkaTransport row against a dead broker.
INLINE_DOWN_TIMEOUT_MS = 1000


def _columns() -> list[Column]:
    return [
        Column("variant", "variant", align="<"),
        Column("backend", "backend", align="<"),
        Column("n", "n"),
        Column("delivered", "delivered"),
        Column("wall_s", "wall s"),
        Column("events_per_s", "events/s"),
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

    def close(self) -> None:
        self._consumer.close()
        del self._host  # the cluster goes with its host handle


def _row(variant: str, where: str, durations: list[int], delivered: int, wall_s: float | None) -> Row:
    timing = Timing.of_ns(durations)
    return {
        "variant": variant,
        "backend": where,
        "n": timing.n,
        "delivered": delivered,
        "wall_s": wall_s,
        "events_per_s": delivered / wall_s if wall_s else None,
        "median_us": timing.median_us,
        "p99_us": timing.p99_us,
        "max_us": timing.max_us,
    }


def _threaded_burst(
    transport: ThreadedTransport,
    n: int,
    opts: Options,
    *,
    delivered: Callable[[], int],
    label: str,
    notes: list[str],
) -> tuple[list[int], int, float]:
    """Warm up, then n emits timed one by one and a flush: (durations, delivered, wall s)."""
    for event in make_events(WARMUP, "warmup"):
        transport.emit(event)
    transport.flush(10.0)
    base = delivered()
    events = make_events(n)
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


def _threaded_kafka(
    kafka: MockKafka, n: int, opts: Options, notes: list[str], *, label: str, producer: dict[str, Any]
) -> Row:
    topic = kafka.topic("tt")
    settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=5.0)
    transport = ThreadedTransport.wrap(
        {
            "type": "kafka",
            "topic": topic,
            "config": {"bootstrap.servers": kafka.bootstrap_servers, **producer},
        },
        settings,
    )
    try:
        durations, got, wall_s = _threaded_burst(
            transport, n, opts, delivered=lambda: kafka.messages(topic), label=label, notes=notes
        )
    finally:
        close_bounded(label, lambda: transport.close(5.0), notes)
    return _row(label, kafka.where, durations, got, wall_s)


def _threaded_http(n: int, opts: Options, notes: list[str]) -> Row:
    label = "ThreadedTransport -> http"
    with backend(hang=False, where=opts.collector) as b:
        settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=5.0)
        transport = ThreadedTransport.wrap({"type": "http", "url": b.url}, settings)
        try:
            durations, got, wall_s = _threaded_burst(
                transport, n, opts, delivered=b.delivered, label=label, notes=notes
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
        events = make_events(n)
        started = time.monotonic()
        durations = time_calls(inner.emit, events, opts.deadline(opts.pick(full=60, quick=20)))
        inner.wait_for_completion(30.0)  # flush=False: the batches still in librdkafka
        wall_s = time.monotonic() - started
        got = kafka.messages(topic) - base
    finally:
        close_bounded(label, lambda: inner.close(5.0), notes)
    return _row(label, kafka.where, durations, got, wall_s)


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
    settings = EmitterSettings(queue_size=n + WARMUP + 16, call_timeout_s=1.0, breaker_threshold=0)
    transport = ThreadedTransport.wrap(inner, settings)
    try:
        for event in make_events(WARMUP, "warmup"):
            transport.emit(event)
        wait_until(lambda: transport.stats().in_flight >= 1, 2.0)
        durations = time_calls(transport.emit, make_events(n), opts.deadline(20.0))
        stats = transport.stats()
    finally:
        close_bounded(f"{label} (down)", lambda: transport.close(0.2), notes)
    if stats.threads_alive > 3 or stats.delivered:
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


def run(opts: Options) -> Table:
    n = opts.pick(full=3000, quick=500)
    n_rtt = opts.pick(full=600, quick=150)  # rows that pay a round trip per event
    table = Table(
        name="kafka",
        title=(
            f"4. Kafka vs HTTP: events/s delivered and caller cost of emit ({n} events per row, "
            f"{n_rtt} at {RTT_MS} ms RTT)"
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
    rows: list[Row] = [_threaded_http(n, opts, notes)]
    partitions = 0
    with _mock_kafka() as kafka:
        rows += [
            _threaded_kafka(kafka, n, opts, notes, label="ThreadedTransport -> kafka", producer={}),
            _threaded_kafka(
                kafka,
                n,
                opts,
                notes,
                label="ThreadedTransport -> kafka, idempotent",
                producer={"enable.idempotence": True, "acks": "all"},
            ),
            _threaded_kafka(
                kafka,
                n,
                opts,
                notes,
                label="ThreadedTransport -> kafka, linger.ms=50",
                producer={"linger.ms": 50},
            ),
            _inline_kafka(kafka, n, opts, notes, flush=True),
            _inline_kafka(kafka, n, opts, notes, flush=False),
        ]
        partitions = kafka.partitions
    with _mock_kafka(RTT_MS) as kafka:
        rows += [
            _threaded_kafka(kafka, n_rtt, opts, notes, label="ThreadedTransport -> kafka", producer={}),
            _inline_kafka(kafka, n_rtt, opts, notes, flush=True),
            _inline_kafka(kafka, n_rtt, opts, notes, flush=False),
        ]
    rows += [
        _down(n, opts, notes, "kafka"),
        _down(n, opts, notes, "http"),
        _inline_down(opts.pick(full=3, quick=2), opts, notes),
    ]
    table.rows = rows
    table.notes = [
        f"confluent-kafka {importlib.metadata.version('confluent-kafka')}, "
        f"librdkafka {confluent_kafka.libversion()[0]}; "
        f"mock broker: librdkafka's mock cluster, 1 broker, {partitions} partitions per topic, on "
        f"127.0.0.1; {RTT_MS} ms RTT: test.mock.broker.rtt delays each of its responses",
        "wall s: first emit until the backend holds all n (ThreadedTransport: flush() returned; inline "
        "flush=False: until its final flush); events/s = delivered / wall s; emit us: each call timed "
        "alone (perf_counter_ns), while the worker delivers; events pre-built",
        "ThreadedTransport -> kafka: the worker flushes each event and waits for its own delivery "
        "report (message.timeout.ms just under call_timeout); per-run order and accounting are exact, "
        "throughput is one broker round trip per event; idempotent: enable.idempotence, acks=all",
        "linger.ms=50: flush() sends at once whatever linger.ms says, so lingering costs nothing here "
        "(and batches nothing)",
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
