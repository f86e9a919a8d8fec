"""The inner http transports' session reads the proxy environment once a minute per destination.

The reuse runs under freezegun (no request is sent then); one test sends a real event
through a proxy named in the environment, a loopback collector standing in for the proxy.
"""

from __future__ import annotations

import pytest
from freezegun import freeze_time

from openlineage_emitter import EmitterSettings, ThreadedTransport
from openlineage_emitter._environment import ENVIRONMENT_REUSE_S, ReusedEnvironmentSession
from openlineage_emitter.collector import Collector, refusing_url
from tests.conftest import make_event

BACKEND = "http://backend.example:5000/api/v1/lineage"


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def proxies_for(session: ReusedEnvironmentSession, url: str) -> dict[str, str]:
    return dict(session.merge_environment_settings(url, {}, None, True, None)["proxies"])


def test_a_proxy_set_in_the_environment_applies_after_at_most_the_reuse_period(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with freeze_time("2026-12-03 12:00:00", tick=False) as clock:
        session = ReusedEnvironmentSession()
        assert proxies_for(session, BACKEND) == {}
        monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
        assert proxies_for(session, BACKEND) == {}  # read a moment ago: reused
        clock.tick(ENVIRONMENT_REUSE_S)
        assert proxies_for(session, BACKEND) == {"http": "http://proxy.example:3128"}


def test_each_destination_has_what_the_environment_says_for_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "direct.example")
    session = ReusedEnvironmentSession()
    assert proxies_for(session, BACKEND).get("http") == "http://proxy.example:3128"
    assert proxies_for(session, "http://direct.example:5000/api/v1/lineage") == {}


def test_a_caller_changing_what_it_was_given_does_not_change_what_is_reused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.example:3128")
    session = ReusedEnvironmentSession()
    session.merge_environment_settings(BACKEND, {}, None, True, None)["proxies"]["http"] = "changed"
    assert proxies_for(session, BACKEND) == {"http": "http://proxy.example:3128"}


def test_lineage_still_goes_through_a_proxy_named_in_the_environment(
    monkeypatch: pytest.MonkeyPatch, transports: list[ThreadedTransport]
) -> None:
    with Collector() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.url)
        transport = ThreadedTransport.wrap({"type": "http", "url": refusing_url()}, EmitterSettings())
        transports.append(transport)
        event = make_event()
        transport.emit(event)
        assert transport.flush(5)  # the backend's port refuses: only the proxy could take it
    assert [body["run"]["runId"] for body in proxy.events] == [event.run.runId]
