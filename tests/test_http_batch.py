"""The spec's batch endpoint (``POST .../lineage/batch``) as a ``SendMany``: a real
openlineage-python ``HttpTransport`` (built the way ThreadedTransport builds its inner one)
against the real loopback collector, which takes batches and records each event."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from openlineage.client.event_v2 import RunState
from openlineage.client.serde import Serde
from openlineage.client.transport import get_default_factory
from openlineage.client.transport.http import HttpTransport
from openlineage.client.uuid import generate_new_uuid

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._batching import batch_sender_for
from openlineage_emitter._http_batch import BatchEventRefused, HttpBatchSend, batch_url, forget_unsupported
from openlineage_emitter._redirects import RedirectRefused
from openlineage_emitter._size import TRUNCATION_FACET
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.retry import classify
from openlineage_emitter.stats import Truncated
from openlineage_emitter.transport import inner_config
from tests.conftest import make_event

SECRET = "s3cr3t-batch-key-456"
ON = EmitterSettings(http_batch=True)


@pytest.fixture(autouse=True)
def fresh_process_view() -> Iterator[None]:
    """Which backends lack the endpoint is remembered per process: each test starts knowing none."""
    forget_unsupported()
    yield
    forget_unsupported()


def http(url: str, settings: EmitterSettings = ON, **config: Any) -> HttpTransport:
    """An http transport configured as ThreadedTransport configures its inner one."""
    transport = get_default_factory().create(inner_config({"type": "http", "url": url, **config}, settings))
    assert isinstance(transport, HttpTransport)
    return transport


def sender(url: str, settings: EmitterSettings = ON, **config: Any) -> HttpBatchSend:
    many = batch_sender_for(http(url, settings, **config), settings)
    assert isinstance(many, HttpBatchSend)
    return many


def run_ids(bodies: list[Any]) -> list[str]:
    return [b["run"]["runId"] for b in bodies]


def ids_of(events: list[Any]) -> list[str]:
    return [e.run.runId for e in events]


def delivered(outcomes: list[object]) -> list[bool]:
    return [not isinstance(o, BaseException) for o in outcomes]


# -- where and how -------------------------------------------------------------------------


def test_events_are_posted_as_one_json_array_to_the_batch_path(collector: Collector) -> None:
    events = [make_event() for _ in range(5)]
    outcomes = sender(collector.url)(events)
    assert delivered(outcomes) == [True] * 5
    assert collector.batch_requests == 1
    assert {r.path for r in collector.received} == {"/api/v1/lineage/batch"}
    assert run_ids(collector.events) == ids_of(events)  # in order


@pytest.mark.parametrize(
    ("url", "endpoint", "override", "expected"),
    [
        ("http://h:1", "api/v1/lineage", None, "http://h:1/api/v1/lineage/batch"),
        ("http://h:1/", "/api/v1/lineage/", None, "http://h:1/api/v1/lineage/batch"),
        ("http://h:1/ol/api/v1/lineage", "", None, "http://h:1/ol/api/v1/lineage/batch"),
        ("http://h:1", "api/v1/lineage?code=x", None, "http://h:1/api/v1/lineage/batch?code=x"),
        ("http://h:1", "api/v1/lineage", "events/bulk", "http://h:1/events/bulk"),
    ],
)
def test_the_batch_url_is_the_event_url_with_batch_appended_to_its_path(
    url: str, endpoint: str, override: str | None, expected: str
) -> None:
    assert batch_url(http(url, endpoint=endpoint), override) == expected


def test_the_batch_endpoint_setting_overrides_the_path(collector: Collector) -> None:
    settings = EmitterSettings(http_batch=True, http_batch_endpoint="api/v2/bulk")
    sender(collector.url, settings)([make_event()])
    assert [r.path for r in collector.received] == ["/api/v2/bulk"]


def test_the_body_is_gzipped_when_the_transport_compresses(collector: Collector) -> None:
    events = [make_event() for _ in range(3)]
    assert delivered(sender(collector.url, compression="gzip")(events)) == [True] * 3
    assert {r.headers.get("content-encoding") for r in collector.received} == {"gzip"}
    assert run_ids(collector.events) == ids_of(events)


def test_auth_and_custom_headers_reach_the_batch_endpoint(collector: Collector) -> None:
    send = sender(
        collector.url, auth={"type": "api_key", "apiKey": SECRET}, custom_headers={"X-Tenant": "blue"}
    )
    send([make_event(), make_event()])
    [headers] = {json.dumps(dict(r.headers), sort_keys=True) for r in collector.received}
    assert json.loads(headers)["authorization"] == f"Bearer {SECRET}"
    assert json.loads(headers)["x-tenant"] == "blue"


def test_a_redirect_on_the_batch_path_is_refused_and_nothing_reaches_its_target(collector: Collector) -> None:
    with Collector() as target:
        collector.answer(Answer(status=307, location=f"{target.url}/api/v1/lineage/batch"))
        outcomes = sender(collector.url, auth={"type": "api_key", "apiKey": SECRET})(
            [make_event(), make_event()]
        )
        assert target.received == []
    assert all(isinstance(o, RedirectRefused) for o in outcomes)
    assert {classify(o).reason for o in outcomes if isinstance(o, BaseException)} == {"redirect"}
    assert collector.batch_requests == 1  # never re-sent one by one


def test_a_transport_built_elsewhere_does_not_follow_a_redirect_of_the_batch_path_either(
    collector: Collector,
) -> None:
    """An HttpTransport with openlineage-python's own session (which follows redirects)."""
    with Collector() as target:
        collector.answer(Answer(status=302, location=f"{target.url}/elsewhere"))
        transport = get_default_factory().create({"type": "http", "url": collector.url})
        many = batch_sender_for(transport, ON)
        assert many is not None
        outcomes = many([make_event()])
        assert target.received == []
    assert isinstance(outcomes[0], RedirectRefused)


