"""Event size control: a byte budget per event, facets shed in a documented order, 413 handling."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import attrs
import pytest
from openlineage.client.event_v2 import InputDataset, Job, Run, RunEvent, RunState
from openlineage.client.facet_v2 import (
    RunFacet,
    documentation_job,
    parent_run,
    schema_dataset,
    source_code_job,
    sql_job,
)
from openlineage.client.serde import Serde
from openlineage.client.transport.transport import Config, Transport
from openlineage.client.uuid import generate_new_uuid

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._size import TIERS, TRUNCATION_FACET, shrink, size_of, to_json
from openlineage_emitter.collector import Answer, Collector, refusing_url
from openlineage_emitter.metrics import Publisher
from openlineage_emitter.retry import RetryPolicy
from tests.conftest import PRODUCER, make_event, wait_until
from tests.test_metrics import Recorder

KB = 1024
MB = 1024 * 1024
FAST_RETRY = RetryPolicy(attempts=3, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)
IDENTITY = ("eventType", "eventTime", "producer", "schemaURL")


@attrs.define
class DebugRunFacet(RunFacet):
    """A debug facet as integrations attach them (the Airflow provider's ``debug``)."""

    payload: str = ""


@attrs.define
class AirflowRunFacet(RunFacet):
    """An integration's custom facet (large ``op_kwargs``)."""

    op_kwargs: str = ""


def big_event(
    *, debug: int = 0, source: int = 0, sql: int = 0, custom: int = 0, docs: int = 0, schema: int = 0
) -> RunEvent:
    """A START event with facets of about the given sizes (bytes) in every shedding tier."""
    run_facets: dict[str, Any] = {
        "parent": parent_run.ParentRunFacet(
            run=parent_run.Run(runId=str(generate_new_uuid())),
            job=parent_run.Job(namespace="tests", name="dag"),
        )
    }
    job_facets: dict[str, Any] = {}
    if debug:
        run_facets["debug"] = DebugRunFacet(payload="d" * debug)
    if custom:
        run_facets["airflow"] = AirflowRunFacet(op_kwargs="k" * custom)
    if source:
        job_facets["sourceCode"] = source_code_job.SourceCodeJobFacet(
            language="python", sourceCode="s" * source
        )
    if sql:
        job_facets["sql"] = sql_job.SQLJobFacet(query="q" * sql)
    if docs:
        job_facets["documentation"] = documentation_job.DocumentationJobFacet(description="o" * docs)
    inputs = []
    if schema:
        fields = [schema_dataset.SchemaDatasetFacetFields(name="c" * 90, type="string")] * (schema // 120)
        inputs.append(
            InputDataset(
                namespace="db",
                name="table",
                facets={"schema": schema_dataset.SchemaDatasetFacet(fields=fields)},
            )
        )
    return RunEvent(
        eventType=RunState.START,
        eventTime="2026-12-03T04:00:00+00:00",
        run=Run(runId=str(generate_new_uuid()), facets=run_facets),
        job=Job(namespace="tests", name="big", facets=job_facets),
        inputs=inputs,
        producer=PRODUCER,
    )


def as_dict(event: RunEvent) -> dict[str, Any]:
    return Serde.to_dict(event)


def five_mb_event() -> RunEvent:
    return big_event(debug=1 * MB, source=1 * MB, sql=1 * MB, custom=1 * MB, docs=KB, schema=1 * MB)


# --------------------------------------------------------------------------- shrink (pure)


def test_an_event_within_the_budget_is_returned_as_it_is() -> None:
    event = as_dict(big_event(debug=KB))

    shrunk = shrink(event, 10 * KB, reason="budget")

    assert shrunk.event is event
    assert (shrunk.shed, shrunk.original_bytes, shrunk.final_bytes) == ((), size_of(event), size_of(event))


def test_a_5_mb_event_is_shrunk_under_a_1_mb_budget() -> None:
    event = as_dict(five_mb_event())

    shrunk = shrink(event, MB, reason="budget")

    assert shrunk.original_bytes > 5 * MB
    assert shrunk.final_bytes == size_of(shrunk.event) <= MB


def test_shrinking_leaves_the_given_event_unchanged() -> None:
    event = as_dict(five_mb_event())
    before = copy.deepcopy(event)

    shrink(event, MB, reason="budget")

    assert event == before


def test_facets_are_shed_debug_then_source_code_then_custom_then_standard_then_dataset() -> None:
    event = as_dict(
        big_event(debug=10 * KB, source=20 * KB, sql=30 * KB, custom=10 * KB, docs=5 * KB, schema=40 * KB)
    )

    shrunk = shrink(event, None, reason="too_large")

    assert shrunk.shed == (
        "run.facets.debug",
        "job.facets.sql",  # largest first within a tier
        "job.facets.sourceCode",
        "run.facets.airflow",
        "job.facets.documentation",
        "inputs[0].facets.schema",
    )
    assert TIERS == ("debug", "source_code", "custom", "standard", "dataset")


def test_only_as_many_facets_are_shed_as_the_budget_needs() -> None:
    event = as_dict(big_event(debug=300 * KB, source=300 * KB, custom=300 * KB))

    shrunk = shrink(event, 700 * KB, reason="budget")

    assert shrunk.shed == ("run.facets.debug",)
    assert "airflow" in shrunk.event["run"]["facets"]
    assert "sourceCode" in shrunk.event["job"]["facets"]


def test_identity_and_the_parent_facet_are_never_shed() -> None:
    event = as_dict(five_mb_event())

    shrunk = shrink(event, 1, reason="budget")  # a budget nothing can meet: shed all that may be

    for key in IDENTITY:
        assert shrunk.event[key] == event[key]
    assert shrunk.event["run"]["runId"] == event["run"]["runId"]
    assert (shrunk.event["job"]["namespace"], shrunk.event["job"]["name"]) == ("tests", "big")
    assert shrunk.event["run"]["facets"]["parent"] == event["run"]["facets"]["parent"]
    assert [(d["namespace"], d["name"]) for d in shrunk.event["inputs"]] == [("db", "table")]
    assert set(shrunk.event["run"]["facets"]) == {"parent", TRUNCATION_FACET}
    assert shrunk.final_bytes > 1  # over the budget still: the smallest event possible


def test_the_marker_facet_lists_what_was_shed_and_the_sizes(validate_event: Callable[[Any], None]) -> None:
    event = as_dict(big_event(debug=300 * KB, source=300 * KB))

    shrunk = shrink(event, 400 * KB, reason="budget")

    marker = shrunk.event["run"]["facets"][TRUNCATION_FACET]
    assert marker["reason"] == "budget"
    assert marker["shedFacets"] == ["run.facets.debug"]
    assert (marker["originalBytes"], marker["budgetBytes"]) == (size_of(event), 400 * KB)
    assert marker["finalBytes"] == len(to_json(shrunk.event)) == shrunk.final_bytes
    validate_event(shrunk.event)


def test_sizes_are_those_of_the_json_the_transports_send() -> None:
    event = big_event(debug=KB, docs=KB)

    assert size_of(as_dict(event)) == len(Serde.to_json(event).encode("utf-8"))


def test_an_event_without_facets_cannot_be_shrunk() -> None:
    event = as_dict(make_event())

    shrunk = shrink(event, 10, reason="budget")

    assert (shrunk.changed, shrunk.event) == (False, event)


# --------------------------------------------------------------------------- through the transport


def http_transport(made: list[ThreadedTransport], url: str, budget: int = 0) -> ThreadedTransport:
    settings = EmitterSettings(retry=FAST_RETRY, max_event_bytes=budget, call_timeout_s=10)
    transport = ThreadedTransport.wrap({"type": "http", "url": url}, settings)
    made.append(transport)
    return transport


def test_a_5_mb_event_with_a_1_mb_budget_arrives_under_it_marked_and_valid(
    collector: Collector, transports: list[ThreadedTransport], validate_event: Callable[[Any], None]
) -> None:
    transport = http_transport(transports, collector.url, budget=MB)
    event = five_mb_event()

    transport.emit(event)

    assert transport.flush(30)
    [request] = collector.received
    assert int(request.headers["content-length"]) <= MB
    assert request.body["run"]["runId"] == event.run.runId
    assert request.body["run"]["facets"][TRUNCATION_FACET]["reason"] == "budget"
    validate_event(request.body)
    stats = transport.stats()
    assert (stats.delivered, stats.truncated["budget"], stats.dropped_total) == (1, 1, 0)


def test_a_413_is_answered_by_one_retry_without_the_sheddable_facets(
    transports: list[ThreadedTransport], validate_event: Callable[[Any], None]
) -> None:
    with Collector(max_body_bytes=100 * KB) as collector:
        transport = http_transport(transports, collector.url)
        transport.emit(big_event(debug=200 * KB, docs=KB))

        assert transport.flush(10)

        assert [r.status for r in collector.received] == [413, 200]
        delivered = collector.events[0]
        assert delivered["run"]["facets"][TRUNCATION_FACET]["shedFacets"] == [
            "run.facets.debug",
            "job.facets.documentation",
        ]
        validate_event(delivered)
        stats = transport.stats()
        assert (stats.delivered, stats.truncated["too_large"], stats.retried, stats.dropped_total) == (
            1,
            1,
            0,
            0,
        )


def test_a_second_413_drops_the_event_as_too_large(
    collector: Collector, transports: list[ThreadedTransport], caplog: pytest.LogCaptureFixture
) -> None:
    collector.answer(Answer(status=413))
    transport = http_transport(transports, collector.url)
    transport.emit(big_event(debug=KB))

    assert wait_until(lambda: transport.stats().failed == 1)

    assert [r.status for r in collector.received] == [413, 413]
    stats = transport.stats()
    assert (stats.dropped["too_large"], stats.dropped["non_retryable"], stats.delivered) == (1, 0, 0)
    assert "raise the backend's request size limit" in caplog.text


def test_a_413_for_an_event_with_nothing_to_shed_drops_it_at_once(
    collector: Collector, transports: list[ThreadedTransport]
) -> None:
    collector.answer(Answer(status=413))
    transport = http_transport(transports, collector.url)
    transport.emit(make_event())

    assert wait_until(lambda: transport.stats().failed == 1)

    assert len(collector.received) == 1
    assert transport.stats().dropped["too_large"] == 1


def test_a_413_after_shrinking_to_the_budget_retries_without_every_sheddable_facet(
    transports: list[ThreadedTransport],
) -> None:
    with Collector(max_body_bytes=100 * KB) as collector:
        transport = http_transport(transports, collector.url, budget=500 * KB)
        transport.emit(big_event(debug=600 * KB, source=200 * KB))

        assert transport.flush(10)

        assert [r.status for r in collector.received] == [413, 200]
        marker = collector.events[0]["run"]["facets"][TRUNCATION_FACET]
        assert (marker["reason"], marker["shedFacets"]) == (
            "too_large",
            ["run.facets.debug", "job.facets.sourceCode"],
        )
        assert dict(transport.stats().truncated) == {"budget": 0, "too_large": 1}


class KeepingTransport(Transport):
    """A real (in-memory) transport that keeps the very objects it is given."""

    kind = "keeping"

    def __init__(self) -> None:
        super().__init__()
        self.config = Config()
        self.got: list[Any] = []

    def emit(self, event: Any) -> None:
        self.got.append(event)


@pytest.mark.parametrize("budget", [0, MB])
def test_an_event_within_the_budget_reaches_the_inner_transport_untouched(budget: int) -> None:
    inner = KeepingTransport()
    transport = ThreadedTransport.around(inner, EmitterSettings(max_event_bytes=budget))
    events = [make_event() for _ in range(3)]
    try:
        for event in events:
            transport.emit(event)
        assert transport.flush(5)
    finally:
        transport.close(1)

    # Three runs, so possibly three lanes: the same objects, in no order between runs.
    assert sorted(id(e) for e in inner.got) == sorted(id(e) for e in events)
    assert transport.stats().truncated_total == 0


def test_without_a_budget_small_events_arrive_byte_identical(
    collector: Collector, transports: list[ThreadedTransport]
) -> None:
    transport = http_transport(transports, collector.url)
    event = big_event(debug=KB, source=KB)

    transport.emit(event)

    assert transport.flush(5)
    [request] = collector.received
    assert int(request.headers["content-length"]) == len(Serde.to_json(event))
    assert request.body == json.loads(Serde.to_json(event))


def test_truncated_events_are_published_by_reason(collector: Collector) -> None:
    recorder = Recorder()
    transport = ThreadedTransport.around(
        ThreadedTransport.wrap({"type": "http", "url": collector.url}).inner,
        EmitterSettings(max_event_bytes=10 * KB),
        metrics=recorder,
    )
    transport.emit(big_event(debug=20 * KB))
    assert transport.close(5)

    assert recorder.total("ol.emitter.truncated", reason="budget") == 1
    assert recorder.total("ol.emitter.truncated.budget") == 1


def test_publisher_sends_truncated_deltas_only_once() -> None:
    recorder = Recorder()
    publisher = Publisher(recorder, {})
    with Collector() as collector:
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": collector.url}, EmitterSettings(max_event_bytes=10 * KB)
        )
        transport.emit(big_event(debug=20 * KB))
        assert transport.close(5)
    publisher.publish(transport.stats())
    publisher.publish(transport.stats())

    assert recorder.total("ol.emitter.truncated.budget") == 1


def test_an_event_too_large_for_the_backend_is_not_spooled(
    collector: Collector, transports: list[ThreadedTransport], tmp_path: Any
) -> None:
    collector.answer(Answer(status=413))
    settings = EmitterSettings(retry=FAST_RETRY, spool_dir=str(tmp_path / "spool"))
    transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
    transports.append(transport)
    transport.emit(big_event(debug=KB))

    assert wait_until(lambda: transport.stats().failed == 1)

    stats = transport.stats()
    assert (stats.dropped["too_large"], stats.spooled) == (1, 0)


def spool_one(spool_dir: str, event: RunEvent) -> None:
    """Spool ``event`` the way an outage does: the backend refuses connections, once."""
    settings = EmitterSettings(
        retry=RetryPolicy(attempts=1), breaker_threshold=0, spool_dir=spool_dir, call_timeout_s=5
    )
    transport = ThreadedTransport.wrap({"type": "http", "url": refusing_url()}, settings)
    transport.emit(event)
    assert transport.flush(10)
    assert transport.close(1)
    assert transport.stats().spooled == 1


def test_a_spooled_event_is_shrunk_on_replay_after_a_413(
    transports: list[ThreadedTransport], tmp_path: Any
) -> None:
    spool_dir = str(tmp_path / "spool")
    spool_one(spool_dir, big_event(debug=200 * KB))
    with Collector(max_body_bytes=100 * KB) as collector:
        settings = EmitterSettings(retry=FAST_RETRY, spool_dir=spool_dir)
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
        transports.append(transport)
        transport.emit(make_event())  # the live event; replay follows when the queue is idle

        assert wait_until(lambda: transport.stats().replayed == 1, 10)

        # The live event and the replay run on different lanes: in either order.
        assert sorted(r.status for r in collector.received) == [200, 200, 413]
        assert dict(transport.stats().truncated) == {"budget": 0, "too_large": 1}


def test_a_spooled_event_the_backend_refuses_as_too_large_is_quarantined(
    transports: list[ThreadedTransport], tmp_path: Any
) -> None:
    spool_dir = str(tmp_path / "spool")
    spool_one(spool_dir, make_event())
    with Collector(max_body_bytes=100) as collector:  # every event is too large
        settings = EmitterSettings(retry=FAST_RETRY, spool_dir=spool_dir)
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, settings)
        transports.append(transport)
        transport.emit(make_event())

        assert wait_until(lambda: transport.stats().quarantined == 1, 10)

        stats = transport.stats()
        assert (stats.dropped["too_large"], stats.replayed, stats.spooled) == (1, 0, 0)
