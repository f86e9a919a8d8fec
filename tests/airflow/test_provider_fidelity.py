"""What the provider does itself must keep working with the plugin attached.

Each test runs the provider's own code in a real Airflow process (``provider_fidelity.py``),
with the plugin attached and, where the answer is "as upstream", with it switched off.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import pytest

from openlineage_emitter.collector import Collector
from tests.airflow.conftest import SCRIPTS, AirflowHome
from tests.airflow.test_servers import last_json_line

pytestmark = pytest.mark.airflow

OFF = {"AIRFLOW__OPENLINEAGE__EMITTER_PLUGIN_ENABLED": "False"}


def http(url: str) -> dict[str, Any]:
    return {
        "type": "http",
        "url": url,
        "endpoint": "api/v1/lineage",
        "timeout": 7,
        "auth": {"type": "api_key", "apiKey": "test-key"},
        "custom_headers": {"X-Team": "data"},
    }


def composite(url: str) -> dict[str, Any]:
    return {
        "type": "composite",
        "continue_on_failure": True,
        "transports": {"main": http(url), "debug": {"type": "console"}},
    }


TRANSPORTS: dict[str, Callable[[str], dict[str, Any]]] = {"http": http, "composite": composite}


def run_scenario(
    home: AirflowHome, transport: dict[str, Any], scenario: str, *args: str, **env: str
) -> dict[str, Any]:
    finished = home.run(
        [sys.executable, SCRIPTS / "provider_fidelity.py", scenario, *args],
        home.env(AIRFLOW__OPENLINEAGE__TRANSPORT=json.dumps(transport), **env),
        name=scenario,
    )
    assert finished.returncode == 0, finished.tail()
    assert finished.leftovers == []
    return last_json_line(finished)


@pytest.mark.parametrize("kind", sorted(TRANSPORTS))
def test_spark_glue_and_emr_transport_injection_and_the_metric_tag_are_as_upstream(
    kind: str, airflow_home: AirflowHome, collector: Collector
) -> None:
    transport = TRANSPORTS[kind](collector.url)

    attached = run_scenario(airflow_home, transport, "inspect")
    upstream = run_scenario(airflow_home, transport, "inspect", **OFF)

    assert (attached["patched"], upstream["patched"]) == (True, False)
    assert upstream["spark"]["spark.openlineage.transport.type"] == kind  # something to compare
    for what in ("spark", "glue", "emr", "metric_tags"):
        assert attached[what] == upstream[what], what


def test_an_airflow_task_timeout_during_before_stopping_does_not_escape(
    airflow_home: AirflowHome, hung_collector: Collector
) -> None:
    result = run_scenario(
        airflow_home,
        http(hung_collector.url),
        "before-stopping-timeout",
        AIRFLOW__OPENLINEAGE__EMITTER_SHUTDOWN_TIMEOUT="3",
    )

    assert result["patched"] is True
    assert result["escaped"] is None
    assert result["elapsed_s"] < 3.0  # cut short by timeout(1), not by the exit budget


def test_a_sigterm_during_a_dag_run_hook_stops_the_process_where_upstream_swallowed_it(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    attached = run_scenario(airflow_home, http(collector.url), "sigterm-in-dag-run-hook")
    upstream = run_scenario(airflow_home, http(collector.url), "sigterm-in-dag-run-hook", **OFF)

    assert (attached["patched"], upstream["patched"]) == (True, False)
    assert attached["signalled"]
    assert upstream["signalled"]
    assert (attached["escaped"], upstream["escaped"]) == ("SystemExit", None)
    assert attached["handler_restored"]


def test_an_adapter_given_its_own_client_sends_to_that_clients_backend(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    with Collector() as own:
        result = run_scenario(airflow_home, http(collector.url), "explicit-client", own.url)

        assert own.wait_for(2, timeout_s=5)
        assert [e["job"]["name"] for e in own.events] == ["explicit-1", "explicit-2"]
    assert result["patched"] is True
    assert [e["job"]["name"] for e in collector.events] == ["configured"]


def test_a_threaded_transport_configured_for_the_provider_is_injected_as_its_inner_transport(
    airflow_home: AirflowHome, collector: Collector
) -> None:
    """``[openlineage] transport`` set to a ThreadedTransport, plugin off: the provider's
    inspection sees the wrapped http transport, as if that were configured directly."""
    threaded = {"type": "openlineage_emitter.ThreadedTransport", "inner": http(collector.url)}

    wrapped = run_scenario(airflow_home, threaded, "inspect", **OFF)
    plain = run_scenario(airflow_home, http(collector.url), "inspect", **OFF)

    assert plain["spark"]["spark.openlineage.transport.type"] == "http"
    for what in ("spark", "glue", "emr", "metric_tags"):
        assert wrapped[what] == plain[what], what
