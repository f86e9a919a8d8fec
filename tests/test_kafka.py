"""ThreadedTransport with an inner ``kafka`` transport, against a real Kafka protocol broker.

The broker is librdkafka's mock cluster (``tests/kafka_helpers/mock_cluster.py``) on
127.0.0.1: producer and consumer talk the Kafka wire protocol to it over TCP. Its
controls (broker down/up, response delay, injected produce errors) stand in for outages.
Nothing sleeps and hopes: every wait is for a condition, with a deadline; what a test
checks is read back from the topic with a consumer, counted against the partitions'
watermarks.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NamedTuple, Protocol, cast

import attrs
import pytest

confluent_kafka = pytest.importorskip(
    "confluent_kafka",
    reason="confluent-kafka is not installed: the Kafka tests need the `kafka` extra (pip install .[kafka])",
)

from openlineage.client import OpenLineageClient  # noqa: E402
from openlineage.client.event_v2 import (  # noqa: E402
    DatasetEvent,
    Job,
    JobEvent,
    Run,
    RunEvent,
    RunState,
    StaticDataset,
)
from openlineage.client.facet_v2 import parent_run  # noqa: E402
from openlineage.client.serde import Serde  # noqa: E402
from openlineage.client.transport.kafka import KafkaConfig, KafkaTransport  # noqa: E402

from openlineage_emitter import BreakerState, EmitterSettings, RetryPolicy, ThreadedTransport  # noqa: E402
from openlineage_emitter._batching import SendMany, batch_sender_for, events_per_call  # noqa: E402
from openlineage_emitter._kafka import (  # noqa: E402
    KafkaDeliveryTimeout,
    KafkaNotProduced,
    KafkaSendMany,
    kafka_attempt_wait_s,
    kafka_message_key,
    kafka_producer_config,
)
from openlineage_emitter._size import TRUNCATION_FACET  # noqa: E402
from openlineage_emitter.retry import KAFKA_RETRYABLE_CODES, classify  # noqa: E402
from openlineage_emitter.settings import max_threads  # noqa: E402
from openlineage_emitter.spool import Spool  # noqa: E402
from openlineage_emitter.stats import Truncated  # noqa: E402
from tests.conftest import PRODUCER, emitter_threads, isolated_env, make_event, wait_until  # noqa: E402
from tests.kafka_helpers.mock_cluster import MockCluster, MockClusterUnavailable  # noqa: E402

pytestmark = pytest.mark.kafka

KafkaError = confluent_kafka.KafkaError
KafkaException = confluent_kafka.KafkaException

PARTITIONS = 4
#: Test producers reconnect quickly once the broker is back (librdkafka's default backs
#: off up to 10 s, which is realistic but slow for a test).
FAST_RECONNECT = {"reconnect.backoff.ms": 20, "reconnect.backoff.max.ms": 100}
FAST_RETRY = RetryPolicy(attempts=50, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=30)

# Kafka protocol error codes injected into the mock broker's Produce responses.
MSG_SIZE_TOO_LARGE = 10
INVALID_RECORD = 87  # a broker refusal that no retry cures (and no shrinking either)
NOT_ENOUGH_REPLICAS = 19
OUT_OF_ORDER_SEQUENCE_NUMBER = 45


class Record(NamedTuple):
    partition: int
    offset: int
    key: str | None
    event: dict[str, Any]


class MakeSendMany(Protocol):
    def __call__(
        self, settings: EmitterSettings | None = None, producer: Mapping[str, Any] | None = None
    ) -> tuple[ThreadedTransport, SendMany]: ...


class MakeTransport(Protocol):
    def __call__(
        self, settings: EmitterSettings | None = None, producer: Mapping[str, Any] | None = None
    ) -> ThreadedTransport: ...


@pytest.fixture
def cluster() -> Iterator[MockCluster]:
    """A one-broker mock Kafka cluster on 127.0.0.1; always destroyed.

    The confluent-kafka wheel bundles librdkafka: if it cannot be loaded, the install is
    broken and the Kafka tests fail (a skip would pass CI with the Kafka path untested).
    """
    try:
        mock = MockCluster()
    except MockClusterUnavailable as exc:
        pytest.fail(f"librdkafka's mock cluster is unavailable: {exc}")
    try:
        yield mock
    finally:
        mock.stop()


@pytest.fixture
def topic(cluster: MockCluster) -> str:
    name = f"lineage-{uuid.uuid4().hex[:8]}"
    cluster.create_topic(name, PARTITIONS)
    return name


def kafka_inner(
    cluster: MockCluster, topic: str, producer: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "type": "kafka",
        "topic": topic,
        "config": {"bootstrap.servers": cluster.bootstrap_servers, **FAST_RECONNECT, **(producer or {})},
    }


@pytest.fixture
def make_transport(cluster: MockCluster, topic: str) -> Iterator[MakeTransport]:
    """ThreadedTransport(kafka) factory; every transport made is closed before the cluster stops."""
    made: list[ThreadedTransport] = []

    def make(
        settings: EmitterSettings | None = None, producer: Mapping[str, Any] | None = None
    ) -> ThreadedTransport:
        transport = ThreadedTransport.wrap(
            kafka_inner(cluster, topic, producer), settings or EmitterSettings(retry=FAST_RETRY)
        )
        made.append(transport)
        return transport

    yield make
    cluster.reset()  # a transport whose broker is down would spend its close budget waiting
    for transport in made:
        transport.close(1.0)


@pytest.fixture
def make_send_many(make_transport: MakeTransport) -> MakeSendMany:
    """(ThreadedTransport(kafka), the SendMany for its inner transport): they share one
    producer, as they do when the emitter uses the SendMany; closed by ``make_transport``."""

    def make(
        settings: EmitterSettings | None = None, producer: Mapping[str, Any] | None = None
    ) -> tuple[ThreadedTransport, SendMany]:
        transport = make_transport(settings, producer)
        send_many = batch_sender_for(transport.inner, transport.threaded_config.settings)
        assert send_many is not None
        # Connected, producer id and metadata known (a first call may need longer than a short wait).
        assert wait_until(lambda: send_many([make_event(job="warm-up")]) == [None], timeout_s=10)
        return transport, send_many

    return make


def child_exit_code(pid: int, timeout_s: float) -> int:
    """Reap the forked child ``pid``: its exit code, or fail the test (killing it) past ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child did not finish within {timeout_s:g} s")


