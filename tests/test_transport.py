"""ThreadedTransport through openlineage-python's client, delivering to a real loopback collector."""

from __future__ import annotations

import email.utils
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import RunState
from openlineage.client.transport.http import HttpTransport

from openlineage_emitter import (
    BreakerState,
    EmitterSettings,
    RetryPolicy,
    ThreadedTransport,
    ThreadedTransportConfig,
)
from openlineage_emitter.collector import Answer, Collector, refusing_url
from tests.conftest import emitter_threads, make_event, wait_until

FAST_RETRY = RetryPolicy(attempts=5, initial_backoff_s=0.01, max_backoff_s=0.05, deadline_s=10)


class MakeTransport(Protocol):
    def __call__(
        self, url: str, settings: EmitterSettings | None = None, **inner: Any
    ) -> ThreadedTransport: ...


@pytest.fixture
def make_transport() -> Iterator[MakeTransport]:
    """ThreadedTransport(http) factory; every transport made is closed at teardown."""
    made: list[ThreadedTransport] = []

    def make(url: str, settings: EmitterSettings | None = None, **inner: Any) -> ThreadedTransport:
        transport = ThreadedTransport.wrap(
            {"type": "http", "url": url, **inner}, settings or EmitterSettings(retry=FAST_RETRY)
        )
        made.append(transport)
        return transport

    yield make
    for transport in made:
        transport.close(0.5)


def run_ids(events: list[Any]) -> list[tuple[str, str]]:
    return [(e["run"]["runId"], e["eventType"]) for e in events]


def by_run(events: list[Any]) -> dict[str, list[str]]:
    """Each run's event types in arrival order: the order lanes keep (runs interleave)."""
    runs: dict[str, list[str]] = {}
    for run_id, event_type in run_ids(events):
        runs.setdefault(run_id, []).append(event_type)
    return runs


def test_client_config_routes_events_through_the_emitter(collector: Collector) -> None:
    client = OpenLineageClient(
        config={
            "transport": {
                "type": "openlineage_emitter.ThreadedTransport",
                "inner": {"type": "http", "url": collector.url},
                "queue_size": 1000,
                "call_timeout": 2,
            }
        }
    )
    try:
        assert isinstance(client.transport, ThreadedTransport)
        events = [make_event() for _ in range(20)]
        for event in events:
            client.emit(event)
        assert client.close(5) is True
        assert sorted(e["run"]["runId"] for e in collector.events) == sorted(e.run.runId for e in events)
    finally:
        client.close(0)


def test_every_delivered_event_is_valid_openlineage(
    collector: Collector, make_transport: MakeTransport, validate_event: Callable[[Any], None]
) -> None:
    transport = make_transport(collector.url)
    run = make_event().run.runId
    for state in (RunState.START, RunState.RUNNING, RunState.COMPLETE, RunState.FAIL):
        transport.emit(make_event(state, run))
    assert transport.close(5)
    assert len(collector.events) == 4
    for event in collector.events:
        validate_event(event)


def test_emit_returns_while_the_backend_hangs(make_transport: MakeTransport) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, EmitterSettings(call_timeout_s=30))
        for _ in range(100):
            transport.emit(make_event())
        stats = transport.stats()
        assert stats.submitted == 100
        assert stats.delivered == 0
        assert stats.queue_depth + stats.in_flight == 100


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_retryable_status_is_retried_until_delivered(
    collector: Collector, make_transport: MakeTransport, status: int
) -> None:
    collector.script([Answer(status=status), Answer(status=status)])
    transport = make_transport(collector.url)
    transport.emit(make_event())
    assert transport.flush(5)
    assert [r.status for r in collector.received] == [status, status, 200]
    assert transport.stats().retried == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 422])
def test_non_retryable_status_drops_the_event_at_once(
    collector: Collector, make_transport: MakeTransport, status: int
) -> None:
    collector.answer(Answer(status=status))
    transport = make_transport(collector.url)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().failed == 1)
    assert transport.flush(5)
    assert len(collector.received) == 1
    stats = transport.stats()
    assert (stats.failed, stats.retried, stats.dropped["non_retryable"]) == (1, 0, 1)


def test_an_unserialisable_event_is_dropped_without_calling_the_backend(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url)
    bad = make_event()
    assert bad.run.facets is not None
    bad.run.facets["bad"] = {(1, 2): "tuple keys are not JSON"}  # type: ignore[assignment]
    transport.emit(bad)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().delivered == 1)
    stats = transport.stats()
    assert (stats.delivered, stats.dropped["non_retryable"], stats.retried) == (1, 1, 0)
    assert len(collector.received) == 1