def test_the_off_switch_and_other_transports_get_no_batch_sender(collector: Collector) -> None:
    assert batch_sender_for(http(collector.url), EmitterSettings()) is None
    console = get_default_factory().create({"type": "console"})
    assert batch_sender_for(console, ON) is None


# -- bounds --------------------------------------------------------------------------------


def test_unset_the_count_bound_is_a_hundred_events_per_request(collector: Collector) -> None:
    events = [make_event() for _ in range(250)]
    assert ON.batch_max_events == 0  # the transport's own
    assert delivered(sender(collector.url, ON)(events)) == [True] * 250
    per_request = [sum(1 for r in collector.received if r.batch == n) for n in range(1, 4)]
    assert per_request == [100, 100, 50]


def test_the_byte_bound_splits_a_batch_into_requests_that_fit(collector: Collector) -> None:
    events = [make_event() for _ in range(10)]
    size = len(Serde.to_json(events[0]))
    settings = EmitterSettings(http_batch=True, http_batch_max_bytes=3 * size + 10)  # 3 per request
    assert delivered(sender(collector.url, settings)(events)) == [True] * 10
    per_request = [sum(1 for r in collector.received if r.batch == n) for n in range(1, 5)]
    assert per_request == [3, 3, 3, 1]
    assert run_ids(collector.events) == ids_of(events)


def test_the_count_bound_splits_a_batch_into_requests_of_at_most_that_many(collector: Collector) -> None:
    events = [make_event() for _ in range(10)]
    settings = EmitterSettings(http_batch=True, batch_max_events=4)
    assert delivered(sender(collector.url, settings)(events)) == [True] * 10
    per_request = [sum(1 for r in collector.received if r.batch == n) for n in range(1, 4)]
    assert per_request == [4, 4, 2]
    assert run_ids(collector.events) == ids_of(events)


def test_an_event_over_the_byte_bound_goes_alone(collector: Collector) -> None:
    small = [make_event(), make_event()]
    big = make_event(job="x" * 5000)
    settings = EmitterSettings(http_batch=True, http_batch_max_bytes=3000)
    assert delivered(sender(collector.url, settings)([small[0], big, small[1]])) == [True] * 3
    assert [(r.batch, r.body["job"]["name"][:3]) for r in collector.received] == [
        (1, "job"),
        (2, "xxx"),
        (3, "job"),
    ]


def test_each_event_is_fitted_to_the_per_event_budget_and_marked(collector: Collector) -> None:
    big = make_event()
    assert big.run.facets is not None
    big.run.facets["debug"] = {"blob": "d" * 20_000}  # type: ignore[assignment]
    settings = EmitterSettings(http_batch=True, max_event_bytes=4_000)
    outcomes = sender(collector.url, settings)([make_event(), big])
    assert outcomes[0] is None
    assert outcomes[1] == Truncated("budget")
    assert collector.batch_requests == 1
    shrunk = collector.events[1]
    assert "debug" not in shrunk["run"]["facets"]
    assert TRUNCATION_FACET in shrunk["run"]["facets"]