def run_records(records: Sequence[Record]) -> list[Record]:
    """``records`` without ``make_send_many``'s warm-up events."""
    return [r for r in records if r.event["job"]["name"] != "warm-up"]


def run_ids(records: Sequence[Record]) -> list[str]:
    return [r.event["run"]["runId"] for r in run_records(records)]


def consume(cluster: MockCluster, topic: str, timeout_s: float = 10.0) -> list[Record]:
    """Every message in the topic, in (partition, offset) order.

    How many there are comes from the partitions' watermarks, so a duplicate shows up as
    an extra record and the read stops as soon as all of them are in.
    """
    consumer = confluent_kafka.Consumer(
        {
            "bootstrap.servers": cluster.bootstrap_servers,
            "group.id": f"tests-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        parts = [confluent_kafka.TopicPartition(topic, p) for p in range(PARTITIONS)]
        total = 0
        for part in parts:
            low, high = consumer.get_watermark_offsets(part, timeout=5.0)
            total += high - low
        consumer.assign(
            [
                confluent_kafka.TopicPartition(topic, p, confluent_kafka.OFFSET_BEGINNING)
                for p in range(PARTITIONS)
            ]
        )
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < total and time.monotonic() < deadline:
            msg = consumer.poll(0.2)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            raw_key, value = msg.key(), msg.value()
            assert value is not None
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
            records.append(Record(msg.partition() or 0, msg.offset() or 0, key, json.loads(value)))
        assert len(records) == total, f"read {len(records)} of the {total} messages in {topic}"
        return sorted(records, key=lambda r: (r.partition, r.offset))
    finally:
        consumer.close()


def event_with_parent(state: RunState, run_id: str, job: str, root: str | None) -> RunEvent:
    """A task-like run event whose parent (and root) is a DAG-like run."""
    facets: dict[str, Any] = {}
    if root is not None:
        facets["parent"] = parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(uuid.uuid4())),
            job=parent_run.Job(namespace="tests", name=f"{root}.parent"),
            root=parent_run.Root(
                run=parent_run.RootRun(runId=str(uuid.uuid4())),
                job=parent_run.RootJob(namespace="tests", name=root),
            ),
        )
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(timezone.utc).isoformat(),
        run=Run(runId=run_id, facets=facets),
        job=Job(namespace="tests", name=job),
        producer=PRODUCER,
    )


def run_pairs(runs: int, states: Sequence[RunState] = (RunState.START, RunState.COMPLETE)) -> list[RunEvent]:
    """Events of ``runs`` runs over a few jobs, interleaved: every START, then every COMPLETE."""
    ids = [str(uuid.uuid4()) for _ in range(runs)]
    return [
        event_with_parent(state, ids[i], f"job-{i % 5}", root=f"dag-{i % 3}" if i % 2 else None)
        for state in states
        for i in range(runs)
    ]


def upstream_key(event: Any) -> str | None:
    """The key openlineage-python's own KafkaTransport computes (the reference)."""
    transport = KafkaTransport.__new__(KafkaTransport)  # no producer: only the key logic is used
    key: str | None = transport._get_message_key(event)
    return key


def assert_per_run_order(records: list[Record], sent: list[RunEvent]) -> None:
    """Each run's events are in one partition, and (first occurrences) in the order they were sent."""
    expected: dict[str, list[str]] = {}
    for event in sent:
        expected.setdefault(event.run.runId, []).append(str(event.eventType and event.eventType.value))
    seen: dict[str, list[Record]] = {}
    for record in records:  # (partition, offset) order
        seen.setdefault(record.event["run"]["runId"], []).append(record)
    assert seen.keys() == expected.keys()
    for run_id, got in seen.items():
        assert len({r.partition for r in got}) == 1, f"run {run_id} spread over partitions"
        types = list(dict.fromkeys(r.event["eventType"] for r in got))
        assert types == expected[run_id], f"run {run_id}: {types}"


def producer_config(transport: ThreadedTransport) -> dict[str, Any]:
    """The librdkafka properties the inner kafka transport's producer is built from."""
    return cast(dict[str, Any], cast(KafkaTransport, transport.inner).kafka_config.config)


def os_thread_count() -> int:
    return len(os.listdir("/proc/self/task"))


# ---------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_client_produces_every_event_once_keyed_per_run_in_order(
    cluster: MockCluster, topic: str, validate_event: Callable[[Any], None], idempotent: bool
) -> None:
    client = OpenLineageClient(
        config={
            "transport": {
                "type": "openlineage_emitter.ThreadedTransport",
                "inner": kafka_inner(cluster, topic, {"enable.idempotence": idempotent}),
                "queue_size": 1000,
                "call_timeout": 2,
            }
        }
    )
    try:
        assert isinstance(client.transport, ThreadedTransport)
        sent = run_pairs(20, (RunState.START, RunState.RUNNING, RunState.COMPLETE))  # 60 events, 20 runs
        for event in sent:
            client.emit(event)
        start = time.monotonic()
        assert client.close(5) is True
        assert time.monotonic() - start < 5
    finally:
        client.close(0)
    records = consume(cluster, topic)
    assert len(records) == len(sent)  # every event exactly once
    assert {(r.event["run"]["runId"], r.event["eventType"]) for r in records} == {
        (e.run.runId, str(e.eventType and e.eventType.value)) for e in sent
    }
    assert_per_run_order(records, sent)
    by_id = {(e.run.runId, str(e.eventType and e.eventType.value)): e for e in sent}
    for record in records:
        validate_event(record.event)
        original = by_id[(record.event["run"]["runId"], record.event["eventType"])]
        assert record.key == upstream_key(original)
        assert record.event == Serde.to_dict(original)  # the bytes openlineage-python would send
    assert len({r.partition for r in records}) > 1  # keys do spread runs over partitions


