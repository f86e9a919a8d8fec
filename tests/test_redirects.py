"""Lineage POSTs never follow redirects: a 3xx is a non-retryable ``redirect``, nothing reaches
the Location, no header (API keys included) is sent there. Real http transport, real loopback
collectors: one answers the redirect, the other is the Location and must see nothing.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from openlineage.client import OpenLineageClient

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._redirects import RedirectRefused
from openlineage_emitter.cli.oneshot import one_shot
from openlineage_emitter.collector import Answer, Collector
from openlineage_emitter.retry import Verdict, classify
from tests.conftest import make_event

SECRET = "s3cr3t-api-key-123"
REDIRECTS = [301, 302, 303, 307, 308]


@pytest.fixture
def target() -> Iterator[Collector]:
    """Where the redirects point: it must never receive anything."""
    with Collector() as c:
        yield c


def redirect_to(collector: Collector, target: Collector, status: int) -> str:
    location = f"http://user:{SECRET}@127.0.0.1:{target.port}/api/v1/lineage?token={SECRET}"
    collector.answer(Answer(status=status, location=location))
    return location


def inner_http(collector: Collector) -> dict[str, object]:
    return {"type": "http", "url": collector.url, "custom_headers": {"X-Api-Key": SECRET}}


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_redirect_is_not_followed_and_counted_as_redirect(
    collector: Collector, target: Collector, status: int
) -> None:
    redirect_to(collector, target, status)
    transport = ThreadedTransport.wrap(inner_http(collector), EmitterSettings())
    transport.emit(make_event())
    transport.close(5)
    stats = transport.stats()
    assert (stats.delivered, stats.dropped["redirect"], stats.dropped_total) == (0, 1, 1)
    assert [r.method for r in collector.received] == ["POST"]  # once: never retried
    assert target.received == []


@pytest.mark.parametrize("status", REDIRECTS)
def test_a_transport_wrapped_around_a_built_one_does_not_follow_redirects(
    collector: Collector, target: Collector, status: int
) -> None:
    redirect_to(collector, target, status)
    client = OpenLineageClient(config={"transport": inner_http(collector)})
    transport = ThreadedTransport.around(client.transport, EmitterSettings())
    transport.emit(make_event())
    transport.close(5)
    assert transport.stats().dropped["redirect"] == 1
    assert len(collector.received) == 1
    assert target.received == []


@pytest.mark.parametrize("status", [302, 307])
def test_http_transports_inside_a_composite_do_not_follow_redirects(
    collector: Collector, target: Collector, status: int
) -> None:
    redirect_to(collector, target, status)
    composite = {"type": "composite", "transports": [inner_http(collector)], "continue_on_failure": False}
    transport = ThreadedTransport.wrap(composite, EmitterSettings())
    transport.emit(make_event())
    transport.close(5)
    assert len(collector.received) == 1
    assert target.received == []


def test_the_warning_names_the_location_masked(
    collector: Collector, target: Collector, caplog: pytest.LogCaptureFixture
) -> None:
    redirect_to(collector, target, 307)
    transport = ThreadedTransport.wrap(inner_http(collector), EmitterSettings())
    with caplog.at_level(logging.WARNING, logger="openlineage_emitter"):
        transport.emit(make_event())
        transport.close(5)
    [warning] = [r.getMessage() for r in caplog.records if "rejected" in r.getMessage()]
    assert f"HTTP 307 redirect to http://***@127.0.0.1:{target.port}/api/v1/lineage?token=***" in warning
    assert SECRET not in caplog.text


def test_the_one_shot_sender_refuses_a_redirect(collector: Collector, target: Collector) -> None:
    redirect_to(collector, target, 302)
    sender = one_shot(inner_http(collector), EmitterSettings())
    try:
        with pytest.raises(RedirectRefused, match="HTTP 302 redirect"):
            sender.send(make_event())
    finally:
        sender.transport.close(0)
    assert target.received == []


def test_a_3xx_is_a_non_retryable_redirect() -> None:
    response = requests.Response()
    response.status_code = 308
    verdict = classify(RedirectRefused("redirect refused", response=response))
    assert verdict == Verdict(False, "redirect", dropped_as="redirect")


FORKED_CHILD = textwrap.dedent(
    """
    import os, sys
    from openlineage_emitter import EmitterSettings, ThreadedTransport
    from tests.conftest import make_event

    transport = ThreadedTransport.wrap(
        {"type": "http", "url": sys.argv[1], "custom_headers": {"X-Api-Key": "k"}}, EmitterSettings()
    )
    transport.inner.session  # the parent's session exists before the fork
    pid = os.fork()
    if pid == 0:
        transport.emit_synchronously()  # as the fork strategy's child set-up does
        transport.emit(make_event())
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    sys.exit(os.waitstatus_to_exitcode(status))
    """
)


@pytest.mark.integration
def test_a_forked_child_does_not_follow_redirects_either(collector: Collector, target: Collector) -> None:
    redirect_to(collector, target, 307)
    result = subprocess.run(
        [sys.executable, "-c", FORKED_CHILD, collector.url],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "AIRFLOW_CONFIG": os.devnull},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert len(collector.received) == 1
    assert target.received == []