# -- results -------------------------------------------------------------------------------


def test_per_event_results_refuse_only_the_events_they_name(collector: Collector) -> None:
    collector.answer(Answer(event_statuses=(200, 400, 200)))
    events = [make_event() for _ in range(3)]
    outcomes = sender(collector.url)(events)
    assert delivered(outcomes) == [True, False, True]
    assert isinstance(outcomes[1], BatchEventRefused)
    verdict = classify(outcomes[1])
    assert (verdict.retryable, verdict.reason) == (False, "http_400")
    assert run_ids(collector.events) == ids_of([events[0], events[2]])
    assert collector.batch_requests == 1


def test_a_per_event_result_marked_retriable_is_retryable(collector: Collector) -> None:
    collector.answer(Answer(event_statuses=(200, 503)))
    outcomes = sender(collector.url)([make_event(), make_event()])
    assert outcomes[0] is None
    assert isinstance(outcomes[1], BaseException)
    assert classify(outcomes[1]).retryable


def test_a_retryable_answer_applies_to_the_whole_batch_and_stops_the_rest(collector: Collector) -> None:
    events = [make_event() for _ in range(6)]
    size = len(Serde.to_json(events[0]))
    collector.script([Answer(status=503, retry_after="7")])
    settings = EmitterSettings(http_batch=True, http_batch_max_bytes=3 * size + 10)
    outcomes = sender(collector.url, settings)(events)
    assert delivered(outcomes) == [False] * 6
    assert {classify(o).retry_after_s for o in outcomes if isinstance(o, BaseException)} == {7.0}
    assert collector.batch_requests == 1  # the second request would overtake the first


def test_a_batch_refused_as_a_whole_is_sent_again_one_event_per_request(collector: Collector) -> None:
    events = [make_event() for _ in range(3)]
    collector.script([Answer(status=400), Answer(status=200), Answer(status=400), Answer(status=200)])
    outcomes = sender(collector.url)(events)
    assert delivered(outcomes) == [True, False, True]
    assert [r.path for r in collector.received][3:] == ["/api/v1/lineage"] * 3
    assert run_ids(collector.events) == ids_of([events[0], events[2]])


@pytest.mark.parametrize("status", [404, 405, 501])
def test_a_backend_without_the_endpoint_gets_single_events_and_is_probed_once(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with Collector(batch_unsupported=status) as collector, caplog.at_level(logging.INFO):
        first = [make_event() for _ in range(3)]
        second = [make_event() for _ in range(2)]
        send = sender(collector.url)
        assert delivered(send(first)) == [True] * 3
        assert delivered(sender(collector.url)(second)) == [True] * 2  # another sender, same process
        assert collector.batch_requests == 1
        assert run_ids(collector.events) == ids_of(first + second)
        assert {r.path for r in collector.received if r.batch is None} == {"/api/v1/lineage"}
    notes = [r.getMessage() for r in caplog.records if "batch endpoint" in r.getMessage()]
    assert len(notes) == 1
    assert f"HTTP {status}" in notes[0]
    assert "emitter_http_batch" in notes[0]


def test_an_unserialisable_event_fails_alone(collector: Collector) -> None:
    bad = make_event()
    assert bad.run.facets is not None
    bad.run.facets["bad"] = {(1, 2): "tuple keys are not JSON"}  # type: ignore[assignment]
    outcomes = sender(collector.url)([make_event(), bad, make_event()])
    assert delivered(outcomes) == [True, False, True]
    assert collector.batch_requests == 1


# -- live events, through ThreadedTransport ------------------------------------------------


def test_live_events_go_through_the_batch_endpoint_in_order_per_run(
    transports: list[ThreadedTransport],
) -> None:
    with Collector(Answer(delay_s=0.02)) as collector:
        transport = ThreadedTransport.wrap({"type": "http", "url": collector.url}, ON)
        transports.append(transport)
        runs = [str(generate_new_uuid()) for _ in range(20)]
        for state in (RunState.START, RunState.COMPLETE):
            for run in runs:
                transport.emit(make_event(state, run_id=run))
        assert transport.flush(10)
        received = collector.received
    assert transport.stats().delivered == 40
    assert all(r.batch is not None and r.status == 200 for r in received)
    assert len({r.batch for r in received}) < 40  # many events per request
    for run in runs:
        assert [r.body["eventType"] for r in received if r.body["run"]["runId"] == run] == [
            "START",
            "COMPLETE",
        ]