def test_close_flushes_the_producer_and_reports_everything_delivered(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport()
    for _ in range(50):
        transport.emit(make_event())
    start = time.monotonic()
    assert transport.close(5) is True
    assert time.monotonic() - start < 5
    inner = cast(KafkaTransport, transport.inner)
    assert inner.producer is None  # flushed and released
    stats = transport.stats()
    assert (stats.delivered, stats.dropped_total, stats.retried) == (50, 0, 0)
    assert len(consume(cluster, topic)) == 50


def test_producer_defaults_and_operator_overrides(cluster: MockCluster, topic: str) -> None:
    settings = EmitterSettings(call_timeout_s=2)
    default = ThreadedTransport.wrap(kafka_inner(cluster, topic), settings)
    chosen = ThreadedTransport.wrap(kafka_inner(cluster, topic, {"delivery.timeout.ms": 60000}), settings)
    try:
        config = producer_config(default)
        assert config["message.timeout.ms"] == int(kafka_attempt_wait_s(settings) * 1000) == 1750
        assert callable(getattr(config["logger"], "log", None))
        # An alias counts as set: the operator's value is kept and no second value added.
        config = producer_config(chosen)
        assert "message.timeout.ms" not in config
        assert config["delivery.timeout.ms"] == 60000
    finally:
        default.close(0)
        chosen.close(0)


def test_around_an_existing_kafka_transport(cluster: MockCluster, topic: str) -> None:
    inner = KafkaTransport(
        KafkaConfig(config={"bootstrap.servers": cluster.bootstrap_servers}, topic=topic, flush=False)
    )
    transport = ThreadedTransport.around(inner, EmitterSettings(call_timeout_s=2, retry=FAST_RETRY))
    try:
        assert cast(dict[str, Any], inner.kafka_config.config)["message.timeout.ms"] == 1750
        sent = run_pairs(3)
        for event in sent:
            transport.emit(event)
        assert transport.close(5) is True
    finally:
        transport.close(0)
    records = consume(cluster, topic)
    assert len(records) == len(sent)
    assert_per_run_order(records, sent)


def test_message_key_matches_openlineage_python_for_objects_and_replayed_dicts() -> None:
    now = datetime.now(timezone.utc).isoformat()
    events: list[Any] = [
        event_with_parent(RunState.START, str(uuid.uuid4()), "task", root=None),
        event_with_parent(RunState.COMPLETE, str(uuid.uuid4()), "task", root="dag"),
        RunEvent(
            eventType=RunState.START,
            eventTime=now,
            run=Run(
                runId=str(uuid.uuid4()),
                facets={
                    "parent": parent_run.ParentRunFacet(
                        run=parent_run.Run(runId=str(uuid.uuid4())),
                        job=parent_run.Job(namespace="other", name="parent-only"),
                    )
                },
            ),
            job=Job(namespace="tests", name="child"),
            producer=PRODUCER,
        ),
        JobEvent(eventTime=now, job=Job(namespace="tests", name="a-job"), producer=PRODUCER),
        DatasetEvent(eventTime=now, dataset=StaticDataset(namespace="db", name="t1"), producer=PRODUCER),
    ]
    keys = [kafka_message_key(Serde.to_dict(e)) for e in events]
    assert keys == [upstream_key(e) for e in events]
    assert keys == [
        "run:tests/task",
        "run:tests/dag",
        "run:other/parent-only",
        "job:tests/a-job",
        "dataset:db/t1",
    ]
    # A spooled event comes back as the parsed JSON: same key, same partition.
    assert [kafka_message_key(json.loads(Serde.to_json(e))) for e in events] == keys
    assert kafka_message_key({"unknown": 1}) is None


# ------------------------------------------------------------------ outages and errors


def test_a_down_broker_neither_blocks_the_caller_nor_grows_threads(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    earlier = {t.ident for t in emitter_threads()}  # left over from other tests' emitters
    transport = make_transport(EmitterSettings(call_timeout_s=0.5, retry=FAST_RETRY, breaker_threshold=0))
    transport.emit(make_event())
    assert transport.flush(5)  # connected, metadata known
    cluster.broker_down()
    events = [make_event() for _ in range(200)]
    durations = []
    for event in events:
        start = time.perf_counter()
        transport.emit(event)
        durations.append(time.perf_counter() - start)
    assert max(durations) < 0.2  # an attempt waits 0.4 s for the broker: the caller never does
    assert wait_until(lambda: transport.stats().retried >= 1, timeout_s=5)
    threads_then = os_thread_count() if sys.platform == "linux" else 0
    most = 0

    def retried_more() -> bool:
        nonlocal most
        most = max(most, len([t for t in emitter_threads() if t.ident not in earlier]))
        return transport.stats().retried >= 4

    assert wait_until(retried_more, timeout_s=10)
    stats = transport.stats()
    assert most <= max_threads(transport.threaded_config.settings.lanes)
    assert stats.threads_alive <= max_threads(transport.threaded_config.settings.lanes)
    assert stats.abandoned_calls == 0  # every attempt ended by itself, before the call timeout
    if sys.platform == "linux":
        assert os_thread_count() <= threads_then  # librdkafka's threads do not grow either
    cluster.broker_up()
    assert transport.flush(10)
    assert transport.stats().delivered == 201
    records = consume(cluster, topic)
    ids = [r.event["run"]["runId"] for r in records]
    assert set(ids) >= {e.run.runId for e in events}
    assert len(ids) - len(set(ids)) <= 1  # at most the one in flight when the broker came back


@pytest.mark.parametrize("idempotent", [False, True], ids=["plain", "idempotent"])
def test_broker_down_then_up_loses_nothing_within_the_retry_budget(
    cluster: MockCluster, topic: str, make_transport: MakeTransport, idempotent: bool
) -> None:
    transport = make_transport(
        EmitterSettings(call_timeout_s=0.5, retry=FAST_RETRY, breaker_threshold=0),
        {"enable.idempotence": idempotent},
    )
    sent = run_pairs(10)  # 10 STARTs, then 10 COMPLETEs
    for event in sent[:5]:
        transport.emit(event)
    assert transport.flush(5)
    cluster.broker_down()  # mid-stream: five STARTs delivered, the rest waits
    for event in sent[5:]:
        transport.emit(event)
    assert wait_until(lambda: transport.stats().retried >= 2, timeout_s=5)
    assert transport.stats().delivered == 5
    cluster.broker_up()
    assert transport.flush(15)
    stats = transport.stats()
    assert (stats.delivered, stats.dropped_total) == (20, 0)
    records = consume(cluster, topic)
    assert_per_run_order(records, sent)
    assert len(records) - len({(r.event["run"]["runId"], r.event["eventType"]) for r in records}) <= 1


def test_breaker_and_spool_with_a_dead_broker_then_replay(
    cluster: MockCluster, topic: str, make_transport: MakeTransport, tmp_path: Path
) -> None:
    transport = make_transport(
        EmitterSettings(
            call_timeout_s=0.3,
            retry=RetryPolicy(attempts=1),
            breaker_threshold=2,
            breaker_cooldown_s=0.3,
            spool_dir=str(tmp_path / "spool"),
        )
    )
    cluster.broker_down()
    sent = run_pairs(4)
    for event in sent:
        transport.emit(event)
    assert wait_until(lambda: transport.stats().spooled == len(sent), timeout_s=10)
    stats = transport.stats()
    assert stats.dropped_total == 0
    assert stats.dropped["breaker_open"] == 0  # spooled instead
    assert stats.failed >= 2  # two events failed, then the breaker opened
    cluster.broker_up()
    assert wait_until(lambda: transport.stats().replayed == len(sent), timeout_s=15)
    assert transport.stats().breaker_state == BreakerState.CLOSED.value
    records = consume(cluster, topic)
    assert len(records) == len(sent)  # a purged attempt never reached the broker: no duplicate
    by_id = {(e.run.runId, str(e.eventType and e.eventType.value)): e for e in sent}
    for record in records:
        # Replayed events are dicts: they still get openlineage-python's key, hence their
        # run's partition.
        assert record.key == upstream_key(by_id[(record.event["run"]["runId"], record.event["eventType"])])
    runs: dict[str, set[int]] = {}
    for record in records:
        runs.setdefault(record.event["run"]["runId"], set()).add(record.partition)
    assert all(len(parts) == 1 for parts in runs.values())


def test_close_honours_its_deadline_with_a_hung_broker(
    cluster: MockCluster, make_transport: MakeTransport
) -> None:
    earlier = {t.ident for t in emitter_threads()}
    transport = make_transport(EmitterSettings(call_timeout_s=2, retry=FAST_RETRY))
    transport.emit(make_event())
    assert transport.flush(5)
    cluster.broker_rtt(30_000)  # accepts requests, answers none in time
    for _ in range(5):
        transport.emit(make_event())
    assert wait_until(lambda: transport.stats().in_flight >= 1)
    start = time.monotonic()
    assert transport.close(0.5) is False
    # Slack for a loaded machine; waiting for the broker would cost 30 s.
    assert time.monotonic() - start < 0.5 + 2.0
    assert transport.stats().dropped["shutdown"] == 5
    assert cast(KafkaTransport, transport.inner).producer is None
    # The call still waiting on the broker ends once close purged its message.
    assert wait_until(lambda: not [t for t in emitter_threads() if t.ident not in earlier], timeout_s=3)


def test_a_non_retryable_kafka_error_drops_only_that_event(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport()
    transport.emit(make_event())
    assert transport.flush(5)
    bad = make_event()
    good = make_event()
    # The next produce request is refused, whatever messages it carries: the good
    # event is sent once the bad one's request was answered.
    cluster.push_produce_errors([INVALID_RECORD])
    transport.emit(bad)
    assert wait_until(lambda: transport.stats().dropped_total == 1)
    transport.emit(good)
    assert wait_until(lambda: transport.stats().delivered + transport.stats().dropped_total == 3)
    stats = transport.stats()
    assert (stats.delivered, stats.failed, stats.retried) == (2, 1, 0)
    assert stats.dropped["non_retryable"] == 1
    assert stats.breaker_state == BreakerState.CLOSED.value
    ids = [r.event["run"]["runId"] for r in consume(cluster, topic)]
    assert bad.run.runId not in ids
    assert good.run.runId in ids


def big_event(facet_bytes: int) -> RunEvent:
    """An event with a custom run facet of ``facet_bytes`` (sheddable: see ``_size``)."""
    event = make_event()
    assert event.run.facets is not None
    event.run.facets["big"] = {"_producer": PRODUCER, "_schemaURL": PRODUCER, "blob": "x" * facet_bytes}  # type: ignore[assignment]
    return event


def test_an_event_over_message_max_bytes_is_sent_again_without_its_facets(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    """produce() refuses it locally (MSG_SIZE_TOO_LARGE): Kafka's 413, shrunk once as for HTTP."""
    transport = make_transport(producer={"message.max.bytes": 10_000})
    big, small = big_event(20_000), make_event()

    transport.emit(big)
    transport.emit(small)

    assert wait_until(lambda: transport.stats().delivered == 2)
    stats = transport.stats()
    assert (stats.dropped_total, stats.truncated["too_large"]) == (0, 1)
    [arrived] = [r.event for r in consume(cluster, topic) if r.event["run"]["runId"] == big.run.runId]
    assert "big" not in arrived["run"]["facets"]
    assert arrived["run"]["facets"][TRUNCATION_FACET]["reason"] == "too_large"


def test_events_whose_produce_request_the_broker_refused_as_too_large_are_sent_again_alone(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    """The broker refuses a whole request: its small events were refused for their batch-mates."""
    _, send_many = make_send_many()
    events = [make_event(job=f"job-{i % 7}") for i in range(50)]
    cluster.push_produce_errors([MSG_SIZE_TOO_LARGE])  # the call's first produce request

    outcomes = send_many(events)

    assert outcomes == [None] * len(events)  # delivered, none of them shrunk
    assert sorted(run_ids(consume(cluster, topic))) == sorted(e.run.runId for e in events)


def test_retriable_broker_errors_are_retried_by_librdkafka_within_one_attempt(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport(producer={"retry.backoff.ms": 10})
    transport.emit(make_event())
    assert transport.flush(5)
    cluster.push_produce_errors([NOT_ENOUGH_REPLICAS] * 3)
    transport.emit(make_event())
    assert transport.flush(5)
    stats = transport.stats()
    assert (stats.delivered, stats.retried, stats.failed) == (2, 0, 0)
    assert len(consume(cluster, topic)) == 2


def test_a_fatal_producer_error_replaces_the_producer_and_keeps_the_event(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport(producer={"enable.idempotence": True})
    transport.emit(make_event())
    assert transport.flush(5)
    inner = cast(KafkaTransport, transport.inner)
    first = inner.producer
    # Sequence numbers out of sync with the broker: fatal for an idempotent producer.
    cluster.push_produce_errors([OUT_OF_ORDER_SEQUENCE_NUMBER])
    event = make_event()
    transport.emit(event)
    assert transport.flush(5)
    assert inner.producer is not None
    assert inner.producer is not first
    stats = transport.stats()
    assert (stats.delivered, stats.failed, stats.dropped_total) == (2, 0, 0)
    ids = [r.event["run"]["runId"] for r in consume(cluster, topic)]
    assert ids.count(event.run.runId) == 1


@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_delivers_through_a_new_producer(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport()
    parent_event = make_event(job="parent")
    transport.emit(parent_event)
    assert transport.flush(5)
    child_event = make_event(job="child")
    pid = os.fork()
    if pid == 0:  # the child: what the fork strategy does, then _exit whatever happens
        code = 1
        try:
            transport.emit_synchronously()
            inner = cast(KafkaTransport, transport.inner)
            code = 2 if inner.producer is not None else 3  # the parent's producer is set aside
            transport._send(child_event)  # raises if not delivered
            code = 0
        finally:
            os._exit(code)
    assert child_exit_code(pid, timeout_s=15) == 0
    ids = [r.event["run"]["runId"] for r in consume(cluster, topic)]
    assert sorted(ids) == sorted([parent_event.run.runId, child_event.run.runId])


# ---------------------------------------------------------------------- classification


def kafka_exception(code: int, *, fatal: bool = False, retriable: bool = False) -> Exception:
    return cast(Exception, KafkaException(KafkaError(code, "test", fatal=fatal, retriable=retriable)))


@pytest.mark.parametrize(
    ("error", "retryable", "reason"),
    [
        (kafka_exception(KafkaError._MSG_TIMED_OUT), True, "kafka_msg_timed_out"),
        (kafka_exception(KafkaError._TRANSPORT), True, "kafka_transport"),
        (kafka_exception(KafkaError._ALL_BROKERS_DOWN), True, "kafka_all_brokers_down"),
        (kafka_exception(KafkaError._QUEUE_FULL), True, "kafka_queue_full"),
        (kafka_exception(KafkaError._PURGE_QUEUE), True, "kafka_purge_queue"),
        (kafka_exception(KafkaError.NOT_ENOUGH_REPLICAS), True, "kafka_not_enough_replicas"),
        (kafka_exception(KafkaError.LEADER_NOT_AVAILABLE), True, "kafka_leader_not_available"),
        (kafka_exception(KafkaError.INVALID_CONFIG, retriable=True), True, "kafka_invalid_config"),
        (kafka_exception(KafkaError.MSG_SIZE_TOO_LARGE), False, "kafka_msg_size_too_large"),
        (kafka_exception(KafkaError.TOPIC_AUTHORIZATION_FAILED), False, "kafka_topic_authorization_failed"),
        (kafka_exception(KafkaError._INVALID_ARG), False, "kafka_invalid_arg"),
        (
            kafka_exception(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True),
            False,
            "kafka_fatal_out_of_order_sequence_number",
        ),
        (kafka_exception(KafkaError._MSG_TIMED_OUT, fatal=True), False, "kafka_fatal_msg_timed_out"),
        (kafka_exception(KafkaError._FATAL), False, "kafka_fatal_fatal"),
        (BufferError("Local: Queue full"), True, "kafka_queue_full"),
        (KafkaDeliveryTimeout("no delivery report"), True, "timeout"),
    ],
)
def test_kafka_errors_are_classified(error: Exception, retryable: bool, reason: str) -> None:
    verdict = classify(error)
    assert (verdict.retryable, verdict.reason) == (retryable, reason)


def test_a_message_too_large_for_kafka_is_dropped_as_too_large_like_an_http_413() -> None:
    assert classify(kafka_exception(KafkaError.MSG_SIZE_TOO_LARGE)).dropped_as == "too_large"


def test_a_wrapped_kafka_error_is_classified_by_its_cause() -> None:
    def produce() -> None:
        try:
            raise kafka_exception(KafkaError._MSG_TIMED_OUT)
        except KafkaException as exc:
            raise RuntimeError("wrapped") from exc

    with pytest.raises(RuntimeError) as excinfo:
        produce()
    assert classify(excinfo.value).retryable


def test_retryable_codes_are_the_documented_librdkafka_errors() -> None:
    names = {KafkaError(code).name() for code in KAFKA_RETRYABLE_CODES}
    assert not [n for n in names if n.startswith("ERR_") or "Unknown" in n]
    assert {"_MSG_TIMED_OUT", "_TRANSPORT", "NOT_LEADER_FOR_PARTITION", "NOT_ENOUGH_REPLICAS"} <= names
    assert {KafkaError(KafkaError.MSG_SIZE_TOO_LARGE).name(), "TOPIC_AUTHORIZATION_FAILED"}.isdisjoint(names)


def test_librdkafka_warnings_go_to_python_logging_rate_limited(
    cluster: MockCluster, topic: str, make_transport: MakeTransport, caplog: pytest.LogCaptureFixture
) -> None:
    transport = make_transport(EmitterSettings(call_timeout_s=0.5, retry=FAST_RETRY, breaker_threshold=0))
    transport.emit(make_event())
    assert transport.flush(5)
    with caplog.at_level("WARNING", logger="openlineage_emitter.librdkafka"):
        cluster.broker_down()
        transport.emit(make_event())
        assert wait_until(lambda: transport.stats().retried >= 3, timeout_s=5)
        cluster.broker_up()
        assert transport.flush(10)
    lines = [r for r in caplog.records if r.name == "openlineage_emitter.librdkafka"]
    assert lines  # connection failures are visible through logging...
    facilities = [str(r.args[0]) for r in lines if isinstance(r.args, tuple) and r.args]
    assert len(facilities) == len(set(facilities))  # ...once per kind within 30 s


def test_threads_are_released_after_close(cluster: MockCluster, topic: str) -> None:
    earlier = {t.ident for t in emitter_threads()}
    transport = ThreadedTransport.wrap(kafka_inner(cluster, topic), EmitterSettings(retry=FAST_RETRY))
    transport.emit(make_event())
    assert transport.close(5)
    assert wait_until(lambda: not [t for t in emitter_threads() if t.ident not in earlier], timeout_s=3)
    assert not [t for t in threading.enumerate() if "rdkafka" in t.name]  # librdkafka's are native


def test_a_byte_budget_below_message_max_bytes_delivers_a_large_event_shrunk(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport(
        EmitterSettings(retry=FAST_RETRY, max_event_bytes=9_000), producer={"message.max.bytes": 10_000}
    )
    big = make_event()
    assert big.run.facets is not None
    big.run.facets["big"] = {"_producer": PRODUCER, "_schemaURL": PRODUCER, "blob": "x" * 20_000}  # type: ignore[assignment]
    transport.emit(big)
    assert transport.flush(5)
    [record] = consume(cluster, topic)
    assert record.event["run"]["runId"] == big.run.runId
    assert record.event["run"]["facets"]["openlineageEmitter_truncation"]["shedFacets"] == ["run.facets.big"]
    assert record.key == kafka_message_key(Serde.to_dict(big))
    stats = transport.stats()
    assert (stats.delivered, stats.truncated["budget"], stats.dropped_total) == (1, 1, 0)


# ------------------------------------------------------------ many events in flight per call


def test_batch_sender_for_a_kafka_transport_is_its_send_many(make_transport: MakeTransport) -> None:
    transport = make_transport()
    assert isinstance(batch_sender_for(transport.inner, transport.threaded_config.settings), KafkaSendMany)


def test_unset_a_kafka_lane_hands_its_sender_a_thousand_events_per_call(
    make_transport: MakeTransport,
) -> None:
    """Kafka's own call size: a call's messages cost one flush whatever their number."""
    transport = make_transport()
    settings = transport.threaded_config.settings
    many = batch_sender_for(transport.inner, settings)
    assert settings.batch_max_events == 0
    assert events_per_call(settings, many) == 1000
    assert events_per_call(attrs.evolve(settings, batch_max_events=40), many) == 40


def test_send_many_delivers_every_event_once_with_one_outcome_each(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many()
    sent = run_pairs(150)
    # Half of them as a spool replays them: parsed JSON, for which openlineage-python gives no key.
    events: list[Any] = [json.loads(Serde.to_json(e)) if i % 2 else e for i, e in enumerate(sent)]
    outcomes = send_many(events)
    assert list(outcomes) == [None] * len(sent)
    records = run_records(consume(cluster, topic))
    assert len(records) == len(sent)  # every event exactly once
    by_id = {(e.run.runId, str(e.eventType and e.eventType.value)): e for e in sent}
    for record in records:
        original = by_id[(record.event["run"]["runId"], record.event["eventType"])]
        assert record.key == upstream_key(original)
        assert record.event == Serde.to_dict(original)  # the bytes openlineage-python would send


def test_send_many_keeps_each_runs_order_with_many_in_flight(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many(producer={"batch.num.messages": 3, "linger.ms": 0})  # many requests
    sent = run_pairs(100, (RunState.START, RunState.RUNNING, RunState.COMPLETE))
    assert list(send_many(sent)) == [None] * len(sent)
    records = run_records(consume(cluster, topic))
    assert len(records) == len(sent)
    assert_per_run_order(records, sent)


def test_without_idempotence_one_request_in_flight_keeps_the_order_across_librdkafkas_retries(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    """The fallback when the operator switches idempotence off. (With idempotence, order across
    librdkafka's retries rests on the broker checking sequence numbers; the mock cluster checks
    them only for transactional producers, so that case cannot be shown here.)"""
    _, send_many = make_send_many(
        producer={
            "enable.idempotence": False,
            "batch.num.messages": 3,
            "linger.ms": 0,
            "retry.backoff.ms": 10,
        }
    )
    sent = run_pairs(100, (RunState.START, RunState.RUNNING, RunState.COMPLETE))
    # The first produce requests fail with a retriable error and librdkafka resends them;
    # with more than one request in flight a resent one lands behind later ones.
    cluster.push_produce_errors([NOT_ENOUGH_REPLICAS] * 3)
    assert list(send_many(sent)) == [None] * len(sent)
    records = run_records(consume(cluster, topic))
    assert len(records) == len(sent)
    assert_per_run_order(records, sent)


def test_many_in_flight_cost_a_few_round_trips_per_call_not_one_per_event(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many(EmitterSettings(call_timeout_s=10, retry=FAST_RETRY))
    cluster.broker_rtt(100)
    events = [make_event(job=f"job-{i % 7}") for i in range(200)]
    start = time.monotonic()
    outcomes = send_many(events)
    elapsed = time.monotonic() - start
    cluster.reset()
    assert list(outcomes) == [None] * len(events)
    assert elapsed < 5.0  # one event per round trip would take 20 s
    assert len(run_ids(consume(cluster, topic))) == len(events)


def test_an_event_counts_delivered_only_on_its_own_successful_report(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many()
    events = [make_event(job=f"job-{i % 7}") for i in range(200)]
    cluster.push_produce_errors([INVALID_RECORD])  # the call's first produce request is refused
    outcomes = send_many(events)
    failed = {e.run.runId for e, o in zip(events, outcomes, strict=True) if isinstance(o, BaseException)}
    delivered = {
        e.run.runId for e, o in zip(events, outcomes, strict=True) if not isinstance(o, BaseException)
    }
    assert failed  # the refused request's events...
    assert all(classify(cast(BaseException, o)).reason == "kafka_invalid_record" for o in outcomes if o)
    assert sorted(run_ids(consume(cluster, topic))) == sorted(delivered)  # ...are exactly the ones missing


def test_a_down_broker_fails_every_event_of_the_call_retryably_within_its_deadline(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    settings = EmitterSettings(call_timeout_s=0.5, retry=FAST_RETRY)
    _, send_many = make_send_many(settings)
    cluster.broker_down()
    events = [make_event(job=f"job-{i % 7}") for i in range(200)]
    start = time.monotonic()
    outcomes = send_many(events)
    elapsed = time.monotonic() - start
    assert elapsed < kafka_attempt_wait_s(settings) + 1.0  # slack for a loaded machine
    assert all(isinstance(o, BaseException) and classify(o).retryable for o in outcomes)
    cluster.broker_up()
    assert wait_until(lambda: send_many(events) == [None] * len(events), timeout_s=10)
    # Messages that were never sent were purged: the first call delivered none of them later.
    assert sorted(run_ids(consume(cluster, topic))) == sorted(e.run.runId for e in events)


def test_a_hung_broker_and_a_full_local_queue_end_the_call_at_its_deadline(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    settings = EmitterSettings(call_timeout_s=0.5, retry=FAST_RETRY)
    _, send_many = make_send_many(settings, {"queue.buffering.max.messages": 5})
    cluster.broker_rtt(30_000)  # accepts requests, answers none in time
    events = [make_event(job=f"job-{i % 7}") for i in range(50)]
    start = time.monotonic()
    outcomes = send_many(events)
    assert time.monotonic() - start < kafka_attempt_wait_s(settings) + 1.0
    kinds = [type(o) for o in outcomes]
    # Five in flight (no report by the deadline), the sixth found the queue full until the
    # deadline, and the rest were not produced at all: all retryable, none delivered.
    assert kinds == [KafkaDeliveryTimeout] * 5 + [BufferError] + [KafkaNotProduced] * 44
    assert all(classify(cast(BaseException, o)).retryable for o in outcomes)


def test_a_full_local_queue_is_waited_out_within_the_deadline(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many(producer={"queue.buffering.max.messages": 5})
    events = [make_event(job=f"job-{i % 7}") for i in range(200)]
    assert list(send_many(events)) == [None] * len(events)
    assert sorted(run_ids(consume(cluster, topic))) == sorted(e.run.runId for e in events)


def test_a_fatal_error_mid_call_produces_again_only_what_it_left_unsettled(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    transport, send_many = make_send_many()
    first = cast(KafkaTransport, transport.inner).producer
    # Sequence numbers out of sync with the broker: fatal for an idempotent producer (the
    # default), while the call's other requests are in flight and acknowledged.
    cluster.push_produce_errors([OUT_OF_ORDER_SEQUENCE_NUMBER])
    events = [make_event(job=f"job-{i % 7}") for i in range(300)]
    assert list(send_many(events)) == [None] * len(events)
    assert cast(KafkaTransport, transport.inner).producer not in (None, first)
    assert sorted(run_ids(consume(cluster, topic))) == sorted(e.run.runId for e in events)  # each once


def test_send_many_applies_the_byte_budget_to_each_event(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    _, send_many = make_send_many(
        EmitterSettings(retry=FAST_RETRY, max_event_bytes=9_000), producer={"message.max.bytes": 10_000}
    )
    big = make_event()
    assert big.run.facets is not None
    big.run.facets["big"] = {"_producer": PRODUCER, "_schemaURL": PRODUCER, "blob": "x" * 20_000}  # type: ignore[assignment]
    small = [make_event(), make_event()]
    assert list(send_many([small[0], big, small[1]])) == [None, Truncated("budget"), None]
    records = {r.event["run"]["runId"]: r for r in consume(cluster, topic)}
    marked = records[big.run.runId]
    assert marked.event["run"]["facets"]["openlineageEmitter_truncation"]["shedFacets"] == ["run.facets.big"]
    assert marked.key == kafka_message_key(Serde.to_dict(big))
    assert {e.run.runId for e in small} <= records.keys()


def test_close_is_bounded_with_many_messages_in_flight(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    transport, send_many = make_send_many(EmitterSettings(call_timeout_s=5, retry=FAST_RETRY))
    producer = cast(KafkaTransport, transport.inner).producer
    assert producer is not None
    cluster.broker_rtt(30_000)
    outcomes: list[object] = []
    call = threading.Thread(target=lambda: outcomes.extend(send_many([make_event() for _ in range(100)])))
    call.start()  # as the emitter's call thread would
    assert wait_until(lambda: len(producer) == 100)  # all of them handed to librdkafka
    start = time.monotonic()
    assert transport.close(0.5) is False
    assert time.monotonic() - start < 0.5 + 2.0  # waiting for the broker would cost 30 s
    call.join(3)
    assert not call.is_alive()  # close purged its messages: the call ends...
    assert len(outcomes) == 100
    assert all(isinstance(o, BaseException) for o in outcomes)  # ...with none counted delivered


def test_producer_defaults_keep_order_with_many_in_flight() -> None:
    default = kafka_producer_config({}, EmitterSettings(call_timeout_s=2))
    assert default["enable.idempotence"] is True
    assert "max.in.flight.requests.per.connection" not in default  # librdkafka: 5 with idempotence


@pytest.mark.parametrize(
    "given",
    [{"enable.idempotence": False}, {"enable.idempotence": "false"}, {"acks": 1}, {"max.in.flight": 10}],
    ids=["idempotence-off", "idempotence-off-string", "acks-1", "in-flight-10"],
)
def test_without_idempotence_one_request_in_flight_keeps_the_order(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany, given: dict[str, Any]
) -> None:
    transport, send_many = make_send_many(producer=given)
    config = producer_config(transport)
    in_flight = config.get("max.in.flight", config.get("max.in.flight.requests.per.connection"))
    expected = 10 if "max.in.flight" in given else 1
    assert (config.get("enable.idempotence", False) in (False, "false"), in_flight) == (True, expected)
    sent = run_pairs(20)
    assert list(send_many(sent)) == [None] * len(sent)  # librdkafka accepts the combination
    assert_per_run_order(run_records(consume(cluster, topic)), sent)


def test_idempotence_switched_off_with_many_in_flight_is_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    given = {"enable.idempotence": False, "max.in.flight.requests.per.connection": 5}
    with caplog.at_level("WARNING", logger="openlineage_emitter._kafka"):
        config = kafka_producer_config(given, EmitterSettings())
    assert config["max.in.flight.requests.per.connection"] == 5  # the operator's choice stands
    assert "out of order" in caplog.text


@pytest.mark.integration
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_sends_many_through_a_new_producer(
    cluster: MockCluster, topic: str, make_send_many: MakeSendMany
) -> None:
    transport, send_many = make_send_many()
    child_events = [make_event(job="child") for _ in range(20)]
    pid = os.fork()
    if pid == 0:  # the child: _exit whatever happens
        code = 1
        try:
            if cast(KafkaTransport, transport.inner).producer is not None:
                code = 2  # the parent's producer was not set aside
            else:
                code = 0 if list(send_many(child_events)) == [None] * 20 else 3
        finally:
            os._exit(code)
    assert child_exit_code(pid, timeout_s=15) == 0
    assert sorted(run_ids(consume(cluster, topic))) == sorted(e.run.runId for e in child_events)


def test_threaded_transport_counts_delivered_only_what_the_broker_acknowledged(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport()
    transport.emit(make_event(job="warm-up"))
    assert transport.flush(10)
    cluster.push_produce_errors([INVALID_RECORD] * 2)  # two produce requests refused
    events = [make_event(job=f"job-{i % 7}") for i in range(300)]
    for event in events:
        transport.emit(event)
    # Waited on the counts, not on flush()'s return: with lanes, some events may be lost
    # before a flush starts (then nothing pending at that flush was lost).
    assert wait_until(lambda: transport.stats().delivered + transport.stats().dropped_total == 301, 10)
    stats = transport.stats()
    in_topic = run_ids(consume(cluster, topic))
    assert stats.delivered - 1 == len(in_topic) < len(events)
    assert stats.dropped["non_retryable"] == len(events) - len(in_topic)
    assert set(in_topic) <= {e.run.runId for e in events}


@pytest.mark.integration
def test_replay_cli_sends_spooled_events_many_at_once_keyed_as_live_ones(
    cluster: MockCluster, topic: str, tmp_path: Path
) -> None:
    sent = run_pairs(30)
    spool = Spool(tmp_path / "spool", 10**9)
    for start in range(0, len(sent), 20):  # the spool holds JSON: replay reads back dicts
        spool.write([Serde.to_json(e).encode() for e in sent[start : start + 20]])
    env = isolated_env(tmp_path, columns=200)
    env["AIRFLOW__OPENLINEAGE__TRANSPORT"] = json.dumps(kafka_inner(cluster, topic))
    result = subprocess.run(
        [sys.executable, "-m", "openlineage_emitter", "replay", "--spool-dir", str(tmp_path / "spool")],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"delivered {len(sent)}, failed 0 (quarantined), left 0" in result.stdout
    records = consume(cluster, topic)
    assert len(records) == len(sent)
    by_id = {(e.run.runId, str(e.eventType and e.eventType.value)): e for e in sent}
    for record in records:
        assert record.key == upstream_key(by_id[(record.event["run"]["runId"], record.event["eventType"])])
    assert_per_run_order(records, sent)


def test_threaded_transport_keeps_many_messages_in_flight(
    cluster: MockCluster, topic: str, make_transport: MakeTransport
) -> None:
    transport = make_transport(EmitterSettings(call_timeout_s=10, retry=FAST_RETRY, lanes=1))
    transport.emit(make_event(job="warm-up"))
    assert transport.flush(10)
    cluster.broker_rtt(100)
    sent = run_pairs(100)
    start = time.monotonic()
    for event in sent:
        transport.emit(event)
    assert transport.flush(15)
    elapsed = time.monotonic() - start
    cluster.reset()
    assert elapsed < 5.0  # one lane, one event per round trip: 20 s
    assert transport.stats().delivered == len(sent) + 1
    records = run_records(consume(cluster, topic))
    assert len(records) == len(sent)
    assert_per_run_order(records, sent)