def test_connection_refused_is_retried_until_the_backend_comes_up(make_transport: MakeTransport) -> None:
    url = refusing_url()
    port = int(url.rsplit(":", 1)[1])
    transport = make_transport(url, EmitterSettings(retry=FAST_RETRY, breaker_threshold=0))
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().retried >= 1)
    with Collector(port=port) as late:
        assert late.wait_for(1, timeout_s=5)
        assert transport.flush(5)
    assert transport.stats().delivered == 1


def test_http_transport_retries_are_off_so_one_layer_retries(
    collector: Collector, make_transport: MakeTransport
) -> None:
    collector.answer(Answer(status=503))
    transport = make_transport(collector.url, EmitterSettings(retry=RetryPolicy(attempts=1)))
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().failed == 1)
    assert len(collector.received) == 1  # urllib3 did not retry the 503 behind our back


def test_retry_after_seconds_is_honoured(collector: Collector, make_transport: MakeTransport) -> None:
    collector.script([Answer(status=429, retry_after="1")])
    transport = make_transport(collector.url)
    transport.emit(make_event())
    assert transport.flush(5)
    first, second = collector.received
    assert second.at - first.at >= 0.95


def test_retry_after_http_date_is_honoured(collector: Collector, make_transport: MakeTransport) -> None:
    when = email.utils.formatdate(time.time() + 2, usegmt=True)
    collector.script([Answer(status=503, retry_after=when)])
    transport = make_transport(collector.url)
    transport.emit(make_event())
    assert transport.flush(6)
    first, second = collector.received
    assert second.at - first.at >= 0.9  # HTTP dates have one-second resolution


def test_retry_after_date_out_of_range_falls_back_to_backoff(
    collector: Collector, make_transport: MakeTransport
) -> None:
    collector.script([Answer(status=503, retry_after="Wed, 21 Oct 99999999999 07:28:00 GMT")])
    transport = make_transport(collector.url)
    transport.emit(make_event())
    assert transport.flush(5)
    assert [r.status for r in collector.received] == [503, 200]
    stats = transport.stats()
    assert (stats.delivered, stats.dropped_total) == (1, 0)


def test_start_is_delivered_before_complete_while_start_is_retried(
    collector: Collector, make_transport: MakeTransport
) -> None:
    collector.script([Answer(status=503), Answer(status=503)])
    transport = make_transport(collector.url)
    events = []
    for _ in range(3):
        run = make_event().run.runId
        events += [make_event(RunState.START, run), make_event(RunState.COMPLETE, run)]
    for event in events:
        transport.emit(event)
    assert transport.flush(5)
    assert [r.status for r in collector.received].count(503) == 2
    assert by_run(collector.events) == {e.run.runId: ["START", "COMPLETE"] for e in events}


def test_a_hung_call_is_abandoned_and_threads_stay_bounded(make_transport: MakeTransport) -> None:
    earlier = {t.ident for t in emitter_threads()}  # left over from other tests' emitters
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(
            hung.url,
            EmitterSettings(call_timeout_s=0.1, retry=FAST_RETRY, breaker_threshold=0, lanes=1),
            timeout=60,  # the HTTP client itself would wait a minute
        )
        for _ in range(10):
            transport.emit(make_event())
        most = 0

        def retried_past_the_cap() -> bool:
            nonlocal most
            most = max(most, len([t for t in emitter_threads() if t.ident not in earlier]))
            return transport.stats().retried >= 4

        assert wait_until(retried_past_the_cap, timeout_s=10)
        assert transport.stats().abandoned_calls == 2
        # With two calls abandoned and still hanging, the emitter stops calling.
        assert len(hung.received) == 2
        assert most <= 3
        assert transport.stats().threads_alive <= 3


def test_breaker_opens_then_probes_and_closes(collector: Collector, make_transport: MakeTransport) -> None:
    collector.answer(Answer(status=503))
    transport = make_transport(
        collector.url,
        EmitterSettings(retry=RetryPolicy(attempts=1), breaker_threshold=2, breaker_cooldown_s=0.5),
    )
    transport.emit(make_event())
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().breaker_state == BreakerState.OPEN.value)
    calls_when_opened = len(collector.received)
    transport.emit(make_event())
    assert wait_until(lambda: transport.stats().dropped["breaker_open"] == 1)
    assert len(collector.received) == calls_when_opened  # a dead backend is not called

    collector.answer(Answer(status=200))
    assert wait_until(lambda: transport.stats().breaker_state == BreakerState.HALF_OPEN.value)
    transport.emit(make_event())  # the probe
    assert wait_until(lambda: transport.stats().delivered == 1)
    assert transport.stats().breaker_state == BreakerState.CLOSED.value


def test_close_honours_its_deadline_with_a_hung_backend(make_transport: MakeTransport) -> None:
    with Collector(Answer(hang=True)) as hung:
        transport = make_transport(hung.url, EmitterSettings(call_timeout_s=30), timeout=60)
        for _ in range(20):
            transport.emit(make_event())
        start = time.monotonic()
        assert transport.close(0.5) is False
        # Slack for a loaded machine; waiting for the hung call would cost 30 s.
        assert time.monotonic() - start < 0.5 + 2.0
        assert transport.stats().dropped["shutdown"] >= 19


def test_close_returns_true_when_everything_was_delivered(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url)
    for _ in range(50):
        transport.emit(make_event())
    assert transport.close(5) is True
    assert len(collector.events) == 50


def test_concurrent_clients_over_http_lose_and_duplicate_nothing(
    collector: Collector, make_transport: MakeTransport
) -> None:
    transport = make_transport(collector.url)
    threads, per_thread = 8, 100
    sent: list[list[str]] = [[] for _ in range(threads)]

    def produce(t: int) -> None:
        for _ in range(per_thread):
            event = make_event()
            sent[t].append(event.run.runId)
            transport.emit(event)

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(10)
    assert transport.close(20)
    got = [e["run"]["runId"] for e in collector.events]
    assert sorted(got) == sorted(r for per in sent for r in per)
    assert len(set(got)) == threads * per_thread


def test_synchronous_emission_retries_like_the_emitter(
    collector: Collector, make_transport: MakeTransport
) -> None:
    """A fork-strategy child emits synchronously; a transient error must still be retried."""
    collector.script([Answer(status=503)])
    transport = make_transport(collector.url)
    transport.emit_synchronously()
    transport.emit(make_event())  # returns only once delivered (or given up)
    assert [r.status for r in collector.received] == [503, 200]
    assert transport.stats().submitted == 0  # the queue was never used


# --- what code that inspects a client's transport sees --------------------------------


def test_it_presents_the_inner_http_transports_kind_config_and_attributes(
    make_transport: MakeTransport,
) -> None:
    transport = make_transport(
        "http://127.0.0.1:9",
        endpoint="api/v2/lineage",
        auth={"type": "api_key", "apiKey": "k"},
        custom_headers={"X-Team": "data"},
    )

    assert transport.kind == "http"
    inner = transport.inner
    assert isinstance(inner, HttpTransport)
    assert transport.config is inner.config
    assert transport.config.auth.get_bearer() == "Bearer k"
    assert transport.config.custom_headers == {"X-Team": "data"}
    # Read by name, as the provider does (the attributes are the inner transport's).
    assert tuple(getattr(transport, name) for name in ("url", "endpoint", "timeout")) == (
        "http://127.0.0.1:9",
        "api/v2/lineage",
        inner.timeout,
    )
    assert ThreadedTransport.kind == "threaded"  # the class keeps the name it is configured by
    assert transport.threaded_config.inner["type"] == "http"


def test_it_presents_a_composite_inner_transports_members_and_config() -> None:
    transport = ThreadedTransport.wrap(
        {
            "type": "composite",
            "continue_on_failure": False,
            "transports": {
                "main": {"type": "http", "url": "http://127.0.0.1:9"},
                "debug": {"type": "console"},
            },
        },
        EmitterSettings(),
    )
    try:
        assert transport.kind == "composite"
        assert transport.config.continue_on_failure is False
        members = getattr(transport, "transports")  # noqa: B009 - the inner transport's, by name
        assert sorted((t.name, t.kind) for t in members) == [
            ("debug", "console"),
            ("main", "http"),
        ]
    finally:
        transport.close(0)


def test_what_neither_it_nor_its_inner_transport_has_is_an_attribute_error(
    make_transport: MakeTransport,
) -> None:
    transport = make_transport("http://127.0.0.1:9")

    with pytest.raises(AttributeError):
        getattr(transport, "no_such_attribute")  # noqa: B009 - looked up by name on purpose
    assert hasattr(transport.inner, "_auth_headers")
    with pytest.raises(AttributeError):
        getattr(transport, "_auth_headers")  # noqa: B009 - private names are never delegated


def test_sender_for_a_threaded_transport_delivers_instead_of_queueing(make_transport: MakeTransport) -> None:
    """A one-shot sender built on a ThreadedTransport must see the backend's refusal."""
    import requests

    from openlineage_emitter.transport import sender_for

    transport = make_transport(refusing_url())
    send = sender_for(transport, transport.threaded_config.settings)
    with pytest.raises(requests.ConnectionError):
        send(make_event())
    assert transport.stats().submitted == 0


def test_a_misspelt_wiring_keyword_is_a_type_error_as_for_any_signature() -> None:
    config = ThreadedTransportConfig(inner={"type": "console"}, settings=EmitterSettings())
    with pytest.raises(TypeError, match="unexpected keyword argument 'metrcs'"):
        ThreadedTransport(config, metrcs=None)  # type: ignore[call-arg]
